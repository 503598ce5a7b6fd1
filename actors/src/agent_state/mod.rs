//! The agent-state system: one actor per agent, running its [`machine::Agent`], keeping its
//! state in the [`store::AgentStore`] and writing each change to the tenant's
//! `voice-agentstate` stream, keyed by agent so that an agent's events keep their order.
//!
//! A registry actor in front finds (or starts) each agent's actor and holds the rules that
//! span agents: an agent is logged in on one DN at a time, and a DN holds one agent at a time.
//! The registrar tells it when a DN's phone registers or goes away; call state tells it which
//! DNs a call involves, and waits until the agents' changes are written, so that an agent's
//! after-call work is on its stream before the call's release is on the call's.

pub mod machine;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use switchboard_proto::events::{AgentState as AgentView, Payload};

use crate::events::{EventSink, TOPIC_AGENTSTATE, new_event};
use crate::lease::Ownership;
use crate::messages::agent_state::{
    AgentState, AgentStateMsg, Command, CommandError, Monitoring, Refusal, Status, WorkMode,
};
use crate::messages::registrar::BindingStore;
use crate::messages::rq::{Availability, Rq};
use crate::messages::sip_cluster::{Cluster, Control, MonitorMode, RecordAction};
use crate::supervisor::Supervisor;
use crate::tenant::{Directory, Tenant};
use crate::wakeups::Wakeups;
use machine::{Agent, Change, Mode, NextState, Session};
use store::{AgentStore, Stored, StoredCall};

/// How the agent-state system is set up.
#[derive(Clone)]
pub struct AgentStateConfig {
    pub events: EventSink,
    pub store: Arc<dyn AgentStore>,
    pub directory: Arc<Directory>,
    /// Looks up a DN's registrations: whether its phone is in service at login.
    pub bindings: Arc<dyn BindingStore>,
    /// Told each agent's availability after every change, to offer calls.
    pub rq: Option<Rq>,
    /// This node's id: the node a call reported here runs on.
    pub node: Arc<str>,
    /// Which tenants' agents run here: all of them on a node alone; with a lease, those of the
    /// tenants this node owns, loaded as it takes each over ([`AgentState::gained`]).
    pub ownership: Ownership,
    /// Where agents are counted by state, for the metrics.
    pub figures: Arc<crate::figures::Figures>,
    /// Reaches the calls, to have a call monitored as it reaches an agent whose calls a
    /// supervisor monitors; set once the node's calls are started (they start after agents).
    pub calls: Arc<std::sync::OnceLock<Cluster>>,
}

impl AgentState {
    /// Starts the system under the root supervisor, with the agents the store holds as logged
    /// in (on a node alone; with a lease, each owned tenant's as it is gained); its failure
    /// stops the node (who is logged in on which DN is rebuilt only when a tenant is loaded).
    pub async fn spawn(
        config: AgentStateConfig,
        supervisor: &Supervisor,
    ) -> Result<Self, ractor::SpawnErr> {
        let registry = supervisor.spawn("agent_state", Registry, config).await?;
        Ok(Self::new(registry))
    }
}

struct Registry;

struct RegistryState {
    config: AgentStateConfig,
    /// Agents with an actor, by (tenant, agent id).
    agents: HashMap<(String, String), ActorRef<AgentMsg>>,
    /// Who is logged in where: (tenant, DN) to agent id, and back.
    by_dn: HashMap<(String, String), String>,
    dn_of: HashMap<(String, String), String>,
    /// The one timer that ends every agent's timed wrap-up, and the key the next agent's
    /// actor asks it under.
    wakeups: Wakeups<AgentMsg>,
    next_key: u64,
}

