//! The bus's readers: this node's inbox, each owned tenant's owner inbox, and the key that says
//! this node runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use tokio::time::Instant;

use super::wire::{self, Body, Letter, Unreadable};
use super::{Handler, Inner, MAX_DELIVERIES, lock};
use crate::lease::{Fence, Ownership};
use crate::messages::bus::{Answer, NodeBound};
use crate::redis_conn::Conn;

/// The consumer group of a tenant's owner on its inbox.
pub(super) const OWNER_GROUP: &str = "owner";

/// How long one blocking read waits.
const BLOCK: Duration = Duration::from_secs(1);

/// Entries read at once.
const COUNT: usize = 100;

/// Keeps this node's alive key while the node runs.
pub(super) async fn alive(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.alive_every);
    loop {
        tick.tick().await;
        if let Err(e) = say_alive(&inner).await {
            tracing::debug!(error = %e, "node's alive key not renewed");
        }
    }
}

/// Writes this node's alive key, for its time to live.
pub(super) async fn say_alive(inner: &Inner) -> redis::RedisResult<()> {
    let mut conn = inner.conn.clone();
    redis::cmd("SET")
        .arg(inner.keys.node_alive(&inner.node))
        .arg(1)
        .arg("PX")
        .arg(inner.config.alive_ttl.as_millis() as u64)
        .query_async(&mut conn)
        .await
}

/// A connection of its own for a reader, whose reads block; tried until Redis answers.
async fn blocking_connection(inner: &Inner) -> Conn {
    loop {
        match inner.client.own_connection(BLOCK).await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "bus: Redis unreachable, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The protobuf an entry holds.
fn bytes(entry: &StreamId) -> &[u8] {
    match entry.map.get("m") {
        Some(redis::Value::BulkString(b)) => b,
        _ => &[],
    }
}

/// Reads this node's inbox for as long as the node runs: answers go to whoever asked, orders
/// to the node's calls (unless their fencing number is stale).
pub(super) async fn read_node_inbox(inner: Arc<Inner>, handler: Arc<dyn Handler>) {
    let stream = inner.keys.node_inbox(&inner.node);
    let mut conn = blocking_connection(&inner).await;
    let mut last = "0-0".to_owned();
    loop {
        let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&last)
            .query_async(&mut conn)
            .await;
        let entries = match read {
            Ok(reply) => reply
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "node inbox not read, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                conn = blocking_connection(&inner).await;
                continue;
            }
        };
        let Some(newest) = entries.last() else {
            continue;
        };
        last = newest.id.clone();
        // The newest fencing number of each tenant an order of this batch is for.
        let mut newest_fence: HashMap<String, u64> = HashMap::new();
        for entry in &entries {
            let letter = match wire::decode(bytes(entry)) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(entry = %entry.id, error = %e, "node inbox entry not read: dropped");
                    continue;
                }
            };
            match letter.body {
                Body::Answer(answer) => match lock(&inner.asks).remove(&letter.ask) {
                    Some(asker) => {
                        let _ = asker.send(answer);
                    }
                    None => tracing::debug!(
                        ask = letter.ask,
                        "an answer nobody waits for (it came too late)"
                    ),
                },
                Body::Node(NodeBound::Order { call, order }) => {
                    let newest = match newest_fence.get(&letter.tenant) {
                        Some(f) => *f,
                        None => {
                            let f = current_fence(&inner, &letter.tenant).await;
                            newest_fence.insert(letter.tenant.clone(), f);
                            f
                        }
                    };
                    if letter.fence < newest {
                        inner
                            .refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(tenant = %letter.tenant, from = %letter.from, fence = letter.fence, newest,
                            "an order from a node that lost the tenant's lease: refused");
                        continue;
                    }
                    inner
                        .counts
                        .orders
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    handler.order(&letter.tenant, call, order);
                }
                Body::Node(NodeBound::Control { call, dn, control }) => {
                    // Answered without holding up the inbox: the call may take a moment.
                    let (inner, handler) = (inner.clone(), handler.clone());
                    tokio::spawn(async move {
                        let result = handler.control(&letter.tenant, call, dn, control).await;
                        if letter.ask != 0 {
                            let body = Body::Answer(Answer::Control(result));
                            let answer = inner.letter(&letter.tenant, 0, letter.ask, body);
                            inner.send(inner.keys.node_inbox(&letter.from), answer);
                        }
                    });
                }
                other => {
                    tracing::warn!(from = %letter.from, body = ?other, "not a message for a node: dropped")
                }
            }
        }
        // What was read is done with.
        let mut c = inner.conn.clone();
        let trimmed: redis::RedisResult<()> = redis::cmd("XTRIM")
            .arg(&stream)
            .arg("MINID")
            .arg(&last)
            .query_async(&mut c)
            .await;
        if let Err(e) = trimmed {
            tracing::debug!(error = %e, "node inbox not trimmed");
        }
    }
}

