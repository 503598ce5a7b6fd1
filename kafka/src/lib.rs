//! Reporting for switchboard: every event to Kafka (or, without Kafka, to a JSON-lines file),
//! with nothing lost while the broker is away.
//!
//! A [`Reporter`] takes the events the systems emit without ever blocking them: an emitted
//! event goes over a channel to the writer thread, which appends it to the spool (see
//! [`spool`]) and syncs the spool in batches. The sender task reads the spool in order and
//! produces to Kafka with the idempotent producer and `acks=all`; what Kafka acknowledged is
//! cut from the spool. While the broker is away the spool grows on disk, and it drains in the
//! same order when the broker returns. Past its high-water mark [`Reporter::accepting`] turns
//! false (the edge then refuses new calls and registrations with 503, and readiness fails);
//! an event that finds the spool full is counted, logged and alarmed as lost.

mod config;
mod jsonl;
mod sender;
pub(crate) mod spool;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use prost::Message;
use switchboard_proto::EventJson;
use switchboard_proto::events::Event;

pub use config::{Format, KafkaConfig};

/// The reporting topics, as the spool numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Topic {
    Registrar = 0,
    AgentState = 1,
    CallThread = 2,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::Registrar, Topic::AgentState, Topic::CallThread];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Registrar => "voice-registrar",
            Topic::AgentState => "voice-agentstate",
            Topic::CallThread => "voice-callthread",
        }
    }

    /// The reporting topic of that name; none for a topic that is not reported.
    pub fn named(name: &str) -> Option<Self> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }

    fn from_byte(b: u8) -> Option<Self> {
        Topic::ALL.get(b as usize).copied()
    }
}

/// What the writer, the sender and the node's health endpoints share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The spool's end, as far as the file holds it.
    written: AtomicU64,
    /// The offset up to which Kafka acknowledged.
    acked: AtomicU64,
    /// Below the high-water mark: new calls and registrations are taken.
    accepting: Arc<AtomicBool>,
    /// Whether the sender has a broker.
    connected: AtomicBool,
    delivered: AtomicU64,
    lost: AtomicU64,
    /// Events emitted and not yet taken by the writer.
    queued: AtomicU64,
    /// When events lost were last alarmed (ms since `started`; `u64::MAX`: never).
    lost_alarm_ms: AtomicU64,
    started: Instant,
    /// Bytes cut off damaged tails at start.
    damaged: AtomicU64,
    wake: tokio::sync::Notify,
    stop: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            written: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            accepting: Arc::new(AtomicBool::new(true)),
            connected: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            lost_alarm_ms: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            damaged: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
        }
    }
}

impl Shared {
    fn wake_sender(&self) {
        self.wake.notify_one();
    }

    /// Counts `event` lost for `why`, and alarms (see [`Shared::lost_one`]).
    pub(crate) fn lose(&self, why: &str, event: &Event) {
        self.lost_one(why, &event.key, format_args!("{} {}", event.kind, event.id));
    }

    /// Counts an event lost for `why` (`key` and `what` say which, as far as is known), and
    /// alarms: an ERROR with `alarm="events-lost"`, the first at once, then at most every ten
    /// seconds, with the total so far.
    pub(crate) fn lost_one(
        &self,
        why: impl std::fmt::Display,
        key: &str,
        what: impl std::fmt::Display,
    ) {
        let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.lost_alarm_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now >= last + 10_000;
        if due
            && self
                .lost_alarm_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(alarm = "events-lost", lost_total = lost, key, %what,
                "ALARM: events are being LOST: {why}");
        }
    }
}

/// How reporting is doing, for readiness and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Where the events go, for people.
    pub destination: String,
    /// Events written to the destination (Kafka acknowledged them, or the file took them).
    pub delivered: u64,
    /// Events that found the spool full.
    pub lost: u64,
    /// Bytes in the spool that Kafka has not acknowledged.
    pub spooled_bytes: u64,
    /// The spool's high-water mark (zero without Kafka).
    pub spool_high_water_bytes: u64,
    /// Bytes cut off a damaged spool tail at start.
    pub damaged_bytes: u64,
    /// Whether Kafka answers (true without Kafka).
    pub connected: bool,
    /// Below the high-water mark.
    pub accepting: bool,
    /// Events emitted that the writer has not taken yet.
    pub queued: u64,
}

