//! switchboard as a cluster of nodes on one Redis: each tenant's routing runs on one node at
//! a time, its owner, by a lease in Redis; a clean stop hands the tenant over at once, a
//! killed owner's tenant passes to another node once its lease expires. A call on one node
//! reaches an agent whose desktop and phone went through the other, routed by the owner.

#[path = "../support/mod.rs"]
mod support;

mod adopted;
mod failover;
mod proxy;

use std::time::{Duration, Instant};

use support::sipp::{Running, answering_phone, register, sbc_calls, scenario, serving, wait};
use support::store::Store;
use support::{DEMO_KEY, Server, agent, log_in, with_key};
use switchboard_actors::tenant::{MediaServerConfig, Options, demo_tenant};
use switchboard_proto::voice as pb;

const DEMO_OWNED: &str = r#"switchboard_tenant_owned{tenant="demo"}"#;

fn owns_demo(server: &Server) -> bool {
    support::metric(server, DEMO_OWNED) == Some(1.0)
}

/// Waits until `server` owns the demo tenant, within `within`; its log if it does not.
fn comes_to_own(server: &Server, within: Duration) {
    assert!(
        support::eventually(within, || owns_demo(server)),
        "the node did not come to own the tenant:\n{}",
        server.log_text()
    );
}

/// Agent a1003 on `server`: its phone (SIPp, answering one call) registered there, its
/// desktop logged in through `server`'s gRPC, Ready if `ready`.
async fn agent_1003(
    server: &Server,
    dir: &std::path::Path,
    ready: bool,
) -> (std::process::Child, Desktop) {
    let port = support::free_port();
    register(server, dir, "1003", port);
    let phone = answering_phone(dir, "1003", "127.0.0.1", port);
    let mut desktop = Desktop::new(support::grpc(server).await);
    log_in(&mut desktop, &["1003"], ready).await;
    (phone, desktop)
}

type Desktop = pb::agents_client::AgentsClient<tonic::transport::Channel>;

/// Starts a node on `store` with `config`, and waits for its first look at the leases.
fn node(store: &Store, config: &str) -> Server {
    let config = format!("{}{config}", store.config());
    let server = Server::start_with_config(Some(&config), &["--redis", store.url()]);
    assert!(
        support::eventually(Duration::from_secs(5), || {
            server
                .log_text()
                .contains("each tenant's routing runs on the node holding its lease")
        }),
        "{}",
        server.log_text()
    );
    if store.is_cluster() {
        assert!(
            server
                .log_text()
                .contains("redis connected: a Redis Cluster"),
            "{}",
            server.log_text()
        );
    }
    server
}

/// Two nodes on `store` with `config`: A, which owns the demo tenant, then B.
fn owner_then_other(store: &Store, config: &str) -> (Server, Server) {
    let a = node(store, config);
    comes_to_own(&a, Duration::from_secs(5));
    let b = node(store, config);
    (a, b)
}

/// GVP: SIPp as the media server at `media` (on 127.0.0.3), playing what it is asked to.
fn media_server(dir: &std::path::Path, media: std::net::SocketAddr) -> std::process::Child {
    serving(dir, "media_server.xml", "gvp", "127.0.0.3", media.port())
}

/// The carrier's SBC placing one call from `caller` to the support line on `server`.
fn one_call(dir: &std::path::Path, server: &Server, caller: &str) -> std::process::Child {
    let calls = dir.join("calls.csv");
    std::fs::write(&calls, format!("SEQUENTIAL\n+18005550100;{caller};\n")).expect("calls");
    sbc_calls(dir, server, &scenario("sbc_queue.xml"), &calls, 1, 10.0, 30)
}

/// How SIPp `child` ended, waited for off the runtime (30 s at most).
async fn finished(mut child: std::process::Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || wait(&mut child, Duration::from_secs(30)))
        .await
        .expect("wait")
}

