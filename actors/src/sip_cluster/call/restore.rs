//! A call adopted from a node that died: made again from the snapshot that node left in Redis
//! ([`CallSnapshot`]), on this node, where it carries on as the first node would have. An
//! answered call talks on; a call waiting at a routing point keeps its media server's leg and
//! asks its routing session (kept by the tenant's owner, with the call's place and age) for
//! its orders again. A call caught in a moment the snapshot does not carry (its parties still
//! being placed, or in a conference) ends cleanly on every leg it has, cause `unrecoverable`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::invite::session_timer::SessionTimer;
use switchboard_sip::transport::Transport;

use super::legs::{Leg, Progress};
use super::routing::{Waiting, waiting_limit};
use super::snapshot::{CallSnapshot, LegSnapshot};
use super::timers::Timer;
use super::{Call, Callee, Local, Mode, Phase, Setting};
use crate::messages::call_state::CallEventKind;
use crate::messages::sip_cluster::Origin;
use crate::sip_cluster::{ClusterConfig, DnCalls};
use crate::tenant::Tenant;

/// What a call adopted here is made with: the tenant it belongs to and what the node gives
/// every call.
#[derive(Clone)]
pub struct Adopting {
    pub tenant: Arc<Tenant>,
    pub local: Local,
    pub config: Arc<ClusterConfig>,
    pub dn_calls: DnCalls,
}

impl Call {
    /// The call `snapshot` describes, carried on here. A snapshot this version cannot make a
    /// call of is an error saying why; the caller ends what it can of the call.
    pub fn restore(snapshot: &CallSnapshot, at: Adopting, now: Instant) -> Result<Self, String> {
        let origin = Origin::parse(&snapshot.origin)
            .ok_or_else(|| format!("origin {:?} unknown", snapshot.origin))?;
        let leg_of = |role: &str| snapshot.legs.iter().find(|l| l.role == role);
        let skip = cseq_skip(snapshot);
        let leg = |l: &LegSnapshot| leg(l, skip, now);
        let a = leg(leg_of("caller").ok_or("no caller's leg")?)?;
        let mut call = Self::bare(snapshot, at, origin, a, now);
        let age = crate::unix_ms().saturating_sub(snapshot.started_ms);
        call.started = now
            .checked_sub(Duration::from_millis(age))
            .unwrap_or(call.started);
        call.user_data = snapshot.user_data.clone();
        call.held = snapshot.held;
        call.rung = true;
        call.outbound = snapshot.outbound.as_deref().and_then(|a| a.parse().ok());
        if snapshot.thread != snapshot.call {
            call.thread.joined = Some(snapshot.thread.as_str().into());
        }
        call.callee = Callee {
            name: snapshot.destination.clone(),
            dn: snapshot.destination_dn,
            counted: false,
            trunk: false,
        };
        if let Some(l) = leg_of("callee") {
            let i = call.legs.push(leg(l)?);
            call.legs.winner = Some(i);
        }
        let media = match leg_of("media") {
            Some(l) => Some(call.legs.push(leg(l)?)),
            None => None,
        };
        // Phones the dead node left ringing stop: the call's routing rings again if it must.
        for l in snapshot.legs.iter().filter(|l| l.role == "ringing") {
            let i = call.legs.push(leg(l)?);
            call.legs.b[i].progress = Progress::Early;
            call.cancel_leg(i, now);
        }
        let answered = call.legs.a.progress == Progress::Answered;
        match (snapshot.mode.as_str(), &snapshot.waiting) {
            ("direct", _) if answered && call.legs.winner.is_some() => {
                call.phase = Phase::Established;
                if call.callee.dn
                    && let Some(dn) = &call.callee.name
                {
                    // Counted whatever its cap: the call is there already.
                    call.callee.counted = call.dn_calls.acquire(&call.tenant.name, dn, None);
                }
                if !call.config.probe_interval.is_zero() {
                    call.timers
                        .set(Timer::Probe, now + call.config.probe_interval);
                }
            }
            ("routing", Some(w)) if answered => {
                let rp = call.tenant.routing_point(&w.routing_point).cloned();
                let Some(rp) = rp else {
                    return Err(format!("routing point {} is gone", w.routing_point));
                };
                call.phase = Phase::Ringing;
                let treatment = media.or(call.legs.winner);
                let waiting = Waiting::restored(w, rp.default_destination.clone(), treatment);
                call.mode = Mode::Routing(Box::new(waiting));
                let deadline = call.started + waiting_limit(&rp);
                call.timers.set(Timer::RoutingTimeout, deadline.max(now));
                call.ask_route_again(rp.strategy.clone());
            }
            (mode, _) => {
                return Err(format!(
                    "a call {} in mode {mode} is not carried on",
                    snapshot.phase
                ));
            }
        }
        tracing::info!(tenant = %call.tenant.name, call_id = %call.id, from = %snapshot.node,
            mode = %snapshot.mode, "call adopted");
        Ok(call)
    }

    /// Whether another node can carry the call on from its snapshot as it is now (what
    /// [`Call::restore`] takes): answered and put through, or waiting at a routing point with
    /// the caller answered and no agent being rung or bridged.
    pub fn can_be_carried_on(&self) -> bool {
        if self.phase == Phase::Ending || self.reoffer.is_some() || self.txns.in_progress() {
            return false;
        }
        let answered = self.legs.a.progress == Progress::Answered;
        match &self.mode {
            Mode::Direct => {
                answered && self.phase == Phase::Established && self.legs.winner.is_some()
            }
            Mode::Routing(w) => answered && w.is_settled(),
            Mode::Originating(_) | Mode::Conference(_) => false,
        }
    }

