//! A call at a routing point: it asks `ors` for a route and waits, hearing the treatments the
//! strategy applies, until it is routed (design.md "A call through the core", steps 3 to 7).
//!
//! Treatments that need media are legs to a media server, called with an RFC 4240 URI
//! (`sip:annc@<server>;play=<prompt>`, `sip:dialog@<server>;voicexml=<uri>` to collect
//! digits). The first leg of a caller not yet answered carries the caller's offer and its
//! answer answers the caller. Once the caller is answered, every new party (the next
//! treatment, then the agent) is called without an offer; its offer is given to the caller
//! in a re-INVITE, and the caller's answer goes back in the new party's ACK before the old
//! party is hung up (RFC 3725 flow I, which works whether or not the caller sent an offer
//! at first). A media server that refuses or does not answer is skipped for the next one;
//! when none is left the treatment is not applied and the call keeps waiting.
//!
//! The agent a queue reserves is rung at its DN's contacts; no answer within the ring time
//! (RONA) stops the ringing and the call waits again, on the music it never stopped hearing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_routing::dialplan::Destination;
use switchboard_routing::strategy::{Route, Treatment};
use switchboard_sip::dialog::Dialog;
use switchboard_sip::sdp::{self, Direction};
use switchboard_sip::transport::Transport;
use switchboard_sip::{Headers, Response, Uri};

use super::{Call, CallEventKind, LegId, Output, Phase, Progress, Purpose};
use crate::ors::{Order, Report, RouteRequest};
use crate::registrar::Binding;

/// How long a media server has to answer a treatment before the next one is tried.
const MEDIA_ANSWER: Duration = Duration::from_secs(4);

/// What a call asks of `ors`.
#[derive(Debug)]
pub enum ToOrs {
    Request(Box<RouteRequest>),
    Report(Report),
}

/// The routing point a call waits at.
#[derive(Debug)]
pub(super) struct Waiting {
    pub(super) number: String,
    default: String,
    /// When the default destination takes the call.
    deadline: Instant,
    queue: String,
    treatment: Option<Treating>,
    agent: Option<Ringing>,
    /// The B leg the caller is being moved to (a re-INVITE to the caller in progress).
    pub(super) bridging: Option<usize>,
    /// Whether Queued was reported as the agent rung was let go, so that the session's
    /// putting the call back in its queue is not reported twice.
    requeued: bool,
}

#[derive(Debug)]
struct Treating {
    treatment: Treatment,
    /// The media server tried (index in the tenant's list), and its leg.
    server: usize,
    leg: Option<usize>,
    answered: bool,
    /// When the server must have answered.
    answer_by: Option<Instant>,
}

#[derive(Debug)]
struct Ringing {
    agent: String,
    dn: String,
    /// Its legs (one per registered contact), once located.
    legs: Vec<usize>,
    until: Instant,
}

impl Call {
    /// The dial plan sent the call to routing point `number`.
    pub(super) fn at_routing_point(&mut self, number: String, now: Instant) {
        let Some(rp) = self.tenant.routing_point(&number).cloned() else {
            self.fail(404, "unknown-number", None, now);
            return;
        };
        let timeout = if rp.timeout_secs == 0 {
            Duration::from_secs(300)
        } else {
            Duration::from_secs(rp.timeout_secs.into())
        };
        self.destination = Some(number.clone());
        self.phase = Phase::Ringing;
        self.waiting = Some(Box::new(Waiting {
            number: number.clone(),
            default: rp.default_destination.clone(),
            deadline: now + timeout,
            queue: String::new(),
            treatment: None,
            agent: None,
            bridging: None,
            requeued: false,
        }));
        self.event(CallEventKind::RouteRequest, "", 0);
        self.out
            .push_back(Output::Routing(ToOrs::Request(Box::new(RouteRequest {
                tenant: self.tenant.clone(),
                call: self.id.to_string(),
                routing_point: number,
                strategy: rp.strategy,
                ani: self.ani.clone(),
                dnis: self.dnis.clone(),
                user_data: self.user_data.clone(),
            }))));
    }

