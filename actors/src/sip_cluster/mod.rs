//! The SIP cluster system (Voice SIP Cluster): every call is a back-to-back user agent that
//! owns the call's legs, their dialogs and transactions (design.md "A call through the core"),
//! and the cluster actor is their door: it owns the node's table of calls, starts them in its
//! shards of calls, and takes what desktops and callbacks ask of calls.
//!
//! [`call::Call`] is the call as a sans-io state machine; a [`shard`] hosts many and drives
//! each. The edge starts the call of each dialog-creating request it admits through the
//! [`CallStarter`] the cluster gave it: the cluster reads of the call off a channel as it next
//! works, rather than being woken by a message a call (on 2 cores, each wake of an idle actor
//! costs more than the work it brings). The edge hands the call's later messages to the call's
//! shard itself, without a stop here; the cluster tells it of the calls it places and, in
//! batches, of the calls that end ([`CallRoute`]).

mod adopt;
pub mod call;
mod calls;
mod shard;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, SupervisionEvent};
use switchboard_sip::transaction::TimerConfig;
use tokio::sync::mpsc;

use crate::lease::Ownership;
use crate::messages::call_state::SnapshotStore;
use crate::messages::call_state::{CallEvent, CallEventKind, CallThreads};
use crate::messages::ors::Ors;
use crate::messages::registrar::BindingStore;
use crate::messages::sip_cluster::{
    AdoptionCounts, CallIn, CallRef, CallStarter, CallView, Cluster, ClusterMsg, ControlError,
    Found, Invalid, MainCall, NewDialog, Refusal, Started,
};
use crate::messages::sip_proxy::CallRoute;
use crate::supervisor::Supervisor;
use crate::tenant::Directory;
use crate::wakeups::Wakeups;
use adopt::Adoption;
use call::snapshot::CallSnapshot;
use calls::Calls;
use shard::{CallHandle, CallMsg, CallShard, ShardMsg, ShardRef, Shared, Start};

/// The shards of calls of a node: the calls of one shard take turns, those of others run side
/// by side on the other cores.
const CALL_SHARDS: u64 = 8;

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

/// What the cluster is started with.
pub struct ClusterArgs {
    pub config: ClusterConfig,
    /// Where calls find the phones of a DN.
    pub bindings: Arc<dyn BindingStore>,
    pub call_threads: CallThreads,
    /// Runs the strategies of routing points; without it, their calls take the default
    /// destination.
    pub ors: Option<Ors>,
    /// The prefix of the Call-IDs this node makes (see
    /// [`crate::messages::sip_cluster::call_id`]), which the edge shares.
    pub node: Arc<str>,
    pub directory: Arc<Directory>,
    /// Where the calls' snapshots are kept, shared with other nodes (Redis), and which
    /// tenants this node owns: the node adopts the calls of nodes that die. None on a node
    /// alone in memory.
    pub adoption: Option<(Arc<dyn SnapshotStore>, Ownership)>,
    /// What adoption came to, for the node's metrics.
    pub adoption_counts: Arc<AdoptionCounts>,
    /// Where stray requests (of no live call) count against their source.
    pub defence: Option<Arc<crate::defence::Defence>>,
}

impl Cluster {
    /// Starts the cluster under the root supervisor; its failure stops the node (the table of
    /// calls is its alone). It takes calls once the edge has told it where it is.
    pub async fn spawn(
        args: ClusterArgs,
        supervisor: &Supervisor,
    ) -> Result<Self, ractor::SpawnErr> {
        Ok(Self::new(
            supervisor.spawn("sip_cluster", ClusterActor, args).await?,
        ))
    }
}

struct ClusterActor;

/// Calls ended that the edge is told of together, rather than one message a call: until it
/// is, a message of an ended call reaches its shard, which hands it back to the edge.
const ENDED_BATCH: usize = 32;

