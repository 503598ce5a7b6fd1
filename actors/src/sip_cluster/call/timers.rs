//! The call's timers: one enum and one table for the deadlines the call keeps itself (the
//! ring time, the in-dialog probe, a routing point's), one [`Call::poll_timeout`] over them
//! and over the parts that keep their own (transactions, the 2xx awaiting an ACK, reliable
//! provisional responses, each leg's session timer), and one [`Call::handle_timeout`] that
//! hands each expired one to its rule.

use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::invite::prack::PrackDue;
use switchboard_sip::invite::session_timer::TAG as TIMER;
use switchboard_sip::support::ALLOW_IN_DIALOG as ALLOW;
use switchboard_sip::{HeaderName, Headers, Method, Response};

use super::legs::LegId;
use super::txns::Purpose;
use super::{Call, Output, Phase, seq_of};
use crate::messages::call_state::CallEventKind;

/// A deadline the call keeps itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The callee has rung long enough (or, for a call the core places, the agent's phone).
    NoAnswer,
    /// The next in-dialog OPTIONS to each leg of an answered call.
    Probe,
    /// The agent a routing point rings has rung long enough (RONA).
    AgentRing,
    /// The media server of a treatment has not answered in time: the next one is tried.
    MediaAnswer,
    /// The routing point's timeout: its default destination takes the call.
    RoutingTimeout,
}

/// When each [`Timer`] is due, if it is set.
#[derive(Debug, Default)]
pub(super) struct TimerTable([Option<Instant>; 5]);

impl TimerTable {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Whether `timer` is due at `now`; stopped if it is.
    fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        let due = self.get(timer).is_some_and(|at| at <= now);
        if due {
            self.stop(timer);
        }
        due
    }
}