#[test]
fn a_tenant_has_one_owner_which_hands_it_over_when_stopped() {
    let store = Store::db(42);
    // Leases far longer than the test waits: a handover can only be the owner's release.
    let config = "[cluster]\nlease_ms = 30000\nlease_claim_ms = 100\n";
    let mut a = node(&store, config);
    comes_to_own(&a, Duration::from_secs(5));
    let b = node(&store, config);
    // b has looked at the lease several times by now, and found it held.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(support::metric(&b, DEMO_OWNED), Some(0.0));
    assert!(owns_demo(&a));

    a.terminate();
    comes_to_own(&b, Duration::from_secs(5));
    assert!(
        a.log_text().contains("tenant's lease released"),
        "{}",
        a.log_text()
    );
}

#[test]
fn a_killed_owners_tenant_passes_to_another_node_when_its_lease_expires() {
    let store = Store::db(43);
    let config = "[cluster]\nlease_ms = 1500\nlease_claim_ms = 100\n";
    let (mut a, b) = owner_then_other(&store, config);
    a.kill();
    let killed = Instant::now();
    comes_to_own(&b, Duration::from_secs(10));
    // Not before the lease could expire: a's last renewal was at most one look before.
    assert!(
        killed.elapsed() >= Duration::from_millis(1300),
        "{:?}",
        killed.elapsed()
    );
    assert!(
        b.log_text()
            .contains("this node owns the tenant's routing now")
    );
}

/// The takeover as an operator meets it, on default lease settings: an agent Ready through
/// node B, the owner A killed with SIGKILL, and a call landing on B at that moment. The call
/// waits for an owner; B takes the tenant over when A's lease expires and rings the agent.
/// Reports the time from the kill to the agent's phone ringing (the takeover figure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_placed_as_the_owner_is_killed_rings_an_agent_once_another_node_takes_over() {
    let store = Store::db(49);
    let dir = tempfile::tempdir().expect("temp dir");
    let media = std::net::SocketAddr::from(([127, 0, 0, 3], support::free_port()));
    let config = demo_with_media(media, "");
    let (mut a, b) = owner_then_other(&store, &config);
    let mut sipps = Running(Vec::new());
    sipps.0.push(media_server(dir.path(), media));
    let (phone, _desktop) = agent_1003(&b, dir.path(), true).await;
    sipps.0.push(phone);

    a.kill();
    let killed = switchboard_actors::unix_ms();
    let sbc = one_call(dir.path(), &b, "+15551230000");
    let status = finished(sbc).await;
    assert!(status.success(), "the call: {status}\n{}", b.log_text());
    assert!(owns_demo(&b));
    let mut rang = None;
    assert!(
        support::eventually(Duration::from_secs(5), || {
            rang = store_stamp(&store, "Ringing");
            rang.is_some()
        }),
        "the agent's phone rang\n{}",
        b.log_text()
    );
    let rang = rang.unwrap_or_default();
    eprintln!(
        "takeover on default settings: kill -9 of the owner to the agent's phone ringing {} ms",
        rang.saturating_sub(killed)
    );
}

/// When the first event of `kind` on the demo's call stream happened (its `at`, ms).
fn store_stamp(store: &Store, kind: &str) -> Option<u64> {
    let mut conn = store.conn();
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(store.key("voice-callthread"))
        .arg("-")
        .arg("+")
        .query(&mut *conn)
        .expect("xrange");
    entries
        .into_iter()
        .find(|(_, f)| f.get("kind").is_some_and(|k| k == kind))
        .and_then(|(_, f)| f.get("at")?.parse().ok())
}

/// A node's configuration: the demo tenant with its media server at `media`, and `cluster`.
fn demo_with_media(media: std::net::SocketAddr, cluster: &str) -> String {
    demo_with(media, None, cluster)
}

/// As [`demo_with_media`], the carrier's gateway (where customers are called) at `gateway`.
fn demo_with(
    media: std::net::SocketAddr,
    gateway: Option<std::net::SocketAddr>,
    cluster: &str,
) -> String {
    let mut demo = demo_tenant();
    demo.media_servers = vec![MediaServerConfig {
        name: "ms0".into(),
        address: media.to_string(),
        options: Options::new(),
    }];
    if let Some(gateway) = gateway {
        demo.trunks[0].gateway = Some(gateway.to_string());
    }
    let tenants = support::tenants_toml(&[&demo]);
    format!("{cluster}\n{tenants}")
}

