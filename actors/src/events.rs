//! The event sink every system emits to: the envelope of design.md "Events", with a sequence
//! number per key from 1, appended to the tenant's Redis stream `sb:{<tenant>}:<topic>` (trimmed to a
//! length; see [`crate::keys`]), or kept in memory when the node runs without Redis.
//!
//! Each entry's stream id comes from one counter per tenant, so ids increase across all of a
//! tenant's streams in the order the entries were written: merging streams by id (as the
//! desktop's event stream does, see [`crate::feed`]) gives that order back exactly.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::redis_conn::{Conn, Redis};
use redis::Script;
use switchboard_kafka::Reporter;
use switchboard_proto::events::{Event, Payload};
use switchboard_proto::{event_fields, event_from_fields};
use tokio::sync::broadcast;

use crate::FastMap;
use crate::error::Result;
use crate::keys::Keys;

/// The topic of registration events.
pub const TOPIC_REGISTRAR: &str = "voice-registrar";

/// The topic of call events.
pub const TOPIC_CALLTHREAD: &str = "voice-callthread";

/// The topic of agent and DN state events.
pub const TOPIC_AGENTSTATE: &str = "voice-agentstate";

/// Desktop requests that were refused (kind `EventError`): for the desktops' event stream,
/// not for reporting.
pub const TOPIC_ERRORS: &str = "desktop-errors";

/// How many entries the errors stream keeps.
const ERRORS_LENGTH: usize = 10_000;

