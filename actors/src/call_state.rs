//! The call-state system: call threads as call actors report them. Each change of a call is an
//! event on the tenant's `voice-callthread` stream, keyed by the call's thread so that a
//! thread's events keep their order, and the call's snapshot (enough for another node to finish
//! the call) is written beside it, then removed when the call is over.
//!
//! Shards, chosen by thread, each await their store on their own: one thread's events are
//! written in order while other threads proceed. A call actor only casts; it never waits for
//! this system.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use redis::aio::ConnectionManager;
use switchboard_proto::events::{CallThread, Payload};

use crate::agent_state::AgentState;
use crate::events::{EventSink, TOPIC_CALLTHREAD, new_event};
use crate::shards::Shards;

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
        }
    }

    /// Whether the call is over after this event.
    pub fn ends_call(self) -> bool {
        matches!(self, CallEventKind::Released | CallEventKind::Abandoned)
    }
}

/// A change of a call, from its call actor.
#[derive(Debug, Clone)]
pub struct CallEvent {
    pub tenant: String,
    pub kind: CallEventKind,
    pub call: CallThread,
    pub at_ms: u64,
    /// The call's snapshot after the change (JSON); `None` once the call is over.
    pub snapshot: Option<String>,
    /// The tenant's DNs among the parties, whose agents the change concerns.
    pub dns: Vec<String>,
    /// The tenant's DNs that are parties no longer (a transfer replaced them).
    pub left: Vec<String>,
    /// The thread the call belonged to before it joined `call.thread_id` (a consultation
    /// call whose party was transferred or conferenced), which it has now left.
    pub former_thread: Option<String>,
}

/// What a call-state shard handles.
enum ShardMsg {
    Event(CallEvent),
    /// Call `call` left thread `thread` (of this shard) for another.
    Left {
        tenant: String,
        thread: String,
        call: String,
    },
}

/// Where snapshots of live calls are kept.
#[derive(Clone)]
pub enum SnapshotStore {
    Memory(Arc<Mutex<HashMap<String, String>>>),
    Redis(ConnectionManager),
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotStore::Memory(_) => "SnapshotStore::Memory",
            SnapshotStore::Redis(_) => "SnapshotStore::Redis",
        })
    }
}

impl SnapshotStore {
    pub fn memory() -> Self {
        SnapshotStore::Memory(Arc::default())
    }

    /// The Redis key of a call's snapshot.
    pub fn key(tenant: &str, call: &str) -> String {
        format!("sb:{tenant}:call:{call}")
    }

    async fn write(&self, key: String, snapshot: Option<&str>) -> crate::Result<()> {
        match self {
            SnapshotStore::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                match snapshot {
                    Some(s) => map.insert(key, s.to_owned()),
                    None => map.remove(&key),
                };
                Ok(())
            }
            SnapshotStore::Redis(conn) => {
                let cmd = match snapshot {
                    // A day at most: a call no node finishes does not stay for ever.
                    Some(s) => {
                        let mut c = redis::cmd("SET");
                        c.arg(&key).arg(s).arg("EX").arg(SNAPSHOT_TTL_SECS);
                        c
                    }
                    None => {
                        let mut c = redis::cmd("DEL");
                        c.arg(&key);
                        c
                    }
                };
                crate::redis_retry::query::<()>(conn, &cmd).await?;
                Ok(())
            }
        }
    }
}

const SNAPSHOT_TTL_SECS: u64 = 24 * 3600;

/// Reaches the call-state system, which keeps call threads (their events and snapshots) in
/// shards. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CallThreads {
    shards: Shards<ShardMsg>,
}

