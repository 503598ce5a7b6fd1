//! Requests within the legs' dialogs: the caller's CANCEL, BYE from either side, a session
//! refresh answered here, PRACK, REFER (see `transfer`), and re-INVITE, UPDATE and INFO
//! relayed to the other leg with their bodies (one offer at a time, RFC 3261 14.2), whose
//! answer comes back the same way.

use std::net::SocketAddr;
use std::time::Instant;

use switchboard_sip::dialog::InDialogError;
use switchboard_sip::invite::session_timer::{self, TAG as TIMER};
use switchboard_sip::sdp::Sdp;
use switchboard_sip::support::ALLOW_IN_DIALOG as ALLOW;
use switchboard_sip::transaction::TransactionKey;
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Method, Request, Response};

use super::legs::{LegId, Progress};
use super::txns::Purpose;
use super::{Call, Phase, copy_body_headers, sdp_problem, seq_of, warning, with_body};
use crate::messages::call_state::CallEventKind;

impl Call {
    pub(super) fn cancel(
        &mut self,
        leg: LegId,
        request: Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        // A CANCEL matches the INVITE with the same branch (RFC 3261 9.2).
        let invite_key = TransactionKey::for_request(&request).map(TransactionKey::of_invite);
        let invite = self
            .txns
            .servers
            .iter()
            .find(|s| Some(&s.key) == invite_key.as_ref() && s.request.method == Method::Invite)
            .map(|s| (s.id, s.answered));
        let Some((invite, answered)) = invite else {
            self.answer_alone(&request, source, transport, 481);
            return;
        };
        let id = self.new_server(leg, request.clone());
        let ok = Response::to_request(&request.headers, 200).with_to_tag(&self.legs.a.tag);
        self.respond_to(id, ok, now);
        if answered || leg != LegId::A {
            // Too late: the INVITE has its final response (a CANCEL racing a 200).
            return;
        }
        tracing::debug!(tenant = %self.tenant.name, call_id = %self.id, "caller cancelled");
        let terminated = self.response_to(invite, 487);
        self.respond_to(invite, terminated, now);
        let was_ringing = self.phase == Phase::Ringing;
        self.end(
            if was_ringing {
                CallEventKind::Abandoned
            } else {
                CallEventKind::Released
            },
            "caller-cancel",
            487,
            None,
            now,
        );
    }

    /// A request within one leg's dialog.
    pub(super) fn in_dialog(&mut self, leg: LegId, request: Request, now: Instant) {
        let id = self.new_server(leg, request.clone());
        let established = self.legs.get(leg).dialog.is_some();
        if !established || self.phase == Phase::Ending {
            let r = self.response_to(id, 481);
            self.respond_to(id, r, now);
            return;
        }
        if let Some(dialog) = self.legs.get_mut(leg).dialog.as_mut() {
            match dialog.receive(&request) {
                Ok(()) => {}
                Err(InDialogError::OutOfOrder { .. }) => {
                    let r = self.response_to(id, 500);
                    self.respond_to(id, r, now);
                    return;
                }
                Err(InDialogError::Invalid(_)) => {
                    let r = self.response_to(id, 400);
                    self.respond_to(id, r, now);
                    return;
                }
            }
        }
        match request.method {
            Method::Bye => {
                let ok = self.response_to(id, 200);
                self.respond_to(id, ok, now);
                // A supervisor's phone hanging up before it is in: monitoring is over.
                if let LegId::B(i) = leg
                    && self.monitor().is_some_and(|m| m.phone == Some(i))
                    && !self
                        .conference()
                        .is_some_and(|c| c.members.iter().any(|m| m.party == leg))
                {
                    self.legs.b[i].progress = Progress::Over;
                    self.legs.b[i].dialog = None;
                    self.stop_monitoring(now);
                    return;
                }
                // The media server hanging up a leg of a call moved onto its conference (it
                // failed, or restarted): the monitoring and recording end, and the parties
                // talk directly again.
                if let LegId::B(i) = leg
                    && self.conference().is_some_and(|c| {
                        c.own.is_some() && c.members.iter().any(|m| m.ms == Some(i))
                    })
                {
                    tracing::warn!(tenant = %self.tenant.name, call_id = %self.id,
                        "the media server hung up a leg of the conference");
                    self.legs.b[i].progress = Progress::Over;
                    self.legs.b[i].dialog = None;
                    self.conference_failed(0, now);
                    return;
                }
                // A party hanging up leaves the conference; the others stay.
                if let Some(m) = self
                    .conference()
                    .and_then(|c| c.members.iter().position(|m| m.party == leg))
                    .filter(|_| leg != LegId::A)
                {
                    if let LegId::B(i) = leg {
                        self.legs.b[i].progress = Progress::Over;
                        self.legs.b[i].dialog = None;
                    }
                    self.leave_conference(m, now);
                    return;
                }
                if let LegId::B(i) = leg
                    && self.waiting_bye(i, &request.body)
                {
                    return;
                }
                match leg {
                    LegId::A => self.end(
                        CallEventKind::Released,
                        "caller-hangup",
                        0,
                        Some(LegId::A),
                        now,
                    ),
                    LegId::B(i) if Some(i) == self.legs.winner => {
                        self.end(CallEventKind::Released, "callee-hangup", 0, Some(leg), now)
                    }
                    // An early dialog of a fork that lost: it is simply over.
                    LegId::B(i) => {
                        self.legs.b[i].progress = Progress::Over;
                    }
                }
            }
            Method::Options => {
                let ok = self
                    .response_to(id, 200)
                    .with_header(HeaderName::Allow, ALLOW);
                self.respond_to(id, ok, now);
            }
            Method::Prack if leg == LegId::A => self.prack(id, &request, now),
            Method::Refer => self.refer(leg, id, &request, now),
            Method::Update if request.body.is_empty() && self.phase == Phase::Established => {
                // A session refresh and nothing else (RFC 4028 7.4): answered here, not
                // passed on; the other leg keeps its own timer.
                let mut ok = self.response_to(id, 200);
                if let Some(timer) = self.legs.get_mut(leg).timer.as_mut() {
                    timer.refreshed(now);
                    session_timer::add_to_response(&mut ok.headers, timer);
                }
                self.respond_to(id, ok, now);
            }
            Method::Info if self.msml_leg(leg) && super::msml::is_msml(&request.headers) => {
                let ok = self.response_to(id, 200);
                self.respond_to(id, ok, now);
                self.msml_event(&request.body);
            }
            Method::Invite | Method::Update | Method::Info => {
                if self.phase != Phase::Established {
                    let r = self.response_to(id, 491);
                    self.respond_to(id, r, now);
                    return;
                }
                if let Some(problem) = sdp_problem(&request) {
                    let r = self
                        .response_to(id, 488)
                        .with_header(HeaderName::Warning, warning(&problem));
                    self.respond_to(id, r, now);
                    return;
                }
                if request.method == Method::Invite && self.invite_pending(id) {
                    // Glare (RFC 3261 14.2): one offer at a time.
                    let r = self.response_to(id, 491);
                    self.respond_to(id, r, now);
                    return;
                }
                self.relay(leg, id, &request, now);
            }
            _ => {
                let r = self
                    .response_to(id, 405)
                    .with_header(HeaderName::Allow, ALLOW);
                self.respond_to(id, r, now);
            }
        }
    }

