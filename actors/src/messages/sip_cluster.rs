//! The face of the SIP cluster: the dialog-creating requests the edge hands it and the SIP
//! messages of a call, what desktops and callbacks ask of calls, and the handle that reaches
//! the cluster (see [`crate::sip_cluster`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytestring::ByteString;
use ractor::{ActorRef, DerivedActorRef, RpcReplyPort};
use switchboard_proto::events::CallThread;
use switchboard_sip::transport::{Endpoint, Transport};
use switchboard_sip::{Message, Request};

use crate::messages::bus::{Answer, BusError, BusFuture, NodeBound, ToNode};
use crate::messages::ors::Order;
use crate::messages::sip_proxy::CallRoute;
use crate::tenant::{Directory, Tenant};

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

/// A SIP message of one of a call's legs, as the edge hands it to the call.
#[derive(Debug)]
pub struct CallIn {
    pub message: Message,
    pub source: SocketAddr,
    pub transport: Transport,
}

/// The Call-ID of leg `n` a call of this node places: `<node>-<key hex>-<n>`, where `node` is
/// the node's prefix and `key` the call's number on it. The edge finds the call by it.
pub fn call_id(node: &str, key: u64, n: u32) -> ByteString {
    ByteString::from(format!("{node}-{key:x}-{n}"))
}

/// The call number in one of this node's Call-IDs (see [`call_id`]).
pub fn own_key(node: &str, call_id: &str) -> Option<u64> {
    let rest = call_id.strip_prefix(node)?.strip_prefix('-')?;
    u64::from_str_radix(rest.split('-').next()?, 16).ok()
}

/// The call a dialog-creating request started, whose later messages the edge hands it: its
/// number on the node (which its own Call-IDs carry), and where its messages go.
#[derive(Debug, Clone)]
pub struct Started {
    pub key: u64,
    pub call: CallInbox<CallIn>,
}

/// A message for call `key` of this node, as the shard of calls that hosts the call takes it.
#[derive(Debug)]
pub struct ToCall<T> {
    pub key: u64,
    pub message: T,
}

/// Where call `key` of this node takes its messages of type `T`: the shard of calls that
/// hosts it (see [`crate::sip_cluster`]). A message of a call that is over comes back to the
/// edge from the shard ([`CallRoute::Returned`]). Cheap to clone.
#[derive(Debug)]
pub struct CallInbox<T> {
    key: u64,
    shard: DerivedActorRef<ToCall<T>>,
}

impl<T> Clone for CallInbox<T> {
    fn clone(&self) -> Self {
        Self {
            key: self.key,
            shard: self.shard.clone(),
        }
    }
}

impl<T: ractor::Message> CallInbox<T> {
    pub fn new(key: u64, shard: DerivedActorRef<ToCall<T>>) -> Self {
        Self { key, shard }
    }

    /// Hands the call `message`; given back when the call's shard is gone (the node stops).
    pub fn send(&self, message: T) -> Result<(), ractor::MessagingErr<T>> {
        let to = ToCall {
            key: self.key,
            message,
        };
        self.shard
            .send_message(to)
            .map_err(|e| e.map(|to| to.message))
    }
}

/// How a call is named: by its id (as desktops know it), or by the SIP Call-ID of one of its
/// legs (as a REFER's Replaces names a dialog).
#[derive(Debug, Clone)]
pub enum CallRef {
    Id(String),
    SipCallId(String),
}

/// What a desktop asks of a call, for the agent at one of its DNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Only the call as it is.
    View,
    /// The ringing phone is asked to answer (NOTIFY with the talk event, as the phones that
    /// take remote answer know it).
    Answer,
    /// The agent consults about this call on call `0` (for the capabilities it lists); empty
    /// once it no longer does.
    Consulting(String),
    Hold,
    Retrieve,
    /// Retrieved if held, left as it is if established (reconnecting after a consultation).
    Reconnect,
    Release,
    AttachUserData(Vec<(String, String)>),
    UpdateUserData(Vec<(String, String)>),
    /// The keys to delete; none for all.
    DeleteUserData(Vec<String>),
    SendDtmf(String),
    /// A party (by DN or number) leaves the conference.
    DeleteFromConference(String),
    /// Single-step transfer: the agent leaves at once and the other party is put through to
    /// the number given, as the dial plan routes it.
    SingleStepTransfer(String),
    /// A supervisor at DN `supervisor` takes part in the agent's call as `mode` says: the
    /// call moves onto a conference on its media server and the supervisor's phone is
    /// called into it. Asked again while monitoring, it changes the mode.
    Monitor {
        supervisor: String,
        mode: MonitorMode,
    },
    /// The supervisor leaves; the parties talk directly again.
    StopMonitoring,
    /// The call's recording on its media server.
    Record(RecordAction),
}

