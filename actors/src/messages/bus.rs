//! The face of the bus between nodes: what a node sends a tenant's owner, what the owner sends
//! the node running a call, and the answers, as typed messages (their protobuf twins are in
//! `proto/bus.proto`; [`crate::bus`] carries them over Redis streams).
//!
//! A tenant's routing, queues, callbacks and agents run on its owner (see [`crate::lease`]).
//! The handles of those systems ([`super::ors::Ors`], [`super::agent_state::AgentState`],
//! [`super::rq::Rq`]) take a [`ToOwner`] route: while this node is the owner they reach its
//! own actors, otherwise the message goes to the owner through the bus. The systems do not
//! know which.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::messages::agent_state::{Command, CommandError, Status};
use crate::messages::ors::{CallbackStatus, Order, Report};
use crate::messages::rq::QueueStats;
use crate::messages::sip_cluster::{CallView, Control, ControlError};

/// What a node sends a tenant's owner.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerBound {
    /// A call on node `node` reached a routing point.
    Route(RouteCall),
    /// What a call at a routing point tells its session.
    Report { call: String, report: Report },
    /// A DN's phone registered (its first binding) or went away (its last).
    Registration { dn: String, present: bool },
    /// A call involving `dns` changed; answered [`Answer::Done`] once the agents' changes are
    /// written.
    CallChanged {
        dns: Vec<String>,
        left: Vec<String>,
        call: String,
        ended: bool,
    },
    /// A desktop's command; answered [`Answer::Command`].
    Command { agent: String, command: Command },
    /// An agent's state; answered [`Answer::Status`].
    Status { agent: String },
    /// Every virtual queue's figures; answered [`Answer::QueueStats`].
    QueueStats,
    /// A GES callback's status (after cancelling it, with `cancel`); answered
    /// [`Answer::Callback`].
    Callback { id: String, cancel: bool },
}

/// A call at a routing point, as its owner's routing takes it (the node running the call,
/// where its orders go, is the letter's sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCall {
    pub call: String,
    pub routing_point: String,
    pub strategy: String,
    pub ani: String,
    pub dnis: String,
    pub user_data: BTreeMap<String, String>,
}

/// What is sent the node running a call: a routing session's order (from the tenant's
/// owner), a desktop's request (from the node the desktop reached; answered
/// [`Answer::Control`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeBound {
    Order {
        call: String,
        order: Order,
    },
    Control {
        call: String,
        dn: String,
        control: Control,
    },
}

/// The answer to an [`OwnerBound`] that asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Done,
    Command(Result<(), CommandError>),
    Status(Result<Status, CommandError>),
    QueueStats(Vec<QueueStats>),
    Callback(Option<CallbackStatus>),
    Control(Result<CallView, ControlError>),
}

/// Why a message did not reach the owner, or no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Redis refused or could not be reached.
    #[error("bus: {0}")]
    Redis(String),
    /// No answer within the wait: the tenant has no owner now (or the node asked is gone),
    /// or it is slow.
    #[error("no answer within {0} ms")]
    NoAnswer(u64),
    /// The node asked is not running (its calls are gone with it, or another node's now).
    #[error("node {0} is not running")]
    NodeGone(String),
    /// An answer came, but not the kind asked for.
    #[error("the answer was {0}, not what was asked")]
    WrongAnswer(&'static str),
}

/// A boxed future of the bus.
pub type BusFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a tenant's owner-bound messages go: this node's own systems while it owns the tenant
/// (and has handled what it sent the owner before), else the owner's inbox.
pub trait ToOwner: Send + Sync + fmt::Debug {
    /// Whether this node's own systems take `tenant`'s owner-bound messages now.
    fn here(&self, tenant: &str) -> bool;

    /// Sends `message` to `tenant`'s owner (which [`ToOwner::here`] said is elsewhere).
    fn send(&self, tenant: &str, message: OwnerBound);

    /// Asks `tenant`'s owner, and waits for the answer a bounded time.
    fn ask<'a>(
        &'a self,
        tenant: &'a str,
        message: OwnerBound,
    ) -> BusFuture<'a, Result<Answer, BusError>>;
}

/// How a system's handle reaches a tenant's owner when the tenant's routing may run on
/// another node; on a node alone (no Redis), nowhere: every tenant is here.
#[derive(Clone, Debug, Default)]
pub struct OwnerRoute(Option<Arc<dyn ToOwner>>);

impl OwnerRoute {
    pub fn through(owner: Arc<dyn ToOwner>) -> Self {
        Self(Some(owner))
    }

    /// The way to `tenant`'s owner, when that is another node now.
    pub fn elsewhere(&self, tenant: &str) -> Option<&Arc<dyn ToOwner>> {
        self.0.as_ref().filter(|o| !o.here(tenant))
    }
}

/// Where a routing session's orders go: the call's own actor when it runs here, else the
/// node running it.
pub trait ToNode: Send + Sync + fmt::Debug {
    /// This node's id.
    fn node(&self) -> &str;

    /// Sends `message` from `tenant`'s owner to `node`.
    fn send(&self, tenant: &str, node: &str, message: NodeBound);

    /// Asks `node` (the node running a call), and waits for the answer a bounded time.
    fn ask<'a>(
        &'a self,
        tenant: &'a str,
        node: &'a str,
        message: NodeBound,
    ) -> BusFuture<'a, Result<Answer, BusError>>;
}

impl Answer {
    /// Its kind, for a log line.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Done => "done",
            Answer::Command(_) => "a command's result",
            Answer::Status(_) => "an agent's status",
            Answer::QueueStats(_) => "queue figures",
            Answer::Callback(_) => "a callback's status",
            Answer::Control(_) => "a call's view",
        }
    }
}
