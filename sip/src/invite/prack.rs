//! Reliable provisional responses (RFC 3262) from a UAS whose caller requires them, as SBCs of
//! carriers that pass early media often do: each 18x carries an RSeq and goes again until the
//! caller PRACKs it; one is outstanding at a time (a later one waits for the PRACK, the newest
//! replacing an older); and the 2xx waits for the PRACK of an 18x that carried a session
//! description (RFC 3262 3).
//!
//! [`Reliability`] holds what waits: `A` is the answer as its owner keeps it (a call keeps the
//! callee's 2xx with the leg it came from).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{HeaderName, Headers, Method, Response};

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
struct Unacked {
    rseq: u32,
    bytes: Bytes,
    /// Whether it carried a session description (the 2xx then waits for its PRACK).
    sdp: bool,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// The reliable provisional responses of one INVITE server transaction.
#[derive(Debug)]
pub struct Reliability<A> {
    /// The last RSeq sent.
    rseq: u32,
    unacked: Option<Unacked>,
    /// A provisional response that came while one was unacknowledged: sent after the PRACK
    /// (the latest replaces an earlier one; only the state it tells matters).
    queued: Option<Response>,
    /// The answer, held until the PRACK of a provisional response with a description.
    answer: Option<A>,
}

impl<A> Default for Reliability<A> {
    fn default() -> Self {
        Self {
            rseq: 0,
            unacked: None,
            queued: None,
            answer: None,
        }
    }
}

/// What a PRACK that matched lets go.
#[derive(Debug, PartialEq, Eq)]
pub enum Released<A> {
    Nothing,
    /// The answer held for it: send it now.
    Answer(A),
    /// The provisional response that waited for it: send it now (reliably, again through
    /// [`Reliability::provisional`]).
    Provisional(Response),
}

/// What is due for the unacknowledged provisional response.
#[derive(Debug, PartialEq, Eq)]
pub enum PrackDue {
    /// Send it again (over an unreliable transport).
    Resend(Bytes),
    /// No PRACK came within 64*T1: the INVITE is to be rejected (an answer held is dropped).
    GiveUp,
}

impl<A> Reliability<A> {
    /// `response` (a provisional response to the INVITE) to send now, made reliable (the next
    /// RSeq and `Require: 100rel`) and kept to be sent again until PRACKed; or `None` when one
    /// is outstanding, and it waits for that one's PRACK.
    pub fn provisional(
        &mut self,
        mut response: Response,
        t1: Duration,
        now: Instant,
    ) -> Option<Response> {
        if self.unacked.is_some() {
            self.queued = Some(response);
            return None;
        }
        self.rseq += 1;
        let length = response.headers.remove_first(&HeaderName::ContentLength);
        response.headers.push(HeaderName::Require, TAG);
        response
            .headers
            .push(HeaderName::RSeq, self.rseq.to_string());
        if let Some(length) = length {
            response.headers.push(HeaderName::ContentLength, length);
        }
        self.unacked = Some(Unacked {
            rseq: self.rseq,
            bytes: response.to_bytes(),
            sdp: !response.body.is_empty(),
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
        });
        Some(response)
    }

    /// The answer is ready: `Err` gives it back to be sent now; `Ok` holds it until the PRACK
    /// of the outstanding provisional response, which carried a session description. Sending
    /// it ends what is left to retransmit.
    pub fn answer(&mut self, answer: A) -> Result<(), A> {
        if self.unacked.as_ref().is_some_and(|u| u.sdp) {
            self.answer = Some(answer);
            return Ok(());
        }
        self.unacked = None;
        self.queued = None;
        Err(answer)
    }

    /// A PRACK with `headers` for the INVITE of CSeq `invite_seq`: `None` when it
    /// acknowledges nothing sent (481), else what it lets go.
    pub fn prack(&mut self, headers: &Headers, invite_seq: u32) -> Option<Released<A>> {
        let (rseq, cseq) = rack(headers)?;
        if cseq != invite_seq || rseq > self.rseq {
            return None;
        }
        if self.unacked.as_ref().is_some_and(|u| u.rseq == rseq) {
            self.unacked = None;
        }
        if self.unacked.is_some() {
            return Some(Released::Nothing);
        }
        if let Some(answer) = self.answer.take() {
            self.queued = None;
            return Some(Released::Answer(answer));
        }
        Some(
            self.queued
                .take()
                .map_or(Released::Nothing, Released::Provisional),
        )
    }

