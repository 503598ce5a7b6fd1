//! The call-state system: call threads as calls report them. Each change of a call is an
//! event on the tenant's `voice-callthread` stream, keyed by the call's thread so that a
//! thread's events keep their order, and the call's snapshot (enough for another node to finish
//! the call) is written beside it, then removed when the call is over.
//!
//! Shards, chosen by thread, each await their store on their own: one thread's events are
//! written in order while other threads proceed. A call only casts; it never waits for
//! this system. A shard that fails is started again under its name by the root supervisor.

mod store;

pub use crate::messages::call_state::{Claim, SnapshotChange, SnapshotStore, Stored};
pub use store::{MemorySnapshots, RedisSnapshots};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use switchboard_proto::events::Payload;

use crate::events::{EventSink, TOPIC_CALLTHREAD, new_event};
use crate::messages::agent_state::AgentState;
use crate::messages::call_state::{CallEvent, CallStateMsg, CallThreads};
use crate::shards::{Shards, set_name};
use crate::supervisor::{Policy, Supervisor};

impl CallThreads {
    /// Starts `shards` shards under the root supervisor. With `agents`, a change of a call
    /// involving an agent's DN is written after the agent's own changes it brings about (busy,
    /// after-call work).
    pub async fn spawn(
        events: EventSink,
        snapshots: Arc<dyn SnapshotStore>,
        agents: Option<AgentState>,
        shards: usize,
        supervisor: &Supervisor,
    ) -> Result<Self, ractor::SpawnErr> {
        let set = set_name("call_state");
        let mut refs = Vec::with_capacity(shards.max(1));
        for i in 0..shards.max(1) {
            let name = Shards::<CallStateMsg>::name(&set, i);
            let setting = ShardSetting {
                name: name.clone(),
                events: events.clone(),
                snapshots: snapshots.clone(),
                agents: agents.clone(),
            };
            let shard = setting.clone().spawn(supervisor.cell()).await?;
            let restart = move |under: ActorCell| {
                let setting = setting.clone();
                Box::pin(async move { setting.spawn(under).await.map(|s| s.get_cell()) })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
            };
            supervisor.watch(
                shard.get_cell(),
                "call_state",
                Policy::Restart(Arc::new(restart)),
            );
            refs.push((name, shard));
        }
        Ok(Self::new(Shards::new(refs)))
    }
}

/// What a shard is started with, again when it is restarted.
#[derive(Clone)]
struct ShardSetting {
    name: String,
    events: EventSink,
    snapshots: Arc<dyn SnapshotStore>,
    agents: Option<AgentState>,
}

impl ShardSetting {
    async fn spawn(
        self,
        supervisor: ActorCell,
    ) -> Result<ActorRef<CallStateMsg>, ractor::SpawnErr> {
        let name = self.name.clone();
        let state = ShardState {
            events: self.events,
            snapshots: self.snapshots,
            agents: self.agents,
            threads: HashMap::new(),
        };
        let (shard, _) = Actor::spawn_linked(Some(name), Shard, state, supervisor).await?;
        Ok(shard)
    }
}

struct Shard;

struct ShardState {
    events: EventSink,
    snapshots: Arc<dyn SnapshotStore>,
    agents: Option<AgentState>,
    /// The calls of each thread still going: a thread's event numbering is forgotten once
    /// its last call is over (a consultation call ends before the call it consulted about).
    threads: HashMap<String, HashSet<String>>,
}

impl Actor for Shard {
    type Msg = CallStateMsg;
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
        message: CallStateMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CallStateMsg::Event(e) => state.event(e).await,
            CallStateMsg::Left {
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
                tracing::warn!(%tenant, call_id = %call, error = %err, "call thread's event counter not removed");
            }
        }
    }

    async fn event(&mut self, e: Box<CallEvent>) {
        let state = self;
        let change = SnapshotChange {
            snapshot: e.snapshot.as_deref(),
            index: &e.index,
            unindex: &e.unindex,
        };
        match state
            .snapshots
            .write(&e.tenant, &e.call.call_id, change)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Adopted by another node while this one was away: it reports the call now.
                tracing::warn!(tenant = %e.tenant, call_id = %e.call.call_id,
                    kind = e.kind.name(), "the call runs on another node now: event dropped");
                return;
            }
            Err(err) => {
                tracing::warn!(tenant = %e.tenant, call_id = %e.call.call_id, error = %err,
                    "call snapshot not stored");
            }
        }
        let (tenant, call, kind) = (e.tenant.clone(), e.call.call_id.clone(), e.kind);
        let thread = e.call.thread_id.clone();
        if let Some(agents) = &state.agents
            && !(e.dns.is_empty() && e.left.is_empty())
        {
            // Boxed, as it is large and only some events tell agent state.
            Box::pin(agents.call_changed(&tenant, &e.dns, &e.left, &call, kind.ends_call())).await;
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
                tracing::debug!(%tenant, call_id = %call, kind = kind.name(), seq = stored, "call event")
            }
            Err(err) => {
                tracing::warn!(%tenant, call_id = %call, kind = kind.name(), error = %err,
                    "call event not stored");
            }
        }
        state
            .call_over(&tenant, &thread, &call, kind.ends_call())
            .await;
    }
}