    /// Relays a request received on `from` into the other leg's dialog.
    fn relay(&mut self, from: LegId, server: u32, request: &Request, now: Instant) {
        let Some(to) = self.legs.other(from) else {
            let r = self.response_to(server, 481);
            self.respond_to(server, r, now);
            return;
        };
        let transport = self.legs.get(to).transport;
        let contact = self.local.contact(transport);
        let Some(dialog) = self.legs.get_mut(to).dialog.as_mut() else {
            return;
        };
        let mut out = dialog.request(request.method.clone());
        let (via, branch) = self.local.via(transport);
        out.headers.push_front(HeaderName::Via, via);
        let mut headers = std::mem::take(&mut out.headers);
        headers.remove(&HeaderName::ContentLength);
        if matches!(request.method, Method::Invite | Method::Update) {
            headers.push(HeaderName::Contact, contact);
            headers.push(HeaderName::Allow, ALLOW);
            if let Some(timer) = self.legs.get_mut(to).timer.as_ref() {
                headers.push(HeaderName::Supported, TIMER);
                headers.push(HeaderName::SessionExpires, timer.in_request());
            }
            self.legs.get_mut(to).sent_sdp(&request.body);
        }
        copy_body_headers(&request.headers, &mut headers);
        headers.push(HeaderName::ContentLength, "0");
        out.headers = headers;
        out.body = request.body.clone();
        self.send_request(to, out, branch, Purpose::Relay(server), now);
    }

    /// The final response to a request relayed into `leg`, passed back.
    pub(super) fn relayed_response(&mut self, leg: LegId, server: u32, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        let Some(s) = self.txns.servers.iter().find(|s| s.id == server) else {
            // The other side gave up on it (the call ended meanwhile): ACK a 2xx and move on.
            if (200..300).contains(&r.status) {
                self.ack_orphan(leg, &r, now);
            }
            return;
        };
        let (from, method) = (s.leg, s.request.method.clone());
        let request_body_hold = Sdp::parse(&s.request.body).map(|s| s.is_hold()).ok();
        let from_seq = seq_of(&s.request.headers);
        let mut response = self.response_to(server, r.status);
        let refresh =
            (200..300).contains(&r.status) && matches!(method, Method::Invite | Method::Update);
        if refresh {
            response = response
                .with_header(
                    HeaderName::Contact,
                    self.local.contact(self.legs.get(from).transport),
                )
                .with_header(HeaderName::Allow, ALLOW);
            // The session went through end to end: both legs are refreshed.
            for l in [from, leg] {
                if let Some(timer) = self.legs.get_mut(l).timer.as_mut() {
                    timer.refreshed(now);
                }
            }
            if let Some(timer) = self.legs.get_mut(from).timer.as_ref() {
                session_timer::add_to_response(&mut response.headers, timer);
            }
            self.legs.get_mut(from).sent_sdp(&r.body);
        }
        if !r.body.is_empty() {
            response = with_body(response, &r.headers, r.body.clone());
        }
        if let Some(dialog) = self.legs.get_mut(leg).dialog.as_mut() {
            let _ = dialog.update_from_response(&r);
        }
        self.respond_to(server, response.clone(), now);
        if method == Method::Invite && (200..300).contains(&r.status) {
            let seq = seq_of(&r.headers);
            self.await_ack(from, from_seq, response.to_bytes(), Some((leg, seq)), now);
        }
        if (200..300).contains(&r.status)
            && matches!(method, Method::Invite | Method::Update)
            && let Some(hold) = request_body_hold
        {
            if hold && !self.held {
                self.held = true;
                self.event(CallEventKind::Held, "", 0);
            } else if !hold && self.held {
                self.held = false;
                self.event(CallEventKind::Retrieved, "", 0);
            }
        }
    }
}
