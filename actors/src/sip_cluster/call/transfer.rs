//! Transfers: the consulted party's leg handed from the consultation call to the main call
//! (attended transfer and conference, from the desktop or the phone's REFER with Replaces),
//! the single-step transfer (the desktop's, or a blind REFER), and the call thread a call
//! belongs to with its consultation relatives.

use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use switchboard_sip::header::NameAddr;
use switchboard_sip::sdp::{self, Direction};
use switchboard_sip::{HeaderName, Method, Request};

use super::legs::{Leg, LegId, Progress};
use super::originate::Originate;
use super::timers::Timer;
use super::txns::{Client, Purpose};
use super::{Call, Mode, Output, Phase, warning};
use crate::messages::call_state::CallEventKind;
use crate::messages::sip_cluster::{CallView, ControlError, Operation, Origin, Refusal};

/// The call thread a call belongs to (the call and its consultation relatives), and the
/// consultation in progress about it.
#[derive(Debug, Default)]
pub(super) struct Thread {
    /// The thread, when it is not the call's own id: a call placed to consult about another
    /// joins that one's thread.
    pub(super) joined: Option<Box<str>>,
    /// The thread the call left for another, until its next event says so.
    pub(super) former: Option<Box<str>>,
    /// The consultation call its agent placed about it, until it is completed.
    pub(super) consulting: Option<Box<str>>,
}

impl Thread {
    /// Whether the call was placed to consult about another.
    pub(super) fn is_consultation(&self) -> bool {
        self.joined.is_some()
    }
}

/// The leg of a consulted party, moving from the consultation call to the main call.
pub struct Handover {
    /// The consultation call it leaves.
    from_call: String,
    pub(super) leg: Box<Leg>,
    /// The party: a DN of the tenant (`to_dn`) or a number.
    pub(super) party: String,
    pub(super) to_dn: bool,
    /// The party's session description, as the consultation call last offered it.
    pub(super) media: Option<Box<[u8]>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("party", &self.party)
            .field("call_id", &self.leg.call_id)
            .finish_non_exhaustive()
    }
}

impl Handover {
    /// The consultation call the leg leaves.
    pub fn from_call(&self) -> &str {
        &self.from_call
    }

    /// The SIP Call-ID of the leg, by which its messages are found.
    pub fn call_id(&self) -> &ByteString {
        &self.leg.call_id
    }
}

impl Call {
    /// Gives up the leg of the party the agent at `dn` consulted, for the main call to take:
    /// the call is left with the agent's leg only, to be ended by [`Control::Finish`] once
    /// the main call holds the party.
    pub fn hand_over(&mut self, dn: &str) -> Result<Handover, ControlError> {
        if !self.involves(dn) {
            return Err(ControlError::NotFound(self.id.to_string()));
        }
        let Some(w) = self
            .legs
            .winner
            .filter(|_| self.phase == Phase::Established)
        else {
            return Err(Refusal::ConsultationNotAnswered.into());
        };
        if !matches!(&self.origin, Origin::Phone(o) if o == dn) {
            return Err(Refusal::NotConsultingAgent.into());
        }
        // (Its INVITE transaction may linger after the answer: that is no request pending.)
        let pending = |c: &Client| c.leg == LegId::B(w) && c.purpose != Purpose::Invite;
        if self.reoffer.is_some() || self.txns.clients.iter().any(|c| pending(c)) {
            return Err(Refusal::ConsultationBusy.into());
        }
        let mut gone = Leg::new(
            self.legs.b[w].call_id.clone(),
            String::new(),
            self.legs.b[w].peer,
            self.legs.b[w].transport,
        );
        gone.progress = Progress::Over;
        let leg = std::mem::replace(&mut self.legs.b[w], gone);
        self.legs.winner = None;
        self.txns.awaiting_ack.retain(|a| a.leg != LegId::B(w));
        Ok(Handover {
            from_call: self.id.to_string(),
            leg: Box::new(leg),
            party: self.callee.name.clone().unwrap_or_default(),
            to_dn: self.callee.dn,
            media: self.legs.a.sdp.clone(),
        })
    }

    /// Completing a transfer (or a conference), the main call: it takes the consulted party's
    /// leg in place of (or beside) the agent's at `dn`.
    pub(crate) fn take_over(
        &mut self,
        dn: &str,
        handover: Handover,
        conference: bool,
        now: Instant,
    ) -> Result<CallView, ControlError> {
        if !self.involves(dn) {
            return Err(ControlError::NotFound(self.id.to_string()));
        }
        if conference {
            self.confer(dn, handover, now)?;
        } else {
            self.adopt(dn, handover, now)?;
        }
        Ok(self.view())
    }