/// The newest fencing number given out for `tenant` (0 if Redis cannot say: nothing is
/// refused for want of an answer).
async fn current_fence(inner: &Inner, tenant: &str) -> u64 {
    let mut conn = inner.conn.clone();
    redis::cmd("GET")
        .arg(inner.keys.fence(tenant))
        .query_async::<Option<u64>>(&mut conn)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Reads the owner inbox of each tenant this node owns, for as long as it owns it; tells
/// `handler` of each tenant gained and lost.
pub(super) async fn follow_ownership(inner: Arc<Inner>, handler: Arc<dyn Handler>) {
    let Ownership::Leased(mut owned) = inner.ownership.clone() else {
        return;
    };
    // Dropped with this task, the readers stop too.
    let mut readers: HashMap<String, (Fence, AbortOnDrop)> = HashMap::new();
    loop {
        let now = owned.borrow_and_update().clone();
        let gone: Vec<String> = readers
            .iter()
            .filter(|(t, (f, _))| now.get(*t) != Some(f))
            .map(|(t, _)| t.clone())
            .collect();
        for tenant in gone {
            readers.remove(&tenant);
            lock(&inner.caught_up).remove(&tenant);
            handler.lost(&tenant);
        }
        for (tenant, fence) in now.iter() {
            if !readers.contains_key(tenant) {
                let task = tokio::spawn(read_owner_inbox(
                    inner.clone(),
                    handler.clone(),
                    tenant.clone(),
                    *fence,
                ));
                readers.insert(tenant.clone(), (*fence, AbortOnDrop(task)));
            }
        }
        if owned.changed().await.is_err() {
            return;
        }
    }
}

/// A task stopped when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the owner of one tenant keeps while reading its inbox.
struct OwnerReader {
    inner: Arc<Inner>,
    handler: Arc<dyn Handler>,
    tenant: String,
    fence: Fence,
    inbox: String,
    /// The marker this node wrote into the inbox as it took it over.
    token: u64,
    /// Nodes found running, and when that was.
    alive: HashMap<String, Instant>,
}

/// Reads `tenant`'s owner inbox as its owner under `fence`: first what earlier owners left
/// unfinished, then what comes.
async fn read_owner_inbox(
    inner: Arc<Inner>,
    handler: Arc<dyn Handler>,
    tenant: String,
    fence: Fence,
) {
    let inbox = inner.keys.owner_inbox(&tenant);
    let mut conn = blocking_connection(&inner).await;
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&inbox)
        .arg(OWNER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        tracing::warn!(%tenant, error = %e, "owner inbox group not created");
    }
    handler.gained(&tenant, fence).await;
    let mut reader = OwnerReader {
        inner: inner.clone(),
        handler,
        token: rand_token(),
        tenant,
        fence,
        inbox,
        alive: HashMap::new(),
    };
    reader.take_pending(&mut conn, Duration::ZERO).await;
    let marker = inner.letter(&reader.tenant, fence.0, 0, Body::CaughtUp(reader.token));
    inner.send(reader.inbox.clone(), marker);
    let mut next_retry = Instant::now() + inner.config.retry_idle;
    loop {
        let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(OWNER_GROUP)
            .arg(&inner.node)
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&reader.inbox)
            .arg(">")
            .query_async(&mut conn)
            .await;
        match read {
            Ok(reply) => {
                let entries: Vec<StreamId> = reply
                    .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                    .unwrap_or_default();
                reader.handle(entries).await;
            }
            Err(e) => {
                tracing::warn!(tenant = %reader.tenant, error = %e, "owner inbox not read, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                conn = blocking_connection(&inner).await;
            }
        }
        if Instant::now() >= next_retry {
            next_retry = Instant::now() + inner.config.retry_idle;
            reader
                .take_pending(&mut conn, inner.config.retry_idle)
                .await;
        }
    }
}

fn rand_token() -> u64 {
    u64::from_str_radix(&switchboard_sip::token::<8>(), 16).unwrap_or(1)
}

