//! The face of the call-state system: the change of a call each call reports, and the
//! handle that hands it to the shard of its call thread (see [`crate::call_state`]).

use switchboard_proto::events::CallThread;

use crate::shards::Shards;
use crate::store::StoreFuture;

/// What happened to a call (the `kind` of its event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEventKind {
    /// A DN of the tenant places a call.
    Dialing,
    /// The destination is alerted.
    Ringing,
    /// The destination answered.
    Established,
    Held,
    Retrieved,
    /// The call ended after it was answered, or failed.
    Released,
    /// The caller gave up before the call was answered.
    Abandoned,
    /// The destination is busy.
    DestinationBusy,
    /// A party of the call was replaced.
    PartyChanged,
    /// Its user data changed.
    AttachedDataChanged,
    /// A party joined (a conference).
    PartyAdded,
    /// A party left a conference.
    PartyDeleted,
    /// The call reached a routing point, whose strategy now routes it.
    RouteRequest,
    /// The call waits in a virtual queue.
    Queued,
    /// The call left its routing point for a destination other than an agent the queue
    /// chose (a DN, a number, the default destination, a rejection).
    Diverted,
    /// The call left its routing point for the agent its queue reserved.
    RouteUsed,
    TreatmentApplied,
    TreatmentEnd,
    /// No media server could apply the treatment; the call keeps waiting.
    TreatmentNotApplied,
    /// A supervisor started monitoring the call (the cause names the mode): it moves onto
    /// a conference.
    MonitoringStarted,
    /// The supervisor's mode changed (the cause names the new one).
    MonitoringChanged,
    /// The supervisor left; the parties talk directly again.
    MonitoringStopped,
    /// The supervisor could not be put in (the cause says why); the call carries on.
    MonitoringFailed,
    /// The media server records the call (the event's recording id and URI say where).
    RecordingStarted,
    RecordingPaused,
    RecordingResumed,
    /// The recording is over; its file is complete.
    RecordingStopped,
    /// The recording could not be made or went wrong (the cause says why).
    RecordingFailed,
}

impl CallEventKind {
    pub fn name(self) -> &'static str {
        match self {
            CallEventKind::Dialing => "Dialing",
            CallEventKind::Ringing => "Ringing",
            CallEventKind::Established => "Established",
            CallEventKind::Held => "Held",
            CallEventKind::Retrieved => "Retrieved",
            CallEventKind::Released => "Released",
            CallEventKind::Abandoned => "Abandoned",
            CallEventKind::DestinationBusy => "DestinationBusy",
            CallEventKind::PartyChanged => "PartyChanged",
            CallEventKind::AttachedDataChanged => "AttachedDataChanged",
            CallEventKind::PartyAdded => "PartyAdded",
            CallEventKind::PartyDeleted => "PartyDeleted",
            CallEventKind::RouteRequest => "RouteRequest",
            CallEventKind::Queued => "Queued",
            CallEventKind::Diverted => "Diverted",
            CallEventKind::RouteUsed => "RouteUsed",
            CallEventKind::TreatmentApplied => "TreatmentApplied",
            CallEventKind::TreatmentEnd => "TreatmentEnd",
            CallEventKind::TreatmentNotApplied => "TreatmentNotApplied",
            CallEventKind::MonitoringStarted => "MonitoringStarted",
            CallEventKind::MonitoringChanged => "MonitoringChanged",
            CallEventKind::MonitoringStopped => "MonitoringStopped",
            CallEventKind::MonitoringFailed => "MonitoringFailed",
            CallEventKind::RecordingStarted => "RecordingStarted",
            CallEventKind::RecordingPaused => "RecordingPaused",
            CallEventKind::RecordingResumed => "RecordingResumed",
            CallEventKind::RecordingStopped => "RecordingStopped",
            CallEventKind::RecordingFailed => "RecordingFailed",
        }
    }

    /// Whether the call is over after this event.
    pub fn ends_call(self) -> bool {
        matches!(self, CallEventKind::Released | CallEventKind::Abandoned)
    }
}

/// A change of a call, from the call.
#[derive(Debug, Clone)]
pub struct CallEvent {
    pub tenant: String,
    pub kind: CallEventKind,
    pub call: CallThread,
    pub at_ms: u64,
    /// The call's snapshot after the change (JSON); `None` once the call is over.
    pub snapshot: Option<String>,
    /// SIP Call-IDs of the call's legs first in its snapshot, by which another node finds
    /// the call.
    pub index: Vec<String>,
    /// SIP Call-IDs of the call's legs no longer to find it by (the call is over).
    pub unindex: Vec<String>,
    /// The tenant's DNs among the parties, whose agents the change concerns.
    pub dns: Vec<String>,
    /// The tenant's DNs that are parties no longer (a transfer replaced them).
    pub left: Vec<String>,
    /// The thread the call belonged to before it joined `call.thread_id` (a consultation
    /// call whose party was transferred or conferenced), which it has now left.
    pub former_thread: Option<String>,
}