/// What is asked of a call's recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAction {
    Start,
    Pause,
    Resume,
    Stop,
}

impl RecordAction {
    pub fn name(self) -> &'static str {
        match self {
            RecordAction::Start => "start",
            RecordAction::Pause => "pause",
            RecordAction::Resume => "resume",
            RecordAction::Stop => "stop",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            RecordAction::Start,
            RecordAction::Pause,
            RecordAction::Resume,
            RecordAction::Stop,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// How a supervisor takes part in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// The supervisor hears both parties; neither hears the supervisor.
    Listen,
    /// Coaching: only the agent hears the supervisor.
    Whisper,
    /// Barge-in: everyone hears everyone.
    Barge,
}

impl MonitorMode {
    pub fn name(self) -> &'static str {
        match self {
            MonitorMode::Listen => "listen",
            MonitorMode::Whisper => "whisper",
            MonitorMode::Barge => "barge",
        }
    }

    /// The mode [`MonitorMode::name`] wrote.
    pub fn parse(name: &str) -> Option<Self> {
        [
            MonitorMode::Listen,
            MonitorMode::Whisper,
            MonitorMode::Barge,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// A call's state as desktops name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Dialing,
    Ringing,
    Established,
    Held,
    Released,
}

impl CallState {
    pub fn name(self) -> &'static str {
        match self {
            CallState::Dialing => "Dialing",
            CallState::Ringing => "Ringing",
            CallState::Established => "Established",
            CallState::Held => "Held",
            CallState::Released => "Released",
        }
    }

    /// The state [`CallState::name`] wrote.
    pub fn parse(name: &str) -> Option<Self> {
        [
            CallState::Dialing,
            CallState::Ringing,
            CallState::Established,
            CallState::Held,
            CallState::Released,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether the call is answered (established or held).
    pub fn answered(self) -> bool {
        matches!(self, CallState::Established | CallState::Held)
    }
}

impl std::fmt::Display for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What may be asked of a call now, as a desktop's capabilities name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Answer,
    Hold,
    Retrieve,
    Release,
    SendDtmf,
    AttachUserData,
    UpdateUserData,
    DeleteUserData,
    CompleteTransfer,
    CompleteConference,
    Alternate,
    Reconnect,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::Answer => "answer",
            Capability::Hold => "hold",
            Capability::Retrieve => "retrieve",
            Capability::Release => "release",
            Capability::SendDtmf => "send-dtmf",
            Capability::AttachUserData => "attach-user-data",
            Capability::UpdateUserData => "update-user-data",
            Capability::DeleteUserData => "delete-user-data",
            Capability::CompleteTransfer => "complete-transfer",
            Capability::CompleteConference => "complete-conference",
            Capability::Alternate => "alternate",
            Capability::Reconnect => "reconnect",
        }
    }

    /// The capability [`Capability::name`] wrote.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Capability::Answer,
            Capability::Hold,
            Capability::Retrieve,
            Capability::Release,
            Capability::SendDtmf,
            Capability::AttachUserData,
            Capability::UpdateUserData,
            Capability::DeleteUserData,
            Capability::CompleteTransfer,
            Capability::CompleteConference,
            Capability::Alternate,
            Capability::Reconnect,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// An operation a call's state may not allow, as a refusal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Answer,
    Hold,
    Retrieve,
    Reconnect,
    Release,
    AttachData,
    DeleteData,
    Transfer,
    FinishTransfer,
    SendDtmf,
    Monitor,
    Record,
}

impl Operation {
    const ALL: [Operation; 12] = [
        Operation::Answer,
        Operation::Hold,
        Operation::Retrieve,
        Operation::Reconnect,
        Operation::Release,
        Operation::AttachData,
        Operation::DeleteData,
        Operation::Transfer,
        Operation::FinishTransfer,
        Operation::SendDtmf,
        Operation::Monitor,
        Operation::Record,
    ];

    /// Its name (as `Debug` writes it).
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// The operation [`Operation::name`] wrote.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    fn verb(self) -> &'static str {
        match self {
            Operation::Answer => "answer",
            Operation::Hold => "hold",
            Operation::Retrieve => "retrieve",
            Operation::Reconnect => "reconnect to",
            Operation::Release => "release",
            Operation::AttachData => "attach data to",
            Operation::DeleteData => "delete data of",
            Operation::Transfer => "transfer",
            Operation::FinishTransfer => "finish the transfer of",
            Operation::SendDtmf => "send DTMF on",
            Operation::Monitor => "monitor",
            Operation::Record => "record",
        }
    }
}

