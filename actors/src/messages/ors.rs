//! The face of the orchestration system: a call's route request and reports, the orders its
//! routing session gives the call, and the handle that reaches the sessions (see
//! [`crate::ors`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::DerivedActorRef;
use switchboard_routing::strategy::{Overflow, Route, Treatment};

use crate::messages::bus::{OwnerBound, OwnerRoute, RouteCall, ToOwner};
use crate::messages::rq::{Told, Waiter};
use crate::messages::sip_cluster::CallInbox;
use crate::tenant::Tenant;

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
    /// Record the call from its answer.
    Record,
    /// The supervisor at `dn` monitors the call from its answer.
    Monitor {
        dn: String,
        mode: crate::messages::sip_cluster::MonitorMode,
    },
    /// The call waits in `queue` for an agent of `target` (as written), at `priority`.
    Queued {
        queue: String,
        target: String,
        priority: u32,
    },
    /// Its target or priority changed as it waited.
    Overflow(Overflow),
    Route(Route),
    /// The agent reserved gave the reservation back before answering: stop ringing it.
    Unreserved {
        agent: String,
    },
}

/// Where a GES callback is, for `GET /callbacks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackStatus {
    pub id: String,
    /// queued, dialing, cancelled or failed.
    pub state: String,
    pub customer: String,
    pub queue: String,
    /// Its place in the queue (1 first) while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ewt_ms: Option<u64>,
    /// The agent reserved for it, once one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The call placed, once dialing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Where a routing session's orders go.
#[derive(Debug, Clone)]
pub enum CallAddr {
    /// The call, on this node.
    Here(CallInbox<Order>),
    /// The node running the call, which hands the orders to it by its id.
    Node(String),
}

/// Told once what a message changed is kept (so that the bus may acknowledge it).
pub type Kept = tokio::sync::oneshot::Sender<()>;

/// What the orchestration system takes.
pub enum OrsMsg {
    /// A call reached a routing point: a session starts, whose orders go to `call`.
    Request {
        request: Box<RouteRequest>,
        call: CallAddr,
        kept: Option<Kept>,
    },
    /// What a call at a routing point tells its session.
    Report {
        call: String,
        report: Report,
        kept: Option<Kept>,
    },
    /// From `rq`: an agent is reserved for a call, or no longer.
    Rq(Told),
    /// This node became `tenant`'s owner: the sessions its last owner left are resumed
    /// (their calls back in their queues, with their reserved agents), then the answer.
    Gained {
        tenant: Arc<Tenant>,
        reply: tokio::sync::oneshot::Sender<()>,
    },
    /// This node no longer owns `tenant`: its sessions are dropped here.
    Lost { tenant: String },
}

/// Reaches the orchestration system. Started by [`crate::ors`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ors {
    actor: DerivedActorRef<OrsMsg>,
    /// Where a tenant's calls reach its routing when this node is not its owner.
    owner: OwnerRoute,
}

impl Ors {
    pub(crate) fn new(actor: DerivedActorRef<OrsMsg>) -> Self {
        Self {
            actor,
            owner: OwnerRoute::default(),
        }
    }

    /// This handle, sending what is for a tenant owned elsewhere through `owner`.
    pub fn routed_through(self, owner: Arc<dyn ToOwner>) -> Self {
        Self {
            owner: OwnerRoute::through(owner),
            ..self
        }
    }

    /// This handle reaching this node's own sessions only.
    pub fn local(&self) -> Self {
        Self::new(self.actor.clone())
    }

    /// A call reached a routing point: its session starts on the tenant's owner, and its
    /// orders come to `call`.
    pub fn request(&self, request: Box<RouteRequest>, call: CallInbox<Order>) {
        let tenant = request.tenant.name.clone();
        match self.owner.elsewhere(&tenant) {
            Some(owner) => {
                let r = *request;
                owner.send(
                    &tenant,
                    OwnerBound::Route(RouteCall {
                        call: r.call,
                        routing_point: r.routing_point,
                        strategy: r.strategy,
                        ani: r.ani,
                        dnis: r.dnis,
                        user_data: r.user_data,
                    }),
                );
            }
            None => self.send(OrsMsg::Request {
                request,
                call: CallAddr::Here(call),
                kept: None,
            }),
        }
    }

    /// What a call at a routing point tells its session.
    pub fn report(&self, tenant: &str, call: String, report: Report) {
        match self.owner.elsewhere(tenant) {
            Some(owner) => owner.send(tenant, OwnerBound::Report { call, report }),
            None => self.send(OrsMsg::Report {
                call,
                report,
                kept: None,
            }),
        }
    }

    pub fn send(&self, msg: OrsMsg) {
        let _ = self.actor.send_message(msg);
    }

    /// Who a waiting call's matches are told to: its routing session.
    pub fn waiter(&self) -> Waiter {
        let actor = self.actor.clone();
        Waiter::new(move |told| {
            let _ = actor.send_message(OrsMsg::Rq(told));
        })
    }

    /// This node became `tenant`'s owner: returns once its sessions are resumed.
    pub async fn gained(&self, tenant: Arc<Tenant>) {
        let (reply, resumed) = tokio::sync::oneshot::channel();
        self.send(OrsMsg::Gained { tenant, reply });
        let _ = resumed.await;
    }

    /// This node no longer owns `tenant`.
    pub fn lost(&self, tenant: &str) {
        self.send(OrsMsg::Lost {
            tenant: tenant.to_owned(),
        });
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