    pub(super) fn waiting_number(&self) -> String {
        self.waiting
            .as_ref()
            .map(|w| w.number.clone())
            .unwrap_or_default()
    }

    pub(super) fn waiting_queue(&self) -> String {
        self.waiting
            .as_ref()
            .map(|w| w.queue.clone())
            .unwrap_or_default()
    }

    pub(super) fn waiting_treatment(&self) -> String {
        self.waiting
            .as_ref()
            .and_then(|w| w.treatment.as_ref())
            .map(|t| t.treatment.kind().to_owned())
            .unwrap_or_default()
    }

    fn report(&mut self, report: Report) {
        self.out.push_back(Output::Routing(ToOrs::Report(report)));
    }

    /// What the routing session asks.
    pub fn routing(&mut self, order: Order, now: Instant) {
        if self.waiting.is_none() || self.phase == Phase::Ending {
            return;
        }
        match order {
            Order::Treat(t) => self.treat(t, now),
            Order::Collect { digits, uri } => self.treat(Treatment::Collect { digits, uri }, now),
            Order::SetData { key, value } => {
                self.user_data.insert(key, value);
                self.event(CallEventKind::AttachedDataChanged, "", 0);
            }
            Order::Queued { queue } => {
                let Some(w) = self.waiting.as_mut() else {
                    return;
                };
                let again = std::mem::take(&mut w.requeued) && w.queue == queue;
                w.queue = queue;
                if !again {
                    self.event(CallEventKind::Queued, "", 0);
                }
            }
            Order::Route(route) => self.route_to(route, now),
            Order::Unreserved { agent } => {
                if self
                    .waiting
                    .as_ref()
                    .and_then(|w| w.agent.as_ref())
                    .is_some_and(|r| r.agent == agent)
                {
                    self.stop_ringing_agent("agent-unavailable", now);
                    self.report(Report::RouteFailed { rona: None });
                }
            }
        }
    }

    fn caller_answered(&self) -> bool {
        self.a.progress == Progress::Answered
    }

    fn treat(&mut self, treatment: Treatment, now: Instant) {
        match &treatment {
            Treatment::Ringback => {
                if !self.caller_answered()
                    && let Some(invite) = self.initial_invite()
                {
                    let r = self.response_to(invite, 180);
                    self.provisional(invite, r, now);
                }
                self.set_treatment(treatment, None, now);
                self.event(CallEventKind::TreatmentApplied, "", 0);
            }
            Treatment::Silence => {
                self.end_treatment_leg(now);
                self.set_treatment(treatment, None, now);
                self.event(CallEventKind::TreatmentApplied, "", 0);
            }
            _ => {
                if self.tenant.media_servers.is_empty() {
                    self.set_treatment(treatment, None, now);
                    self.treatment_not_applied();
                    return;
                }
                self.set_treatment(treatment, Some(0), now);
                self.call_media_server(now);
            }
        }
    }

    /// Makes `treatment` the current one. The leg of the one before stays until the new
    /// one has the caller; one still ringing stops.
    fn set_treatment(&mut self, treatment: Treatment, server: Option<usize>, now: Instant) {
        let Some(w) = self.waiting.as_mut() else {
            return;
        };
        let before = w.treatment.replace(Treating {
            treatment,
            server: server.unwrap_or(0),
            leg: None,
            answered: false,
            answer_by: None,
        });
        if let Some(leg) = before.and_then(|t| t.leg) {
            self.cancel_leg(leg, now);
        }
    }

