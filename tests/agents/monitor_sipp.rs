//! Monitoring with SIPp as every peer: the carrier's SBC (`sbc_reoffers.xml`), the agent's
//! and the supervisor's phones (`phone_reoffers.xml`, registered with digest first) and a
//! media server controlled by MSML (`msml_server.xml`). Each SIPp logs the messages it
//! received (`-trace_msg`): the test waits on those logs, reads the MSML the media server was
//! sent, and has each SIPp end its calls as its scenario expects.

use std::path::Path;
use std::process::Child;

use tempfile::TempDir;

use super::monitor::{monitor, msml_node, until};
use super::*;
use support::sipp;

/// The messages a SIPp received, in order, from its message log in `dir`: each its start
/// line and, after a blank line, its body.
fn received(dir: &Path) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with("_messages.log") {
            continue;
        }
        let log = std::fs::read_to_string(entry.path()).expect("log");
        for record in log.split("----------------------------------------------- ") {
            let Some((_, message)) = record.split_once("message received") else {
                continue;
            };
            let message = message
                .split_once(":\n\n")
                .map_or("", |(_, m)| m)
                .replace("\r\n", "\n");
            let start = message.lines().next().unwrap_or_default().to_owned();
            let body = message
                .split_once("\n\n")
                .map_or(String::new(), |(_, b)| b.trim().to_owned());
            messages.push((start, body));
        }
    }
    messages
}

/// The bodies of the requests of `method` the SIPp logging in `dir` received.
fn requests(dir: &Path, method: &str) -> Vec<String> {
    let prefix = format!("{method} ");
    received(dir)
        .into_iter()
        .filter(|(start, _)| start.starts_with(&prefix))
        .map(|(_, body)| body)
        .collect()
}

/// Waits until the SIPp logging in `dir` has received `n` requests of `method` (SIPp writes
/// its log as messages come); their bodies.
async fn until_received(dir: &Path, method: &str, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let got = requests(dir, method);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{n} {method} requests not received in 5 s: {:#?}\n{}",
        received(dir),
        sipp::sipp_errors(dir)
    );
}

/// `xmllint` finds `body` well-formed XML.
fn well_formed(dir: &Path, body: &str) -> bool {
    let file = dir.join("body.xml");
    std::fs::write(&file, body).expect("write");
    std::process::Command::new("xmllint")
        .args(["--noout", file.to_str().expect("path")])
        .status()
        .expect("xmllint runs (scripts/test.sh installs libxml2-utils)")
        .success()
}

/// A folder of its own for each SIPp, so that its message log is its alone.
fn logged() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A registered SIPp phone on `dn` answering `calls` calls and every re-INVITE in them.
fn phone(server: &Server, logged: &TempDir, dn: &str, calls: usize) -> Child {
    let port = support::free_port();
    sipp::register(server, logged.path(), dn, port);
    sipp::uas(
        logged.path(),
        "phone_reoffers.xml",
        dn,
        "127.0.0.1",
        port,
        &["-m", &calls.to_string(), "-trace_msg", "-timeout", "60s"],
    )
}

/// The carrier's SBC from 127.0.0.2 placing one call to DN 1003, which it keeps, taking
/// every re-INVITE, until the core hangs it up.
fn sbc_call(server: &Server, logged: &TempDir) -> Child {
    sipp::sbc_once(
        logged.path(),
        server,
        &sipp::scenario("sbc_reoffers.xml"),
        "1003",
        &["-trace_msg", "-timeout", "60s"],
    )
    .spawn()
    .expect("sipp runs (scripts/test.sh installs sip-tester)")
}

/// Each SIPp ended with every call as its scenario expects.
fn succeeded(child: &mut Child, logged: &TempDir, who: &str, server: &Server) {
    let status = sipp::wait(child, Duration::from_secs(15));
    assert!(
        status.success(),
        "{who}: {status}\n{}\n{}",
        sipp::sipp_errors(logged.path()),
        server.log_text()
    );
}