struct ClusterState {
    args: ClusterArgs,
    calls: Calls,
    /// Starts calls, once the edge is known: the cluster's own (a desktop's), and the edge's.
    starter: Option<Arc<Starter>>,
    /// Calls the edge started, for the table.
    started: mpsc::UnboundedReceiver<Registered>,
    started_tx: mpsc::UnboundedSender<Registered>,
    /// Where the edge hears which call takes which messages.
    routes: Option<DerivedActorRef<CallRoute>>,
    /// Calls ended that the edge has not been told of yet.
    ended: Vec<u64>,
    /// Calls that ended before the cluster read that the edge had started them.
    gone_early: HashSet<u64>,
    /// Adopting the calls of nodes that die (with Redis).
    adoption: Option<Adoption>,
}

impl Actor for ClusterActor {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Arguments = ClusterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (started_tx, started) = mpsc::unbounded_channel();
        let adoption = args
            .adoption
            .clone()
            .map(|(store, ownership)| Adoption::new(store, ownership));
        Ok(ClusterState {
            adoption,
            calls: Calls::new(args.node.clone()),
            args,
            starter: None,
            started,
            started_tx,
            routes: None,
            ended: Vec::new(),
            gone_early: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.take_started();
        match message {
            ClusterMsg::Edge {
                endpoint,
                routes,
                reply,
            } => {
                let addrs = Arc::new(call::Addrs::of(&endpoint));
                let shared = Arc::new(Shared {
                    endpoint,
                    addrs,
                    live: Arc::default(),
                    config: Arc::new(state.args.config.clone()),
                    bindings: state.args.bindings.clone(),
                    call_threads: state.args.call_threads.clone(),
                    dn_calls: DnCalls::default(),
                    node: state.args.node.clone(),
                    wakeups: Wakeups::start(shard::wake),
                    cluster: Cluster::new(myself.clone()),
                    ors: state.args.ors.clone(),
                    liveness: state
                        .adoption
                        .as_ref()
                        .map(|_| adopt::Liveness::start(myself.clone())),
                });
                let mut shards = Vec::new();
                for _ in 0..CALL_SHARDS {
                    let args = (shared.clone(), routes.clone());
                    let (shard, _) =
                        Actor::spawn_linked(None, CallShard, args, myself.get_cell()).await?;
                    shards.push(ShardRef::new(shard));
                }
                let starter = Arc::new(Starter {
                    shared,
                    shards,
                    keys: AtomicU64::new(0),
                    started: state.started_tx.clone(),
                    adopting: state.adoption.is_some(),
                });
                if state.adoption.is_some() {
                    myself.send_interval(adopt::SWEEP_EVERY, || ClusterMsg::Sweep);
                }
                state.starter = Some(starter.clone());
                state.routes = Some(routes);
                let _ = reply.send(starter);
            }
            ClusterMsg::ConfigChanged(directory) => state.args.directory = directory,
            ClusterMsg::MakeCall {
                tenant,
                dn,
                dial,
                user_data,
                thread,
                reply,
            } => {
                let Some(t) = state.args.directory.by_name(&tenant).cloned() else {
                    let _ = reply.send(Err(ControlError::NotFound(tenant)));
                    return Ok(());
                };
                if t.dial_plan.route(&dial).is_none() {
                    let no_route = Invalid::NoRoute {
                        tenant,
                        dialed: dial,
                    };
                    let _ = reply.send(Err(no_route.into()));
                    return Ok(());
                }
                let start = Start::Originate {
                    tenant: t,
                    dn,
                    dial,
                    user_data,
                    thread,
                };
                let Some(starter) = state.starter.clone() else {
                    let _ = reply.send(Err(not_up()));
                    return Ok(());
                };
                match starter.spawn(start) {
                    Ok(Registered { call, id, call_id }) => {
                        let key = call.key;
                        state.calls.insert(id.clone(), call_id, call.clone());
                        // The edge learns where the call's messages go before the call says
                        // anything: it speaks once woken.
                        if let Some(routes) = &state.routes {
                            let placed = CallRoute::Placed {
                                key,
                                call: call.messages(),
                            };
                            let _ = routes.send_message(placed);
                        }
                        call.cast(CallMsg::Wake);
                        let _ = reply.send(Ok(id.to_string()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            ClusterMsg::Control {
                tenant,
                call,
                dn,
                control,
                reply,
            } => match state.calls.by_id(&call) {
                Some(call) => {
                    call.cast(CallMsg::Control {
                        tenant,
                        dn,
                        control,
                        reply,
                    });
                }
                None => {
                    let _ = reply.send(Err(ControlError::NotFound(call)));
                }
            },
            ClusterMsg::Complete {
                main,
                consult,
                conference,
                reply,
            } => state.complete(main, consult, conference, reply),
            ClusterMsg::Order { call, order } => match state.calls.by_id(&call) {
                Some(call) => {
                    call.cast(CallMsg::Order(order));
                }
                None => tracing::debug!(call_id = %call, "an order for a call that is over"),
            },
            ClusterMsg::Count(reply) => {
                let load = state.starter.as_ref().map(|s| s.live());
                let _ = reply.send(load.unwrap_or((state.calls.len(), 0)));
            }
            ClusterMsg::Adopt(message) => {
                let tenants = state.args.directory.tenants().map(|t| t.name.clone());
                if let Some(adoption) = &mut state.adoption {
                    adoption.look_up(message, tenants.collect(), &myself);
                }
            }
            ClusterMsg::Found { call_id, found } => state.found(call_id, found).await,
            ClusterMsg::Sweep => {
                let tenants = state.args.directory.tenants().map(|t| t.name.clone());
                let sip = state.starter.as_ref().map(|s| s.shared.endpoint.udp_addr());
                if let Some(adoption) = &mut state.adoption {
                    adoption.sweep(tenants.collect(), sip, &myself);
                }
            }
            ClusterMsg::Swept(won) => {
                if let Some(adoption) = &mut state.adoption {
                    adoption.sweeping = false;
                }
                let Ok(won) = won else {
                    AdoptionCounts::count(&state.args.adoption_counts.lookups_failed);
                    return Ok(());
                };
                if !won.is_empty() {
                    tracing::info!(calls = won.len(), "calls of dead nodes found by the sweep");
                }
                for (tenant, call, snapshot) in won {
                    state.take_in(&tenant, &call, &snapshot, Vec::new()).await;
                }
            }
            ClusterMsg::Verify => {
                if let Some(adoption) = &state.adoption {
                    let store = adoption.store.clone();
                    let tenants: Vec<String> = state
                        .args
                        .directory
                        .tenants()
                        .map(|t| t.name.clone())
                        .collect();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let gone = match adopt::adopted_while_away(store.as_ref(), tenants).await {
                            Ok(gone) => gone,
                            Err(e) => {
                                // Nobody adopts a call without Redis either: they go on.
                                tracing::warn!(error = %e,
                                    "this node's calls not settled after it was away (Redis): they go on");
                                Vec::new()
                            }
                        };
                        let _ = me.cast(ClusterMsg::Verified(gone));
                    });
                }
            }
            ClusterMsg::Ended(key) => state.ended(key),
            ClusterMsg::Verified(gone) => {
                let mut abandoned = 0;
                for call in &gone {
                    if let Some(call) = state.calls.by_id(call) {
                        call.cast(CallMsg::Abandon);
                        abandoned += 1;
                    }
                }
                if abandoned > 0 {
                    tracing::warn!(
                        calls = abandoned,
                        "calls adopted by other nodes while this one was away: let go without a word"
                    );
                } else {
                    tracing::info!("this node was away, and all its calls are still its own");
                }
                let parked = state
                    .starter
                    .as_ref()
                    .and_then(|s| s.shared.liveness.as_ref())
                    .map(|l| l.settled())
                    .unwrap_or_default();
                for call in parked {
                    call.cast(CallMsg::Wake);
                }
            }
            ClusterMsg::HandOverAll(reply) => {
                // From now on a stray message of a call of this node is not taken back: the
                // call is the other nodes' to adopt.
                if let Some(adoption) = &mut state.adoption {
                    adoption.leaving = true;
                }
                for call in state.calls.handles() {
                    call.cast(CallMsg::Leave);
                }
                let _ = reply.send(state.calls.len());
            }
            ClusterMsg::ShutDown(reply) => {
                for call in state.calls.handles() {
                    call.cast(CallMsg::ShutDown);
                }
                let _ = reply.send(state.calls.len());
            }
        }
        Ok(())
    }

    /// A shard of calls failed (which no call's own failure does): the node cannot go on
    /// with part of its calls gone, so the cluster fails, and the node with it.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(shard = ?cell.get_name(), error = %error, "shard of calls failed");
                Err(format!("shard of calls failed: {error}").into())
            }
            _ => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for shard in state.starter.iter().flat_map(|s| &s.shards) {
            shard.actor.stop(None);
        }
        Ok(())
    }
}

impl ClusterState {
    /// Call `key` left its shard: it is forgotten, and the edge told (in batches).
    fn ended(&mut self, key: u64) {
        self.take_started();
        match self.calls.ended(key) {
            true => self.ended.push(key),
            false => {
                self.gone_early.insert(key);
            }
        }
        if self.ended.len() >= ENDED_BATCH
            && let Some(routes) = &self.routes
        {
            let _ = routes.send_message(CallRoute::Ended(std::mem::take(&mut self.ended)));
        }
    }

    /// What the look-up of stray messages with SIP Call-ID `call_id` found: they go to their
    /// call (adopted if its node died), on to the node running it, or are answered 481.
    async fn found(&mut self, call_id: ByteString, found: Found) {
        let Some(adoption) = &mut self.adoption else {
            return;
        };
        let held = adoption.waiting.remove(&call_id).unwrap_or_default();
        let Some(starter) = self.starter.clone() else {
            return;
        };
        let endpoint = &starter.shared.endpoint;
        match found {
            Found::Nothing => {
                tracing::debug!(%call_id, "a message of no live call: 481");
                for m in held {
                    if let (Some(defence), switchboard_sip::Message::Request(_)) =
                        (&self.args.defence, &m.message)
                    {
                        defence.stray(m.source.ip(), std::time::Instant::now());
                    }
                    if let Some(r) = adopt::no_such_call(&m.message)
                        && let Err(e) = endpoint.send(m.transport, m.source, r.to_bytes())
                    {
                        tracing::debug!(dest = %m.source, error = %e, "send failed");
                    }
                }
            }
            Found::Elsewhere { node, sip } => match sip {
                Some(addr) => {
                    tracing::debug!(%call_id, %node, %addr, "a message of a call on another node: sent on");
                    for m in held {
                        let bytes = m.message.to_bytes();
                        if let Err(e) =
                            endpoint.send(switchboard_sip::transport::Transport::Udp, addr, bytes)
                        {
                            tracing::debug!(dest = %addr, error = %e, "send failed");
                        }
                    }
                }
                None => tracing::warn!(%call_id, %node,
                    "a message of a call on another node, which gave no address: dropped"),
            },
            Found::Unknown(e) => {
                AdoptionCounts::count(&self.args.adoption_counts.lookups_failed);
                tracing::warn!(%call_id, error = %e,
                    "the call of a message not looked up (Redis): dropped, its sender tries again")
            }
            Found::Mine { call, .. } if adoption.leaving => {
                tracing::debug!(%call_id, %call,
                    "a message of a call handed over as the node stops: dropped, its sender tries again");
            }
            Found::Mine {
                tenant,
                call,
                snapshot,
            } => match self.calls.by_id(&call) {
                Some(handle) => {
                    if let Some(routes) = &self.routes {
                        let key = handle.key;
                        let _ = routes.send_message(CallRoute::Moved { call_id, key });
                    }
                    for m in held {
                        handle.cast(CallMsg::In(m));
                    }
                }
                None => self.take_in(&tenant, &call, &snapshot, held).await,
            },
            Found::Won {
                tenant,
                call,
                snapshot,
            } => self.take_in(&tenant, &call, &snapshot, held).await,
        }
    }

    /// Carries on call `call` of `tenant`, claimed from a dead node, from its snapshot, and
    /// hands it the messages that brought it here. A snapshot that cannot be read ends the
    /// call as best it can: its closing event, cause `unrecoverable`.
    async fn take_in(&mut self, tenant: &str, call: &str, json: &str, held: Vec<CallIn>) {
        let Some(starter) = self.starter.clone() else {
            return;
        };
        let snapshot = serde_json::from_str::<CallSnapshot>(json).map_err(|e| e.to_string());
        let t = self.args.directory.by_name(tenant).cloned();
        let (snapshot, t) = match (snapshot, t) {
            (Ok(s), Some(t)) => (s, t),
            (s, t) => {
                let why = match (s, t) {
                    (Err(e), _) => format!("snapshot unreadable: {e}"),
                    _ => "no such tenant any more".to_owned(),
                };
                AdoptionCounts::count(&self.args.adoption_counts.unrecoverable);
                tracing::error!(%tenant, call_id = %call, %why,
                    "call of a dead node cannot be carried on: ended");
                // The legs' Call-IDs that brought it here are all that is known of them.
                let legs = held
                    .iter()
                    .filter_map(|m| m.message.headers().call_id().map(|c| c.to_string()))
                    .collect();
                self.args
                    .call_threads
                    .record(unrecoverable(tenant, call, legs));
                for m in held {
                    if let Some(r) = adopt::no_such_call(&m.message) {
                        let _ = starter
                            .shared
                            .endpoint
                            .send(m.transport, m.source, r.to_bytes());
                    }
                }
                return;
            }
        };
        match starter.adopt_call(&snapshot, t, &self.args.adoption_counts) {
            Ok(Registered { call, id, call_id }) => {
                self.calls.insert(id, call_id, call.clone());
                if let Some(routes) = &self.routes {
                    let adopted = CallRoute::Adopted {
                        key: call.key,
                        call_ids: snapshot
                            .legs
                            .iter()
                            .map(|l| ByteString::from(l.call_id.as_str()))
                            .collect(),
                        call: call.messages(),
                    };
                    let _ = routes.send_message(adopted);
                }
                for m in held {
                    call.cast(CallMsg::In(m));
                }
            }
            Err(e) => tracing::error!(%tenant, call_id = %call, error = %e,
                "call of a dead node not carried on"),
        }
    }

    /// Enters the calls the edge started since the last look into the table.
    fn take_started(&mut self) {
        while let Ok(Registered { call, id, call_id }) = self.started.try_recv() {
            if self.gone_early.remove(&call.key) {
                self.ended.push(call.key);
                continue;
            }
            self.calls.insert(id, call_id, call);
        }
    }

    /// Completes a transfer or conference (see [`ClusterMsg::Complete`]): the consultation
    /// call gives up its party's leg, the edge hands that leg's messages to the main call,
    /// which takes it, and the consultation call ends. The steps run in a task of their own,
    /// each a request to a call, so that the cluster goes on meanwhile.
    fn complete(
        &self,
        main: MainCall,
        consult: CallRef,
        conference: bool,
        reply: Option<ractor::RpcReplyPort<Result<CallView, ControlError>>>,
    ) {
        let not_found = |name: String| ControlError::NotFound(name);
        let found = match (self.calls.by_id(&main.call), self.calls.lookup(&consult)) {
            (None, _) => Err(not_found(main.call.clone())),
            (_, None) => {
                let (CallRef::Id(name) | CallRef::SipCallId(name)) = consult;
                Err(not_found(name))
            }
            (Some(main_call), Some(consult_call)) => Ok((main_call.clone(), consult_call.clone())),
        };
        let (main_call, consult_call) = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(tenant = %main.tenant, call_id = %main.call, error = %e,
                    "transfer not completed");
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e));
                }
                return;
            }
        };
        let routes = self.routes.clone();
        tokio::spawn(async move {
            let completed = steps(main.clone(), main_call, consult_call, routes, conference).await;
            if let Err(e) = &completed {
                tracing::warn!(tenant = %main.tenant, call_id = %main.call, error = %e,
                    "transfer not completed");
            }
            if let Some(reply) = reply {
                let _ = reply.send(completed);
            }
        });
    }
}

