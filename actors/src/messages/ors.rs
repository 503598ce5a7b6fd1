//! The face of the orchestration system: a call's route request and reports, the orders its
//! routing session gives the call, and the handle that reaches the sessions (see
//! [`crate::ors`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::DerivedActorRef;
use switchboard_routing::strategy::{Overflow, Route, Treatment};

use crate::messages::rq::{Told, Waiter};
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

/// What the orchestration system takes.
pub enum OrsMsg {
    /// A call reached a routing point: a session starts, whose orders go to `call`.
    Request {
        request: Box<RouteRequest>,
        call: DerivedActorRef<Order>,
    },
    /// What a call at a routing point tells its session.
    Report { call: String, report: Report },
    /// From `rq`: an agent is reserved for a call, or no longer.
    Rq(Told),
}

/// Reaches the orchestration system. Started by [`crate::ors`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ors {
    actor: DerivedActorRef<OrsMsg>,
}

impl Ors {
    pub(crate) fn new(actor: DerivedActorRef<OrsMsg>) -> Self {
        Self { actor }
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

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
