//! The node's root supervisor (design.md "The actor systems"): each system's top actors are
//! linked under it, and each says, when it is started, what happens should one of them fail (or
//! stop while the node runs):
//!
//! | system | a failed top actor | why |
//! |---|---|---|
//! | `call_state` (each shard) | started again, under its name | a shard holds only which calls of its threads are open; its handle finds the new one by name |
//! | `sip_proxy` | stops the node | it owns the sockets and the edge's transactions |
//! | `sip_cluster` | stops the node | it holds the table of calls and their shards; a call that panics is dropped by its shard and forgotten, not restarted (a call's dialogs cannot be rebuilt yet); a shard that fails fails the cluster |
//! | `registrar` | stops the node | the edge's router holds its shards |
//! | `agent_state` | stops the node | who is logged in on which DN is rebuilt only at start (an agent's own actor that fails is started again by it, from the store) |
//! | `rq` | stops the node | waiting calls live only in its memory: started again, it would drop them silently |
//! | `ors` (and its callbacks) | stops the node | routing sessions live only in its memory |
//! | `tenant` | stops the node | configuration changes reach the systems through it |
//!
//! Stopping the node logs the system and why, and the node exits with a non-zero status, so
//! that its service manager starts it again whole rather than half.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::watch;

/// Starts a system's actor again, linked under the supervisor cell given.
pub type Restart = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>
        + Send
        + Sync,
>;

/// What happens when a top actor fails.
#[derive(Clone)]
pub enum Policy {
    /// It is started again.
    Restart(Restart),
    /// The node stops, with a non-zero status.
    StopNode,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Restart(_) => "Restart",
            Policy::StopNode => "StopNode",
        })
    }
}

/// Why the node must stop: the system whose actor failed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub system: &'static str,
    pub reason: String,
}

/// The root supervisor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Supervisor {
    actor: ActorRef<SupervisorMsg>,
    /// Set once the node stops on purpose: actors that stop from then on are expected to. A
    /// flag rather than a message, for a child's end may reach the supervisor before it.
    stopping: Arc<AtomicBool>,
}

pub enum SupervisorMsg {
    /// `cell`, linked under the supervisor, is a top actor of `system`.
    Watch {
        cell: ActorCell,
        system: &'static str,
        policy: Policy,
    },
}

impl Supervisor {
    /// The supervisor, and what says the node must stop (`None` while it may run).
    pub async fn start() -> Result<(Self, watch::Receiver<Option<Fatal>>), SpawnErr> {
        let (fatal, stop) = watch::channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        let (actor, _) = Actor::spawn(None, Root, (fatal, stopping.clone())).await?;
        Ok((Self { actor, stopping }, stop))
    }

    /// The cell top actors are linked under.
    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// Starts `actor` linked under the supervisor as a top actor of `system` whose failure
    /// stops the node.
    pub async fn spawn<A: Actor>(
        &self,
        system: &'static str,
        actor: A,
        args: A::Arguments,
    ) -> Result<ActorRef<A::Msg>, SpawnErr> {
        let (started, _) = Actor::spawn_linked(None, actor, args, self.cell()).await?;
        self.watch(started.get_cell(), system, Policy::StopNode);
        Ok(started)
    }

    /// `cell` (linked under [`Supervisor::cell`]) is a top actor of `system`.
    pub fn watch(&self, cell: ActorCell, system: &'static str, policy: Policy) {
        let _ = self.actor.cast(SupervisorMsg::Watch {
            cell,
            system,
            policy,
        });
    }

    /// The node stops on purpose: its actors' ends are no failure.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

struct Root;

struct RootState {
    watched: HashMap<ActorId, (&'static str, Policy)>,
    stopping: Arc<AtomicBool>,
    fatal: watch::Sender<Option<Fatal>>,
}

impl Actor for Root {
    type Msg = SupervisorMsg;
    type State = RootState;
    type Arguments = (watch::Sender<Option<Fatal>>, Arc<AtomicBool>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (fatal, stopping): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RootState {
            watched: HashMap::new(),
            stopping,
            fatal,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Watch {
                cell,
                system,
                policy,
            } => {
                state.watched.insert(cell.get_id(), (system, policy));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.unwrap_or_else(|| "stopped".into());
                (cell, reason)
            }
            _ => return Ok(()),
        };
        let watched = state.watched.remove(&cell.get_id());
        if state.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        // An actor not yet watched when it failed belongs to a system starting: the node
        // cannot count on it.
        let (system, policy) = watched.unwrap_or(("a system starting", Policy::StopNode));
        match policy {
            Policy::Restart(restart) => match restart(myself.get_cell()).await {
                Ok(again) => {
                    tracing::warn!(system, reason = %reason, "an actor of the system stopped: started again");
                    state
                        .watched
                        .insert(again.get_id(), (system, Policy::Restart(restart)));
                }
                Err(e) => {
                    tracing::error!(system, reason = %reason, error = %e,
                        "an actor of the system stopped and could not be started again: stopping the node");
                    state.fatal.send_replace(Some(Fatal { system, reason }));
                }
            },
            Policy::StopNode => {
                tracing::error!(system, reason = %reason, "the system failed: stopping the node");
                state.fatal.send_replace(Some(Fatal { system, reason }));
            }
        }
        Ok(())
    }
}