impl Actor for Registry {
    type Msg = AgentStateMsg;
    type State = RegistryState;
    type Arguments = AgentStateConfig;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        config: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RegistryState {
            config,
            agents: HashMap::new(),
            by_dn: HashMap::new(),
            dn_of: HashMap::new(),
            wakeups: Wakeups::start(|_| AgentMsg::Wake),
            next_key: 0,
        };
        if let Ownership::Alone = state.config.ownership {
            let tenants: Vec<Arc<Tenant>> = state.config.directory.tenants().cloned().collect();
            for tenant in tenants {
                // Without its store the node cannot know who is logged in: refuse to start
                // rather than log everyone out.
                state.load(&myself, &tenant).await?;
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AgentStateMsg::Command {
                tenant,
                agent,
                command,
                reply,
            } => {
                // The waits are boxed: held inline they made this future, which ractor moves
                // whole for every message (a call's are the most), 4 KB.
                let actor = match Box::pin(state.agent(&myself, &tenant, &agent)).await {
                    Ok(actor) => actor,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                };
                let mut aor = None;
                if let Command::Login { dn, .. } = &command {
                    if let Err(e) = state.claim(&tenant, &agent, dn) {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                    aor = state.config.directory.by_name(&tenant).map(|t| t.aor(dn));
                }
                if actor
                    .cast(AgentMsg::Command {
                        command,
                        aor,
                        reply,
                    })
                    .is_err()
                {
                    tracing::warn!(%tenant, %agent, "agent actor stopped");
                }
            }
            AgentStateMsg::Status {
                tenant,
                agent,
                reply,
            } => match Box::pin(state.agent(&myself, &tenant, &agent)).await {
                Ok(actor) => {
                    let _ = actor.cast(AgentMsg::Status(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            AgentStateMsg::Registration {
                tenant,
                dn,
                present,
            } => {
                if let Some(actor) = state.on_dn(&tenant, &dn) {
                    let _ = actor.cast(AgentMsg::Registration(present));
                }
            }
            AgentStateMsg::Call {
                tenant,
                dn,
                call,
                ended,
                node,
                reply,
            } => {
                let mut waiting = None;
                if let Some(actor) = state.on_dn(&tenant, &dn) {
                    let (done, wait) = tokio::sync::oneshot::channel();
                    let node = node.unwrap_or_else(|| state.config.node.to_string());
                    let told = AgentMsg::Call {
                        call,
                        ended,
                        node,
                        done,
                    };
                    if actor.cast(told).is_ok() {
                        waiting = Some(wait);
                    }
                }
                let _ = reply.send(waiting);
            }
            AgentStateMsg::Gained { tenant, reply } => {
                let loaded = match state.config.directory.by_name(&tenant).cloned() {
                    Some(t) => {
                        state.forget(&tenant);
                        Box::pin(state.load(&myself, &t)).await
                    }
                    None => Ok(()),
                };
                if let Err(e) = &loaded {
                    tracing::error!(%tenant, error = %e, "the tenant's agents could not be loaded");
                }
                let _ = reply.send(loaded.map_err(|e| e.to_string()));
            }
            AgentStateMsg::Lost { tenant } => {
                let stopped = state.forget(&tenant);
                tracing::info!(%tenant, agents = stopped, "the tenant's agents are another node's now");
            }
            AgentStateMsg::Released { tenant, agent, dn } => {
                let key = (tenant.clone(), dn);
                if state.by_dn.get(&key) == Some(&agent) {
                    state.by_dn.remove(&key);
                }
                state.dn_of.remove(&(tenant, agent));
            }
            AgentStateMsg::ConfigChanged(directory) => {
                for ((tenant, agent), actor) in &state.agents {
                    if let Some(t) = directory.by_name(tenant) {
                        let _ = actor.cast(AgentMsg::Settings(Settings::of(t, agent)));
                    }
                }
                state.config.directory = directory;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // An agent's actor that failed is started again, from the store, at its next
        // request; the DNs it holds stay held.
        if let SupervisionEvent::ActorFailed(cell, why) = &event {
            tracing::error!(error = %why, "agent actor failed; it restarts from its stored state");
            let id = cell.get_id();
            state.agents.retain(|_, actor| actor.get_id() != id);
        }
        if let SupervisionEvent::ActorTerminated(cell, ..) = &event {
            let id = cell.get_id();
            state.agents.retain(|_, actor| actor.get_id() != id);
        }
        Ok(())
    }
}

impl RegistryState {
    /// Starts an actor for each agent of `tenant` the store holds as logged in.
    async fn load(
        &mut self,
        myself: &ActorRef<AgentStateMsg>,
        tenant: &Arc<Tenant>,
    ) -> Result<(), ActorProcessingErr> {
        let stored = self
            .config
            .store
            .load_all(&tenant.name)
            .await
            .map_err(|e| format!("agent states of tenant {}: {e}", tenant.name))?;
        let mut restored = 0;
        for s in stored {
            if agent_config(tenant, &s.agent).is_none() {
                tracing::warn!(tenant = %tenant.name, agent = %s.agent,
                    "stored agent is no longer configured: left logged out");
                continue;
            }
            let key = (tenant.name.clone(), s.agent.clone());
            self.by_dn
                .insert((tenant.name.clone(), s.dn.clone()), s.agent.clone());
            self.dn_of.insert(key.clone(), s.dn.clone());
            let actor = self.spawn_agent(myself, tenant, &s.agent).await?;
            self.agents.insert(key, actor);
            restored += 1;
        }
        if restored > 0 {
            tracing::info!(tenant = %tenant.name, agents = restored, "agents logged in");
        }
        Ok(())
    }

    /// Stops the actors of `tenant`'s agents and forgets who holds which DN, writing nothing
    /// (another node owns them now); how many agents there were.
    fn forget(&mut self, tenant: &str) -> usize {
        let mut stopped = 0;
        self.agents.retain(|(t, _), actor| {
            if t != tenant {
                return true;
            }
            actor.stop(Some("tenant lost".into()));
            stopped += 1;
            false
        });
        self.by_dn.retain(|(t, _), _| t != tenant);
        self.dn_of.retain(|(t, _), _| t != tenant);
        stopped
    }

    /// The actor of a configured agent, started if need be.
    async fn agent(
        &mut self,
        myself: &ActorRef<AgentStateMsg>,
        tenant: &str,
        agent: &str,
    ) -> Result<ActorRef<AgentMsg>, CommandError> {
        let key = (tenant.to_owned(), agent.to_owned());
        if let Some(actor) = self.agents.get(&key) {
            return Ok(actor.clone());
        }
        if !self.config.ownership.owns(tenant) {
            return Err(CommandError::Unavailable(
                crate::Error::NotOwner(tenant.to_owned()).to_string(),
            ));
        }
        let unknown = || CommandError::UnknownAgent {
            tenant: tenant.to_owned(),
            agent: agent.to_owned(),
        };
        let t = self
            .config
            .directory
            .by_name(tenant)
            .ok_or_else(unknown)?
            .clone();
        agent_config(&t, agent).ok_or_else(unknown)?;
        let actor = self
            .spawn_agent(myself, &t, agent)
            .await
            .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        self.agents.insert(key, actor.clone());
        Ok(actor)
    }

    async fn spawn_agent(
        &mut self,
        registry: &ActorRef<AgentStateMsg>,
        tenant: &Tenant,
        agent: &str,
    ) -> Result<ActorRef<AgentMsg>, ractor::SpawnErr> {
        let settings = Settings::of(tenant, agent);
        self.next_key += 1;
        let (actor, _) = Actor::spawn_linked(
            None,
            AgentActor,
            AgentArgs {
                tenant: tenant.name.clone(),
                agent: agent.to_owned(),
                settings,
                config: self.config.clone(),
                registry: registry.clone(),
                wakeups: self.wakeups.clone(),
                key: self.next_key,
            },
            registry.get_cell(),
        )
        .await?;
        Ok(actor)
    }

    /// Takes `dn` for `agent`'s login: refused when the agent is logged in already or another
    /// agent holds the DN.
    fn claim(&mut self, tenant: &str, agent: &str, dn: &str) -> Result<(), CommandError> {
        let t = self
            .config
            .directory
            .by_name(tenant)
            .ok_or_else(|| CommandError::UnknownTenant(tenant.to_owned()))?;
        if t.registering(dn).is_none() {
            return Err(CommandError::NotAnExtension {
                tenant: tenant.to_owned(),
                dn: dn.to_owned(),
            });
        }
        let key = (tenant.to_owned(), agent.to_owned());
        if let Some(current) = self.dn_of.get(&key) {
            return Err(Refusal::AlreadyLoggedIn(current.clone()).into());
        }
        let dn_key = (tenant.to_owned(), dn.to_owned());
        if let Some(holder) = self.by_dn.get(&dn_key) {
            return Err(CommandError::DnTaken {
                dn: dn.to_owned(),
                agent: holder.clone(),
            });
        }
        self.by_dn.insert(dn_key, agent.to_owned());
        self.dn_of.insert(key, dn.to_owned());
        Ok(())
    }

    /// The actor of the agent logged in on `dn`, if any.
    fn on_dn(&self, tenant: &str, dn: &str) -> Option<&ActorRef<AgentMsg>> {
        let agent = self.by_dn.get(&(tenant.to_owned(), dn.to_owned()))?;
        self.agents.get(&(tenant.to_owned(), agent.clone()))
    }
}

fn agent_config<'a>(tenant: &'a Tenant, agent: &str) -> Option<&'a crate::tenant::AgentConfig> {
    tenant.config.agents.iter().find(|a| a.id == agent)
}

/// What the tenant's configuration sets for one agent's machine.
#[derive(Debug, Clone, Copy)]
struct Settings {
    wrap_up: Duration,
    next_after_wrap_up: bool,
    /// Whether the agent's calls are recorded (its option `record`).
    record: bool,
}

impl Settings {
    fn of(tenant: &Tenant, agent: &str) -> Self {
        let own = agent_config(tenant, agent);
        let secs = own
            .and_then(|a| a.wrap_up_secs)
            .unwrap_or(tenant.config.wrap_up_secs);
        Self {
            wrap_up: Duration::from_secs(own.map_or(0, |_| secs.into())),
            next_after_wrap_up: tenant.next_state_after_wrap_up(),
            record: own.is_some_and(|a| crate::tenant::records(&a.options)),
        }
    }

    fn apply(self, agent: &mut Agent) {
        agent.wrap_up = self.wrap_up;
        agent.next_after_wrap_up = self.next_after_wrap_up;
    }
}

enum AgentMsg {
    Command {
        command: Command,
        /// For a login: the DN's address of record, to look its phone up.
        aor: Option<String>,
        reply: RpcReplyPort<Result<(), CommandError>>,
    },
    Status(RpcReplyPort<Result<Status, CommandError>>),
    Registration(bool),
    Call {
        call: String,
        ended: bool,
        /// The node running the call.
        node: String,
        done: tokio::sync::oneshot::Sender<()>,
    },
    Settings(Settings),
    /// Timed after-call work may be over.
    Wake,
}

struct AgentArgs {
    wakeups: Wakeups<AgentMsg>,
    key: u64,
    tenant: String,
    agent: String,
    settings: Settings,
    config: AgentStateConfig,
    registry: ActorRef<AgentStateMsg>,
}

struct AgentActor;

struct AgentActorState {
    wakeups: Wakeups<AgentMsg>,
    key: u64,
    tenant: String,
    agent: Agent,
    /// The node running each of the agent's calls.
    call_nodes: HashMap<String, String>,
    config: AgentStateConfig,
    registry: ActorRef<AgentStateMsg>,
    /// The state the agent is counted in, in the figures.
    counted: Option<&'static str>,
    /// Whether the agent's calls are recorded (its configuration).
    record: bool,
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentActorState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut agent = Agent::new(args.agent.clone(), args.settings.wrap_up);
        args.settings.apply(&mut agent);
        let mut call_nodes = HashMap::new();
        let stored = args.config.store.load(&args.tenant, &args.agent).await?;
        if let Some(stored) = stored {
            call_nodes = restore(&mut agent, stored, Instant::now());
        }
        let mut state = AgentActorState {
            wakeups: args.wakeups,
            key: args.key,
            tenant: args.tenant,
            agent,
            call_nodes,
            config: args.config,
            registry: args.registry,
            counted: None,
            record: args.settings.record,
        };
        state.count();
        state.report_availability();
        state.schedule(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let was_on = state.agent.session.as_ref().map(|s| s.dn.clone());
        match message {
            AgentMsg::Command {
                command,
                aor,
                reply,
            } => {
                let login_dn = match &command {
                    Command::Login { dn, .. } => Some(dn.clone()),
                    _ => None,
                };
                if let Some(aor) = aor {
                    // Whether the DN's phone is registered, as of the login.
                    match state.config.bindings.load(&state.tenant, &aor).await {
                        Ok(bindings) => state.agent.in_service = !bindings.is_empty(),
                        Err(e) => tracing::warn!(tenant = %state.tenant, agent = %state.agent.id,
                            error = %e, "cannot tell whether the DN's phone is registered"),
                    }
                }
                let before = state.agent.clone();
                let outcome = match state.agent.command(command) {
                    Ok(changes) => match state.commit(&changes, now).await {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            // Not stored: as if it never happened.
                            state.agent = before;
                            Err(CommandError::Unavailable(e.to_string()))
                        }
                    },
                    Err(refusal) => Err(refusal.into()),
                };
                let logged_out = state.agent.session.is_none();
                if let Some(dn) = login_dn.filter(|_| outcome.is_err() && logged_out) {
                    state.release(dn);
                }
                let _ = reply.send(outcome);
            }
            AgentMsg::Status(reply) => {
                let _ = reply.send(Ok(Status {
                    state: view(&state.agent, now),
                    available: state.agent.available(),
                }));
            }
            AgentMsg::Registration(present) => {
                let changes = state.agent.registration(present);
                state.commit_logged(&changes, now).await;
            }
            AgentMsg::Call {
                call,
                ended,
                node,
                done,
            } => {
                let changes = if ended {
                    state.call_nodes.remove(&call);
                    state.agent.call_ended(&call, now)
                } else {
                    state.call_nodes.insert(call.clone(), node);
                    state.new_call(&call);
                    state.agent.call_began(&call)
                };
                state.commit_logged(&changes, now).await;
                let _ = done.send(());
            }
            AgentMsg::Settings(settings) => {
                settings.apply(&mut state.agent);
                state.record = settings.record;
            }
            AgentMsg::Wake => {
                let changes = state.agent.handle_timeout(now);
                state.commit_logged(&changes, now).await;
            }
        }
        // Logged out: by the desktop, or by a next state taken as a call or wrap-up ended.
        if let Some(dn) = was_on.filter(|_| state.agent.session.is_none()) {
            state.release(dn);
        }
        state.count();
        state.schedule(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.wakeups.forget(state.key);
        let figures = &state.config.figures;
        figures.agent_moved(&state.tenant, state.counted.take(), None);
        Ok(())
    }
}

impl AgentActorState {
    /// Counts the agent in its state now, in the figures.
    fn count(&mut self) {
        let now = match self.agent.session {
            None => "LoggedOut",
            Some(_) => mode_parts(&self.agent.mode, Instant::now()).0,
        };
        let figures = &self.config.figures;
        figures.agent_moved(&self.tenant, self.counted.replace(now), Some(now));
    }

    /// Stores the agent's state and writes its changes to the stream, in order.
    async fn commit(&self, changes: &[Change], now: Instant) -> crate::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let stored = stored(&self.agent, &self.call_nodes, now);
        self.config
            .store
            .save(&self.tenant, &self.agent.id, stored.as_ref())
            .await?;
        self.report_availability();
        let at_ms = crate::unix_ms();
        let payload = view(&self.agent, now);
        for change in changes {
            tracing::debug!(tenant = %self.tenant, agent = %self.agent.id, change = change.name(),
                "agent state");
            let event = new_event(
                &self.tenant,
                TOPIC_AGENTSTATE,
                format!("{}:{}", self.tenant, self.agent.id),
                change.name(),
                Payload::Agent(payload.clone()),
                at_ms,
            );
            if let Err(e) = self.config.events.publish(event).await {
                tracing::warn!(tenant = %self.tenant, agent = %self.agent.id,
                    kind = change.name(), error = %e, "agent event not stored");
            }
        }
        Ok(())
    }

    /// A call reached the agent: recorded if the agent's calls are, and monitored by the
    /// supervisor monitoring its calls (each from its answer on; the call reports whether it
    /// could be).
    fn new_call(&self, call: &str) {
        let (Some(session), Some(calls)) = (&self.agent.session, self.config.calls.get()) else {
            return;
        };
        if self.agent.calls.contains(call) {
            return;
        }
        let mut controls = Vec::with_capacity(2);
        if self.record {
            controls.push(Control::Record(RecordAction::Start));
        }
        if let Some(m) = &self.agent.monitored {
            controls.push(Control::Monitor {
                supervisor: m.supervisor.clone(),
                mode: m.mode,
            });
        }
        if controls.is_empty() {
            return;
        }
        let (calls, tenant, call, dn) = (
            calls.clone(),
            self.tenant.clone(),
            call.to_owned(),
            session.dn.clone(),
        );
        tokio::spawn(async move {
            for control in controls {
                if let Err(e) = calls.control(&tenant, &call, &dn, control).await {
                    tracing::info!(%tenant, %call, %dn, error = %e,
                        "the agent's call cannot be recorded or monitored as configured");
                }
            }
        });
    }

    /// Tells routing whether the agent may be offered a call.
    fn report_availability(&self) {
        let Some(rq) = &self.config.rq else {
            return;
        };
        let session = self.agent.session.as_ref();
        rq.availability(Availability {
            tenant: self.tenant.clone(),
            agent: self.agent.id.clone(),
            dn: session.map(|s| s.dn.clone()).unwrap_or_default(),
            queues: session.map(|s| s.queues.clone()).unwrap_or_default(),
            available: self.agent.available(),
            on_call: !self.agent.calls.is_empty(),
        });
    }

    /// As [`Self::commit`], for changes that happen whether or not they can be stored (a
    /// phone that went away, a call that ended).
    async fn commit_logged(&self, changes: &[Change], now: Instant) {
        if let Err(e) = self.commit(changes, now).await {
            tracing::warn!(tenant = %self.tenant, agent = %self.agent.id, error = %e,
                "agent state not stored");
        }
    }

    fn release(&self, dn: String) {
        let _ = self.registry.cast(AgentStateMsg::Released {
            tenant: self.tenant.clone(),
            agent: self.agent.id.clone(),
            dn,
        });
    }

    /// Asks to be woken when timed wrap-up ends (the node's one timer keeps the earliest
    /// instant asked under the agent's key).
    fn schedule(&self, myself: &ActorRef<AgentMsg>) {
        if let Some(at) = self.agent.poll_timeout() {
            self.wakeups.at(self.key, at, myself);
        }
    }
}

/// The state as events and the desktop show it.
fn view(agent: &Agent, now: Instant) -> AgentView {
    let (state, reason, work_mode, until) = match agent.session {
        None => ("LoggedOut", None, None, None),
        Some(_) => mode_parts(&agent.mode, now),
    };
    let work_mode = work_mode.map_or("", WorkMode::name);
    let session = agent.session.as_ref();
    let (monitored_by, monitor_mode) = match &agent.monitored {
        Some(m) => (m.supervisor.clone(), m.mode.name().to_owned()),
        None => Default::default(),
    };
    let (next_reason, next_work_mode) = match &agent.next {
        Some(NextState::NotReady { reason, work_mode }) => (
            reason.clone().unwrap_or_default(),
            work_mode.name().to_owned(),
        ),
        _ => Default::default(),
    };
    AgentView {
        agent_id: agent.id.clone(),
        dn: session.map(|s| s.dn.clone()).unwrap_or_default(),
        queues: session.map(|s| s.queues.clone()).unwrap_or_default(),
        state: state.to_owned(),
        reason: reason.unwrap_or_default(),
        work_mode: work_mode.to_owned(),
        dnd: agent.dnd,
        in_service: agent.in_service,
        calls: agent.calls.iter().cloned().collect(),
        wrap_up_until_ms: until.unwrap_or(0) as i64,
        next_state: agent.next.as_ref().map_or("", NextState::name).to_owned(),
        next_reason,
        next_work_mode,
        monitored_by,
        monitor_mode,
    }
}

/// A mode as events and the store name it: the state, the NotReady reason, the work mode, and
/// when timed wrap-up ends (UTC milliseconds).
fn mode_parts(
    mode: &Mode,
    now: Instant,
) -> (&'static str, Option<String>, Option<WorkMode>, Option<u64>) {
    match mode {
        Mode::Ready => ("Ready", None, None, None),
        Mode::NotReady { reason, work_mode } => {
            ("NotReady", reason.clone(), Some(*work_mode), None)
        }
        Mode::AfterCallWork { until } => (
            "AfterCallWork",
            None,
            Some(WorkMode::AfterCallWork),
            until.map(|u| wall_ms(u, now)),
        ),
    }
}

/// The wall-clock time of `at`, in UTC milliseconds.
fn wall_ms(at: Instant, now: Instant) -> u64 {
    let now_ms = crate::unix_ms();
    match at.checked_duration_since(now) {
        Some(ahead) => now_ms + ahead.as_millis() as u64,
        None => now_ms.saturating_sub(now.duration_since(at).as_millis() as u64),
    }
}

fn stored(agent: &Agent, call_nodes: &HashMap<String, String>, now: Instant) -> Option<Stored> {
    let session = agent.session.as_ref()?;
    let (mode, reason, work_mode, until) = mode_parts(&agent.mode, now);
    let work_mode = work_mode.unwrap_or(WorkMode::Unknown);
    Some(Stored {
        agent: agent.id.clone(),
        dn: session.dn.clone(),
        queues: session.queues.clone(),
        mode: mode.to_owned(),
        reason,
        work_mode: work_mode.name().to_owned(),
        wrap_up_until_ms: until,
        dnd: agent.dnd,
        in_service: agent.in_service,
        calls: agent
            .calls
            .iter()
            .map(|call| StoredCall {
                call: call.clone(),
                node: call_nodes.get(call).cloned().unwrap_or_default(),
            })
            .collect(),
        next_state: agent.next.as_ref().map(|n| n.name().to_owned()),
        next_reason: match &agent.next {
            Some(NextState::NotReady { reason, .. }) => reason.clone(),
            _ => None,
        },
        next_work_mode: match &agent.next {
            Some(NextState::NotReady { work_mode, .. }) => Some(work_mode.name().to_owned()),
            _ => None,
        },
        monitored_by: agent.monitored.as_ref().map(|m| m.supervisor.clone()),
        monitor_mode: agent.monitored.as_ref().map(|m| m.mode.name().to_owned()),
    })
}

/// Puts the stored state back into `agent`; the node of each of its calls.
fn restore(agent: &mut Agent, s: Stored, now: Instant) -> HashMap<String, String> {
    agent.session = Some(Session {
        dn: s.dn,
        queues: s.queues,
    });
    agent.mode = match s.mode.as_str() {
        "Ready" => Mode::Ready,
        "AfterCallWork" => Mode::AfterCallWork {
            until: s
                .wrap_up_until_ms
                .map(|ms| now + Duration::from_millis(ms.saturating_sub(crate::unix_ms()))),
        },
        _ => Mode::NotReady {
            reason: s.reason,
            work_mode: WorkMode::parse(&s.work_mode).unwrap_or(WorkMode::Unknown),
        },
    };
    agent.dnd = s.dnd;
    agent.in_service = s.in_service;
    agent.calls = s.calls.iter().map(|c| c.call.clone()).collect();
    agent.next = match s.next_state.as_deref() {
        Some("Logout") => Some(NextState::Logout),
        Some("NotReady") => Some(NextState::NotReady {
            reason: s.next_reason,
            work_mode: s
                .next_work_mode
                .as_deref()
                .and_then(WorkMode::parse)
                .unwrap_or(WorkMode::Unknown),
        }),
        _ => None,
    };
    agent.monitored = s
        .monitored_by
        .zip(s.monitor_mode.as_deref().and_then(MonitorMode::parse))
        .map(|(supervisor, mode)| Monitoring { supervisor, mode });
    s.calls.into_iter().map(|c| (c.call, c.node)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_state_comes_back_as_it_was() {
        let now = Instant::now();
        let mut agent = Agent::new("a1001", Duration::from_secs(30));
        agent
            .command(Command::Login {
                dn: "1001".into(),
                queues: vec!["support".into()],
            })
            .expect("login");
        agent
            .command(Command::NotReady {
                reason: Some("lunch".into()),
                work_mode: WorkMode::WalkAway,
            })
            .expect("not ready");
        agent.command(Command::Dnd(true)).expect("dnd");
        let by = Monitoring {
            supervisor: "1020".into(),
            mode: MonitorMode::Barge,
        };
        agent
            .command(Command::Monitored(Some(by.clone())))
            .expect("monitored");
        let s = stored(&agent, &HashMap::new(), now).expect("logged in");
        let mut back = Agent::new("a1001", Duration::from_secs(30));
        restore(&mut back, s, now);
        assert_eq!(back.session, agent.session);
        assert_eq!(back.mode, agent.mode);
        assert!(back.dnd);
        assert_eq!(back.monitored, Some(by));
        assert_eq!(view(&back, now), view(&agent, now));
    }

    #[test]
    fn timed_wrap_up_survives_as_wall_clock_time() {
        let now = Instant::now();
        let mut agent = Agent::new("a1001", Duration::from_secs(30));
        agent
            .command(Command::Login {
                dn: "1001".into(),
                queues: Vec::new(),
            })
            .expect("login");
        agent.command(Command::Ready).expect("ready");
        agent.call_began("c1");
        agent.call_ended("c1", now);
        let s = stored(&agent, &HashMap::new(), now).expect("logged in");
        let until = s.wrap_up_until_ms.expect("timed");
        assert!(until.abs_diff(crate::unix_ms() + 30_000) < 1000);
        let mut back = Agent::new("a1001", Duration::from_secs(30));
        restore(&mut back, s, now);
        let due = back.poll_timeout().expect("still timed");
        assert!(due.duration_since(now).as_secs() >= 29);
        assert!(stored(&Agent::new("a1002", Duration::ZERO), &HashMap::new(), now).is_none());
    }
}
