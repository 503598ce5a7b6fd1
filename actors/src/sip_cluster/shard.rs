//! The shards of calls: a fixed set of actors, each hosting many calls, that drive each its
//! sans-io [`Call`], sending what the call asks through the node's SIP endpoint, looking
//! bindings up without waiting inside `handle`, reporting changes to call state and its
//! routing point's requests to `ors`, and waking the call when its next timer is due.
//!
//! A call is not an actor of its own: its mailbox, task and supervision would cost more memory
//! than the call itself (two channels, a task, a boxed loop: about 9 KB a call). A call is an
//! entry of its shard's table instead, reached through a [`CallHandle`]: its number on the
//! node, which also picks its shard. Calls of one shard take turns; each call's messages stay
//! in order. A call that panics is dropped alone, as a failing actor of its own would be; its
//! shard and their other calls go on. The edge hands a call its SIP messages and `ors` its
//! orders, each through a [`CallInbox`] of their own message; the cluster, the rest.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use switchboard_sip::transport::Endpoint;

use super::ClusterConfig;
use super::DnCalls;
use super::call::{self, Call, Handover, Output, ToOrs};
use crate::messages::call_state::CallThreads;
use crate::messages::ors::{Order, Ors};
use crate::messages::registrar::{Binding, BindingStore};
use crate::messages::sip_cluster::{
    CallIn, CallInbox, CallRef, CallView, Cluster, ClusterMsg, Control, ControlError, MainCall,
    NewDialog, ToCall,
};
use crate::messages::sip_proxy::CallRoute;
use crate::tenant::Tenant;
use crate::wakeups::Wakeups;

/// How a call begins.
#[derive(Debug)]
pub(super) enum Start {
    /// A dialog-creating request arrived.
    Incoming(NewDialog),
    /// A desktop asked for a call from the agent at `dn` to `dial`.
    Originate {
        tenant: Arc<Tenant>,
        dn: String,
        dial: String,
        user_data: BTreeMap<String, String>,
        /// The call it consults about, whose thread it joins.
        thread: Option<String>,
    },
    /// A call adopted from a node that died, made again from its snapshot.
    Restored(Box<Call>),
}

/// What every call of the node shares (one allocation for them all).
pub(super) struct Shared {
    pub(super) endpoint: Endpoint,
    /// Where the endpoint takes each transport, shared by the calls.
    pub(super) addrs: Arc<call::Addrs>,
    /// How many calls are in progress on the node now, and how many ended but still wait out
    /// their last transactions (up to 64*T1, to answer retransmissions).
    pub(super) live: Arc<Load>,
    pub(super) config: Arc<ClusterConfig>,
    pub(super) bindings: Arc<dyn BindingStore>,
    pub(super) call_threads: CallThreads,
    pub(super) dn_calls: DnCalls,
    /// The prefix of the Call-IDs this node makes, so the edge finds their calls.
    pub(super) node: Arc<str>,
    /// The one timer that wakes every call of the node (keyed by call key).
    pub(super) wakeups: Wakeups<ShardMsg>,
    /// The cluster, which completes a transfer the call's phone asks for.
    pub(super) cluster: Cluster,
    /// The node's routing sessions, for calls at routing points.
    pub(super) ors: Option<Ors>,
    /// Whether the node may have been taken for dead (with Redis; see
    /// [`super::adopt::Liveness`]): calls send nothing until it knows.
    pub(super) liveness: Option<Arc<super::adopt::Liveness>>,
}

impl Shared {
    /// Who call `key` of this node is on the wire.
    pub(super) fn local(&self, key: u64) -> call::Local {
        call::Local {
            addrs: self.addrs.clone(),
            node: self.node.clone(),
            key,
        }
    }
}

