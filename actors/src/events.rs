//! The event sink every system emits to: the envelope of design.md "Events", with a sequence
//! number per key from 1, appended to the Redis stream `sb:{tenant}:{topic}` (trimmed to a
//! length), or kept in memory when the node runs without Redis.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use redis::Script;
use redis::aio::ConnectionManager;
use switchboard_proto::event_fields;
use switchboard_proto::events::{Event, Payload};

use crate::error::Result;

/// The topic of registration events.
pub const TOPIC_REGISTRAR: &str = "voice-registrar";

/// The topic of call events.
pub const TOPIC_CALLTHREAD: &str = "voice-callthread";

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
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.to_owned(),
        topic: topic.to_owned(),
        key,
        seq: 0,
        at_ms: at_ms as i64,
        kind: kind.to_owned(),
        payload: Some(payload),
    }
}

/// The Redis key that numbers the events of `key`.
fn counter_name(tenant: &str, key: &str) -> String {
    format!("sb:{tenant}:seq:{key}")
}

/// The name of a tenant's stream for a topic.
pub fn stream_name(tenant: &str, topic: &str) -> String {
    format!("sb:{tenant}:{topic}")
}

#[derive(Clone, Debug)]
pub enum EventSink {
    Memory(MemorySink),
    Redis(RedisSink),
}

impl EventSink {
    /// Numbers the event within its key and appends it to its stream; returns it as stored.
    pub async fn publish(&self, event: Event) -> Result<Event> {
        match self {
            EventSink::Memory(m) => Ok(m.publish(event)),
            EventSink::Redis(r) => r.publish(event).await,
        }
    }

    /// Forgets the numbering of a key that will have no more events (a call thread that
    /// ended), so that counters do not pile up, one per call ever made.
    pub async fn close_key(&self, tenant: &str, key: &str) -> Result<()> {
        match self {
            EventSink::Memory(m) => {
                let mut inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.seqs.remove(key);
                Ok(())
            }
            EventSink::Redis(r) => {
                let mut conn = r.conn.clone();
                redis::cmd("DEL")
                    .arg(counter_name(tenant, key))
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
    streams: HashMap<String, VecDeque<Event>>,
    seqs: HashMap<String, u64>,
}

impl MemorySink {
    fn publish(&self, mut event: Event) -> Event {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = inner.seqs.entry(event.key.clone()).or_default();
        *seq += 1;
        event.seq = *seq;
        let stream = inner
            .streams
            .entry(stream_name(&event.tenant, &event.topic))
            .or_default();
        stream.push_back(event.clone());
        if stream.len() > DEFAULT_STREAM_LENGTH {
            stream.pop_front();
        }
        event
    }

    /// The events held for a tenant's topic, oldest first.
    pub fn events(&self, tenant: &str, topic: &str) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .streams
            .get(&stream_name(tenant, topic))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Streams in Redis: one script numbers the event (INCR of a counter per key) and appends it
/// (XADD with approximate trimming), so numbers and order agree even with several nodes.
#[derive(Clone)]
pub struct RedisSink {
    conn: ConnectionManager,
    append: Arc<Script>,
    max_len: usize,
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
local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
for i = 2, #ARGV, 2 do
  args[#args + 1] = ARGV[i]
  if ARGV[i] == 'seq' then
    args[#args + 1] = tostring(seq)
  else
    args[#args + 1] = ARGV[i + 1]
  end
end
redis.call(unpack(args))
return seq
";

impl RedisSink {
    pub fn new(conn: ConnectionManager, max_len: usize) -> Self {
        Self {
            conn,
            append: Arc::new(Script::new(APPEND)),
            max_len,
        }
    }

    async fn publish(&self, mut event: Event) -> Result<Event> {
        let stream = stream_name(&event.tenant, &event.topic);
        let counter = counter_name(&event.tenant, &event.key);
        let mut invocation = self.append.key(&stream);
        invocation.key(&counter).arg(self.max_len);
        for (field, value) in event_fields(&event) {
            invocation.arg(field).arg(value);
        }
        let mut conn = self.conn.clone();
        let seq: u64 = invocation.invoke_async(&mut conn).await?;
        event.seq = seq;
        Ok(event)
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
        let sink = EventSink::Memory(MemorySink::default());
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
        let EventSink::Memory(memory) = &sink else {
            unreachable!("built above");
        };
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
        let sink = EventSink::Memory(MemorySink::default());
        let EventSink::Memory(memory) = &sink else {
            unreachable!()
        };
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