    /// Ends a call adopted in a state it cannot go on from, cause `unrecoverable`, with its
    /// closing event: a caller not answered yet gets 503 (its carrier may try elsewhere),
    /// answered legs a BYE, phones still ringing a CANCEL.
    pub fn unrecoverable(&mut self, now: Instant) {
        if self.initial_invite().is_some() {
            let why = Some("the call's node failed".to_owned());
            self.fail(503, "unrecoverable", why, now);
        } else {
            self.end(CallEventKind::Released, "unrecoverable", 0, None, now);
        }
    }

    /// Only the legs a snapshot names, with no mode, to end them: what [`Call::restore`]
    /// refused is still hung up cleanly.
    pub fn remains(snapshot: &CallSnapshot, at: Adopting, now: Instant) -> Option<Self> {
        let skip = cseq_skip(snapshot);
        let mut legs = snapshot.legs.iter().filter_map(|l| leg(l, skip, now).ok());
        let a = legs.next()?;
        let origin = Origin::parse(&snapshot.origin).unwrap_or(Origin::Trunk(String::new()));
        let mut call = Self::bare(snapshot, at, origin, a, now);
        for l in legs {
            let i = call.legs.push(l);
            // Ringing still: CANCELed at once, whatever it said before.
            if call.legs.b[i].progress == Progress::Calling && call.legs.b[i].invite.is_some() {
                call.legs.b[i].progress = Progress::Early;
            }
        }
        // A caller not answered yet is answered through a transaction made of its INVITE.
        if call.legs.a.progress != Progress::Answered
            && let Some(invite) = call.legs.a.invite.as_deref().cloned()
        {
            call.new_server(super::legs::LegId::A, invite);
        }
        call.phase = Phase::Established;
        call.callee.name = snapshot.destination.clone();
        call.callee.dn = snapshot.destination_dn;
        Some(call)
    }

    /// The call of `snapshot` with its caller's leg `a` and nothing else yet, found by the
    /// SIP Call-IDs of all the legs the snapshot names.
    fn bare(snapshot: &CallSnapshot, at: Adopting, origin: Origin, a: Leg, now: Instant) -> Self {
        let setting = Setting {
            id: Arc::from(snapshot.call.as_str()),
            tenant: at.tenant,
            local: at.local,
            config: at.config,
            dn_calls: at.dn_calls,
        };
        let mut call = Self::new(
            setting,
            origin,
            a,
            snapshot.ani.clone(),
            snapshot.dnis.clone(),
            snapshot.caller_uri.clone(),
            now,
        );
        call.indexed = snapshot
            .legs
            .iter()
            .map(|l| ByteString::from(l.call_id.as_str()))
            .collect();
        call
    }
}

/// How far past a snapshot's CSeq numbers the requests of an adopted call go. The node may
/// have sent requests the snapshot did not see (probes, session refreshes: not changes of
/// the call's dialogs) and a peer refuses a number not above the last it saw (RFC 3261
/// 12.2.2); one a second since the snapshot, and a hundred more, is more than any sends.
fn cseq_skip(snapshot: &CallSnapshot) -> u32 {
    let since = crate::unix_ms().saturating_sub(snapshot.at_ms) / 1000;
    u32::try_from(since)
        .unwrap_or(u32::MAX / 4)
        .min(u32::MAX / 4)
        + 100
}

/// A leg as its snapshot has it: answered when its dialog is confirmed; its own CSeq
/// numbers go on `skip` past the snapshot's.
fn leg(l: &LegSnapshot, skip: u32, now: Instant) -> Result<Leg, String> {
    let peer: SocketAddr = l
        .peer
        .parse()
        .map_err(|_| format!("leg peer {:?}", l.peer))?;
    let transport = Transport::from_via_name(&l.transport).unwrap_or(Transport::Udp);
    let mut leg = Leg::new(
        ByteString::from(l.call_id.as_str()),
        l.local_tag.clone(),
        peer,
        transport,
    );
    leg.target = l.target.clone();
    if let Some(mut parts) = l.dialog_parts() {
        parts.local_seq = parts.local_seq.saturating_add(skip);
        let dialog = Dialog::from_parts(&parts).map_err(|e| format!("leg dialog: {e}"))?;
        if parts.confirmed {
            leg.progress = Progress::Answered;
            // Its answer was acknowledged by the node that died: not again before a BYE.
            leg.ack = Some(bytes::Bytes::new());
        } else {
            leg.progress = Progress::Early;
        }
        leg.invite_seq = parts.local_seq.max(1);
        leg.dialog = Some(dialog);
    }
    leg.sdp = l.sdp.as_ref().map(|s| s.as_bytes().into());
    leg.invite = l.invite.as_ref().and_then(|text| {
        match switchboard_sip::parse_datagram(bytes::Bytes::from(text.clone())) {
            Ok(switchboard_sip::Message::Request(r)) => Some(Box::new(r)),
            _ => None,
        }
    });
    leg.timer = l.session_timer.as_ref().map(|t| {
        let mut timer =
            SessionTimer::new(Duration::from_secs(t.interval_secs), t.we_refresh, t.update);
        timer.refreshed(now);
        timer
    });
    Ok(leg)
}
