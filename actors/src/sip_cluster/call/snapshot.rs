//! A call's snapshot: what it leaves in Redis each time its dialogs or parties change (with
//! each event, never per message), so that another node can carry the call on. Each leg
//! with its dialog (ids, tags, CSeq both ways, route set, outbound route, remote target), how
//! it is reached, the description last sent on it and its session timer; the call's thread,
//! parties, user data, and where it waits when it waits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_routing::strategy::Treatment;
use switchboard_sip::dialog::DialogParts;

use super::legs::{Leg, Progress};
use super::{Call, CallEventKind, Mode, Phase};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSnapshot {
    pub call: String,
    /// The node running the call.
    pub node: String,
    /// Where that node takes SIP (UDP), for a message of the call that reaches another.
    #[serde(default)]
    pub sip: String,
    /// How far the call got: `routing`, `ringing`, `established`.
    #[serde(default)]
    pub phase: String,
    /// What drives its B legs: `direct`, `routing`, `originating`, `conference`.
    #[serde(default)]
    pub mode: String,
    /// When the call began (Unix ms).
    #[serde(default)]
    pub started_ms: u64,
    /// When the snapshot was taken (Unix ms).
    #[serde(default)]
    pub at_ms: u64,
    #[serde(default)]
    pub caller_uri: String,
    /// Whether the destination is one of the tenant's DNs.
    #[serde(default)]
    pub destination_dn: bool,
    /// The proxy the call came through, which reaches its callees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<String>,
    pub thread: String,
    pub tenant: String,
    /// The event the snapshot was taken at.
    pub state: String,
    pub held: bool,
    pub origin: String,
    pub ani: String,
    pub dnis: String,
    /// The party the call was put through to (a DN or a number).
    pub destination: Option<String>,
    #[serde(default)]
    pub user_data: BTreeMap<String, String>,
    /// Where the call waits, while it waits at a routing point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingSnapshot>,
    /// The caller's leg first, then the callee's (once put through), then a media server's.
    pub legs: Vec<LegSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingSnapshot {
    pub routing_point: String,
    pub queue: String,
    pub target: String,
    pub priority: u32,
    /// What the caller hears, and from which of the tenant's media servers (its index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treatment: Option<Treatment>,
    #[serde(default)]
    pub server: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegSnapshot {
    /// `caller`, `callee` or `media`.
    pub role: String,
    pub call_id: String,
    pub local_tag: String,
    pub peer: String,
    pub transport: String,
    /// The URI the leg was called at (B legs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub dialog: Option<DialogParts>,
    /// The session description last sent on the leg: what a refresh, hold or resume offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timer: Option<TimerSnapshot>,
    /// While the leg is not answered: its INVITE's head (no body), by which another node
    /// answers the caller or CANCELs a phone still ringing if it cannot carry the call on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerSnapshot {
    pub interval_secs: u64,
    /// Whether this side sends the refreshes.
    pub we_refresh: bool,
    pub update: bool,
}

impl LegSnapshot {
    /// The leg's dialog as the sip crate makes it again.
    pub fn dialog_parts(&self) -> Option<DialogParts> {
        let mut parts = self.dialog.clone()?;
        parts.call_id = self.call_id.clone();
        parts.local_tag = self.local_tag.clone();
        Some(parts)
    }

    fn of(role: &str, l: &Leg) -> Self {
        LegSnapshot {
            role: role.to_owned(),
            call_id: l.call_id.to_string(),
            local_tag: l.tag.clone(),
            peer: l.peer.to_string(),
            transport: l.transport.to_string(),
            target: l.target.clone(),
            dialog: l.dialog.as_ref().map(|d| {
                // As it reads back: the leg names the Call-ID and tag (see `dialog_parts`).
                let mut parts = d.parts();
                parts.call_id.clear();
                parts.local_tag.clear();
                parts
            }),
            sdp: l
                .sdp
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            invite: (!matches!(l.progress, Progress::Answered | Progress::Over))
                .then(|| l.invite.as_deref().map(head))
                .flatten(),
            session_timer: l.timer.as_ref().map(|t| TimerSnapshot {
                interval_secs: t.interval.as_secs(),
                we_refresh: t.we_refresh,
                update: t.update,
            }),
        }
    }
}

impl Call {
    /// What another node needs to carry the call on, as it is at event `kind`.
    pub(super) fn snapshot(&self, kind: CallEventKind) -> CallSnapshot {
        let mut legs = vec![LegSnapshot::of("caller", &self.legs.a)];
        if let Some(i) = self.legs.winner {
            legs.push(LegSnapshot::of("callee", &self.legs.b[i]));
        }
        if let Some(i) = self
            .treatment_leg()
            .filter(|&i| Some(i) != self.legs.winner)
        {
            legs.push(LegSnapshot::of("media", &self.legs.b[i]));
        }
        // Phones still rung (an extension's contacts, an agent): another node stops them.
        for (i, l) in self.legs.b.iter().enumerate() {
            if l.progress.ringing()
                && Some(i) != self.legs.winner
                && Some(i) != self.treatment_leg()
            {
                legs.push(LegSnapshot::of("ringing", l));
            }
        }
        let waiting = self.waiting_snapshot();
        let phase = match self.phase {
            Phase::Routing => "routing",
            Phase::Ringing => "ringing",
            Phase::Established | Phase::Ending => "established",
        };
        let mode = match self.mode {
            Mode::Direct => "direct",
            Mode::Routing(_) => "routing",
            Mode::Originating(_) => "originating",
            Mode::Conference(_) => "conference",
        };
        let elapsed = self.started.elapsed().as_millis() as u64;
        let now_ms = crate::unix_ms();
        CallSnapshot {
            call: self.id.to_string(),
            node: self.local.node.to_string(),
            sip: self.local.addrs.udp.to_string(),
            phase: phase.to_owned(),
            mode: mode.to_owned(),
            started_ms: now_ms.saturating_sub(elapsed),
            at_ms: now_ms,
            caller_uri: self.caller_uri.clone(),
            destination_dn: self.callee.dn,
            outbound: self.outbound.map(|a| a.to_string()),
            thread: self.thread_id().to_owned(),
            tenant: self.tenant.name.clone(),
            state: kind.name().to_owned(),
            held: self.held,
            origin: self.origin.describe(),
            ani: self.ani.clone(),
            dnis: self.dnis.clone(),
            destination: self.callee.name.clone(),
            user_data: self.user_data.clone(),
            waiting,
            legs,
        }
    }
}

/// A request's head, without its body: what a snapshot keeps of an INVITE not answered.
fn head(request: &switchboard_sip::Request) -> String {
    let mut head = request.clone();
    head.body = bytes::Bytes::new();
    head.headers
        .set(switchboard_sip::HeaderName::ContentLength, "0".to_owned());
    String::from_utf8_lossy(&head.to_bytes()).into_owned()
}
