//! Callbacks for GES (Genesys Engagement Service): a customer asked to be called back; the
//! request waits in a virtual queue like a call, and once an agent is reserved the agent's
//! phone is called, then the customer's number (the MakeCall path: the phone is told to
//! answer by itself, then the dial plan routes the number, usually to a trunk).
//!
//! GES appends each request to the Redis stream `sb:{<tenant>}:ges-callbacks`, as it does with
//! the Genesys core (for one release, its name before the hash tags, `sb:<tenant>:ges-callbacks`,
//! is read as well); [`follow_requests`] reads the streams of every tenant as a consumer group,
//! so that each request is taken by one node. What happens is on the tenant's call
//! stream: CallbackQueued, CallbackCancelled, CallbackDialed (with the call placed, whose
//! own events carry the callback's id in `GCB_id`), CallbackFailed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_proto::events::{CallThread, Party, Payload};
use switchboard_routing::strategy::{Known, unknown_name};
use switchboard_routing::target::Target;

use super::store::{Kind, RoutingStore};
use crate::events::{EventSink, TOPIC_CALLTHREAD, new_event};
use crate::keys::Keys;
use crate::lease::Ownership;
use crate::messages::bus::{Answer, OwnerBound, OwnerRoute, ToOwner};
use crate::messages::ors::{CallbackStatus, Kept};
use crate::messages::rq::{Rq, RqMsg, Told, Waiter};
use crate::messages::sip_cluster::{Cluster, ClusterMsg};
use crate::redis_conn::{Conn, Redis};
use crate::supervisor::Supervisor;
use crate::tenant::Directory;

/// The consumer group of the nodes on the requests' streams.
const GROUP: &str = "switchboard";

/// A customer's request to be called back, as GES appends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub tenant: String,
    /// GES's id of the callback.
    pub id: String,
    /// The number to call, as the dial plan routes it.
    pub customer: String,
    pub queue: String,
    pub target: String,
    pub priority: u32,
    pub user_data: BTreeMap<String, String>,
}

impl Request {
    /// A request from the fields of a stream entry; why it is not one.
    pub fn from_fields(tenant: &str, fields: &HashMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
        let required = |k: &str| {
            let v = get(k);
            if v.is_empty() {
                Err(format!("{k}: required"))
            } else {
                Ok(v)
            }
        };
        let priority = match fields.get("priority") {
            None => 0,
            Some(p) => p
                .parse()
                .map_err(|_| format!("priority: not a number: {p:?}"))?,
        };
        let user_data = match fields.get("userData") {
            None => BTreeMap::new(),
            Some(text) => serde_json::from_str::<BTreeMap<String, serde_json::Value>>(text)
                .map_err(|e| format!("userData: not a JSON object: {e}"))?
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
        };
        Ok(Self {
            tenant: tenant.to_owned(),
            id: required("id")?,
            customer: required("customer")?,
            queue: required("queue")?,
            target: required("target")?,
            priority,
            user_data,
        })
    }
}

pub enum CallbackMsg {
    /// A request read from GES's stream; `kept` is told once it is kept (so that the stream
    /// entry is acknowledged only then).
    New {
        request: Request,
        kept: Option<Kept>,
    },
    Told(Told),
    /// The call placed for a callback, or why none was.
    Placed {
        key: String,
        outcome: Result<String, String>,
    },
    Get {
        tenant: String,
        id: String,
        reply: RpcReplyPort<Option<CallbackStatus>>,
    },
    Cancel {
        tenant: String,
        id: String,
        reply: RpcReplyPort<Option<CallbackStatus>>,
    },
    /// This node became `tenant`'s owner: the callbacks its last owner kept wait again in
    /// their queues (with their age), then the answer.
    Gained {
        tenant: String,
        reply: RpcReplyPort<()>,
    },
    /// This node no longer owns `tenant`: its callbacks are dropped here.
    Lost {
        tenant: String,
    },
    ConfigChanged(Arc<Directory>),
}