/// The routing brain runs on node A; the agent's phone registers with node B, its desktop
/// logs in and goes Ready through B's gRPC, and the carrier's call lands on B: B's call asks
/// A's routing over Redis, plays A's music, and rings the agent A reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_one_node_reaches_an_agent_through_the_owner_on_another() {
    let store = Store::db(44);
    let dir = tempfile::tempdir().expect("temp dir");
    let media = std::net::SocketAddr::from(([127, 0, 0, 3], support::free_port()));
    let config = demo_with_media(media, "[cluster]\nlease_ms = 3000\nlease_claim_ms = 100\n");
    let (a, b) = owner_then_other(&store, &config);
    assert_eq!(support::metric(&b, DEMO_OWNED), Some(0.0));

    let mut sipps = Running(Vec::new());
    sipps.0.push(media_server(dir.path(), media));
    let (mut phone, mut desktop) = agent_1003(&b, dir.path(), true).await;
    // B answers for the agent as A holds it.
    let state = desktop
        .get_agent(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("the agent, through B")
        .into_inner();
    assert_eq!(
        state.state.as_ref().map(|s| s.state.as_str()),
        Some("Ready"),
        "{state:?}"
    );

    let sbc = one_call(dir.path(), &b, "+15551230000");
    let status = finished(sbc).await;
    assert!(
        status.success(),
        "the SBC's call through B: {status}\n{}\n--- A ---\n{}",
        b.log_text(),
        a.log_text()
    );
    assert!(wait(&mut phone, Duration::from_secs(5)).success());
    // The call's events, from B's call and A's routing, on the tenant's one stream.
    let mut kinds = Vec::new();
    assert!(support::eventually(Duration::from_secs(5), || {
        kinds = store.call_events().into_iter().map(|(k, _)| k).collect();
        kinds.last().map(String::as_str) == Some("Released")
    }));
    // B's call and desktop went to A over the bus, and A's orders came back to B's call.
    let bus = |server: &Server, what: &str| {
        support::metric(server, &format!("switchboard_bus_{what}_total")).unwrap_or(0.0)
    };
    assert!(bus(&b, "to_owner") >= 5.0, "{}", b.log_text());
    assert!(bus(&a, "as_owner") >= 5.0, "{}", a.log_text());
    assert!(bus(&b, "orders") >= 3.0, "{}", b.log_text());
    assert_eq!(bus(&a, "to_owner"), 0.0);
    // The music plays if it answers before the agent's phone rings (the agent is Ready
    // before the call comes).
    kinds.retain(|k| !k.starts_with("Treatment"));
    assert_eq!(
        kinds,
        [
            "RouteRequest",
            "AttachedDataChanged",
            "Queued",
            "Ringing",
            "RouteUsed",
            "Established",
            "Released"
        ]
    );
}

/// A GES callback's status from a node's callbacks API: the HTTP status and the JSON body.
fn callback(server: &Server, method: &str, id: &str) -> (u16, serde_json::Value) {
    let auth = format!("Authorization: Bearer {DEMO_KEY}\r\n");
    let text = support::http_request(server.callbacks, method, &format!("/callbacks/{id}"), &auth)
        .expect("the callbacks API answers");
    let status = text[9..12].parse().expect("status");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// Appends GES's request for callback `id` to the tenant's stream.
fn ges_request(store: &Store, id: &str) {
    let _: String = redis::cmd("XADD")
        .arg(store.key("ges-callbacks"))
        .arg("*")
        .arg(&[
            ("id", id),
            ("customer", "915551230000"),
            ("queue", "support"),
            ("target", "english >= 3"),
            ("priority", "5"),
        ])
        .query(&mut *store.conn())
        .expect("xadd");
}

/// The owner dies (SIGKILL) while three calls wait in its tenant's queue on the other node,
/// and a GES callback behind them: that node takes the tenant over, resumes the calls'
/// routing sessions and the callback, and serves them in their order as agents become Ready
/// through it (the first agent Ready takes the oldest); nothing is lost. Before, either node's
/// callbacks API answers for the callbacks alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_on_a_surviving_node_are_served_in_order_after_the_owner_is_killed() {
    owner_killed_while_calls_wait(Store::db(45)).await;
}