/// An event as the reporter takes it: one of its own, or one shared with another holder (an
/// entry of the node's streams in memory), so that handing it on copies nothing.
pub trait Emitted: Send + Sync + 'static {
    fn event(&self) -> &Event;
}

impl Emitted for Event {
    fn event(&self) -> &Event {
        self
    }
}

enum Msg {
    Event(Arc<dyn Emitted>),
    Close(std::sync::mpsc::Sender<()>),
}

/// The handle the systems emit events through; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    destination: Arc<str>,
    /// The spool's high-water mark (zero without Kafka).
    high_water: u64,
    sender: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("destination", &self.destination)
            .finish()
    }
}

/// Why reporting could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("event spool {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    #[error("events file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("kafka configuration: {0}")]
    Config(String),
}

impl Reporter {
    /// Reporting to Kafka through the spool; the sender runs on the current tokio runtime.
    pub fn kafka(config: KafkaConfig) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let shared = Arc::new(Shared::default());
        let dir = config.spool_dir.clone();
        let spool_error = |source| StartError::Spool {
            path: dir.display().to_string(),
            source,
        };
        let (spool, damage) = spool::Spool::open(
            &dir,
            config.segment_bytes(),
            config.spool_max_bytes,
            shared.clone(),
        )
        .map_err(spool_error)?;
        if let Some(d) = &damage {
            shared.damaged.store(d.bytes_dropped, Ordering::Relaxed);
            tracing::error!(segment = %d.segment.display(), offset = d.at, bytes = d.bytes_dropped,
                "event spool: damaged tail cut off (written just before a crash and never synced); every event before it will be sent");
        }
        let pending = shared.written.load(Ordering::Acquire) - shared.acked.load(Ordering::Acquire);
        if pending > 0 {
            tracing::info!(spool = %dir.display(), bytes = pending,
                "event spool holds events from an earlier run; they are sent first");
        }
        let high_water = config.high_water_bytes();
        let writer = SpoolWriter {
            spool,
            format: config.format,
            high_water,
        };
        let every = Duration::from_millis(config.sync_ms.max(1));
        let tx = start_writer("event-spool", writer, every, &shared).map_err(spool_error)?;
        let destination = format!("kafka {} (spool {})", config.brokers, dir.display());
        let reader = spool::Reader::new(&dir, shared.clone());
        let sender = tokio::spawn(sender::run(config, shared.clone(), reader));
        Ok(Reporter {
            tx,
            shared,
            destination: destination.into(),
            high_water,
            sender: Arc::new(std::sync::Mutex::new(Some(sender))),
        })
    }

    /// Reporting to a JSON-lines file (appended to), synced every `sync_ms`.
    pub fn json_lines(path: &Path, sync_ms: u64) -> Result<Self, StartError> {
        let shared = Arc::new(Shared::default());
        shared.connected.store(true, Ordering::Relaxed);
        let file_error = |source| StartError::File {
            path: path.display().to_string(),
            source,
        };
        let file = jsonl::JsonLines::open(path).map_err(file_error)?;
        let every = Duration::from_millis(sync_ms.max(1));
        let tx = start_writer("event-file", file, every, &shared).map_err(file_error)?;
        Ok(Reporter {
            tx,
            shared,
            destination: format!("file {}", path.display()).into(),
            high_water: 0,
            sender: Arc::default(),
        })
    }

    /// Hands an event on; never blocks. Events of other topics than the reporting ones are
    /// ignored.
    pub fn emit(&self, event: Event) {
        self.emit_shared(Arc::new(event));
    }

    /// As [`Reporter::emit`], for an event another holder keeps as well.
    pub fn emit_shared(&self, emitted: Arc<dyn Emitted>) {
        let event = emitted.event();
        if Topic::named(&event.topic).is_none() {
            return;
        }
        // The writer stuck (a disk that stopped answering): memory is not the place to wait.
        let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= MAX_QUEUED {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            self.shared.lose(
                "the event writer is not keeping up (is the spool's disk answering?)",
                event,
            );
            return;
        }
        if let Err(mpsc::SendError(Msg::Event(emitted))) = self.tx.send(Msg::Event(emitted)) {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            self.shared
                .lose("emitted after reporting stopped", emitted.event());
        }
    }

    /// Cleared while the spool is past its high-water mark: the edge refuses new calls and
    /// registrations then.
    pub fn accepting(&self) -> Arc<AtomicBool> {
        self.shared.accepting.clone()
    }

    pub fn status(&self) -> Status {
        let written = self.shared.written.load(Ordering::Acquire);
        let acked = self.shared.acked.load(Ordering::Acquire);
        Status {
            destination: self.destination.to_string(),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            lost: self.shared.lost.load(Ordering::Relaxed),
            spooled_bytes: written.saturating_sub(acked),
            spool_high_water_bytes: self.high_water,
            damaged_bytes: self.shared.damaged.load(Ordering::Relaxed),
            connected: self.shared.connected.load(Ordering::Relaxed),
            accepting: self.shared.accepting.load(Ordering::Relaxed),
            queued: self.shared.queued.load(Ordering::Relaxed),
        }
    }

    /// Writes out and syncs what was emitted, gives Kafka a few seconds for what is in flight,
    /// and stops; what Kafka did not take stays in the spool for the next start.
    pub async fn close(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Close(done)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || wait.recv_timeout(Duration::from_secs(5)))
                .await;
        }
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake_sender();
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sender) = sender {
            let _ = tokio::time::timeout(Duration::from_secs(10), sender).await;
        }
    }
}

