//! The face of the agent-state system: what desktops, routing, the registrar and call state ask
//! of agents, and the handle that asks it (see [`crate::agent_state`]).

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use switchboard_proto::events::AgentState as AgentView;

use crate::messages::bus::{Answer, BusError, OwnerBound, OwnerRoute, ToOwner};
use crate::tenant::Directory;

/// What the agent does when not ready (Genesys work modes, as the Workspace API names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkMode {
    Unknown,
    AuxWork,
    AfterCallWork,
    WalkAway,
}

impl WorkMode {
    pub fn name(self) -> &'static str {
        match self {
            WorkMode::Unknown => "Unknown",
            WorkMode::AuxWork => "AuxWork",
            WorkMode::AfterCallWork => "AfterCallWork",
            WorkMode::WalkAway => "WalkAway",
        }
    }

    /// The work mode [`WorkMode::name`] wrote.
    pub fn parse(name: &str) -> Option<Self> {
        [
            WorkMode::Unknown,
            WorkMode::AuxWork,
            WorkMode::AfterCallWork,
            WorkMode::WalkAway,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// What the desktop asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Login {
        dn: String,
        queues: Vec<String>,
    },
    Logout,
    Ready,
    NotReady {
        reason: Option<String>,
        work_mode: WorkMode,
    },
    /// Wrap-up asked by the agent: untimed, until Ready.
    AfterCallWork,
    Dnd(bool),
    /// A supervisor monitors each of the agent's calls from the next one on, until
    /// stopped (`None`), or the agent logs out.
    Monitored(Option<Monitoring>),
}

/// A supervisor monitoring every call of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitoring {
    /// The supervisor's DN.
    pub supervisor: String,
    pub mode: crate::messages::sip_cluster::MonitorMode,
}

/// Why a command is refused; the state is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the agent is not logged in")]
    NotLoggedIn,
    #[error("the agent is already logged in on DN {0}")]
    AlreadyLoggedIn(String),
    #[error("the agent's DN {0} is out of service (its phone is not registered)")]
    OutOfService(String),
}

/// Why an agent operation was not carried out; the agent's state is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no agent {agent:?} in tenant {tenant:?}")]
    UnknownAgent { tenant: String, agent: String },
    #[error("no tenant {0:?}")]
    UnknownTenant(String),
    #[error("DN {dn:?} is not an extension of tenant {tenant}")]
    NotAnExtension { tenant: String, dn: String },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("DN {dn} is in use by agent {agent}")]
    DnTaken { dn: String, agent: String },
    #[error("agent state unavailable: {0}")]
    Unavailable(String),
}

impl CommandError {
    /// Whether the operation is not allowed in the current state (rather than malformed or
    /// naming something unknown).
    pub fn is_precondition(&self) -> bool {
        matches!(
            self,
            CommandError::Refused(_) | CommandError::DnTaken { .. }
        )
    }
}

/// An agent's state as the desktop sees it, with whether routing may offer it a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: AgentView,
    pub available: bool,
}

/// How long a call's report waits for its agents' changes to be written.
const CALL_REPORT_WAIT: Duration = Duration::from_secs(2);

/// Reaches the agent-state system. Started by [`crate::agent_state`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AgentState {
    registry: ActorRef<AgentStateMsg>,
    /// Where a tenant's agents are reached when this node is not its owner.
    owner: OwnerRoute,
}

impl AgentState {
    pub(crate) fn new(registry: ActorRef<AgentStateMsg>) -> Self {
        Self {
            registry,
            owner: OwnerRoute::default(),
        }
    }

    /// This handle, asking what is for a tenant owned elsewhere through `owner`.
    pub fn routed_through(self, owner: Arc<dyn ToOwner>) -> Self {
        Self {
            owner: OwnerRoute::through(owner),
            ..self
        }
    }

    /// This handle reaching this node's own agents only.
    pub fn local(&self) -> Self {
        Self::new(self.registry.clone())
    }

    /// A desktop's command for an agent.
    pub async fn command(
        &self,
        tenant: &str,
        agent: &str,
        command: Command,
    ) -> Result<(), CommandError> {
        if let Some(owner) = self.owner.elsewhere(tenant) {
            let asked = OwnerBound::Command {
                agent: agent.to_owned(),
                command,
            };
            return match owner.ask(tenant, asked).await {
                Ok(Answer::Command(result)) => result,
                Ok(other) => Err(CommandError::Unavailable(
                    BusError::WrongAnswer(other.kind()).to_string(),
                )),
                Err(e) => Err(CommandError::Unavailable(e.to_string())),
            };
        }
        let asked = ractor::call!(self.registry, |reply| AgentStateMsg::Command {
            tenant: tenant.to_owned(),
            agent: agent.to_owned(),
            command,
            reply,
        });
        asked.unwrap_or_else(|e| Err(CommandError::Unavailable(e.to_string())))
    }