/// Where an entry sits in a tenant's streams (a Redis stream id, `<ms>-<n>`): unique and
/// increasing across all the tenant's streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    /// The id after `self` at time `now_ms`.
    fn next(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            EntryId { ms: now_ms, seq: 0 }
        } else {
            EntryId {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

impl EntryId {
    /// The greatest id below `self`.
    pub(crate) fn before(self) -> Self {
        match self.seq {
            0 => EntryId {
                ms: self.ms.saturating_sub(1),
                seq: u64::MAX,
            },
            seq => EntryId {
                ms: self.ms,
                seq: seq - 1,
            },
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(EntryId {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// An event as a stream holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: EntryId,
    pub event: Event,
}

/// The reporter writes the entry's event as the stream holds it, without a copy.
impl switchboard_kafka::Emitted for Entry {
    fn event(&self) -> &Event {
        &self.event
    }
}

/// How many entries a stream keeps by default.
pub const DEFAULT_STREAM_LENGTH: usize = 100_000;

/// A new event, not yet numbered: `id` is a UUIDv7 (unique and sortable), `seq` is filled in
/// by the sink.
pub fn new_event(
    tenant: &str,
    topic: &str,
    key: String,
    kind: &str,
    payload: Payload,
    at_ms: u64,
) -> Event {
    Event {
        id: crate::new_id(),
        tenant: tenant.to_owned(),
        topic: topic.to_owned(),
        key,
        seq: 0,
        at_ms: at_ms as i64,
        kind: kind.to_owned(),
        payload: Some(payload),
    }
}

/// Where events go: the tenant's Redis streams (or memory), and with a [`Reporter`], Kafka or
/// the JSON-lines file as well.
#[derive(Clone, Debug)]
pub struct EventSink {
    streams: Streams,
    report: Option<Reporter>,
}

#[derive(Clone, Debug)]
enum Streams {
    Memory(MemorySink),
    Redis(RedisSink),
}

/// An event on its way into the streams (see [`EventSink::publish`]): its number, or why
/// it has none.
pub enum Publishing<'a> {
    /// Stored already (in memory).
    Done(std::future::Ready<Result<u64>>),
    /// Being written to Redis.
    Writing(Pin<Box<dyn Future<Output = Result<u64>> + Send + 'a>>),
}

impl Future for Publishing<'_> {
    type Output = Result<u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            Publishing::Done(done) => Pin::new(done).poll(cx),
            Publishing::Writing(writing) => writing.as_mut().poll(cx),
        }
    }
}

impl EventSink {
    /// Streams in memory only.
    pub fn memory() -> Self {
        Self::in_memory(MemorySink::default())
    }

    /// Streams in the given memory (which the caller may read back).
    pub fn in_memory(memory: MemorySink) -> Self {
        EventSink {
            streams: Streams::Memory(memory),
            report: None,
        }
    }

    pub fn redis(redis: RedisSink) -> Self {
        EventSink {
            streams: Streams::Redis(redis),
            report: None,
        }
    }

    /// Every event stored is also handed to `reporter` (Kafka, or the JSON-lines file).
    pub fn reporting_to(self, reporter: Reporter) -> Self {
        EventSink {
            report: Some(reporter),
            ..self
        }
    }

    /// The memory holding the streams, when they are held in memory.
    pub fn as_memory(&self) -> Option<&MemorySink> {
        match &self.streams {
            Streams::Memory(m) => Some(m),
            Streams::Redis(_) => None,
        }
    }

    /// Numbers the event within its key and appends it to its stream, then hands it to
    /// reporting (without waiting); returns its number. An event the streams could not take
    /// (Redis away) still goes to reporting, unnumbered (`seq` 0).
    ///
    /// In memory the work is done before this returns and the future is ready; with Redis
    /// the future is the write, boxed. Either way it is a few words, so the future of the
    /// actor that awaits it stays small: ractor moves a handler's whole future for every
    /// message, and an event held inline made the registrar's 3.6 KB.
    pub fn publish(&self, event: Event) -> Publishing<'_> {
        match &self.streams {
            Streams::Memory(m) => {
                let entry = m.publish(event);
                if let Some(report) = &self.report {
                    report.emit_shared(entry.clone());
                }
                Publishing::Done(std::future::ready(Ok(entry.event.seq)))
            }
            Streams::Redis(r) => Publishing::Writing(Box::pin(async move {
                let stored = r.publish(&event).await;
                if let Some(report) = &self.report {
                    let seq = *stored.as_ref().unwrap_or(&0);
                    report.emit(Event { seq, ..event });
                }
                stored
            })),
        }
    }

    /// Up to `count` entries of a tenant's topic after `after`, oldest first.
    pub async fn read_after(
        &self,
        tenant: &str,
        topic: &str,
        after: EntryId,
        count: usize,
    ) -> Result<Vec<Entry>> {
        match &self.streams {
            Streams::Memory(m) => Ok(m.read_after(tenant, topic, after, count)),
            Streams::Redis(r) => r.read_after(tenant, topic, after, count).await,
        }
    }

    /// The id of a topic's newest entry (zero when it has none).
    pub async fn last_id(&self, tenant: &str, topic: &str) -> Result<EntryId> {
        match &self.streams {
            Streams::Memory(m) => Ok(m.last_id(tenant, topic)),
            Streams::Redis(r) => r.last_id(tenant, topic).await,
        }
    }

    /// Whether every entry after `after` is still held: `Err` with the oldest entry held when
    /// trimming removed some of them.
    pub async fn held_after(
        &self,
        tenant: &str,
        topic: &str,
        after: EntryId,
    ) -> Result<std::result::Result<(), Option<EntryId>>> {
        let (deleted, oldest) = match &self.streams {
            Streams::Memory(m) => m.trimmed(tenant, topic),
            Streams::Redis(r) => r.trimmed(tenant, topic).await?,
        };
        Ok(if deleted > after { Err(oldest) } else { Ok(()) })
    }

    /// Every entry of the tenant's `topics` as it is written, in order, from the moment this
    /// returns; a receiver that falls behind is told it lagged (and reads the gap back with
    /// [`EventSink::read_after`]).
    pub async fn follow(
        &self,
        tenant: &str,
        topics: &'static [&'static str],
    ) -> Result<broadcast::Receiver<Arc<Entry>>> {
        match &self.streams {
            Streams::Memory(m) => Ok(m.follow(tenant)),
            Streams::Redis(r) => r.follow(tenant, topics).await,
        }
    }

    /// Forgets the numbering of a key that will have no more events (a call thread that
    /// ended), so that counters do not pile up, one per call ever made.
    pub async fn close_key(&self, tenant: &str, key: &str) -> Result<()> {
        match &self.streams {
            Streams::Memory(m) => {
                let mut inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.seqs.remove(key);
                Ok(())
            }
            Streams::Redis(r) => {
                let mut conn = r.conn.clone();
                redis::cmd("DEL")
                    .arg(r.keys.counter(tenant, key))
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(())
            }
        }
    }
}

/// Streams in memory, for a node without Redis (and for reading them back in tests).
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<MemoryStreams>>,
}

