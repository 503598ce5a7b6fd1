//! The bus between nodes (design.md "Scaling out"): how a tenant's owner-bound messages reach
//! the owner, and the owner's orders and answers reach the node they are for, over Redis
//! streams with consumer groups. No cluster protocol of our own: every node talks to Redis
//! only.
//!
//! - **A tenant's owner inbox** (`<prefix>:{<tenant>}:inbox`) takes what any node sends the
//!   tenant's owner ([`OwnerBound`]). The owner reads it as consumer group `owner` and
//!   acknowledges each entry once handled, so an owner that dies leaves what it had not
//!   finished to the next, which claims it first thing.
//! - **A node's inbox** (`<prefix>:node:{<node>}:inbox`) takes the orders for the calls the
//!   node runs ([`NodeBound`]) and the answers to what it asked. An order carrying a fencing
//!   number below the tenant's newest is refused: it comes from an owner that lost its lease.
//! - **Locally first.** While this node owns a tenant, its messages go to its own systems
//!   directly, with no Redis in between; only once the node has read back its own marker
//!   ([`wire::Body::CaughtUp`]) from the inbox, so that nothing it sent through Redis before
//!   is overtaken by what it sends directly. Without Redis there is no bus: one node owns
//!   everything.
//! - **Bad entries.** An entry of a newer node's version is logged and acknowledged (a
//!   rolling upgrade); one that cannot be read, or that was delivered [`MAX_DELIVERIES`]
//!   times without being handled (each owner that took it died on it), goes to the tenant's
//!   dead-letter stream, counted in [`Bus::dead_letters`]. Messages from a node that is not
//!   running (its key `<prefix>:node:{<node>}:alive` expired) are refused.
//!
//! Writes leave in the order they were made, through one writer task per node.

mod inbox;
mod systems;
pub mod wire;

pub use systems::Systems;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::redis_conn::{Conn, Redis};
use tokio::sync::{mpsc, oneshot};

use crate::keys::Keys;
use crate::lease::{Fence, Ownership};
use crate::messages::bus::{Answer, BusError, BusFuture, NodeBound, OwnerBound, ToNode, ToOwner};
use crate::messages::ors::Order;
use crate::messages::sip_cluster::{CallView, Control, ControlError};
use wire::{Body, Letter};

/// Deliveries of one owner inbox entry after which it goes to the dead letters.
pub const MAX_DELIVERIES: usize = 3;

/// What a node does with the messages the bus brings it.
pub trait Handler: Send + Sync + 'static {
    /// This node became `tenant`'s owner under `fence`: its systems load what the last owner
    /// left in Redis, before any of the tenant's messages is handed over.
    fn gained<'a>(&'a self, tenant: &'a str, fence: Fence) -> BusFuture<'a, ()>;

    /// This node no longer owns `tenant`: its systems drop what they held of it.
    fn lost(&self, tenant: &str);

    /// A message for `tenant`'s owner from node `from`; the answer, when it asks for one.
    fn owner<'a>(
        &'a self,
        tenant: &'a str,
        from: &'a str,
        message: OwnerBound,
    ) -> BusFuture<'a, Option<Answer>>;

    /// A routing order from `tenant`'s owner for call `call` on this node.
    fn order(&self, tenant: &str, call: String, order: Order);

    /// A desktop's request, from another node, for call `call` on this node.
    fn control<'a>(
        &'a self,
        tenant: &'a str,
        call: String,
        dn: String,
        control: Control,
    ) -> BusFuture<'a, Result<CallView, ControlError>>;
}

/// How the bus waits and keeps.
#[derive(Debug, Clone, Copy)]
pub struct BusConfig {
    /// How long an ask waits for its answer.
    pub ask_wait: Duration,
    /// Entries each inbox keeps (approximately) before the oldest are trimmed.
    pub max_len: usize,
    /// How long a node's alive key lives unless renewed, and how often it is renewed.
    pub alive_ttl: Duration,
    pub alive_every: Duration,
    /// How long an owner inbox entry may stay unacknowledged by a live owner before it is
    /// delivered again (the owner failed to hand it over).
    pub retry_idle: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            ask_wait: Duration::from_secs(5),
            max_len: 100_000,
            alive_ttl: Duration::from_secs(3),
            alive_every: Duration::from_millis(500),
            retry_idle: Duration::from_secs(5),
        }
    }
}

/// A node's end of the bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    keys: Keys,
    conn: Conn,
    /// For the connections whose reads block.
    client: Redis,
    ownership: Ownership,
    config: BusConfig,
    /// The tenants this node owns whose inbox it has caught up with, under which fence.
    caught_up: Mutex<HashMap<String, Fence>>,
    asks: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_ask: AtomicU64,
    writer: mpsc::UnboundedSender<Write>,
    handler: Mutex<Option<Arc<dyn Handler>>>,
    dead_letters: AtomicU64,
    refused: AtomicU64,
    counts: Counts,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What went over the bus through this node.