    /// Calls the current media server for the current treatment.
    fn call_media_server(&mut self, now: Instant) {
        let Some(w) = self.waiting.as_ref() else {
            return;
        };
        let Some(t) = w.treatment.as_ref() else {
            return;
        };
        let Some(server) = self.tenant.media_servers.get(t.server) else {
            self.treatment_not_applied();
            return;
        };
        let addr = server.address;
        let user = match &t.treatment {
            Treatment::Collect { .. } => "dialog",
            _ => "annc",
        };
        let params = match &t.treatment {
            Treatment::Music(p) => format!(";play={p};repeat=forever"),
            Treatment::Announcement(p) | Treatment::Busy(p) => format!(";play={p}"),
            Treatment::Collect { digits, uri } => format!(";voicexml={uri};maxdigits={digits}"),
            Treatment::Ringback | Treatment::Silence => String::new(),
        };
        let text = format!("sip:{user}@{}:{}{params}", addr.ip(), addr.port());
        let uri = match Uri::parse_str(&text) {
            Ok(uri) => uri,
            Err(_) => {
                // A prompt that does not make a URI: no server can play it.
                tracing::warn!(tenant = %self.tenant.name, call = %self.id, uri = %text,
                    "treatment does not make a media server URI");
                self.treatment_not_applied();
                return;
            }
        };
        let offer = if self.caller_answered() {
            Some(Bytes::new())
        } else {
            // The first party of a caller not answered yet answers its offer: nothing else
            // may still ring it.
            self.cancel_waiting_legs(now);
            None
        };
        let index = self.b.len();
        let to = format!("<{uri}>");
        self.place_with(uri, to, addr, Transport::Udp, offer, now);
        if let Some(t) = self.waiting.as_mut().and_then(|w| w.treatment.as_mut()) {
            t.leg = Some(index);
            t.answer_by = Some(now + MEDIA_ANSWER);
        }
    }

    fn treatment_not_applied(&mut self) {
        self.event(CallEventKind::TreatmentNotApplied, "no-media-server", 0);
        self.report(Report::TreatmentFailed);
    }

    /// Hangs up (or stops ringing) the media server legs of the call, but not the agent's.
    fn end_treatment_leg(&mut self, now: Instant) {
        let agent_legs: Vec<usize> = self
            .waiting
            .as_ref()
            .and_then(|w| w.agent.as_ref())
            .map(|r| r.legs.clone())
            .unwrap_or_default();
        let mut ended = false;
        for i in 0..self.b.len() {
            if agent_legs.contains(&i) {
                continue;
            }
            match self.b[i].progress {
                Progress::Answered => {
                    self.bye(LegId::B(i), now);
                    ended = true;
                }
                Progress::Calling | Progress::Early => self.cancel_leg(i, now),
                _ => {}
            }
        }
        if ended {
            self.event(CallEventKind::TreatmentEnd, "", 0);
        }
    }

    /// Stops every leg still ringing (not answered).
    fn cancel_waiting_legs(&mut self, now: Instant) {
        for i in 0..self.b.len() {
            if matches!(self.b[i].progress, Progress::Calling | Progress::Early) {
                self.cancel_leg(i, now);
            }
        }
    }

    fn route_to(&mut self, route: Route, now: Instant) {
        let destination = match route {
            Route::Agent { agent, dn } => {
                let ring = self
                    .tenant
                    .dns
                    .get(&dn)
                    .and_then(|d| d.no_answer_timeout)
                    .map_or(self.config.no_answer, |s| Duration::from_secs(s.into()));
                if let Some(w) = self.waiting.as_mut() {
                    w.agent = Some(Ringing {
                        agent,
                        dn: dn.clone(),
                        legs: Vec::new(),
                        until: now + ring,
                    });
                }
                self.out.push_back(Output::Locate {
                    tenant: self.tenant.name.clone(),
                    aor: self.tenant.aor(&dn),
                });
                return;
            }
            Route::Default => {
                let text = self
                    .waiting
                    .as_ref()
                    .map(|w| w.default.clone())
                    .unwrap_or_default();
                match Destination::parse(&text) {
                    Ok(d) => d,
                    Err(_) => Destination::Reject(480),
                }
            }
            Route::Dn(dn) => Destination::Extension(dn),
            Route::Number(n) => match self.tenant.dial_plan.route(&n) {
                Some(r) => {
                    self.divert(r.destination, r.number, now);
                    return;
                }
                None => Destination::Reject(404),
            },
            Route::Reject(status) => Destination::Reject(status),
        };
        let number = self.dnis.clone();
        self.divert(destination, number, now);
    }

