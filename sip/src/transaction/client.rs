//! Client transactions: INVITE (RFC 3261 17.1.1, RFC 6026 Accepted state) and non-INVITE
//! (17.1.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::timer::{Timer, TimerConfig, TimerTable};
use crate::header::{CSeq, HeaderName, Headers};
use crate::message::{Method, Request, Response};

/// What a client transaction tells its transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response for the transaction user (retransmissions of a final non-2xx are absorbed).
    Response(Response),
    /// No final response before Timer B or F.
    TimedOut,
    /// The transport could not deliver the request.
    TransportError,
    /// The transaction is over; its owner may forget it.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE: Calling; non-INVITE: Trying.
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub struct ClientTransaction {
    invite: bool,
    reliable: bool,
    config: TimerConfig,
    state: State,
    timers: TimerTable,
    interval: Duration,
    /// The request, while it may still be sent; dropped once a final response has come, so a
    /// transaction that lingers to absorb retransmissions holds nothing it no longer needs.
    request: Option<Request>,
    request_bytes: Bytes,
    ack: Option<Bytes>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<ClientEvent>,
    _alive: super::Alive,
}

impl ClientTransaction {
    /// Starts a transaction for `request`, which must already carry its Via with a fresh
    /// branch. The request is the first transmission.
    pub fn new(request: Request, reliable: bool, config: TimerConfig, now: Instant) -> Self {
        let invite = request.method == Method::Invite;
        let request_bytes = request.to_bytes();
        let mut t = Self {
            invite,
            reliable,
            config,
            state: State::Calling,
            timers: TimerTable::default(),
            interval: config.t1,
            request: Some(request),
            request_bytes: request_bytes.clone(),
            ack: None,
            transmits: VecDeque::from([request_bytes]),
            _alive: super::Alive::new(),
            events: VecDeque::new(),
        };
        let (retransmit, give_up) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !reliable {
            t.timers.set(retransmit, now + config.t1);
        }
        t.timers.set(give_up, now + config.timeout());
        t
    }

    /// The request, until a final response for it has come.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// A final response came: the request is not sent again.
    fn forget_request(&mut self) {
        self.request = None;
        self.request_bytes = Bytes::new();
    }

