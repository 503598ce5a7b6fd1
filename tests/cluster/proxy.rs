//! A proxy in front of a cluster node: the node reaches phones registered at the proxy
//! through it, on the flows they registered from.

use std::time::Duration;

use super::support::sipp::{Running, answering_phone, register, scenario, sipp, wait};
use super::support::store::Store;
use super::support::{Server, free_port};

/// A proxy and one cluster node behind it, on `store`.
fn proxy_and_node(store: &Store) -> (Server, Server) {
    let (proxy, mut nodes) = proxy_and_nodes(store, 1, 200);
    (proxy, nodes.remove(0))
}

/// A proxy (probing every `probe_ms`) and `n` cluster nodes behind it, on `store`.
fn proxy_and_nodes(store: &Store, n: usize, probe_ms: u64) -> (Server, Vec<Server>) {
    proxy_and_nodes_with(store, n, probe_ms, "")
}

/// As [`proxy_and_nodes`], every node's configuration ending with `tenants` (TOML of
/// `[[tenants]]`).
pub(super) fn proxy_and_nodes_with(
    store: &Store,
    n: usize,
    probe_ms: u64,
    tenants: &str,
) -> (Server, Vec<Server>) {
    let addr = || std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy_sip = addr();
    let redis = ["--redis", store.url()];
    let node = format!(
        "{}[cluster]\nproxies = [\"{proxy_sip}\"]\n{tenants}",
        store.config()
    );
    let nodes: Vec<Server> = (0..n)
        .map(|_| Server::start_on(addr(), Some(&node), &redis))
        .collect();
    let listed: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.sip)).collect();
    let proxy = format!(
        "{}[cluster]\nnodes = [{}]\nprobe_ms = {probe_ms}\n{tenants}",
        store.config(),
        listed.join(", ")
    );
    (Server::start_on(proxy_sip, Some(&proxy), &redis), nodes)
}

