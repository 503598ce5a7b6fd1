//! Calls through the core with real SIP peers: SIPp as the carrier's SBC (on 127.0.0.2, the
//! demo trunk's address) and SIPp phones registered on extensions. What the peers see on the
//! wire decides whether SIPp passes; the call thread's events are read back from Redis.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{Server, free_port};

/// A SIPp scenario from benches/sipp.
fn scenario(name: &str) -> std::path::PathBuf {
    support::manifest_dir().join("benches/sipp").join(name)
}

fn sipp(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sipp");
    c.current_dir(dir)
        .args(args)
        .args(["-nostdin", "-trace_err"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Registers `dn` from 127.0.0.1:`port`, so that a SIPp phone later bound there is rung.
fn register(server: &Server, dir: &Path, dn: &str, port: u16) {
    let status = sipp(
        dir,
        &[
            "-sf",
            scenario("register_md5.xml").to_str().expect("path"),
            "-s",
            dn,
            "-au",
            dn,
            "-ap",
            &format!("demo{dn}"),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-timeout",
            "10s",
            &server.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs (scripts/test.sh installs sip-tester)");
    assert!(
        status.success(),
        "{dn} registers: {status}\n{}",
        server.log_text()
    );
}

/// A SIPp phone on `dn` at 127.0.0.1:`port` that answers one call (phone_answer.xml).
fn answering_phone(dir: &Path, dn: &str, port: u16) -> Child {
    let child = sipp(
        dir,
        &[
            "-sf",
            scenario("phone_answer.xml").to_str().expect("path"),
            "-s",
            dn,
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-timeout",
            "30s",
        ],
    )
    .spawn()
    .expect("sipp runs");
    // SIPp binds its socket at once; give it the moment it needs.
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn wait(child: &mut Child, within: Duration) -> ExitStatus {
    let end = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            return child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The error log SIPp writes in its directory, for failure messages.
fn sipp_errors(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_errors.log") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

/// The call-thread events of the tenant, oldest first, as (kind, payload JSON).
fn call_events(conn: &mut redis::Connection) -> Vec<(String, serde_json::Value)> {
    support::stream_entries(conn, "sb:demo:voice-callthread")
        .into_iter()
        .map(|fields: HashMap<String, String>| {
            let payload = serde_json::from_str(&fields["payload"]).expect("payload JSON");
            (fields["kind"].clone(), payload)
        })
        .collect()
}

/// Waits until the stream holds `n` events.
fn events_within(
    conn: &mut redis::Connection,
    n: usize,
    within: Duration,
) -> Vec<(String, serde_json::Value)> {
    let end = Instant::now() + within;
    loop {
        let events = call_events(conn);
        if events.len() >= n || Instant::now() > end {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("redis")
}

fn kinds(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn an_sbc_call_reaches_a_phone_is_held_resumed_and_hung_up() {
    let url = support::redis_db(6);
    let server = Server::start(&["--redis", &url]);
    let dir = tempfile::tempdir().expect("temp dir");
    let phone_port = free_port();
    register(&server, dir.path(), "1001", phone_port);
    let mut phone = answering_phone(dir.path(), "1001", phone_port);

    let sbc = sipp(
        dir.path(),
        &[
            "-sf",
            scenario("sbc_hold.xml").to_str().expect("path"),
            "-s",
            "1001",
            "-m",
            "1",
            "-i",
            "127.0.0.2",
            "-p",
            &free_port().to_string(),
            "-timeout",
            "20s",
            &server.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs");
    let phone_status = wait(&mut phone, Duration::from_secs(10));
    assert!(
        sbc.success() && phone_status.success(),
        "sbc {sbc}, phone {phone_status}\n{}\n{}",
        sipp_errors(dir.path()),
        server.log_text()
    );

    let mut conn = redis(&url);
    let events = events_within(&mut conn, 5, Duration::from_secs(5));
    assert_eq!(
        kinds(&events),
        ["Ringing", "Established", "Held", "Retrieved", "Released"],
        "{events:#?}"
    );
    let (_, released) = &events[4];
    assert_eq!(released["cause"], "caller-hangup");
    assert_eq!(released["origin"], "trunk:carrier");
    assert_eq!(released["dnis"], "1001");
    let thread = &events[0].1["threadId"];
    assert!(events.iter().all(|(_, e)| &e["threadId"] == thread));
    let roles: Vec<(&str, &str)> = released["parties"]
        .as_array()
        .expect("parties")
        .iter()
        .map(|p| {
            (
                p["role"].as_str().unwrap_or(""),
                p["dn"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [("origination", "+15551230000"), ("destination", "1001")]
    );
    // The snapshot of the call was there while it lasted and is gone with it.
    let snapshots: Vec<String> = redis::cmd("KEYS")
        .arg("sb:demo:call:*")
        .query(&mut conn)
        .expect("keys");
    assert!(snapshots.is_empty(), "{snapshots:?}");
}

/// A SIPp phone on 1002 dials `number`, proves it is 1002 after the 407, and hangs up once
/// answered.
fn call_from_1002(server: &Server, dir: &Path, number: &str) -> ExitStatus {
    sipp(
        dir,
        &[
            "-sf",
            scenario("phone_call.xml").to_str().expect("path"),
            "-s",
            number,
            "-key",
            "caller",
            "1002",
            "-au",
            "1002",
            "-ap",
            "demo1002",
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-timeout",
            "20s",
            &server.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs")
}

#[test]
fn a_phone_calls_another_phone() {
    let url = support::redis_db(7);
    let server = Server::start(&["--redis", &url]);
    let dir = tempfile::tempdir().expect("temp dir");
    let phone_port = free_port();
    register(&server, dir.path(), "1003", phone_port);
    let mut callee = answering_phone(dir.path(), "1003", phone_port);
    let caller = call_from_1002(&server, dir.path(), "1003");
    let callee_status = wait(&mut callee, Duration::from_secs(10));
    assert!(
        caller.success() && callee_status.success(),
        "caller {caller}, callee {callee_status}\n{}\n{}",
        sipp_errors(dir.path()),
        server.log_text()
    );
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 4, Duration::from_secs(5));
    assert_eq!(
        kinds(&events),
        ["Dialing", "Ringing", "Established", "Released"],
        "{events:#?}"
    );
    let released = &events[3].1;
    assert_eq!(released["origin"], "dn:1002");
    assert_eq!(released["cause"], "caller-hangup");
    assert_eq!(released["parties"][0]["dn"], "1002");
    assert_eq!(released["parties"][1]["dn"], "1003");
}

#[test]
fn a_phone_calls_out_through_the_trunk() {
    let url = support::redis_db(8);
    let server = Server::start(&["--redis", &url]);
    let dir = tempfile::tempdir().expect("temp dir");
    // The carrier's gateway of the demo trunk: 127.0.0.2:5070.
    let child = sipp(
        dir.path(),
        &[
            "-sf",
            scenario("phone_answer.xml").to_str().expect("path"),
            "-m",
            "1",
            "-i",
            "127.0.0.2",
            "-p",
            "5070",
            "-timeout",
            "30s",
        ],
    )
    .spawn()
    .expect("sipp runs");
    std::thread::sleep(Duration::from_millis(300));
    let mut carrier = child;
    // 9 takes a line: the carrier is asked for the rest of the number.
    let caller = call_from_1002(&server, dir.path(), "915551239999");
    let carrier_status = wait(&mut carrier, Duration::from_secs(10));
    assert!(
        caller.success() && carrier_status.success(),
        "caller {caller}, carrier {carrier_status}\n{}\n{}",
        sipp_errors(dir.path()),
        server.log_text()
    );
    let mut conn = redis(&url);
    let events = events_within(&mut conn, 4, Duration::from_secs(5));
    assert_eq!(
        kinds(&events),
        ["Dialing", "Ringing", "Established", "Released"],
        "{events:#?}"
    );
    let released = &events[3].1;
    assert_eq!(released["parties"][1]["dn"], "15551239999");
    assert!(
        released["parties"][1]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("sip:15551239999@127.0.0.2:5070")),
        "{released}"
    );
}
