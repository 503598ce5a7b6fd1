//! The SIP cluster system: every call is one actor, a back-to-back user agent that owns the
//! call's legs, their dialogs and transactions (design.md "A call through the core").
//!
//! [`call::Call`] is the call as a sans-io state machine: messages and the time go in; bytes to
//! send, binding lookups and call events come out. [`CallActor`] drives one: it sends what the
//! call asks through the node's SIP endpoint, looks bindings up without waiting inside
//! `handle`, reports changes to `call_state`, and wakes the call when its next timer is due.
//! [`Calls`] is the node's table of live calls, which the edge uses to hand each message to
//! its call.

pub mod call;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_sip::transaction::TimerConfig;
use switchboard_sip::transport::{Endpoint, Transport};
use switchboard_sip::{Message, Request};

use crate::call_state::CallThreads;
use crate::ors::{Ors, OrsMsg};
use crate::registrar::{Binding, BindingStore};
use crate::sip_proxy::ProxyMsg;
use crate::tenant::Tenant;
use crate::wakeups::Wakeups;
use call::{Call, Output};
pub use call::{
    CallState, CallView, Capability, Control, ControlError, Handover, Invalid, Operation, Refusal,
};

/// Where a new call came from, as the edge admitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A carrier's trunk, by name.
    Trunk(String),
    /// A phone that proved it is this DN.
    Phone(String),
    /// A configured media server, by name.
    MediaServer(String),
}

impl Origin {
    /// `trunk:<name>`, `dn:<number>` or `media-server:<name>`, as events say it.
    pub fn describe(&self) -> String {
        match self {
            Origin::Trunk(t) => format!("trunk:{t}"),
            Origin::Phone(dn) => format!("dn:{dn}"),
            Origin::MediaServer(m) => format!("media-server:{m}"),
        }
    }

    /// The origin [`Origin::describe`] wrote.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        let name = name.to_owned();
        match kind {
            "trunk" => Some(Origin::Trunk(name)),
            "dn" => Some(Origin::Phone(name)),
            "media-server" => Some(Origin::MediaServer(name)),
            _ => None,
        }
    }
}

/// A dialog-creating request the edge hands to the cluster.
#[derive(Debug)]
pub struct NewDialog {
    pub tenant: Arc<Tenant>,
    pub origin: Origin,
    pub request: Request,
    pub source: SocketAddr,
    pub transport: Transport,
    /// The proxy the call came through, when this node runs calls behind proxies: the call
    /// reaches its callees through it too (their flows are the proxy's).
    pub proxy: Option<SocketAddr>,
}

/// How a call actor begins.
#[derive(Debug)]
pub enum Start {
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
}

/// How calls behave, for every call of the node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub timers: TimerConfig,
    /// How long an extension rings before the caller gets 480, unless its DN says otherwise
    /// (option `no-answer-timeout`, seconds).
    pub no_answer: Duration,
    /// How often each leg of an established call is probed with an in-dialog OPTIONS, so a
    /// phone that vanished does not hold a call for ever; zero turns probing off.
    pub probe_interval: Duration,
    /// The session interval offered (RFC 4028): a leg whose refresher lets it pass without a
    /// refresh ends the call.
    pub session_expires: Duration,
    /// The shortest session interval accepted (Min-SE; shorter gets 422).
    pub min_se: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            no_answer: Duration::from_secs(30),
            probe_interval: Duration::from_secs(60),
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        }
    }
}

/// Looks up the bindings of an address of record, without the caller waiting inside its
/// handler: a future to spawn.
pub type Locate = Arc<
    dyn Fn(String, String) -> Pin<Box<dyn Future<Output = crate::Result<Vec<Binding>>> + Send>>
        + Send
        + Sync,
>;

/// A [`Locate`] reading a registrar's store.
pub fn locate_in<S: BindingStore>(store: S) -> Locate {
    Arc::new(move |tenant, aor| {
        let store = store.clone();
        Box::pin(async move { store.load(&tenant, &aor).await })
    })
}

/// Calls in progress per DN, for the DNs' `max-calls` caps; shared by the node's calls.
#[derive(Debug, Clone, Default)]
pub struct DnCalls(Arc<Mutex<HashMap<(String, String), u32>>>);