/// What a call takes.
pub(super) enum CallMsg {
    /// A request or response of one of the call's legs, from the edge.
    In(CallIn),
    /// What the call's routing session orders.
    Order(Order),
    /// The bindings of the destination, or why there are none.
    Located(crate::Result<Vec<Binding>>),
    /// A timer may be due.
    Wake,
    /// A desktop's request for the agent at `dn`, in `tenant`.
    Control {
        tenant: String,
        dn: String,
        control: Control,
        reply: RpcReplyPort<Result<CallView, ControlError>>,
    },
    /// Completing a transfer, the consultation call: the consulted party's leg, given up for
    /// the main call.
    HandOver {
        tenant: String,
        dn: String,
        reply: RpcReplyPort<Result<Handover, ControlError>>,
    },
    /// Completing a transfer or conference, the main call: it takes the consulted party's
    /// leg in place of the agent's at `dn` (or beside it, into a conference).
    TakeOver {
        tenant: String,
        dn: String,
        handover: Handover,
        conference: bool,
        reply: RpcReplyPort<Result<CallView, ControlError>>,
    },
    /// The node stops: the call ends on every leg.
    ShutDown,
    /// Another node adopted the call while this one was away: the call leaves, sending
    /// nothing and reporting nothing.
    Abandon,
    /// The node stops and other nodes stay: a call they can carry on from its snapshot is
    /// let go without a word; one they cannot ends as at [`CallMsg::ShutDown`].
    Leave,
    /// For tests: the call panics, as a bug in it would.
    #[cfg(test)]
    Panic,
    /// Completing a transfer or conference, the consultation call once its party is handed
    /// over: it ends, in the main call's thread.
    Finish {
        tenant: String,
        dn: String,
        conferenced: bool,
        thread: String,
        reply: RpcReplyPort<Result<CallView, ControlError>>,
    },
}

/// A shard of calls as its calls are reached: its mailbox, and the doors the edge and `ors`
/// take to it, each made once rather than for every call.
#[derive(Debug)]
pub(super) struct ShardRef {
    pub(super) actor: ActorRef<ShardMsg>,
    messages: DerivedActorRef<ToCall<CallIn>>,
    orders: DerivedActorRef<ToCall<Order>>,
}

impl ShardRef {
    pub(super) fn new(actor: ActorRef<ShardMsg>) -> Arc<Self> {
        Arc::new(Self {
            messages: actor.get_derived(),
            orders: actor.get_derived(),
            actor,
        })
    }
}

/// Call `key` of this node, in its shard. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct CallHandle {
    pub(super) key: u64,
    pub(super) shard: Arc<ShardRef>,
}

impl CallHandle {
    /// Hands the call `message` (lost only when its shard is gone: the node stops).
    pub(super) fn cast(&self, message: CallMsg) {
        if self
            .shard
            .actor
            .cast(ShardMsg::To(self.key, message))
            .is_err()
        {
            tracing::debug!(key = self.key, "a message for a call whose shard is gone");
        }
    }

    /// Asks the call something and waits for its answer (none if the call is over).
    pub(super) async fn ask<T: Send + 'static>(
        &self,
        message: impl FnOnce(RpcReplyPort<T>) -> CallMsg,
    ) -> Result<T, ractor::RactorErr<ShardMsg>> {
        let key = self.key;
        ractor::call!(self.shard.actor, |reply| ShardMsg::To(key, message(reply)))
    }

    /// Where the edge hands the call its SIP messages.
    pub(super) fn messages(&self) -> CallInbox<CallIn> {
        CallInbox::new(self.key, self.shard.messages.clone())
    }

    /// Where the call's routing session sends its orders.
    pub(super) fn orders(&self) -> CallInbox<Order> {
        CallInbox::new(self.key, self.shard.orders.clone())
    }
}

/// What a shard of calls takes.
pub(super) enum ShardMsg {
    /// Call `key` begins in this shard (boxed: every message of the shard is as large as
    /// its largest kind).
    Start {
        key: u64,
        id: Arc<str>,
        start: Box<Start>,
    },
    /// A message for call `key`.
    To(u64, CallMsg),
}

/// The conversions by which a [`CallInbox`] of `$face` reaches its call as `CallMsg::$variant`
/// (as [`crate::messages::wraps`] does for an actor's own messages).
macro_rules! addressed {
    (CallMsg :: $variant:ident ( $face:ty )) => {
        impl From<ToCall<$face>> for ShardMsg {
            fn from(to: ToCall<$face>) -> Self {
                ShardMsg::To(to.key, CallMsg::$variant(to.message))
            }
        }

        impl TryFrom<ShardMsg> for ToCall<$face> {
            type Error = ();

            fn try_from(message: ShardMsg) -> Result<Self, ()> {
                match message {
                    ShardMsg::To(key, CallMsg::$variant(message)) => Ok(ToCall { key, message }),
                    _ => Err(()),
                }
            }
        }
    };
}

