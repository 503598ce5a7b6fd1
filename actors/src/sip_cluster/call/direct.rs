//! A call put through as the dial plan says: an extension (every registered phone of the DN
//! rings at once, the first to answer wins and the others are CANCELed), a trunk's gateway, an
//! announcement on a media server. The caller's offer goes to the callee; the callee's ringing
//! and answer go back to the caller, reliably when it requires 100rel (RFC 3262). This is also
//! how every B leg is placed and answered, whatever the mode: the other modes take over the
//! answers that are theirs first.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_routing::dialplan::Destination;
use switchboard_sip::dialog::{Dialog, establishing};
use switchboard_sip::invite::prack::Released;
use switchboard_sip::invite::session_timer::{self, SessionTimer, TAG as TIMER};
use switchboard_sip::support::ALLOW_IN_DIALOG as ALLOW;
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Headers, Host, Method, Request, Response, SipUri, Uri};

use super::legs::{Leg, LegId, Progress};
use super::timers::Timer;
use super::txns::Purpose;
use super::{Call, Output, Phase, copy_body_headers, live, to_tag, with_body};
use crate::messages::call_state::CallEventKind;
use crate::messages::registrar::Binding;
use crate::messages::sip_cluster::Origin;

impl Call {
    pub(super) fn route(&mut self, now: Instant) {
        let Some(route) = self.tenant.dial_plan.route(&self.dnis) else {
            let (status, cause) = if self.tenant.dial_plan.incomplete(&self.dnis) {
                (484, "incomplete-number")
            } else {
                (404, "unknown-number")
            };
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, dialed = %self.dnis,
                status, "no dial plan rule matches");
            self.fail(status, cause, None, now);
            return;
        };
        self.go_to(route.destination, route.number, now);
    }

    /// Sends the call to `destination` (of the dial plan, or a strategy's), dialed as
    /// `number`.
    pub(super) fn go_to(&mut self, destination: Destination, number: String, now: Instant) {
        match destination {
            Destination::Extension(dn) => {
                let Some(d) = self.tenant.registering(&dn) else {
                    tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %dn,
                        "dial plan names a DN that is not an extension");
                    self.fail(404, "unknown-number", None, now);
                    return;
                };
                let max = d.max_calls;
                // Recorded from its answer, as the DN's configuration says.
                self.pending_record |= d.record;
                self.callee.name = Some(dn.clone());
                if !self.dn_calls.acquire(&self.tenant.name, &dn, max) {
                    tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %dn,
                        "DN at its max-calls");
                    self.event(CallEventKind::DestinationBusy, "max-calls", 486);
                    self.fail(486, "busy", None, now);
                    return;
                }
                self.callee.counted = true;
                self.callee.dn = true;
                let ring = d
                    .no_answer_timeout
                    .map_or(self.config.no_answer, |s| Duration::from_secs(s.into()));
                self.timers.set(Timer::NoAnswer, now + ring);
                self.out.push_back(Output::Locate {
                    tenant: self.tenant.name.clone(),
                    aor: self.tenant.aor(&dn),
                });
            }
            Destination::Trunk(name) => {
                let gateway = self
                    .tenant
                    .trunks
                    .iter()
                    .find(|t| t.name == name)
                    .and_then(|t| Some((t.gateway?, t.transport)));
                let Some((gateway, transport)) = gateway else {
                    tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, trunk = %name,
                        "trunk has no usable gateway (host:port)");
                    self.fail(503, "no-gateway", None, now);
                    return;
                };
                self.callee.name = Some(number.clone());
                self.callee.trunk = true;
                let mut uri = SipUri::new(
                    Some(&number),
                    Host::from(gateway.ip()),
                    Some(gateway.port()),
                );
                if transport != Transport::Udp {
                    uri.params
                        .set("transport", Some(transport.to_string().into()));
                }
                let to = format!("<{uri}>");
                self.place(Uri::Sip(uri), to, gateway, transport, now);
            }
            Destination::Announcement(text) => {
                let Some((uri, addr)) = self.media_uri(&text) else {
                    tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, uri = %text,
                        "announcement names no configured media server");
                    self.fail(503, "no-media-server", None, now);
                    return;
                };
                self.callee.name = Some(text.clone());
                let to = format!("<{uri}>");
                self.place(uri, to, addr, Transport::Udp, now);
            }
            Destination::Reject(status) => {
                self.fail(status, "rejected", None, now);
            }
            Destination::RoutingPoint(rp) => self.at_routing_point(rp, now),
            Destination::Queue(q) => {
                tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, queue = %q,
                    "a queue is reached through a routing point's strategy, not dialed");
                self.fail(480, "not-routed", None, now);
            }
        }
    }

    /// An RFC 4240 URI whose host names a configured media server (or is an address): the
    /// URI to send, with the server's address as host, and where to send it.
    fn media_uri(&self, text: &str) -> Option<(Uri, SocketAddr)> {
        let Ok(Uri::Sip(mut uri)) = Uri::parse_str(text) else {
            return None;
        };
        let host = uri.host.to_string();
        let addr = match self
            .tenant
            .media_servers
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(&host))
        {
            Some(m) => m.address,
            None => SocketAddr::new(uri.host.ip()?, uri.port.unwrap_or(5060)),
        };
        uri.host = Host::from(addr.ip());
        uri.port = Some(addr.port());
        Some((Uri::Sip(uri), addr))
    }

    /// The bindings of the extension rung.
    pub fn located(&mut self, result: crate::Result<Vec<Binding>>, now: Instant) {
        if self.waiting().is_some() {
            self.agent_located(result.unwrap_or_default(), now);
            return;
        }
        if self.locating_supervisor() {
            self.call_supervisor(result.unwrap_or_default(), now);
            return;
        }
        if self.phase != Phase::Routing {
            return;
        }
        if self.calling_phone() && self.legs.a.invite.is_none() {
            self.call_phone(live(result.unwrap_or_default()), now);
            return;
        }
        let bindings = match result {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, error = %e,
                    "bindings unavailable");
                self.fail(480, "unavailable", None, now);
                return;
            }
        };
        let bindings = live(bindings);
        let dn = self.callee.name.clone().unwrap_or_default();
        if bindings.is_empty() {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %dn,
                "DN has no registered phone");
            self.fail(480, "not-registered", None, now);
            return;
        }
        if self.ring(&dn, bindings, None, now).is_empty() {
            self.fail(480, "not-registered", None, now);
        }
    }

    /// Rings every contact of `dn` at once, with `offer` in place of the caller's if given
    /// (see [`Call::place_with`]); the indexes of the legs placed.
    pub(super) fn ring(
        &mut self,
        dn: &str,
        bindings: Vec<Binding>,
        offer: Option<Bytes>,
        now: Instant,
    ) -> Vec<usize> {
        let to = format!("<{}>", self.tenant.aor(dn));
        // A leg is large and a Vec grows by four: room for exactly the legs rung.
        self.legs.b.reserve_exact(bindings.len());
        let mut legs = Vec::with_capacity(bindings.len());
        for b in bindings {
            let Ok(uri) = Uri::parse_str(&b.contact) else {
                continue;
            };
            let transport = Transport::from_via_name(&b.transport).unwrap_or(Transport::Udp);
            legs.push(self.legs.b.len());
            self.place_with(uri, to.clone(), b.source, transport, offer.clone(), now);
        }
        legs
    }

    /// Sends a B leg's INVITE, carrying the caller's offer.
    fn place(
        &mut self,
        uri: Uri,
        to: String,
        dest: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        self.place_with(uri, to, dest, transport, None, now);
    }

    /// As [`Call::place`], with `offer` in place of the caller's (empty: no offer, for a
    /// party that takes the place of another, RFC 3725).
    pub(super) fn place_with(
        &mut self,
        uri: Uri,
        to: String,
        dest: SocketAddr,
        transport: Transport,
        offer: Option<Bytes>,
        now: Instant,
    ) {
        self.phase = Phase::Ringing;
        self.next_call_id += 1;
        let call_id = self.local.call_id(self.next_call_id);
        let tag = switchboard_sip::token::<8>();
        // The caller's INVITE, or for a call placed for a desktop the phone's offer.
        let empty = Headers::default();
        let offer_given = offer.is_some();
        let (h, body) = match (self.legs.a.invite.as_deref(), self.originating()) {
            _ if offer_given => (&empty, offer.unwrap_or_default()),
            (_, Some(o)) => (&empty, o.offer.clone().unwrap_or_default()),
            (Some(a_invite), None) => (&a_invite.headers, a_invite.body.clone()),
            (None, None) => return,
        };
        let from = match &self.origin {
            Origin::Phone(dn) => format!("<sip:{dn}@{}>;tag={tag}", self.tenant.domain),
            _ => match h.from() {
                Some(Ok(mut from)) => {
                    from.params = Default::default();
                    format!("{from};tag={tag}")
                }
                // A transfer placed by the core: the caller as it came in.
                _ if !self.caller_uri.is_empty() => format!("<{}>;tag={tag}", self.caller_uri),
                _ => format!("<sip:anonymous@{}>;tag={tag}", self.tenant.domain),
            },
        };
        let max_forwards = match h.max_forwards() {
            Some(Ok(n)) => n.saturating_sub(1).min(70),
            _ => 70,
        };
        // Behind a proxy, the callee is reached through it, on the flow it holds.
        let (dest, transport, route) = match self.outbound {
            Some(proxy) => (
                proxy,
                Transport::Udp,
                Some(crate::messages::sip_proxy::route_through(
                    proxy, dest, transport,
                )),
            ),
            None => (dest, transport, None),
        };
        let (via, branch) = self.local.via(transport);
        let mut headers = Headers::with_capacity(12);
        headers.push(HeaderName::Via, via);
        if let Some(route) = route {
            headers.push(HeaderName::Route, route);
        }
        headers.push(HeaderName::MaxForwards, max_forwards.to_string());
        headers.push(HeaderName::From, from);
        headers.push(HeaderName::To, to);
        headers.push(HeaderName::CallId, call_id.clone());
        headers.push(HeaderName::CSeq, "1 INVITE");
        headers.push(HeaderName::Contact, self.local.contact(transport));
        headers.push(HeaderName::Allow, ALLOW);
        // Offer the callee session timers, at the caller's interval if it has one.
        let interval = self
            .legs
            .a
            .timer
            .as_ref()
            .map_or(self.config.session_expires, |t| t.interval);
        headers.push(HeaderName::Supported, TIMER);
        headers.push(HeaderName::SessionExpires, interval.as_secs().to_string());
        headers.push(HeaderName::MinSe, self.config.min_se.as_secs().to_string());
        if self.originating().is_some() || (offer_given && !body.is_empty()) {
            headers.push(HeaderName::ContentType, "application/sdp");
        } else {
            copy_body_headers(h, &mut headers);
        }
        headers.push(HeaderName::ContentLength, "0");
        let mut invite = Request {
            method: Method::Invite,
            uri,
            headers,
            body,
        };
        // To the proxy, an INVITE larger than a datagram safely carries goes over TCP (RFC
        // 3261 18.1.1), and so does the rest of the leg.
        let (transport, branch) = if self.outbound.is_some()
            && invite.estimated_len() > switchboard_sip::transport::LARGE_REQUEST
        {
            let (via, branch) = self.local.via(Transport::Tcp);
            invite.headers.remove(&HeaderName::Via);
            invite.headers.push_front(HeaderName::Via, via);
            (Transport::Tcp, branch)
        } else {
            (transport, branch)
        };
        if self.legs.b.capacity() == 0 {
            self.legs.b.reserve_exact(1);
        }
        let mut leg = Leg::new(call_id, tag, dest, transport);
        leg.target = invite.uri.to_string();
        leg.invite = Some(Box::new(invite.clone()));
        let index = self.legs.push(leg);
        self.send_request(LegId::B(index), invite, branch, Purpose::Invite, now);
    }

    /// A response to a B leg's INVITE.
    pub(super) fn b_response(&mut self, i: usize, r: Response, now: Instant) {
        let status = r.status;
        if status == 100 {
            return;
        }
        if status < 200 {
            if r.headers
                .to()
                .and_then(Result::ok)
                .is_some_and(|t| t.tag().is_some())
                && self.legs.b[i].dialog.is_none()
                && let Some(invite) = &self.legs.b[i].invite
                && let Ok(d) = Dialog::as_uac(invite, &r)
            {
                self.legs.b[i].dialog = Some(d);
            }
            match self.legs.b[i].progress {
                Progress::Calling => self.legs.b[i].progress = Progress::Early,
                Progress::Cancelling => {
                    self.send_cancel(LegId::B(i), now);
                    return;
                }
                _ => {}
            }
            if !self.waiting_provisional(i) && self.phase == Phase::Ringing {
                self.ringing(&r, now);
            }
            return;
        }
        if self.waiting_final(i, &r, now) {
            return;
        }
        if status < 300 {
            self.b_answered(i, r, now);
            return;
        }
        self.legs.b[i].progress = Progress::Failed(status);
        if self.phase == Phase::Ringing && self.legs.all_gone() {
            self.all_failed(now);
        }
    }

    /// A provisional response from a ringing B leg, passed to the caller.
    pub(super) fn ringing(&mut self, r: &Response, now: Instant) {
        if self.originating().is_some() {
            if !self.rung {
                self.rung = true;
                self.event(CallEventKind::Ringing, "", 0);
            }
            return;
        }
        let first = self.legs.a.dialog.is_none();
        let status = if r.body.is_empty() {
            180
        } else {
            r.status.max(180)
        };
        let (Some(invite), Some(a_invite)) = (self.initial_invite(), self.legs.a.invite.as_deref())
        else {
            return;
        };
        let mut response = establishing(
            a_invite,
            status,
            &self.legs.a.tag,
            &self.local.contact(self.legs.a.transport),
        );
        if !r.body.is_empty() {
            response = with_body(response, &r.headers, r.body.clone());
        }
        if first {
            if let Ok(d) = Dialog::as_uas(a_invite, &response) {
                self.legs.a.dialog = Some(d);
            }
            self.event(CallEventKind::Ringing, "", 0);
        }
        self.provisional(invite, response, now);
    }

    /// Sends a provisional response to the caller: reliably if it asked (one at a time, the
    /// next once the last is PRACKed), or once.
    pub(super) fn provisional(&mut self, invite: u32, response: Response, now: Instant) {
        let response = match self.reliability.as_mut() {
            Some(r) => r.provisional(response, self.config.timers.t1, now),
            None => Some(response),
        };
        if let Some(response) = response {
            self.respond_to(invite, response, now);
        }
    }

    /// The caller acknowledges a reliable provisional response (RFC 3262 3): what waited for
    /// the PRACK goes now, the callee's answer or the next 18x.
    pub(super) fn prack(&mut self, id: u32, request: &Request, now: Instant) {
        let a_seq = self.legs.a.invite_seq;
        let released = self
            .reliability
            .as_mut()
            .and_then(|r| r.prack(&request.headers, a_seq));
        let status = if released.is_some() { 200 } else { 481 };
        let r = self.response_to(id, status);
        self.respond_to(id, r, now);
        match released {
            Some(Released::Answer((i, answer))) => self.b_answered(i, answer, now),
            Some(Released::Provisional(next)) => {
                if let Some(invite) = self.initial_invite() {
                    self.provisional(invite, next, now);
                }
            }
            Some(Released::Nothing) | None => {}
        }
    }

    /// B leg `i`'s dialog from its 2xx: made, or brought up to date.
    pub(super) fn take_dialog(&mut self, i: usize, r: &Response) {
        match &mut self.legs.b[i].dialog {
            Some(d) if d.id.remote_tag == to_tag(r) => {
                let _ = d.update_from_response(r);
            }
            _ => {
                if let Some(invite) = &self.legs.b[i].invite
                    && let Ok(d) = Dialog::as_uac(invite, r)
                {
                    self.legs.b[i].dialog = Some(d);
                }
            }
        }
    }

    fn b_answered(&mut self, i: usize, r: Response, now: Instant) {
        self.take_dialog(i, &r);
        let seq = self.legs.b[i].invite_seq;
        if matches!(self.legs.b[i].progress, Progress::Answered | Progress::Over) {
            // A retransmission: the ACK again once there is one (it may wait for the caller's).
            if let Some(ack) = self.legs.b[i].ack_again() {
                let l = &self.legs.b[i];
                self.out.push_back(Output::Send {
                    transport: l.transport,
                    dest: l.peer,
                    bytes: ack,
                });
            }
            return;
        }
        if self.phase != Phase::Ringing || self.legs.winner.is_some() {
            // Another fork won, or the caller left: take this answer and end it.
            self.legs.b[i].progress = Progress::Answered;
            self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
            self.bye(LegId::B(i), now);
            return;
        }
        // The caller may not have acknowledged the early description yet: the answer then
        // waits for its PRACK (RFC 3262 3).
        let r = match self.reliability.as_mut() {
            Some(reliability) => match reliability.answer((i, r)) {
                Ok(()) => return,
                Err((_, r)) => r,
            },
            None => r,
        };
        self.legs.winner = Some(i);
        self.legs.b[i].progress = Progress::Answered;
        self.timers.stop(Timer::NoAnswer);
        self.legs.b[i].timer = SessionTimer::from_answer(&r.headers);
        for j in 0..self.legs.b.len() {
            if j != i {
                self.cancel_leg(j, now);
            }
        }
        if self.originating().is_some() {
            self.callee_answered(i, seq, &r.body, now);
            return;
        }
        let (Some(invite), Some(a_invite)) = (self.initial_invite(), self.legs.a.invite.as_deref())
        else {
            return;
        };
        let mut ok = establishing(
            a_invite,
            200,
            &self.legs.a.tag,
            &self.local.contact(self.legs.a.transport),
        )
        .with_header(HeaderName::Allow, ALLOW);
        if let Some(timer) = self.legs.a.timer.as_ref() {
            session_timer::add_to_response(&mut ok.headers, timer);
        }
        let offered = a_invite.body.clone();
        if !r.body.is_empty() {
            ok = with_body(ok, &r.headers, r.body.clone());
        }
        if let Ok(d) = Dialog::as_uas(a_invite, &ok) {
            self.legs.a.dialog = Some(d);
        }
        self.legs.get_mut(LegId::A).sent_sdp(&r.body);
        self.legs.get_mut(LegId::B(i)).sent_sdp(&offered);
        self.legs.a.progress = Progress::Answered;
        let a_seq = self.legs.a.invite_seq;
        self.respond_to(invite, ok.clone(), now);
        self.await_ack(
            LegId::A,
            a_seq,
            ok.to_bytes(),
            Some((LegId::B(i), seq)),
            now,
        );
        self.established(i, now);
    }

    /// The call is answered by B leg `i`.
    pub(super) fn established(&mut self, i: usize, now: Instant) {
        self.phase = Phase::Established;
        for l in [LegId::A, LegId::B(i)] {
            if let Some(timer) = self.legs.get_mut(l).timer.as_mut() {
                timer.refreshed(now);
            }
        }
        if !self.config.probe_interval.is_zero() {
            self.timers
                .set(Timer::Probe, now + self.config.probe_interval);
        }
        if self.waiting_established(i, now) {
            return;
        }
        self.event(CallEventKind::Established, "", 0);
    }

    /// Every B leg failed: the caller gets the status that says most.
    fn all_failed(&mut self, now: Instant) {
        let statuses: Vec<u16> = self
            .legs
            .b
            .iter()
            .filter_map(|l| match l.progress {
                Progress::Failed(s) => Some(s),
                _ => None,
            })
            .collect();
        let (status, cause) = if statuses.iter().any(|&s| s == 486 || s == 600) {
            (486, "busy")
        } else if statuses.contains(&603) {
            (603, "rejected")
        } else if self.callee.trunk {
            // A carrier's answer means something to the caller: pass it on (a 5xx as 502,
            // since the call, not the core, failed there).
            let s = statuses.first().copied().unwrap_or(480);
            (if (500..600).contains(&s) { 502 } else { s }, "failed")
        } else if statuses.iter().all(|&s| s == 408) {
            (408, "no-answer")
        } else {
            (480, "unavailable")
        };
        if status == 486 {
            self.event(CallEventKind::DestinationBusy, "busy", 486);
        }
        self.fail(status, cause, None, now);
    }
}
