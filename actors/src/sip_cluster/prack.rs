//! Reliable provisional responses (RFC 3262) toward a caller whose INVITE requires them, as
//! SBCs of carriers that pass early media often do: each 18x carries an RSeq and goes again
//! until the caller PRACKs it; one at a time; and the answer waits for the PRACK of a 18x that
//! carried a session description.

use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::{HeaderName, Headers, Method, Response};

/// The option tag of the extension.
pub const TAG: &str = "100rel";

/// Whether a request requires reliable provisional responses.
pub fn required(headers: &Headers) -> bool {
    headers
        .values(&HeaderName::Require)
        .any(|tag| tag.eq_ignore_ascii_case(TAG))
}

/// An RAck header acknowledging a response to an INVITE (RFC 3262 7.2): the RSeq, and the
/// INVITE's CSeq number.
pub fn rack(headers: &Headers) -> Option<(u32, u32)> {
    let value = headers.get(&HeaderName::RAck)?;
    let mut parts = value.split_ascii_whitespace();
    let rseq = parts.next()?.parse().ok()?;
    let cseq = parts.next()?.parse().ok()?;
    (parts.next()? == Method::Invite.as_str()).then_some((rseq, cseq))
}

/// A reliable provisional response sent and not yet acknowledged.
#[derive(Debug)]
pub struct Unacked {
    pub rseq: u32,
    pub bytes: Bytes,
    /// Whether it carried a session description (the 2xx then waits for its PRACK).
    pub sdp: bool,
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
}

/// The caller's reliable provisional responses.
#[derive(Debug, Default)]
pub struct Reliability {
    /// The last RSeq sent.
    pub rseq: u32,
    pub unacked: Option<Unacked>,
    /// A provisional response that came while one was unacknowledged: sent after the PRACK
    /// (the latest replaces an earlier one; only the state it tells matters).
    pub queued: Option<Response>,
    /// The callee's 2xx, held until the PRACK of a provisional response with a description.
    pub answer: Option<(usize, Response)>,
}

impl Reliability {
    /// Makes `response` reliable: the next RSeq and Require: 100rel.
    pub fn stamp(&mut self, response: &mut Response) -> u32 {
        self.rseq += 1;
        let length = response.headers.remove_first(&HeaderName::ContentLength);
        response.headers.push(HeaderName::Require, TAG);
        response
            .headers
            .push(HeaderName::RSeq, self.rseq.to_string());
        if let Some(length) = length {
            response.headers.push(HeaderName::ContentLength, length);
        }
        self.rseq
    }

    /// When the unacknowledged response is next due to go again, or be given up.
    pub fn due(&self) -> Option<Instant> {
        self.unacked.as_ref().map(|u| u.next.min(u.give_up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rack_names_the_rseq_and_the_request_acknowledged() {
        let mut h = Headers::with_capacity(1);
        h.push(HeaderName::RAck, "776656 1 INVITE");
        assert_eq!(rack(&h), Some((776656, 1)));
        let mut update = Headers::with_capacity(1);
        update.push(HeaderName::RAck, "1 2 UPDATE");
        assert_eq!(rack(&update), None);
        let mut bad = Headers::with_capacity(1);
        bad.push(HeaderName::RAck, "one 1 INVITE");
        assert_eq!(rack(&bad), None);
        assert_eq!(rack(&Headers::with_capacity(0)), None);
    }
}