impl DnCalls {
    /// Takes a place for one more call to `dn`; false when it holds `max` already.
    pub fn acquire(&self, tenant: &str, dn: &str, max: Option<u32>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry((tenant.to_owned(), dn.to_owned())).or_default();
        if max.is_some_and(|max| *n >= max) {
            return false;
        }
        *n += 1;
        true
    }

    pub fn release(&self, tenant: &str, dn: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.to_owned(), dn.to_owned());
        if let Some(n) = map.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&key);
            }
        }
    }

    /// Calls in progress to `dn`.
    pub fn count(&self, tenant: &str, dn: &str) -> u32 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.to_owned(), dn.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// What every call actor of the node shares.
#[derive(Clone)]
pub struct Shared {
    pub endpoint: Endpoint,
    /// Shared by every call of the node rather than copied into each.
    pub config: Arc<ClusterConfig>,
    pub locate: Locate,
    pub call_state: CallThreads,
    pub dn_calls: DnCalls,
    /// The prefix of the Call-IDs this node makes, so the edge finds their calls.
    pub node: Arc<str>,
    /// The one timer that wakes every call of the node (keyed by call key).
    pub wakeups: Wakeups<CallMsg>,
    /// The node's edge, which finds calls by id or SIP Call-ID (a call's attended transfer
    /// asks it for its consultation call).
    pub edge: ActorRef<ProxyMsg>,
    /// The node's routing sessions, for calls at routing points.
    pub ors: Option<Ors>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A message for a call.
pub enum CallMsg {
    /// A request or response of one of the call's legs.
    Sip {
        message: Message,
        source: SocketAddr,
        transport: Transport,
    },
    /// The bindings of the destination, or why there are none.
    Located(crate::Result<Vec<Binding>>),
    /// A timer may be due.
    Wake,
    /// Completing a transfer: the consulted party's leg, given up for the main call.
    HandOver {
        tenant: String,
        dn: String,
        reply: RpcReplyPort<Result<call::Handover, ControlError>>,
    },
    /// What the call's routing session asks.
    Routing(crate::ors::Order),
    /// A desktop's request for the agent at `dn`, in `tenant`.
    Control {
        tenant: String,
        dn: String,
        control: Control,
        reply: RpcReplyPort<Result<CallView, ControlError>>,
    },
}

/// The node's live calls: which actor runs the call a message belongs to. Owned by the edge.
pub struct Calls {
    shared: Arc<Shared>,
    next_key: u64,
    by_key: HashMap<u64, ActorRef<CallMsg>>,
    /// Calls by the Call-ID their first leg arrived with.
    by_call_id: HashMap<ByteString, u64>,
    by_actor: HashMap<ActorId, (u64, ByteString, Arc<str>)>,
    /// Calls by the id events give them.
    by_id: HashMap<Arc<str>, u64>,
    /// Legs handed to another call than the one their Call-ID names.
    moved: HashMap<ByteString, u64>,
}

impl Calls {
    pub fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
            next_key: 0,
            by_key: HashMap::new(),
            by_call_id: HashMap::new(),
            by_actor: HashMap::new(),
            by_id: HashMap::new(),
            moved: HashMap::new(),
        }
    }

    /// The call a message with this Call-ID belongs to: one of this node's own Call-IDs, or
    /// the one a call arrived with.
    pub fn find(&self, call_id: &str) -> Option<&ActorRef<CallMsg>> {
        if let Some(key) = self.moved.get(call_id) {
            return self.by_key.get(key);
        }
        let key = match own_key(&self.shared.node, call_id) {
            Some(key) => key,
            None => *self.by_call_id.get(call_id)?,
        };
        self.by_key.get(&key)
    }

    /// Starts a call for a dialog-creating request, supervised by `supervisor` (which then
    /// calls [`Calls::ended`] when the actor stops).
    pub async fn start(
        &mut self,
        new: NewDialog,
        supervisor: ActorCell,
    ) -> Result<(), ractor::SpawnErr> {
        self.spawn(Start::Incoming(new), supervisor)
            .await
            .map(|_| ())
    }

    /// Starts a call a desktop asked for; its id.
    pub async fn originate(
        &mut self,
        tenant: Arc<Tenant>,
        dn: String,
        dial: String,
        user_data: BTreeMap<String, String>,
        thread: Option<String>,
        supervisor: ActorCell,
    ) -> Result<String, ractor::SpawnErr> {
        let start = Start::Originate {
            tenant,
            dn,
            dial,
            user_data,
            thread,
        };
        self.spawn(start, supervisor).await
    }

    async fn spawn(
        &mut self,
        start: Start,
        supervisor: ActorCell,
    ) -> Result<String, ractor::SpawnErr> {
        self.next_key += 1;
        let key = self.next_key;
        // Copied: a slice would keep the INVITE's datagram alive with the call. A call the
        // core places has only Call-IDs of its own, found by their key.
        let call_id = match &start {
            Start::Incoming(new) => ByteString::from(
                new.request
                    .headers
                    .call_id()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ),
            Start::Originate { .. } => ByteString::new(),
        };
        let id: Arc<str> = uuid::Uuid::now_v7().to_string().into();
        let (actor, _) = Actor::spawn_linked(
            None,
            CallActor,
            (key, id.clone(), start, self.shared.clone()),
            supervisor,
        )
        .await?;
        self.by_actor
            .insert(actor.get_id(), (key, call_id.clone(), id.clone()));
        if !call_id.is_empty() {
            self.by_call_id.insert(call_id, key);
        }
        self.by_id.insert(id.clone(), key);
        self.by_key.insert(key, actor);
        Ok(id.to_string())
    }

    /// A call actor stopped: forget its call.
    pub fn ended(&mut self, actor: ActorId) {
        if let Some((key, call_id, id)) = self.by_actor.remove(&actor) {
            self.by_key.remove(&key);
            self.by_id.remove(&id);
            self.moved.retain(|_, k| *k != key);
            if self.by_call_id.get(&call_id) == Some(&key) {
                self.by_call_id.remove(&call_id);
            }
        }
    }

    /// Messages with `call_id` (a leg handed from one call to another) go to call `id` from
    /// now on.
    pub fn rebind(&mut self, call_id: ByteString, id: &str) {
        if let Some(&key) = self.by_id.get(id) {
            self.moved.insert(call_id, key);
        }
    }

    /// The call `call` names.
    pub fn lookup(&self, call: &CallRef) -> Option<&ActorRef<CallMsg>> {
        match call {
            CallRef::Id(id) => self.by_id(id),
            CallRef::SipCallId(call_id) => self.find(call_id),
        }
    }

    /// The call with this id (as its events give it).
    pub fn by_id(&self, id: &str) -> Option<&ActorRef<CallMsg>> {
        self.by_key.get(self.by_id.get(id)?)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The call key in one of this node's Call-IDs (`<node>-<key hex>-<n>`).
fn own_key(node: &str, call_id: &str) -> Option<u64> {
    let rest = call_id.strip_prefix(node)?.strip_prefix('-')?;
    u64::from_str_radix(rest.split('-').next()?, 16).ok()
}

/// How a call is named: by its id (as desktops know it), or by the SIP Call-ID of one of its
/// legs (as a REFER's Replaces names a dialog).
#[derive(Debug, Clone)]
pub enum CallRef {
    Id(String),
    SipCallId(String),
}

/// The call a transfer or conference completes into, and the agent completing it.
#[derive(Debug, Clone, Copy)]
pub struct MainCall<'a> {
    pub tenant: &'a str,
    pub call: &'a str,
    /// Its call thread, which the consultation call's end is reported in.
    pub thread: &'a str,
    /// The agent's DN.
    pub dn: &'a str,
}

