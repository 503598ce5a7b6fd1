//! A node dies, its calls live on: through a proxy and two cluster nodes, a node carrying
//! established calls is killed (SIGKILL) and the other adopts them from the snapshots they
//! left in Redis, so that every hold, resume and BYE that follows, from either side, reaches
//! the other party.

use std::collections::HashMap;
use std::time::Duration;

use super::support::peer::{Answering, Peer, answered_call, raw_phone, routed_in_dialog};
use super::support::sipp::{Running, register, scenario, sipp, uas, wait};
use super::support::store::Store;
use super::support::{DEMO_KEY, Server, agent, free_port, log_in, with_key};
use super::{Desktop, demo_with_media, media_server};
use switchboard_sip::Method;

/// A SIPp scenario of benches/sipp with its first `pause` of `ms` milliseconds made a
/// `pause` of the call duration (-d), written in `dir`.
fn with_long_pause(dir: &std::path::Path, name: &str, ms: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(scenario(name)).expect("scenario");
    let from = format!("<pause milliseconds=\"{ms}\"/>");
    assert!(text.contains(&from), "{name} pauses {ms} ms");
    let path = dir.join(format!("long-{name}"));
    std::fs::write(&path, text.replacen(&from, "<pause/>", 1)).expect("scenario");
    path
}

/// The carrier's SBC from 127.0.0.2: `count` calls of `scenario` at `rate` a second through
/// `proxy`, to whom `to` says (`-s <service>`, or `-inf <file>`), each pausing `hold_ms`
/// where the scenario pauses for the call's duration.
fn sbc(
    dir: &std::path::Path,
    proxy: &Server,
    scenario: &std::path::Path,
    to: [&str; 2],
    count: usize,
    rate: u32,
    hold_ms: u32,
) -> std::process::Child {
    let (count, rate, hold, port) = (
        count.to_string(),
        rate.to_string(),
        hold_ms.to_string(),
        free_port().to_string(),
    );
    let sip = proxy.sip.to_string();
    let mut args = vec!["-sf", scenario.to_str().expect("path")];
    args.extend(to);
    args.extend([
        "-m",
        &count,
        "-r",
        &rate,
        "-l",
        "1000",
        "-d",
        &hold,
        "-i",
        "127.0.0.2",
        "-p",
        &port,
        "-timeout",
        "90s",
        &sip,
    ]);
    sipp(dir, &args).spawn().expect("sipp runs")
}

/// A SIPp phone on `dn`, registered through `proxy`, taking `count` calls of `scenario`
/// (talking `hold_ms` where the scenario pauses for the call's duration).
fn phone(
    dir: &std::path::Path,
    proxy: &Server,
    dn: &str,
    scenario: &str,
    count: usize,
    hold_ms: u32,
) -> std::process::Child {
    let port = free_port();
    register(proxy, dir, dn, port);
    let (count, hold) = (count.to_string(), hold_ms.to_string());
    let extra = ["-m", &count, "-d", &hold, "-timeout", "90s"];
    uas(dir, scenario, dn, "127.0.0.1", port, &extra)
}

/// How many calls a node runs now (its `/metrics`).
pub(super) fn calls_on(node: &Server) -> f64 {
    super::support::metric(node, "switchboard_calls_active").unwrap_or(0.0)
}

