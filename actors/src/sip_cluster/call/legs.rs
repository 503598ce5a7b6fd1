//! The call's legs: leg A, the caller's (or, for a call the core places, the agent's phone),
//! and the B legs the call places (the contacts of an extension rung in parallel, a trunk's
//! gateway, media servers, the members' legs into a conference), with the B leg that won.
//! Each leg is one dialog on a Call-ID of its own.

use std::net::SocketAddr;

use bytes::Bytes;
use bytestring::ByteString;
use switchboard_sip::Request;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::invite::session_timer::SessionTimer;
use switchboard_sip::transport::Transport;

/// A leg of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegId {
    A,
    B(usize),
}

/// How far a leg's INVITE got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// INVITE sent, nothing heard but 100.
    Calling,
    /// A provisional response with a tag: ringing.
    Early,
    Answered,
    /// CANCEL due (sent once a provisional response allows it).
    Cancelling,
    /// A final non-2xx, or given up; the status.
    Failed(u16),
    /// Its dialog ended.
    Over,
}

impl Progress {
    /// Whether the leg is still ringing (not answered, not given up).
    pub(super) fn ringing(self) -> bool {
        matches!(self, Progress::Calling | Progress::Early)
    }

    /// Whether the leg is done without being the call's (refused, cancelled, hung up).
    pub(super) fn gone(self) -> bool {
        matches!(self, Progress::Failed(_) | Progress::Over)
    }
}

#[derive(Debug)]
pub(super) struct Leg {
    pub(super) call_id: ByteString,
    /// This side's tag on the leg.
    pub(super) tag: String,
    pub(super) peer: SocketAddr,
    pub(super) transport: Transport,
    pub(super) dialog: Option<Dialog>,
    /// A: the INVITE received; B: the INVITE sent. Let go once the caller ACKs the answer: a
    /// long call keeps no copy of its setup.
    pub(super) invite: Option<Box<Request>>,
    /// The INVITE's CSeq sequence number.
    pub(super) invite_seq: u32,
    /// The Request-URI the leg was called at (B legs; the party's URI in events).
    pub(super) target: String,
    pub(super) progress: Progress,
    /// The ACK sent for a B leg's 2xx, sent again for its retransmissions ([`Leg::ack_again`]);
    /// empty for a leg adopted from a node that died, which acknowledged it and left nothing
    /// to send again.
    pub(super) ack: Option<Bytes>,
    /// Its session timer, if it negotiated one (RFC 4028).
    pub(super) timer: Option<SessionTimer>,
    /// The session description last sent on the leg (own bytes, not a slice of a datagram):
    /// what a refresh, a hold or a resume offers again.
    pub(super) sdp: Option<Box<[u8]>>,
}

impl Leg {
    /// A leg not answered yet, on `call_id` with this side's `tag`, reached at `peer`.
    pub(super) fn new(
        call_id: ByteString,
        tag: String,
        peer: SocketAddr,
        transport: Transport,
    ) -> Self {
        Self {
            call_id,
            tag,
            peer,
            transport,
            dialog: None,
            invite: None,
            invite_seq: 1,
            target: String::new(),
            progress: Progress::Calling,
            ack: None,
            timer: None,
            sdp: None,
        }
    }

    /// The ACK to send again for a retransmission of the leg's 2xx, if there is one.
    pub(super) fn ack_again(&self) -> Option<Bytes> {
        self.ack.clone().filter(|a| !a.is_empty())
    }

    /// Keeps `body` as the description last sent on the leg, if it holds one.
    pub(super) fn sent_sdp(&mut self, body: &[u8]) {
        if !body.is_empty() {
            self.sdp = Some(body.into());
        }
    }
}

/// Leg A, the B legs, and the B leg that answered.
#[derive(Debug)]
pub(super) struct Legs {
    pub(super) a: Leg,
    pub(super) b: Vec<Leg>,
    /// The B leg the call is put through to (answered), if any.
    pub(super) winner: Option<usize>,
}

impl Legs {
    pub(super) fn new(a: Leg) -> Self {
        Self {
            a,
            b: Vec::new(),
            winner: None,
        }
    }

    pub(super) fn get(&self, leg: LegId) -> &Leg {
        match leg {
            LegId::A => &self.a,
            LegId::B(i) => &self.b[i],
        }
    }

    pub(super) fn get_mut(&mut self, leg: LegId) -> &mut Leg {
        match leg {
            LegId::A => &mut self.a,
            LegId::B(i) => &mut self.b[i],
        }
    }

    /// Adds a B leg; its index.
    pub(super) fn push(&mut self, leg: Leg) -> usize {
        self.b.push(leg);
        self.b.len() - 1
    }

    /// The leg a request names: by Call-ID, and by this side's tag when it carries one.
    pub(super) fn of_request(&self, request: &Request) -> Option<LegId> {
        let call_id = request.headers.call_id()?;
        let to_tag = request
            .headers
            .to()
            .and_then(Result::ok)
            .and_then(|t| t.tag().map(str::to_owned));
        let tag_ok = |leg: &Leg| to_tag.as_deref().is_none_or(|t| t == leg.tag);
        if *call_id == self.a.call_id {
            return tag_ok(&self.a).then_some(LegId::A);
        }
        self.b
            .iter()
            .position(|l| l.call_id == *call_id && tag_ok(l))
            .map(LegId::B)
    }

    /// The leg at the other end of the call from `leg`: A and the winner talk to each other.
    pub(super) fn other(&self, leg: LegId) -> Option<LegId> {
        match leg {
            LegId::A => self.winner.map(LegId::B),
            LegId::B(i) if Some(i) == self.winner => Some(LegId::A),
            LegId::B(_) => None,
        }
    }

    /// Leg A and the winner, if any: the legs of an answered call.
    pub(super) fn talking(&self) -> impl Iterator<Item = LegId> + use<> {
        [Some(LegId::A), self.winner.map(LegId::B)]
            .into_iter()
            .flatten()
    }

    /// Whether every B leg is done without answering.
    pub(super) fn all_gone(&self) -> bool {
        self.b.iter().all(|l| l.progress.gone())
    }
}