#[derive(Debug, Default)]
struct MemoryStreams {
    /// By tenant, then topic.
    streams: FastMap<String, FastMap<String, MemoryStream>>,
    seqs: FastMap<String, u64>,
    /// The last entry id given out, per tenant.
    last: FastMap<String, EntryId>,
    live: FastMap<String, broadcast::Sender<Arc<Entry>>>,
}

impl MemoryStreams {
    fn stream(&self, tenant: &str, topic: &str) -> Option<&MemoryStream> {
        self.streams.get(tenant)?.get(topic)
    }
}

/// A value of `map` at `key`, made on first use: the key is copied only then (a hot path
/// looks up far more often than it inserts).
fn at<'m, V: Default>(map: &'m mut FastMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

#[derive(Debug, Default)]
struct MemoryStream {
    /// Shared with the followers each was sent to.
    entries: VecDeque<Arc<Entry>>,
    /// The newest entry trimmed away.
    deleted: EntryId,
}

/// How many entries a follower may fall behind before it is told it lagged.
const FOLLOW_BUFFER: usize = 8192;

impl MemorySink {
    fn publish(&self, mut event: Event) -> Arc<Entry> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *inner;
        let seq = at(&mut inner.seqs, &event.key);
        *seq += 1;
        event.seq = *seq;
        let last = at(&mut inner.last, &event.tenant);
        *last = last.next(crate::unix_ms());
        let id = *last;
        let max_len = if event.topic == TOPIC_ERRORS {
            ERRORS_LENGTH
        } else {
            DEFAULT_STREAM_LENGTH
        };
        let stream = at(at(&mut inner.streams, &event.tenant), &event.topic);
        let tenant_live = inner.live.get(&event.tenant);
        let entry = Arc::new(Entry { id, event });
        stream.entries.push_back(entry.clone());
        if stream.entries.len() > max_len
            && let Some(gone) = stream.entries.pop_front()
        {
            stream.deleted = gone.id;
        }
        if let Some(live) = tenant_live {
            let _ = live.send(entry.clone());
        }
        entry
    }

    /// The events held for a tenant's topic, oldest first.
    pub fn events(&self, tenant: &str, topic: &str) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .stream(tenant, topic)
            .map(|s| s.entries.iter().map(|e| e.event.clone()).collect())
            .unwrap_or_default()
    }

    fn read_after(&self, tenant: &str, topic: &str, after: EntryId, count: usize) -> Vec<Entry> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stream) = inner.stream(tenant, topic) else {
            return Vec::new();
        };
        let start = stream.entries.partition_point(|e| e.id <= after);
        stream
            .entries
            .range(start..)
            .take(count)
            .map(|e| Entry::clone(e))
            .collect()
    }

    fn last_id(&self, tenant: &str, topic: &str) -> EntryId {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .stream(tenant, topic)
            .and_then(|s| s.entries.back())
            .map(|e| e.id)
            .unwrap_or_default()
    }

    fn trimmed(&self, tenant: &str, topic: &str) -> (EntryId, Option<EntryId>) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .stream(tenant, topic)
            .map(|s| (s.deleted, s.entries.front().map(|e| e.id)))
            .unwrap_or_default()
    }

    fn follow(&self, tenant: &str) -> broadcast::Receiver<Arc<Entry>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .live
            .entry(tenant.to_owned())
            .or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe()
    }
}