/// 200 calls established through a proxy over two nodes: calls to a phone that the carrier
/// holds, resumes and hangs up; calls to a phone that hangs up itself; calls through the demo
/// routing point answered by agents. The node running more of them is killed (SIGKILL) while
/// they talk, and more calls keep coming. Every call then ends normally: each hold, resume and
/// BYE is answered and reaches the far end (every SIPp saw its every call through), each call
/// has one Released, each agent is Ready again, and nothing of the calls is left in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_established_calls_are_adopted_and_all_end_normally() {
    let store = Store::db(21);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let media = std::net::SocketAddr::from(([127, 0, 0, 3], free_port()));
    let config = demo_with_media(media, "");
    let (proxy, mut nodes) = super::proxy::proxy_and_nodes_with(&store, 2, 300, &config);
    let mut sipps = Running(vec![media_server(d, media)]);
    let (held, hung_up, routed, after) = (120, 76, 4, 20);
    let hold_ms = 12_000;
    // The phones: 1001 is held and resumed by the carrier, 1002 hangs up itself; agents
    // a1003-a1006 are Ready, each for one call of the routing point.
    sipps.0.push(phone(
        d,
        &proxy,
        "1001",
        "phone_answer.xml",
        held + after,
        0,
    ));
    sipps.0.push(phone(
        d,
        &proxy,
        "1002",
        "phone_hangs_up.xml",
        hung_up,
        hold_ms,
    ));
    let agents = ["1003", "1004", "1005", "1006"];
    for dn in agents {
        sipps.0.push(phone(d, &proxy, dn, "phone_answer.xml", 1, 0));
    }
    let mut desktop = Desktop::new(super::support::grpc(&proxy).await);
    log_in(&mut desktop, &agents, true).await;

    let holding = with_long_pause(d, "sbc_hold.xml", 200);
    let queued = with_long_pause(d, "sbc_queue.xml", 2000);
    let calls = d.join("queue.csv");
    std::fs::write(&calls, "SEQUENTIAL\n+18005550100;+15551230000;\n").expect("calls");
    let mut sbcs = vec![
        sbc(d, &proxy, &holding, ["-s", "1001"], held, 60, hold_ms),
        sbc(
            d,
            &proxy,
            &scenario("sbc_until_bye.xml"),
            ["-s", "1002"],
            hung_up,
            60,
            0,
        ),
    ];
    let queue = ["-inf", calls.to_str().expect("path")];
    sbcs.push(sbc(d, &proxy, &queued, queue, routed, 4, hold_ms));

    // Every call established, then the busier node dies.
    let total = held + hung_up + routed;
    let established = || {
        store
            .call_events()
            .iter()
            .filter(|(k, _)| k == "Established")
            .count()
    };
    assert!(
        super::support::eventually(Duration::from_secs(30), || established() >= total),
        "{} of {total} established\n{}",
        established(),
        proxy.log_text()
    );
    let victim = if calls_on(&nodes[0]) >= calls_on(&nodes[1]) {
        0
    } else {
        1
    };
    let carried = calls_on(&nodes[victim]);
    assert!(carried >= 40.0, "the killed node carries {carried} calls");
    nodes[victim].kill();
    let survivor = &nodes[1 - victim];
    // New calls, during the failover: each reaches the survivor.
    let quick = sbc(
        d,
        &proxy,
        &scenario("sbc_hold.xml"),
        ["-s", "1001"],
        after,
        10,
        0,
    );
    sbcs.push(quick);

    for (i, mut s) in sbcs.into_iter().enumerate() {
        let status = tokio::task::spawn_blocking(move || wait(&mut s, Duration::from_secs(90)))
            .await
            .expect("wait");
        assert!(
            status.success(),
            "SBC {i}: every call ended normally: {status}\n{}\n--- survivor ---\n{}",
            super::support::sipp::sipp_errors(d),
            survivor.log_text()
        );
    }
    for (i, p) in sipps.0.iter_mut().enumerate().skip(1) {
        assert!(
            wait(p, Duration::from_secs(10)).success(),
            "phone {i} saw its every call through\n{}",
            super::support::sipp::sipp_errors(d)
        );
    }

    // One Released for each call, and nothing left of them in Redis.
    let released = || {
        let mut per_call: HashMap<String, usize> = HashMap::new();
        for (_, e) in store.call_events().iter().filter(|(k, _)| k == "Released") {
            *per_call
                .entry(e["callId"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        per_call
    };
    assert!(
        super::support::eventually(Duration::from_secs(10), || released().len()
            == total + after),
        "{} calls released of {}",
        released().len(),
        total + after
    );
    let twice: Vec<_> = released().into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "released twice: {twice:?}");
    let mut conn = store.conn();
    let left: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(store.key("call-nodes"))
        .query(&mut *conn)
        .expect("hgetall");
    assert!(left.is_empty(), "calls left in Redis: {left:?}");
    // Each call of the dead node adopted, once, and counted so.
    let adopted = survivor.log_text().matches("call adopted").count();
    assert_eq!(adopted, carried as usize, "{}", survivor.log_text());
    assert_eq!(
        super::support::metric(survivor, "switchboard_calls_adopted_total"),
        Some(carried)
    );
    assert_eq!(
        super::support::metric(survivor, "switchboard_calls_unrecoverable_total"),
        Some(0.0)
    );

    // Each agent Ready again once its call is over.
    for dn in agents {
        let id = format!("a{dn}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let state = loop {
            let state = desktop
                .get_agent(with_key(DEMO_KEY, agent(&id, "")))
                .await
                .expect("the agent's state")
                .into_inner()
                .state
                .map(|s| s.state)
                .unwrap_or_default();
            if state == "Ready" || std::time::Instant::now() > deadline {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(state, "Ready", "{id}");
    }
}

/// The node running a call is paused (SIGSTOP) until the other node has adopted the call
/// (no message of the call brings it: the sweep does, and the adopter's own probes go on),
/// then resumed (SIGCONT): it finds the call is no longer its own and lets it go, sending
/// nothing on it; a BYE that still reaches it is sent on to the adopter, which ends the call.
#[test]
fn a_node_paused_until_its_call_is_adopted_sends_nothing_on_it_when_it_resumes() {
    let store = Store::db(22);
    let (proxy, nodes) =
        super::proxy::proxy_and_nodes_with(&store, 2, 300, "[calls]\nprobe_secs = 1\n");
    let sbc = Peer::sbc(&proxy);
    let phone = raw_phone(&proxy, "1001");
    let call_id = "paused-call";
    let (_, ok) = answered_call(&proxy, &sbc, &phone, "1001", call_id);
    sbc.send(&routed_in_dialog(&sbc, &ok, call_id, "ACK", 1));
    let (sbc, phone) = (Answering::start(sbc), Answering::start(phone));
    assert!(
        super::support::eventually(Duration::from_secs(5), || nodes
            .iter()
            .any(|n| calls_on(n) == 1.0)),
        "a node runs the call"
    );
    let paused = usize::from(calls_on(&nodes[0]) != 1.0);
    let (stopped, adopter) = (&nodes[paused], &nodes[1 - paused]);
    let stopped_at = format!("{}", stopped.sip);

    super::signal(stopped, "-STOP");
    assert!(
        super::support::eventually(Duration::from_secs(15), || adopter
            .log_text()
            .contains("call adopted")),
        "the other node adopts the call\n{}",
        adopter.log_text()
    );
    let resumed = std::time::Instant::now();
    super::signal(stopped, "-CONT");
    assert!(
        super::support::eventually(Duration::from_secs(10), || stopped
            .log_text()
            .contains("adopted by another node while this one was away")),
        "the resumed node lets the call go\n{}",
        stopped.log_text()
    );
    // Its probes of the call, overdue, were never sent; the adopter's go on.
    assert!(
        super::support::eventually(Duration::from_secs(5), || !phone
            .vias(resumed, Method::Options)
            .is_empty()),
        "the adopter probes the call"
    );
    for peer in [&sbc, &phone] {
        let from_stopped: Vec<String> = peer
            .vias(resumed, Method::Options)
            .into_iter()
            .filter(|vias| vias.contains(&stopped_at))
            .collect();
        assert!(from_stopped.is_empty(), "{from_stopped:?}");
    }

    // The SBC hangs up at the resumed node (its Contact): the BYE goes on to the adopter,
    // which hangs the phone up.
    let sbc = sbc.stop();
    sbc.send(&routed_in_dialog(&sbc, &ok, call_id, "BYE", 2));
    let bye = sbc
        .final_response(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the BYE is answered\n{}", adopter.log_text()));
    assert_eq!(bye.status, 200);
    assert!(
        super::support::eventually(Duration::from_secs(5), || !phone
            .vias(resumed, Method::Bye)
            .is_empty()),
        "the phone is hung up"
    );
    let byes = phone.vias(resumed, Method::Bye);
    assert!(!byes[0].contains(&stopped_at), "{byes:?}");
    phone.stop();
    let released = || -> Vec<String> {
        store
            .call_events()
            .into_iter()
            .filter(|(k, _)| k == "Released")
            .map(|(_, e)| e["cause"].to_string())
            .collect()
    };
    super::support::eventually(Duration::from_secs(5), || !released().is_empty());
    let released = released();
    assert_eq!(released.len(), 1, "{released:?}");
}

/// A rolling restart through a proxy: under a steady load of short calls, each node in turn
/// is stopped with SIGTERM (a drain time of 2 s) and started again on its address. The
/// proxy sends the stopping node no new call; the calls it still has when its drain time is
/// up (long ones, held and resumed later) are handed over to the node that stays, the second
/// time to the node started again. No call fails, and each ends once.
#[test]
fn a_rolling_restart_loses_no_call() {
    let store = Store::db(24);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (proxy, mut nodes) = super::proxy::proxy_and_nodes_with(&store, 2, 300, "drain_secs = 2\n");
    let node_config = format!(
        "{}[cluster]\nproxies = [\"{}\"]\ndrain_secs = 2\n",
        store.config(),
        proxy.sip
    );
    let (short, long) = (60, 6);
    let _phones = Running(vec![phone(
        d,
        &proxy,
        "1001",
        "phone_answer.xml",
        short + long,
        0,
    )]);
    let holding = with_long_pause(d, "sbc_hold.xml", 200);
    let long_calls = sbc(d, &proxy, &holding, ["-s", "1001"], long, 10, 14_000);
    let established = || {
        store
            .call_events()
            .iter()
            .filter(|(k, _)| k == "Established")
            .count()
    };
    assert!(
        super::support::eventually(Duration::from_secs(10), || established() >= long),
        "the long calls are established"
    );
    let short_calls = sbc(
        d,
        &proxy,
        &scenario("sbc_hold.xml"),
        ["-s", "1001"],
        short,
        4,
        0,
    );

    let mut stopped = Vec::new();
    for (i, back) in [(0, 1), (1, 2)] {
        let addr = nodes[i].sip;
        nodes[i].terminate();
        // Started again only once the proxy has seen it go: a node back before the proxy's
        // next probe would never have left its ring.
        assert!(
            super::support::eventually(Duration::from_secs(10), || proxy
                .log_text()
                .lines()
                .any(|l| l.contains("out of the ring") && l.contains(&format!("node={addr}")))),
            "node {i} is out of the ring\n{}",
            proxy.log_text()
        );
        let again = Server::start_on(addr, Some(&node_config), &["--redis", store.url()]);
        stopped.push(std::mem::replace(&mut nodes[i], again));
        assert!(
            super::support::eventually(Duration::from_secs(10), || proxy
                .log_text()
                .matches("back in the ring")
                .count()
                >= back),
            "node {i} is back in the ring\n{}",
            proxy.log_text()
        );
    }

    for (what, mut s) in [("short", short_calls), ("long", long_calls)] {
        let status = wait(&mut s, Duration::from_secs(60));
        assert!(
            status.success(),
            "every {what} call ended normally: {status}\n{}\n--- stopped first ---\n{}",
            super::support::sipp::sipp_errors(d),
            stopped[0].log_text()
        );
    }
    let closing = || -> Vec<(String, String)> {
        store
            .call_events()
            .into_iter()
            .filter(|(k, _)| k == "Released" || k == "Abandoned")
            .map(|(_, e)| {
                (
                    e["callId"].as_str().unwrap_or_default().to_owned(),
                    e["cause"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    // The last call's closing event follows the 200 to its BYE, which SIPp exits on.
    super::support::eventually(Duration::from_secs(5), || closing().len() >= short + long);
    let closing = closing();
    let calls: std::collections::HashSet<&String> = closing.iter().map(|(c, _)| c).collect();
    assert_eq!(
        (closing.len(), calls.len()),
        (short + long, short + long),
        "{closing:?}"
    );
    assert!(
        closing.iter().all(|(_, cause)| cause.ends_with("hangup")),
        "{closing:?}"
    );
    for node in &stopped {
        assert!(
            node.log_text()
                .contains("the calls in progress handed over to the nodes that stay"),
            "{}",
            node.log_text()
        );
    }
}
