//! Transactions (RFC 3261 17, with RFC 6026's Accepted state) as sans-io state machines: the
//! owner passes messages and the current time in, then polls for bytes to transmit, events for
//! the transaction user and the next instant to be woken. No sockets, no clock.
//!
//! The transmissions of a server transaction go to where its request came from (the owner
//! knows that address); those of a client transaction go to the next hop it was created for.

mod client;
mod server;
mod timer;

pub use client::{ClientEvent, ClientTransaction, ack_for, cancel_for};
pub use server::{ServerEvent, ServerTransaction};
pub use timer::{Timer, TimerConfig};

use std::sync::atomic::{AtomicU64, Ordering};

use bytestring::ByteString;

use crate::header::BRANCH_COOKIE;
use crate::message::{Method, Request, Response};

/// What identifies a transaction (RFC 3261 17.1.3 and 17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransactionKey {
    /// An RFC 3261 branch with the magic cookie, the sent-by of the top Via, and the method
    /// (ACK counts as INVITE, so that it finds the INVITE's transaction).
    Branch {
        branch: ByteString,
        sent_by: String,
        method: Method,
    },
    /// The RFC 2543 fallback for requests whose branch lacks the cookie: Request-URI, From tag,
    /// Call-ID, CSeq number, the whole top Via, and the method as above.
    Rfc2543 {
        uri: String,
        from_tag: Option<String>,
        call_id: ByteString,
        cseq: u32,
        top_via: ByteString,
        method: Method,
    },
}

impl TransactionKey {
    /// The key of the INVITE transaction that a CANCEL with this key cancels (RFC 3261 9.2:
    /// the same transaction but for the method).
    pub fn of_invite(self) -> Self {
        match self {
            TransactionKey::Branch {
                branch, sent_by, ..
            } => TransactionKey::Branch {
                branch,
                sent_by,
                method: Method::Invite,
            },
            TransactionKey::Rfc2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                ..
            } => TransactionKey::Rfc2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                method: Method::Invite,
            },
        }
    }

    /// The key of the server transaction a request belongs to; `None` when the request lacks
    /// what a key needs (the parser guarantees it does not).
    pub fn for_request(request: &Request) -> Option<Self> {
        Self::for_request_with(request, &request.headers.top_via()?.ok()?)
    }

    /// [`TransactionKey::for_request`] with the request's top Via already parsed by the caller.
    /// Parameters stamped on it since (`received`, `rport`) are not part of the key.
    pub fn for_request_with(request: &Request, via: &crate::header::Via) -> Option<Self> {
        let method = match &request.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        if via.has_rfc3261_branch() {
            return Some(TransactionKey::Branch {
                branch: ByteString::from(via.branch()?.to_owned()),
                sent_by: sent_by(via),
                method,
            });
        }
        let cseq = request.headers.cseq()?.ok()?;
        let from_tag = request.headers.from()?.ok()?.tag().map(str::to_owned);
        Some(TransactionKey::Rfc2543 {
            uri: request.uri.to_string(),
            from_tag,
            call_id: request.headers.call_id()?.clone(),
            cseq: cseq.seq,
            top_via: request.headers.values(&crate::HeaderName::Via).next()?,
            method,
        })
    }

    /// The key of the client transaction a response belongs to: the branch of its top Via and
    /// the method of its CSeq (RFC 3261 17.1.3).
    pub fn for_response(response: &Response) -> Option<Self> {
        let via = response.headers.top_via()?.ok()?;
        let cseq = response.headers.cseq()?.ok()?;
        Some(TransactionKey::Branch {
            branch: ByteString::from(via.branch()?.to_owned()),
            sent_by: sent_by(&via),
            method: cseq.method,
        })
    }
}

/// A Via's `host[:port]`, lower-cased, as transactions compare it.
fn sent_by(via: &crate::header::Via) -> String {
    let mut s = String::with_capacity(48);
    let _ = via.host.write_with_port(&mut s, via.port);
    s.make_ascii_lowercase();
    s
}

