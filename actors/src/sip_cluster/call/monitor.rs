//! A supervisor in an agent's call (Genesys SIP Server's monitoring, Asterisk's ChanSpy):
//! listen (the supervisor hears both parties and is heard by neither), whisper (only the
//! agent hears the supervisor) or barge-in (everyone hears everyone). Media never passes
//! through the core, so the call moves onto a conference on its media server, as a
//! conference of three does (RFC 3725 re-INVITEs, each party through a leg of its own into
//! `conf=<call>`); the supervisor's phone is called, told to answer by itself, and put
//! through a leg of its own into the conference, offered receive-only for listening. When
//! the supervisor leaves, the parties are offered each other's sessions again and talk
//! directly, and their legs into the conference are hung up.
//!
//! On a media server controlled by RFC 4240 URIs alone (`control = netann`) a conference
//! mixes everyone for everyone: listen (the supervisor's leg receive-only) and barge-in
//! work, whisper is refused.

use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::sdp::{self, Direction};
use switchboard_sip::transport::Transport;
use switchboard_sip::{Headers, Response, Uri};

use super::conference::{Conference, Member};
use super::legs::{Leg, LegId, Progress};
use super::txns::Purpose;
use super::{Call, Mode, Output, Phase, live, seq_of};
use crate::messages::call_state::CallEventKind;
use crate::messages::registrar::Binding;
use crate::messages::sip_cluster::{
    CallState, ControlError, MonitorMode, Operation, Origin, Refusal,
};
use crate::tenant::MediaControl;

/// A supervisor taking part in the call.
#[derive(Debug)]
pub(super) struct Monitor {
    /// The supervisor's DN.
    pub(super) supervisor: String,
    pub(super) mode: MonitorMode,
    /// The supervisor's phone (a B leg), once called.
    pub(super) phone: Option<usize>,
}

impl MonitorMode {
    /// The direction of the supervisor's leg into a NETANN conference, as offered to the
    /// media server: receive only to listen. (MSML says who hears whom itself.)
    fn toward_conference(self, msml: bool) -> Direction {
        match self {
            MonitorMode::Listen if !msml => Direction::RecvOnly,
            _ => Direction::SendRecv,
        }
    }

    /// The direction the supervisor's phone is offered: it only hears when listening.
    fn toward_phone(self, msml: bool) -> Direction {
        match self {
            MonitorMode::Listen if !msml => Direction::SendOnly,
            _ => Direction::SendRecv,
        }
    }
}

impl Call {
    /// The monitoring of the call, if any.
    pub(super) fn monitor(&self) -> Option<&Monitor> {
        self.conference().and_then(|c| c.monitor.as_ref())
    }