/// The same on a three-master Redis Cluster, the nodes' keys under a prefix of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_calls_waiting_are_served_in_order_after_the_owner_is_killed() {
    owner_killed_while_calls_wait(Store::cluster("killed")).await;
}

async fn owner_killed_while_calls_wait(store: Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let media = std::net::SocketAddr::from(([127, 0, 0, 3], support::free_port()));
    let gateway = std::net::SocketAddr::from(([127, 0, 0, 2], support::free_port()));
    let config = demo_with(
        media,
        Some(gateway),
        "[cluster]\nlease_ms = 1500\nlease_claim_ms = 100\n",
    );
    let (mut a, b) = owner_then_other(&store, &config);

    let mut sipps = Running(Vec::new());
    sipps.0.push(media_server(dir.path(), media));
    // The customer, reached through the carrier's gateway.
    sipps.0.push(answering_phone(
        dir.path(),
        "customer",
        "127.0.0.2",
        gateway.port(),
    ));
    let phones = support::free_port();
    let dns = ["1003", "1005", "1007", "1009"];
    for dn in dns {
        register(&b, dir.path(), dn, phones);
    }
    sipps.0.push(serving(
        dir.path(),
        "phone_answer.xml",
        "agent",
        "127.0.0.1",
        phones,
    ));
    let mut desktop = pb::agents_client::AgentsClient::new(support::grpc(&b).await);
    log_in(&mut desktop, &dns, false).await;

    // Three callers, a second apart, all waiting on B's music in A's queue.
    let calls = dir.path().join("calls.csv");
    let callers = ["+15550000001", "+15550000002", "+15550000003"];
    let lines: String = callers
        .iter()
        .map(|c| format!("+18005550100;{c};\n"))
        .collect();
    std::fs::write(&calls, format!("SEQUENTIAL\n{lines}")).expect("calls");
    let mut sbc = sbc_calls(
        dir.path(),
        &b,
        &scenario("sbc_queue.xml"),
        &calls,
        3,
        1.0,
        60,
    );
    assert!(
        support::eventually(Duration::from_secs(15), || {
            store
                .call_events()
                .iter()
                .filter(|(k, _)| k == "Queued")
                .count()
                == 3
        }),
        "{}",
        b.log_text()
    );

    // A callback behind the calls, and one cancelled through B: both nodes answer alike.
    ges_request(&store, "cb-1");
    ges_request(&store, "cb-2");
    assert!(support::eventually(Duration::from_secs(10), || {
        callback(&b, "GET", "cb-2").1["state"] == "queued"
    }));
    let (code, cancelled) = callback(&b, "DELETE", "cb-2");
    assert_eq!(
        (code, cancelled["state"].as_str()),
        (200, Some("cancelled"))
    );
    for node in [&a, &b] {
        let (code, waiting) = callback(node, "GET", "cb-1");
        assert_eq!(code, 200, "{waiting}");
        assert_eq!(
            (waiting["state"].as_str(), waiting["position"].as_u64()),
            (Some("queued"), Some(4)),
            "{waiting}"
        );
        assert_eq!(callback(node, "GET", "cb-2").1["state"], "cancelled");
    }

    a.kill();
    comes_to_own(&b, Duration::from_secs(10));
    // The callback kept its place behind the calls.
    assert!(
        support::eventually(Duration::from_secs(5), || {
            callback(&b, "GET", "cb-1").1["position"] == 4
        }),
        "{:?}\n{}",
        callback(&b, "GET", "cb-1"),
        b.log_text()
    );
    for dn in dns {
        desktop
            .ready(with_key(DEMO_KEY, agent(&format!("a{dn}"), "")))
            .await
            .expect("ready, through the new owner");
    }
    let status = tokio::task::spawn_blocking(move || wait(&mut sbc, Duration::from_secs(40)))
        .await
        .expect("wait");
    assert!(
        status.success(),
        "every caller served: {status}\n{}",
        b.log_text()
    );

    // Served in the order they queued, each by an agent of its own.
    let events = store.call_events();
    let queued: Vec<String> = events
        .iter()
        .filter(|(k, _)| k == "Queued")
        .map(|(_, p)| p["callId"].as_str().unwrap_or_default().to_owned())
        .collect();
    let routed: Vec<(String, String)> = events
        .iter()
        .filter(|(k, _)| k == "RouteUsed")
        .map(|(_, p)| {
            let dn = support::parties(p)
                .into_iter()
                .find(|(role, _)| *role == "destination")
                .map(|(_, dn)| dn.to_owned())
                .unwrap_or_default();
            (p["callId"].as_str().unwrap_or_default().to_owned(), dn)
        })
        .collect();
    // The agents went Ready one after the other: each took the oldest call left.
    let took: std::collections::BTreeMap<&String, &String> =
        routed.iter().map(|(call, dn)| (call, dn)).collect();
    let in_order: Vec<&str> = queued.iter().map(|c| took[c].as_str()).collect();
    assert_eq!(in_order, dns[..3], "{events:#?}");
    // The fourth agent took the callback: its phone, then the customer.
    let dialed = support::eventually(Duration::from_secs(10), || {
        let (_, status) = callback(&b, "GET", "cb-1");
        status["state"] == "dialing" && status["agent"] == "a1009" && !status["callId"].is_null()
    });
    assert!(
        dialed,
        "{:?}\n{}",
        callback(&b, "GET", "cb-1"),
        b.log_text()
    );
    assert!(
        b.log_text().contains("routing sessions resumed"),
        "{}",
        b.log_text()
    );
}

