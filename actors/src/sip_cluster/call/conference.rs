//! A call whose parties talk through a media server's conference (RFC 4240 `conf=`), as a
//! desktop's CompleteConference makes it: each party's leg is paired with a leg of its own into
//! the conference, offered the party's session; a party that hangs up or is deleted leaves, and
//! the call ends when one is left.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::sdp;
use switchboard_sip::support::ALLOW_IN_DIALOG as ALLOW;
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Headers, Host, Method, Request, Response, SipUri, Uri};

use super::legs::{Leg, LegId, Progress};
use super::monitor::Monitor;
use super::msml::MsmlConference;
use super::recording::Recording;
use super::transfer::Handover;
use super::txns::Purpose;
use super::{Call, Mode, Phase};
use crate::messages::call_state::CallEventKind;
use crate::messages::sip_cluster::Origin;
use crate::messages::sip_cluster::{ControlError, Refusal};

/// A call whose parties talk through a media server's conference (RFC 4240 `conf=`): each
/// party's leg is paired with a leg of its own into the conference.
#[derive(Debug)]
pub(super) struct Conference {
    pub(super) members: Vec<Member>,
    /// A supervisor monitoring the call, which is a conference for that alone.
    pub(super) monitor: Option<Monitor>,
    /// A recording of the call on the media server.
    pub(super) recording: Option<Recording>,
    /// On a media server controlled by MSML: who hears whom is said to it in MSML.
    pub(super) msml: Option<Box<MsmlConference>>,
    /// Each party's own session from before the conference (caller's, then agent's), for a
    /// call moved onto it to be monitored or recorded: what they are offered of each other
    /// to talk directly again. None for a conference of parties.
    pub(super) own: Option<[Box<[u8]>; 2]>,
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) party: LegId,
    /// The DN or number.
    pub(super) dn: String,
    /// Whether `dn` is one of the tenant's DNs.
    pub(super) internal: bool,
    /// Its leg into the conference (a B leg), once placed.
    pub(super) ms: Option<usize>,
    /// Whether it is the supervisor monitoring the call.
    pub(super) supervisor: bool,
}

impl Member {
    pub(super) fn new(party: LegId, dn: String, internal: bool, ms: Option<usize>) -> Self {
        Self {
            party,
            dn,
            internal,
            ms,
            supervisor: false,
        }
    }
}

