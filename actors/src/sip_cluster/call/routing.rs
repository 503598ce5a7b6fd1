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
use switchboard_routing::strategy::{Overflow, Route, Treatment};
use switchboard_sip::sdp::{self, Direction};
use switchboard_sip::transport::Transport;
use switchboard_sip::{Headers, Response, Uri};

use switchboard_proto::events::CallThread;

use super::legs::{LegId, Progress};
use super::timers::Timer;
use super::txns::Purpose;
use super::{Call, Mode, Output, Phase, live};
use crate::messages::call_state::CallEventKind;
use crate::messages::ors::{Order, Report, RouteRequest};
use crate::messages::registrar::Binding;

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
    /// The routing point; empty once the call left it for a DN while hearing a treatment
    /// (the DN then takes the caller's place as an agent would, see [`Call::divert`]).
    number: String,
    default: String,
    queue: String,
    /// The target and priority the call waits with in its queue, after any overflow.
    target: String,
    priority: u32,
    treatment: Option<Treating>,
    agent: Option<Ringing>,
    /// The B leg the caller is being moved to (a re-INVITE to the caller in progress).
    bridging: Option<usize>,
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
}

#[derive(Debug)]
struct Ringing {
    /// The agent reserved; none for a DN the strategy routed to.
    agent: Option<String>,
    dn: String,
    /// Its legs (one per registered contact), once located.
    legs: Vec<usize>,
}

impl Waiting {
    pub(super) fn new(number: String, default: String) -> Self {
        Self {
            number,
            default,
            queue: String::new(),
            target: String::new(),
            priority: 0,
            treatment: None,
            agent: None,
            bridging: None,
            requeued: false,
        }
    }
}

impl Waiting {
    /// Where a call adopted from another node waits, as its snapshot says: hearing
    /// `treatment` from media server `server` on B leg `leg`.
    pub(super) fn restored(
        w: &super::snapshot::WaitingSnapshot,
        default: String,
        leg: Option<usize>,
    ) -> Self {
        let mut waiting = Self::new(w.routing_point.clone(), default);
        waiting.queue = w.queue.clone();
        waiting.target = w.target.clone();
        waiting.priority = w.priority;
        waiting.treatment = w.treatment.clone().map(|treatment| Treating {
            treatment,
            server: w.server,
            leg,
        });
        waiting
    }
}

impl Waiting {
    /// Whether the call only waits: hearing its treatment (or nothing), no agent being rung
    /// and no party being bridged to the caller.
    pub(super) fn is_settled(&self) -> bool {
        self.agent.is_none() && self.bridging.is_none()
    }
}

impl Call {
    /// Asks the call's routing session for its route again, from a node that adopted the
    /// call: the session (kept by the tenant's owner) sends its orders here from then on.
    pub(super) fn ask_route_again(&mut self, strategy: String) {
        let Some(w) = self.waiting() else {
            return;
        };
        let request = RouteRequest {
            tenant: self.tenant.clone(),
            call: self.id.to_string(),
            routing_point: w.number.clone(),
            strategy,
            ani: self.ani.clone(),
            dnis: self.dnis.clone(),
            user_data: self.user_data.clone(),
        };
        self.out
            .push_back(Output::Routing(ToOrs::Request(Box::new(request))));
    }