/// What the callbacks are started with.
pub struct CallbacksArgs {
    pub directory: Arc<Directory>,
    pub rq: Rq,
    pub calls: Cluster,
    pub events: EventSink,
    /// Where callbacks are kept as they change.
    pub store: Arc<dyn RoutingStore>,
}

/// Reaches the callbacks of a tenant's owner. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Callbacks {
    actor: ActorRef<CallbackMsg>,
    /// Where a tenant's callbacks are asked of when this node is not its owner.
    owner: OwnerRoute,
}

impl Callbacks {
    /// Starts the node's callbacks under the root supervisor; as the rest of `ors`, their
    /// failure stops the node.
    pub async fn spawn(
        args: CallbacksArgs,
        supervisor: &Supervisor,
    ) -> Result<Self, ractor::SpawnErr> {
        let actor = supervisor.spawn("ors", CallbacksActor, args).await?;
        Ok(Self {
            actor,
            owner: OwnerRoute::default(),
        })
    }

    /// This handle, asking what is for a tenant owned elsewhere through `owner`.
    pub fn routed_through(self, owner: Arc<dyn ToOwner>) -> Self {
        Self {
            owner: OwnerRoute::through(owner),
            ..self
        }
    }

    /// This handle reaching this node's own callbacks only.
    pub fn local(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            owner: OwnerRoute::default(),
        }
    }

    pub fn send(&self, msg: CallbackMsg) {
        let _ = self.actor.cast(msg);
    }

    /// A callback's status (after cancelling it, with `cancel`), from the tenant's owner
    /// wherever it runs; `None` if there is no such callback (or the owner cannot be
    /// reached).
    async fn ask(&self, tenant: &str, id: &str, cancel: bool) -> Option<CallbackStatus> {
        if let Some(owner) = self.owner.elsewhere(tenant) {
            let asked = OwnerBound::Callback {
                id: id.to_owned(),
                cancel,
            };
            return match owner.ask(tenant, asked).await {
                Ok(Answer::Callback(status)) => status,
                Ok(other) => {
                    tracing::warn!(
                        tenant,
                        id,
                        answer = other.kind(),
                        "callback: the owner answered something else"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(tenant, id, error = %e, "callback: its tenant's owner not reached");
                    None
                }
            };
        }
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let asked = if cancel {
            ractor::call!(self.actor, |reply| CallbackMsg::Cancel {
                tenant,
                id,
                reply
            })
        } else {
            ractor::call!(self.actor, |reply| CallbackMsg::Get { tenant, id, reply })
        };
        asked.ok().flatten()
    }

    pub async fn get(&self, tenant: &str, id: &str) -> Option<CallbackStatus> {
        self.ask(tenant, id, false).await
    }

    pub async fn cancel(&self, tenant: &str, id: &str) -> Option<CallbackStatus> {
        self.ask(tenant, id, true).await
    }

    /// This node became `tenant`'s owner: returns once its callbacks wait again.
    pub async fn gained(&self, tenant: &str) {
        let _ = ractor::call!(self.actor, |reply| CallbackMsg::Gained {
            tenant: tenant.to_owned(),
            reply
        });
    }

    /// This node no longer owns `tenant`.
    pub fn lost(&self, tenant: &str) {
        self.send(CallbackMsg::Lost {
            tenant: tenant.to_owned(),
        });
    }

    pub fn follow_config(&self, changes: &ractor::OutputPort<Arc<Directory>>) {
        changes.subscribe(self.actor.clone(), |d| Some(CallbackMsg::ConfigChanged(d)));
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

struct CallbacksActor;

struct State {
    directory: Arc<Directory>,
    rq: Rq,
    calls: Cluster,
    events: EventSink,
    store: Arc<dyn RoutingStore>,
    /// By `{tenant}:{id}`, which is also the callback's name in its queue.
    callbacks: HashMap<String, Callback>,
    myself: ActorRef<CallbackMsg>,
}

/// A callback, as its tenant's owner holds it and the store keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Callback {
    request: Request,
    phase: Phase,
    /// The agent reserved, and its DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call_id: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    reason: String,
    queued_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
enum Phase {
    Queued,
    Dialing,
    Cancelled,
    Failed,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Dialing => "dialing",
            Phase::Cancelled => "cancelled",
            Phase::Failed => "failed",
        }
    }
}