addressed!(CallMsg::In(CallIn));
addressed!(CallMsg::Order(Order));

/// A wake-up for call `key` (see [`Shared::wakeups`]).
pub(super) fn wake(key: u64) -> ShardMsg {
    ShardMsg::To(key, CallMsg::Wake)
}

/// One shard of the node's calls.
pub(super) struct CallShard;

pub(super) struct ShardState {
    host: Host,
    /// Boxed: a table of calls inline would move every call as it grows, and keep the room of
    /// its largest size after a burst.
    calls: HashMap<u64, Box<HostedCall>>,
    /// Where a message of a call that is over goes back to.
    routes: DerivedActorRef<CallRoute>,
}

/// What a shard's calls work with: the node's shared parts, and the shard itself (where a
/// call's own later messages go).
struct Host {
    shared: Arc<Shared>,
    me: Arc<ShardRef>,
}

impl Host {
    fn handle(&self, key: u64) -> CallHandle {
        CallHandle {
            key,
            shard: self.me.clone(),
        }
    }
}

/// Whether a call goes on after what it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Goes,
    /// Over, or let go: it leaves its shard.
    Stops,
}

/// One call in its shard.
pub(super) struct HostedCall {
    key: u64,
    call: Call,
    /// The wake-up asked for, so a later, earlier deadline asks again.
    wake_at: Option<Instant>,
    /// Counts the call among the node's calls in progress, then among those ending.
    live: Live,
}

/// The calls of a node: in progress, and ended but waiting out their transactions.
#[derive(Debug, Default)]
pub(super) struct Load {
    pub(super) in_progress: AtomicUsize,
    pub(super) ending: AtomicUsize,
}

/// One call, counted in [`Shared::live`]: in progress from its start, ending once it ended,
/// until it leaves its shard.
struct Live {
    load: Arc<Load>,
    ended: bool,
}

impl Live {
    fn new(load: &Arc<Load>) -> Self {
        load.in_progress.fetch_add(1, Ordering::Relaxed);
        Self {
            load: load.clone(),
            ended: false,
        }
    }

