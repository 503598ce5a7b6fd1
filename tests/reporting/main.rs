//! Reporting against a real Kafka-compatible broker (tansu, started here on a private port with
//! its memory storage) and a real Redis: every event reaches its topic through a broker outage
//! and restart, in order per key; a spool past its high-water mark turns the edge away; a spool
//! cut short by a crash delivers everything before the damage; Redis restarting with its
//! append-only file loses nothing. The events are read back from outside, by a consumer of
//! our own, and compared with the Redis streams that hold the same events.

#[path = "../support/mod.rs"]
mod support;

mod tls_and_scale_out;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::sipp::{Running, register, serving, sipp, sipp_errors, wait};
use support::{DEMO_KEY, Server, agent, free_port, http_get, log_in, with_key};
use switchboard_proto::voice as pb;

type Agents = pb::agents_client::AgentsClient<tonic::transport::Channel>;

const TOPICS: [&str; 3] = ["voice-registrar", "voice-agentstate", "voice-callthread"];
const PARTITIONS: i32 = 6;

/// The tansu broker: `SWITCHBOARD_TEST_TANSU`, else where scripts/test.sh installs it.
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_TEST_TANSU") {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    Path::new(&home).join(".cache/switchboard/tools/bin/tansu")
}

/// A tansu broker on a private port, with its memory storage: killing it loses what it held,
/// and it starts again empty on the same port.
struct Broker {
    port: u16,
    /// Where clients are told to reach it: `port`, or a TLS terminator in front.
    advertised: u16,
    /// Its working directory, where its log (and an SQLite storage) are.
    dir: PathBuf,
    storage: &'static str,
    /// Whether clients must authenticate (SASL SCRAM).
    authentication: bool,
    child: Option<Child>,
    log: PathBuf,
}

impl Broker {
    fn start(dir: &Path) -> Self {
        let mut broker = Broker::stopped(dir);
        broker.start_again();
        broker
    }

    /// A broker not started yet: its port refuses connections until then.
    fn stopped(dir: &Path) -> Self {
        let port = free_port();
        Broker {
            port,
            advertised: port,
            dir: dir.to_owned(),
            storage: "memory://tansu/",
            authentication: false,
            child: None,
            log: dir.join("tansu.log"),
        }
    }

