//! What a desktop may ask of a call (design.md "Agent desktops"): its state and what may be
//! asked of it now, answer, hold and retrieve, release, user data, DTMF, and the completion of
//! transfers and conferences (whose rules are in `transfer` and `conference`). A control the
//! call's state does not allow is refused with a [`Refusal`] the caller can match, and the
//! call is left as it was.

use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::sdp::{self, Direction};
use switchboard_sip::{HeaderName, Method, Response};

use super::legs::{LegId, Progress};
use super::txns::Purpose;
use super::{Call, Phase};
use crate::messages::call_state::CallEventKind;
use crate::messages::sip_cluster::{
    CallState, CallView, Capability, Control, ControlError, Invalid, Operation, Origin, Refusal,
};

impl Call {
    /// The call as the agent at `dn` sees it, after carrying out `control` for it. Refused
    /// when the call does not involve `dn` (as if unknown) or its state does not allow it
    /// (the call is then untouched).
    pub fn control(
        &mut self,
        dn: &str,
        control: Control,
        now: Instant,
    ) -> Result<CallView, ControlError> {
        if !self.involves(dn) {
            return Err(ControlError::NotFound(self.id.to_string()));
        }
        // The supervisor is in the call to monitor it: its desktop may see it, and leave it
        // (a release is its leaving), and nothing else.
        if self.monitor().is_some_and(|m| m.supervisor == dn) {
            match control {
                Control::View => {}
                Control::Release | Control::StopMonitoring => self.stop_monitoring(now),
                _ => return Err(ControlError::NotFound(self.id.to_string())),
            }
            return Ok(self.view());
        }
        let state = self.state();
        let not_allowed = |what| Err(Refusal::State(what, state).into());
        match control {
            Control::View => {}
            Control::Consulting(consult) => {
                self.thread.consulting = (!consult.is_empty()).then(|| consult.into_boxed_str());
            }
            Control::Answer => {
                if state != CallState::Ringing || !self.callee.is_dn(dn) {
                    return not_allowed(Operation::Answer);
                }
                let early: Vec<usize> = (0..self.legs.b.len())
                    .filter(|&i| {
                        self.legs.b[i].progress == Progress::Early
                            && self.legs.b[i].dialog.is_some()
                    })
                    .collect();
                if early.is_empty() {
                    return Err(Refusal::NoEarlyDialog.into());
                }
                for i in early {
                    self.talk(LegId::B(i), now);
                }
            }
            // Held or not is about to change: asked again once it has, not refused for the
            // state it is leaving.
            Control::Hold | Control::Retrieve if self.offer_in_progress() => {
                return Err(Refusal::OfferInProgress.into());
            }
            Control::Hold => {
                if state != CallState::Established {
                    return not_allowed(Operation::Hold);
                }
                self.reoffer_legs(true, now)?;
            }
            Control::Retrieve => {
                if state != CallState::Held {
                    return not_allowed(Operation::Retrieve);
                }
                self.reoffer_legs(false, now)?;
            }
            Control::Reconnect => match state {
                CallState::Held => self.reoffer_legs(false, now)?,
                CallState::Established => {}
                _ => return not_allowed(Operation::Reconnect),
            },
            Control::Release => match self.phase {
                Phase::Routing | Phase::Ringing => {
                    tracing::info!(tenant = %self.tenant.name, call_id = %self.id, dn,
                        "released from the desktop before it was answered");
                    self.fail(487, "released", None, now);
                }
                Phase::Established => {
                    tracing::info!(tenant = %self.tenant.name, call_id = %self.id, dn,
                        "released from the desktop");
                    self.end(CallEventKind::Released, "released", 0, None, now);
                }
                Phase::Ending => return not_allowed(Operation::Release),
            },
            Control::AttachUserData(pairs) | Control::UpdateUserData(pairs) => {
                if self.phase == Phase::Ending {
                    return not_allowed(Operation::AttachData);
                }
                if let Some(key) = pairs.iter().map(|(k, _)| k).find(|k| k.is_empty()) {
                    return Err(Invalid::UserDataKey(key.clone()).into());
                }
                self.user_data.extend(pairs);
                self.event(CallEventKind::AttachedDataChanged, "", 0);
            }
            Control::DeleteUserData(keys) => {
                if self.phase == Phase::Ending {
                    return not_allowed(Operation::DeleteData);
                }
                if keys.is_empty() {
                    self.user_data.clear();
                }
                for k in &keys {
                    self.user_data.remove(k);
                }
                self.event(CallEventKind::AttachedDataChanged, "", 0);
            }
            Control::SingleStepTransfer(dial) => {
                if !state.answered() {
                    return not_allowed(Operation::Transfer);
                }
                if self.tenant.dial_plan.route(&dial).is_none() {
                    let tenant = self.tenant.name.clone();
                    return Err(Invalid::NoRoute {
                        tenant,
                        dialed: dial,
                    }
                    .into());
                }
                self.redirect(dn, &dial, now)?;
            }
            Control::DeleteFromConference(party) => {
                let Some(m) = self
                    .conference()
                    .and_then(|c| c.members.iter().position(|m| m.dn == party))
                else {
                    return Err(Refusal::NotInConference(party).into());
                };
                self.leave_conference(m, now);
            }
            Control::Monitor { supervisor, mode } => {
                self.start_monitoring(&supervisor, mode, now)?;
            }
            Control::Record(action) => self.record(action, now)?,
            Control::StopMonitoring => {
                if self.monitor().is_none() {
                    return Err(Refusal::NotMonitored.into());
                }
                self.stop_monitoring(now);
            }
            Control::SendDtmf(digits) => {
                if state != CallState::Established {
                    return not_allowed(Operation::SendDtmf);
                }
                if digits.is_empty()
                    || !digits
                        .chars()
                        .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c))
                {
                    return Err(Invalid::Digits(digits).into());
                }
                // Toward the party at the other end from the agent.
                let toward = if self.callee.is_dn(dn) {
                    Some(LegId::A)
                } else {
                    self.legs.winner.map(LegId::B)
                };
                if let Some(leg) = toward {
                    for digit in digits.chars() {
                        self.send_dtmf(leg, digit, now);
                    }
                }
            }
        }
        Ok(self.view())
    }

    /// Whether `dn` is a party: the phone that placed the call or the DN it rings.
    pub(super) fn involves(&self, dn: &str) -> bool {
        matches!(&self.origin, Origin::Phone(o) if o == dn)
            || self.callee.is_dn(dn)
            || self
                .conference()
                .is_some_and(|c| c.members.iter().any(|m| m.internal && m.dn == dn))
    }

    /// The call's state as desktops name it.
    pub(super) fn state(&self) -> CallState {
        match self.phase {
            Phase::Routing => CallState::Dialing,
            Phase::Ringing => CallState::Ringing,
            Phase::Established if self.held => CallState::Held,
            Phase::Established => CallState::Established,
            Phase::Ending => CallState::Released,
        }
    }

    /// The call for a desktop: its state, parties, data, and what may be asked of it now.
    pub fn view(&self) -> CallView {
        use Capability::*;
        let state = self.state();
        let capabilities: &[Capability] = match state {
            CallState::Ringing if self.callee.dn => &[
                Answer,
                Release,
                AttachUserData,
                UpdateUserData,
                DeleteUserData,
            ],
            CallState::Dialing | CallState::Ringing => {
                &[Release, AttachUserData, UpdateUserData, DeleteUserData]
            }
            CallState::Established => &[
                Hold,
                Release,
                SendDtmf,
                AttachUserData,
                UpdateUserData,
                DeleteUserData,
            ],
            CallState::Held => &[
                Retrieve,
                Release,
                AttachUserData,
                UpdateUserData,
                DeleteUserData,
            ],
            CallState::Released => &[],
        };
        let mut capabilities = capabilities.to_vec();
        // A call consulted about, and the consultation call itself once answered.
        if state.answered() && (self.thread.consulting.is_some() || self.thread.is_consultation()) {
            capabilities.extend([CompleteTransfer, CompleteConference, Alternate, Reconnect]);
        }
        CallView {
            call: self.call_thread(""),
            state,
            capabilities,
        }
    }

    /// Whether an offer is under way on the call (a hold or retrieve of ours, a re-INVITE
    /// relayed or refreshing): the call's state is about to change, so what depends on it
    /// is asked again.
    pub(super) fn offer_in_progress(&self) -> bool {
        self.reoffer.is_some()
            || !self.deferred.is_empty()
            || self.invite_pending(u32::MAX)
            || self.txns.clients.iter().any(|c| {
                // Answered, it only lingers (RFC 6026): the offer is over.
                c.method == Method::Invite
                    && matches!(c.purpose, Purpose::Relay(_) | Purpose::Refresh)
                    && !c.txn.is_answered()
            })
    }

    /// Offers each leg its last description again, set on hold (`inactive`) or resumed.
    fn reoffer_legs(&mut self, hold: bool, now: Instant) -> Result<(), ControlError> {
        let Some(winner) = self.legs.winner else {
            return Err(Refusal::NotAnswered.into());
        };
        let legs = [LegId::A, LegId::B(winner)];
        if self.offer_in_progress() {
            return Err(Refusal::OfferInProgress.into());
        }
        let direction = if hold {
            Direction::Inactive
        } else {
            Direction::SendRecv
        };
        let mut offers = Vec::with_capacity(2);
        for leg in legs {
            let l = self.legs.get(leg);
            let body = l.sdp.as_deref().and_then(|b| sdp::redirected(b, direction));
            match (body, l.dialog.is_some()) {
                (Some(body), true) => offers.push((leg, body)),
                _ => return Err(Refusal::NoSession.into()),
            }
        }
        self.reoffer = Some((hold, offers.len() as u8));
        for (leg, body) in offers {
            self.offer(leg, body, now);
        }
        Ok(())
    }

    /// A leg answered a hold or resume; once both have, the call is reported held or retrieved.
    pub(super) fn reoffer_answered(&mut self, leg: LegId, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        self.hold_answered(leg, r, now);
        if let Some(i) = self.deferred.iter().position(|(l, _)| *l == leg) {
            let (leg, body) = self.deferred.remove(i);
            if self.phase == Phase::Established {
                self.offer(leg, body, now);
            }
        }
    }

    /// A leg answered an offer of ours: a hold or resume is over once both have.
    fn hold_answered(&mut self, leg: LegId, r: Response, now: Instant) {
        if (200..300).contains(&r.status) {
            self.session_answered(leg, &r, now);
        } else {
            tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, ?leg, status = r.status,
                "a leg refused a hold or resume");
        }
        let Some((hold, left)) = self.reoffer.as_mut() else {
            return;
        };
        *left = left.saturating_sub(1);
        if *left > 0 {
            return;
        }
        let hold = *hold;
        self.reoffer = None;
        if self.phase == Phase::Established && hold != self.held {
            self.held = hold;
            let kind = if hold {
                CallEventKind::Held
            } else {
                CallEventKind::Retrieved
            };
            self.event(kind, "", 0);
        }
    }

    /// Sends one DTMF digit on `leg` as INFO with `application/dtmf-relay`.
    fn send_dtmf(&mut self, leg: LegId, digit: char, now: Instant) {
        let body = Bytes::from(format!("Signal={digit}\r\nDuration=160\r\n"));
        let body = Some(("application/dtmf-relay", body));
        self.send_in_dialog(leg, Method::Info, &[], body, Purpose::Inform, now);
    }

    /// Asks the phone on `leg` to answer: NOTIFY with `Event: talk` in its early dialog.
    fn talk(&mut self, leg: LegId, now: Instant) {
        let extra = [
            (HeaderName::Event, "talk".to_owned()),
            (HeaderName::SubscriptionState, "active".to_owned()),
        ];
        self.send_in_dialog(leg, Method::Notify, &extra, None, Purpose::Inform, now);
    }
}