/// Why the state of a call does not allow what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cannot {} a call that is {}", .0.verb(), .1.name().to_lowercase())]
    State(Operation, CallState),
    #[error("the phone has not reported ringing in a dialog: it cannot be answered remotely")]
    NoEarlyDialog,
    #[error("{0:?} is not in a conference on this call")]
    NotInConference(String),
    #[error("the call is not answered")]
    NotAnswered,
    #[error("the consultation call is not answered")]
    ConsultationNotAnswered,
    #[error("only the agent who placed the consultation call can complete it")]
    NotConsultingAgent,
    #[error("a request is in progress on the consultation call; try again")]
    ConsultationBusy,
    #[error("a transfer or conference is completed by the agent who answered the call")]
    NotAnsweringAgent,
    #[error("a transfer is made by the agent who answered the call")]
    NotTransferringAgent,
    #[error("an offer is in progress on the call; try again")]
    OfferInProgress,
    #[error("the tenant has no media server for conferences")]
    NoMediaServer,
    #[error("the call is a conference already")]
    AlreadyConference,
    #[error("the call cannot be transferred now (a conference, or an offer in progress)")]
    CannotTransferNow,
    #[error("a leg of the call has no session to offer again")]
    NoSession,
    #[error(
        "the media server's control is netann: it cannot let the agent alone hear the \
         supervisor (whisper needs a media server with control msml)"
    )]
    WhisperNeedsMsml,
    #[error("the call is monitored by another supervisor")]
    MonitoredAlready,
    #[error("the call is not monitored")]
    NotMonitored,
    #[error(
        "the call came through a queue whose calls may not be monitored (its option monitoring is forbidden)"
    )]
    QueueNotMonitored,
    #[error(
        "the media server's control is netann: it cannot record (recording needs a media \
         server with control msml)"
    )]
    RecordingNeedsMsml,
    #[error("the call is recorded already")]
    RecordedAlready,
    #[error("the call is not being recorded")]
    NotRecorded,
    /// The node could not start the call asked for (its actor failed to spawn).
    #[error("cannot start a call: {0}")]
    NotStarted(String),
}

/// What was wrong with what a desktop asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("user data key {0:?}")]
    UserDataKey(String),
    #[error("digits {0:?}: 0-9, *, # and A-D only")]
    Digits(String),
    #[error("no dial plan rule of tenant {tenant} matches {dialed:?}")]
    NoRoute { tenant: String, dialed: String },
}

/// Why a control was not carried out; the call is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such call, or not one of this agent's: the call's id.
    #[error("no call {0} for this agent")]
    NotFound(String),
    #[error(transparent)]
    NotAllowed(#[from] Refusal),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The node's calls could not be asked (the reason, from the actor system).
    #[error("calls unavailable: {0}")]
    Unavailable(String),
}

/// A call as a desktop sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallView {
    pub call: CallThread,
    pub state: CallState,
    /// What may be asked of it now.
    pub capabilities: Vec<Capability>,
}

/// The call a transfer or conference completes into, and the agent completing it.
#[derive(Debug, Clone)]
pub struct MainCall {
    pub tenant: String,
    pub call: String,
    /// Its call thread, which the consultation call's end is reported in.
    pub thread: String,
    /// The agent's DN.
    pub dn: String,
}

/// Starts the call of a dialog-creating request the edge admitted, under the cluster: the
/// cluster hands the edge one as the edge starts, so that each call starts as its INVITE is
/// admitted, with no round trip to the cluster, and the cluster learns of it all the same.
pub trait CallStarter: Send + Sync {
    fn start(
        &self,
        new: NewDialog,
    ) -> Pin<Box<dyn Future<Output = Result<Started, ControlError>> + Send + '_>>;

    /// How many calls are in progress on the node now, and how many ended and wait out their
    /// last transactions.
    fn live(&self) -> (usize, usize);

    /// A message within a dialog no call of this node has: the cluster looks for its call
    /// among those other nodes left (adopting it from a dead one), or answers 481 itself.
    /// Given back when this node adopts no calls (it keeps no snapshots where others do).
    fn adopt(&self, message: CallIn) -> Result<(), Box<CallIn>>;
}