/// Completes a transfer (or, with `conference`, a conference): the party of consultation
/// call `consult` is handed to the main call in place of (or beside) the agent, then the
/// consultation call ends. Each step goes through the node's edge, which finds the calls;
/// the desktop's CompleteTransfer and a phone's attended REFER both come here.
pub async fn complete(
    edge: &ActorRef<ProxyMsg>,
    main: MainCall<'_>,
    consult: CallRef,
    conference: bool,
) -> Result<CallView, ControlError> {
    let unavailable = |e: ractor::RactorErr<ProxyMsg>| ControlError::Unavailable(e.to_string());
    let handover = ractor::call!(edge, |reply| ProxyMsg::HandOver {
        tenant: main.tenant.to_owned(),
        consult,
        dn: main.dn.to_owned(),
        reply,
    })
    .map_err(unavailable)??;
    let consult = handover.from_call().to_owned();
    let view = ractor::call!(edge, |reply| ProxyMsg::Adopt {
        tenant: main.tenant.to_owned(),
        call: main.call.to_owned(),
        dn: main.dn.to_owned(),
        handover,
        conference,
        reply,
    })
    .map_err(unavailable)??;
    ractor::call!(edge, |reply| ProxyMsg::Control {
        tenant: main.tenant.to_owned(),
        call: consult,
        dn: main.dn.to_owned(),
        control: Control::Finish {
            conferenced: conference,
            thread: main.thread.to_owned(),
        },
        reply,
    })
    .map_err(unavailable)??;
    Ok(view)
}

