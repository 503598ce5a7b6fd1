//! The final answers of the edge's finished non-INVITE transactions over UDP, kept for
//! Timer J (64*T1) to answer the retransmissions of their requests (RFC 3261 17.2.2).
//!
//! A transaction in that state has nothing left to do but repeat its response, so the edge
//! keeps only the response's bytes under a fingerprint of the transaction's key, and lets
//! them go in the order they came, all with the same lifetime. At tens of thousands of
//! REGISTERs a second that is what decides the edge's memory: the whole transaction (its key,
//! timers and buffers) took several times the room, in a table that kept growing.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::TxnId;

pub(super) struct Answered {
    /// By the transactions' fingerprints (two independent keyed hashes: no source can make two
    /// keys meet).
    by_key: HashMap<u128, Bytes>,
    /// Fingerprints by the time they go, oldest first.
    order: VecDeque<(Instant, u128)>,
}

impl Answered {
    pub(super) fn new() -> Self {
        Answered {
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keeps `response` as the answer to `key`'s retransmissions until `until`.
    pub(super) fn insert(&mut self, key: &TxnId, response: Bytes, until: Instant) {
        let fingerprint = key.fingerprint;
        if self.by_key.insert(fingerprint, response).is_none() {
            self.order.push_back((until, fingerprint));
        }
    }

    /// The answer a retransmission of `key`'s request gets.
    pub(super) fn get(&self, key: &TxnId) -> Option<&Bytes> {
        self.by_key.get(&key.fingerprint)
    }

    /// Lets go of the answers whose time is over.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(until, fingerprint)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            self.by_key.remove(&fingerprint);
        }
        if self.by_key.capacity() > 64 * self.by_key.len().max(1024) {
            self.by_key.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchboard_sip::transaction::TransactionKey;
    use switchboard_sip::transport::Transport;
    use switchboard_sip::{Message, parse_datagram};

    fn key(branch: &str, port: u16) -> TxnId {
        let text = format!(
            "REGISTER sip:demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}\r\n\
             From: <sip:1001@demo.local>;tag=a\r\nTo: <sip:1001@demo.local>\r\nCall-ID: c\r\n\
             CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
        let Ok(Message::Request(request)) = parse_datagram(Bytes::from(text)) else {
            panic!("a request");
        };
        TxnId::new(
            TransactionKey::for_request(&request).expect("key"),
            std::net::SocketAddr::from(([10, 0, 0, 1], port)),
            Transport::Udp,
        )
    }

    #[test]
    fn answers_are_kept_for_their_time_then_let_go() {
        let mut answered = Answered::new();
        let t0 = Instant::now();
        let linger = Duration::from_secs(32);
        answered.insert(&key("1", 5060), Bytes::from_static(b"200"), t0 + linger);
        answered.insert(
            &key("2", 5060),
            Bytes::from_static(b"401"),
            t0 + Duration::from_secs(1) + linger,
        );
        assert_eq!(
            answered.get(&key("1", 5060)).map(|b| &b[..]),
            Some(&b"200"[..])
        );
        // The same branch from another source is another transaction.
        assert!(answered.get(&key("1", 5062)).is_none());
        answered.expire(t0 + linger);
        assert!(answered.get(&key("1", 5060)).is_none());
        assert_eq!(
            answered.get(&key("2", 5060)).map(|b| &b[..]),
            Some(&b"401"[..])
        );
        answered.expire(t0 + linger + Duration::from_secs(1));
        assert_eq!(answered.len(), 0);
    }
}