#[derive(Debug, Default)]
struct Counts {
    /// Messages sent to a tenant's owner elsewhere.
    to_owner: AtomicU64,
    /// Messages this node handled as a tenant's owner.
    as_owner: AtomicU64,
    /// Orders for this node's calls that came from an owner elsewhere.
    orders: AtomicU64,
}

/// The bus's figures for a node (see [`Bus::figures`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub to_owner: u64,
    pub as_owner: u64,
    pub orders: u64,
    pub dead_letters: u64,
    pub refused: u64,
}

/// One write, in the order it was made.
enum Write {
    Add { stream: String, letter: Letter },
    Ack { stream: String, ids: Vec<String> },
}

impl Write {
    fn stream(&self) -> &str {
        match self {
            Write::Add { stream, .. } | Write::Ack { stream, .. } => stream,
        }
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("node", &self.inner.node)
            .finish()
    }
}

impl Bus {
    /// The bus of node `node`, sending through `conn`; nothing is read until [`Bus::start`].
    pub fn new(
        node: &str,
        keys: Keys,
        client: Redis,
        conn: Conn,
        ownership: Ownership,
        config: BusConfig,
    ) -> Self {
        let (writer, writes) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            node: node.to_owned(),
            keys,
            conn: conn.clone(),
            client,
            ownership,
            config,
            caught_up: Mutex::default(),
            asks: Mutex::default(),
            next_ask: AtomicU64::new(1),
            writer,
            handler: Mutex::default(),
            dead_letters: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            counts: Counts::default(),
            tasks: Mutex::default(),
        });
        let task = tokio::spawn(write(conn, config.max_len, writes));
        lock(&inner.tasks).push(task);
        Self { inner }
    }

    /// Says this node runs, before it starts anything that other nodes hear of (its calls'
    /// snapshots name it, and a node whose alive key is missing is taken for dead).
    pub async fn say_alive(&self) {
        if let Err(e) = inbox::say_alive(&self.inner).await {
            tracing::warn!(error = %e, "node's alive key not written");
        }
    }

    /// Says this node runs (so owners take its messages), then starts reading: this node's
    /// inbox at once, and each tenant's owner inbox while this node owns the tenant; what is
    /// read goes to `handler`.
    pub async fn start(&self, handler: Arc<dyn Handler>) {
        if let Err(e) = inbox::say_alive(&self.inner).await {
            tracing::warn!(error = %e, "node's alive key not written: owners refuse its messages until it is");
        }
        *lock(&self.inner.handler) = Some(handler.clone());
        let tasks = [
            tokio::spawn(inbox::alive(self.inner.clone())),
            tokio::spawn(inbox::read_node_inbox(self.inner.clone(), handler.clone())),
            tokio::spawn(inbox::follow_ownership(self.inner.clone(), handler)),
        ];
        lock(&self.inner.tasks).extend(tasks);
    }

    /// Stops reading and writing, and removes this node's inbox and alive key.
    pub async fn stop(&self) {
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        let mut conn = self.inner.conn.clone();
        let gone: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(self.inner.keys.node_inbox(&self.inner.node))
            .arg(self.inner.keys.node_alive(&self.inner.node))
            .query_async(&mut conn)
            .await;
        if let Err(e) = gone {
            tracing::debug!(error = %e, "node inbox not removed");
        }
    }

    /// Stops reading and writing at once, leaving everything in Redis as a node that dies.
    pub fn abandon(&self) {
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// What went over the bus through this node since it started.
    pub fn figures(&self) -> Figures {
        let c = &self.inner.counts;
        Figures {
            to_owner: c.to_owner.load(Ordering::Relaxed),
            as_owner: c.as_owner.load(Ordering::Relaxed),
            orders: c.orders.load(Ordering::Relaxed),
            dead_letters: self.dead_letters(),
            refused: self.refused(),
        }
    }

    /// Entries sent to the dead letters by this node since it started.
    pub fn dead_letters(&self) -> u64 {
        self.inner.dead_letters.load(Ordering::Relaxed)
    }

    /// Messages this node refused: from a node not running, or with a stale fencing number.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// How many entries of `tenant`'s owner inbox wait to be read by its owner (XINFO
    /// GROUPS' lag, Redis 7); `None` if Redis cannot say.
    pub async fn lag(&self, tenant: &str) -> Option<u64> {
        let mut conn = self.inner.conn.clone();
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(self.inner.keys.owner_inbox(tenant))
            .query_async(&mut conn)
            .await
            .ok()?;
        let group = groups
            .groups
            .iter()
            .find(|g| g.name == inbox::OWNER_GROUP)?;
        group.lag.map(|l| l as u64)
    }
}

impl Inner {
    fn send(&self, stream: String, letter: Letter) {
        if self.writer.send(Write::Add { stream, letter }).is_err() {
            tracing::warn!("bus writer stopped: message dropped");
        }
    }

    fn ack(&self, stream: String, ids: Vec<String>) {
        if !ids.is_empty() {
            let _ = self.writer.send(Write::Ack { stream, ids });
        }
    }

