//! A proxy in front of a cluster node: the node reaches phones registered at the proxy
//! through it, on the flows they registered from.

use std::time::Duration;

use super::support::sipp::{Running, answering_phone, register, scenario, sipp, wait};
use super::support::store::Store;
use super::support::{Server, free_port};

/// A proxy and one cluster node behind it, on `store`.
fn proxy_and_node(store: &Store) -> (Server, Server) {
    let addr = || std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (proxy_sip, node_sip) = (addr(), addr());
    let redis = ["--redis", store.url()];
    let node = format!("{}[cluster]\nproxies = [\"{proxy_sip}\"]\n", store.config());
    let node = Server::start_on(node_sip, Some(&node), &redis);
    let proxy = format!(
        "{}[cluster]\nnodes = [\"{node_sip}\"]\nprobe_ms = 200\n",
        store.config()
    );
    (Server::start_on(proxy_sip, Some(&proxy), &redis), node)
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
    let status = sipp(
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
            &proxy.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs");
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