/// The steps of completing a transfer into `main_call` (see [`ClusterState::complete`]).
async fn steps(
    main: MainCall,
    main_call: CallHandle,
    consult_call: CallHandle,
    routes: Option<DerivedActorRef<CallRoute>>,
    conference: bool,
) -> Result<CallView, ControlError> {
    let unavailable = |e: ractor::RactorErr<ShardMsg>| ControlError::Unavailable(e.to_string());
    let handover = consult_call
        .ask(|reply| CallMsg::HandOver {
            tenant: main.tenant.clone(),
            dn: main.dn.clone(),
            reply,
        })
        .await
        .map_err(unavailable)??;
    if let Some(routes) = &routes {
        let moved = CallRoute::Moved {
            call_id: handover.call_id().clone(),
            key: main_call.key,
        };
        let _ = routes.send_message(moved);
    }
    let view = main_call
        .ask(|reply| CallMsg::TakeOver {
            tenant: main.tenant.clone(),
            dn: main.dn.clone(),
            handover,
            conference,
            reply,
        })
        .await
        .map_err(unavailable)??;
    consult_call
        .ask(|reply| CallMsg::Finish {
            tenant: main.tenant.clone(),
            dn: main.dn.clone(),
            conferenced: conference,
            thread: main.thread.clone(),
            reply,
        })
        .await
        .map_err(unavailable)??;
    Ok(view)
}

