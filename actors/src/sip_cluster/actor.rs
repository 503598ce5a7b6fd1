//! One call's actor: it drives its sans-io [`Call`], sending what the call asks through the
//! node's SIP endpoint, looking bindings up without waiting inside `handle`, reporting changes
//! to call state and its routing point's requests to `ors`, and waking the call when its next
//! timer is due. The edge hands it its SIP messages and `ors` its orders, each through a
//! [`ractor::DerivedActorRef`] of their own message; the cluster, its parent, the rest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_sip::transport::Endpoint;

use super::ClusterConfig;
use super::DnCalls;
use super::call::{self, Call, Handover, Output, ToOrs};
use crate::messages::call_state::CallThreads;
use crate::messages::ors::{Order, Ors};
use crate::messages::registrar::{Binding, BindingStore};
use crate::messages::sip_cluster::{
    CallIn, CallRef, CallView, Cluster, ClusterMsg, Control, ControlError, MainCall, NewDialog,
};
use crate::tenant::Tenant;
use crate::wakeups::Wakeups;

/// How a call actor begins.
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

/// What every call actor of the node shares (one allocation for them all).
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
    pub(super) wakeups: Wakeups<CallMsg>,
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

/// What a call actor takes.
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
    /// Another node adopted the call while this one was away: the actor stops, sending
    /// nothing and reporting nothing.
    Abandon,
    /// The node stops and other nodes stay: a call they can carry on from its snapshot is
    /// let go without a word; one they cannot ends as at [`CallMsg::ShutDown`].
    Leave,
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

crate::messages::wraps!(CallMsg::In(CallIn));
crate::messages::wraps!(CallMsg::Order(Order));

/// One call.
pub(super) struct CallActor;

pub(super) struct CallActorState {
    key: u64,
    call: Call,
    shared: Arc<Shared>,
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
/// until its actor stops.
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

impl Actor for CallActor {
    type Msg = CallMsg;
    type State = CallActorState;
    type Arguments = (u64, Arc<str>, Start, Arc<Shared>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (key, id, start, shared): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let local = shared.local(key);
        // A call the core places says nothing before the cluster wakes it, once the edge
        // knows where its messages go; an incoming one answers its INVITE at once.
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
        let mut state = CallActorState {
            key,
            call,
            live: Live::new(&shared.live),
            shared,
            wake_at: None,
        };
        if drive {
            state.drive(&myself);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let tenant_is = |state: &CallActorState, tenant: &str| tenant == state.call.tenant_name();
        match message {
            CallMsg::In(CallIn {
                message,
                source,
                transport,
            }) => state.call.receive(message, source, transport, now),
            CallMsg::Located(result) => state.call.located(result, now),
            CallMsg::Order(order) => state.call.routing(order, now),
            CallMsg::ShutDown => state.call.shut_down(now),
            CallMsg::Leave => {
                if state.call.can_be_carried_on() {
                    tracing::debug!(tenant = %state.call.tenant_name(), call_id = %state.call.id(),
                        "the node stops: call handed over to the nodes that stay");
                    myself.stop(None);
                    return Ok(());
                }
                state.call.shut_down(now);
            }
            CallMsg::Abandon => {
                tracing::warn!(tenant = %state.call.tenant_name(), call_id = %state.call.id(),
                    "call adopted by another node while this one was away: let go");
                myself.stop(None);
                return Ok(());
            }
            CallMsg::Wake => {
                if state.wake_at.is_some_and(|at| at <= now) {
                    state.wake_at = None;
                }
                state.call.handle_timeout(now);
            }
            CallMsg::Control {
                tenant,
                dn,
                control,
                reply,
            } => {
                let outcome = if tenant_is(state, &tenant) {
                    state.call.control(&dn, control, now)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
                // The events of the change go out before the answer, so that whoever waits
                // for it finds them ahead of what it does next.
                state.drive(&myself);
                let _ = reply.send(outcome);
            }
            CallMsg::HandOver { tenant, dn, reply } => {
                let outcome = if tenant_is(state, &tenant) {
                    state.call.hand_over(&dn)
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
                let outcome = if tenant_is(state, &tenant) {
                    state.call.take_over(&dn, handover, conference, now)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
                state.drive(&myself);
                let _ = reply.send(outcome);
            }
            CallMsg::Finish {
                tenant,
                dn,
                conferenced,
                thread,
                reply,
            } => {
                let outcome = if tenant_is(state, &tenant) {
                    state.call.finish(&dn, conferenced, thread, now)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
                state.drive(&myself);
                let _ = reply.send(outcome);
            }
        }
        state.drive(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.call.release_dn();
        state.shared.wakeups.forget(state.key);
        Ok(())
    }
}

impl CallActorState {
    /// An attended transfer from the agent's phone: the party of the agent's consultation
    /// call (the call whose leg has SIP Call-ID `replaces`) takes the agent's place in this
    /// call, as the desktop's CompleteTransfer does.
    fn replace(&self, replaces: String, dn: String) {
        let main = MainCall {
            tenant: self.call.tenant_name().to_owned(),
            call: self.call.id().to_owned(),
            thread: self.call.thread_id().to_owned(),
            dn,
        };
        self.shared.cluster.send(ClusterMsg::Complete {
            main,
            consult: CallRef::SipCallId(replaces),
            conference: false,
            reply: None,
        });
    }

    /// Passes a route request or report to the node's routing sessions; without them (a
    /// node built without routing) a routing point's calls take their default destination.
    fn to_ors(&self, to: ToOrs, myself: &ActorRef<CallMsg>) {
        let Some(ors) = &self.shared.ors else {
            if let ToOrs::Request(_) = to {
                let route = switchboard_routing::strategy::Route::Default;
                let _ = myself.cast(CallMsg::Order(Order::Route(route)));
            }
            return;
        };
        match to {
            ToOrs::Request(request) => ors.request(request, myself.get_derived()),
            ToOrs::Report(report) => {
                ors.report(self.call.tenant_name(), self.call.id().to_owned(), report)
            }
        }
    }

    /// Carries out what the call asks, schedules its next wake-up, and stops the actor once
    /// the call is over.
    fn drive(&mut self, myself: &ActorRef<CallMsg>) {
        if let Some(liveness) = &self.shared.liveness
            && liveness.blocked(Instant::now())
        {
            // Another node may run the call now: nothing goes out until the node knows.
            liveness.park(myself.clone());
            return;
        }
        while let Some(output) = self.call.poll_output() {
            match output {
                Output::Send {
                    transport,
                    dest,
                    bytes,
                } => {
                    if let Err(e) = self.shared.endpoint.send(transport, dest, bytes) {
                        tracing::debug!(%dest, %transport, error = %e, "send failed");
                        self.call.transport_failed(dest, Instant::now());
                    }
                }
                Output::Locate { tenant, aor } => {
                    let me = myself.clone();
                    let bindings = self.shared.bindings.clone();
                    tokio::spawn(async move {
                        let found = bindings.load(&tenant, &aor).await;
                        let _ = me.cast(CallMsg::Located(found));
                    });
                }
                Output::Event(event) => self.shared.call_threads.record(*event),
                Output::Replace { replaces, dn } => self.replace(replaces, dn),
                Output::Routing(to) => self.to_ors(to, myself),
            }
        }
        if self.call.has_ended() {
            self.live.end();
        }
        if self.call.is_over() {
            myself.stop(None);
            return;
        }
        if let Some(next) = self.call.poll_timeout()
            && self.wake_at.is_none_or(|at| next < at)
        {
            self.wake_at = Some(next);
            self.shared.wakeups.at(self.key, next, myself);
        }
    }
}
