//! The orchestration system: a routing session for each call at a routing point, running the
//! routing point's strategy ([`switchboard_routing::strategy::Session`]) and carrying out
//! what it asks: treatments and routes through the call's actor, queueing through `rq`, and
//! RONA's not-ready through agent state (design.md "A call through the core", steps 3 to 7).
//!
//! Sessions are sans-io, so one actor per node drives them all on one timer (design.md has
//! an actor per session; a session is a few hundred bytes of state that never awaits, and a
//! task for each would cost more than the session). A session keeps the strategy version it
//! started with: a new version applies to new calls only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_routing::strategy::{Action, CallInfo, Event, Route, Session, Treatment};

use crate::agent_state::AgentState;
use crate::agent_state::machine::{Command, WorkMode};
use crate::rq::{Rq, RqMsg};
use crate::sip_cluster::CallMsg;
use crate::tenant::Tenant;
use crate::wakeups::Wakeups;

/// The time a session runs on, in unix ms: the wall clock, or a test's.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(crate::unix_ms)
}

/// A call reached a routing point.
#[derive(Debug, Clone)]
pub struct RouteRequest {
    pub tenant: Arc<Tenant>,
    pub call: String,
    pub routing_point: String,
    /// The routing point's strategy.
    pub strategy: String,
    pub ani: String,
    pub dnis: String,
    pub user_data: BTreeMap<String, String>,
}

/// What a call at a routing point tells its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A treatment that plays to its end ended; for collect, the digits.
    TreatmentEnded { digits: Option<String> },
    /// No media server applied the treatment.
    TreatmentFailed,
    /// The call reached the destination it was routed to.
    Routed,
    /// The destination did not take the call; `rona` names the reserved agent that did not
    /// answer in time.
    RouteFailed { rona: Option<String> },
    /// The call no longer waits: the caller hung up, or the routing point's timeout sent
    /// it to its default destination.
    Gone,
}

/// What a routing session asks of its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    Treat(Treatment),
    Collect {
        digits: u32,
        uri: String,
    },
    SetData {
        key: String,
        value: String,
    },
    Queued {
        queue: String,
    },
    Route(Route),
    /// The agent reserved gave the reservation back before answering: stop ringing it.
    Unreserved {
        agent: String,
    },
}

pub enum OrsMsg {
    Request {
        request: Box<RouteRequest>,
        call: ActorRef<CallMsg>,
    },
    Report {
        call: String,
        report: Report,
    },
    /// From `rq`: an agent is reserved for the call.
    Matched {
        call: String,
        agent: String,
        dn: String,
    },
    /// From `rq`: the agent reserved is no longer available.
    Unreserved {
        call: String,
        agent: String,
    },
    Wake,
}

/// Reaches the orchestration system. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ors {
    actor: ActorRef<OrsMsg>,
}

impl Ors {
    pub async fn spawn(rq: Rq, agents: AgentState, clock: Clock) -> Result<Self, ractor::SpawnErr> {
        let (actor, _) = Actor::spawn(None, OrsActor, (rq, agents, clock)).await?;
        Ok(Self { actor })
    }

    pub fn send(&self, msg: OrsMsg) {
        let _ = self.actor.cast(msg);
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

struct OrsActor;

struct OrsState {
    rq: Rq,
    agents: AgentState,
    clock: Clock,
    wakeups: Wakeups<OrsMsg>,
    sessions: HashMap<String, Entry>,
    wake_at: Option<u64>,
}

struct Entry {
    tenant: String,
    session: Session,
    call: ActorRef<CallMsg>,
    started_ms: u64,
    /// The agent the call is routed to, while it rings.
    agent: Option<String>,
}

impl Actor for OrsActor {
    type Msg = OrsMsg;
    type State = OrsState;
    type Arguments = (Rq, AgentState, Clock);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (rq, agents, clock): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(OrsState {
            rq,
            agents,
            clock,
            wakeups: Wakeups::start(|| OrsMsg::Wake),
            sessions: HashMap::new(),
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
            OrsMsg::Request { request, call } => {
                let Some((version, program)) = request.tenant.strategy(&request.strategy) else {
                    tracing::warn!(tenant = %request.tenant.name, call = %request.call,
                        strategy = %request.strategy, "no such strategy: default destination");
                    let _ = call.cast(CallMsg::Routing(Order::Route(Route::Default)));
                    return Ok(());
                };
                tracing::debug!(tenant = %request.tenant.name, call = %request.call,
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
                };
                state.sessions.insert(request.call.clone(), entry);
                state.drive(&request.call, &myself);
            }
            OrsMsg::Report { call, report } => {
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
                            not_ready_after_rona(&state.agents, &entry.tenant, agent);
                        }
                        Event::RouteFailed
                    }
                    Report::Gone => Event::Abandoned,
                };
                entry.session.handle(event, now);
                state.drive(&call, &myself);
            }
            OrsMsg::Matched { call, agent, dn } => {
                let Some(entry) = state.sessions.get_mut(&call) else {
                    // The call left meanwhile: the reservation goes back.
                    return Ok(());
                };
                entry.agent = Some(agent.clone());
                entry.session.handle(Event::Matched { agent, dn }, now);
                state.drive(&call, &myself);
            }
            OrsMsg::Unreserved { call, agent } => {
                if let Some(entry) = state.sessions.get(&call)
                    && entry.agent.as_deref() == Some(agent.as_str())
                {
                    let _ = entry
                        .call
                        .cast(CallMsg::Routing(Order::Unreserved { agent }));
                }
            }
            OrsMsg::Wake => {
                state.wake_at = None;
                let due: Vec<String> = state
                    .sessions
                    .iter()
                    .filter(|(_, e)| e.session.poll_timeout().is_some_and(|t| t <= now))
                    .map(|(c, _)| c.clone())
                    .collect();
                for call in due {
                    if let Some(entry) = state.sessions.get_mut(&call) {
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
    fn drive(&mut self, call: &str, myself: &ActorRef<OrsMsg>) {
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
                    self.rq.send(RqMsg::Submit {
                        tenant: tenant.clone(),
                        call: call.to_owned(),
                        queue: queue.clone(),
                        target,
                        priority,
                        since,
                        session: myself.clone(),
                    });
                    Order::Queued { queue }
                }
                Action::Overflow { change, .. } => {
                    self.rq.send(RqMsg::Overflow {
                        tenant: tenant.clone(),
                        call: call.to_owned(),
                        change,
                    });
                    continue;
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
            let _ = entry.call.cast(CallMsg::Routing(order));
        }
        if entry.session.is_done() {
            self.sessions.remove(call);
            return;
        }
        let now = (self.clock)();
        self.schedule(myself, now);
    }

    /// Asks the timer for the earliest deadline of any session.
    fn schedule(&mut self, myself: &ActorRef<OrsMsg>, now: u64) {
        let Some(next) = self
            .sessions
            .values()
            .filter_map(|e| e.session.poll_timeout())
            .min()
        else {
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