impl Call {
    /// Takes the consulted party's leg beside the agent's at `dn`, and puts every party
    /// through a conference on the tenant's first media server: one leg into the conference
    /// per party (`sip:conf=<call>@<server>`), each offered its party's session, whose answer
    /// the party is then offered.
    pub(super) fn confer(
        &mut self,
        dn: &str,
        handover: Handover,
        now: Instant,
    ) -> Result<(), ControlError> {
        let (w, handover) = self.completing(dn, handover, true, now)?;
        let Some(server) = self.tenant.media_servers.first().map(|m| m.address) else {
            return Err(Refusal::NoMediaServer.into());
        };
        let Handover {
            leg,
            party,
            to_dn,
            media,
            ..
        } = handover;
        let joined = self.legs.push(*leg);
        let caller = match &self.origin {
            Origin::Phone(d) => (d.clone(), true),
            _ => (self.ani.clone(), false),
        };
        // Each party's own session: what the call last offered the party it talked to.
        let sessions = [
            (LegId::A, caller.0, caller.1, self.legs.b[w].sdp.clone()),
            (LegId::B(w), dn.to_owned(), true, self.legs.a.sdp.clone()),
            (LegId::B(joined), party, to_dn, media),
        ];
        self.held = false;
        self.thread.consulting = None;
        let mut members = Vec::with_capacity(3);
        for (i, (leg, member_dn, internal, session)) in sessions.into_iter().enumerate() {
            let ms = session.map(|body| self.invite_conference(server, body, i, false, now));
            members.push(Member::new(leg, member_dn, internal, ms));
        }
        self.mode = Mode::Conference(Box::new(Conference {
            members,
            monitor: None,
            recording: None,
            msml: None,
            own: None,
        }));
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id, "conference of three");
        self.event(CallEventKind::PartyAdded, "", 0);
        Ok(())
    }

    /// Places a leg into the call's conference for member `member`, offering `session`:
    /// into `conf=<call>` (RFC 4240), or as a plain connection `msml=<call>` that MSML then
    /// joins to the conference.
    pub(super) fn invite_conference(
        &mut self,
        server: SocketAddr,
        session: Box<[u8]>,
        member: usize,
        msml: bool,
        now: Instant,
    ) -> usize {
        self.next_call_id += 1;
        let call_id = self.local.call_id(self.next_call_id);
        let tag = switchboard_sip::token::<8>();
        let user = if msml { "msml" } else { "conf" };
        let uri = SipUri::new(
            Some(&format!("{user}={}", self.id)),
            Host::from(server.ip()),
            Some(server.port()),
        );
        let (via, branch) = self.local.via(Transport::Udp);
        let mut headers = Headers::with_capacity(10);
        headers.push(HeaderName::Via, via);
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(
            HeaderName::From,
            format!("<sip:switchboard@{}>;tag={tag}", self.tenant.domain),
        );
        headers.push(HeaderName::To, format!("<{uri}>"));
        headers.push(HeaderName::CallId, call_id.clone());
        headers.push(HeaderName::CSeq, "1 INVITE");
        headers.push(HeaderName::Contact, self.local.contact(Transport::Udp));
        headers.push(HeaderName::Allow, ALLOW);
        headers.push(HeaderName::ContentType, "application/sdp");
        headers.push(HeaderName::ContentLength, "0");
        let body = Bytes::copy_from_slice(&session);
        let invite = Request {
            method: Method::Invite,
            uri: Uri::Sip(uri),
            headers,
            body,
        };
        let mut leg = Leg::new(call_id, tag, server, Transport::Udp);
        leg.target = invite.uri.to_string();
        leg.invite = Some(Box::new(invite.clone()));
        leg.sdp = Some(session);
        let i = self.legs.push(leg);
        self.send_request(LegId::B(i), invite, branch, Purpose::Join(member), now);
        i
    }

    /// The media server answered a member's leg into the conference: the member is offered
    /// the conference's session.
    pub(super) fn joined(&mut self, leg: LegId, member: usize, r: Response, now: Instant) {
        let LegId::B(i) = leg else {
            return;
        };
        if r.status < 200 {
            return;
        }
        if r.status >= 300 {
            self.legs.b[i].progress = Progress::Failed(r.status);
            if self.conference().is_some_and(|c| c.own.is_some())
                && self.phase == Phase::Established
            {
                tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, status = r.status,
                    "the media server refused a conference leg: the parties talk directly again");
                self.conference_failed(r.status, now);
                return;
            }
            tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, status = r.status,
                "the media server refused a conference leg: that party hears no one");
            return;
        }
        if let Some(invite) = self.legs.b[i].invite.as_deref()
            && let Ok(d) = Dialog::as_uac(invite, &r)
        {
            self.legs.b[i].dialog = Some(d);
        }
        let seq = self.legs.b[i].invite_seq;
        self.legs.b[i].progress = Progress::Answered;
        self.legs.b[i].invite = None;
        self.send_ack(leg, seq, Bytes::new(), &Headers::default(), now);
        if self.phase == Phase::Ending {
            self.bye(leg, now);
            return;
        }
        if self.conference().is_some_and(|c| c.msml.is_some()) {
            let supervisor = self
                .conference()
                .and_then(|c| c.members.get(member))
                .is_some_and(|m| m.supervisor);
            self.msml_joined(i, &r, supervisor, now);
        }
        let Some(party) = self
            .conference()
            .and_then(|c| c.members.get(member))
            .map(|m| m.party)
        else {
            return;
        };
        let direction = self.member_direction(party);
        let body = match self.legs.get(party).sdp.clone() {
            Some(previous) => sdp::reoffered(&previous, &r.body, direction),
            None => sdp::redirected(&r.body, direction),
        };
        if let Some(body) = body {
            self.offer(party, body, now);
        }
    }

    /// Member `m` leaves the conference: its leg and its conference leg are hung up. The
    /// call ends when one party is left.
    pub(super) fn leave_conference(&mut self, m: usize, now: Instant) {
        // A monitored call is a conference for its supervisor alone: the supervisor leaving
        // ends the monitoring, and a party leaving ends the call.
        if let Some(member) = self
            .conference()
            .filter(|c| c.own.is_some())
            .map(|c| &c.members[m])
        {
            if member.supervisor {
                self.stop_monitoring(now);
            } else {
                let (cause, from) = match member.party {
                    LegId::A => ("caller-hangup", LegId::A),
                    leg => ("callee-hangup", leg),
                };
                self.end(CallEventKind::Released, cause, 0, Some(from), now);
            }
            return;
        }
        let Some(conference) = self.conference_mut() else {
            return;
        };
        let member = conference.members.remove(m);
        let left = conference.members.len();
        // Indexes of the members after it moved down by one.
        if let Some(ms) = member.ms {
            self.bye(LegId::B(ms), now);
            self.legs.b[ms].progress = Progress::Over;
        }
        if member.party == LegId::A {
            self.end(CallEventKind::Released, "caller-hangup", 0, None, now);
            return;
        }
        if self.legs.get(member.party).progress == Progress::Answered {
            self.bye(member.party, now);
        }
        if let LegId::B(i) = member.party {
            self.legs.b[i].progress = Progress::Over;
        }
        if self.callee.name.as_deref() == Some(member.dn.as_str()) {
            // Not a party any more: its agent is not told of the call again.
            self.callee.dn = false;
        }
        let gone = if member.internal {
            vec![member.dn]
        } else {
            Vec::new()
        };
        if left <= 1 {
            self.end(CallEventKind::Released, "conference-over", 0, None, now);
            return;
        }
        self.event_leaving(CallEventKind::PartyDeleted, "", 0, gone);
    }
}