/// Streams in Redis: one script numbers the event (INCR of a counter per key), takes the
/// tenant's next entry id and appends it (XADD with approximate trimming), so numbers and
/// order agree even with several nodes.
#[derive(Clone)]
pub struct RedisSink {
    conn: Conn,
    /// For the connections that follow streams (their reads block).
    client: Redis,
    keys: Keys,
    append: Arc<Script>,
    max_len: usize,
    /// Per tenant, the task following its streams on this node.
    tails: Arc<tokio::sync::Mutex<HashMap<String, broadcast::Sender<Arc<Entry>>>>>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("max_len", &self.max_len)
            .finish()
    }
}

const APPEND: &str = r"
local seq = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
local last = redis.call('GET', KEYS[3])
if last then
  local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
  lms = tonumber(lms)
  if ms <= lms then
    ms = lms
    n = tonumber(lseq) + 1
  end
end
local id = string.format('%d-%d', ms, n)
local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id}
for i = 2, #ARGV, 2 do
  args[#args + 1] = ARGV[i]
  if ARGV[i] == 'seq' then
    args[#args + 1] = tostring(seq)
  else
    args[#args + 1] = ARGV[i + 1]
  end
end
local added = redis.pcall(unpack(args))
if type(added) == 'table' and added['err'] then
  -- The stream holds a newer id than the tenant's last (its record was lost): append with
  -- an id of Redis's choosing rather than lose the event.
  args[6] = '*'
  added = redis.call(unpack(args))
end
redis.call('SET', KEYS[3], added)
return seq
";

impl RedisSink {
    pub fn new(client: Redis, conn: Conn, keys: Keys, max_len: usize) -> Self {
        Self {
            conn,
            client,
            keys,
            append: Arc::new(Script::new(APPEND)),
            max_len,
            tails: Arc::default(),
        }
    }

    /// Stores the event; its number within its key. A connection lost on the way (Redis
    /// restarting) is tried again (see [`crate::redis_retry`]); an event stored but whose reply
    /// was lost is then stored twice, under one event id.
    async fn publish(&self, event: &Event) -> Result<u64> {
        let stream = self.keys.stream(&event.tenant, &event.topic);
        let counter = self.keys.counter(&event.tenant, &event.key);
        let mut invocation = self.append.key(&stream);
        let max_len = if event.topic == TOPIC_ERRORS {
            ERRORS_LENGTH
        } else {
            self.max_len
        };
        invocation
            .key(&counter)
            .key(self.keys.last_entry(&event.tenant))
            .arg(max_len);
        for (field, value) in event_fields(event) {
            invocation.arg(field).arg(value);
        }
        let invocation = &invocation;
        let seq = crate::redis_retry::retrying(&self.conn, |mut conn| async move {
            invocation.invoke_async::<u64>(&mut conn).await
        })
        .await?;
        Ok(seq)
    }

    async fn read_after(
        &self,
        tenant: &str,
        topic: &str,
        after: EntryId,
        count: usize,
    ) -> Result<Vec<Entry>> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(self.keys.stream(tenant, topic))
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(entries(reply))
    }

    async fn last_id(&self, tenant: &str, topic: &str) -> Result<EntryId> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = redis::cmd("XREVRANGE")
            .arg(self.keys.stream(tenant, topic))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(stream_ids(&reply).into_iter().next().unwrap_or_default())
    }

    /// The newest entry trimmed away and the oldest held (XINFO STREAM, Redis 7).
    async fn trimmed(&self, tenant: &str, topic: &str) -> Result<(EntryId, Option<EntryId>)> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = match redis::cmd("XINFO")
            .arg("STREAM")
            .arg(self.keys.stream(tenant, topic))
            .query_async(&mut conn)
            .await
        {
            Ok(v) => v,
            // No such stream: nothing was ever trimmed.
            Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
                return Ok((EntryId::default(), None));
            }
            Err(e) => return Err(e.into()),
        };
        let mut deleted = EntryId::default();
        let mut oldest = None;
        let (mut added, mut length) = (0, 0);
        for (name, value) in pairs(&reply) {
            match name.as_str() {
                // Entries removed by XDEL (trimming does not count here).
                "max-deleted-entry-id" => {
                    if let Some(id) = text(value).and_then(|t| t.parse().ok()) {
                        deleted = id;
                    }
                }
                "entries-added" => added = integer(value),
                "length" => length = integer(value),
                "first-entry" => oldest = entry_id(value),
                _ => {}
            }
        }
        // Trimming removes the oldest entries: when any were removed, the newest of them
        // may have been just below the oldest held.
        if added > length
            && let Some(first) = oldest
        {
            deleted = deleted.max(first.before());
        }
        Ok((deleted, oldest))
    }

    async fn follow(
        &self,
        tenant: &str,
        topics: &'static [&'static str],
    ) -> Result<broadcast::Receiver<Arc<Entry>>> {
        let mut tails = self.tails.lock().await;
        if let Some(live) = tails.get(tenant) {
            return Ok(live.subscribe());
        }
        // The tail starts where the streams end now; whoever follows reads its own start
        // point after this, so nothing falls between the two.
        let mut from = Vec::with_capacity(topics.len());
        for topic in topics {
            from.push(self.last_id(tenant, topic).await?);
        }
        let conn = tail_connection(&self.client).await?;
        let (live, receiver) = broadcast::channel(FOLLOW_BUFFER);
        tails.insert(tenant.to_owned(), live.clone());
        let streams: Vec<String> = topics.iter().map(|t| self.keys.stream(tenant, t)).collect();
        tokio::spawn(tail(conn, self.client.clone(), streams, from, live));
        Ok(receiver)
    }
}

