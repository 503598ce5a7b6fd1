//! Events as a busy node emits them, and a broker to send them to, for the reporting
//! benchmarks and tests.

use std::path::Path;
use std::process::{Command, Stdio};

use switchboard_proto::events::{CallThread, Event, Party, Payload};

/// The command that runs the tansu binary at `path` as a broker on 127.0.0.1:`port`, with its
/// memory storage (it keeps nothing across a restart) and quiet.
pub fn tansu(path: &Path, port: u16) -> Command {
    tansu_broker(path, port, port, "memory://tansu/")
}

/// As [`tansu`], but telling clients to reach it at 127.0.0.1:`advertised` (where a TLS
/// terminator in front of it listens, say), its data in `storage` (`sqlite://FILE`, relative
/// to the working directory, keeps its users across a restart).
pub fn tansu_broker(path: &Path, port: u16, advertised: u16, storage: &str) -> Command {
    let mut command = Command::new(path);
    command
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", storage])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// The `n`th call event of a load: an Established call between a trunk caller and an agent's
/// DN, keyed by its call thread (ten events a thread), about 700 bytes as JSON.
pub fn call_event(n: u64) -> Event {
    let thread = format!("0190b2c4-{:04x}-7000-8000-{:012x}", n % 0xffff, n / 10);
    Event {
        id: format!("0190b2c4-5e1f-7000-8000-{n:012x}"),
        tenant: "demo".into(),
        topic: "voice-callthread".into(),
        key: format!("demo:{thread}"),
        seq: n % 10 + 1,
        at_ms: 1_700_000_000_000 + n as i64,
        kind: "Established".into(),
        payload: Some(Payload::Call(CallThread {
            call_id: thread.clone(),
            thread_id: thread,
            parties: vec![
                Party {
                    dn: "+15551230000".into(),
                    role: "origination".into(),
                    uri: "sip:+15551230000@127.0.0.2".into(),
                    mode: String::new(),
                },
                Party {
                    dn: "1003".into(),
                    role: "destination".into(),
                    uri: "sip:1003@127.0.0.1:5062".into(),
                    mode: String::new(),
                },
            ],
            ani: "+15551230000".into(),
            dnis: "+18005550100".into(),
            origin: "trunk:carrier".into(),
            duration_ms: 12_000,
            user_data: [("line".to_owned(), "support".to_owned())].into(),
            routing_point: "5000".into(),
            queue: "support".into(),
            target: "english >= 3".into(),
            priority: 5,
            ..Default::default()
        })),
    }
}