/// A callback's name in the node's map and in its queue.
fn key(tenant: &str, id: &str) -> String {
    format!("callback:{tenant}:{id}")
}

impl Actor for CallbacksActor {
    type Msg = CallbackMsg;
    type State = State;
    type Arguments = CallbacksArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(State {
            directory: args.directory,
            rq: args.rq,
            calls: args.calls,
            events: args.events,
            store: args.store,
            callbacks: HashMap::new(),
            myself,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CallbackMsg::New { request, kept } => {
                state.new_request(request).await;
                if let Some(kept) = kept {
                    let _ = kept.send(());
                }
            }
            CallbackMsg::Gained { tenant, reply } => {
                state.resume(&tenant).await;
                let _ = reply.send(());
            }
            CallbackMsg::Lost { tenant } => {
                let prefix = key(&tenant, "");
                state.callbacks.retain(|k, _| !k.starts_with(&prefix));
            }
            CallbackMsg::Told(Told::Matched { call, agent, dn }) => {
                state.matched(&call, agent, dn).await;
            }
            // The call waits again in its queue with its age: nothing to do.
            CallbackMsg::Told(Told::Unreserved { .. }) => {}
            CallbackMsg::Placed { key, outcome } => state.placed(&key, outcome).await,
            CallbackMsg::Get { tenant, id, reply } => {
                let _ = reply.send(state.status(&tenant, &id).await);
            }
            CallbackMsg::Cancel { tenant, id, reply } => {
                let k = key(&tenant, &id);
                if let Some(cb) = state.callbacks.get_mut(&k)
                    && cb.phase == Phase::Queued
                {
                    cb.phase = Phase::Cancelled;
                    cb.reason = "cancelled".into();
                    state.rq.send(RqMsg::Withdraw {
                        tenant: tenant.clone(),
                        call: k.clone(),
                    });
                    state.keep(&k).await;
                    state.event(&k, "CallbackCancelled").await;
                }
                let _ = reply.send(state.status(&tenant, &id).await);
            }
            CallbackMsg::ConfigChanged(directory) => state.directory = directory,
        }
        Ok(())
    }
}

impl State {
    async fn new_request(&mut self, request: Request) {
        let k = key(&request.tenant, &request.id);
        if self.callbacks.contains_key(&k) {
            tracing::info!(tenant = %request.tenant, id = %request.id,
                "callback request seen already: ignored");
            return;
        }
        let now = crate::unix_ms();
        let checked = self.check(&request);
        let mut cb = Callback {
            request,
            phase: Phase::Queued,
            agent: None,
            call_id: None,
            reason: String::new(),
            queued_ms: now,
        };
        let target = match checked {
            Ok(target) => target,
            Err(reason) => {
                tracing::warn!(tenant = %cb.request.tenant, id = %cb.request.id, %reason,
                    "callback request refused");
                cb.phase = Phase::Failed;
                cb.reason = reason;
                self.callbacks.insert(k.clone(), cb);
                self.keep(&k).await;
                self.event(&k, "CallbackFailed").await;
                return;
            }
        };
        self.submit(&k, &cb, target);
        self.callbacks.insert(k.clone(), cb);
        self.keep(&k).await;
        self.event(&k, "CallbackQueued").await;
    }

    /// Puts callback `k` in its queue, with its age.
    fn submit(&self, k: &str, cb: &Callback, target: Target) {
        let myself = self.myself.clone();
        self.rq.send(RqMsg::Submit {
            tenant: cb.request.tenant.clone(),
            call: k.to_owned(),
            queue: cb.request.queue.clone(),
            target,
            priority: cb.request.priority,
            since: cb.queued_ms,
            waiter: Waiter::new(move |told| {
                let _ = myself.cast(CallbackMsg::Told(told));
            }),
        });
    }