    /// The supervisor at `supervisor` starts monitoring in `mode`, or changes its mode.
    pub(super) fn start_monitoring(
        &mut self,
        supervisor: &str,
        mode: MonitorMode,
        now: Instant,
    ) -> Result<(), ControlError> {
        let server = self.tenant.media_servers.first().cloned();
        if mode == MonitorMode::Whisper
            && server
                .as_ref()
                .is_none_or(|s| s.control == MediaControl::Netann)
        {
            return Err(Refusal::WhisperNeedsMsml.into());
        }
        let forbidden = self.queue.as_deref().is_some_and(|queue| {
            self.tenant
                .config
                .queues
                .iter()
                .any(|q| *q.name == *queue && crate::tenant::monitoring_forbidden(&q.options))
        });
        if forbidden {
            return Err(Refusal::QueueNotMonitored.into());
        }
        if let Some(m) = self.monitor() {
            if m.supervisor != supervisor {
                return Err(Refusal::MonitoredAlready.into());
            }
            return self.change_monitoring(mode, now);
        }
        if !self.on_conference(Operation::Monitor, now)? {
            // Not answered yet, or its answer (or another offer) is under way: monitored as
            // soon as the call allows.
            self.pending_monitor = Some(Box::new((supervisor.to_owned(), mode)));
            return Ok(());
        }
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id, supervisor,
            mode = mode.name(), "monitoring");
        if let Some(c) = self.conference_mut() {
            c.monitor = Some(Monitor {
                supervisor: supervisor.to_owned(),
                mode,
                phone: None,
            });
        }
        self.event(CallEventKind::MonitoringStarted, mode.name(), 0);
        self.out.push_back(Output::Locate {
            tenant: self.tenant.name.clone(),
            aor: self.tenant.aor(supervisor),
        });
        Ok(())
    }

    /// Whether the call is on a conference of its own for `operation` (moved onto it now if
    /// it was not), or not yet: it is not answered, or an offer is under way (the caller
    /// then asks again when the call allows). Refused for a call that is a conference of
    /// parties, or one whose state does not allow it.
    pub(super) fn on_conference(
        &mut self,
        operation: Operation,
        now: Instant,
    ) -> Result<bool, ControlError> {
        if self.conference().is_some_and(|c| c.own.is_none()) {
            return Err(Refusal::AlreadyConference.into());
        }
        if self.conference().is_some() {
            return Ok(true);
        }
        let state = self.state();
        let answering = state == CallState::Established && !self.settled();
        if matches!(state, CallState::Dialing | CallState::Ringing) || answering {
            return Ok(false);
        }
        if state != CallState::Established {
            return Err(Refusal::State(operation, state).into());
        }
        self.onto_conference(now)?;
        Ok(true)
    }

    /// Moves the answered call onto a conference on the tenant's media server, so that a
    /// supervisor or a recorder may take part: each party gets a leg of its own into it,
    /// offered the party's own session, whose answer the party is then offered.
    pub(super) fn onto_conference(&mut self, now: Instant) -> Result<(), ControlError> {
        let Some(server) = self.tenant.media_servers.first().cloned() else {
            return Err(Refusal::NoMediaServer.into());
        };
        let Some(w) = self.legs.winner else {
            return Err(Refusal::NotAnswered.into());
        };
        // Each party's own session: what the call last offered the party it talks to.
        let (Some(caller_own), Some(agent_own)) =
            (self.legs.b[w].sdp.clone(), self.legs.a.sdp.clone())
        else {
            return Err(Refusal::NoSession.into());
        };
        let caller = match &self.origin {
            Origin::Phone(d) => (d.clone(), true),
            _ => (self.ani.clone(), false),
        };
        let agent = self.callee.name.clone().unwrap_or_default();
        let msml = server.control == MediaControl::Msml;
        let mut members = Vec::with_capacity(3);
        for (i, (party, dn, internal, session)) in [
            (LegId::A, caller.0, caller.1, caller_own.clone()),
            (LegId::B(w), agent, true, agent_own.clone()),
        ]
        .into_iter()
        .enumerate()
        {
            let ms = self.invite_conference(server.address, session, i, msml, now);
            members.push(Member::new(party, dn, internal, Some(ms)));
        }
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
            "the call moves onto a conference");
        self.mode = Mode::Conference(Box::new(Conference {
            members,
            monitor: None,
            recording: None,
            msml: msml.then(Box::default),
            own: Some([caller_own, agent_own]),
        }));
        Ok(())
    }

    /// Starts the monitoring asked before the call was answered, once it is and no offer is
    /// under way; a call that could not be monitored carries on, reported.
    pub(super) fn monitor_when_answered(&mut self, now: Instant) {
        if self.phase == Phase::Ending {
            self.pending_monitor = None;
            return;
        }
        if !self.settled() {
            return;
        }
        let Some(pending) = self.pending_monitor.take() else {
            return;
        };
        let (supervisor, mode) = *pending;
        if let Err(e) = self.start_monitoring(&supervisor, mode, now) {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %supervisor,
                error = %e, "the call cannot be monitored");
            self.event(CallEventKind::MonitoringFailed, "refused", 0);
        }
    }

    /// Whether the call waits for the supervisor's phone to be looked up.
    pub(super) fn locating_supervisor(&self) -> bool {
        self.phase == Phase::Established && self.monitor().is_some_and(|m| m.phone.is_none())
    }

    /// Calls the supervisor's phone at its first contact, told to answer by itself, without
    /// an offer: its offer in the 2xx goes into the conference.
    pub(super) fn call_supervisor(&mut self, bindings: Vec<Binding>, now: Instant) {
        let supervisor = self
            .monitor()
            .map(|m| m.supervisor.clone())
            .unwrap_or_default();
        let contact = live(bindings)
            .into_iter()
            .next()
            .and_then(|b| Some((Uri::parse_str(&b.contact).ok()?, b)));
        let Some((uri, b)) = contact else {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %supervisor,
                "monitoring: the supervisor's phone is not registered");
            self.event(CallEventKind::MonitoringFailed, "not-registered", 480);
            self.stop_monitoring(now);
            return;
        };
        let transport = Transport::from_via_name(&b.transport).unwrap_or(Transport::Udp);
        self.next_call_id += 1;
        let call_id = self.local.call_id(self.next_call_id);
        let mut leg = Leg::new(call_id, switchboard_sip::token::<8>(), b.source, transport);
        leg.target = self.tenant.aor(&supervisor);
        // The supervisor's phone shows the agent it monitors.
        let agent = self.callee.name.clone().unwrap_or_default();
        let (invite, branch) = self.auto_answer_invite(&leg, uri, &agent);
        leg.invite = Some(Box::new(invite.clone()));
        let i = self.legs.push(leg);
        if let Some(Mode::Conference(c)) = Some(&mut self.mode)
            && let Some(m) = c.monitor.as_mut()
        {
            m.phone = Some(i);
        }
        self.send_request(LegId::B(i), invite, branch, Purpose::Supervise, now);
    }

    /// The supervisor's phone answered (or not): its offer goes into the conference, and
    /// it is answered on hold until the conference answers.
    pub(super) fn supervisor_answered(&mut self, i: usize, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        let leg = LegId::B(i);
        if (200..300).contains(&r.status) {
            if let Some(invite) = self.legs.b[i].invite.as_deref()
                && let Ok(d) = Dialog::as_uac(invite, &r)
            {
                self.legs.b[i].dialog = Some(d);
            }
            self.legs.b[i].invite = None;
            self.legs.b[i].progress = Progress::Answered;
        }
        let monitoring =
            self.phase == Phase::Established && self.monitor().is_some_and(|m| m.phone == Some(i));
        let Some(hold) = sdp::redirected(&r.body, Direction::Inactive)
            .filter(|_| monitoring && (200..300).contains(&r.status))
        else {
            if (200..300).contains(&r.status) {
                self.send_ack(
                    leg,
                    seq_of(&r.headers),
                    Bytes::new(),
                    &Headers::default(),
                    now,
                );
                self.bye(leg, now);
                self.legs.b[i].progress = Progress::Over;
            } else {
                self.legs.b[i].progress = Progress::Failed(r.status);
            }
            if monitoring {
                tracing::info!(tenant = %self.tenant.name, call_id = %self.id, status = r.status,
                    "monitoring: the supervisor's phone did not take the call");
                self.event(CallEventKind::MonitoringFailed, "not-answered", r.status);
                self.stop_monitoring(now);
            }
            return;
        };
        let mut headers = Headers::default();
        headers.push(switchboard_sip::HeaderName::ContentType, "application/sdp");
        self.send_ack(leg, seq_of(&r.headers), Bytes::from(hold), &headers, now);
        let Some(mode) = self.monitor().map(|m| m.mode) else {
            return;
        };
        let Some(server) = self.tenant.media_servers.first().map(|m| m.address) else {
            return;
        };
        let supervisor = self
            .monitor()
            .map(|m| m.supervisor.clone())
            .unwrap_or_default();
        let msml = self.conference().is_some_and(|c| c.msml.is_some());
        let Some(offer) = sdp::redirected(&r.body, mode.toward_conference(msml)) else {
            return;
        };
        let member = self.conference().map_or(0, |c| c.members.len());
        let ms = self.invite_conference(server, offer.into(), member, msml, now);
        if let Some(c) = self.conference_mut() {
            let mut m = Member::new(leg, supervisor, true, Some(ms));
            m.supervisor = true;
            c.members.push(m);
        }
        self.event(CallEventKind::PartyAdded, "", 0);
    }

    /// The direction the member on `party` is offered the conference's session with.
    pub(super) fn member_direction(&self, party: LegId) -> Direction {
        let msml = self.conference().is_some_and(|c| c.msml.is_some());
        match self.monitor() {
            Some(m) if m.phone.map(LegId::B) == Some(party) => m.mode.toward_phone(msml),
            _ => Direction::SendRecv,
        }
    }

    /// A new mode for the supervisor: its legs are offered their sessions anew.
    fn change_monitoring(&mut self, mode: MonitorMode, now: Instant) -> Result<(), ControlError> {
        let Some(monitor) = self.monitor() else {
            return Err(Refusal::NotMonitored.into());
        };
        if monitor.mode == mode {
            return Ok(());
        }
        if self.conference().is_some_and(|c| c.msml.is_some()) {
            if let Some(m) = self.conference_mut().and_then(|c| c.monitor.as_mut()) {
                m.mode = mode;
            }
            self.msml_mode(mode, now);
            self.event(CallEventKind::MonitoringChanged, mode.name(), 0);
            return Ok(());
        }
        let phone = monitor.phone;
        let member = self
            .conference()
            .and_then(|c| c.members.iter().find(|m| m.supervisor))
            .map(|m| (m.party, m.ms));
        let Some((party, Some(ms))) = member else {
            // Not in yet: it joins in the new mode.
            if let Some(m) = self.conference_mut().and_then(|c| c.monitor.as_mut()) {
                m.mode = mode;
            }
            self.event(CallEventKind::MonitoringChanged, mode.name(), 0);
            return Ok(());
        };
        if self.offer_in_progress() || phone.map(LegId::B) != Some(party) {
            return Err(Refusal::OfferInProgress.into());
        }
        let to_ms = self.legs.b[ms]
            .sdp
            .as_deref()
            .and_then(|b| sdp::redirected(b, mode.toward_conference(false)));
        let to_phone = self
            .legs
            .get(party)
            .sdp
            .as_deref()
            .and_then(|b| sdp::redirected(b, mode.toward_phone(false)));
        let (Some(to_ms), Some(to_phone)) = (to_ms, to_phone) else {
            return Err(Refusal::NoSession.into());
        };
        if let Some(m) = self.conference_mut().and_then(|c| c.monitor.as_mut()) {
            m.mode = mode;
        }
        self.offer(LegId::B(ms), to_ms, now);
        self.offer(party, to_phone, now);
        self.event(CallEventKind::MonitoringChanged, mode.name(), 0);
        Ok(())
    }

    /// The supervisor leaves (asked, or its phone hung up or never answered): its phone
    /// and its leg into the conference are hung up; the parties talk directly again unless
    /// the call is recorded.
    pub(super) fn stop_monitoring(&mut self, now: Instant) {
        let Some(monitor) = self.conference_mut().and_then(|c| c.monitor.take()) else {
            return;
        };
        if let Some(i) = monitor.phone {
            match self.legs.b[i].progress {
                Progress::Answered => self.bye(LegId::B(i), now),
                Progress::Calling | Progress::Early => self.cancel_leg(i, now),
                _ => {}
            }
            self.legs.b[i].progress = Progress::Over;
        }
        let member = self
            .conference()
            .and_then(|c| c.members.iter().position(|m| m.supervisor));
        if let Some(m) = member
            && let Some(c) = self.conference_mut()
        {
            let member = c.members.remove(m);
            if let Some(ms) = member.ms {
                self.hang_up_connection(ms, now);
            }
            self.event_leaving(
                CallEventKind::PartyDeleted,
                "",
                0,
                vec![monitor.supervisor.clone()],
            );
        }
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
            supervisor = %monitor.supervisor, "monitoring over");
        if self.conference().is_some_and(|c| c.recording.is_none()) {
            self.back_to_direct(now);
        }
        self.event(CallEventKind::MonitoringStopped, "", 0);
    }

    /// The media server failed the conference (a leg refused, MSML refused): the
    /// monitoring and the recording end, reported, and the parties talk directly again.
    pub(super) fn conference_failed(&mut self, status: u16, now: Instant) {
        if self.monitor().is_some() {
            self.event(CallEventKind::MonitoringFailed, "media-server", status);
            self.stop_monitoring(now);
        }
        if self.recording().is_some() {
            self.recording_failed("media-server", status, now);
        }
        if self.conference().is_some_and(|c| c.own.is_some()) && self.phase == Phase::Established {
            self.back_to_direct(now);
        }
    }

    /// A leg into the conference hung up (or given up while it rings).
    fn hang_up_connection(&mut self, ms: usize, now: Instant) {
        if self.legs.b[ms].progress == Progress::Answered {
            self.bye(LegId::B(ms), now);
        }
        if self.legs.b[ms].progress.ringing() {
            self.cancel_leg(ms, now);
        }
        self.legs.b[ms].progress = Progress::Over;
    }

    /// Nothing needs the conference any more: the parties are offered each other's own
    /// sessions and talk directly again, and their legs into it are hung up.
    pub(super) fn back_to_direct(&mut self, now: Instant) {
        let Some(Mode::Conference(conference)) =
            Some(std::mem::replace(&mut self.mode, Mode::Direct))
        else {
            return;
        };
        let Some([caller_own, agent_own]) = conference.own else {
            self.mode = Mode::Conference(conference);
            return;
        };
        for m in &conference.members {
            if let Some(ms) = m.ms {
                self.hang_up_connection(ms, now);
            }
        }
        if self.phase == Phase::Established
            && let Some(w) = self.legs.winner
        {
            for (leg, other) in [(LegId::A, agent_own), (LegId::B(w), caller_own)] {
                let body = match self.legs.get(leg).sdp.as_deref() {
                    Some(previous) => sdp::reoffered(previous, &other, Direction::SendRecv),
                    None => sdp::redirected(&other, Direction::SendRecv),
                };
                let busy = self.txns.clients.iter().any(|c| {
                    c.leg == leg
                        && c.method == switchboard_sip::Method::Invite
                        && !c.txn.is_answered()
                });
                match body {
                    Some(body) if busy => self.deferred.push((leg, body)),
                    Some(body) => self.offer(leg, body, now),
                    None => {}
                }
            }
        }
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
            "off the conference: the parties talk directly");
    }
}
