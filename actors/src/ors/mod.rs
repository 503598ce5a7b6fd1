//! The orchestration system: a routing session for each call at a routing point, running the
//! routing point's strategy ([`switchboard_routing::strategy::Session`]) and carrying out
//! what it asks: treatments and routes through the call, queueing through `rq`, and
//! RONA's not-ready through agent state (design.md "A call through the core", steps 3 to 7).
//!
//! Sessions are sans-io, so one actor per node drives them all on one timer (design.md "The
//! actor systems"): a session is a few hundred bytes of state that never awaits, and an actor
//! for each would cost more than the session. A session keeps the strategy version it started
//! with: a new version applies to new calls only.
//!
//! Each session at rest is kept in the [`store::RoutingStore`] as it changes (in order, by one
//! writer), so that a node taking the tenant over resumes it ([`resume`]): its call back in
//! its queue with its age, or its reserved agent held for it.
//!
//! GES's callbacks ([`callbacks`]) are sessions of this system too: they wait in `rq` as calls
//! do, and are placed through the cluster once an agent is reserved.

pub mod callbacks;
mod resume;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_routing::strategy::{Action, CallInfo, Event, Route, Saved, Session};
use tokio::sync::mpsc;

use crate::messages::agent_state::{AgentState, Command, WorkMode};
use crate::messages::bus::{NodeBound, ToNode};
use crate::messages::ors::{CallAddr, Kept, Order, Ors, OrsMsg, Report};
use crate::messages::rq::{Rq, RqMsg, Told};
use crate::supervisor::Supervisor;
use crate::wakeups::Wakeups;
use store::{Kind, RoutingStore};

/// The time a session runs on, in unix ms: the wall clock, or a test's.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(crate::unix_ms)
}

/// What the orchestration system is started with.
pub struct OrsArgs {
    pub rq: Rq,
    pub agents: AgentState,
    pub clock: Clock,
    /// Where orders for calls on other nodes go (with a bus).
    pub to_node: Option<Arc<dyn ToNode>>,
    /// Where sessions are kept as they change.
    pub store: Arc<dyn RoutingStore>,
    /// This node's id: where the calls that reach routing directly run.
    pub node: Arc<str>,
    /// Where the time strategies take to decide is counted, for the metrics.
    pub figures: Arc<crate::figures::Figures>,
}