/// The closing event of a call whose snapshot no call can be made of, forgetting the SIP
/// Call-IDs of the `legs` known.
fn unrecoverable(tenant: &str, call: &str, legs: Vec<String>) -> CallEvent {
    CallEvent {
        tenant: tenant.to_owned(),
        kind: CallEventKind::Released,
        call: switchboard_proto::events::CallThread {
            call_id: call.to_owned(),
            thread_id: call.to_owned(),
            cause: "unrecoverable".into(),
            ..Default::default()
        },
        at_ms: crate::unix_ms(),
        snapshot: None,
        index: Vec::new(),
        unindex: legs,
        dns: Vec::new(),
        left: Vec::new(),
        former_thread: None,
    }
}

/// The refusal of a call asked for before the edge is up.
fn not_up() -> ControlError {
    Refusal::NotStarted("the node's SIP edge is not up yet".into()).into()
}

/// A call started, for the cluster's table.
struct Registered {
    call: CallHandle,
    id: Arc<str>,
    /// The Call-ID its first leg arrived with; empty for a call the core placed.
    call_id: ByteString,
}

/// Starts calls in the cluster's shards: the calls of dialog-creating requests the edge
/// admitted (through [`CallStarter`], with no stop at the cluster, which reads them off a
/// channel it drains as it works), and those the cluster places for desktops.
struct Starter {
    shared: Arc<Shared>,
    /// The shards of calls; a call's number picks its shard.
    shards: Vec<Arc<ShardRef>>,
    /// The last call number given.
    keys: AtomicU64,
    started: mpsc::UnboundedSender<Registered>,
    /// Whether the node adopts calls of other nodes (it keeps snapshots in Redis).
    adopting: bool,
}