/// What the cluster takes.
pub enum ClusterMsg {
    /// The edge: the sockets calls send through, and where the cluster tells it which call
    /// takes which messages; answered with what starts the calls the edge admits. Sent once
    /// by the edge as it starts, before any call.
    Edge {
        endpoint: Endpoint,
        routes: DerivedActorRef<CallRoute>,
        reply: RpcReplyPort<Arc<dyn CallStarter>>,
    },
    /// A desktop asks for a call from the agent at `dn` to `dial`; the new call's id.
    MakeCall {
        tenant: String,
        dn: String,
        dial: String,
        user_data: BTreeMap<String, String>,
        /// The call it consults about.
        thread: Option<String>,
        reply: RpcReplyPort<Result<String, ControlError>>,
    },
    /// A desktop's request for call `call`, for the agent at `dn`.
    Control {
        tenant: String,
        call: String,
        dn: String,
        control: Control,
        reply: RpcReplyPort<Result<CallView, ControlError>>,
    },
    /// Completes a transfer (or, with `conference`, a conference): the party of consultation
    /// call `consult` is handed to the main call in place of (or beside) the agent, then the
    /// consultation call ends. The desktop's CompleteTransfer and a phone's attended REFER
    /// both come here.
    Complete {
        main: MainCall,
        consult: CallRef,
        conference: bool,
        reply: Option<RpcReplyPort<Result<CallView, ControlError>>>,
    },
    /// A routing session's order for call `call` (by its id), from the tenant's owner.
    Order { call: String, order: Order },
    /// How many calls are in progress.
    Count(RpcReplyPort<(usize, usize)>),
    /// The node stops: every call ends on all its legs; answered with how many were told.
    ShutDown(RpcReplyPort<usize>),
    /// The node stops, other nodes stay: every call is handed over to them (see
    /// [`Cluster::hand_over_calls`]); answered with how many were told.
    HandOverAll(RpcReplyPort<usize>),
    /// A new tenant configuration (for the calls it starts).
    ConfigChanged(Arc<Directory>),
    /// A message of a dialog no call of this node has (see [`CallStarter::adopt`]).
    Adopt(CallIn),
    /// What the look-up of a stray message's call found (the cluster's own).
    Found { call_id: ByteString, found: Found },
    /// Time to look for calls of dead nodes that no message brings (the cluster's own).
    Sweep,
    /// Calls of dead nodes the sweep claimed: tenant, call and snapshot (the cluster's own).
    Swept(Result<Vec<(String, String, String)>, ()>),
    /// The node was away (paused, starved) long enough for others to think it dead: which
    /// of its calls are still its own must be settled before they send again (its own).
    Verify,
    /// Calls adopted by other nodes while this one was away (its own).
    Verified(Vec<String>),
    /// Call `key` is over, and gone from its shard (the cluster's own).
    Ended(u64),
}

/// Says which node runs a call (from what the call left in Redis).
pub trait CallNodes: Send + Sync + std::fmt::Debug {
    fn node_of<'a>(&'a self, tenant: &'a str, call: &'a str) -> BusFuture<'a, Option<String>>;
}

/// How desktops reach calls that run on other nodes.
#[derive(Clone, Debug)]
struct Remote {
    calls: Arc<dyn CallNodes>,
    nodes: Arc<dyn ToNode>,
}

/// Reaches the SIP cluster. Started by [`crate::sip_cluster`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cluster {
    actor: ActorRef<ClusterMsg>,
    remote: Option<Remote>,
}

impl Cluster {
    pub(crate) fn new(actor: ActorRef<ClusterMsg>) -> Self {
        Self {
            actor,
            remote: None,
        }
    }

    /// This handle, reaching a call that another node runs (found by `calls`) through
    /// `nodes`.
    pub fn reaching_other_nodes(self, calls: Arc<dyn CallNodes>, nodes: Arc<dyn ToNode>) -> Self {
        Self {
            remote: Some(Remote { calls, nodes }),
            ..self
        }
    }

    pub fn send(&self, msg: ClusterMsg) {
        let _ = self.actor.cast(msg);
    }

    /// Asks the cluster something and waits for its answer.
    pub async fn ask<T>(
        &self,
        msg: impl FnOnce(RpcReplyPort<Result<T, ControlError>>) -> ClusterMsg,
    ) -> Result<T, ControlError>
    where
        T: Send + 'static,
    {
        ractor::call!(self.actor, msg)
            .unwrap_or_else(|e| Err(ControlError::Unavailable(e.to_string())))
    }

