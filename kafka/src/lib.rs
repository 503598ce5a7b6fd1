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
use switchboard_proto::event_json;
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
    /// When emitting last alarmed about events dropped (ms since the Unix epoch).
    dropped_alarm_ms: AtomicU64,
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
            dropped_alarm_ms: AtomicU64::new(0),
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
    /// The spool's size limit and high-water mark (zero without Kafka).
    pub spool_max_bytes: u64,
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

enum Msg {
    Event(Box<Event>),
    Close(std::sync::mpsc::Sender<()>),
}

/// The handle the systems emit events through; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    destination: Arc<str>,
    limits: (u64, u64),
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
        let (spool, damage) = spool::Spool::open(&dir, config.segment_bytes(), shared.clone())
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
        let limits = (config.spool_max_bytes, config.high_water_bytes());
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            spool,
            format: config.format,
            max_bytes: config.spool_max_bytes,
            high_water: config.high_water_bytes(),
            sync_every: Duration::from_millis(config.sync_ms.max(1)),
            shared: shared.clone(),
            lost_reported: None,
        };
        std::thread::Builder::new()
            .name("event-spool".into())
            .spawn(move || writer.run(rx))
            .map_err(spool_error)?;
        let destination = format!("kafka {} (spool {})", config.brokers, dir.display());
        let reader = spool::Reader::new(&dir, shared.clone());
        let sender = tokio::spawn(sender::run(config, shared.clone(), reader));
        Ok(Reporter {
            tx,
            shared,
            destination: destination.into(),
            limits,
            sender: Arc::new(std::sync::Mutex::new(Some(sender))),
        })
    }

    /// Reporting to a JSON-lines file (appended to), synced every `sync_ms`.
    pub fn json_lines(path: &Path, sync_ms: u64) -> Result<Self, StartError> {
        let shared = Arc::new(Shared::default());
        shared.connected.store(true, Ordering::Relaxed);
        let file =
            jsonl::JsonLines::open(path, shared.clone()).map_err(|source| StartError::File {
                path: path.display().to_string(),
                source,
            })?;
        let (tx, rx) = mpsc::channel();
        let every = Duration::from_millis(sync_ms.max(1));
        std::thread::Builder::new()
            .name("event-file".into())
            .spawn(move || file.run(rx, every))
            .map_err(|source| StartError::File {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Reporter {
            tx,
            shared,
            destination: format!("file {}", path.display()).into(),
            limits: (0, 0),
            sender: Arc::default(),
        })
    }

    /// Hands an event on; never blocks. Events of other topics than the reporting ones are
    /// ignored.
    pub fn emit(&self, event: Event) {
        if Topic::named(&event.topic).is_none() {
            return;
        }
        // The writer stuck (a disk that stopped answering): memory is not the place to wait.
        let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= MAX_QUEUED {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            let lost = self.shared.lost.fetch_add(1, Ordering::Relaxed) + 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let last = self.shared.dropped_alarm_ms.load(Ordering::Relaxed);
            if now >= last + 10_000
                && self
                    .shared
                    .dropped_alarm_ms
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::error!(alarm = "events-lost", queued, lost_total = lost, id = %event.id,
                    "ALARM: the event writer is not keeping up (is the spool's disk answering?): events are being LOST");
            }
            return;
        }
        if self.tx.send(Msg::Event(Box::new(event))).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            self.shared.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!("event emitted after reporting stopped: lost");
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
            spool_max_bytes: self.limits.0,
            spool_high_water_bytes: self.limits.1,
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
        Format::Json => serde_json::to_vec(&event_json(event)).unwrap_or_default(),
        Format::Protobuf => event.encode_to_vec(),
    }
}

/// The thread that appends emitted events to the spool.
struct Writer {
    spool: spool::Spool,
    format: Format,
    max_bytes: u64,
    high_water: u64,
    sync_every: Duration,
    shared: Arc<Shared>,
    /// When lost events were last reported, and how many had been lost by then.
    lost_reported: Option<(Instant, u64)>,
}

/// Events taken from the channel before they are written out together.
const BATCH: usize = 4096;

/// Events emitted and not yet taken by the writer beyond which emitting drops them (counted
/// and alarmed as lost): about 200 MB of events in memory.
const MAX_QUEUED: u64 = 200_000;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut last_sync = Instant::now();
        let mut closing = None;
        loop {
            let wait = self.sync_every.saturating_sub(last_sync.elapsed());
            let first = match rx.recv_timeout(wait) {
                Ok(msg) => Some(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut taken = 0;
            let mut next = first;
            while let Some(msg) = next {
                match msg {
                    Msg::Event(event) => {
                        self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                        self.append(&event);
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
            if let Err(e) = self.spool.write() {
                tracing::error!(error = %e, "event spool: write failed; retrying");
            }
            self.watch_marks();
            if closing.is_some() || last_sync.elapsed() >= self.sync_every {
                if let Err(e) = self.spool.sync() {
                    tracing::error!(error = %e, "event spool: sync failed; retrying");
                }
                if let Err(e) = self.spool.tidy() {
                    tracing::warn!(error = %e, "event spool: tidying failed");
                }
                last_sync = Instant::now();
            }
            if let Some(done) = closing.take() {
                let _ = done.send(());
                break;
            }
        }
        let _ = self.spool.sync();
        let _ = self.spool.tidy();
    }

    fn append(&mut self, event: &Event) {
        let Some(topic) = Topic::named(&event.topic) else {
            return;
        };
        let payload = encode(event, self.format);
        match self
            .spool
            .append(topic, event.key.as_bytes(), &payload, self.max_bytes)
        {
            Ok(true) => {}
            Ok(false) => self.lose(event),
            Err(e) => {
                tracing::error!(error = %e, "event spool: append failed");
                self.lose(event);
            }
        }
    }

    /// Counts, logs and alarms an event the spool had no room for: the first at once, then a
    /// summary at most every ten seconds.
    fn lose(&mut self, event: &Event) {
        let lost = self.shared.lost.fetch_add(1, Ordering::Relaxed) + 1;
        let due = self
            .lost_reported
            .is_none_or(|(at, _)| at.elapsed() >= Duration::from_secs(10));
        if due {
            let since = lost - self.lost_reported.map_or(0, |(_, n)| n);
            tracing::error!(alarm = "events-lost", lost_total = lost, lost_since_last_report = since,
                key = %event.key, kind = %event.kind, id = %event.id,
                max_bytes = self.max_bytes,
                "ALARM: event spool full: events are being LOST (Kafka has been away too long)");
            self.lost_reported = Some((Instant::now(), lost));
        }
    }

    /// Turns readiness off past the high-water mark and back on below it.
    fn watch_marks(&mut self) {
        let pending = self.spool.pending();
        let accepting = pending < self.high_water;
        let was = self.shared.accepting.swap(accepting, Ordering::AcqRel);
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
            self.lost_reported = None;
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