impl Starter {
    /// Carries on a call adopted from a dead node, from its snapshot; a call that cannot go
    /// on from where the snapshot left it is ended cleanly on the legs it names.
    fn adopt_call(
        &self,
        snapshot: &CallSnapshot,
        tenant: Arc<crate::tenant::Tenant>,
        counts: &AdoptionCounts,
    ) -> Result<Registered, ControlError> {
        let key = self.keys.fetch_add(1, Ordering::Relaxed) + 1;
        let at = call::restore::Adopting {
            tenant,
            local: self.shared.local(key),
            config: self.shared.config.clone(),
            dn_calls: self.shared.dn_calls.clone(),
        };
        let now = std::time::Instant::now();
        let call = match call::Call::restore(snapshot, at.clone(), now) {
            Ok(call) => {
                AdoptionCounts::count(&counts.adopted);
                call
            }
            Err(why) => {
                AdoptionCounts::count(&counts.unrecoverable);
                tracing::warn!(tenant = %at.tenant.name, call_id = %snapshot.call, %why,
                    "call of a dead node cannot go on: ended on its legs");
                let Some(mut call) = call::Call::remains(snapshot, at, now) else {
                    return Err(Refusal::NotStarted(why).into());
                };
                call.unrecoverable(now);
                call
            }
        };
        let id: Arc<str> = Arc::from(snapshot.call.as_str());
        let call_id = snapshot
            .legs
            .first()
            .map(|l| ByteString::from(l.call_id.as_str()))
            .unwrap_or_default();
        self.spawn_as(key, id, call_id, Start::Restored(Box::new(call)))
    }