    /// Keeps callback `k` as it is now, for a node that takes its tenant over.
    async fn keep(&self, k: &str) {
        let Some(cb) = self.callbacks.get(k) else {
            return;
        };
        let record = serde_json::to_string(cb).unwrap_or_default();
        let r = &cb.request;
        if let Err(e) = self
            .store
            .save(Kind::Callbacks, &r.tenant, &r.id, Some(&record))
            .await
        {
            tracing::warn!(tenant = %r.tenant, id = %r.id, error = %e,
                "callback not kept: a takeover would not find it as it is");
        }
    }

    /// Takes over the callbacks of `tenant` its last owner kept: those queued wait again with
    /// their age; one whose call was being placed when that owner stopped is failed rather
    /// than risk calling the customer twice; those over a day past their end are removed.
    async fn resume(&mut self, tenant: &str) {
        let records = match self.store.load_all(Kind::Callbacks, tenant).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(tenant, error = %e, "callbacks not read: they wait until read again");
                return;
            }
        };
        let now = crate::unix_ms();
        let mut queued = Vec::new();
        for (id, json) in records {
            let mut cb: Callback = match serde_json::from_str(&json) {
                Ok(cb) => cb,
                Err(e) => {
                    tracing::warn!(tenant, %id, error = %e, "callback unreadable: dropped");
                    continue;
                }
            };
            let k = key(tenant, &id);
            if self.callbacks.contains_key(&k) {
                // Read from GES's stream since this node took over.
                continue;
            }
            match cb.phase {
                Phase::Queued => match self.check(&cb.request) {
                    Ok(target) => queued.push((cb.queued_ms, k.clone(), target)),
                    Err(reason) => {
                        cb.phase = Phase::Failed;
                        cb.reason = reason;
                    }
                },
                Phase::Dialing if cb.call_id.is_none() => {
                    cb.phase = Phase::Failed;
                    cb.reason = "its owner stopped while placing its call".into();
                }
                _ if now.saturating_sub(cb.queued_ms) > 24 * 3_600_000 => {
                    let _ = self.store.save(Kind::Callbacks, tenant, &id, None).await;
                    continue;
                }
                _ => {}
            }
            let failed = cb.phase == Phase::Failed && cb.reason.contains("owner stopped");
            self.callbacks.insert(k.clone(), cb);
            if failed {
                self.keep(&k).await;
                self.event(&k, "CallbackFailed").await;
            }
        }
        queued.sort_by_key(|(since, _, _)| *since);
        let waiting = queued.len();
        for (_, k, target) in queued {
            if let Some(cb) = self.callbacks.get(&k) {
                self.submit(&k, cb, target);
            }
        }
        if waiting > 0 {
            tracing::info!(tenant, callbacks = waiting, "callbacks waiting again");
        }
    }

    /// The request's target, if the tenant has its queue, the names its target uses, and a
    /// route to the customer; why not.
    fn check(&self, request: &Request) -> Result<Target, String> {
        let tenant = self
            .directory
            .by_name(&request.tenant)
            .ok_or_else(|| format!("no tenant {}", request.tenant))?;
        if !tenant.config.queue(&request.queue) {
            return Err(format!("no virtual queue {:?}", request.queue));
        }
        if tenant.dial_plan.route(&request.customer).is_none() {
            return Err(format!("no dial plan rule matches {:?}", request.customer));
        }
        let target = Target::parse(&request.target).map_err(|e| e.to_string())?;
        match unknown_name(&target, &tenant.config) {
            Some(unknown) => Err(unknown),
            None => Ok(target),
        }
    }

    /// An agent is reserved: its phone is called, then the customer.
    async fn matched(&mut self, k: &str, agent: String, dn: String) {
        let Some(cb) = self.callbacks.get_mut(k) else {
            return;
        };
        if cb.phase != Phase::Queued {
            // Cancelled meanwhile: the reservation goes back.
            self.rq.send(RqMsg::Withdraw {
                tenant: cb.request.tenant.clone(),
                call: k.to_owned(),
            });
            return;
        }
        cb.phase = Phase::Dialing;
        cb.agent = Some((agent, dn.clone()));
        let (tenant, id) = (cb.request.tenant.clone(), cb.request.id.clone());
        // Kept before the call is placed: a node taking over never places it again.
        self.keep(&key(&tenant, &id)).await;
        let Some(cb) = self.callbacks.get_mut(k) else {
            return;
        };
        let mut user_data = cb.request.user_data.clone();
        user_data.insert("GCB_id".into(), cb.request.id.clone());
        let (tenant, dial) = (cb.request.tenant.clone(), cb.request.customer.clone());
        let (calls, myself, key) = (self.calls.clone(), self.myself.clone(), k.to_owned());
        tokio::spawn(async move {
            let asked = calls
                .ask(|reply| ClusterMsg::MakeCall {
                    tenant,
                    dn,
                    dial,
                    user_data,
                    thread: None,
                    reply,
                })
                .await;
            // A cluster that cannot be asked says "calls unavailable: ...".
            let outcome = asked.map_err(|e| e.to_string());
            let _ = myself.cast(CallbackMsg::Placed { key, outcome });
        });
    }

    async fn placed(&mut self, k: &str, outcome: Result<String, String>) {
        let Some(cb) = self.callbacks.get_mut(k) else {
            return;
        };
        let waited_ms = crate::unix_ms().saturating_sub(cb.queued_ms);
        let tenant = cb.request.tenant.clone();
        match outcome {
            Ok(call) => {
                cb.call_id = Some(call);
                self.rq.send(RqMsg::Delivered {
                    tenant,
                    call: k.to_owned(),
                    waited_ms,
                });
                self.keep(k).await;
                self.event(k, "CallbackDialed").await;
            }
            Err(reason) => {
                cb.phase = Phase::Failed;
                cb.reason = reason;
                self.rq.send(RqMsg::Withdraw {
                    tenant,
                    call: k.to_owned(),
                });
                self.keep(k).await;
                self.event(k, "CallbackFailed").await;
            }
        }
    }

    async fn status(&self, tenant: &str, id: &str) -> Option<CallbackStatus> {
        let k = key(tenant, id);
        let cb = self.callbacks.get(&k)?;
        let place = if cb.phase == Phase::Queued {
            self.rq.place(tenant, &k).await
        } else {
            None
        };
        Some(CallbackStatus {
            id: cb.request.id.clone(),
            state: cb.phase.name().to_owned(),
            customer: cb.request.customer.clone(),
            queue: cb.request.queue.clone(),
            position: place.as_ref().map(|p| p.position),
            ewt_ms: place.as_ref().and_then(|p| p.ewt_ms),
            agent: cb
                .agent
                .as_ref()
                .map(|(agent, _)| agent.clone())
                .or_else(|| place.and_then(|p| p.agent)),
            call_id: cb.call_id.clone(),
            reason: cb.reason.clone(),
        })
    }

    /// An event of the callback on the tenant's call stream, stored before the next, as a
    /// call's are; the last one (dialed, cancelled, failed) closes its numbering.
    async fn event(&self, k: &str, kind: &str) {
        let Some(cb) = self.callbacks.get(k) else {
            return;
        };
        let r = &cb.request;
        let mut user_data: std::collections::HashMap<String, String> =
            r.user_data.clone().into_iter().collect();
        user_data.insert("GCB_id".into(), r.id.clone());
        let mut parties = vec![Party {
            dn: r.customer.clone(),
            role: "destination".into(),
            uri: String::new(),
            mode: String::new(),
        }];
        if let Some((_, dn)) = &cb.agent {
            parties.insert(
                0,
                Party {
                    dn: dn.clone(),
                    role: "origination".into(),
                    uri: String::new(),
                    mode: String::new(),
                },
            );
        }
        let payload = Payload::Call(CallThread {
            call_id: cb.call_id.clone().unwrap_or_default(),
            thread_id: cb.call_id.clone().unwrap_or_default(),
            parties,
            dnis: r.customer.clone(),
            origin: "callback".into(),
            cause: cb.reason.clone(),
            duration_ms: crate::unix_ms().saturating_sub(cb.queued_ms) as i64,
            user_data,
            queue: r.queue.clone(),
            target: r.target.clone(),
            priority: r.priority,
            ..Default::default()
        });
        let key = format!("{}:callback:{}", r.tenant, r.id);
        let event = new_event(
            &r.tenant,
            TOPIC_CALLTHREAD,
            key.clone(),
            kind,
            payload,
            crate::unix_ms(),
        );
        if let Err(e) = self.events.publish(event).await {
            tracing::warn!(tenant = %r.tenant, id = %r.id, kind, error = %e,
                "callback event not stored");
        }
        if cb.phase != Phase::Queued
            && let Err(e) = self.events.close_key(&r.tenant, &key).await
        {
            tracing::warn!(tenant = %r.tenant, id = %r.id, error = %e,
                "callback's event counter not removed");
        }
    }
}