/// a1005 monitors a1003 with SIPp as the SBC, both phones and the MSML media server: listens,
/// switches to whisper and to barge-in, and leaves; then monitors a1003's next call from its
/// answer, and stops. The media server receives exactly the MSML each step requires, one
/// request at a time, each body well-formed XML; the events name each mode; every SIPp ends
/// its calls as its scenario expects (the re-INVITEs onto the conference and back answered,
/// the calls released from the desktop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sipp_as_every_peer_a_supervisor_listens_whispers_barges_in_and_takes_the_next_call() {
    let server = msml_node(46, 5100);
    let (media_log, agent_log, supervisor_log) = (logged(), logged(), logged());
    let (sbc_log, next_sbc_log) = (logged(), logged());
    let _media = sipp::Running(vec![sipp::uas(
        media_log.path(),
        "msml_server.xml",
        "msml",
        "127.0.0.3",
        5100,
        &["-trace_msg"],
    )]);
    // Killed when the test ends, passed or not.
    let mut peers = sipp::Running(vec![
        phone(&server, &agent_log, "1003", 2),
        phone(&server, &supervisor_log, "1005", 2),
    ]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let mut calls = Calls::new(channel.clone());
    log_in(&mut agents, &["1003", "1005"], false).await;
    let mut stream = follow(channel, DEMO_KEY, "", "").await;
    let ask = |mode| with_key(DEMO_KEY, monitor("a1005", "a1003", mode));

    // The first call, answered by a1003's phone.
    peers.0.push(sbc_call(&server, &sbc_log));
    let answered = until(&mut stream, "call Established").await;
    let call = call_of(answered.last().expect("established"))
        .call_id
        .clone();

    // Listen: both parties re-INVITEd onto the conference, the supervisor's phone called and
    // re-INVITEd (each re-INVITE ACKed before the next step).
    calls
        .monitor(ask(pb::MonitorMode::Listen))
        .await
        .expect("listen");
    let started = until(&mut stream, "call PartyAdded").await;
    assert!(kinds(&started).contains(&"call MonitoringStarted".to_owned()));
    let added = call_of(started.last().expect("PartyAdded"));
    assert!(
        added
            .parties
            .iter()
            .any(|p| p.role == "supervisor" && p.dn == "1005" && p.mode == "listen"),
        "{:?}",
        added.parties
    );
    until_received(media_log.path(), "INFO", 4).await;
    until_received(supervisor_log.path(), "ACK", 2).await;

    // Whisper, then barge-in: the media server alone is told.
    calls
        .monitor(ask(pb::MonitorMode::Whisper))
        .await
        .expect("whisper");
    let changed = until(&mut stream, "call MonitoringChanged").await;
    assert_eq!(call_of(changed.last().expect("changed")).cause, "whisper");
    until_received(media_log.path(), "INFO", 6).await;
    calls
        .monitor(ask(pb::MonitorMode::Barge))
        .await
        .expect("barge in");
    let changed = until(&mut stream, "call MonitoringChanged").await;
    assert_eq!(call_of(changed.last().expect("changed")).cause, "barge");
    until_received(media_log.path(), "INFO", 8).await;

    // The supervisor leaves: the parties are re-INVITEd back to each other.
    calls
        .stop_monitoring(ask(pb::MonitorMode::Barge))
        .await
        .expect("stop");
    let stopped = until(&mut stream, "call MonitoringStopped").await;
    assert!(kinds(&stopped).contains(&"call PartyDeleted".to_owned()));
    until_received(sbc_log.path(), "ACK", 2).await;
    until_received(agent_log.path(), "ACK", 3).await;
    let release = |call_id: &str| {
        with_key(
            DEMO_KEY,
            pb::CallRequest {
                agent_id: "a1003".into(),
                call_id: call_id.into(),
                ..Default::default()
            },
        )
    };
    calls.release(release(&call)).await.expect("release");
    until(&mut stream, "call Released").await;
    succeeded(&mut peers.0[2], &sbc_log, "the SBC's first call", &server);

    // The next calls, from a1003's next answer on.
    let mut next = monitor("a1005", "a1003", pb::MonitorMode::Listen);
    next.scope = pb::MonitorScope::NextCalls.into();
    calls
        .monitor(with_key(DEMO_KEY, next.clone()))
        .await
        .expect("next calls");
    let kept = until(&mut stream, "agent AgentMonitoring").await;
    assert_eq!(agent_of(kept.last().expect("kept")).monitored_by, "1005");
    peers.0.push(sbc_call(&server, &next_sbc_log));
    let answered = until(&mut stream, "call Established").await;
    let next_call = call_of(answered.last().expect("established"))
        .call_id
        .clone();
    let started = until(&mut stream, "call PartyAdded").await;
    assert!(kinds(&started).contains(&"call MonitoringStarted".to_owned()));
    until_received(media_log.path(), "INFO", 12).await;
    until_received(supervisor_log.path(), "ACK", 4).await;
    calls
        .stop_monitoring(with_key(DEMO_KEY, next))
        .await
        .expect("stop the next calls");
    let stopped = until(&mut stream, "call MonitoringStopped").await;
    let unmonitored = stopped
        .iter()
        .find(|s| s.1 == "AgentMonitoring")
        .expect("the agent's state says so");
    assert_eq!(agent_of(unmonitored).monitored_by, "");
    until_received(next_sbc_log.path(), "ACK", 2).await;
    until_received(agent_log.path(), "ACK", 6).await;
    calls.release(release(&next_call)).await.expect("release");
    until(&mut stream, "call Released").await;
    succeeded(
        &mut peers.0[3],
        &next_sbc_log,
        "the SBC's next call",
        &server,
    );
    succeeded(&mut peers.0[0], &agent_log, "a1003's phone", &server);
    succeeded(
        &mut peers.0[1],
        &supervisor_log,
        "the supervisor's phone",
        &server,
    );

    // What the media server was asked, in order: SIPp's connections are tagged ms1, ms2...
    // in the order they came (the caller's, the agent's, the supervisor's, per call).
    let (conf, next_conf) = (format!("conf:{call}"), format!("conf:{next_call}"));
    let hears = "<stream media=\"audio\" dir=\"to-id1\"/>";
    let expected = [
        // Listen.
        format!("<createconference name=\"{call}\""),
        format!("<join id1=\"conn:ms1\" id2=\"{conf}\"/>"),
        format!("<join id1=\"conn:ms2\" id2=\"{conf}\"/>"),
        format!("<join id1=\"conn:ms3\" id2=\"{conf}\">\n    {hears}"),
        // Whisper: still hearing the conference, and heard by the agent alone.
        format!("<modifystream id1=\"conn:ms3\" id2=\"{conf}\">\n    {hears}"),
        "<join id1=\"conn:ms3\" id2=\"conn:ms2\">\n    <stream media=\"audio\" dir=\"from-id1\"/>"
            .to_owned(),
        // Barge-in: both ways with the conference, no path of its own to the agent.
        format!("<modifystream id1=\"conn:ms3\" id2=\"{conf}\">\n    <stream media=\"audio\"/>"),
        "<unjoin id1=\"conn:ms3\" id2=\"conn:ms2\"/>".to_owned(),
        // The next call, listened to from its answer.
        format!("<createconference name=\"{next_call}\""),
        format!("<join id1=\"conn:ms4\" id2=\"{next_conf}\"/>"),
        format!("<join id1=\"conn:ms5\" id2=\"{next_conf}\"/>"),
        format!("<join id1=\"conn:ms6\" id2=\"{next_conf}\">\n    {hears}"),
    ];
    let msml = requests(media_log.path(), "INFO");
    assert_eq!(msml.len(), expected.len(), "{msml:#?}");
    for (body, part) in msml.iter().zip(&expected) {
        assert!(body.contains(part.as_str()), "{part}\nin\n{body}");
        assert!(
            well_formed(media_log.path(), body),
            "not well-formed XML:\n{body}"
        );
    }
    // Leaving is BYEs, not MSML: each call's three connections hung up.
    assert_eq!(requests(media_log.path(), "BYE").len(), 6);
}
