//! Tenant leases against a real Redis: one owner at a time; a dead owner's lease is taken by
//! another node once Redis expires it, with a higher fencing number; a clean stop hands over
//! at once; a stale fencing number is refused by every fenced write; a node that loses Redis
//! stops owning before its lease could have passed to another.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::redis_db;
use switchboard_actors::keys::Keys;
use switchboard_actors::lease::{
    FENCE_CHECK, Fence, LeaseConfig, Leases, Owned, Stop, hold_leases,
};
use switchboard_actors::redis_conn::Redis;
use tokio::sync::{mpsc, oneshot, watch};

const TENANTS: [&str; 2] = ["demo", "acme"];

async fn leases(url: &str, node: &str) -> Leases {
    let (_, conn) = Redis::connect(url).await.expect("redis reachable");
    Leases::new(conn, Keys::default(), node)
}

/// A node holding leases in the background.
struct Node {
    name: &'static str,
    owned: watch::Receiver<Owned>,
    stop: mpsc::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(url: &str, name: &'static str, config: LeaseConfig) -> Self {
        let leases = leases(url, name).await;
        let tenants = watch::channel(TENANTS.map(String::from).to_vec()).1;
        let (owned_tx, owned) = watch::channel(Owned::default());
        let (stop, stop_rx) = mpsc::channel(1);
        let task = tokio::spawn(hold_leases(leases, tenants, config, owned_tx, stop_rx));
        Self {
            name,
            owned,
            stop,
            task,
        }
    }

    fn owns(&self, tenant: &str) -> Option<Fence> {
        self.owned.borrow().get(tenant).copied()
    }

    /// Waits for what this node owns to satisfy `test`; panics after `within`.
    async fn until(&mut self, within: Duration, test: impl Fn(&Owned) -> bool) -> Owned {
        let seen = tokio::time::timeout(within, self.owned.wait_for(|o| test(o)))
            .await
            .map(|r| r.map(|o| o.clone()));
        match seen {
            Ok(owned) => owned.expect("lease task alive"),
            Err(_) => panic!(
                "{} never got there: owns {:?}",
                self.name,
                *self.owned.borrow()
            ),
        }
    }

    async fn stop_cleanly(&self) {
        let (done, answered) = oneshot::channel();
        self.stop.send(Stop(done)).await.expect("lease task alive");
        answered.await.expect("released");
    }
}

fn quick() -> LeaseConfig {
    LeaseConfig {
        ttl: Duration::from_millis(900),
        claim_every: Duration::from_millis(100),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_one_owner_and_another_takes_over_when_it_dies() {
    let url = redis_db(50);
    let mut a = Node::start(&url, "node-a", quick()).await;
    a.until(Duration::from_secs(5), |o| o.len() == TENANTS.len())
        .await;
    let mut b = Node::start(&url, "node-b", quick()).await;
    // b looks several times and finds every lease taken.
    tokio::time::sleep(quick().claim_every * 5).await;
    assert!(b.owned.borrow().is_empty(), "{:?}", *b.owned.borrow());
    let before = a.owns("demo").expect("a owns demo");

    // a dies without a word (no release): b takes both once Redis has expired them.
    a.task.abort();
    let taken = b.until(quick().ttl * 4, |o| o.len() == TENANTS.len()).await;
    assert!(taken["demo"] > before, "{taken:?} after fence {before}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_hands_the_tenants_over_at_once() {
    let url = redis_db(51);
    // Leases that would take half a minute to expire.
    let slow = LeaseConfig {
        ttl: Duration::from_secs(30),
        claim_every: Duration::from_millis(100),
    };
    let mut a = Node::start(&url, "node-a", slow).await;
    a.until(Duration::from_secs(5), |o| o.len() == TENANTS.len())
        .await;
    let mut b = Node::start(&url, "node-b", slow).await;
    a.stop_cleanly().await;
    assert!(a.owned.borrow().is_empty());
    b.until(Duration::from_secs(5), |o| o.len() == TENANTS.len())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_fencing_number_is_refused() {
    let url = redis_db(52);
    let ttl = Duration::from_secs(30);
    let a = leases(&url, "node-a").await;
    let b = leases(&url, "node-b").await;
    let first = a.claim("demo", ttl).await.expect("claim");
    assert_eq!(first.node, "node-a");
    assert_eq!(
        b.claim("demo", ttl).await.expect("claim"),
        first,
        "held by a"
    );

    // a's lease expires (as when a is paused past it); b takes the tenant.
    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_connection()
        .expect("redis");
    redis::cmd("DEL")
        .arg(a.key("demo"))
        .query::<()>(&mut conn)
        .expect("del");
    let second = b.claim("demo", ttl).await.expect("claim");
    assert_eq!(second.node, "node-b");
    assert!(second.fence > first.fence);

    // a, waking with its old number, can neither renew, release nor write as the owner.
    assert!(!a.renew("demo", first.fence, ttl).await.expect("renew"));
    assert!(!a.release("demo", first.fence).await.expect("release"));
    assert_eq!(
        a.holder("demo").await.expect("holder"),
        Some(second.clone())
    );
    let write = redis::Script::new(&format!(
        "{FENCE_CHECK}\nreturn redis.call('INCR', KEYS[2])"
    ));
    let counter = "sb:{demo}:test-counter";
    let mut aconn =
        redis::aio::ConnectionManager::new(redis::Client::open(url.as_str()).expect("url"))
            .await
            .expect("redis");
    let refused: redis::RedisResult<u64> = write
        .key(a.key("demo"))
        .key(counter)
        .arg(a.token(first.fence))
        .invoke_async(&mut aconn)
        .await;
    let e = refused.expect_err("a's write is fenced off");
    assert_eq!(e.code(), Some("FENCED"), "{e}");
    let written: u64 = write
        .key(b.key("demo"))
        .key(counter)
        .arg(b.token(second.fence))
        .invoke_async(&mut aconn)
        .await
        .expect("b's write goes through");
    assert_eq!(written, 1);
}

/// A Redis of the test's own, which it can pause.
struct PrivateRedis {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}");
        // Owned at once, so that it is stopped however this ends.
        let redis = Self {
            child,
            url,
            _dir: dir,
        };
        let client = redis::Client::open(redis.url.as_str()).expect("url");
        for _ in 0..100 {
            if let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {signal}");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_redis_stops_owning_before_its_lease_could_pass() {
    let redis = PrivateRedis::start();
    let config = LeaseConfig {
        ttl: Duration::from_secs(3),
        claim_every: Duration::from_millis(100),
    };
    let mut a = Node::start(&redis.url, "node-a", config).await;
    a.until(Duration::from_secs(5), |o| o.len() == TENANTS.len())
        .await;
    redis.signal("-STOP");
    let paused = tokio::time::Instant::now();
    a.until(config.ttl * 2, |o| o.is_empty()).await;
    // It stopped owning well before its lease could have expired in Redis and gone to
    // another node.
    assert!(paused.elapsed() < config.ttl, "{:?}", paused.elapsed());
    redis.signal("-CONT");
    a.until(Duration::from_secs(10), |o| o.len() == TENANTS.len())
        .await;
}