/// How long one read of the tail waits for new entries.
const TAIL_BLOCK: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection of its own for the tail, whose reads block longer than a shared one's
/// answers may take.
async fn tail_connection(client: &Redis) -> redis::RedisResult<Conn> {
    client.own_connection(TAIL_BLOCK).await
}

/// Follows a tenant's streams from `from` for as long as the node runs, handing each new entry
/// on in id order; a lost connection is made again and the read resumes where it stopped.
async fn tail(
    mut conn: Conn,
    client: Redis,
    streams: Vec<String>,
    mut from: Vec<EntryId>,
    live: broadcast::Sender<Arc<Entry>>,
) {
    loop {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("BLOCK")
            .arg(TAIL_BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for s in &streams {
            cmd.arg(s);
        }
        for id in &from {
            cmd.arg(id.to_string());
        }
        let reply: redis::Value = match cmd.query_async(&mut conn).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %e, "following event streams: read failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if let Ok(c) = tail_connection(&client).await {
                    conn = c;
                }
                continue;
            }
        };
        // [[stream, [[id, fields]...]]...] (or a map of them under RESP3).
        let mut batch = Vec::new();
        for (name, items) in stream_replies(&reply) {
            let Some(i) = streams.iter().position(|s| *s == name) else {
                continue;
            };
            let got = entries(items);
            if let Some(last) = got.last() {
                from[i] = from[i].max(last.id);
            }
            batch.extend(got);
        }
        batch.sort_by_key(|e| e.id);
        for entry in batch {
            let _ = live.send(Arc::new(entry));
        }
    }
}

/// The (stream name, entries) pairs of an XREAD reply.
fn stream_replies(reply: &redis::Value) -> Vec<(String, redis::Value)> {
    match reply {
        redis::Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                redis::Value::Array(pair) if pair.len() == 2 => {
                    Some((text(&pair[0])?, pair[1].clone()))
                }
                _ => None,
            })
            .collect(),
        redis::Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