    fn spawn(&self, start: Start) -> Result<Registered, ControlError> {
        let key = self.keys.fetch_add(1, Ordering::Relaxed) + 1;
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
            Start::Originate { .. } | Start::Restored(_) => ByteString::new(),
        };
        let id: Arc<str> = crate::new_id().into();
        self.spawn_as(key, id, call_id, start)
    }

    /// Starts call `key` in its shard, whose messages for the call follow this one.
    fn spawn_as(
        &self,
        key: u64,
        id: Arc<str>,
        call_id: ByteString,
        start: Start,
    ) -> Result<Registered, ControlError> {
        let shard = &self.shards[(key % self.shards.len() as u64) as usize];
        let begin = ShardMsg::Start {
            key,
            id: id.clone(),
            start: Box::new(start),
        };
        shard.actor.cast(begin).map_err(|e| {
            tracing::error!(error = %e, "call not started: its shard is gone");
            ControlError::from(Refusal::NotStarted(e.to_string()))
        })?;
        let call = CallHandle {
            key,
            shard: shard.clone(),
        };
        Ok(Registered { call, id, call_id })
    }
}

impl CallStarter for Starter {
    fn start(
        &self,
        new: NewDialog,
    ) -> Pin<Box<dyn Future<Output = Result<Started, ControlError>> + Send + '_>> {
        Box::pin(async move {
            let registered = self.spawn(Start::Incoming(new))?;
            let started = Started {
                key: registered.call.key,
                call: registered.call.messages(),
            };
            // The cluster reads it as it next works: no message wakes it for each call.
            let _ = self.started.send(registered);
            Ok(started)
        })
    }

    fn live(&self) -> (usize, usize) {
        let load = &self.shared.live;
        (
            load.in_progress.load(Ordering::Relaxed),
            load.ending.load(Ordering::Relaxed),
        )
    }

    fn adopt(&self, message: CallIn) -> Result<(), Box<CallIn>> {
        if !self.adopting {
            return Err(Box::new(message));
        }
        self.shared.cluster.send(ClusterMsg::Adopt(message));
        Ok(())
    }
}