/// A node alone, restarted (SIGKILL, then started again) while two GES callbacks wait: the
/// new run takes the tenant over once the old lease expires, and the callbacks wait again in
/// their places; the first is dialed as soon as an agent is Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_restarted_dials_the_callbacks_that_waited_in_their_places() {
    let store = Store::db(46);
    let dir = tempfile::tempdir().expect("temp dir");
    let media = std::net::SocketAddr::from(([127, 0, 0, 3], support::free_port()));
    let gateway = std::net::SocketAddr::from(([127, 0, 0, 2], support::free_port()));
    let config = demo_with(
        media,
        Some(gateway),
        "[cluster]\nlease_ms = 1500\nlease_claim_ms = 100\n",
    );
    let server = node(&store, &config);
    let mut sipps = Running(Vec::new());
    sipps.0.push(answering_phone(
        dir.path(),
        "customer",
        "127.0.0.2",
        gateway.port(),
    ));
    let (phone, _desktop) = agent_1003(&server, dir.path(), false).await;
    sipps.0.push(phone);
    for id in ["cb-1", "cb-2"] {
        ges_request(&store, id);
    }
    assert!(support::eventually(Duration::from_secs(10), || {
        callback(&server, "GET", "cb-2").1["position"] == 2
    }));

    let server = server.restart(
        Some(&format!("{}{config}", store.config())),
        &["--redis", store.url()],
    );
    comes_to_own(&server, Duration::from_secs(10));
    for (id, place) in [("cb-1", 1), ("cb-2", 2)] {
        let (code, status) = callback(&server, "GET", id);
        assert_eq!(code, 200, "{status}\n{}", server.log_text());
        assert_eq!(
            (status["state"].as_str(), status["position"].as_u64()),
            (Some("queued"), Some(place)),
            "{status}"
        );
    }
    let mut desktop = pb::agents_client::AgentsClient::new(support::grpc(&server).await);
    desktop
        .ready(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("ready after the restart");
    assert!(
        support::eventually(Duration::from_secs(10), || {
            callback(&server, "GET", "cb-1").1["state"] == "dialing"
        }),
        "{:?}\n{}",
        callback(&server, "GET", "cb-1"),
        server.log_text()
    );
    assert_eq!(callback(&server, "GET", "cb-2").1["position"], 1);
}