/// The entries of an XRANGE reply that hold well-formed events.
fn entries(reply: redis::Value) -> Vec<Entry> {
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let id = entry_id(item)?;
            let redis::Value::Array(pair) = item else {
                return None;
            };
            let fields: Vec<String> = match pair.get(1)? {
                redis::Value::Array(f) => f.iter().filter_map(text).collect(),
                redis::Value::Map(m) => m
                    .iter()
                    .flat_map(|(k, v)| [text(k), text(v)])
                    .flatten()
                    .collect(),
                _ => return None,
            };
            let event = event_from_fields(
                fields
                    .chunks_exact(2)
                    .map(|kv| (kv[0].as_str(), kv[1].as_str())),
            );
            match event {
                Some(event) => Some(Entry { id, event }),
                None => {
                    tracing::warn!(entry = %id, "stream entry is not an event; skipped");
                    None
                }
            }
        })
        .collect()
}

/// The ids of the entries of an XRANGE reply.
fn stream_ids(reply: &redis::Value) -> Vec<EntryId> {
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    items.iter().filter_map(entry_id).collect()
}

/// The id of a stream entry as replies give it: `[id, fields]`.
fn entry_id(entry: &redis::Value) -> Option<EntryId> {
    match entry {
        redis::Value::Array(pair) => text(pair.first()?)?.parse().ok(),
        _ => None,
    }
}

/// The (name, value) pairs of a reply that is a map, flat (RESP2) or not (RESP3).
fn pairs(reply: &redis::Value) -> Vec<(String, &redis::Value)> {
    match reply {
        redis::Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|kv| Some((text(&kv[0])?, &kv[1])))
            .collect(),
        redis::Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn integer(v: &redis::Value) -> u64 {
    match v {
        redis::Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        other => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
    }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::events::Binding;

    use super::*;

    fn event(tenant: &str, aor: &str, kind: &str) -> Event {
        new_event(
            tenant,
            TOPIC_REGISTRAR,
            format!("{tenant}:{aor}"),
            kind,
            Payload::Binding(Binding::default()),
            1,
        )
    }

    #[tokio::test]
    async fn memory_streams_number_events_per_key() {
        let sink = EventSink::memory();
        for (tenant, aor, kind) in [
            ("demo", "sip:1001@demo.local", "BindingAdded"),
            ("demo", "sip:1002@demo.local", "BindingAdded"),
            ("demo", "sip:1001@demo.local", "BindingRemoved"),
            ("acme", "sip:1001@demo.local", "BindingAdded"),
        ] {
            sink.publish(event(tenant, aor, kind))
                .await
                .expect("publish");
        }
        let memory = sink.as_memory().expect("in memory");
        let demo: Vec<_> = memory
            .events("demo", TOPIC_REGISTRAR)
            .into_iter()
            .map(|e| (e.key, e.seq, e.kind))
            .collect();
        assert_eq!(
            demo,
            [
                (
                    "demo:sip:1001@demo.local".to_owned(),
                    1,
                    "BindingAdded".to_owned()
                ),
                (
                    "demo:sip:1002@demo.local".to_owned(),
                    1,
                    "BindingAdded".to_owned()
                ),
                (
                    "demo:sip:1001@demo.local".to_owned(),
                    2,
                    "BindingRemoved".to_owned()
                ),
            ]
        );
        let acme = memory.events("acme", TOPIC_REGISTRAR);
        assert_eq!(acme.len(), 1);
        assert_eq!(acme[0].seq, 1);
        assert_ne!(acme[0].id, demo_ids(memory)[0]);
    }

    #[tokio::test]
    async fn a_closed_key_holds_no_counter() {
        let sink = EventSink::memory();
        let memory = sink.as_memory().expect("in memory");
        for kind in ["Ringing", "Released"] {
            sink.publish(event("demo", "thread-1", kind))
                .await
                .expect("publish");
        }
        assert_eq!(memory.inner.lock().expect("lock").seqs.len(), 1);
        sink.close_key("demo", "demo:thread-1")
            .await
            .expect("close");
        assert!(memory.inner.lock().expect("lock").seqs.is_empty());
        // The events themselves stay in the stream.
        assert_eq!(memory.events("demo", TOPIC_REGISTRAR).len(), 2);
    }

    fn demo_ids(memory: &MemorySink) -> Vec<String> {
        memory
            .events("demo", TOPIC_REGISTRAR)
            .into_iter()
            .map(|e| e.id)
            .collect()
    }
}