    /// Leaves the routing point for `destination`, as the dial plan would have sent the call
    /// there.
    fn divert(&mut self, destination: Destination, number: String, now: Instant) {
        let Some(w) = self.waiting.take() else {
            return;
        };
        self.report(Report::Gone);
        if let Destination::RoutingPoint(rp) = &destination
            && *rp == w.number
        {
            // Back to the same routing point would loop.
            self.fail(480, "routing-loop", None, now);
            return;
        }
        self.waiting = Some(w);
        self.event(CallEventKind::Diverted, "", 0);
        self.waiting = None;
        if self.caller_answered() {
            // The caller hears a treatment: a new party replaces it, as an agent would.
            match destination {
                Destination::Reject(_) => {
                    self.end(CallEventKind::Released, "rejected", 0, None, now);
                }
                Destination::Extension(dn) => {
                    self.waiting = Some(Box::new(Waiting {
                        number: String::new(),
                        default: String::new(),
                        deadline: now + Duration::from_secs(86_400),
                        queue: String::new(),
                        treatment: None,
                        agent: None,
                        bridging: None,
                        requeued: false,
                    }));
                    self.route_to(
                        Route::Agent {
                            agent: String::new(),
                            dn,
                        },
                        now,
                    );
                }
                _ => {
                    tracing::info!(tenant = %self.tenant.name, call = %self.id,
                        "a treated call can be diverted to a DN only; ended");
                    self.end(CallEventKind::Released, "not-routed", 0, None, now);
                }
            }
            return;
        }
        self.cancel_waiting_legs(now);
        self.phase = Phase::Routing;
        self.destination = None;
        self.go_to(destination, number, now);
    }