/// Sends `signal` (`-STOP`, `-CONT`) to the node's process.
fn signal(server: &Server, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {signal}");
}

/// The owner is paused (SIGSTOP) past its lease: the other node takes the tenant over and
/// routes a call to the Ready agent; resumed (SIGCONT), the old owner finds its lease gone
/// before it acts on it, stops owning, and whatever it sent under its old fencing number is
/// refused: the agent is reserved once, and each call routed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_stops_owning_and_no_agent_is_reserved_twice() {
    let store = Store::db(47);
    let dir = tempfile::tempdir().expect("temp dir");
    let media = std::net::SocketAddr::from(([127, 0, 0, 3], support::free_port()));
    let config = demo_with_media(media, "[cluster]\nlease_ms = 1500\nlease_claim_ms = 100\n");
    let (a, b) = owner_then_other(&store, &config);
    let mut sipps = Running(Vec::new());
    sipps.0.push(media_server(dir.path(), media));
    // The agent's phone answers one call: a second would find nobody.
    let (mut phone, _desktop) = agent_1003(&b, dir.path(), true).await;

    signal(&a, "-STOP");
    let paused = Instant::now();
    comes_to_own(&b, Duration::from_secs(10));
    assert!(paused.elapsed() >= Duration::from_millis(1300));

    let sbc = one_call(dir.path(), &b, "+15550000001");
    let mut conn = store.conn();
    assert!(
        support::eventually(Duration::from_secs(10), || {
            store.call_events().iter().any(|(k, _)| k == "Ringing")
        }),
        "{}",
        b.log_text()
    );
    signal(&a, "-CONT");
    assert!(
        support::eventually(Duration::from_secs(5), || {
            support::metric(&a, DEMO_OWNED) == Some(0.0)
        }),
        "{}",
        a.log_text()
    );
    assert!(
        a.log_text().contains("lease ran out before it was renewed")
            || a.log_text().contains("taken by another node"),
        "{}",
        a.log_text()
    );
    assert!(owns_demo(&b));
    let status = finished(sbc).await;
    assert!(status.success(), "{status}\n{}", b.log_text());
    assert!(wait(&mut phone, Duration::from_secs(10)).success());
    let kinds: Vec<String> = store
        .call_events()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| ["Ringing", "RouteUsed", "Released"].contains(&k.as_str()))
        .collect();
    assert_eq!(kinds, ["Ringing", "RouteUsed", "Released"]);
    // The agents' hash was last written by B, under its fencing number: the agent is on
    // its one call's wrap-up or Ready again, never reserved by A.
    let stored: String = redis::cmd("HGET")
        .arg(store.key("agents"))
        .arg("a1003")
        .query(&mut *conn)
        .expect("hget");
    assert!(stored.contains("\"mode\":\"Ready\""), "{stored}");
}