    /// An agent's state now.
    pub async fn status(&self, tenant: &str, agent: &str) -> Result<Status, CommandError> {
        if let Some(owner) = self.owner.elsewhere(tenant) {
            let asked = OwnerBound::Status {
                agent: agent.to_owned(),
            };
            return match owner.ask(tenant, asked).await {
                Ok(Answer::Status(result)) => result,
                Ok(other) => Err(CommandError::Unavailable(
                    BusError::WrongAnswer(other.kind()).to_string(),
                )),
                Err(e) => Err(CommandError::Unavailable(e.to_string())),
            };
        }
        let asked = ractor::call!(self.registry, |reply| AgentStateMsg::Status {
            tenant: tenant.to_owned(),
            agent: agent.to_owned(),
            reply,
        });
        asked.unwrap_or_else(|e| Err(CommandError::Unavailable(e.to_string())))
    }

    /// A DN's phone registered (its first binding) or went away (its last).
    pub fn registration(&self, tenant: &str, dn: &str, present: bool) {
        if let Some(owner) = self.owner.elsewhere(tenant) {
            let told = OwnerBound::Registration {
                dn: dn.to_owned(),
                present,
            };
            return owner.send(tenant, told);
        }
        let _ = self.registry.cast(AgentStateMsg::Registration {
            tenant: tenant.to_owned(),
            dn: dn.to_owned(),
            present,
        });
    }

    /// A call involving `dns` changed (`ended` once it is over), and the DNs in `left` are
    /// no longer among its parties; returns once the changes of the agents on those DNs are
    /// written (or after a bounded wait).
    pub async fn call_changed(
        &self,
        tenant: &str,
        dns: &[String],
        left: &[String],
        call: &str,
        ended: bool,
    ) {
        self.call_changed_on(None, tenant, dns, left, call, ended)
            .await
    }

    /// As [`Self::call_changed`], for a call that node `node` runs (`None`: this one).
    pub async fn call_changed_on(
        &self,
        node: Option<&str>,
        tenant: &str,
        dns: &[String],
        left: &[String],
        call: &str,
        ended: bool,
    ) {
        if let Some(owner) = self.owner.elsewhere(tenant) {
            let asked = OwnerBound::CallChanged {
                dns: dns.to_vec(),
                left: left.to_vec(),
                call: call.to_owned(),
                ended,
            };
            if let Err(e) = owner.ask(tenant, asked).await {
                tracing::warn!(tenant, call, error = %e, "agents' changes for a call not confirmed");
            }
            return;
        }
        // One agent after the other, so that their changes are written in a known order.
        let each = dns
            .iter()
            .map(|d| (d, ended))
            .chain(left.iter().map(|d| (d, true)));
        for (dn, ended) in each {
            let asked = ractor::call_t!(
                self.registry,
                |reply| AgentStateMsg::Call {
                    tenant: tenant.to_owned(),
                    dn: dn.clone(),
                    call: call.to_owned(),
                    ended,
                    node: node.map(str::to_owned),
                    reply,
                },
                CALL_REPORT_WAIT.as_millis() as u64
            );
            let Ok(waiting) = asked else {
                tracing::warn!(
                    tenant,
                    call,
                    "agent state did not take a call's change in time"
                );
                return;
            };
            if let Some(done) = waiting
                && tokio::time::timeout(CALL_REPORT_WAIT, done).await.is_err()
            {
                tracing::warn!(
                    tenant,
                    call,
                    dn,
                    "an agent's change for a call was not written in time"
                );
            }
        }
    }

    /// This node became `tenant`'s owner: returns once its agents are loaded.
    pub async fn gained(&self, tenant: &str) -> Result<(), String> {
        let asked = ractor::call!(self.registry, |reply| AgentStateMsg::Gained {
            tenant: tenant.to_owned(),
            reply
        });
        asked.unwrap_or_else(|e| Err(e.to_string()))
    }

    /// This node no longer owns `tenant`.
    pub fn lost(&self, tenant: &str) {
        let _ = self.registry.cast(AgentStateMsg::Lost {
            tenant: tenant.to_owned(),
        });
    }

    /// Follows the tenant configuration as it changes.
    pub fn follow_config(&self, changes: &ractor::OutputPort<Arc<Directory>>) {
        changes.subscribe(self.registry.clone(), |d| {
            Some(AgentStateMsg::ConfigChanged(d))
        });
    }

    pub fn stop(&self) {
        self.registry.stop(None);
    }
}

/// What the agent-state system takes.
pub enum AgentStateMsg {
    Command {
        tenant: String,
        agent: String,
        command: Command,
        reply: RpcReplyPort<Result<(), CommandError>>,
    },
    Status {
        tenant: String,
        agent: String,
        reply: RpcReplyPort<Result<Status, CommandError>>,
    },
    Registration {
        tenant: String,
        dn: String,
        present: bool,
    },
    /// A call's change for the agent on `dn` (`ended`: the call is over for it), from the
    /// node running it (`None`: this one); answers with a receiver told when the agent's
    /// change is written, if an agent is there.
    Call {
        tenant: String,
        dn: String,
        call: String,
        ended: bool,
        node: Option<String>,
        reply: RpcReplyPort<Option<tokio::sync::oneshot::Receiver<()>>>,
    },
    /// This node became `tenant`'s owner: its agents are loaded from the store, then the
    /// answer (an error if the store could not be read).
    Gained {
        tenant: String,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// This node no longer owns `tenant`: its agents' actors stop, writing nothing.
    Lost {
        tenant: String,
    },
    /// An agent gave up its DN: it logged out, or its login could not be stored.
    Released {
        tenant: String,
        agent: String,
        dn: String,
    },
    ConfigChanged(Arc<Directory>),
}