/// One call.
pub struct CallActor;

pub struct CallActorState {
    key: u64,
    call: Call,
    /// What every call of the node shares (one allocation for them all).
    shared: Arc<Shared>,
    /// The wake-up asked for, so a later, earlier deadline asks again.
    wake_at: Option<Instant>,
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
        let local = call::Local {
            udp: shared.endpoint.udp_addr(),
            tcp: shared.endpoint.tcp_addr(),
            node: shared.node.clone(),
            key,
        };
        let call = match start {
            Start::Incoming(new) => Call::start(
                id,
                new,
                local,
                shared.config.clone(),
                shared.dn_calls.clone(),
                Instant::now(),
            ),
            Start::Originate {
                tenant,
                dn,
                dial,
                user_data,
                thread,
            } => Call::originate(
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
            ),
        };
        let mut state = CallActorState {
            key,
            call,
            shared,
            wake_at: None,
        };
        state.drive(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        match message {
            CallMsg::Sip {
                message,
                source,
                transport,
            } => state.call.receive(message, source, transport, now),
            CallMsg::Located(result) => state.call.located(result, now),
            CallMsg::Routing(order) => state.call.routing(order, now),
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
                let outcome = if tenant == state.call.tenant_name() {
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
                let outcome = if tenant == state.call.tenant_name() {
                    state.call.hand_over(&dn)
                } else {
                    Err(ControlError::NotFound(String::new()))
                };
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
        let edge = self.shared.edge.clone();
        let tenant = self.call.tenant_name().to_owned();
        let call = self.call.id().to_owned();
        let thread = self.call.thread_id().to_owned();
        tokio::spawn(async move {
            let consult = CallRef::SipCallId(replaces);
            let main = MainCall {
                tenant: &tenant,
                call: &call,
                thread: &thread,
                dn: &dn,
            };
            if let Err(e) = complete(&edge, main, consult, false).await {
                tracing::warn!(%tenant, %call, error = %e, "attended transfer not completed");
            }
        });
    }

    /// Passes a route request or report to the node's routing sessions; without them (a
    /// node built without routing) a routing point's calls take their default destination.
    fn to_ors(&self, to: call::ToOrs, myself: &ActorRef<CallMsg>) {
        let msg = match to {
            call::ToOrs::Request(request) => match &self.shared.ors {
                Some(_) => OrsMsg::Request {
                    request,
                    call: myself.clone(),
                },
                None => {
                    let route = switchboard_routing::strategy::Route::Default;
                    let _ = myself.cast(CallMsg::Routing(crate::ors::Order::Route(route)));
                    return;
                }
            },
            call::ToOrs::Report(report) => OrsMsg::Report {
                call: self.call.id().to_owned(),
                report,
            },
        };
        if let Some(ors) = &self.shared.ors {
            ors.send(msg);
        }
    }

    /// Carries out what the call asks, schedules its next wake-up, and stops the actor once
    /// the call is over.
    fn drive(&mut self, myself: &ActorRef<CallMsg>) {
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
                    let lookup = (self.shared.locate)(tenant, aor);
                    tokio::spawn(async move {
                        let _ = me.cast(CallMsg::Located(lookup.await));
                    });
                }
                Output::Event(event) => self.shared.call_state.record(*event),
                Output::Replace { replaces, dn } => self.replace(replaces, dn),
                Output::Routing(to) => self.to_ors(to, myself),
            }
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