/// A fresh RFC 3261 branch: the magic cookie and 96 random bits.
pub fn new_branch() -> String {
    let mut s = String::with_capacity(BRANCH_COOKIE.len() + 24);
    s.push_str(BRANCH_COOKIE);
    s.push_str(&crate::random::token::<12>());
    s
}

#[cfg(test)]
pub(crate) mod tests_util {
    //! Messages and simulated time for the transaction tests.

    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use crate::{Message, Request, Response, parse_datagram};

    /// `ms` milliseconds after a fixed origin.
    pub(crate) fn at(ms: u64) -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    pub(crate) fn request(method: &str) -> Request {
        let text = format!(
            "{method} sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKt1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=f1\r\nTo: <sip:b@example.com>\r\n\
             Call-ID: t1@192.0.2.1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn response_to(request: &Request, status: u16) -> Response {
        Response::to_request(&request.headers, status)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Message, parse_datagram};

    fn request(s: &str) -> Request {
        match parse_datagram(Bytes::copy_from_slice(s.as_bytes())) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn invite(branch: &str, method: &str) -> Request {
        request(&format!(
            "{method} sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP Host.example.com:5060;branch={branch}\r\n\
             From: <sip:a@example.com>;tag=f1\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\n\
             CSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn ack_matches_its_invite_by_branch() {
        let k1 = TransactionKey::for_request(&invite("z9hG4bKabc", "INVITE"));
        let k2 = TransactionKey::for_request(&invite("z9hG4bKabc", "ACK"));
        let k3 = TransactionKey::for_request(&invite("z9hG4bKabc", "CANCEL"));
        let k4 = TransactionKey::for_request(&invite("z9hG4bKxyz", "INVITE"));
        assert!(k1.is_some());
        assert_eq!(k1, k2);
        assert_ne!(k1, k3);
        assert_ne!(k1, k4);
    }

    #[test]
    fn rfc2543_fallback() {
        let k1 = TransactionKey::for_request(&invite("old1", "INVITE")).expect("key");
        let k2 = TransactionKey::for_request(&invite("old1", "ACK")).expect("key");
        assert!(matches!(k1, TransactionKey::Rfc2543 { .. }));
        assert_eq!(k1, k2);
        let k3 = TransactionKey::for_request(&invite("old2", "INVITE")).expect("key");
        assert_ne!(k1, k3);
    }

    #[test]
    fn branches_are_fresh() {
        let a = new_branch();
        assert!(a.starts_with(BRANCH_COOKIE));
        assert_eq!(a.len(), 7 + 24);
        assert_ne!(a, new_branch());
    }
}

/// Transactions of this process not yet dropped, and retransmissions, for the metrics.
static ALIVE: AtomicU64 = AtomicU64::new(0);
static SENT_AGAIN: AtomicU64 = AtomicU64::new(0);
static RECEIVED_AGAIN: AtomicU64 = AtomicU64::new(0);

/// The transactions (client and server) of this process in progress: created and not yet
/// dropped by their owners, those lingering to absorb retransmissions included.
pub fn in_progress() -> u64 {
    ALIVE.load(Ordering::Relaxed)
}

/// Retransmissions: (requests and responses sent again on the transactions' timers, requests
/// received again and matched to their transaction).
pub fn retransmissions() -> (u64, u64) {
    (
        SENT_AGAIN.load(Ordering::Relaxed),
        RECEIVED_AGAIN.load(Ordering::Relaxed),
    )
}

/// Counts its transaction in [`in_progress`] while it lives.
#[derive(Debug)]
struct Alive;

impl Alive {
    fn new() -> Self {
        ALIVE.fetch_add(1, Ordering::Relaxed);
        Alive
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

fn sent_again() {
    SENT_AGAIN.fetch_add(1, Ordering::Relaxed);
}

fn received_again() {
    RECEIVED_AGAIN.fetch_add(1, Ordering::Relaxed);
}
