//! Call snapshots in a real Redis, as nodes adopt the calls of a dead one: of nodes racing to
//! claim a call one wins; the node that lost it can neither write nor remove it any more; a
//! node back from a pause that settles its call first makes a claim begun before fail; the
//! index finds each call by its legs' SIP Call-IDs until the call is over.

mod support;

use support::redis_db;
use switchboard_actors::call_state::{Claim, RedisSnapshots, SnapshotChange, SnapshotStore};
use switchboard_actors::keys::Keys;
use switchboard_actors::redis_conn::Redis;

async fn store(url: &str, node: &str) -> RedisSnapshots {
    let (_, conn) = Redis::connect(url).await.expect("redis reachable");
    RedisSnapshots::new(conn, Keys::default(), node)
}

fn live<'a>(snapshot: &'a str, index: &'a [String]) -> SnapshotChange<'a> {
    SnapshotChange {
        snapshot: Some(snapshot),
        index,
        unindex: &[],
    }
}

#[tokio::test]
async fn one_node_wins_a_dead_nodes_call_and_the_loser_of_a_call_cannot_touch_it() {
    let url = redis_db(63);
    let (a, b, c) = (
        store(&url, "sbA").await,
        store(&url, "sbB").await,
        store(&url, "sbC").await,
    );
    let tenants = ["demo".to_owned()];
    let legs = ["sbc-1@carrier".to_owned(), "sbA-1-0".to_owned()];
    assert!(
        a.write("demo", "c1", live("{\"v\":1}", &legs))
            .await
            .expect("redis answers")
    );
    for leg in &legs {
        assert_eq!(
            b.find(&tenants, leg).await.expect("redis answers"),
            Some(("demo".to_owned(), "c1".to_owned()))
        );
    }
    let stored = b
        .read("demo", "c1")
        .await
        .expect("redis answers")
        .expect("stored");
    assert_eq!((stored.node.as_str(), stored.generation), ("sbA", 0));

    // B and C race for it: one wins, the other hears who did.
    let (by_b, by_c) = tokio::join!(
        b.claim("demo", "c1", "sbA", 0),
        c.claim("demo", "c1", "sbA", 0)
    );
    let (winner, loser) = match (by_b.expect("redis answers"), by_c.expect("redis answers")) {
        (Claim::Won(s), Claim::Other(n)) => (("sbB", s), n),
        (Claim::Other(n), Claim::Won(s)) => (("sbC", s), n),
        other => panic!("one winner: {other:?}"),
    };
    assert_eq!(winner.1, "{\"v\":1}");
    assert_eq!(loser, winner.0);
    assert_eq!(
        b.calls("demo").await.expect("redis answers"),
        vec![("c1".to_owned(), winner.0.to_owned())]
    );

    // A, back, can neither write the call nor remove it.
    assert!(
        !a.write("demo", "c1", live("{\"v\":2}", &[]))
            .await
            .expect("redis answers")
    );
    let gone = SnapshotChange {
        snapshot: None,
        index: &[],
        unindex: &legs,
    };
    assert!(!a.write("demo", "c1", gone).await.expect("redis answers"));
    assert_eq!(
        b.read("demo", "c1")
            .await
            .expect("redis answers")
            .expect("stored")
            .snapshot,
        "{\"v\":1}"
    );

    // A node that settles its own call first makes a claim read before fail.
    assert!(
        a.write("demo", "c2", live("{}", &[]))
            .await
            .expect("redis answers")
    );
    let seen = b
        .read("demo", "c2")
        .await
        .expect("redis answers")
        .expect("stored");
    assert!(a.confirm("demo", "c2").await.expect("redis answers"));
    assert_eq!(
        b.claim("demo", "c2", &seen.node, seen.generation)
            .await
            .expect("redis answers"),
        Claim::Other("sbA".into())
    );

    // The winner ends the call: nothing of it is left, and its legs find nothing.
    let winning = if winner.0 == "sbB" { &b } else { &c };
    assert!(
        winning
            .write("demo", "c1", gone)
            .await
            .expect("redis answers")
    );
    assert_eq!(b.read("demo", "c1").await.expect("redis answers"), None);
    for leg in &legs {
        assert_eq!(b.find(&tenants, leg).await.expect("redis answers"), None);
    }
    assert_eq!(
        b.claim("demo", "c1", "sbA", 0)
            .await
            .expect("redis answers"),
        Claim::Gone
    );
}
