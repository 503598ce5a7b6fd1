//! switchboard as a cluster of nodes on one Redis: each tenant's routing runs on one node at
//! a time, its owner, by a lease in Redis; a clean stop hands the tenant over at once, a
//! killed owner's tenant passes to another node once its lease expires.

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::Server;

const DEMO_OWNED: &str = r#"switchboard_tenant_owned{tenant="demo"}"#;

fn owns_demo(server: &Server) -> bool {
    support::metric(server, DEMO_OWNED) == Some(1.0)
}

/// Starts a node on `redis` with `config`, and waits for its first look at the leases.
fn node(redis: &str, config: &str) -> Server {
    let server = Server::start_with_config(Some(config), &["--redis", redis]);
    assert!(
        support::eventually(Duration::from_secs(5), || {
            server
                .log_text()
                .contains("each tenant's routing runs on the node holding its lease")
        }),
        "{}",
        server.log_text()
    );
    server
}

#[test]
fn a_tenant_has_one_owner_which_hands_it_over_when_stopped() {
    let url = support::redis_db(42);
    // Leases far longer than the test waits: a handover can only be the owner's release.
    let config = "[cluster]\nlease_ms = 30000\nlease_claim_ms = 100\n";
    let mut a = node(&url, config);
    assert!(
        support::eventually(Duration::from_secs(5), || owns_demo(&a)),
        "{}",
        a.log_text()
    );
    let b = node(&url, config);
    // b has looked at the lease several times by now, and found it held.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(support::metric(&b, DEMO_OWNED), Some(0.0));
    assert!(owns_demo(&a));

    a.terminate();
    assert!(
        support::eventually(Duration::from_secs(5), || owns_demo(&b)),
        "b did not take the tenant a released:\n{}",
        b.log_text()
    );
    assert!(
        a.log_text().contains("tenant's lease released"),
        "{}",
        a.log_text()
    );
}

#[test]
fn a_killed_owners_tenant_passes_to_another_node_when_its_lease_expires() {
    let url = support::redis_db(43);
    let config = "[cluster]\nlease_ms = 1500\nlease_claim_ms = 100\n";
    let mut a = node(&url, config);
    assert!(support::eventually(Duration::from_secs(5), || owns_demo(
        &a
    )));
    let b = node(&url, config);
    a.kill();
    let killed = Instant::now();
    assert!(
        support::eventually(Duration::from_secs(10), || owns_demo(&b)),
        "{}",
        b.log_text()
    );
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
