//! The face of the RQ system: agents' availability, the calls (and callbacks) waiting for
//! them, the matches it tells, the figures it gives, and the handle that reaches it (see
//! [`crate::rq`]).

use std::sync::Arc;

use ractor::{ActorRef, RpcReplyPort};
use switchboard_routing::strategy::Overflow;
use switchboard_routing::target::Target;

use crate::messages::bus::{Answer, OwnerBound, OwnerRoute, ToOwner};
use crate::tenant::Directory;

/// An agent's availability, as agent state reports it after each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    pub tenant: String,
    pub agent: String,
    /// The DN the agent is logged in on; empty when logged out.
    pub dn: String,
    /// The queues (agent groups) the agent serves this session.
    pub queues: Vec<String>,
    /// Whether routing may offer the agent a call.
    pub available: bool,
    /// Whether the agent's DN is on a call (a reserved agent on a call keeps its
    /// reservation: the call is reaching it).
    pub on_call: bool,
}

/// A virtual queue's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: String,
    pub waiting: u32,
    /// Ready agents (not reserved) who can take a call waiting in the queue now: who satisfy
    /// its target as it stands (after overflow). With no call waiting, those serving the
    /// queue (`ready_serving`).
    pub ready: u32,
    /// Ready agents (not reserved) who serve the queue (logged in to it), whatever the
    /// targets of its calls.
    pub ready_serving: u32,
    /// Agents serving the queue who are on calls or reserved for one.
    pub busy: u32,
    /// The estimated wait of a call joining now, if any call was served yet.
    pub ewt_ms: Option<u64>,
    /// The longest wait of a call now waiting.
    pub oldest_ms: u64,
}

/// Where a waiting call is, for a callback's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub queue: String,
    pub position: u32,
    pub ewt_ms: Option<u64>,
    /// The agent reserved for it, if any.
    pub agent: Option<String>,
}

/// What `rq` tells the one a waiting call belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// An agent is reserved for the call.
    Matched {
        call: String,
        agent: String,
        dn: String,
    },
    /// The agent reserved is no longer available before the call reached it.
    Unreserved { call: String, agent: String },
}

/// Who a waiting call's matches are told to: its routing session, or a callback. Cheap to
/// clone.
#[derive(Clone)]
pub struct Waiter(Arc<dyn Fn(Told) + Send + Sync>);

impl Waiter {
    pub fn new(tell: impl Fn(Told) + Send + Sync + 'static) -> Self {
        Self(Arc::new(tell))
    }

    pub(crate) fn tell(&self, told: Told) {
        (self.0)(told)
    }
}

pub enum RqMsg {
    Availability(Availability),
    /// A call waits in `queue` for an agent of `target`; `since` is its age (kept when it
    /// comes back after an agent did not answer). The match goes to `waiter`.
    Submit {
        tenant: String,
        call: String,
        queue: String,
        target: Target,
        priority: u32,
        since: u64,
        waiter: Waiter,
    },
    Overflow {
        tenant: String,
        call: String,
        change: Overflow,
    },
    /// The call no longer waits (abandoned, timed out, routed elsewhere); a reservation for
    /// it is given back.
    Withdraw {
        tenant: String,
        call: String,
    },
    /// The agent reserved for `call` let it ring unanswered: it takes no call until agent
    /// state reports it again (not ready, then ready).
    Rona {
        tenant: String,
        agent: String,
    },
    /// The call reached the agent reserved for it, after waiting `waited_ms`.
    Delivered {
        tenant: String,
        call: String,
        waited_ms: u64,
    },
    /// A call routed to `agent` (reserved for it by the tenant's last owner) as a new owner
    /// takes the tenant over: the agent is held for it as before.
    Restore {
        tenant: String,
        call: String,
        queue: String,
        agent: String,
        waiter: Waiter,
    },
    /// Forgets everything of `tenant`: another node owns it now, or this one takes it over
    /// afresh.
    Forget {
        tenant: String,
    },
    Stats {
        tenant: String,
        reply: RpcReplyPort<Vec<QueueStats>>,
    },
    Place {
        tenant: String,
        call: String,
        reply: RpcReplyPort<Option<Place>>,
    },
    ConfigChanged(Arc<Directory>),
}

/// Reaches the RQ system. Started by [`crate::rq`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Rq {
    actor: ActorRef<RqMsg>,
    /// Where a tenant's queues are asked of when this node is not its owner.
    owner: OwnerRoute,
}

impl Rq {
    pub(crate) fn new(actor: ActorRef<RqMsg>) -> Self {
        Self {
            actor,
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

    /// This handle reaching this node's own queues only.
    pub fn local(&self) -> Self {
        Self::new(self.actor.clone())
    }

    pub fn send(&self, msg: RqMsg) {
        let _ = self.actor.cast(msg);
    }

    pub fn availability(&self, a: Availability) {
        self.send(RqMsg::Availability(a));
    }

    /// Every virtual queue of the tenant with its figures.
    pub async fn stats(&self, tenant: &str) -> Vec<QueueStats> {
        if let Some(owner) = self.owner.elsewhere(tenant) {
            return match owner.ask(tenant, OwnerBound::QueueStats).await {
                Ok(Answer::QueueStats(stats)) => stats,
                Ok(other) => {
                    tracing::warn!(
                        tenant,
                        answer = other.kind(),
                        "queue figures: the owner answered something else"
                    );
                    Vec::new()
                }
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "queue figures not had from the tenant's owner");
                    Vec::new()
                }
            };
        }
        ractor::call!(self.actor, |reply| RqMsg::Stats {
            tenant: tenant.to_owned(),
            reply
        })
        .unwrap_or_default()
    }

    /// Where call `call` waits, if it does.
    pub async fn place(&self, tenant: &str, call: &str) -> Option<Place> {
        ractor::call!(self.actor, |reply| RqMsg::Place {
            tenant: tenant.to_owned(),
            call: call.to_owned(),
            reply
        })
        .ok()
        .flatten()
    }

    pub fn follow_config(&self, changes: &ractor::OutputPort<Arc<Directory>>) {
        changes.subscribe(self.actor.clone(), |d| Some(RqMsg::ConfigChanged(d)));
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