/// The carrier's SBC placing `count` calls to DN 1001 through `proxy` (sbc_hold.xml: each
/// answered, held, resumed and hung up); how SIPp ended.
fn sbc_holds(dir: &std::path::Path, proxy: &Server, count: usize) -> std::process::ExitStatus {
    sipp(
        dir,
        &[
            "-sf",
            scenario("sbc_hold.xml").to_str().expect("path"),
            "-s",
            "1001",
            "-m",
            &count.to_string(),
            "-r",
            "10",
            "-i",
            "127.0.0.2",
            "-p",
            &free_port().to_string(),
            "-timeout",
            "30s",
            &proxy.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs")
}

/// A node that takes a new call and says nothing (paused with SIGSTOP, still in the ring:
/// its probes are far apart) costs the caller half a second, not the call: the proxy
/// cancels the call there and forwards it to the other node, and sends the next calls
/// straight there.
#[test]
fn a_call_forwarded_to_a_node_that_stays_silent_goes_on_to_the_next() {
    let store = Store::db(59);
    let dir = tempfile::tempdir().expect("temp dir");
    let (proxy, nodes) = proxy_and_nodes(&store, 2, 600_000);
    let phone_port = free_port();
    register(&proxy, dir.path(), "1001", phone_port);
    let mut sipps = Running(Vec::new());
    sipps.0.push(super::support::sipp::serving(
        dir.path(),
        "phone_answer.xml",
        "1001",
        "127.0.0.1",
        phone_port,
    ));
    let paused = std::process::Command::new("kill")
        .args(["-STOP", &nodes[0].pid().to_string()])
        .status()
        .expect("kill");
    assert!(paused.success());
    // Twelve calls: some the ring gives the paused node (all twelve to the other one
    // would be a chance of 1 in 4096).
    let status = sbc_holds(dir.path(), &proxy, 12);
    assert!(
        status.success(),
        "every call answered, held, resumed and hung up: {status}\n{}\n--- node ---\n{}",
        proxy.log_text(),
        nodes[1].log_text()
    );
    assert!(
        proxy
            .log_text()
            .contains("cluster node did not take a new call in time"),
        "{}",
        proxy.log_text()
    );
    // Each call one call: twelve Released, none from the paused node.
    let released = || {
        store
            .call_events()
            .iter()
            .filter(|(k, _)| k == "Released")
            .count()
    };
    assert!(
        super::support::eventually(Duration::from_secs(5), || released() == 12),
        "{} Released",
        released()
    );
}

/// SIPp's phone_answer.xml answers without copying the INVITE's Record-Route into its 200, as
/// some phones do: the node reaches the phone through the proxy on its flow all the same, for
/// the ACK, the hold and resume re-INVITEs and the BYE.
#[test]
fn a_phone_whose_answer_drops_record_route_is_held_resumed_and_hung_up_through_the_proxy() {
    let store = Store::db(57);
    let dir = tempfile::tempdir().expect("temp dir");
    let (proxy, node) = proxy_and_node(&store);
    let phone_port = free_port();
    register(&proxy, dir.path(), "1001", phone_port);
    let mut sipps = Running(Vec::new());
    sipps
        .0
        .push(answering_phone(dir.path(), "1001", "127.0.0.1", phone_port));
    let status = sbc_holds(dir.path(), &proxy, 1);
    assert!(
        status.success(),
        "the SBC's call: answered, held, resumed, hung up: {status}\n{}\n--- proxy ---\n{}",
        node.log_text(),
        proxy.log_text()
    );
    let phone = &mut sipps.0[0];
    assert!(
        wait(phone, Duration::from_secs(5)).success(),
        "the phone saw its call through"
    );
    let kinds: Vec<String> = store.call_events().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("Ringing"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("Released"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "Held"), "{kinds:?}");
}

/// A node that answers a call after the proxy gave up on it (its 2xx comes after the
/// CANCEL, the call having gone on to the other node): the proxy ACKs that answer and hangs
/// it up, and the caller hears only from the other node, so one Call-ID is one call.
#[test]
fn a_late_answer_from_a_node_given_up_on_is_acked_and_hung_up() {
    use super::support::peer::{Peer, sbc_invite, sdp};
    use switchboard_sip::Method;

    let store = Store::db(60);
    // The slow node: a raw peer the proxy counts among its nodes.
    let slow_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let slow_addr = slow_socket.local_addr().expect("addr");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy_sip = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let redis = ["--redis", store.url()];
    let node_config = format!("{}[cluster]\nproxies = [\"{proxy_sip}\"]\n", store.config());
    let node = Server::start_on(addr, Some(&node_config), &redis);
    let proxy_config = format!(
        "{}[cluster]\nnodes = [\"{slow_addr}\", \"{addr}\"]\nprobe_ms = 600000\n",
        store.config()
    );
    let proxy = Server::start_on(proxy_sip, Some(&proxy_config), &redis);
    let slow = Peer::on(slow_socket, &proxy);
    let probe = slow
        .request(Method::Options, Duration::from_secs(5))
        .expect("the proxy probes its nodes");
    slow.answer(&probe, 200, None);

    // Calls (to a number the dial plan does not know: the live node answers 404) until one
    // goes to the slow node first.
    let sbc = Peer::sbc(&proxy);
    // The final response to call `id` (those of the calls before come again: never ACKed).
    let final_for = |id: &str| loop {
        let r = sbc
            .final_response(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("an answer to {id}\n{}", node.log_text()));
        if r.headers.call_id().is_some_and(|c| c == id) {
            break r;
        }
    };
    let mut invite = None;
    for i in 0..40 {
        let call_id = format!("late-{i}");
        sbc.send(&sbc_invite(
            sbc.port(),
            &proxy,
            "1099",
            &call_id,
            &sdp(4000),
        ));
        if let Some(got) = slow.request(Method::Invite, Duration::from_millis(150)) {
            invite = Some((call_id, got));
            break;
        }
        assert_eq!(final_for(&call_id).status, 404, "{}", node.log_text());
    }
    let (call_id, invite) = invite.expect("the ring gives the slow node some calls");
    // The proxy gives up on it: a CANCEL, and the call goes on to the live node.
    let cancel = slow
        .request(Method::Cancel, Duration::from_secs(3))
        .expect("the proxy cancels the call at the slow node");
    slow.answer(&cancel, 200, None);
    // The caller's answer, from the live node.
    assert_eq!(final_for(&call_id).status, 404);
    // The slow node answers the INVITE after all: the proxy ACKs and hangs up that answer.
    slow.answer(&invite, 200, Some(&sdp(6000)));
    let ack = slow
        .request(Method::Ack, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("the late answer is ACKed\n{}", proxy.log_text()));
    assert_eq!(ack.uri.to_string(), format!("sip:peer@{slow_addr}"));
    let bye = slow
        .request(Method::Bye, Duration::from_secs(3))
        .expect("and hung up");
    slow.answer(&bye, 200, None);
    // The caller never hears of that answer (the 404 is all it gets, again until ACKed).
    let end = std::time::Instant::now() + Duration::from_millis(500);
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        match sbc.final_response(left) {
            Some(r) => assert_eq!(r.status, 404, "{r:?}"),
            None => break,
        }
    }
}

/// Requests too large for a datagram (over 1,300 bytes, RFC 3261 18.1.1) cross between the
/// proxy and the node over TCP: the carrier's INVITE to the node, the node's INVITE to the
/// phone through the proxy; the call is answered and hung up from both ends' view.
#[test]
fn large_requests_cross_between_proxy_and_node_over_tcp() {
    use super::support::peer::{Peer, raw_phone, routed_in_dialog, sbc_invite, sdp};
    use switchboard_sip::{HeaderName, Method};

    let store = Store::db(61);
    let (proxy, node) = proxy_and_node(&store);
    let phone = raw_phone(&proxy, "1001");
    let sbc = Peer::sbc(&proxy);
    // An offer of many codecs: some 1,700 bytes of INVITE.
    let mut offer = sdp(4000);
    for pt in 96..126 {
        offer.push_str(&format!(
            "a=rtpmap:{pt} codec-{pt}/48000/2\r\na=fmtp:{pt} x=1\r\n"
        ));
    }
    let invite = sbc_invite(sbc.port(), &proxy, "1001", "large", &offer);
    assert!(invite.len() > 1_600, "{}", invite.len());
    sbc.send(&invite);
    let rung = phone
        .request(Method::Invite, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the phone rings\n{}\n{}", proxy.log_text(), node.log_text()));
    // The proxy's Via on top, the node's below: the node sent it to the proxy over TCP.
    let vias: Vec<String> = rung
        .headers
        .get_all(&HeaderName::Via)
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(vias[0].starts_with("SIP/2.0/UDP"), "{vias:?}");
    assert!(
        vias[1].starts_with("SIP/2.0/TCP") && vias[1].contains(&node.sip.port().to_string()),
        "{vias:?}"
    );
    phone.answer(&rung, 200, Some(&sdp(5000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("answered");
    assert_eq!(ok.status, 200);
    sbc.send(&routed_in_dialog(&sbc, &ok, "large", "ACK", 1));
    // The node's view of the caller's leg: reached over TCP, through the proxy.
    let mut conn = store.conn();
    let mut snapshot = serde_json::Value::Null;
    assert!(super::support::eventually(Duration::from_secs(5), || {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(store.key("call:*"))
            .query(&mut *conn)
            .unwrap_or_default();
        snapshot = keys
            .iter()
            .filter_map(|k| {
                redis::cmd("HGET")
                    .arg(k)
                    .arg("snap")
                    .query::<String>(&mut *conn)
                    .ok()
            })
            .filter_map(|t| serde_json::from_str(&t).ok())
            .find(|s: &serde_json::Value| s["state"] == "Established")
            .unwrap_or_default();
        !snapshot.is_null()
    }));
    assert_eq!(snapshot["legs"][0]["transport"], "tcp", "{snapshot}");
    assert_eq!(
        snapshot["legs"][0]["peer"],
        proxy.sip.to_string(),
        "{snapshot}"
    );
    // The caller hangs up: the phone hears it, through the proxy.
    sbc.send(&routed_in_dialog(&sbc, &ok, "large", "BYE", 2));
    let bye = phone
        .request(Method::Bye, Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "the phone hears the end\n{}\n--- proxy ---\n{}",
                node.log_text(),
                proxy.log_text()
            )
        });
    phone.answer(&bye, 200, None);
    let done = sbc
        .final_response(Duration::from_secs(5))
        .expect("BYE answered");
    assert_eq!(done.status, 200);
}