/// Reads the callback requests of every tenant from their Redis streams, as consumer
/// `consumer` of the nodes' group, and hands them to `callbacks`; each request read is
/// acknowledged once handed over. A request that another reader took and left unacknowledged
/// for `claim_idle` (its node died between the two) is claimed (XAUTOCLAIM) and handled here.
/// Runs until the task is dropped.
pub async fn follow_requests(
    client: Redis,
    keys: Keys,
    ownership: Ownership,
    directory: tokio::sync::watch::Receiver<Arc<Directory>>,
    consumer: String,
    callbacks: Callbacks,
    claim_idle: Duration,
) {
    let mut conn = loop {
        match client.own_connection(READ_BLOCK).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "callback requests: Redis unreachable, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut grouped: Vec<String> = Vec::new();
    let mut last_claim = tokio::time::Instant::now();
    loop {
        // Each tenant's stream, and for one release its name before the hash tags.
        let (tenants, streams): (Vec<String>, Vec<String>) = directory
            .borrow()
            .tenants()
            .filter(|t| ownership.owns(&t.name))
            .flat_map(|t| {
                let legacy = keys.legacy_ges_requests(&t.name);
                std::iter::once(keys.ges_requests(&t.name))
                    .chain(legacy)
                    .map(|s| (t.name.clone(), s))
            })
            .unzip();
        for s in &streams {
            if grouped.contains(s) {
                continue;
            }
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(s)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => grouped.push(s.clone()),
                Err(e) if e.code() == Some("BUSYGROUP") => grouped.push(s.clone()),
                Err(e) => tracing::warn!(stream = %s, error = %e, "callback requests group"),
            }
        }
        if streams.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut entries = match read_requests(&mut conn, &streams, &consumer).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "callback requests not read, retrying");
                grouped.clear();
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if last_claim.elapsed() >= claim_idle.min(CLAIM_EVERY) {
            last_claim = tokio::time::Instant::now();
            for stream in &streams {
                match claim(&mut conn, stream, &consumer, claim_idle).await {
                    Ok(claimed) if !claimed.is_empty() => {
                        tracing::warn!(%stream, requests = claimed.len(),
                            "callback requests left unacknowledged by a reader that died: taken over");
                        entries.push((stream.clone(), claimed));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%stream, error = %e, "callback requests not claimed"),
                }
            }
        }
        for (stream, items) in entries {
            let Some(tenant) = streams
                .iter()
                .position(|s| *s == stream)
                .map(|i| tenants[i].clone())
            else {
                continue;
            };
            for (entry, fields) in items {
                match Request::from_fields(&tenant, &fields) {
                    Ok(request) => {
                        // Acknowledged once kept: a reader that dies first leaves it to the
                        // next owner.
                        let (kept, done) = tokio::sync::oneshot::channel();
                        callbacks.send(CallbackMsg::New {
                            request,
                            kept: Some(kept),
                        });
                        if tokio::time::timeout(Duration::from_secs(5), done)
                            .await
                            .is_err()
                        {
                            tracing::warn!(%tenant, %entry, "callback request not kept in time: left for another read");
                            continue;
                        }
                    }
                    Err(reason) => tracing::warn!(%tenant, %entry, %reason,
                        "callback request refused"),
                }
                let acked: redis::RedisResult<()> = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&entry)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = acked {
                    tracing::warn!(%stream, %entry, error = %e, "callback request not acknowledged");
                }
            }
        }
    }
}

