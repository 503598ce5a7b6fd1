//! The bus between nodes against a real Redis: owner-bound messages reach the tenant's owner
//! (asks get their answers back), the owner's orders reach the node they are for; an owner
//! that dies leaves what it had not finished to the next, in order; entries that can never be
//! handled go to the dead letters; orders with a stale fencing number and messages from a
//! node that is not running are refused.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use support::{connection, redis_db};
use switchboard_actors::bus::wire::{self, Body, Letter};
use switchboard_actors::bus::{Bus, BusConfig, Handler};
use switchboard_actors::keys::Keys;
use switchboard_actors::lease::{Fence, Holding, LeaseConfig, Leases};
use switchboard_actors::messages::agent_state::Status;
use switchboard_actors::messages::bus::{
    Answer, BusFuture, NodeBound, OwnerBound, ToNode, ToOwner,
};
use switchboard_actors::messages::ors::Order;
use switchboard_actors::messages::sip_cluster::{CallView, Control, ControlError};
use switchboard_actors::redis_conn::Redis;
use switchboard_routing::strategy::Route;
use tokio::sync::watch;

const LEASE: LeaseConfig = LeaseConfig {
    ttl: Duration::from_millis(900),
    claim_every: Duration::from_millis(100),
};

/// What a node's systems were handed.
#[derive(Default)]
struct Seen {
    gained: Vec<(String, Fence)>,
    lost: Vec<String>,
    owner: Vec<(String, OwnerBound)>,
    node: Vec<NodeBound>,
}

/// A node's systems, recording what the bus hands them; a registration of DN `hang` never
/// finishes when `hangs` (the node dies with it in hand).
struct Recorder {
    seen: Mutex<Seen>,
    changed: watch::Sender<u64>,
    hangs: bool,
}

impl Recorder {
    fn new(hangs: bool) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::default(),
            changed: watch::channel(0).0,
            hangs,
        })
    }

    fn note(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().expect("lock"));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Waits until what was seen satisfies `test`.
    async fn until(&self, what: &str, test: impl Fn(&Seen) -> bool) {
        let mut changed = self.changed.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if test(&self.seen.lock().expect("lock")) {
                    return;
                }
                changed.changed().await.expect("recorder alive");
            }
        })
        .await;
        assert!(waited.is_ok(), "never saw {what}");
    }

    fn owner_messages(&self) -> Vec<(String, OwnerBound)> {
        self.seen.lock().expect("lock").owner.clone()
    }
}

impl Handler for Recorder {
    fn gained<'a>(&'a self, tenant: &'a str, fence: Fence) -> BusFuture<'a, ()> {
        self.note(|s| s.gained.push((tenant.to_owned(), fence)));
        Box::pin(async {})
    }

    fn lost(&self, tenant: &str) {
        self.note(|s| s.lost.push(tenant.to_owned()));
    }

    fn owner<'a>(
        &'a self,
        _tenant: &'a str,
        from: &'a str,
        message: OwnerBound,
    ) -> BusFuture<'a, Option<Answer>> {
        Box::pin(async move {
            if self.hangs && matches!(&message, OwnerBound::Registration { dn, .. } if dn == "hang")
            {
                std::future::pending::<()>().await;
            }
            let answer = match &message {
                OwnerBound::Status { agent } => Some(Answer::Status(Ok(Status {
                    state: switchboard_proto::events::AgentState {
                        agent_id: agent.clone(),
                        state: "Ready".into(),
                        ..Default::default()
                    },
                    available: true,
                }))),
                OwnerBound::CallChanged { .. } => Some(Answer::Done),
                _ => None,
            };
            self.note(|s| s.owner.push((from.to_owned(), message)));
            answer
        })
    }

    fn order(&self, _tenant: &str, call: String, order: Order) {
        self.note(|s| s.node.push(NodeBound::Order { call, order }));
    }

    fn control<'a>(
        &'a self,
        _tenant: &'a str,
        call: String,
        _dn: String,
        _control: Control,
    ) -> BusFuture<'a, Result<CallView, ControlError>> {
        Box::pin(async move { Err(ControlError::NotFound(call)) })
    }
}

/// A node: its leases of tenant `demo` and its end of the bus.
struct Node {
    bus: Bus,
    leases: Option<Holding>,
    systems: Arc<Recorder>,
}