    /// A response whose top Via matched this transaction.
    pub fn receive(&mut self, response: Response, now: Instant) {
        let status = response.status;
        match (self.state, self.invite) {
            (State::Calling | State::Proceeding, _) if status < 200 => {
                self.state = State::Proceeding;
                // An INVITE may ring for as long as the callee likes: B guards Calling only.
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.events.push_back(ClientEvent::Response(response));
            }
            (State::Calling | State::Proceeding, true) if status < 300 => {
                self.state = State::Accepted;
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.forget_request();
                self.timers.set(Timer::M, now + self.config.timeout());
                self.events.push_back(ClientEvent::Response(response));
            }
            (State::Calling | State::Proceeding, true) => {
                self.state = State::Completed;
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                if let Some(request) = &self.request {
                    let ack = ack_for(request, &response).to_bytes();
                    self.transmits.push_back(ack.clone());
                    self.ack = Some(ack);
                }
                self.forget_request();
                self.events.push_back(ClientEvent::Response(response));
                self.after(Timer::D, self.config.d(), now);
            }
            (State::Calling | State::Proceeding, false) => {
                self.state = State::Completed;
                self.timers.stop(Timer::E);
                self.timers.stop(Timer::F);
                self.forget_request();
                self.events.push_back(ClientEvent::Response(response));
                self.after(Timer::K, self.config.t4, now);
            }
            // RFC 6026: 2xx retransmissions (or 2xx from other forks) go to the user.
            (State::Accepted, _) if (200..300).contains(&status) => {
                self.events.push_back(ClientEvent::Response(response));
            }
            // A retransmitted final error: send the ACK again, tell nobody.
            (State::Completed, true) if status >= 300 => {
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
            }
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                Timer::A => {
                    super::sent_again();
                    self.transmits.push_back(self.request_bytes.clone());
                    self.interval *= 2;
                    self.timers.set(Timer::A, now + self.interval);
                }
                Timer::E => {
                    super::sent_again();
                    self.transmits.push_back(self.request_bytes.clone());
                    self.interval = if self.state == State::Proceeding {
                        self.config.t2
                    } else {
                        (self.interval * 2).min(self.config.t2)
                    };
                    self.timers.set(Timer::E, now + self.interval);
                }
                Timer::B | Timer::F => {
                    self.events.push_back(ClientEvent::TimedOut);
                    self.terminate();
                }
                Timer::D | Timer::K | Timer::M => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport could not send the request (RFC 3261 17.1.4).
    pub fn transport_failed(&mut self) {
        if self.state != State::Terminated {
            self.events.push_back(ClientEvent::TransportError);
            self.terminate();
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next bytes to send to the transaction's next hop.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// Whether a final response has been received (the transaction only lingers now, to
    /// absorb retransmissions), or it ended without one.
    pub fn is_answered(&self) -> bool {
        matches!(
            self.state,
            State::Completed | State::Accepted | State::Terminated
        )
    }

    fn after(&mut self, timer: Timer, d: Duration, now: Instant) {
        if self.reliable {
            self.terminate();
        } else {
            self.timers.set(timer, now + d);
        }
    }

    fn terminate(&mut self) {
        if self.state != State::Terminated {
            self.state = State::Terminated;
            self.timers.stop_all();
            self.events.push_back(ClientEvent::Terminated);
        }
    }
}

/// The ACK of a final non-2xx response to `invite` (RFC 3261 17.1.1.3): the same Request-URI,
/// Call-ID, From and top Via, the response's To, the INVITE's CSeq number with ACK, and the
/// INVITE's Route headers.
pub fn ack_for(invite: &Request, response: &Response) -> Request {
    let mut headers = Headers::with_capacity(8);
    if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
        headers.push(HeaderName::Via, via);
    }
    headers.push(HeaderName::MaxForwards, ByteString::from_static("70"));
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            headers.push(name, v.clone());
        }
    }
    if let Some(to) = response.headers.get(&HeaderName::To) {
        headers.push(HeaderName::To, to.clone());
    }
    if let Some(Ok(cseq)) = invite.headers.cseq() {
        headers.push(
            HeaderName::CSeq,
            CSeq::new(cseq.seq, Method::Ack).to_string(),
        );
    }
    for route in invite.headers.get_all(&HeaderName::Route) {
        headers.push(HeaderName::Route, route.clone());
    }
    headers.push(HeaderName::ContentLength, ByteString::from_static("0"));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

/// The CANCEL of `invite` (RFC 3261 9.1): the same Request-URI, Call-ID, From, To (without a
/// tag the INVITE had none) and top Via, the INVITE's CSeq number with CANCEL, and the INVITE's
/// Route headers. It shares the INVITE's branch, a transaction of its own told apart by method.
pub fn cancel_for(invite: &Request) -> Request {
    let mut headers = Headers::with_capacity(8);
    if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
        headers.push(HeaderName::Via, via);
    }
    headers.push(HeaderName::MaxForwards, ByteString::from_static("70"));
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            headers.push(name, v.clone());
        }
    }
    if let Some(Ok(cseq)) = invite.headers.cseq() {
        headers.push(
            HeaderName::CSeq,
            CSeq::new(cseq.seq, Method::Cancel).to_string(),
        );
    }
    for route in invite.headers.get_all(&HeaderName::Route) {
        headers.push(HeaderName::Route, route.clone());
    }
    headers.push(HeaderName::ContentLength, ByteString::from_static("0"));
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::TransactionKey;
    use crate::transaction::tests_util::{at, request, response_to};

    fn drain(t: &mut ClientTransaction) -> Vec<Bytes> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    fn events(t: &mut ClientTransaction) -> Vec<ClientEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    /// Runs the transaction's timers until `end`, returning when it transmitted.
    fn run_until(t: &mut ClientTransaction, end: Instant) -> Vec<Instant> {
        let mut sent = Vec::new();
        while let Some(next) = t.poll_timeout() {
            if next > end {
                break;
            }
            t.handle_timeout(next);
            if !drain(t).is_empty() {
                sent.push(next);
            }
        }
        sent
    }

    #[test]
    fn non_invite_retransmits_on_e_capped_at_t2_then_times_out() {
        let mut t =
            ClientTransaction::new(request("OPTIONS"), false, TimerConfig::default(), at(0));
        assert_eq!(drain(&mut t).len(), 1);
        let sent = run_until(&mut t, at(40_000));
        let expected: Vec<_> = [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ]
        .into_iter()
        .map(at)
        .collect();
        assert_eq!(sent, expected);
        assert_eq!(
            events(&mut t),
            [ClientEvent::TimedOut, ClientEvent::Terminated]
        );
    }

    #[test]
    fn non_invite_provisional_slows_e_to_t2() {
        let req = request("REGISTER");
        let mut t = ClientTransaction::new(req.clone(), false, TimerConfig::default(), at(0));
        drain(&mut t);
        t.receive(response_to(&req, 100), at(100));
        let sent = run_until(&mut t, at(9_000));
        assert_eq!(sent, [at(500), at(4_500), at(8_500)]);
        t.receive(response_to(&req, 200), at(9_000));
        let ev = events(&mut t);
        assert!(
            matches!(&ev[..], [ClientEvent::Response(p), ClientEvent::Response(f)] if p.status == 100 && f.status == 200)
        );
        // Completed: K absorbs retransmitted responses for T4.
        t.receive(response_to(&req, 200), at(9_100));
        assert!(events(&mut t).is_empty());
        t.handle_timeout(at(14_000));
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_retransmits_on_a_until_provisional_then_waits() {
        let req = request("INVITE");
        let mut t = ClientTransaction::new(req.clone(), false, TimerConfig::default(), at(0));
        drain(&mut t);
        assert_eq!(
            run_until(&mut t, at(4_000)),
            [at(500), at(1_500), at(3_500)]
        );
        t.receive(response_to(&req, 180), at(4_000));
        assert_eq!(t.poll_timeout(), None, "ringing has no time limit here");
        assert!(!t.is_terminated());
    }

    #[test]
    fn invite_without_answer_times_out_on_b() {
        let mut t = ClientTransaction::new(request("INVITE"), true, TimerConfig::default(), at(0));
        assert_eq!(t.poll_timeout(), Some(at(32_000)));
        t.handle_timeout(at(32_000));
        assert_eq!(
            events(&mut t),
            [ClientEvent::TimedOut, ClientEvent::Terminated]
        );
    }

    #[test]
    fn invite_error_is_acked_and_ack_resent() {
        let req = request("INVITE");
        let mut t = ClientTransaction::new(req.clone(), false, TimerConfig::default(), at(0));
        drain(&mut t);
        let busy = response_to(&req, 486).with_to_tag("callee");
        t.receive(busy.clone(), at(100));
        let ack = drain(&mut t);
        assert_eq!(ack.len(), 1);
        let text = String::from_utf8_lossy(&ack[0]);
        assert!(
            text.starts_with("ACK sip:b@example.com SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 ACK\r\n"));
        assert!(text.contains(";tag=callee"));
        t.receive(busy, at(600));
        assert_eq!(drain(&mut t), ack);
        assert_eq!(events(&mut t).len(), 1, "only the first 486 goes up");
        t.handle_timeout(at(100 + 32_000));
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_2xx_accepted_passes_retransmissions_up() {
        let req = request("INVITE");
        let mut t = ClientTransaction::new(req.clone(), true, TimerConfig::default(), at(0));
        drain(&mut t);
        t.receive(response_to(&req, 200), at(10));
        t.receive(response_to(&req, 200), at(510));
        assert!(
            drain(&mut t).is_empty(),
            "the ACK of a 2xx is the dialog's business"
        );
        assert_eq!(events(&mut t).len(), 2);
        t.handle_timeout(at(10 + 32_000));
        assert!(t.is_terminated());
    }

    #[test]
    fn transport_failure_ends_it() {
        let mut t = ClientTransaction::new(request("OPTIONS"), true, TimerConfig::default(), at(0));
        t.transport_failed();
        assert_eq!(
            events(&mut t),
            [ClientEvent::TransportError, ClientEvent::Terminated]
        );
    }

    #[test]
    fn a_cancel_matches_its_invite_and_follows_its_route() {
        let mut invite = request("INVITE");
        invite
            .headers
            .push(HeaderName::Route, "<sip:proxy.example.com;lr>");
        let cancel = cancel_for(&invite);
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, invite.uri);
        let key = TransactionKey::for_request(&cancel).expect("key");
        assert_eq!(
            key.of_invite(),
            TransactionKey::for_request(&invite).expect("key")
        );
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::Route,
        ] {
            assert_eq!(
                cancel.headers.get(&name),
                invite.headers.get(&name),
                "{name:?}"
            );
        }
        assert_eq!(
            cancel
                .headers
                .cseq()
                .and_then(Result::ok)
                .map(|c| (c.seq, c.method)),
            Some((1, Method::Cancel))
        );
    }
}
