//! Which cluster node runs a call: the proxy hashes the call's Call-ID over the nodes that
//! answer its OPTIONS probes, so that every proxy picks the same node for the same call, a node
//! that stops answering leaves the choice (its calls' new requests go elsewhere), and one that
//! answers again rejoins it. A node that answers but turns new calls away (503: its event
//! spool past the high-water mark, or overloaded) leaves the choice of new calls the same way
//! until it answers 200 again.
//!
//! Rendezvous (highest random weight) hashing: each node scores each key and the highest wins.
//! A node leaving moves only the keys it held; a node joining takes only the keys it now
//! scores highest on. With the handful of nodes a cluster has, scoring them all is cheaper than
//! keeping a ring of virtual points.

use std::net::SocketAddr;
use std::time::Instant;

/// Probes a node may miss in a row before it leaves the choice.
pub const MISSED_PROBES: u32 = 3;

/// A cluster node as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub addr: SocketAddr,
    /// The hash of the address, worked out once: every call's choice scores it.
    id: u64,
    /// Probes missed in a row; at [`MISSED_PROBES`] the node is down.
    missed: u32,
    /// The node said it takes no new calls (503), and has not said otherwise since.
    refusing: bool,
    /// When the node last answered.
    pub last_seen: Option<Instant>,
}

impl Node {
    pub fn is_up(&self) -> bool {
        self.missed < MISSED_PROBES
    }

    /// Whether new calls may go to the node.
    pub fn takes_calls(&self) -> bool {
        self.is_up() && !self.refusing
    }
}

/// The cluster nodes of a proxy and their health.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    nodes: Vec<Node>,
}

impl Ring {
    /// Every node up until its probes say otherwise.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        let mut nodes: Vec<Node> = addrs
            .into_iter()
            .map(|addr| Node {
                addr,
                id: hash(addr.to_string().as_bytes()),
                missed: 0,
                refusing: false,
                last_seen: None,
            })
            .collect();
        nodes.sort_by_key(|n| n.addr);
        nodes.dedup_by_key(|n| n.addr);
        Self { nodes }
    }

    /// The node that runs the call of `call_id`: the node taking calls that scores highest;
    /// `None` when none does.
    pub fn pick(&self, call_id: &[u8]) -> Option<SocketAddr> {
        let key = hash(call_id);
        self.nodes
            .iter()
            .filter(|n| n.takes_calls())
            .max_by_key(|n| score(key, n.id))
            .map(|n| n.addr)
    }

    /// A node answered a probe with 200; true when it took no calls and rejoins.
    pub fn answered(&mut self, addr: SocketAddr, now: Instant) -> bool {
        match self.nodes.iter_mut().find(|n| n.addr == addr) {
            Some(node) => {
                let was_out = !node.takes_calls();
                node.missed = 0;
                node.refusing = false;
                node.last_seen = Some(now);
                was_out
            }
            None => false,
        }
    }

    /// A node answered that it takes no new calls (503); true when it took them until now.
    pub fn refused(&mut self, addr: SocketAddr, now: Instant) -> bool {
        match self.nodes.iter_mut().find(|n| n.addr == addr) {
            Some(node) => {
                let was_taking = node.takes_calls();
                node.missed = 0;
                node.refusing = true;
                node.last_seen = Some(now);
                was_taking
            }
            None => false,
        }
    }

    /// A probe of a node went unanswered; true when the node has just gone down.
    pub fn missed(&mut self, addr: SocketAddr) -> bool {
        match self.nodes.iter_mut().find(|n| n.addr == addr) {
            Some(node) => {
                node.missed = node.missed.saturating_add(1);
                node.missed == MISSED_PROBES
            }
            None => false,
        }
    }

    /// Whether `addr` is one of the ring's nodes and down (it stopped answering probes).
    pub fn is_down(&self, addr: SocketAddr) -> bool {
        self.nodes.iter().any(|n| n.addr == addr && !n.is_up())
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
}

/// 64-bit FNV-1a: stable across builds and machines, so every proxy agrees.
/// FNV-1a, stable across processes and runs.
pub(super) fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A node's weight for a key: the key and the node's id mixed (splitmix64's finalizer), so
/// that scores are spread evenly whatever the addresses look like.
fn score(key: u64, node: u64) -> u64 {
    let mut z = key ^ node.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn ring(ports: &[u16]) -> Ring {
        Ring::new(ports.iter().map(|p| addr(*p)))
    }

    fn calls() -> impl Iterator<Item = String> {
        (0..3000).map(|i| format!("{i:08x}-call@sbc.example"))
    }

    #[test]
    fn calls_spread_evenly_and_every_proxy_agrees() {
        let a = ring(&[5080, 5081, 5082]);
        let b = ring(&[5082, 5080, 5081, 5080]);
        let mut counts = [0usize; 3];
        for call in calls() {
            let node = a.pick(call.as_bytes()).expect("a node");
            assert_eq!(b.pick(call.as_bytes()), Some(node));
            counts[usize::from(node.port() - 5080)] += 1;
        }
        // 1,000 each on average; no node far off.
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn a_node_that_stops_answering_leaves_and_only_its_calls_move() {
        let mut r = ring(&[5080, 5081, 5082]);
        let before: Vec<_> = calls().map(|c| r.pick(c.as_bytes())).collect();
        for _ in 0..MISSED_PROBES - 1 {
            assert!(!r.missed(addr(5081)));
        }
        assert!(r.nodes().iter().all(Node::is_up), "up until the last miss");
        assert!(r.missed(addr(5081)), "down at the third miss");
        let after: Vec<_> = calls().map(|c| r.pick(c.as_bytes())).collect();
        for (b, a) in before.iter().zip(&after) {
            assert_ne!(*a, Some(addr(5081)));
            if *b != Some(addr(5081)) {
                assert_eq!(a, b, "a call on a live node stays");
            }
        }
        // It answers again and takes back exactly its calls.
        assert!(r.answered(addr(5081), Instant::now()));
        let back: Vec<_> = calls().map(|c| r.pick(c.as_bytes())).collect();
        assert_eq!(back, before);
    }

    #[test]
    fn with_no_node_up_there_is_no_choice() {
        let mut r = ring(&[5080]);
        for _ in 0..MISSED_PROBES {
            r.missed(addr(5080));
        }
        assert_eq!(r.pick(b"call"), None);
        assert_eq!(Ring::default().pick(b"call"), None);
        assert!(!r.missed(addr(9999)));
        assert!(!r.answered(addr(9999), Instant::now()));
    }

    #[test]
    fn a_node_that_refuses_new_calls_leaves_the_choice_until_it_takes_them_again() {
        let now = Instant::now();
        let mut r = ring(&[5080, 5081]);
        let before: Vec<_> = calls().map(|c| r.pick(c.as_bytes())).collect();
        assert!(before.contains(&Some(addr(5081))));
        assert!(r.refused(addr(5081), now), "out at the first 503");
        assert!(!r.refused(addr(5081), now), "already out");
        assert!(r.nodes().iter().all(Node::is_up), "it still answers");
        assert!(calls().all(|c| r.pick(c.as_bytes()) == Some(addr(5080))));
        assert!(r.answered(addr(5081), now), "back at the first 200");
        let after: Vec<_> = calls().map(|c| r.pick(c.as_bytes())).collect();
        assert_eq!(before, after, "its calls come back to it");
        r.refused(addr(5080), now);
        r.refused(addr(5081), now);
        assert_eq!(r.pick(b"call"), None, "no node takes calls");
    }
}