    /// A broker reached through a TLS terminator on `front` that requires SASL SCRAM, with
    /// `users` (name and password). Users are created by a client that has not authenticated,
    /// so the broker first runs without authentication to create them, on a storage (SQLite)
    /// that keeps them when it starts again requiring it.
    fn secured(dir: &Path, front: u16, users: &[(&str, &str)]) -> Self {
        let mut broker = Broker::stopped(dir);
        broker.advertised = front;
        broker.storage = "sqlite://tansu.db";
        broker.start_again();
        for (name, password) in users {
            succeeds(
                Command::new(tansu())
                    .args(["user", "create", "--broker"])
                    .arg(format!("tcp://{}", broker.addr()))
                    .args([*name, *password, "--mechanism", "scram512"]),
            );
        }
        broker.kill();
        broker.authentication = true;
        broker.start_again();
        broker
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log");
        let mut command = switchboard_benches::events::tansu_broker(
            &tansu(),
            self.port,
            self.advertised,
            self.storage,
        );
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stderr(log)
            .spawn()
            .expect("tansu runs (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A message as the consumer read it.
#[derive(Debug, Clone)]
struct Read {
    topic: String,
    partition: i32,
    key: String,
    event: serde_json::Value,
}

/// A consumer outside switchboard, reading the three topics from their beginning on its own
/// thread until dropped.
struct Outside {
    got: Arc<Mutex<Vec<Read>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outside {
    fn start(brokers: &str) -> Self {
        Self::start_with(brokers, &[])
    }

    /// A consumer with librdkafka `properties` besides (TLS and SASL settings).
    fn start_with(brokers: &str, properties: &[(&str, &str)]) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", "reporting-test")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        for (name, value) in properties {
            config.set(*name, *value);
        }
        let consumer: BaseConsumer = config.create().expect("consumer");
        let mut list = TopicPartitionList::new();
        for topic in TOPICS {
            for p in 0..PARTITIONS {
                list.add_partition_offset(topic, p, Offset::Beginning)
                    .expect("partition");
            }
        }
        consumer.assign(&list).expect("assign");
        let (got2, stop2) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let event =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("a JSON event");
                got2.lock().expect("lock").push(Read {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    key,
                    event,
                });
            }
        });
        Outside {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn read(&self) -> Vec<Read> {
        self.got.lock().expect("lock").clone()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An event of the Redis streams: id, key and number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    id: String,
    key: String,
    seq: u64,
    kind: String,
}

/// Every event the demo tenant's three streams hold, oldest first per stream.
fn stored(url: &str) -> Vec<Stored> {
    let mut conn = support::redis(url);
    let mut out = Vec::new();
    for topic in TOPICS {
        for fields in support::stream_entries(&mut conn, &format!("sb:{{demo}}:{topic}")) {
            out.push(Stored {
                id: fields["id"].clone(),
                key: fields["key"].clone(),
                seq: fields["seq"].parse().expect("seq"),
                kind: fields["kind"].clone(),
            });
        }
    }
    out
}

/// The ids read from Kafka, each once.
fn ids(read: &[Read]) -> HashSet<String> {
    read.iter()
        .map(|r| r.event["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Waits (a minute at most) until the consumer holds every id of `want`.
fn wait_for(consumer: &Outside, want: &HashSet<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = ids(&consumer.read());
        let missing = want.difference(&have).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {missing} of {} events never reached Kafka",
            want.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks what the consumers read (in their order) against the Redis streams: every event
/// exactly once after dropping duplicates by id, none that Redis lacks, each under its topic
/// and key, and each key's events in their order.
fn check_against_redis(read: &[Read], redis: &[Stored]) {
    let missing = compare_with_redis(read, redis);
    assert!(missing.is_empty(), "never reached Kafka: {missing:?}");
}

/// As [`check_against_redis`], but returns the events of Redis that Kafka lacks.
fn compare_with_redis(read: &[Read], redis: &[Stored]) -> Vec<Stored> {
    let by_id: HashMap<&str, &Stored> = redis.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut seen = HashSet::new();
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in read {
        let id = r.event["id"].as_str().expect("id");
        let s = by_id
            .get(id)
            .unwrap_or_else(|| panic!("Kafka holds an event Redis does not: {:?}", r.event));
        assert_eq!(r.key, s.key, "message key is the event's key");
        assert_eq!(r.event["key"], s.key.as_str());
        assert_eq!(r.event["topic"], r.topic.as_str(), "{:?}", r.event);
        assert_eq!(r.event["kind"], s.kind.as_str());
        if seen.insert(id.to_owned()) {
            per_key.entry(s.key.clone()).or_default().push(s.seq);
        }
    }
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in redis.iter().filter(|s| seen.contains(&s.id)) {
        expected.entry(s.key.clone()).or_default().push(s.seq);
    }
    for seqs in expected.values_mut() {
        seqs.sort_unstable();
    }
    for (key, seqs) in &per_key {
        assert_eq!(
            Some(seqs),
            expected.get(key),
            "events of {key} out of order"
        );
    }
    redis
        .iter()
        .filter(|s| !seen.contains(&s.id))
        .cloned()
        .collect()
}

/// The consumer's messages in the order each partition holds them (they arrive interleaved
/// across partitions; a key's events are all in one).
fn in_partition_order(read: Vec<Read>) -> Vec<Read> {
    let mut by: BTreeMap<(String, i32), Vec<Read>> = BTreeMap::new();
    for r in read {
        by.entry((r.topic.clone(), r.partition))
            .or_default()
            .push(r);
    }
    by.into_values().flatten().collect()
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = http_get(server.http, "/metrics").expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn ready(server: &Server) -> bool {
    http_get(server.http, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// The node's configuration for Kafka at `brokers`, its spool in `spool`.
fn kafka_config(brokers: &str, spool: &Path, extra: &str) -> String {
    format!(
        "[kafka]\nbrokers = \"{brokers}\"\nspool_dir = \"{}\"\ndelivery_timeout_ms = 3000\n{extra}",
        spool.display()
    )
}

/// A node on the demo tenant with its events in Redis `url` and Kafka at `broker`, its spool
/// in `dir`, `extra` added to `[kafka]`.
fn reporting_node(url: &str, broker: &Broker, dir: &Path, extra: &str) -> Server {
    let config = kafka_config(&broker.addr(), &dir.join("spool"), extra);
    Server::start_with_config(Some(&config), &["--redis", url])
}

/// The carrier placing `count` calls at `rate` a second to extension 1005 (SIPp's own UAC:
/// INVITE, ACK, then BYE after `hold_ms`).
fn calls_to_1005(dir: &Path, server: &Server, count: usize, rate: f64, hold_ms: u64) -> Child {
    sipp(
        dir,
        &[
            "-sn",
            "uac",
            "-s",
            "1005",
            "-i",
            "127.0.0.2",
            "-p",
            &free_port().to_string(),
            "-r",
            &rate.to_string(),
            "-m",
            &count.to_string(),
            "-d",
            &hold_ms.to_string(),
            "-timeout",
            "200s",
            &server.sip.to_string(),
        ],
    )
    .spawn()
    .expect("sipp runs")
}

/// Agent changes: each agent Ready, then Not Ready.
async fn toggle(agents: &mut Agents, ids: &[&str]) {
    for id in ids {
        agents
            .ready(with_key(DEMO_KEY, agent(id, "")))
            .await
            .expect("ready");
        agents
            .not_ready(with_key(
                DEMO_KEY,
                pb::NotReadyRequest {
                    agent_id: (*id).into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("not ready");
    }
}

/// Agent a1001's changes on `server`, whose broker never answers, until its spool is past the
/// high-water mark and readiness fails; how many Ready and Not Ready pairs that took.
async fn fill_past_mark(server: &Server, agents: &mut Agents) -> u32 {
    let mut toggles = 0;
    while ready(server) {
        toggle(agents, &["a1001"]).await;
        toggles += 1;
        assert!(
            toggles < 200,
            "readiness never turned: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    toggles
}

/// Waits (30 s at most) for a SIPp run to end, and fails unless every call succeeded.
fn finished(child: &mut Child, dir: &Path, server: &Server, what: &str) {
    let status = wait(child, Duration::from_secs(30));
    assert!(
        status.success(),
        "{what}: {status}\n{}\n{}",
        sipp_errors(dir),
        server.log_text()
    );
}

/// Agents `a<dn>` logged in at each DN, each DN registered first (from a port nothing
/// answers on: these DNs take no calls).
async fn agents_at(server: &Server, dir: &Path, dns: &[&str]) -> Agents {
    for dn in dns {
        register(server, dir, dn, free_port());
    }
    let mut agents = Agents::new(support::grpc(server).await);
    log_in(&mut agents, dns, false).await;
    agents
}

/// Extension 1005 registered at a SIPp phone that answers every call, until the test ends.
fn phone_1005(server: &Server, dir: &Path) -> Running {
    let port = free_port();
    register(server, dir, "1005", port);
    Running(vec![serving(
        dir,
        "uas_load.xml",
        "1005",
        "127.0.0.1",
        port,
    )])
}

/// What Redis holds and Kafka lacks, once at most `allowed` events are missing or 30 s
/// have passed.
async fn missing_from_kafka(outside: &Outside, redis: &[Stored], allowed: usize) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = compare_with_redis(&in_partition_order(outside.read()), redis);
        if missing.len() <= allowed || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_kafka_once_and_in_order_across_a_minute_long_broker_outage() {
    let url = support::redis_db(34);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::start(dir.path());
    // REPORTING_EXTRA adds to [kafka] for a run by hand (`[kafka.properties]` with
    // `debug = "msg,eos"` shows what librdkafka does).
    let extra = std::env::var("REPORTING_EXTRA").unwrap_or_default();
    let server = reporting_node(&url, &broker, dir.path(), &extra);
    let _phone = phone_1005(&server, dir.path());
    let mut agents = agents_at(&server, dir.path(), &["1001", "1002"]).await;

    // Before the outage: calls and agent changes, all read from Kafka.
    let first = Outside::start(&broker.addr());
    let mut sbc = calls_to_1005(dir.path(), &server, 10, 10.0, 0);
    toggle(&mut agents, &["a1001", "a1002"]).await;
    finished(&mut sbc, dir.path(), &server, "calls before");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: HashSet<String> = stored(&url).into_iter().map(|s| s.id).collect();
    wait_for(&first, &before, "before the outage");

    // The broker goes away for a minute (with what it held: memory storage) while calls
    // and agent changes go on.
    broker.kill();
    // REPORTING_OUTAGE_SECS shortens the outage for runs by hand.
    let outage_secs: u64 = std::env::var("REPORTING_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let during = 2 * outage_secs as usize;
    let mut sbc = calls_to_1005(dir.path(), &server, during, 2.0, 0);
    let outage = Instant::now();
    let mut toggles = 0;
    while outage.elapsed() < Duration::from_secs(outage_secs) {
        toggle(&mut agents, &["a1001", "a1002"]).await;
        toggles += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    finished(&mut sbc, dir.path(), &server, "calls during the outage");
    assert!(
        ready(&server),
        "the node stays ready: the spool is far from its mark"
    );
    assert_eq!(
        metric(&server, "switchboard_kafka_connected"),
        0.0,
        "{}",
        server.log_text()
    );
    assert!(metric(&server, "switchboard_events_spooled_bytes") > 0.0);
    let first_read = in_partition_order(first.read());
    drop(first);

    // The broker returns, empty; switchboard creates its topics again and sends the spool.
    broker.start_again();
    let mut sbc = calls_to_1005(dir.path(), &server, 10, 10.0, 0);
    toggle(&mut agents, &["a1001"]).await;
    finished(&mut sbc, dir.path(), &server, "calls after");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Outside::start(&broker.addr());
    let redis = stored(&url);
    let all: HashSet<String> = redis.iter().map(|s| s.id.clone()).collect();
    let after: HashSet<String> = all.difference(&before).cloned().collect();
    wait_for(&second, &after, "after the outage");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every event exactly once after de-duplication by id, in order per key.
    let mut read = first_read;
    read.extend(in_partition_order(second.read()));
    check_against_redis(&read, &redis);
    let calls = redis.iter().filter(|s| s.kind == "Released").count();
    assert_eq!(calls, 20 + during, "every call ended and was reported");
    let readies = redis.iter().filter(|s| s.kind == "AgentReady").count();
    assert_eq!(
        readies,
        2 + 2 * toggles + 1,
        "every agent change was reported"
    );
    assert_eq!(metric(&server, "switchboard_events_lost_total"), 0.0);
    assert!(server.log_text().contains("kafka unreachable"));
    assert!(server.log_text().contains("kafka reachable again"));
}

/// A raw REGISTER of 1003 from a new socket: its final status.
fn registers(server: &Server, call_id: &str) -> u16 {
    let phone = support::Udp::new(server.sip);
    support::register_with(&phone, "1003", "demo1003", call_id)
}

/// A call from the carrier's SBC to `number`: the final status.
fn sbc_call_status(server: &Server, number: &str, call_id: &str) -> u16 {
    use support::peer::{Peer, sbc_invite, sdp};
    let sbc = Peer::sbc(server);
    sbc.send(&sbc_invite(sbc.port(), server, number, call_id, &sdp(4000)));
    sbc.final_response(Duration::from_secs(5))
        .expect("an answer")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_high_water_mark_new_calls_get_503_and_a_full_spool_counts_its_losses() {
    let url = support::redis_db(35);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::stopped(dir.path());
    let extra = "spool_max_bytes = 65536\nspool_high_water = 0.5\n";
    let server = reporting_node(&url, &broker, dir.path(), extra);
    let mut agents = agents_at(&server, dir.path(), &["1001"]).await;

    // Kafka never answered: the spool fills with agent changes up to its mark.
    let mut toggles = fill_past_mark(&server, &mut agents).await;
    let why = http_get(server.http, "/readyz").expect("readyz");
    assert!(why.contains("high-water mark"), "{why}");
    assert_eq!(
        registers(&server, "hw-reg"),
        503,
        "a new registration is turned away"
    );
    assert_eq!(
        sbc_call_status(&server, "1004", "hw-call"),
        503,
        "a new call is turned away"
    );
    assert_eq!(metric(&server, "switchboard_events_lost_total"), 0.0);

    // Agents keep changing state into the headroom, until the spool is full: what finds no
    // room is counted and alarmed.
    while metric(&server, "switchboard_events_lost_total") == 0.0 {
        toggle(&mut agents, &["a1001"]).await;
        toggles += 1;
        assert!(
            toggles < 400,
            "the spool never filled: {}",
            server.log_text()
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lost = metric(&server, "switchboard_events_lost_total") as usize;
    assert!(server.log_text().contains("ALARM"), "{}", server.log_text());

    // Kafka arrives: the spool drains, in order, and the node takes calls again.
    broker.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(&server) {
        assert!(
            Instant::now() < deadline,
            "never ready again: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(registers(&server, "hw-reg-2"), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outside = Outside::start(&broker.addr());
    let redis = stored(&url);
    let missing = missing_from_kafka(&outside, &redis, lost).await;
    assert_eq!(
        missing.len(),
        lost,
        "exactly the events counted lost are missing"
    );
    assert!(
        missing.iter().all(|m| m.key == "demo:a1001"),
        "only the agent's changes past the full spool: {missing:?}"
    );
}

/// The spool's newest segment file.
fn last_segment(spool: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(spool)
        .expect("spool dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_cut_short_by_a_crash_delivers_everything_before_the_damage() {
    let url = support::redis_db(36);
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let mut broker = Broker::stopped(dir.path());
    let config = kafka_config(&broker.addr(), &spool, "");
    let mut server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let mut agents = agents_at(&server, dir.path(), &["1001"]).await;
    for _ in 0..5 {
        toggle(&mut agents, &["a1001"]).await;
    }
    // Past the sync window, then a crash in the middle of writing the last event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let segment = last_segment(&spool);
    let len = std::fs::metadata(&segment).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("segment");
    file.set_len(len - 7).expect("cut");
    drop(file);

    broker.start_again();
    let server = Server::start_on(server.sip, Some(&config), &["--redis", &url]);
    assert!(
        server.log_text().contains("damaged tail cut off"),
        "{}",
        server.log_text()
    );
    assert!(metric(&server, "switchboard_events_spool_damaged_bytes") > 0.0);
    let outside = Outside::start(&broker.addr());
    let redis = stored(&url);
    let newest = redis
        .iter()
        .filter(|s| s.key == "demo:a1001")
        .max_by_key(|s| s.seq)
        .expect("agent events")
        .clone();
    let missing = missing_from_kafka(&outside, &redis, 1).await;
    assert_eq!(missing, [newest], "only the event cut in half is lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_while_the_broker_is_away_loses_nothing() {
    let url = support::redis_db(38);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::stopped(dir.path());
    let mut server = reporting_node(&url, &broker, dir.path(), "");
    let mut agents = agents_at(&server, dir.path(), &["1001"]).await;
    for _ in 0..5 {
        toggle(&mut agents, &["a1001"]).await;
    }
    // Stopped at once after the last change: closing syncs what the last window held.
    server.terminate();
    assert!(server.log_text().contains("shutting down"));

    broker.start_again();
    let config = kafka_config(&broker.addr(), &dir.path().join("spool"), "");
    let server = Server::start_on(server.sip, Some(&config), &["--redis", &url]);
    assert!(server.log_text().contains("events from an earlier run"));
    let outside = Outside::start(&broker.addr());
    let redis = stored(&url);
    let missing = missing_from_kafka(&outside, &redis, 0).await;
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    check_against_redis(&in_partition_order(outside.read()), &redis);
}

/// A Redis of this test's own, with append-only persistence, that it can restart.
struct OwnRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(dir: &Path) -> Self {
        let mut redis = OwnRedis {
            port: free_port(),
            dir: dir.to_owned(),
            child: None,
        };
        redis.start_again();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if up.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it as an operator would (SIGTERM: the append-only file is synced).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_with_its_append_only_file_loses_no_event_and_no_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = OwnRedis::start(dir.path());
    let broker = Broker::start(dir.path());
    let server = reporting_node(&redis.url(), &broker, dir.path(), "");
    let _phone = phone_1005(&server, dir.path());
    let mut agents = agents_at(&server, dir.path(), &["1001"]).await;
    toggle(&mut agents, &["a1001"]).await;
    // A call that lasts across the restart (SIPp hangs up after 6 s).
    let mut long = calls_to_1005(dir.path(), &server, 1, 1.0, 6000);
    tokio::time::sleep(Duration::from_secs(1)).await;

    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.start_again();

    toggle(&mut agents, &["a1001"]).await;
    let mut sbc = calls_to_1005(dir.path(), &server, 3, 5.0, 0);
    finished(&mut sbc, dir.path(), &server, "calls after");
    finished(
        &mut long,
        dir.path(),
        &server,
        "the call across the restart",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stored = stored(&redis.url());
    assert_eq!(
        stored.iter().filter(|s| s.kind == "Released").count(),
        4,
        "every call, the one across the restart too, ended in the streams"
    );
    assert_eq!(stored.iter().filter(|s| s.kind == "AgentReady").count(), 2);
    let outside = Outside::start(&broker.addr());
    let all: HashSet<String> = stored.iter().map(|s| s.id.clone()).collect();
    wait_for(&outside, &all, "after the restart");
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_against_redis(&in_partition_order(outside.read()), &stored);
}

#[test]
fn without_kafka_events_go_to_a_json_lines_file_and_serve_says_where() {
    let server = Server::start(&[]);
    assert_eq!(registers(&server, "jsonl-reg"), 200);
    let file = server.events_file();
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("BindingAdded")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no event in {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    };
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON event a line");
    assert_eq!(event["topic"], "voice-registrar");
    assert_eq!(event["key"], "demo:sip:1003@demo.local");
    assert_eq!(event["seq"], "1");
    assert!(event["binding"]["contact"].is_string(), "{event}");
    let log = server.log_text();
    assert!(
        log.contains(&format!("file {}", file.display())),
        "serve says where: {log}"
    );
}

/// An event Kafka will never take (here larger than the producer's `message.max.bytes`) must
/// not hold up every event behind it: it is skipped, counted and alarmed as lost, and the
/// events after it go on in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kafka_refuses_for_good_is_skipped_and_counted_as_lost() {
    use switchboard_benches::events::call_event;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let reporter = switchboard_kafka::Reporter::kafka(switchboard_kafka::KafkaConfig {
        brokers: broker.addr(),
        spool_dir: dir.path().join("spool"),
        properties: [("message.max.bytes".to_owned(), "1000".to_owned())].into(),
        ..Default::default()
    })
    .expect("reporter");
    let mut big = call_event(2);
    if let Some(switchboard_proto::events::Payload::Call(call)) = &mut big.payload {
        call.user_data.insert("notes".into(), "x".repeat(2000));
    }
    // One key, so one partition and one order.
    let key = call_event(1).key;
    let events = [call_event(1), big, call_event(3)].map(|e| switchboard_proto::events::Event {
        key: key.clone(),
        ..e
    });
    for e in &events {
        reporter.emit(e.clone());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while reporter.status().delivered < 2 {
        assert!(Instant::now() < deadline, "{:?}", reporter.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reporter.status().lost, 1);
    let outside = Outside::start(&broker.addr());
    let deadline = Instant::now() + Duration::from_secs(20);
    while outside.read().len() < 2 {
        assert!(Instant::now() < deadline, "read {:?}", outside.read());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = in_partition_order(outside.read())
        .iter()
        .map(|r| r.event["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, [events[0].id.clone(), events[2].id.clone()]);
    reporter.close().await;
}

/// Runs a tool the harness installs, and fails the test with what it said unless it succeeds.
fn succeeds(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} runs (scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