    /// The bindings of the reserved agent's DN: ring them.
    pub(super) fn agent_located(&mut self, bindings: Vec<Binding>, now: Instant) {
        let Some(dn) = self
            .waiting
            .as_ref()
            .and_then(|w| w.agent.as_ref())
            .map(|r| r.dn.clone())
        else {
            return;
        };
        let now_ms = crate::unix_ms();
        let mut bindings: Vec<Binding> = bindings
            .into_iter()
            .filter(|b| b.expires_at_ms > now_ms)
            .collect();
        bindings.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
        if bindings.is_empty() {
            tracing::info!(tenant = %self.tenant.name, call = %self.id, %dn,
                "reserved agent's DN has no registered phone");
            self.stop_ringing_agent("not-registered", now);
            self.report(Report::RouteFailed { rona: None });
            return;
        }
        let offer = if self.caller_answered() {
            Some(Bytes::new())
        } else {
            // The agent answers the caller's offer: the treatment still ringing stops.
            self.cancel_waiting_legs(now);
            None
        };
        self.destination = Some(dn.clone());
        self.to_dn = true;
        let to = format!("<{}>", self.tenant.aor(&dn));
        let mut legs = Vec::new();
        for b in bindings {
            let Ok(uri) = Uri::parse_str(&b.contact) else {
                continue;
            };
            let transport = if b.transport.eq_ignore_ascii_case("tcp") {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            legs.push(self.b.len());
            self.place_with(uri, to.clone(), b.source, transport, offer.clone(), now);
        }
        if !self.caller_answered() {
            self.phase = Phase::Ringing;
        } else {
            self.phase = Phase::Established;
        }
        if let Some(r) = self.waiting.as_mut().and_then(|w| w.agent.as_mut()) {
            r.legs = legs;
        }
    }

    /// Stops ringing the reserved agent; the call waits again.
    fn stop_ringing_agent(&mut self, cause: &str, now: Instant) {
        let Some(r) = self.waiting.as_mut().and_then(|w| w.agent.take()) else {
            return;
        };
        for &i in &r.legs {
            self.cancel_leg(i, now);
        }
        let number = self.waiting.as_ref().map(|w| w.number.clone());
        self.destination = number;
        if let Some(w) = self.waiting.as_mut() {
            w.requeued = !w.queue.is_empty();
        }
        let rung = self.to_dn;
        self.to_dn = false;
        self.rung = false;
        let left = if rung { vec![r.dn] } else { Vec::new() };
        self.event_leaving(CallEventKind::Queued, cause, 0, left);
    }

    /// Which routing-point party B leg `i` is, if the call waits: the current treatment's
    /// (`Some(true)`), the agent's (`Some(false)`), or neither (a treatment replaced).
    fn waiting_party(&self, i: usize) -> Option<Option<bool>> {
        let w = self.waiting.as_ref()?;
        Some(if w.treatment.as_ref().and_then(|t| t.leg) == Some(i) {
            Some(true)
        } else if w.agent.as_ref().is_some_and(|a| a.legs.contains(&i)) {
            Some(false)
        } else {
            None
        })
    }

    /// A provisional response of B leg `i` while the call waits; whether it was handled
    /// here (not passed to the caller).
    pub(super) fn waiting_provisional(&mut self, i: usize) -> bool {
        match self.waiting_party(i) {
            None => false,
            Some(Some(false)) => {
                // The agent's phone rings: reported once; passed to a caller not answered.
                if self.caller_answered() {
                    if !self.rung {
                        self.rung = true;
                        self.event(CallEventKind::Ringing, "", 0);
                    }
                    return true;
                }
                false
            }
            // A media server's progress is not the caller's business.
            Some(_) => true,
        }
    }

    /// A final response of B leg `i` while the call waits; whether it was handled here.
    pub(super) fn waiting_final(&mut self, i: usize, r: &Response, now: Instant) -> bool {
        let Some(party) = self.waiting_party(i) else {
            return false;
        };
        if r.status >= 300 {
            self.b[i].progress = Progress::Failed(r.status);
            match party {
                Some(true) => self.media_server_failed(now),
                Some(false) if self.agent_legs_failed() => {
                    self.stop_ringing_agent("agent-unavailable", now);
                    self.report(Report::RouteFailed { rona: None });
                }
                _ => {}
            }
            return true;
        }
        if matches!(self.b[i].progress, Progress::Answered | Progress::Over) {
            // A retransmission: answered as before.
            return false;
        }
        match party {
            None => {
                // A treatment replaced while its server answered: hung up.
                self.take_dialog(i, r);
                self.b[i].progress = Progress::Answered;
                let seq = self.b[i].invite_seq;
                self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
                self.bye(LegId::B(i), now);
                true
            }
            // With the caller answered, the new party takes the place of the one it hears;
            // otherwise it answers the caller as any callee does (see `established`).
            Some(_) if self.caller_answered() => {
                self.bridge(i, r.clone(), now);
                true
            }
            Some(_) => false,
        }
    }

    /// B leg `i`'s dialog from its 2xx.
    fn take_dialog(&mut self, i: usize, r: &Response) {
        match &mut self.b[i].dialog {
            Some(d) if d.id.remote_tag == super::to_tag(r) => {
                let _ = d.update_from_response(r);
            }
            _ => {
                if let Some(invite) = &self.b[i].invite
                    && let Ok(d) = Dialog::as_uac(invite, r)
                {
                    self.b[i].dialog = Some(d);
                }
            }
        }
    }

    fn agent_legs_failed(&self) -> bool {
        self.waiting
            .as_ref()
            .and_then(|w| w.agent.as_ref())
            .is_some_and(|a| {
                a.legs
                    .iter()
                    .all(|&i| matches!(self.b[i].progress, Progress::Failed(_) | Progress::Over))
            })
    }

    /// The media server of the treatment refused or did not answer: the next one.
    fn media_server_failed(&mut self, now: Instant) {
        let Some(t) = self.waiting.as_mut().and_then(|w| w.treatment.as_mut()) else {
            return;
        };
        let failed = self
            .tenant
            .media_servers
            .get(t.server)
            .map(|m| m.name.clone());
        tracing::warn!(tenant = %self.tenant.name, call = %self.id, server = ?failed,
            "media server did not apply the treatment: trying the next");
        t.server += 1;
        t.leg = None;
        t.answer_by = None;
        if t.server < self.tenant.media_servers.len() {
            self.call_media_server(now);
        } else {
            self.treatment_not_applied();
        }
    }

    /// The caller, answered already, is moved to B leg `i`, which answered with an offer.
    fn bridge(&mut self, i: usize, r: Response, now: Instant) {
        self.take_dialog(i, &r);
        self.b[i].progress = Progress::Answered;
        let busy = self.waiting.as_ref().is_some_and(|w| w.bridging.is_some());
        let body = match self.a.sdp.as_deref() {
            Some(previous) => sdp::reoffered(previous, &r.body, Direction::SendRecv),
            None => sdp::redirected(&r.body, Direction::SendRecv),
        };
        let (Some(body), false) = (body, busy) else {
            // No offer to give the caller, or a move in progress: this party goes.
            tracing::info!(tenant = %self.tenant.name, call = %self.id, busy,
                "a party answered without a usable offer, or while another joins: hung up");
            let seq = self.b[i].invite_seq;
            self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
            self.bye(LegId::B(i), now);
            return;
        };
        if let Some(w) = self.waiting.as_mut() {
            w.bridging = Some(i);
        }
        self.offer_for(LegId::A, body, Purpose::Bridge(i), now);
    }

    /// The caller answered the offer of B leg `i` (or refused it).
    pub(super) fn bridged(&mut self, i: usize, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        if let Some(w) = self.waiting.as_mut() {
            w.bridging = None;
        }
        let seq = self.b[i].invite_seq;
        if !(200..300).contains(&r.status) {
            tracing::warn!(tenant = %self.tenant.name, call = %self.id, status = r.status,
                "the caller refused the offer of its next party");
            self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
            self.bye(LegId::B(i), now);
            return;
        }
        self.session_answered(LegId::A, &r, now);
        self.send_ack(LegId::B(i), seq, r.body.clone(), &r.headers, now);
        let old = self.winner.replace(i);
        if let Some(old) = old.filter(|&o| o != i)
            && self.b[old].progress == Progress::Answered
        {
            self.bye(LegId::B(old), now);
            self.event(CallEventKind::TreatmentEnd, "", 0);
        }
        self.b[i].timer = None;
        self.established(i, now);
    }

    /// Called by `established` for a waiting call: whether leg `i` is the treatment (the
    /// call keeps waiting, and TreatmentApplied is reported) or the agent (the call leaves
    /// the routing point: RouteUsed, then Established as for any call).
    pub(super) fn waiting_established(&mut self, i: usize, now: Instant) -> bool {
        let Some(w) = self.waiting.as_mut() else {
            return false;
        };
        if w.treatment.as_ref().and_then(|t| t.leg) == Some(i) {
            if let Some(t) = w.treatment.as_mut() {
                t.answered = true;
                t.answer_by = None;
            }
            self.event(CallEventKind::TreatmentApplied, "", 0);
            return true;
        }
        if !w.agent.as_ref().is_some_and(|a| a.legs.contains(&i)) {
            return false;
        }
        let agent = w.agent.take().expect("checked");
        let at_routing_point = !w.number.is_empty();
        // The treatment goes once the agent has the caller.
        let treatment_leg = w.treatment.as_ref().and_then(|t| t.leg).filter(|&l| l != i);
        for &j in agent.legs.iter().filter(|&&j| j != i) {
            self.cancel_leg(j, now);
        }
        if let Some(l) = treatment_leg
            && matches!(self.b[l].progress, Progress::Calling | Progress::Early)
        {
            self.cancel_leg(l, now);
        }
        // A DN the strategy diverted to (no routing point left) reported Diverted already.
        if at_routing_point {
            self.event(CallEventKind::RouteUsed, "", 0);
            self.report(Report::Routed);
        }
        self.waiting = None;
        false
    }

    /// A BYE from B leg `i` while waiting: a treatment that ended (an announcement played,
    /// digits collected). Whether it was handled here.
    pub(super) fn waiting_bye(&mut self, i: usize, body: &[u8]) -> bool {
        let Some(w) = self.waiting.as_mut() else {
            return false;
        };
        let Some(t) = w.treatment.as_mut().filter(|t| t.leg == Some(i)) else {
            return false;
        };
        let collect = matches!(t.treatment, Treatment::Collect { .. });
        let blocks = t.treatment.blocks();
        t.leg = None;
        self.b[i].progress = Progress::Over;
        self.b[i].dialog = None;
        self.event(CallEventKind::TreatmentEnd, "", 0);
        if blocks {
            let digits = collect.then(|| collected_digits(body)).flatten();
            self.report(Report::TreatmentEnded { digits });
        }
        true
    }

    /// The routing point's deadlines: its timeout, a media server's answer, the agent's ring.
    pub(super) fn waiting_due(&self) -> Option<Instant> {
        let w = self.waiting.as_ref()?;
        [
            Some(w.deadline),
            w.treatment.as_ref().and_then(|t| t.answer_by),
            w.agent.as_ref().map(|a| a.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn waiting_timeout(&mut self, now: Instant) {
        let Some(w) = self.waiting.as_ref() else {
            return;
        };
        if w.agent.as_ref().is_some_and(|a| a.until <= now) {
            let agent = w
                .agent
                .as_ref()
                .map(|a| a.agent.clone())
                .unwrap_or_default();
            tracing::info!(tenant = %self.tenant.name, call = %self.id, %agent,
                "reserved agent did not answer (RONA): the call waits again");
            self.stop_ringing_agent("rona", now);
            let rona = (!agent.is_empty()).then_some(agent);
            self.report(Report::RouteFailed { rona });
        }
        let Some(w) = self.waiting.as_ref() else {
            return;
        };
        if let Some(t) = w.treatment.as_ref()
            && t.answer_by.is_some_and(|at| at <= now)
            && let Some(leg) = t.leg
        {
            self.cancel_leg(leg, now);
            self.media_server_failed(now);
        }
        if self.waiting.as_ref().is_some_and(|w| w.deadline <= now) {
            tracing::info!(tenant = %self.tenant.name, call = %self.id,
                "routing point timeout: default destination");
            self.stop_ringing_agent("timeout", now);
            self.route_to(Route::Default, now);
        }
    }

    /// The call ends while waiting: its session is told, and a caller who hung up is
    /// reported as abandoned.
    pub(super) fn left_routing_point(&mut self, kind: CallEventKind, cause: &str) -> CallEventKind {
        // Forgotten once the end is reported, which names the routing point and queue.
        if self.waiting.is_none() {
            return kind;
        }
        self.report(Report::Gone);
        if cause.starts_with("caller-") {
            CallEventKind::Abandoned
        } else {
            kind
        }
    }
}

/// The digits a VoiceXML dialog returns in its BYE: `digits=<d>` (form-encoded, or one
/// such line), else the body's digits.
fn collected_digits(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let value = text
        .split(['&', '\n', '\r', ';'])
        .find_map(|p| p.trim().strip_prefix("digits="))
        .unwrap_or(text);
    let digits: String = value
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '*' || *c == '#')
        .collect();
    (!digits.is_empty()).then_some(digits)
}