    /// The call ended: it no longer counts among those in progress.
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.load.in_progress.fetch_sub(1, Ordering::Relaxed);
            self.load.ending.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let count = match self.ended {
            true => &self.load.ending,
            false => &self.load.in_progress,
        };
        count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Actor for CallShard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = (Arc<Shared>, DerivedActorRef<CallRoute>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (shared, routes): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ShardState {
            host: Host {
                shared,
                me: ShardRef::new(myself),
            },
            calls: HashMap::new(),
            routes,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let host = &state.host;
        match message {
            ShardMsg::Start { key, id, start } => {
                let started = catch_unwind(AssertUnwindSafe(|| {
                    HostedCall::start(key, id, *start, host)
                }));
                match started {
                    Ok((call, flow)) => {
                        state.calls.insert(key, Box::new(call));
                        if flow == Flow::Stops {
                            state.leave(key);
                        }
                    }
                    Err(panic) => {
                        tracing::error!(key, panic = %panic_text(&panic), "call failed to start");
                        host.shared.cluster.send(ClusterMsg::Ended(key));
                    }
                }
            }
            ShardMsg::To(key, message) => {
                let Some(call) = state.calls.get_mut(&key) else {
                    state.missed(key, message);
                    return Ok(());
                };
                match catch_unwind(AssertUnwindSafe(|| call.handle(message, host))) {
                    Ok(Flow::Goes) => {}
                    Ok(Flow::Stops) => state.leave(key),
                    Err(panic) => {
                        tracing::error!(tenant = %call.call.tenant_name(), call_id = %call.call.id(),
                            panic = %panic_text(&panic), "call failed: dropped");
                        state.leave(key);
                    }
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let keys: Vec<u64> = state.calls.keys().copied().collect();
        for key in keys {
            state.leave(key);
        }
        Ok(())
    }
}

impl ShardState {
    /// Call `key` leaves the shard: its DN's place and its wake-up are given up, and the
    /// cluster told.
    fn leave(&mut self, key: u64) {
        let Some(mut call) = self.calls.remove(&key) else {
            return;
        };
        let released = catch_unwind(AssertUnwindSafe(|| call.call.release_dn()));
        if let Err(panic) = released {
            tracing::error!(key, panic = %panic_text(&panic), "call's DN not released");
        }
        self.host.shared.wakeups.forget(key);
        self.host.shared.cluster.send(ClusterMsg::Ended(key));
    }

    /// A message for call `key`, which is over: a SIP message is the edge's again; a request
    /// gets an answer that says so.
    fn missed(&self, key: u64, message: CallMsg) {
        let gone = || ControlError::NotFound(String::new());
        match message {
            CallMsg::In(message) => {
                let _ = self
                    .routes
                    .send_message(CallRoute::Returned { key, message });
            }
            CallMsg::Control { reply, .. }
            | CallMsg::TakeOver { reply, .. }
            | CallMsg::Finish { reply, .. } => {
                let _ = reply.send(Err(gone()));
            }
            CallMsg::HandOver { reply, .. } => {
                let _ = reply.send(Err(gone()));
            }
            CallMsg::Order(_)
            | CallMsg::Located(_)
            | CallMsg::Wake
            | CallMsg::ShutDown
            | CallMsg::Abandon
            | CallMsg::Leave => tracing::trace!(key, "a message for a call that is over"),
            #[cfg(test)]
            CallMsg::Panic => {}
        }
    }
}

/// What a panic said.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "a panic with no message".to_owned(),
    }
}

impl HostedCall {
    /// Makes the call; an incoming one answers its INVITE at once, while a call the core
    /// places says nothing before the cluster wakes it, once the edge knows where its
    /// messages go.
    fn start(key: u64, id: Arc<str>, start: Start, host: &Host) -> (Self, Flow) {
        let shared = &host.shared;
        let local = shared.local(key);
        let (call, drive) = match start {
            Start::Incoming(new) => {
                let call = Call::start(
                    id,
                    new,
                    local,
                    shared.config.clone(),
                    shared.dn_calls.clone(),
                    Instant::now(),
                );
                (call, true)
            }
            Start::Originate {
                tenant,
                dn,
                dial,
                user_data,
                thread,
            } => {
                let call = Call::originate(
                    id,
                    tenant,
                    &dn,
                    &dial,
                    user_data,
                    thread,
                    local,
                    shared.config.clone(),
                    shared.dn_calls.clone(),
                    Instant::now(),
                );
                (call, false)
            }
            Start::Restored(call) => (*call, true),
        };
        let mut hosted = HostedCall {
            key,
            call,
            live: Live::new(&shared.live),
            wake_at: None,
        };
        let flow = match drive {
            true => hosted.drive(host),
            false => Flow::Goes,
        };
        (hosted, flow)
    }

    fn handle(&mut self, message: CallMsg, host: &Host) -> Flow {
        let now = Instant::now();
        let tenant_is = |hosted: &HostedCall, tenant: &str| tenant == hosted.call.tenant_name();
        match message {
            CallMsg::In(CallIn {
                message,
                source,
                transport,
            }) => self.call.receive(message, source, transport, now),
            CallMsg::Located(result) => self.call.located(result, now),
            CallMsg::Order(order) => self.call.routing(order, now),
            CallMsg::ShutDown => self.call.shut_down(now),
            CallMsg::Leave => {
                if self.call.can_be_carried_on() {
                    tracing::debug!(tenant = %self.call.tenant_name(), call_id = %self.call.id(),
                        "the node stops: call handed over to the nodes that stay");
                    return Flow::Stops;
                }
                self.call.shut_down(now);
            }
            CallMsg::Abandon => {
                tracing::warn!(tenant = %self.call.tenant_name(), call_id = %self.call.id(),
                    "call adopted by another node while this one was away: let go");
                return Flow::Stops;
            }
            #[cfg(test)]
            CallMsg::Panic => panic!("a bug in call {}", self.key),
            CallMsg::Wake => {
                if self.wake_at.is_some_and(|at| at <= now) {
                    self.wake_at = None;
                }
                self.call.handle_timeout(now);
            }
            CallMsg::Control {
                tenant,
                dn,
                control,
                reply,
            } => {
                let outcome = if tenant_is(self, &tenant) {
                    self.call.control(&dn, control, now)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
                // The events of the change go out before the answer, so that whoever waits
                // for it finds them ahead of what it does next.
                let flow = self.drive(host);
                let _ = reply.send(outcome);
                return flow;
            }
            CallMsg::HandOver { tenant, dn, reply } => {
                let outcome = if tenant_is(self, &tenant) {
                    self.call.hand_over(&dn)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
                let _ = reply.send(outcome);
            }
            CallMsg::TakeOver {
                tenant,
                dn,
                handover,
                conference,
                reply,
            } => {
                let outcome = if tenant_is(self, &tenant) {
                    self.call.take_over(&dn, handover, conference, now)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
                let flow = self.drive(host);
                let _ = reply.send(outcome);
                return flow;
            }
            CallMsg::Finish {
                tenant,
                dn,
                conferenced,
                thread,
                reply,
            } => {
                let outcome = if tenant_is(self, &tenant) {
                    self.call.finish(&dn, conferenced, thread, now)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
                let flow = self.drive(host);
                let _ = reply.send(outcome);
                return flow;
            }
        }
        self.drive(host)
    }

    /// An attended transfer from the agent's phone: the party of the agent's consultation
    /// call (the call whose leg has SIP Call-ID `replaces`) takes the agent's place in this
    /// call, as the desktop's CompleteTransfer does.
    fn replace(&self, replaces: String, dn: String, host: &Host) {
        let main = MainCall {
            tenant: self.call.tenant_name().to_owned(),
            call: self.call.id().to_owned(),
            thread: self.call.thread_id().to_owned(),
            dn,
        };
        host.shared.cluster.send(ClusterMsg::Complete {
            main,
            consult: CallRef::SipCallId(replaces),
            conference: false,
            reply: None,
        });
    }

    /// Passes a route request or report to the node's routing sessions; without them (a
    /// node built without routing) a routing point's calls take their default destination.
    fn to_ors(&self, to: ToOrs, host: &Host) {
        let Some(ors) = &host.shared.ors else {
            if let ToOrs::Request(_) = to {
                let route = switchboard_routing::strategy::Route::Default;
                host.handle(self.key)
                    .cast(CallMsg::Order(Order::Route(route)));
            }
            return;
        };
        match to {
            ToOrs::Request(request) => ors.request(request, host.handle(self.key).orders()),
            ToOrs::Report(report) => {
                ors.report(self.call.tenant_name(), self.call.id().to_owned(), report)
            }
        }
    }

    /// Carries out what the call asks and schedules its next wake-up; the call leaves its
    /// shard once it is over.
    fn drive(&mut self, host: &Host) -> Flow {
        let shared = &host.shared;
        if let Some(liveness) = &shared.liveness
            && liveness.blocked(Instant::now())
        {
            // Another node may run the call now: nothing goes out until the node knows.
            liveness.park(host.handle(self.key));
            return Flow::Goes;
        }
        while let Some(output) = self.call.poll_output() {
            match output {
                Output::Send {
                    transport,
                    dest,
                    bytes,
                } => {
                    if let Err(e) = shared.endpoint.send(transport, dest, bytes) {
                        tracing::debug!(%dest, %transport, error = %e, "send failed");
                        self.call.transport_failed(dest, Instant::now());
                    }
                }
                Output::Locate { tenant, aor } => {
                    let me = host.handle(self.key);
                    let bindings = shared.bindings.clone();
                    tokio::spawn(async move {
                        // The call keeps its own copies, as long as it rings them.
                        let found = bindings
                            .load(&tenant, &aor)
                            .await
                            .map(|found| found.into_iter().map(Arc::unwrap_or_clone).collect());
                        me.cast(CallMsg::Located(found));
                    });
                }
                Output::Event(event) => shared.call_threads.record(*event),
                Output::Replace { replaces, dn } => self.replace(replaces, dn, host),
                Output::Routing(to) => self.to_ors(to, host),
            }
        }
        if self.call.has_ended() {
            self.live.end();
        }
        if self.call.is_over() {
            return Flow::Stops;
        }
        if let Some(next) = self.call.poll_timeout()
            && self.wake_at.is_none_or(|at| next < at)
        {
            self.wake_at = Some(next);
            shared.wakeups.at(self.key, next, &host.me.actor);
        }
        Flow::Goes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_sip::transport::{Transport, TransportConfig};

    use super::*;
    use crate::messages::call_state::CallStateMsg;
    use crate::messages::sip_cluster::Origin;
    use crate::probe::Probe;
    use crate::registrar::MemoryBindings;
    use crate::shards::Shards;
    use switchboard_sip::Message;

    use crate::sip_cluster::call::tests::{SBC, sbc_invite, tenant};

    /// A call that panics is dropped alone: the cluster hears that it ended, its messages
    /// come back to the edge, and the other call of its shard goes on taking its own.
    #[tokio::test]
    async fn a_call_that_panics_leaves_its_shard_alone() {
        let addr = "127.0.0.1:0".parse().expect("addr");
        let handler = Arc::new(|_| {});
        let endpoint = Endpoint::bind(addr, TransportConfig::default(), handler)
            .await
            .expect("bind");
        let (cluster, mut cluster_told) = Probe::spawn(|m: ClusterMsg| match m {
            ClusterMsg::Ended(key) => Some(key),
            _ => None,
        })
        .await;
        let (states, _) = Probe::spawn(|_: CallStateMsg| None::<()>).await;
        let (routes, mut edge_told) = Probe::spawn(|m: CallRoute| match m {
            CallRoute::Returned { key, .. } => Some(key),
            _ => None,
        })
        .await;
        let shared = Arc::new(Shared {
            addrs: Arc::new(call::Addrs::of(&endpoint)),
            endpoint,
            live: Arc::default(),
            config: Arc::default(),
            bindings: Arc::new(MemoryBindings::default()),
            call_threads: CallThreads::new(Shards::new(vec![("cs/0".into(), states)])),
            dn_calls: DnCalls::default(),
            node: "sbtest".into(),
            wakeups: Wakeups::start(wake),
            cluster: Cluster::new(cluster),
            ors: None,
            liveness: None,
        });
        let args = (shared.clone(), routes.get_derived());
        let (shard, _) = Actor::spawn(None, CallShard, args).await.expect("shard");
        for key in [1, 2] {
            let new = NewDialog {
                tenant: tenant(&[]),
                origin: Origin::Trunk("carrier".into()),
                request: sbc_invite("1001"),
                source: SBC.parse().expect("addr"),
                transport: Transport::Udp,
                proxy: None,
            };
            let start = Box::new(Start::Incoming(new));
            let id = Arc::from(format!("call-{key}"));
            shard
                .cast(ShardMsg::Start { key, id, start })
                .expect("start");
        }
        let shard_ref = ShardRef::new(shard.clone());
        let call = |key| CallHandle {
            key,
            shard: shard_ref.clone(),
        };
        call(1).cast(CallMsg::Panic);
        let within = Duration::from_secs(5);
        let ended = tokio::time::timeout(within, cluster_told.recv()).await;
        assert_eq!(ended.expect("in time"), Some(1));
        // The INVITE again, to each call: call 2 takes it, call 1's comes back to the edge.
        for key in [2, 1] {
            let again = CallIn {
                message: Message::Request(sbc_invite("1001")),
                source: SBC.parse().expect("addr"),
                transport: Transport::Udp,
            };
            call(key).messages().send(again).expect("sent");
        }
        let returned = tokio::time::timeout(within, edge_told.recv()).await;
        assert_eq!(returned.expect("in time"), Some(1));
        let live = &shared.live;
        let counted =
            live.in_progress.load(Ordering::Relaxed) + live.ending.load(Ordering::Relaxed);
        assert_eq!(counted, 1, "call 2 alone is counted");
        shard.stop(None);
    }
}
