//! The orchestration system: a routing session for each call at a routing point, running the
//! routing point's strategy ([`switchboard_routing::strategy::Session`]) and carrying out
//! what it asks: treatments and routes through the call's actor, queueing through `rq`, and
//! RONA's not-ready through agent state (design.md "A call through the core", steps 3 to 7).
//!
//! Sessions are sans-io, so one actor per node drives them all on one timer (design.md "The
//! actor systems"): a session is a few hundred bytes of state that never awaits, and an actor
//! for each would cost more than the session. A session keeps the strategy version it started
//! with: a new version applies to new calls only.
//!
//! GES's callbacks ([`callbacks`]) are sessions of this system too: they wait in `rq` as calls
//! do, and are placed through the cluster once an agent is reserved.

pub mod callbacks;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_routing::strategy::{Action, CallInfo, Event, Route, Session};

use crate::messages::agent_state::{AgentState, Command, WorkMode};
use crate::messages::bus::{NodeBound, ToNode};
use crate::messages::ors::{CallAddr, Order, Ors, OrsMsg, Report};
use crate::messages::rq::{Rq, RqMsg, Told};
use crate::supervisor::Supervisor;
use crate::wakeups::Wakeups;

/// The time a session runs on, in unix ms: the wall clock, or a test's.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(crate::unix_ms)
}

impl Ors {
    /// Starts the orchestration system under the root supervisor; its failure stops the node
    /// (its sessions live only in its memory). Orders for calls on other nodes go through
    /// `to_node`.
    pub async fn spawn(
        rq: Rq,
        agents: AgentState,
        clock: Clock,
        to_node: Option<Arc<dyn ToNode>>,
        supervisor: &Supervisor,
    ) -> Result<Self, ractor::SpawnErr> {
        let actor = supervisor
            .spawn("ors", OrsActor, (rq, agents, clock, to_node))
            .await?;
        Ok(Self::new(actor.get_derived()))
    }
}

/// What the actor handles: what the other systems send, and its timer.
enum Msg {
    Face(OrsMsg),
    Wake,
}

crate::messages::wraps!(Msg::Face(OrsMsg));

struct OrsActor;

struct OrsState {
    rq: Rq,
    agents: AgentState,
    clock: Clock,
    to_node: Option<Arc<dyn ToNode>>,
    wakeups: Wakeups<Msg>,
    sessions: HashMap<String, Entry>,
    /// When each session next needs waking, earliest first: a change touches one session's
    /// place, never a scan of them all.
    due: BTreeSet<(u64, String)>,
    wake_at: Option<u64>,
}

struct Entry {
    tenant: String,
    session: Session,
    call: CallAddr,
    started_ms: u64,
    /// The agent the call is routed to, while it rings.
    agent: Option<String>,
    /// Its place in [`OrsState::due`].
    due: Option<u64>,
}