    /// A desktop's request for call `call`, for the agent at `dn`.
    pub async fn control(
        &self,
        tenant: &str,
        call: &str,
        dn: &str,
        control: Control,
    ) -> Result<CallView, ControlError> {
        let here = self
            .ask(|reply| ClusterMsg::Control {
                tenant: tenant.to_owned(),
                call: call.to_owned(),
                dn: dn.to_owned(),
                control: control.clone(),
                reply,
            })
            .await;
        let (Err(ControlError::NotFound(_)), Some(remote)) = (&here, &self.remote) else {
            return here;
        };
        // Not a call of this node's: the node the call's snapshot names.
        let Some(node) = remote.calls.node_of(tenant, call).await else {
            return here;
        };
        if node == remote.nodes.node() {
            return here;
        }
        let asked = NodeBound::Control {
            call: call.to_owned(),
            dn: dn.to_owned(),
            control,
        };
        match remote.nodes.ask(tenant, &node, asked).await {
            Ok(Answer::Control(result)) => result,
            Ok(other) => Err(ControlError::Unavailable(
                BusError::WrongAnswer(other.kind()).to_string(),
            )),
            Err(e) => Err(ControlError::Unavailable(format!(
                "node {node}, which runs call {call}, did not answer: {e}"
            ))),
        }
    }

    /// Completes a transfer or conference into `main` (see [`ClusterMsg::Complete`]).
    pub async fn complete(
        &self,
        main: MainCall,
        consult: CallRef,
        conference: bool,
    ) -> Result<CallView, ControlError> {
        self.ask(|reply| ClusterMsg::Complete {
            main,
            consult,
            conference,
            reply: Some(reply),
        })
        .await
    }

    /// The edge, telling the cluster where it is: what starts the calls it admits.
    pub async fn edge(
        &self,
        endpoint: Endpoint,
        routes: DerivedActorRef<CallRoute>,
    ) -> Option<Arc<dyn CallStarter>> {
        ractor::call!(self.actor, |reply| ClusterMsg::Edge {
            endpoint,
            routes,
            reply
        })
        .ok()
    }

    /// How many calls are in progress, and how many ended and wait out their transactions.
    pub async fn count(&self) -> Option<(usize, usize)> {
        ractor::call_t!(self.actor, ClusterMsg::Count, 1000).ok()
    }

    /// Ends every call on all its legs, as the node stops with nobody to carry them on; how
    /// many were told to.
    pub async fn shut_down_calls(&self) -> usize {
        ractor::call_t!(self.actor, ClusterMsg::ShutDown, 1000).unwrap_or(0)
    }

    /// Hands every call another node can carry on over to the nodes that stay, as the node
    /// stops: each lets its call go without a word, to be adopted from its snapshot once
    /// this node is gone; a call caught mid-way (being set up, transferring) ends instead.
    /// How many were told to.
    pub async fn hand_over_calls(&self) -> usize {
        ractor::call_t!(self.actor, ClusterMsg::HandOverAll, 1000).unwrap_or(0)
    }

    /// Follows the tenant configuration as it changes.
    pub fn follow_config(&self, changes: &ractor::OutputPort<Arc<Directory>>) {
        changes.subscribe(self.actor.clone(), |d| Some(ClusterMsg::ConfigChanged(d)));
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

/// What the look-up of a stray message's call found.
#[derive(Debug)]
pub enum Found {
    /// No live call has the Call-ID.
    Nothing,
    /// The call is this node's: its tenant, id and snapshot.
    Mine {
        tenant: String,
        call: String,
        snapshot: String,
    },
    /// Another node runs it, alive, reached at this address (if it said).
    Elsewhere {
        node: String,
        sip: Option<std::net::SocketAddr>,
    },
    /// Taken over from a dead node: its tenant, id and snapshot.
    Won {
        tenant: String,
        call: String,
        snapshot: String,
    },
    /// Redis could not say.
    Unknown(String),
}

/// What a node's adoption of other nodes' calls came to since it started (with Redis), for
/// its metrics.
#[derive(Debug, Default)]
pub struct AdoptionCounts {
    /// Calls of dead nodes this node carries on.
    pub adopted: std::sync::atomic::AtomicU64,
    /// Calls of dead nodes ended because they could not go on (snapshot unreadable, caught
    /// mid-way).
    pub unrecoverable: std::sync::atomic::AtomicU64,
    /// Look-ups of a stray message's call, or sweeps, that Redis could not answer: the calls
    /// concerned are not recovered by them.
    pub lookups_failed: std::sync::atomic::AtomicU64,
}

impl AdoptionCounts {
    pub fn count(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
