//! Server transactions: INVITE (RFC 3261 17.2.1, RFC 6026 Accepted state) and non-INVITE
//! (17.2.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Timer, TimerConfig, TimerTable};
use crate::message::{Method, Request, Response};

/// What a server transaction tells its transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The ACK of a 2xx (RFC 6026: it belongs to the dialog, so it goes up).
    Ack(Request),
    /// No ACK came for a final non-2xx response before Timer H.
    AckTimeout,
    /// The transaction is over; its owner may forget it.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Accepted,
    Confirmed,
    Terminated,
}

#[derive(Debug)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    config: TimerConfig,
    state: State,
    timers: TimerTable,
    retransmit_interval: Duration,
    last_response: Option<Bytes>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<ServerEvent>,
    _alive: super::Alive,
}

impl ServerTransaction {
    /// A transaction for a request just received. `reliable` is true over TCP.
    pub fn new(request: &Request, reliable: bool, config: TimerConfig) -> Self {
        let invite = request.method == Method::Invite;
        Self {
            invite,
            reliable,
            config,
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            timers: TimerTable::default(),
            retransmit_interval: config.t1,
            last_response: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            _alive: super::Alive::new(),
        }
    }

    /// A request that matched this transaction: a retransmission, or the ACK of an INVITE.
    pub fn receive(&mut self, request: &Request, now: Instant) {
        if request.method == Method::Ack {
            if !self.invite {
                return;
            }
            match self.state {
                State::Completed => {
                    self.state = State::Confirmed;
                    self.timers.stop(Timer::G);
                    self.timers.stop(Timer::H);
                    self.after(Timer::I, self.unreliable_or_zero(self.config.t4), now);
                }
                State::Accepted => self.events.push_back(ServerEvent::Ack(request.clone())),
                _ => {}
            }
            return;
        }
        // A retransmission: answer with the last response where the state machine says so.
        super::received_again();
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(last) = &self.last_response
        {
            self.transmits.push_back(last.clone());
        }
    }