/// What a call-state shard takes.
#[derive(Debug)]
pub enum CallStateMsg {
    /// Boxed: an event is some 560 bytes, which the shard's future would otherwise hold twice
    /// (ractor moves that future whole for every message).
    Event(Box<CallEvent>),
    /// Call `call` left thread `thread` (of this shard) for another.
    Left {
        tenant: String,
        thread: String,
        call: String,
    },
}

/// Reaches the call-state system, which keeps call threads (their events and snapshots) in
/// shards chosen by thread. Started by [`crate::call_state`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CallThreads {
    shards: Shards<CallStateMsg>,
}

impl CallThreads {
    pub(crate) fn new(shards: Shards<CallStateMsg>) -> Self {
        Self { shards }
    }

    /// Hands a change of a call on; never waits.
    pub fn record(&self, mut event: CallEvent) {
        if let Some(thread) = event.former_thread.take() {
            let left = CallStateMsg::Left {
                tenant: event.tenant.clone(),
                call: event.call.call_id.clone(),
                thread: thread.clone(),
            };
            let _ = self.shards.cast(&thread, left);
        }
        let thread = event.call.thread_id.clone();
        if self
            .shards
            .cast(&thread, CallStateMsg::Event(Box::new(event)))
            .is_err()
        {
            tracing::warn!("call state stopped: call event dropped");
        }
    }

    pub fn stop(&self) {
        self.shards.stop();
    }
}

/// What a call's event changes in the store: its snapshot (`None` once the call is over),
/// and the SIP Call-IDs of its legs to index or forget.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotChange<'a> {
    pub snapshot: Option<&'a str>,
    pub index: &'a [String],
    pub unindex: &'a [String],
}

/// A call's snapshot as stored, with the node running the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub node: String,
    pub generation: u64,
    pub snapshot: String,
}

/// How a claim on a call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The call is this node's now: its snapshot.
    Won(String),
    /// The call was this node's already.
    Mine(String),
    /// Another node runs the call (or took it first).
    Other(String),
    /// The call is over.
    Gone,
}

/// Snapshots of live calls by tenant and call, written by the node running each.
pub trait SnapshotStore: Send + Sync + 'static {
    /// This node, as snapshots name it.
    fn node(&self) -> &str;

    /// Writes what a call's event changes; false when the call is another node's now (the
    /// write was refused).
    fn write<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        change: SnapshotChange<'a>,
    ) -> StoreFuture<'a, bool>;

    /// The tenant (among `tenants`) and call of a leg's SIP Call-ID, while the call is live.
    fn find<'a>(
        &'a self,
        tenants: &'a [String],
        sip_call_id: &'a str,
    ) -> StoreFuture<'a, Option<(String, String)>>;

    /// The snapshot of `call`, if it is live.
    fn read<'a>(&'a self, tenant: &'a str, call: &'a str) -> StoreFuture<'a, Option<Stored>>;

    /// Takes `call` over from node `from` at generation `generation` (as read).
    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        from: &'a str,
        generation: u64,
    ) -> StoreFuture<'a, Claim>;

    /// Whether `call` is still this node's; if so, settled again (its generation bumped), so
    /// that a claim begun on the older one fails.
    fn confirm<'a>(&'a self, tenant: &'a str, call: &'a str) -> StoreFuture<'a, bool>;

    /// The live calls of `tenant` and the node running each.
    fn calls<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<(String, String)>>;

    /// Whether `node` runs (its alive key is present).
    fn alive<'a>(&'a self, node: &'a str) -> StoreFuture<'a, bool>;

    /// Says where this node takes SIP, for a while.
    fn announce(&self, sip: std::net::SocketAddr) -> StoreFuture<'_, ()>;

    /// Says this node runs, for `ttl` (as the bus does all along): first thing on waking
    /// from a pause, before the node settles which of its calls are still its own.
    fn say_alive(&self, ttl: std::time::Duration) -> StoreFuture<'_, ()>;

    /// Where `node` takes SIP, if it said so lately.
    fn sip_of<'a>(&'a self, node: &'a str) -> StoreFuture<'a, Option<std::net::SocketAddr>>;
}