impl Node {
    async fn start(url: &str, name: &str, hangs: bool) -> Self {
        let (client, conn) = Redis::connect(url).await.expect("redis");
        let keys = Keys::default();
        let leases = Holding::start(
            Leases::new(conn.clone(), keys.clone(), name),
            watch::channel(vec!["demo".to_owned()]).1,
            LEASE,
        );
        let bus = Bus::new(
            name,
            keys,
            client,
            conn,
            leases.ownership.clone(),
            BusConfig {
                ask_wait: Duration::from_secs(3),
                alive_ttl: Duration::from_secs(2),
                alive_every: Duration::from_millis(100),
                ..BusConfig::default()
            },
        );
        let systems = Recorder::new(hangs);
        bus.start(systems.clone()).await;
        Self {
            bus,
            leases: Some(leases),
            systems,
        }
    }

    async fn owns_demo(&self) {
        self.systems
            .until("the tenant gained", |s| !s.gained.is_empty())
            .await;
    }

    /// Dies without a word: its leases are neither renewed nor released, its readers stop.
    async fn kill(mut self) {
        if let Some(l) = self.leases.take() {
            l.abandon();
        }
        self.bus.abandon();
    }
}

fn registration(dn: &str) -> OwnerBound {
    OwnerBound::Registration {
        dn: dn.to_owned(),
        present: true,
    }
}