    /// Sends a response from the transaction user. Returns false when the state no longer
    /// allows it (a second final response, or one after termination).
    pub fn respond(&mut self, response: &Response, now: Instant) -> bool {
        let status = response.status;
        let allowed = match self.state {
            State::Trying | State::Proceeding => true,
            // RFC 6026: 2xx retransmissions of the transaction user pass through.
            State::Accepted => (200..300).contains(&status),
            _ => false,
        };
        if !allowed {
            return false;
        }
        let bytes = response.to_bytes();
        self.transmits.push_back(bytes.clone());
        if status < 200 {
            self.state = State::Proceeding;
            self.last_response = Some(bytes);
        } else if !self.invite {
            self.state = State::Completed;
            self.last_response = Some(bytes);
            self.after(
                Timer::J,
                self.unreliable_or_zero(self.config.timeout()),
                now,
            );
        } else if status < 300 {
            if self.state != State::Accepted {
                // RFC 6026: the transaction user retransmits the 2xx; the transaction only
                // absorbs the INVITE's retransmissions and keeps no copy.
                self.state = State::Accepted;
                self.last_response = None;
                self.after(Timer::L, self.config.timeout(), now);
            }
        } else {
            self.state = State::Completed;
            self.last_response = Some(bytes);
            if !self.reliable {
                self.timers.set(Timer::G, now + self.retransmit_interval);
            }
            self.timers.set(Timer::H, now + self.config.timeout());
        }
        true
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                Timer::G => {
                    if let Some(last) = &self.last_response {
                        super::sent_again();
                        self.transmits.push_back(last.clone());
                    }
                    self.retransmit_interval = (self.retransmit_interval * 2).min(self.config.t2);
                    self.timers.set(Timer::G, now + self.retransmit_interval);
                }
                Timer::H => {
                    self.events.push_back(ServerEvent::AckTimeout);
                    self.terminate();
                }
                Timer::I | Timer::J | Timer::L => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport could not deliver a response (RFC 3261 17.2.4).
    pub fn transport_failed(&mut self) {
        self.terminate();
    }

    /// When the transaction next wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next bytes to send to the request's source.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The final response a non-INVITE transaction repeats to each retransmission of its
    /// request while it waits out Timer J: all it has left to do. A transaction user may keep
    /// just these bytes for that time instead of the whole transaction.
    pub fn completed_response(&self) -> Option<&Bytes> {
        if self.invite || self.state != State::Completed {
            return None;
        }
        self.last_response.as_ref()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    fn unreliable_or_zero(&self, d: Duration) -> Duration {
        if self.reliable { Duration::ZERO } else { d }
    }

    /// Starts `timer`, or acts on it at once when its duration is zero (reliable transports).
    fn after(&mut self, timer: Timer, d: Duration, now: Instant) {
        if d.is_zero() {
            self.terminate();
        } else {
            self.timers.set(timer, now + d);
        }
    }

    fn terminate(&mut self) {
        if self.state != State::Terminated {
            self.state = State::Terminated;
            self.timers.stop_all();
            self.events.push_back(ServerEvent::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::tests_util::{at, request, response_to};

    fn drain(t: &mut ServerTransaction) -> Vec<Bytes> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    fn events(t: &mut ServerTransaction) -> Vec<ServerEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn non_invite_absorbs_retransmissions_then_terminates_after_j() {
        let req = request("REGISTER");
        let mut t = ServerTransaction::new(&req, false, TimerConfig::default());
        // Trying: a retransmission before any response is absorbed.
        t.receive(&req, at(100));
        assert!(drain(&mut t).is_empty());
        assert!(t.respond(&response_to(&req, 200), at(200)));
        let first = drain(&mut t);
        assert_eq!(first.len(), 1);
        // Completed: each retransmission gets the same final response again.
        t.receive(&req, at(1_000));
        t.receive(&req, at(2_000));
        assert_eq!(drain(&mut t), [first[0].clone(), first[0].clone()]);
        assert!(!t.respond(&response_to(&req, 500), at(2_100)));
        assert_eq!(t.poll_timeout(), Some(at(200 + 32_000)));
        t.handle_timeout(at(32_199));
        assert!(!t.is_terminated());
        t.handle_timeout(at(32_200));
        assert!(t.is_terminated());
        assert_eq!(events(&mut t), [ServerEvent::Terminated]);
    }

    #[test]
    fn non_invite_provisional_is_resent() {
        let req = request("OPTIONS");
        let mut t = ServerTransaction::new(&req, false, TimerConfig::default());
        t.respond(&response_to(&req, 100), at(0));
        let trying = drain(&mut t);
        t.receive(&req, at(500));
        assert_eq!(drain(&mut t), trying);
    }

    #[test]
    fn non_invite_over_tcp_ends_at_once() {
        let req = request("REGISTER");
        let mut t = ServerTransaction::new(&req, true, TimerConfig::default());
        t.respond(&response_to(&req, 200), at(0));
        assert!(t.is_terminated());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn invite_error_retransmits_on_g_until_ack() {
        let req = request("INVITE");
        let mut t = ServerTransaction::new(&req, false, TimerConfig::default());
        t.respond(&response_to(&req, 486), at(0));
        assert_eq!(drain(&mut t).len(), 1);
        // G: 500 ms, 1 s, 2 s, then capped at T2 = 4 s.
        let mut sent_at = Vec::new();
        let mut now = at(0);
        while let Some(next) = t.poll_timeout() {
            if next > at(12_000) {
                break;
            }
            now = next;
            t.handle_timeout(now);
            if !drain(&mut t).is_empty() {
                sent_at.push(now);
            }
        }
        assert_eq!(
            sent_at,
            [at(500), at(1_500), at(3_500), at(7_500), at(11_500)]
        );
        let ack = request("ACK");
        t.receive(&ack, now);
        assert!(drain(&mut t).is_empty());
        // Confirmed: I absorbs ACK retransmissions for T4, then the transaction ends.
        t.receive(&ack, now);
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(5)));
        t.handle_timeout(now + Duration::from_secs(5));
        assert!(t.is_terminated());
        assert_eq!(events(&mut t), [ServerEvent::Terminated]);
    }

    #[test]
    fn invite_error_without_ack_times_out_on_h() {
        let req = request("INVITE");
        let mut t = ServerTransaction::new(&req, true, TimerConfig::default());
        t.respond(&response_to(&req, 404), at(0));
        // Reliable: no G, only H.
        assert_eq!(t.poll_timeout(), Some(at(32_000)));
        t.handle_timeout(at(32_000));
        assert_eq!(
            events(&mut t),
            [ServerEvent::AckTimeout, ServerEvent::Terminated]
        );
    }

    #[test]
    fn invite_2xx_enters_accepted() {
        let req = request("INVITE");
        let mut t = ServerTransaction::new(&req, false, TimerConfig::default());
        t.respond(&response_to(&req, 180), at(0));
        t.receive(&req, at(100));
        assert_eq!(drain(&mut t).len(), 2, "the 180 and its resend");
        t.respond(&response_to(&req, 200), at(200));
        // The transaction user retransmits its 2xx through the transaction.
        assert!(t.respond(&response_to(&req, 200), at(700)));
        assert_eq!(drain(&mut t).len(), 2);
        // INVITE retransmissions are absorbed, ACKs go up.
        t.receive(&req, at(800));
        assert!(drain(&mut t).is_empty());
        let ack = request("ACK");
        t.receive(&ack, at(900));
        assert_eq!(events(&mut t), [ServerEvent::Ack(ack)]);
        t.handle_timeout(at(200 + 32_000));
        assert!(t.is_terminated());
    }
}