    /// The dial plan sent the call to routing point `number`.
    pub(super) fn at_routing_point(&mut self, number: String, now: Instant) {
        let Some(rp) = self.tenant.routing_point(&number).cloned() else {
            self.fail(404, "unknown-number", None, now);
            return;
        };
        let timeout = waiting_limit(&rp);
        self.pending_record |= crate::tenant::records(&rp.options);
        self.callee.name = Some(number.clone());
        self.phase = Phase::Ringing;
        let waiting = Waiting::new(number.clone(), rp.default_destination.clone());
        self.mode = Mode::Routing(Box::new(waiting));
        self.timers.set(Timer::RoutingTimeout, now + timeout);
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

    /// What the call's events say of its routing point, while it waits at one: the
    /// number, queue, treatment, target and priority (left empty otherwise).
    pub(super) fn routing_fields(&self, thread: &mut CallThread) {
        let Some(w) = self.waiting() else {
            return;
        };
        thread.routing_point = w.number.clone();
        thread.queue = w.queue.clone();
        thread.treatment = w
            .treatment
            .as_ref()
            .map(|t| t.treatment.kind().to_owned())
            .unwrap_or_default();
        thread.target = w.target.clone();
        thread.priority = w.priority;
    }

    /// Where the call waits, for its snapshot.
    pub(super) fn waiting_snapshot(&self) -> Option<super::snapshot::WaitingSnapshot> {
        let w = self.waiting()?;
        Some(super::snapshot::WaitingSnapshot {
            routing_point: w.number.clone(),
            queue: w.queue.clone(),
            target: w.target.clone(),
            priority: w.priority,
            treatment: w.treatment.as_ref().map(|t| t.treatment.clone()),
            server: w.treatment.as_ref().map_or(0, |t| t.server),
        })
    }

    /// The media server's leg playing to the caller, while one does.
    pub(super) fn treatment_leg(&self) -> Option<usize> {
        self.waiting()?.treatment.as_ref()?.leg
    }

    fn report(&mut self, report: Report) {
        self.out.push_back(Output::Routing(ToOrs::Report(report)));
    }

    /// What the routing session asks.
    pub fn routing(&mut self, order: Order, now: Instant) {
        if self.waiting().is_none() || self.phase == Phase::Ending {
            return;
        }
        match order {
            Order::Treat(t) => self.treat(t, now),
            Order::Collect { digits, uri } => self.treat(Treatment::Collect { digits, uri }, now),
            Order::SetData { key, value } => {
                self.user_data.insert(key, value);
                self.event(CallEventKind::AttachedDataChanged, "", 0);
            }
            // Both from the answer of the agent the call is routed to.
            Order::Record => self.pending_record = true,
            Order::Monitor { dn, mode } => {
                self.pending_monitor = Some(Box::new((dn, mode)));
            }
            Order::Queued {
                queue,
                target,
                priority,
            } => {
                let Some(w) = self.waiting_mut() else {
                    return;
                };
                let again = std::mem::take(&mut w.requeued) && w.queue == queue;
                let recorded = self
                    .tenant
                    .config
                    .queues
                    .iter()
                    .any(|q| q.name == queue && crate::tenant::records(&q.options));
                let Some(w) = self.waiting_mut() else {
                    return;
                };
                w.queue = queue;
                w.target = target;
                w.priority = priority;
                // Recorded from its answer, as the queue's configuration says.
                self.pending_record |= recorded;
                self.queue = self.waiting().map(|w| w.queue.as_str().into());
                if !again {
                    self.event(CallEventKind::Queued, "", 0);
                }
            }
            Order::Overflow(change) => {
                if let Some(w) = self.waiting_mut() {
                    match change {
                        Overflow::Priority(p) => w.priority = p,
                        Overflow::Target(t) => w.target = t.to_string(),
                    }
                }
            }
            Order::Route(route) => self.route_to(route, now),
            Order::Unreserved { agent } => {
                if self
                    .waiting()
                    .and_then(|w| w.agent.as_ref())
                    .is_some_and(|r| r.agent.as_deref() == Some(agent.as_str()))
                {
                    self.agent_not_reached("agent-unavailable", None, now);
                }
            }
        }
    }

    fn caller_answered(&self) -> bool {
        self.legs.a.progress == Progress::Answered
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
        let Some(w) = self.waiting_mut() else {
            return;
        };
        let before = w.treatment.replace(Treating {
            treatment,
            server: server.unwrap_or(0),
            leg: None,
        });
        self.timers.stop(Timer::MediaAnswer);
        if let Some(leg) = before.and_then(|t| t.leg) {
            self.cancel_leg(leg, now);
        }
    }

    /// Calls the current media server for the current treatment.
    fn call_media_server(&mut self, now: Instant) {
        let Some(w) = self.waiting() else {
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
                tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, uri = %text,
                    "treatment does not make a media server URI");
                self.treatment_not_applied();
                return;
            }
        };
        let offer = self.next_party_offer(now);
        let index = self.legs.b.len();
        let to = format!("<{uri}>");
        self.place_with(uri, to, addr, Transport::Udp, offer, now);
        if let Some(t) = self.waiting_mut().and_then(|w| w.treatment.as_mut()) {
            t.leg = Some(index);
            self.timers.set(Timer::MediaAnswer, now + MEDIA_ANSWER);
        }
    }

    fn treatment_not_applied(&mut self) {
        self.event(CallEventKind::TreatmentNotApplied, "no-media-server", 0);
        self.report(Report::TreatmentFailed);
    }

    /// Hangs up (or stops ringing) the media server legs of the call, but not the agent's.
    fn end_treatment_leg(&mut self, now: Instant) {
        let agent_legs: Vec<usize> = self
            .waiting()
            .and_then(|w| w.agent.as_ref())
            .map(|r| r.legs.clone())
            .unwrap_or_default();
        let mut ended = false;
        for i in 0..self.legs.b.len() {
            if agent_legs.contains(&i) {
                continue;
            }
            match self.legs.b[i].progress {
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

    /// What a new party of the call (a treatment, the agent) is offered: nothing once the
    /// caller is answered (the party's offer goes to the caller, see [`Call::bridge`]);
    /// before, the caller's own offer, which the party answers, so nothing else may still
    /// ring.
    ///
    /// A treatment stopped that way no longer owns its leg: a server answering as the
    /// CANCEL crosses is hung up, not given the caller. It stays the call's treatment, to
    /// be called again if the new party does not answer either.
    fn next_party_offer(&mut self, now: Instant) -> Option<Bytes> {
        if self.caller_answered() {
            return Some(Bytes::new());
        }
        self.cancel_waiting_legs(now);
        if let Some(t) = self.waiting_mut().and_then(|w| w.treatment.as_mut()) {
            t.leg = None;
            self.timers.stop(Timer::MediaAnswer);
        }
        None
    }

    /// After the agent rung instead of the treatment did not answer, a caller still not
    /// answered gets its treatment again.
    fn resume_treatment(&mut self, now: Instant) {
        if self.caller_answered() {
            return;
        }
        let stopped = self
            .waiting()
            .and_then(|w| w.treatment.as_ref())
            .is_some_and(|t| {
                t.leg.is_none() && !matches!(t.treatment, Treatment::Ringback | Treatment::Silence)
            });
        if stopped {
            self.call_media_server(now);
        }
    }

    /// Stops every leg still ringing (not answered).
    fn cancel_waiting_legs(&mut self, now: Instant) {
        for i in 0..self.legs.b.len() {
            if self.legs.b[i].progress.ringing() {
                self.cancel_leg(i, now);
            }
        }
    }

    fn route_to(&mut self, route: Route, now: Instant) {
        let destination = match route {
            Route::Agent { agent, dn } => {
                self.ring_dn(Some(agent), dn, now);
                return;
            }
            Route::Default => {
                let text = self
                    .waiting()
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

    /// Rings `dn` for the call (its contacts once located), for at most the DN's ring time.
    fn ring_dn(&mut self, agent: Option<String>, dn: String, now: Instant) {
        let ring = self
            .tenant
            .dns
            .get(&dn)
            .and_then(|d| d.no_answer_timeout)
            .map_or(self.config.no_answer, |s| Duration::from_secs(s.into()));
        self.out.push_back(Output::Locate {
            tenant: self.tenant.name.clone(),
            aor: self.tenant.aor(&dn),
        });
        if let Some(w) = self.waiting_mut() {
            w.agent = Some(Ringing {
                agent,
                dn,
                legs: Vec::new(),
            });
            self.timers.set(Timer::AgentRing, now + ring);
        }
    }

    /// Leaves the routing point for `destination`, as the dial plan would have sent the call
    /// there.
    fn divert(&mut self, destination: Destination, number: String, now: Instant) {
        let Some(at) = self.waiting().map(|w| w.number.clone()) else {
            return;
        };
        if matches!(&destination, Destination::RoutingPoint(rp) if *rp == at) {
            // Back to the same routing point would loop (the end tells the session).
            self.fail(480, "routing-loop", None, now);
            return;
        }
        self.event(CallEventKind::Diverted, "", 0);
        self.leave_routing_point();
        self.report(Report::Gone);
        if !self.caller_answered() {
            self.cancel_waiting_legs(now);
            self.phase = Phase::Routing;
            self.callee.name = None;
            self.go_to(destination, number, now);
            return;
        }
        // The caller hears a treatment: a DN takes its place as an agent would; anything
        // else would have to answer the caller's first offer, long answered.
        match destination {
            Destination::Extension(dn) => {
                let diverted = Waiting::new(String::new(), String::new());
                self.mode = Mode::Routing(Box::new(diverted));
                self.timers
                    .set(Timer::RoutingTimeout, now + Duration::from_secs(86_400));
                self.ring_dn(None, dn, now);
            }
            Destination::Reject(_) => self.end(CallEventKind::Released, "rejected", 0, None, now),
            _ => {
                tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
                    "a treated call can be diverted to a DN only; ended");
                self.end(CallEventKind::Released, "not-routed", 0, None, now);
            }
        }
    }

    /// The bindings of the reserved agent's DN: ring them.
    pub(super) fn agent_located(&mut self, bindings: Vec<Binding>, now: Instant) {
        let Some(dn) = self
            .waiting()
            .and_then(|w| w.agent.as_ref())
            .map(|r| r.dn.clone())
        else {
            return;
        };
        let bindings = live(bindings);
        if bindings.is_empty() {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %dn,
                "reserved agent's DN has no registered phone");
            self.agent_not_reached("not-registered", None, now);
            return;
        }
        let offer = self.next_party_offer(now);
        self.callee.name = Some(dn.clone());
        self.callee.dn = true;
        let legs = self.ring(&dn, bindings, offer, now);
        self.phase = if self.caller_answered() {
            Phase::Established
        } else {
            Phase::Ringing
        };
        if let Some(r) = self.waiting_mut().and_then(|w| w.agent.as_mut()) {
            r.legs = legs;
        }
    }

    /// The DN rung did not take the call (`rona` names the agent that let it ring): the
    /// call waits again at its routing point, and its session is told; a call that left its
    /// routing point for that DN has nowhere else to go, and ends.
    fn agent_not_reached(&mut self, cause: &str, rona: Option<String>, now: Instant) {
        self.stop_ringing_agent(cause, now);
        if self.waiting().is_some_and(|w| w.number.is_empty()) {
            self.end(CallEventKind::Released, "no-answer", 480, None, now);
            return;
        }
        self.resume_treatment(now);
        self.report(Report::RouteFailed { rona });
    }

    /// Stops ringing the reserved agent; the call waits again.
    fn stop_ringing_agent(&mut self, cause: &str, now: Instant) {
        let Some(r) = self.waiting_mut().and_then(|w| w.agent.take()) else {
            return;
        };
        self.timers.stop(Timer::AgentRing);
        for &i in &r.legs {
            self.cancel_leg(i, now);
        }
        let number = self.waiting().map(|w| w.number.clone());
        self.callee.name = number;
        if let Some(w) = self.waiting_mut() {
            w.requeued = !w.queue.is_empty();
        }
        let rung = self.callee.dn;
        self.callee.dn = false;
        self.rung = false;
        let left = if rung { vec![r.dn] } else { Vec::new() };
        self.event_leaving(CallEventKind::Queued, cause, 0, left);
    }

    /// Which routing-point party B leg `i` is, if the call waits: the current treatment's
    /// (`Some(true)`), the agent's (`Some(false)`), or neither (a treatment replaced).
    fn waiting_party(&self, i: usize) -> Option<Option<bool>> {
        let w = self.waiting()?;
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
            self.legs.b[i].progress = Progress::Failed(r.status);
            match party {
                Some(true) => self.media_server_failed(now),
                Some(false) if self.agent_legs_failed() => {
                    self.agent_not_reached("agent-unavailable", None, now);
                }
                _ => {}
            }
            return true;
        }
        if matches!(self.legs.b[i].progress, Progress::Answered | Progress::Over) {
            // A retransmission: answered as before.
            return false;
        }
        match party {
            None => {
                // A treatment replaced while its server answered: hung up.
                self.take_dialog(i, r);
                self.legs.b[i].progress = Progress::Answered;
                let seq = self.legs.b[i].invite_seq;
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

    fn agent_legs_failed(&self) -> bool {
        self.waiting()
            .and_then(|w| w.agent.as_ref())
            .is_some_and(|a| a.legs.iter().all(|&i| self.legs.b[i].progress.gone()))
    }

    /// The media server of the treatment refused or did not answer: the next one.
    fn media_server_failed(&mut self, now: Instant) {
        let Some(server) = self
            .waiting()
            .and_then(|w| w.treatment.as_ref())
            .map(|t| t.server)
        else {
            return;
        };
        let failed = self.tenant.media_servers.get(server).map(|m| &m.name);
        tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, server = ?failed,
            "media server did not apply the treatment: trying the next");
        if let Some(t) = self.waiting_mut().and_then(|w| w.treatment.as_mut()) {
            t.server += 1;
            t.leg = None;
        }
        self.timers.stop(Timer::MediaAnswer);
        if server + 1 < self.tenant.media_servers.len() {
            self.call_media_server(now);
        } else {
            self.treatment_not_applied();
        }
    }

    /// The caller, answered already, is moved to B leg `i`, which answered with an offer.
    fn bridge(&mut self, i: usize, r: Response, now: Instant) {
        self.take_dialog(i, &r);
        self.legs.b[i].progress = Progress::Answered;
        let busy = self.waiting().is_some_and(|w| w.bridging.is_some());
        let body = match self.legs.a.sdp.as_deref() {
            Some(previous) => sdp::reoffered(previous, &r.body, Direction::SendRecv),
            None => sdp::redirected(&r.body, Direction::SendRecv),
        };
        let (Some(body), false) = (body, busy) else {
            // No offer to give the caller, or a move in progress: this party goes.
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, busy,
                "a party answered without a usable offer, or while another joins: hung up");
            let seq = self.legs.b[i].invite_seq;
            self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
            self.bye(LegId::B(i), now);
            return;
        };
        if let Some(w) = self.waiting_mut() {
            w.bridging = Some(i);
        }
        self.offer_for(LegId::A, body, Purpose::Bridge(i), now);
    }

    /// The caller answered the offer of B leg `i` (or refused it).
    pub(super) fn bridged(&mut self, i: usize, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        if let Some(w) = self.waiting_mut() {
            w.bridging = None;
        }
        let seq = self.legs.b[i].invite_seq;
        if !(200..300).contains(&r.status) {
            tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, status = r.status,
                "the caller refused the offer of its next party");
            self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
            self.bye(LegId::B(i), now);
            return;
        }
        self.session_answered(LegId::A, &r, now);
        self.send_ack(LegId::B(i), seq, r.body.clone(), &r.headers, now);
        let old = self.legs.winner.replace(i);
        if let Some(old) = old.filter(|&o| o != i)
            && self.legs.b[old].progress == Progress::Answered
        {
            self.bye(LegId::B(old), now);
            self.event(CallEventKind::TreatmentEnd, "", 0);
        }
        self.legs.b[i].timer = None;
        self.established(i, now);
    }

    /// Called by `established` for a waiting call: whether leg `i` is the treatment (the
    /// call keeps waiting, and TreatmentApplied is reported) or the agent (the call leaves
    /// the routing point: RouteUsed, then Established as for any call).
    pub(super) fn waiting_established(&mut self, i: usize, now: Instant) -> bool {
        let Some(w) = self.waiting_mut() else {
            return false;
        };
        if w.treatment.as_ref().and_then(|t| t.leg) == Some(i) {
            self.timers.stop(Timer::MediaAnswer);
            self.event(CallEventKind::TreatmentApplied, "", 0);
            return true;
        }
        if !w.agent.as_ref().is_some_and(|a| a.legs.contains(&i)) {
            return false;
        }
        let Some(agent) = w.agent.take() else {
            return false;
        };
        let at_routing_point = !w.number.is_empty();
        // The treatment goes once the agent has the caller.
        let treatment_leg = w.treatment.as_ref().and_then(|t| t.leg).filter(|&l| l != i);
        for &j in agent.legs.iter().filter(|&&j| j != i) {
            self.cancel_leg(j, now);
        }
        if let Some(l) = treatment_leg
            && self.legs.b[l].progress.ringing()
        {
            self.cancel_leg(l, now);
        }
        // A DN the strategy diverted to (no routing point left) reported Diverted already.
        if at_routing_point {
            self.event(CallEventKind::RouteUsed, "", 0);
            self.report(Report::Routed);
        }
        self.leave_routing_point();
        false
    }

    /// A BYE from B leg `i` while waiting: a treatment that ended (an announcement played,
    /// digits collected). Whether it was handled here.
    pub(super) fn waiting_bye(&mut self, i: usize, body: &[u8]) -> bool {
        let Some(w) = self.waiting_mut() else {
            return false;
        };
        let Some(t) = w.treatment.as_mut().filter(|t| t.leg == Some(i)) else {
            return false;
        };
        let collect = matches!(t.treatment, Treatment::Collect { .. });
        let blocks = t.treatment.blocks();
        t.leg = None;
        self.legs.b[i].progress = Progress::Over;
        self.legs.b[i].dialog = None;
        self.event(CallEventKind::TreatmentEnd, "", 0);
        if blocks {
            let digits = collect.then(|| collected_digits(body)).flatten();
            self.report(Report::TreatmentEnded { digits });
        }
        true
    }

    /// The agent rung let the call ring past its ring time (RONA): the call waits again.
    pub(super) fn agent_ring_over(&mut self, now: Instant) {
        let Some(ringing) = self.waiting().and_then(|w| w.agent.as_ref()) else {
            return;
        };
        let rona = ringing.agent.clone();
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id, agent = ?rona,
            "reserved agent did not answer (RONA): the call waits again");
        self.agent_not_reached("rona", rona, now);
    }

    /// The media server of the treatment did not answer in time: the next one.
    pub(super) fn media_answer_over(&mut self, now: Instant) {
        let Some(leg) = self
            .waiting()
            .and_then(|w| w.treatment.as_ref())
            .and_then(|t| t.leg)
        else {
            return;
        };
        self.cancel_leg(leg, now);
        self.media_server_failed(now);
    }

    /// The routing point's timeout: its default destination takes the call.
    pub(super) fn routing_timeout(&mut self, now: Instant) {
        if self.waiting().is_none() {
            return;
        }
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
            "routing point timeout: default destination");
        self.stop_ringing_agent("timeout", now);
        self.route_to(Route::Default, now);
    }

    /// The call no longer waits at a routing point: its deadlines go with it.
    pub(super) fn leave_routing_point(&mut self) {
        self.mode = super::Mode::Direct;
        for timer in [Timer::RoutingTimeout, Timer::MediaAnswer, Timer::AgentRing] {
            self.timers.stop(timer);
        }
    }

    /// The call ends while waiting: its session is told, and a caller who hung up is
    /// reported as abandoned.
    pub(super) fn left_routing_point(&mut self, kind: CallEventKind, cause: &str) -> CallEventKind {
        // Forgotten once the end is reported, which names the routing point and queue.
        if self.waiting().is_none() {
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

/// How long a call may wait at routing point `rp` before its default destination takes it
/// (`timeout_secs`, five minutes when zero).
pub(super) fn waiting_limit(rp: &crate::tenant::RoutingPointConfig) -> Duration {
    match rp.timeout_secs {
        0 => Duration::from_secs(300),
        s => Duration::from_secs(s.into()),
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