    /// Completing a transfer or conference, the consultation call once its other party is
    /// handed over: it ends, in the thread of the call that took its party (`thread`), so that
    /// its end is reported after that call's change.
    pub(crate) fn finish(
        &mut self,
        dn: &str,
        conferenced: bool,
        thread: String,
        now: Instant,
    ) -> Result<CallView, ControlError> {
        if !self.involves(dn) {
            return Err(ControlError::NotFound(self.id.to_string()));
        }
        if self.legs.winner.is_some() {
            return Err(Refusal::State(Operation::FinishTransfer, self.state()).into());
        }
        if thread != self.thread_id() {
            self.thread.former = Some(self.thread_id().into());
            self.thread.joined = Some(thread.into_boxed_str());
        }
        let cause = if conferenced {
            "conferenced"
        } else {
            "transferred"
        };
        self.end(CallEventKind::Released, cause, 0, None, now);
        Ok(self.view())
    }

    /// Whether the agent at `dn` may complete a transfer (or a conference) on this call: the
    /// call answered by that agent, no offer in progress, and for a conference a media server
    /// and no conference yet. The agent's leg, and the handover, when it may; otherwise the
    /// consulted party, whose leg no call holds any more, is hung up.
    pub(super) fn completing(
        &mut self,
        dn: &str,
        handover: Handover,
        conference: bool,
        now: Instant,
    ) -> Result<(usize, Handover), ControlError> {
        // A call still at a routing point (or still placing its parties) is not answered,
        // whatever its legs say: the agent's phone may ring while the caller hears music.
        let answered = matches!(self.mode, Mode::Direct | Mode::Conference(_));
        let winner = self
            .legs
            .winner
            .filter(|_| self.phase == Phase::Established && answered);
        let refusal = match winner {
            None => Refusal::NotAnswered,
            Some(_) if !self.callee.is_dn(dn) => Refusal::NotAnsweringAgent,
            Some(_) if self.reoffer.is_some() || self.invite_pending(u32::MAX) => {
                Refusal::OfferInProgress
            }
            Some(_) if conference && self.tenant.media_servers.is_empty() => Refusal::NoMediaServer,
            Some(_) if conference && self.conference().is_some() => Refusal::AlreadyConference,
            Some(w) => return Ok((w, handover)),
        };
        tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, party = %handover.party,
            why = %refusal, "not completed; the consulted party is released");
        let i = self.legs.push(*handover.leg);
        self.bye(LegId::B(i), now);
        self.legs.b[i].progress = Progress::Over;
        Err(refusal.into())
    }

    /// Takes the consulted party's leg in place of the agent's at `dn`: the agent's leg is
    /// hung up and the two remaining parties are offered each other's sessions.
    pub(super) fn adopt(
        &mut self,
        dn: &str,
        handover: Handover,
        now: Instant,
    ) -> Result<(), ControlError> {
        let (old, handover) = self.completing(dn, handover, false, now)?;
        let Handover {
            leg,
            party,
            to_dn,
            media,
            ..
        } = handover;
        let customer = self.legs.b[old].sdp.clone();
        self.bye(LegId::B(old), now);
        self.legs.b[old].progress = Progress::Over;
        self.legs.b[old].timer = None;
        let new = self.legs.push(*leg);
        self.legs.winner = Some(new);
        self.callee.name = Some(party);
        self.callee.dn = to_dn;
        self.held = false;
        self.thread.consulting = None;
        // Each remaining party is offered the other's session, as one session changing.
        let offers = [
            (LegId::A, self.legs.a.sdp.clone(), media),
            (LegId::B(new), self.legs.b[new].sdp.clone(), customer),
        ];
        let mut sent = 0;
        for (leg, previous, other) in offers {
            let body = match (previous, other) {
                (Some(p), Some(o)) => sdp::reoffered(&p, &o, Direction::SendRecv),
                _ => None,
            };
            if let Some(body) = body {
                self.offer(leg, body, now);
                sent += 1;
            }
        }
        self.reoffer = (sent > 0).then_some((false, sent));
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id, from = dn,
            to = ?self.callee.name, "transfer completed");
        self.event_leaving(CallEventKind::PartyChanged, "", 0, vec![dn.to_owned()]);
        Ok(())
    }

    /// Whether the agent at `dn` may transfer the call now (see [`Call::redirect`]): the
    /// party's B leg, or why not.
    pub(super) fn redirect_check(&self, dn: &str) -> Result<usize, ControlError> {
        // As for completing a transfer, a call at a routing point is not answered yet.
        let answered = matches!(self.mode, Mode::Direct | Mode::Conference(_));
        let Some(old) = self
            .legs
            .winner
            .filter(|_| self.phase == Phase::Established && answered)
        else {
            return Err(Refusal::NotAnswered.into());
        };
        if !self.callee.is_dn(dn) {
            return Err(Refusal::NotTransferringAgent.into());
        }
        if self.conference().is_some() || self.reoffer.is_some() || self.invite_pending(u32::MAX) {
            return Err(Refusal::CannotTransferNow.into());
        }
        Ok(old)
    }

    /// Puts the caller through to `dial` in place of the agent at `dn`, who leaves at once
    /// (single-step transfer; a blind REFER from the agent's phone): the agent's leg is hung
    /// up, the number routed and rung with the caller's session, and the caller offered the
    /// answer, as for a call placed for a desktop.
    pub(super) fn redirect(
        &mut self,
        dn: &str,
        dial: &str,
        now: Instant,
    ) -> Result<(), ControlError> {
        let old = self.redirect_check(dn)?;
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id, from = dn, to = dial,
            "single-step transfer");
        let customer = self.legs.b[old].sdp.as_deref().map(Bytes::copy_from_slice);
        self.bye(LegId::B(old), now);
        self.legs.b[old].progress = Progress::Over;
        self.legs.b[old].timer = None;
        self.legs.winner = None;
        self.release_dn();
        self.callee.name = None;
        self.callee.dn = false;
        self.callee.trunk = false;
        self.held = false;
        self.rung = false;
        self.timers.stop(Timer::Probe);
        self.dnis = dial.to_owned();
        self.mode = Mode::Originating(Box::new(Originate {
            dial: dial.to_owned(),
            offer: customer,
        }));
        self.phase = Phase::Routing;
        self.event_leaving(CallEventKind::PartyChanged, "", 0, vec![dn.to_owned()]);
        self.route(now);
        Ok(())
    }

    /// A REFER from a party (RFC 3515): the agent's phone transferring the other party, to a
    /// number (blind, as a single-step transfer) or to the party of its consultation call
    /// (attended: `Replaces` names that call's dialog, RFC 3891). Accepted with 202 and one
    /// NOTIFY saying the transfer is taken in hand (RFC 5589); the agent's leg is then hung up.
    pub(super) fn refer(&mut self, leg: LegId, id: u32, request: &Request, now: Instant) {
        let dn = match (leg, self.legs.winner, &self.callee.name) {
            (LegId::B(i), Some(w), Some(dn)) if i == w && self.callee.dn => dn.clone(),
            _ => {
                let r = self.response_to(id, 501).with_header(
                    HeaderName::Warning,
                    warning("transfer by REFER from this side of the call is not supported"),
                );
                self.respond_to(id, r, now);
                return;
            }
        };
        let target = request
            .headers
            .get(&HeaderName::ReferTo)
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.uri.as_sip().cloned());
        let Some(target) = target else {
            let r = self.response_to(id, 400).with_header(
                HeaderName::Warning,
                warning("Refer-To missing or not a SIP URI"),
            );
            self.respond_to(id, r, now);
            return;
        };
        let replaces = target.headers.as_deref().and_then(|h| {
            h.split('&').find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.eq_ignore_ascii_case("replaces").then(|| {
                    let value = switchboard_sip::uri::unescape(value);
                    let value = String::from_utf8_lossy(&value).into_owned();
                    value.split(';').next().unwrap_or_default().to_owned()
                })
            })
        });
        let dial = target.user_text().unwrap_or_default();
        if replaces.is_none() && (dial.is_empty() || self.tenant.dial_plan.route(&dial).is_none()) {
            let r = self.response_to(id, 404).with_header(
                HeaderName::Warning,
                warning("no dial plan rule matches the transfer target"),
            );
            self.respond_to(id, r, now);
            return;
        }
        let accepted = self.response_to(id, 202);
        self.respond_to(id, accepted, now);
        match replaces {
            Some(replaces) => {
                tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %dn, %replaces,
                    "attended transfer from the phone");
                self.notify_refer(leg, "SIP/2.0 200 OK\r\n", now);
                self.out.push_back(Output::Replace { replaces, dn });
            }
            None => {
                // The NOTIFY goes before the transfer's BYE ends the referrer's dialog.
                match self.redirect_check(&dn).map(|_| ()) {
                    Ok(()) => {
                        self.notify_refer(leg, "SIP/2.0 200 OK\r\n", now);
                        if let Err(e) = self.redirect(&dn, &dial, now) {
                            tracing::warn!(tenant = %self.tenant.name, call_id = %self.id,
                                error = %e, "blind transfer from the phone not carried out");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, error = %e,
                            "blind transfer from the phone not carried out");
                        self.notify_refer(leg, "SIP/2.0 503 Service Unavailable\r\n", now);
                    }
                }
            }
        }
    }

    /// Tells the referrer on `leg` how its transfer went: the implicit subscription's only
    /// NOTIFY, a final `status` line in `message/sipfrag` (RFC 3515 2.4.5).
    fn notify_refer(&mut self, leg: LegId, status: &'static str, now: Instant) {
        let extra = [
            (HeaderName::Event, "refer".to_owned()),
            (
                HeaderName::SubscriptionState,
                "terminated;reason=noresource".to_owned(),
            ),
        ];
        let body = (
            "message/sipfrag;version=2.0",
            Bytes::from_static(status.as_bytes()),
        );
        self.send_in_dialog(
            leg,
            Method::Notify,
            &extra,
            Some(body),
            Purpose::Inform,
            now,
        );
    }
}