/// An event as it goes to Kafka: its payload in the chosen format.
pub fn encode(event: &Event, format: Format) -> Vec<u8> {
    match format {
        Format::Json => EventJson(event).to_vec(),
        Format::Protobuf => event.encode_to_vec(),
    }
}

/// Where a writer thread puts the emitted events: the spool, or the JSON-lines file.
trait Destination: Send + 'static {
    /// Takes one event, buffered.
    fn take(&mut self, event: &Event, shared: &Shared);
    /// After each batch: hands what is buffered to the file.
    fn write(&mut self, shared: &Shared);
    /// Makes what was written durable.
    fn sync(&mut self);
}

/// Events taken from the channel before they are written out together.
const BATCH: usize = 4096;

/// How long the writer lets events gather after it emptied the channel, before it waits on
/// the channel again: without it, every event emitted wakes the writer's thread (a futex
/// wake on the emitter's thread, a context switch on the writer's), which at tens of
/// thousands of events a second cost the node more than the events themselves.
const LINGER: Duration = Duration::from_millis(2);

/// Events emitted and not yet taken by the writer beyond which emitting drops them (counted
/// and alarmed as lost): about 200 MB of events in memory.
const MAX_QUEUED: u64 = 200_000;

/// Starts the thread that takes emitted events into `destination` in batches and syncs it
/// every `every` (and when closing); the channel to it.
fn start_writer(
    name: &str,
    mut destination: impl Destination,
    every: Duration,
    shared: &Arc<Shared>,
) -> std::io::Result<mpsc::Sender<Msg>> {
    let (tx, rx) = mpsc::channel();
    let shared = shared.clone();
    let run = move || {
        let mut last_sync = Instant::now();
        loop {
            let wait = every.saturating_sub(last_sync.elapsed());
            let mut next = match rx.recv_timeout(wait) {
                Ok(msg) => Some(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut taken = 0;
            let mut closing = None;
            while let Some(msg) = next {
                match msg {
                    Msg::Event(emitted) => {
                        shared.queued.fetch_sub(1, Ordering::AcqRel);
                        destination.take(emitted.event(), &shared);
                    }
                    Msg::Close(done) => {
                        closing = Some(done);
                        break;
                    }
                }
                taken += 1;
                next = if taken < BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            destination.write(&shared);
            if closing.is_some() || last_sync.elapsed() >= every {
                destination.sync();
                last_sync = Instant::now();
            }
            if let Some(done) = closing {
                let _ = done.send(());
                return;
            }
            if taken > 0 && taken < BATCH {
                std::thread::sleep(LINGER);
            }
        }
        destination.sync();
    };
    std::thread::Builder::new().name(name.into()).spawn(run)?;
    Ok(tx)
}

/// The spool as a writer's destination: events encoded in the chosen format, readiness
/// turned off past the high-water mark.
struct SpoolWriter {
    spool: spool::Spool,
    format: Format,
    high_water: u64,
}

impl Destination for SpoolWriter {
    fn take(&mut self, event: &Event, shared: &Shared) {
        let Some(topic) = Topic::named(&event.topic) else {
            return;
        };
        let payload = encode(event, self.format);
        match self.spool.append(topic, event.key.as_bytes(), &payload) {
            Ok(true) => {}
            Ok(false) => shared.lose(
                "the event spool is full (Kafka has been away too long)",
                event,
            ),
            Err(e) => {
                tracing::error!(error = %e, "event spool: append failed");
                shared.lose("the event spool could not be written", event);
            }
        }
    }

    fn write(&mut self, shared: &Shared) {
        if let Err(e) = self.spool.write() {
            tracing::error!(error = %e, "event spool: write failed; retrying");
        }
        // Readiness off past the high-water mark, back on below it.
        let pending = self.spool.pending();
        let accepting = pending < self.high_water;
        let was = shared.accepting.swap(accepting, Ordering::AcqRel);
        if was && !accepting {
            tracing::warn!(
                spooled_bytes = pending,
                high_water = self.high_water,
                "event spool past its high-water mark: refusing new calls and registrations (503) until Kafka takes the backlog"
            );
        } else if !was && accepting {
            tracing::info!(
                spooled_bytes = pending,
                "event spool below its high-water mark: taking new calls and registrations again"
            );
        }
    }

    fn sync(&mut self) {
        if let Err(e) = self.spool.sync() {
            tracing::error!(error = %e, "event spool: sync failed; retrying");
        }
        if let Err(e) = self.spool.tidy() {
            tracing::warn!(error = %e, "event spool: tidying failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::events::{AgentState, Payload};

    use super::*;

    fn event() -> Event {
        Event {
            id: "0190b2c4-0000-7000-8000-000000000001".into(),
            tenant: "demo".into(),
            topic: "voice-agentstate".into(),
            key: "demo:a1001".into(),
            seq: 7,
            at_ms: 1_700_000_000_000,
            kind: "AgentReady".into(),
            payload: Some(Payload::Agent(AgentState {
                agent_id: "a1001".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn payloads_are_the_json_mapping_or_the_protobuf_message() {
        let json: serde_json::Value =
            serde_json::from_slice(&encode(&event(), Format::Json)).expect("JSON");
        assert_eq!(
            json["seq"], "7",
            "64-bit numbers are strings in the JSON mapping"
        );
        assert_eq!(json["kind"], "AgentReady");
        assert_eq!(json["agent"]["agentId"], "a1001");
        let binary = encode(&event(), Format::Protobuf);
        assert_eq!(Event::decode(binary.as_slice()).expect("protobuf"), event());
    }

    #[test]
    fn only_the_reporting_topics_are_reported() {
        assert_eq!(Topic::named("voice-callthread"), Some(Topic::CallThread));
        assert_eq!(Topic::named("desktop-errors"), None);
        for t in Topic::ALL {
            assert_eq!(Topic::from_byte(t as u8), Some(t));
        }
    }

    #[tokio::test]
    async fn the_json_lines_file_gets_one_event_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let reporter = Reporter::json_lines(&path, 10).expect("open");
        reporter.emit(event());
        reporter.emit(Event {
            topic: "desktop-errors".into(),
            ..event()
        });
        reporter.close().await;
        let text = std::fs::read_to_string(&path).expect("file");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
        assert_eq!(v["key"], "demo:a1001");
        assert_eq!(reporter.status().delivered, 1);
    }
}