/// How long a read waits for new requests.
const READ_BLOCK: Duration = Duration::from_secs(1);

type Entries = Vec<(String, Vec<(String, HashMap<String, String>)>)>;

/// The new requests of `streams` for `consumer`: one read that waits up to [`READ_BLOCK`]
/// when the streams share a slot (always on one Redis); on a cluster whose streams are on
/// several slots, a read of each slot's that does not wait, and a pause when none had any.
async fn read_requests(
    conn: &mut Conn,
    streams: &[String],
    consumer: &str,
) -> redis::RedisResult<Entries> {
    let groups = conn.slot_groups(streams, String::as_str);
    let block = groups.len() == 1;
    let mut entries = Entries::new();
    for group in groups {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(100);
        if block {
            cmd.arg("BLOCK").arg(READ_BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&group);
        for _ in &group {
            cmd.arg(">");
        }
        let read: Option<Entries> = cmd.query_async(conn).await?;
        entries.extend(read.unwrap_or_default());
    }
    if !block && entries.is_empty() {
        tokio::time::sleep(READ_BLOCK / 4).await;
    }
    Ok(entries)
}

/// How often the group's pending entries are looked over for ones to claim.
const CLAIM_EVERY: Duration = Duration::from_secs(5);

/// The entries of `stream` pending in the group for longer than `idle`, now this consumer's
/// (XAUTOCLAIM, Redis 6.2), with their fields; entries deleted meanwhile are left out.
async fn claim(
    conn: &mut Conn,
    stream: &str,
    consumer: &str,
    idle: Duration,
) -> redis::RedisResult<Vec<(String, HashMap<String, String>)>> {
    let mut claimed = Vec::new();
    let mut cursor = "0-0".to_owned();
    // A bounded sweep: the rest waits for the next round.
    for _ in 0..10 {
        // [next cursor, entries (nil for deleted ones before Redis 7), deleted ids (Redis 7)]
        let reply: Vec<redis::Value> = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(idle.as_millis() as u64)
            .arg(&cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(conn)
            .await?;
        let mut parts = reply.into_iter();
        let next: String = match parts.next() {
            Some(v) => redis::from_redis_value(v)?,
            None => break,
        };
        let items: Vec<Option<(String, HashMap<String, String>)>> = match parts.next() {
            Some(v) => redis::from_redis_value(v)?,
            None => Vec::new(),
        };
        claimed.extend(items.into_iter().flatten());
        if next == "0-0" {
            break;
        }
        cursor = next;
    }
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn requests_are_read_from_ges_entries_and_bad_ones_say_why() {
        let good = fields(&[
            ("id", "cb-1"),
            ("customer", "915551230000"),
            ("queue", "support"),
            ("target", "english >= 3"),
            ("priority", "5"),
            ("userData", r#"{"reason": "billing", "attempt": 2}"#),
        ]);
        let r = Request::from_fields("demo", &good).expect("a request");
        assert_eq!((r.id.as_str(), r.priority), ("cb-1", 5));
        assert_eq!(r.user_data["reason"], "billing");
        assert_eq!(r.user_data["attempt"], "2");

        let without = |k: &str| {
            let mut f = good.clone();
            f.remove(k);
            Request::from_fields("demo", &f)
        };
        assert_eq!(without("id"), Err("id: required".into()));
        assert_eq!(without("customer"), Err("customer: required".into()));
        assert_eq!(without("priority").map(|r| r.priority), Ok(0));
        let with = |k: &str, v: &str| {
            let mut f = good.clone();
            f.insert(k.into(), v.into());
            Request::from_fields("demo", &f)
        };
        assert!(with("priority", "high").is_err_and(|e| e.starts_with("priority:")));
        assert!(with("userData", "[1]").is_err_and(|e| e.starts_with("userData:")));
    }
}