impl Call {
    /// When [`Call::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sessions = self.legs.talking().filter_map(|leg| self.timer_due(leg));
        self.txns
            .next_timeout()
            .into_iter()
            .chain(self.timers.next())
            .chain(self.reliability.as_ref().and_then(|r| r.due()))
            .chain(sessions)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timers(now);
        self.when_answered(now);
    }

    fn handle_timers(&mut self, now: Instant) {
        self.transactions_due(now);
        self.retransmit_2xx(now);
        self.retransmit_reliable(now);
        let before_sessions = [
            Timer::AgentRing,
            Timer::MediaAnswer,
            Timer::RoutingTimeout,
            Timer::NoAnswer,
        ];
        for timer in before_sessions {
            if self.timers.take_expired(timer, now) {
                self.expired(timer, now);
            }
        }
        self.sessions_due(now);
        if self.timers.take_expired(Timer::Probe, now) {
            self.expired(Timer::Probe, now);
        }
    }

    /// Hands an expired timer to its rule.
    pub(super) fn expired(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::AgentRing => self.agent_ring_over(now),
            Timer::MediaAnswer => self.media_answer_over(now),
            Timer::RoutingTimeout => self.routing_timeout(now),
            Timer::NoAnswer => self.no_answer(now),
            Timer::Probe => {
                self.timers
                    .set(Timer::Probe, now + self.config.probe_interval);
                for leg in self.legs.talking() {
                    self.probe(leg, now);
                }
            }
        }
    }

    /// The ring time is over: the callee does not answer.
    fn no_answer(&mut self, now: Instant) {
        if self.phase == Phase::Ringing {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, "no answer");
            for i in 0..self.legs.b.len() {
                self.cancel_leg(i, now);
            }
            self.fail(480, "no-answer", None, now);
        } else if self.calling_phone() {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
                "the agent's phone did not answer");
            self.end(CallEventKind::Released, "not-answered", 480, None, now);
        }
    }

    /// Each leg's session timer that is due: this side refreshes, or the other end failed to.
    fn sessions_due(&mut self, now: Instant) {
        for leg in self.legs.talking() {
            if self.phase == Phase::Established && self.timer_due(leg).is_some_and(|t| t <= now) {
                self.session_due(leg, now);
            }
        }
    }

    fn timer_due(&self, leg: LegId) -> Option<Instant> {
        self.legs.get(leg).timer.as_ref().and_then(|t| t.due)
    }

    /// A leg's session timer is due: this side refreshes, or the other end failed to.
    fn session_due(&mut self, leg: LegId, now: Instant) {
        let Some(timer) = self.legs.get_mut(leg).timer.as_mut() else {
            return;
        };
        if !timer.we_refresh {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, ?leg,
                "session expired: no refresh in time");
            self.end(CallEventKind::Released, "session-expired", 0, None, now);
            return;
        }
        // Again half an interval on, should this refresh get no answer meanwhile.
        timer.refreshed(now);
        let (update, value) = (timer.update, timer.in_request());
        let sdp = self.legs.get(leg).sdp.clone();
        let refreshing = |p| matches!(p, Purpose::Refresh | Purpose::Relay(_));
        if self.txns.sending(leg, refreshing) {
            return;
        }
        let method = match (update, &sdp) {
            (true, _) => Method::Update,
            (false, Some(_)) => Method::Invite,
            (false, None) => {
                tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, ?leg,
                    "no way to refresh the session (no UPDATE, no description): timer off");
                self.legs.get_mut(leg).timer = None;
                return;
            }
        };
        let body = match (&method, sdp) {
            (Method::Invite, Some(sdp)) => Some(("application/sdp", Bytes::copy_from_slice(&sdp))),
            _ => None,
        };
        let extra = [
            (HeaderName::Allow, ALLOW.to_owned()),
            (HeaderName::Supported, TIMER.to_owned()),
            (HeaderName::SessionExpires, value),
        ];
        self.send_in_dialog(leg, method, &extra, body, Purpose::Refresh, now);
    }

    /// A 2xx to an offer or a refresh this side sent on `leg`: ACKed when it answers an
    /// INVITE, the dialog's target taken from it, the leg's session refreshed.
    pub(super) fn session_answered(&mut self, leg: LegId, r: &Response, now: Instant) {
        let invite = r
            .headers
            .cseq()
            .and_then(Result::ok)
            .is_some_and(|c| c.method == Method::Invite);
        if invite {
            let seq = seq_of(&r.headers);
            self.send_ack(leg, seq, Bytes::new(), &Headers::default(), now);
        }
        if let Some(dialog) = self.legs.get_mut(leg).dialog.as_mut() {
            let _ = dialog.update_from_response(r);
        }
        if let Some(timer) = self.legs.get_mut(leg).timer.as_mut() {
            timer.refreshed(now);
        }
    }

    /// The answer to a session refresh this side sent.
    pub(super) fn refresh_answered(&mut self, leg: LegId, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        match r.status {
            200..=299 => self.session_answered(leg, &r, now),
            408 | 481 => self.end(
                CallEventKind::Released,
                "unreachable",
                r.status,
                Some(leg),
                now,
            ),
            491 => {
                // Glare with the other end's own re-INVITE: try again shortly.
                if let Some(timer) = self.legs.get_mut(leg).timer.as_mut() {
                    timer.due = Some(now + Duration::from_secs(2));
                }
            }
            status => {
                tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, ?leg, status,
                    "session refresh refused: timer off, the probes still watch the leg");
                self.legs.get_mut(leg).timer = None;
            }
        }
    }

    fn probe(&mut self, leg: LegId, now: Instant) {
        if self.txns.awaiting(leg, Purpose::Probe) {
            return;
        }
        let transport = self.legs.get(leg).transport;
        let Some(dialog) = self.legs.get_mut(leg).dialog.as_mut() else {
            return;
        };
        let mut options = dialog.request(Method::Options);
        let (via, branch) = self.local.via(transport);
        options.headers.push_front(HeaderName::Via, via);
        self.send_request(leg, options, branch, Purpose::Probe, now);
    }

    /// Sends the unacknowledged reliable provisional response again (T1, doubling), and
    /// rejects the call when no PRACK came in 64*T1 (RFC 3262 3).
    fn retransmit_reliable(&mut self, now: Instant) {
        match self.reliability.as_mut().and_then(|r| r.poll(now)) {
            Some(PrackDue::Resend(bytes)) if !self.legs.a.transport.is_reliable() => {
                self.out.push_back(Output::Send {
                    transport: self.legs.a.transport,
                    dest: self.legs.a.peer,
                    bytes,
                });
            }
            None | Some(PrackDue::Resend(_)) => {}
            Some(PrackDue::GiveUp) => {
                tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
                    "no PRACK for a reliable provisional response");
                if self.initial_invite().is_some() {
                    self.fail(500, "no-prack", None, now);
                }
            }
        }
    }
}