impl OwnerReader {
    /// Takes over the entries read but not acknowledged for at least `idle` (by an owner that
    /// died, or by this one when it failed to hand them over): those delivered too often go to
    /// the dead letters, the others are handled.
    async fn take_pending(&mut self, conn: &mut Conn, idle: Duration) {
        let pending: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
            .arg(&self.inbox)
            .arg(OWNER_GROUP)
            .arg("IDLE")
            .arg(idle.as_millis() as u64)
            .arg("-")
            .arg("+")
            .arg(COUNT)
            .query_async(conn)
            .await;
        let pending = match pending {
            Ok(p) => p.ids,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "owner inbox's pending entries not listed");
                return;
            }
        };
        for p in pending
            .iter()
            .filter(|p| p.times_delivered >= MAX_DELIVERIES)
        {
            let entry: redis::RedisResult<redis::streams::StreamRangeReply> = redis::cmd("XRANGE")
                .arg(&self.inbox)
                .arg(&p.id)
                .arg(&p.id)
                .query_async(conn)
                .await;
            let bytes = entry
                .ok()
                .and_then(|r| r.ids.into_iter().next())
                .map(|e| bytes(&e).to_vec())
                .unwrap_or_default();
            self.dead_letter(
                &p.id,
                &bytes,
                &format!(
                    "delivered {} times without being handled",
                    p.times_delivered
                ),
            )
            .await;
        }
        if pending.is_empty() {
            return;
        }
        let claimed: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
            .arg(&self.inbox)
            .arg(OWNER_GROUP)
            .arg(&self.inner.node)
            .arg(idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(COUNT)
            .query_async(conn)
            .await;
        match claimed {
            Ok(c) if !c.claimed.is_empty() => {
                tracing::info!(tenant = %self.tenant, entries = c.claimed.len(),
                    "owner inbox entries left unfinished taken over");
                self.handle(c.claimed).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "owner inbox entries not claimed")
            }
        }
    }

    /// Hands each entry over in order, acknowledging each once handled.
    async fn handle(&mut self, entries: Vec<StreamId>) {
        for entry in entries {
            let bytes = bytes(&entry);
            match wire::decode(bytes) {
                Ok(letter) => self.letter(letter).await,
                Err(Unreadable::Unknown(version)) => {
                    tracing::warn!(tenant = %self.tenant, entry = %entry.id, version,
                        "a message this node does not know (a newer node's?): acknowledged unread");
                }
                Err(e) => {
                    self.dead_letter(&entry.id, bytes, &e.to_string()).await;
                    continue;
                }
            }
            self.inner.ack(self.inbox.clone(), vec![entry.id]);
        }
    }

    async fn letter(&mut self, letter: Letter) {
        match letter.body {
            Body::CaughtUp(token) => {
                if letter.from == self.inner.node && token == self.token {
                    lock(&self.inner.caught_up).insert(self.tenant.clone(), self.fence);
                    tracing::debug!(tenant = %self.tenant, "owner inbox caught up: this node's messages go straight to its systems");
                }
            }
            Body::Owner(message) => {
                if !self.running(&letter.from).await {
                    self.inner
                        .refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(tenant = %self.tenant, from = %letter.from,
                        "a message from a node that is not running: refused");
                    return;
                }
                self.inner
                    .counts
                    .as_owner
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = self
                    .handler
                    .owner(&self.tenant, &letter.from, message)
                    .await;
                if letter.ask != 0
                    && let Some(answer) = answer
                {
                    let reply = self.inner.letter(
                        &self.tenant,
                        self.fence.0,
                        letter.ask,
                        Body::Answer(answer),
                    );
                    self.inner
                        .send(self.inner.keys.node_inbox(&letter.from), reply);
                }
            }
            other => tracing::warn!(tenant = %self.tenant, from = %letter.from, body = ?other,
                "not a message for a tenant's owner: dropped"),
        }
    }

    /// Whether node `node` runs (its alive key is there), remembered for a second.
    async fn running(&mut self, node: &str) -> bool {
        if node == self.inner.node {
            return true;
        }
        if self
            .alive
            .get(node)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return true;
        }
        let mut conn = self.inner.conn.clone();
        let exists: redis::RedisResult<bool> = redis::cmd("EXISTS")
            .arg(self.inner.keys.node_alive(node))
            .query_async(&mut conn)
            .await;
        match exists {
            Ok(true) => {
                self.alive.insert(node.to_owned(), Instant::now());
                true
            }
            Ok(false) => false,
            // Redis cannot say: the message is not refused for that.
            Err(_) => true,
        }
    }

    /// Moves an entry that can never be handled to the tenant's dead letters (with why) and
    /// acknowledges it, counted.
    async fn dead_letter(&self, id: &str, bytes: &[u8], reason: &str) {
        self.inner
            .dead_letters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(tenant = %self.tenant, entry = id, reason, "owner inbox entry moved to the dead letters");
        let mut conn = self.inner.conn.clone();
        let moved: redis::RedisResult<()> = redis::pipe()
            .cmd("XADD")
            .arg(self.inner.keys.dead_letters(&self.tenant))
            .arg("MAXLEN")
            .arg("~")
            .arg(10_000)
            .arg("*")
            .arg("entry")
            .arg(id)
            .arg("reason")
            .arg(reason)
            .arg("m")
            .arg(bytes)
            .ignore()
            .cmd("XACK")
            .arg(&self.inbox)
            .arg(OWNER_GROUP)
            .arg(id)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = moved {
            tracing::warn!(entry = %id, error = %e, "dead letter not written");
        }
    }
}