    fn letter(&self, tenant: &str, fence: u64, ask: u64, body: Body) -> Letter {
        Letter {
            tenant: tenant.to_owned(),
            from: self.node.clone(),
            fence,
            ask,
            body,
        }
    }
}

impl ToOwner for Bus {
    fn here(&self, tenant: &str) -> bool {
        match &self.inner.ownership {
            Ownership::Alone => true,
            Ownership::Leased(_) => {
                let fence = self.inner.ownership.fence(tenant);
                fence.is_some() && lock(&self.inner.caught_up).get(tenant) == fence.as_ref()
            }
        }
    }

    fn send(&self, tenant: &str, message: OwnerBound) {
        self.inner.counts.to_owner.fetch_add(1, Ordering::Relaxed);
        let letter = self.inner.letter(tenant, 0, 0, Body::Owner(message));
        self.inner.send(self.inner.keys.owner_inbox(tenant), letter);
    }

    fn ask<'a>(
        &'a self,
        tenant: &'a str,
        message: OwnerBound,
    ) -> BusFuture<'a, Result<Answer, BusError>> {
        Box::pin(async move {
            self.inner.counts.to_owner.fetch_add(1, Ordering::Relaxed);
            let inbox = self.inner.keys.owner_inbox(tenant);
            self.ask_into(tenant, inbox, Body::Owner(message)).await
        })
    }
}

impl ToNode for Bus {
    fn node(&self) -> &str {
        &self.inner.node
    }

    fn send(&self, tenant: &str, node: &str, message: NodeBound) {
        if node == self.inner.node {
            let handler = lock(&self.inner.handler).clone();
            if let (Some(handler), NodeBound::Order { call, order }) = (handler, message) {
                handler.order(tenant, call, order);
            }
            return;
        }
        let Some(fence) = self.inner.ownership.fence(tenant) else {
            tracing::warn!(
                tenant,
                node,
                "an order from a node that no longer owns the tenant: dropped"
            );
            return;
        };
        let letter = self.inner.letter(tenant, fence.0, 0, Body::Node(message));
        self.inner.send(self.inner.keys.node_inbox(node), letter);
    }

    fn ask<'a>(
        &'a self,
        tenant: &'a str,
        node: &'a str,
        message: NodeBound,
    ) -> BusFuture<'a, Result<Answer, BusError>> {
        Box::pin(async move {
            // A node that is not running would never answer: say so at once.
            let mut conn = self.inner.conn.clone();
            let running: bool = redis::cmd("EXISTS")
                .arg(self.inner.keys.node_alive(node))
                .query_async(&mut conn)
                .await
                .map_err(|e| BusError::Redis(e.to_string()))?;
            if !running {
                return Err(BusError::NodeGone(node.to_owned()));
            }
            let inbox = self.inner.keys.node_inbox(node);
            self.ask_into(tenant, inbox, Body::Node(message)).await
        })
    }
}

impl Bus {
    /// Sends `body` to `stream` as an ask, and waits for its answer a bounded time.
    async fn ask_into(&self, tenant: &str, stream: String, body: Body) -> Result<Answer, BusError> {
        let id = self.inner.next_ask.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.asks).insert(id, tx);
        let letter = self.inner.letter(tenant, 0, id, body);
        self.inner.send(stream, letter);
        let wait = self.inner.config.ask_wait;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                lock(&self.inner.asks).remove(&id);
                Err(BusError::NoAnswer(wait.as_millis() as u64))
            }
        }
    }
}

/// Writes what the node sends, in order, in pipelines of what has gathered meanwhile; a
/// batch Redis refuses is tried again a few times before it is dropped (and logged).
async fn write(conn: Conn, max_len: usize, mut writes: mpsc::UnboundedReceiver<Write>) {
    let mut batch = Vec::new();
    while writes.recv_many(&mut batch, 256).await > 0 {
        // On a Redis Cluster, a pipeline stays within one slot: one per stream's slot.
        for group in conn.slot_groups(&batch, Write::stream) {
            let pipe = pipeline(&group, max_len);
            let pipe = &pipe;
            let sent = crate::redis_retry::retrying(&conn, |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await;
            if let Err(e) = sent {
                tracing::warn!(messages = group.len(), error = %e, "bus messages not written (Redis): dropped");
            }
        }
        batch.clear();
    }
}

fn pipeline(writes: &[&Write], max_len: usize) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for w in writes {
        match w {
            Write::Add { stream, letter } => {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(max_len)
                    .arg("*")
                    .arg("m")
                    .arg(wire::encode(letter))
                    .ignore();
            }
            Write::Ack { stream, ids } => {
                pipe.cmd("XACK")
                    .arg(stream)
                    .arg(inbox::OWNER_GROUP)
                    .arg(ids)
                    .ignore();
            }
        }
    }
    pipe
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tenants whose inbox this node reads as owner (for tests and metrics).
impl Bus {
    pub fn caught_up(&self) -> HashSet<String> {
        lock(&self.inner.caught_up).keys().cloned().collect()
    }
}