fn registered(messages: &[(String, OwnerBound)]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|(_, m)| match m {
            OwnerBound::Registration { dn, .. } => Some(dn.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_owner_and_its_answers_and_orders_come_back() {
    let url = redis_db(53);
    let a = Node::start(&url, "node-a", false).await;
    a.owns_demo().await;
    let b = Node::start(&url, "node-b", false).await;
    assert!(!ToOwner::here(&b.bus, "demo"));

    ToOwner::send(&b.bus, "demo", registration("1001"));
    a.systems
        .until("b's registration at a", |s| {
            s.owner
                .iter()
                .any(|(from, m)| from == "node-b" && *m == registration("1001"))
        })
        .await;
    let asked = OwnerBound::Status {
        agent: "a1001".into(),
    };
    let answer = ToOwner::ask(&b.bus, "demo", asked)
        .await
        .expect("an answer");
    let Answer::Status(Ok(status)) = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(status.state.agent_id, "a1001");

    let order = NodeBound::Order {
        call: "sbnode-b-1".into(),
        order: Order::Route(Route::Agent {
            agent: "a1001".into(),
            dn: "1001".into(),
        }),
    };
    ToNode::send(&a.bus, "demo", "node-b", order.clone());
    b.systems
        .until("a's order at b", |s| s.node.contains(&order))
        .await;
    // Once a has read back its marker, its own messages go straight to its systems.
    let mut waited = 0;
    while !ToOwner::here(&a.bus, "demo") {
        waited += 1;
        assert!(waited < 500, "a never caught up with its inbox");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_dies_leaves_what_it_had_not_finished_to_the_next_in_order() {
    let url = redis_db(54);
    let a = Node::start(&url, "node-a", true).await;
    a.owns_demo().await;
    let b = Node::start(&url, "node-b", false).await;
    for dn in ["1001", "hang", "1002", "1003"] {
        ToOwner::send(&b.bus, "demo", registration(dn));
    }
    a.systems.until("1001 at a", |s| !s.owner.is_empty()).await;
    // a dies with `hang` in hand, 1002 and 1003 read but not acknowledged.
    a.kill().await;
    b.owns_demo().await;
    b.systems
        .until("the rest at b", |s| {
            s.owner.iter().any(|(_, m)| *m == registration("1003"))
        })
        .await;
    // 1001 again only if a died before its acknowledgement left.
    let taken: Vec<String> = registered(&b.systems.owner_messages())
        .into_iter()
        .skip_while(|dn| dn == "1001")
        .collect();
    assert_eq!(taken, ["hang", "1002", "1003"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_can_never_be_handled_go_to_the_dead_letters() {
    let url = redis_db(55);
    let mut conn = connection(&url);
    let inbox = "sb:{demo}:inbox";
    // One entry delivered three times already (three owners died on it) before this node.
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", inbox, "owner", "0", "MKSTREAM"])
        .query(&mut conn)
        .expect("group");
    let poison = wire::encode(&Letter {
        tenant: "demo".into(),
        from: "node-a".into(),
        fence: 0,
        ask: 0,
        body: Body::Owner(registration("poison")),
    });
    let id: String = redis::cmd("XADD")
        .arg(inbox)
        .arg("*")
        .arg("m")
        .arg(poison)
        .query(&mut conn)
        .expect("xadd");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&["GROUP", "owner", "x", "STREAMS", inbox, ">"])
        .query(&mut conn)
        .expect("first delivery");
    for consumer in ["y", "z"] {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&[inbox, "owner", consumer, "0", &id])
            .query(&mut conn)
            .expect("another delivery");
    }
    // Then bytes that are no envelope, and a newer node's message.
    let _: String = redis::cmd("XADD")
        .arg(&[inbox, "*", "m", "garbage"])
        .query(&mut conn)
        .expect("xadd");
    let mut newer = switchboard_proto::bus::Envelope {
        version: 2,
        tenant: "demo".into(),
        from_node: "node-a".into(),
        ..Default::default()
    }
    .encode_to_vec();
    newer.extend_from_slice(&[0x9a, 0x06, 0x00]);
    let _: String = redis::cmd("XADD")
        .arg(inbox)
        .arg("*")
        .arg("m")
        .arg(newer)
        .query(&mut conn)
        .expect("xadd");

    let a = Node::start(&url, "node-a", false).await;
    a.owns_demo().await;
    ToOwner::send(&a.bus, "demo", registration("1001"));
    a.systems
        .until("the good message after the bad", |s| !s.owner.is_empty())
        .await;
    assert_eq!(registered(&a.systems.owner_messages()), ["1001"]);
    assert_eq!(a.bus.dead_letters(), 2);
    let dead: Vec<(String, std::collections::HashMap<String, redis::Value>)> = redis::cmd("XRANGE")
        .arg(&["sb:{demo}:dead-letters", "-", "+"])
        .query(&mut conn)
        .expect("xrange");
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, f)| redis::from_redis_value(f["reason"].clone()).expect("reason"))
        .collect();
    assert!(reasons[0].contains("delivered 3 times"), "{reasons:?}");
    assert!(reasons[1].contains("not a bus envelope"), "{reasons:?}");
    // Nothing is left pending in the group.
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(&[inbox, "owner"])
        .query(&mut conn)
        .expect("xpending");
    let mut waited = 0;
    let mut left = pending.0;
    while left > 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        left = redis::cmd("XPENDING")
            .arg(&[inbox, "owner"])
            .query::<(u64, redis::Value, redis::Value, redis::Value)>(&mut conn)
            .expect("xpending")
            .0;
    }
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_orders_and_messages_from_nodes_not_running_are_refused() {
    let url = redis_db(56);
    let mut conn = connection(&url);
    let a = Node::start(&url, "node-a", false).await;
    a.owns_demo().await;
    let b = Node::start(&url, "node-b", false).await;

    // A message from a node that is not running.
    let ghost = wire::encode(&Letter {
        tenant: "demo".into(),
        from: "node-ghost".into(),
        fence: 0,
        ask: 0,
        body: Body::Owner(registration("ghost")),
    });
    let _: String = redis::cmd("XADD")
        .arg("sb:{demo}:inbox")
        .arg("*")
        .arg("m")
        .arg(ghost)
        .query(&mut conn)
        .expect("xadd");
    ToOwner::send(&b.bus, "demo", registration("1001"));
    a.systems
        .until("b's message", |s| !s.owner.is_empty())
        .await;
    assert_eq!(registered(&a.systems.owner_messages()), ["1001"]);
    assert_eq!(a.bus.refused(), 1);

    // Another node took the lease since (a newer fencing number): a's orders are refused.
    let _: u64 = redis::cmd("INCR")
        .arg("sb:{demo}:fence")
        .query(&mut conn)
        .expect("incr");
    let order = NodeBound::Order {
        call: "c1".into(),
        order: Order::Route(Route::Default),
    };
    ToNode::send(&a.bus, "demo", "node-b", order);
    let mut waited = 0;
    while b.bus.refused() == 0 {
        waited += 1;
        assert!(waited < 500, "the stale order was not refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(b.systems.seen.lock().expect("lock").node.is_empty());
}