    /// When [`Reliability::poll`] next has something to do.
    pub fn due(&self) -> Option<Instant> {
        self.unacked.as_ref().map(|u| u.next.min(u.give_up))
    }

    /// What is due at `now`: the outstanding response again (T1, doubling), or giving up.
    pub fn poll(&mut self, now: Instant) -> Option<PrackDue> {
        let u = self.unacked.as_mut()?;
        if u.give_up <= now {
            self.unacked = None;
            self.answer = None;
            return Some(PrackDue::GiveUp);
        }
        if u.next > now {
            return None;
        }
        u.interval *= 2;
        u.next = now + u.interval;
        Some(PrackDue::Resend(u.bytes.clone()))
    }

    /// The INVITE is over: nothing more is sent; the answer held, if any, is handed back.
    pub fn finish(&mut self) -> Option<A> {
        self.unacked = None;
        self.queued = None;
        self.answer.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, value: &str) -> Headers {
        let mut h = Headers::with_capacity(1);
        h.push(name, value.to_owned());
        h
    }

    fn ringing(body: &'static str) -> Response {
        let mut r = Response::to_request(&Headers::default(), 183);
        r.body = Bytes::from_static(body.as_bytes());
        r
    }

    #[test]
    fn rack_names_the_rseq_and_the_request_acknowledged() {
        assert_eq!(
            rack(&headers(HeaderName::RAck, "776656 1 INVITE")),
            Some((776656, 1))
        );
        assert_eq!(rack(&headers(HeaderName::RAck, "1 2 UPDATE")), None);
        assert_eq!(rack(&headers(HeaderName::RAck, "one 1 INVITE")), None);
        assert_eq!(rack(&Headers::with_capacity(0)), None);
        assert!(required(&headers(HeaderName::Require, "100REL")));
    }

    #[test]
    fn one_outstanding_at_a_time_and_the_answer_waits_for_the_prack_of_early_media() {
        let t1 = Duration::from_millis(500);
        let now = Instant::now();
        let mut r = Reliability::<&str>::default();
        let first = r
            .provisional(ringing("v=0"), t1, now)
            .expect("sent at once");
        assert_eq!(
            first.headers.get(&HeaderName::RSeq).map(|v| v.to_string()),
            Some("1".into())
        );
        assert!(
            r.provisional(ringing(""), t1, now).is_none(),
            "waits for the PRACK"
        );
        assert_eq!(r.answer("200"), Ok(()), "held: the 183 had a description");
        assert_eq!(
            r.prack(&headers(HeaderName::RAck, "1 2 INVITE"), 1),
            None,
            "another INVITE"
        );
        assert_eq!(
            r.prack(&headers(HeaderName::RAck, "2 1 INVITE"), 1),
            None,
            "never sent"
        );
        assert_eq!(
            r.prack(&headers(HeaderName::RAck, "1 1 INVITE"), 1),
            Some(Released::Answer("200"))
        );
        assert_eq!(r.due(), None, "nothing left to send again");
    }

    #[test]
    fn an_unacknowledged_response_goes_again_until_64_t1() {
        let t1 = Duration::from_millis(500);
        let start = Instant::now();
        let mut r = Reliability::<()>::default();
        r.provisional(ringing(""), t1, start);
        assert_eq!(
            r.answer(()),
            Err(()),
            "no description: the answer goes at once"
        );
        r.provisional(ringing(""), t1, start);
        let mut resent = 0;
        loop {
            let now = r.due().expect("outstanding");
            match r.poll(now) {
                Some(PrackDue::Resend(_)) => resent += 1,
                Some(PrackDue::GiveUp) => {
                    assert_eq!(now - start, t1 * 64);
                    break;
                }
                None => panic!("due and nothing to do"),
            }
        }
        assert_eq!(resent, 6, "at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s");
        assert_eq!(r.finish(), None);
    }
}