impl CallThreads {
    /// With `agents`, a change of a call involving an agent's DN is written after the
    /// agent's own changes it brings about (busy, after-call work).
    pub async fn spawn(
        events: EventSink,
        snapshots: SnapshotStore,
        agents: Option<AgentState>,
        shards: usize,
    ) -> Result<Self, ractor::SpawnErr> {
        let mut refs = Vec::with_capacity(shards.max(1));
        for _ in 0..shards.max(1) {
            let (shard, _) = Actor::spawn(
                None,
                Shard,
                ShardState {
                    events: events.clone(),
                    snapshots: snapshots.clone(),
                    agents: agents.clone(),
                    threads: HashMap::new(),
                },
            )
            .await?;
            refs.push(shard);
        }
        Ok(Self {
            shards: Shards::new(refs),
        })
    }

    /// Hands a change of a call on; never waits.
    pub fn record(&self, mut event: CallEvent) {
        if let Some(thread) = event.former_thread.take() {
            let shard = self.shards.pick(&thread);
            let _ = shard.cast(ShardMsg::Left {
                tenant: event.tenant.clone(),
                call: event.call.call_id.clone(),
                thread,
            });
        }
        let shard = self.shards.pick(&event.call.thread_id);
        if shard.cast(ShardMsg::Event(event)).is_err() {
            tracing::warn!("call state stopped: call event dropped");
        }
    }

    pub fn stop(&self) {
        for shard in self.shards.iter() {
            shard.stop(None);
        }
    }
}

struct Shard;

struct ShardState {
    events: EventSink,
    snapshots: SnapshotStore,
    agents: Option<AgentState>,
    /// The calls of each thread still going: a thread's event numbering is forgotten once
    /// its last call is over (a consultation call ends before the call it consulted about).
    threads: HashMap<String, HashSet<String>>,
}

impl Actor for Shard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardState;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: ShardMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMsg::Event(e) => state.event(e).await,
            ShardMsg::Left {
                tenant,
                thread,
                call,
            } => state.call_over(&tenant, &thread, &call, true).await,
        }
        Ok(())
    }
}

impl ShardState {
    /// Records call `call` as going on in `thread`, or over (`ended`); forgets the thread's
    /// numbering once its last call is over.
    async fn call_over(&mut self, tenant: &str, thread: &str, call: &str, ended: bool) {
        let calls = self.threads.entry(thread.to_owned()).or_default();
        if ended {
            calls.remove(call);
        } else {
            calls.insert(call.to_owned());
        }
        if calls.is_empty() {
            self.threads.remove(thread);
            let key = format!("{tenant}:{thread}");
            if let Err(err) = self.events.close_key(tenant, &key).await {
                tracing::warn!(%tenant, %call, error = %err, "call thread's event counter not removed");
            }
        }
    }

    async fn event(&mut self, e: CallEvent) {
        let state = self;
        let key = SnapshotStore::key(&e.tenant, &e.call.call_id);
        if let Err(err) = state.snapshots.write(key, e.snapshot.as_deref()).await {
            tracing::warn!(tenant = %e.tenant, call = %e.call.call_id, error = %err,
                "call snapshot not stored");
        }
        let (tenant, call, kind) = (e.tenant.clone(), e.call.call_id.clone(), e.kind);
        let thread = e.call.thread_id.clone();
        if let Some(agents) = &state.agents
            && !(e.dns.is_empty() && e.left.is_empty())
        {
            agents
                .call_changed(&tenant, &e.dns, &e.left, &call, kind.ends_call())
                .await;
        }
        let key = format!("{}:{}", e.tenant, e.call.thread_id);
        let event = new_event(
            &e.tenant,
            TOPIC_CALLTHREAD,
            key.clone(),
            kind.name(),
            Payload::Call(e.call),
            e.at_ms,
        );
        match state.events.publish(event).await {
            Ok(stored) => {
                tracing::debug!(%tenant, %call, kind = kind.name(), seq = stored.seq, "call event")
            }
            Err(err) => {
                tracing::warn!(%tenant, %call, kind = kind.name(), error = %err,
                    "call event not stored");
            }
        }
        state
            .call_over(&tenant, &thread, &call, kind.ends_call())
            .await;
    }
}