impl Ors {
    /// Starts the orchestration system under the root supervisor; its failure stops the node.
    pub async fn spawn(args: OrsArgs, supervisor: &Supervisor) -> Result<Self, ractor::SpawnErr> {
        let actor = supervisor.spawn("ors", OrsActor, args).await?;
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
    node: Arc<str>,
    store: Arc<dyn RoutingStore>,
    figures: Arc<crate::figures::Figures>,
    /// The writer keeping sessions, in the order they change.
    writes: mpsc::UnboundedSender<Write>,
    /// Told once what the message in hand changed is kept.
    kept: Option<Kept>,
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
    /// The node running the call, and the strategy version the session runs.
    node: String,
    strategy: String,
    version: u32,
    started_ms: u64,
    /// The agent the call is routed to, while it rings.
    agent: Option<String>,
    /// Its place in [`OrsState::due`].
    due: Option<u64>,
    /// The route ordered and not yet reported on: given again to a call that moved to
    /// another node (adopted from one that died) in the meantime.
    route: Option<Order>,
    /// When the call asked for its route, until the strategy first decides (routes it or
    /// queues it): none for a session resumed from the store.
    asked: Option<std::time::Instant>,
}

impl Actor for OrsActor {
    type Msg = Msg;
    type State = OrsState;
    type Arguments = OrsArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (writes, to_write) = mpsc::unbounded_channel();
        tokio::spawn(write(args.store.clone(), to_write));
        Ok(OrsState {
            rq: args.rq,
            agents: args.agents,
            clock: args.clock,
            to_node: args.to_node,
            node: args.node,
            store: args.store,
            figures: args.figures,
            writes,
            kept: None,
            wakeups: Wakeups::start(|_| Msg::Wake),
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
            Msg::Face(OrsMsg::Request {
                request,
                call,
                kept,
            }) => {
                state.kept = kept;
                if let Some(entry) = state.sessions.get_mut(&request.call) {
                    // Delivered again (its first owner died before acknowledging it), or
                    // asked by a node that adopted the call from one that died: the session
                    // sends its orders there from now on.
                    let node = match &call {
                        CallAddr::Here(_) => state.node.to_string(),
                        CallAddr::Node(node) => node.clone(),
                    };
                    if node != entry.node {
                        tracing::info!(tenant = %entry.tenant, call_id = %request.call,
                            from = %entry.node, to = %node, "routing session follows its call");
                        entry.node = node;
                        entry.call = call;
                        if let Some(order) = entry.route.clone() {
                            deliver(
                                &state.to_node,
                                &entry.tenant,
                                &request.call,
                                &entry.call,
                                order,
                            );
                        }
                        let record = Record::of(entry).and_then(|r| serde_json::to_string(&r).ok());
                        let tenant = entry.tenant.clone();
                        if record.is_some() {
                            state.keep(&tenant, &request.call, record);
                        }
                    }
                    state.flush();
                    return Ok(());
                }
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
                let node = match &call {
                    CallAddr::Here(_) => state.node.to_string(),
                    CallAddr::Node(node) => node.clone(),
                };
                let entry = Entry {
                    tenant: request.tenant.name.clone(),
                    session: Session::new(program, info, now),
                    call,
                    node,
                    strategy: request.strategy.clone(),
                    version,
                    started_ms: now,
                    agent: None,
                    due: None,
                    route: None,
                    asked: Some(std::time::Instant::now()),
                };
                state.sessions.insert(request.call.clone(), entry);
                state.drive(&request.call, &myself);
            }
            Msg::Face(OrsMsg::Report { call, report, kept }) => {
                state.kept = kept;
                let Some(entry) = state.sessions.get_mut(&call) else {
                    state.flush();
                    return Ok(());
                };
                let event = match report {
                    Report::TreatmentEnded { digits } => Event::TreatmentEnded { digits },
                    Report::TreatmentFailed => Event::TreatmentFailed,
                    Report::Routed => {
                        entry.route = None;
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
                        entry.route = None;
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
            Msg::Face(OrsMsg::Gained { tenant, reply }) => {
                state.resume(&tenant, &myself, now).await;
                let _ = reply.send(());
            }
            Msg::Face(OrsMsg::Lost { tenant }) => state.drop_tenant(&tenant),
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
        state.flush();
        Ok(())
    }
}

/// A session kept, as the store holds it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// The node running the call.
    node: String,
    strategy: String,
    version: u32,
    started_ms: u64,
    /// The agent the call is routed to, while it rings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    session: Saved,
}

impl Record {
    fn of(entry: &Entry) -> Option<Self> {
        Some(Record {
            node: entry.node.clone(),
            strategy: entry.strategy.clone(),
            version: entry.version,
            started_ms: entry.started_ms,
            agent: entry.agent.clone(),
            session: entry.session.save()?,
        })
    }
}

/// One write of the session writer: a record to keep (`Some(None)` removes it), and whom to
/// tell once it and those before it are kept.
struct Write {
    tenant: String,
    call: String,
    record: Option<Option<String>>,
    kept: Option<Kept>,
}

/// Keeps the sessions' records in the order they changed.
async fn write(store: Arc<dyn RoutingStore>, mut writes: mpsc::UnboundedReceiver<Write>) {
    while let Some(w) = writes.recv().await {
        if let Some(record) = &w.record
            && let Err(e) = store
                .save(Kind::Sessions, &w.tenant, &w.call, record.as_deref())
                .await
        {
            tracing::warn!(tenant = %w.tenant, call_id = %w.call, error = %e,
                "routing session not kept: a takeover would not find it as it is");
        }
        if let Some(kept) = w.kept {
            let _ = kept.send(());
        }
    }
}

/// Hands a session's order to its call: straight to the call's shard on this node, or to the
/// node running it.
fn deliver(
    to_node: &Option<Arc<dyn ToNode>>,
    tenant: &str,
    call: &str,
    addr: &CallAddr,
    order: Order,
) {
    match (addr, to_node) {
        (CallAddr::Here(call), _) => {
            let _ = call.send(order);
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
                Action::Record => Order::Record,
                Action::Monitor { dn, mode } => Order::Monitor {
                    dn,
                    // The parser takes only the three modes.
                    mode: crate::messages::sip_cluster::MonitorMode::parse(&mode)
                        .unwrap_or(crate::messages::sip_cluster::MonitorMode::Listen),
                },
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
                Action::Route(route) => {
                    entry.route = Some(Order::Route(route.clone()));
                    Order::Route(route)
                }
            };
            if matches!(order, Order::Route(_) | Order::Queued { .. })
                && let Some(asked) = entry.asked.take()
            {
                self.figures.routing_decided(asked.elapsed());
            }
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
            self.keep(&tenant, call, None);
            return;
        }
        let record = Record::of(entry).and_then(|r| serde_json::to_string(&r).ok());
        if record.is_some() {
            self.keep(&tenant, call, record);
        }
        let now = (self.clock)();
        self.schedule(myself, now);
    }

    /// Keeps a session's record (`None`: it is over), after those before it; the message in
    /// hand is told once it is kept.
    fn keep(&mut self, tenant: &str, call: &str, record: Option<String>) {
        let _ = self.writes.send(Write {
            tenant: tenant.to_owned(),
            call: call.to_owned(),
            record: Some(record),
            kept: self.kept.take(),
        });
    }

    /// Tells the message in hand it is kept once what was written before it is.
    fn flush(&mut self) {
        if let Some(kept) = self.kept.take() {
            let _ = self.writes.send(Write {
                tenant: String::new(),
                call: String::new(),
                record: None,
                kept: Some(kept),
            });
        }
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
    use crate::messages::sip_cluster::{CallInbox, ToCall};
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
            figures: Arc::default(),
            calls: Arc::default(),
        };
        let agents = AgentState::spawn(config, &supervisor)
            .await
            .expect("agents");
        let time = Arc::new(AtomicU64::new(1_000_000));
        let clock: Clock = {
            let time = time.clone();
            Arc::new(move || time.load(Ordering::SeqCst))
        };
        let args = OrsArgs {
            rq,
            agents,
            clock,
            to_node: None,
            store: Arc::new(store::MemoryRouting::default()),
            node: "sbtest".into(),
            figures: Arc::default(),
        };
        let ors = Ors::spawn(args, &supervisor).await.expect("ors");
        let (call, mut orders) = Probe::spawn(|to: ToCall<Order>| Some(to.message)).await;
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
                call: CallAddr::Here(CallInbox::new(1, call.get_derived())),
                kept: None,
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