impl Actor for OrsActor {
    type Msg = Msg;
    type State = OrsState;
    type Arguments = (Rq, AgentState, Clock, Option<Arc<dyn ToNode>>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (rq, agents, clock, to_node): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(OrsState {
            rq,
            agents,
            clock,
            to_node,
            wakeups: Wakeups::start(|| Msg::Wake),
            sessions: HashMap::new(),
            due: BTreeSet::new(),
            wake_at: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = (state.clock)();
        match message {
            Msg::Face(OrsMsg::Request { request, call }) => {
                let Some((version, program)) = request.tenant.strategy(&request.strategy) else {
                    tracing::warn!(tenant = %request.tenant.name, call_id = %request.call,
                        strategy = %request.strategy, "no such strategy: default destination");
                    let order = Order::Route(Route::Default);
                    deliver(
                        &state.to_node,
                        &request.tenant.name,
                        &request.call,
                        &call,
                        order,
                    );
                    return Ok(());
                };
                tracing::debug!(tenant = %request.tenant.name, call_id = %request.call,
                    strategy = %request.strategy, version, "routing session");
                let info = CallInfo {
                    caller: request.ani.clone(),
                    dialed: request.dnis.clone(),
                    data: request.user_data.clone(),
                };
                let entry = Entry {
                    tenant: request.tenant.name.clone(),
                    session: Session::new(program, info, now),
                    call,
                    started_ms: now,
                    agent: None,
                    due: None,
                };
                state.sessions.insert(request.call.clone(), entry);
                state.drive(&request.call, &myself);
            }
            Msg::Face(OrsMsg::Report { call, report }) => {
                let Some(entry) = state.sessions.get_mut(&call) else {
                    return Ok(());
                };
                let event = match report {
                    Report::TreatmentEnded { digits } => Event::TreatmentEnded { digits },
                    Report::TreatmentFailed => Event::TreatmentFailed,
                    Report::Routed => {
                        if entry.agent.take().is_some() {
                            state.rq.send(RqMsg::Delivered {
                                tenant: entry.tenant.clone(),
                                call: call.clone(),
                                waited_ms: now.saturating_sub(entry.started_ms),
                            });
                        }
                        Event::Routed
                    }
                    Report::RouteFailed { rona } => {
                        entry.agent = None;
                        if let Some(agent) = rona {
                            state.rq.send(RqMsg::Rona {
                                tenant: entry.tenant.clone(),
                                agent: agent.clone(),
                            });
                            not_ready_after_rona(&state.agents, &entry.tenant, agent);
                        }
                        Event::RouteFailed
                    }
                    Report::Gone => Event::Abandoned,
                };
                entry.session.handle(event, now);
                state.drive(&call, &myself);
            }
            Msg::Face(OrsMsg::Rq(Told::Matched { call, agent, dn })) => {
                let Some(entry) = state.sessions.get_mut(&call) else {
                    // The call left meanwhile: the withdrawal its session sent gives the
                    // reservation back.
                    return Ok(());
                };
                entry.agent = Some(agent.clone());
                entry.session.handle(Event::Matched { agent, dn }, now);
                state.drive(&call, &myself);
            }
            Msg::Face(OrsMsg::Rq(Told::Unreserved { call, agent })) => {
                if let Some(entry) = state.sessions.get(&call)
                    && entry.agent.as_deref() == Some(agent.as_str())
                {
                    let order = Order::Unreserved { agent };
                    deliver(&state.to_node, &entry.tenant, &call, &entry.call, order);
                }
            }
            Msg::Wake => {
                state.wake_at = None;
                while let Some((at, call)) = state.due.first().cloned()
                    && at <= now
                {
                    state.due.remove(&(at, call.clone()));
                    if let Some(entry) = state.sessions.get_mut(&call) {
                        entry.due = None;
                        entry.session.handle_timeout(now);
                    }
                    state.drive(&call, &myself);
                }
                state.schedule(&myself, now);
            }
        }
        Ok(())
    }
}

/// Hands a session's order to its call: straight to the call's actor on this node, or to the
/// node running it.
fn deliver(
    to_node: &Option<Arc<dyn ToNode>>,
    tenant: &str,
    call: &str,
    addr: &CallAddr,
    order: Order,
) {
    match (addr, to_node) {
        (CallAddr::Here(actor), _) => {
            let _ = actor.send_message(order);
        }
        (CallAddr::Node(node), Some(to_node)) => to_node.send(
            tenant,
            node,
            NodeBound::Order {
                call: call.to_owned(),
                order,
            },
        ),
        (CallAddr::Node(node), None) => {
            tracing::warn!(
                tenant,
                call_id = call,
                node,
                "an order for a call on another node, and no bus: dropped"
            );
        }
    }
}

/// An agent who did not answer a call routed to it is made not ready (reason `RONA`), so
/// that the next call does not ring an empty desk.
fn not_ready_after_rona(agents: &AgentState, tenant: &str, agent: String) {
    let agents = agents.clone();
    let tenant = tenant.to_owned();
    tokio::spawn(async move {
        let command = Command::NotReady {
            reason: Some("RONA".into()),
            work_mode: WorkMode::Unknown,
        };
        if let Err(e) = agents.command(&tenant, &agent, command).await {
            tracing::info!(%tenant, %agent, error = %e, "agent not made not ready after RONA");
        }
    });
}

impl OrsState {
    /// Carries out what a session asks, and forgets it once it is over.
    fn drive(&mut self, call: &str, myself: &ActorRef<Msg>) {
        let Some(entry) = self.sessions.get_mut(call) else {
            return;
        };
        let tenant = entry.tenant.clone();
        while let Some(action) = entry.session.poll_action() {
            let order = match action {
                Action::Treat(t) => Order::Treat(t),
                Action::Collect { digits, uri } => Order::Collect { digits, uri },
                Action::SetData { key, value } => Order::SetData { key, value },
                Action::Submit {
                    queue,
                    target,
                    priority,
                    since,
                } => {
                    let order = Order::Queued {
                        queue: queue.clone(),
                        target: target.to_string(),
                        priority,
                    };
                    self.rq.send(RqMsg::Submit {
                        tenant: tenant.clone(),
                        call: call.to_owned(),
                        queue,
                        target,
                        priority,
                        since,
                        waiter: Ors::new(myself.get_derived()).waiter(),
                    });
                    order
                }
                Action::Overflow { change, .. } => {
                    self.rq.send(RqMsg::Overflow {
                        tenant: tenant.clone(),
                        call: call.to_owned(),
                        change: change.clone(),
                    });
                    Order::Overflow(change)
                }
                Action::Withdraw { .. } => {
                    self.rq.send(RqMsg::Withdraw {
                        tenant: tenant.clone(),
                        call: call.to_owned(),
                    });
                    continue;
                }
                Action::Route(route) => Order::Route(route),
            };
            deliver(&self.to_node, &tenant, call, &entry.call, order);
        }
        let due = (!entry.session.is_done())
            .then(|| entry.session.poll_timeout())
            .flatten();
        if entry.due != due {
            if let Some(at) = entry.due.take() {
                self.due.remove(&(at, call.to_owned()));
            }
            if let Some(at) = due {
                self.due.insert((at, call.to_owned()));
            }
            entry.due = due;
        }
        if entry.session.is_done() {
            self.sessions.remove(call);
            return;
        }
        let now = (self.clock)();
        self.schedule(myself, now);
    }

    /// Asks the timer for the earliest deadline of any session.
    fn schedule(&mut self, myself: &ActorRef<Msg>, now: u64) {
        let Some(&(next, _)) = self.due.first() else {
            return;
        };
        if self.wake_at.is_some_and(|at| at <= next) {
            return;
        }
        self.wake_at = Some(next);
        let at = Instant::now() + Duration::from_millis(next.saturating_sub(now));
        self.wakeups.at(0, at, myself);
    }
}

#[cfg(test)]
mod tests {
    //! The orchestration actor on a clock the test moves, its call played by a probe that
    //! passes on the orders it gets.

    use std::sync::atomic::{AtomicU64, Ordering};

    use std::collections::BTreeMap;

    use switchboard_routing::strategy::{Overflow, Treatment};

    use super::*;
    use crate::agent_state::AgentStateConfig;
    use crate::agent_state::store::MemoryAgents;
    use crate::events::EventSink;
    use crate::messages::ors::RouteRequest;
    use crate::probe::Probe;
    use crate::registrar::MemoryBindings;
    use crate::tenant::{Directory, Tenant, demo_tenant};

    #[tokio::test]
    async fn sessions_wake_on_the_clock_they_are_given() {
        let mut config = demo_tenant();
        config.strategies[0].document = "play music file:///m.wav\n\
             queue support target \"english >= 9\" timeout 2s\n  after 1s priority 7\n\
             route dn 1002\n"
            .into();
        let tenant = Arc::new(Tenant::from_config(&config).expect("tenant"));
        let directory = Arc::new(Directory::new(&[config]).expect("directory"));
        let (supervisor, _) = Supervisor::start().await.expect("supervisor");
        let rq = Rq::spawn(directory.clone(), &supervisor).await.expect("rq");
        let config = AgentStateConfig {
            events: EventSink::memory(),
            store: Arc::new(MemoryAgents::default()),
            directory,
            bindings: Arc::new(MemoryBindings::default()),
            rq: None,
            node: "sbtest".into(),
            ownership: crate::lease::Ownership::Alone,
        };
        let agents = AgentState::spawn(config, &supervisor)
            .await
            .expect("agents");
        let time = Arc::new(AtomicU64::new(1_000_000));
        let clock: Clock = {
            let time = time.clone();
            Arc::new(move || time.load(Ordering::SeqCst))
        };
        let ors = Ors::spawn(rq, agents, clock, None, &supervisor)
            .await
            .expect("ors");
        let (call, mut orders) = Probe::spawn(|order: Order| Some(order)).await;
        for id in ["c1", "c2"] {
            ors.send(OrsMsg::Request {
                request: Box::new(RouteRequest {
                    tenant: tenant.clone(),
                    call: id.into(),
                    routing_point: "5000".into(),
                    strategy: "support".into(),
                    ani: "+15550001111".into(),
                    dnis: "+18005550100".into(),
                    user_data: BTreeMap::new(),
                }),
                call: CallAddr::Here(call.get_derived()),
            });
        }
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(3), orders.recv())
                .await
                .expect("an order in time")
                .expect("open")
        };
        for _ in 0..2 {
            assert_eq!(
                next().await,
                Order::Treat(Treatment::Music("file:///m.wav".into()))
            );
            assert_eq!(
                next().await,
                Order::Queued {
                    queue: "support".into(),
                    target: "english >= 9".into(),
                    priority: 0,
                }
            );
        }
        // Nobody can take the calls: past their timeout on the sessions' clock, both go on
        // to the strategy's last line when the session next wakes.
        // Past the overflow step first: the priority is raised.
        time.fetch_add(1_000, Ordering::SeqCst);
        for _ in 0..2 {
            assert_eq!(next().await, Order::Overflow(Overflow::Priority(7)));
        }
        time.fetch_add(1_000, Ordering::SeqCst);
        for _ in 0..2 {
            assert_eq!(next().await, Order::Route(Route::Dn("1002".into())));
        }
        call.stop(None);
        ors.stop();
    }
}