/// A desktop reaches any node: the call runs on node A (the carrier called A), the agent's
/// desktop logs in, lists its calls and holds the call through node B; then it follows the
/// tenant's events on A from the cursor it had on B, without a gap or a repeat, and retrieves
/// and releases the call through A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_on_either_node_lists_holds_and_follows_a_call_running_on_the_other() {
    use support::desktop::{answer_byes, answer_invites, call_of, follow, kinds, take};
    use support::peer::{Peer, sbc_in_dialog, sbc_invite, sdp};

    let store = Store::db(48);
    let dir = tempfile::tempdir().expect("temp dir");
    // Leases far longer than the test: B never adopts A's calls here, even when a loaded
    // machine holds A's renewals back past a short lease (it did, once, at 3 s, and B then
    // answered for the call A was about to lose).
    let config = "[cluster]\nlease_ms = 30000\nlease_claim_ms = 100\n";
    let (a, b) = owner_then_other(&store, config);
    let port = support::free_port();
    register(&a, dir.path(), "1011", port);
    let sipps = Running(vec![serving(
        dir.path(),
        "phone_answer.xml",
        "1011",
        "127.0.0.1",
        port,
    )]);
    let b_channel = support::grpc(&b).await;
    let mut b_agents = pb::agents_client::AgentsClient::new(b_channel.clone());
    let mut b_calls = pb::calls_client::CallsClient::new(b_channel.clone());
    log_in(&mut b_agents, &["1011"], true).await;
    let mut on_b = follow(b_channel.clone(), DEMO_KEY, "a1011", "").await;

    let sbc = Peer::sbc(&a);
    sbc.send(&sbc_invite(sbc.port(), &a, "1011", "cross-1", &sdp(4000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("SIPp answers");
    assert_eq!(ok.status, 200);
    sbc.send(&sbc_in_dialog(&sbc, &a, &ok, "cross-1", "ACK", 1, ""));
    let answered = take(&mut on_b, 3).await;
    assert_eq!(
        kinds(&answered),
        ["dn OffHook", "call Ringing", "call Established"]
    );
    let call = call_of(&answered[1]).call_id.clone();

    // B lists the call A runs, with what may be asked of it, and holds it.
    let listed = b_calls
        .list_calls(with_key(DEMO_KEY, agent("a1011", "")))
        .await
        .expect("list through B")
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].call_id.as_str(), listed[0].state.as_str()),
        (call.as_str(), "Established")
    );
    assert!(listed[0].capabilities.iter().any(|c| c == "hold"));
    let on = || pb::CallRequest {
        agent_id: "a1011".into(),
        call_id: call.clone(),
        ..Default::default()
    };
    b_calls
        .hold(with_key(DEMO_KEY, on()))
        .await
        .expect("hold through B");
    answer_invites(&sbc, 1, 4000);
    let held = take(&mut on_b, 1).await;
    assert_eq!(kinds(&held), ["call Held"]);

    // The desktop moves to A with the cursor it had: the next event is the next one.
    let a_channel = support::grpc(&a).await;
    let mut on_a = follow(a_channel.clone(), DEMO_KEY, "a1011", &held[0].2).await;
    let mut a_calls = pb::calls_client::CallsClient::new(a_channel);
    a_calls
        .retrieve(with_key(DEMO_KEY, on()))
        .await
        .expect("retrieve through A");
    answer_invites(&sbc, 1, 4000);
    assert_eq!(kinds(&take(&mut on_a, 1).await), ["call Retrieved"]);
    b_calls
        .release(with_key(DEMO_KEY, on()))
        .await
        .expect("release through B");
    answer_byes(&sbc, 1);
    assert_eq!(
        kinds(&take(&mut on_a, 2).await),
        ["dn OnHook", "call Released"]
    );
    // A call no node runs any more: not found, through either node.
    let gone = b_calls.hold(with_key(DEMO_KEY, on())).await;
    assert_eq!(
        gone.expect_err("the call is over").code(),
        tonic::Code::NotFound
    );

    // A call whose node dies: a request for it through B is unavailable, not a hang.
    sbc.send(&sbc_invite(sbc.port(), &a, "1011", "cross-2", &sdp(4000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("SIPp answers");
    sbc.send(&sbc_in_dialog(&sbc, &a, &ok, "cross-2", "ACK", 1, ""));
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = b_calls
            .list_calls(with_key(DEMO_KEY, agent("a1011", "")))
            .await
            .expect("list through B")
            .into_inner()
            .calls;
        if listed.iter().any(|c| c.state == "Established") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed.len(), 1, "{listed:?}");
    let call = listed[0].call_id.clone();
    let mut a = a;
    a.kill();
    // The phone goes too (killed: a Child dropped would run on after the test).
    drop(sipps);
    let asked = std::time::Instant::now();
    let lost = b_calls
        .hold(with_key(
            DEMO_KEY,
            pb::CallRequest {
                agent_id: "a1011".into(),
                call_id: call,
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(
        lost.expect_err("its node is gone").code(),
        tonic::Code::Unavailable
    );
    assert!(asked.elapsed() < Duration::from_secs(10));
}
