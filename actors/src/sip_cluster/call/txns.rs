//! The call's transactions: the server transactions of the requests its legs sent, the client
//! transactions of those it sends (each with the purpose its answer serves), and the 2xx it
//! sent that await their ACK; with the plumbing that sends what they queue to the right leg
//! and hands each answer to the rule its purpose names.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::invite::ack::{AckDue, AwaitingAck as Unacknowledged};
use switchboard_sip::invite::session_timer::TAG as TIMER;
use switchboard_sip::support::ALLOW_IN_DIALOG as ALLOW;
use switchboard_sip::transaction::{
    ClientEvent, ClientTransaction, ServerEvent, ServerTransaction, TransactionKey, cancel_for,
};
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Headers, Method, Request, Response};

use super::legs::{LegId, Progress};
use super::{Call, Output, copy_body_headers, seq_of, slim};
use crate::messages::call_state::CallEventKind;

/// What the answer to a request the call sends is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Invite,
    Cancel,
    Bye,
    /// A request relayed from the other leg; its final response answers that server
    /// transaction.
    Relay(u32),
    Probe,
    /// A session refresh this side sends (RFC 4028).
    Refresh,
    /// A hold or resume a desktop asked: the leg's last description offered again with
    /// another direction.
    Reoffer,
    /// A request whose answer changes nothing: DTMF a desktop sends (INFO), the NOTIFY of
    /// a REFER.
    Inform,
    /// A party's leg into the media server's conference (the member's index).
    Join(usize),
    /// The INVITE to a supervisor's phone, which monitors the call.
    Supervise,
    /// An MSML request to the media server (INFO), answered by its `<result>`.
    Msml,
    /// An offer to the caller at a routing point, of the party on B leg `i` that takes the
    /// place of the one it hears.
    Bridge(usize),
}

#[derive(Debug)]
pub(super) struct Client {
    /// The branch and method that match its responses (a CANCEL shares its INVITE's branch).
    pub(super) branch: String,
    pub(super) method: Method,
    pub(super) leg: LegId,
    pub(super) txn: ClientTransaction,
    pub(super) purpose: Purpose,
}

#[derive(Debug)]
pub(super) struct Server {
    pub(super) id: u32,
    pub(super) key: TransactionKey,
    pub(super) leg: LegId,
    pub(super) txn: ServerTransaction,
    /// The request; only its method and URI once it has its final response.
    pub(super) request: Request,
    pub(super) answered: bool,
    /// The caller's INVITE that started the call.
    pub(super) initial: bool,
}

/// A 2xx to an INVITE sent on a leg, retransmitted until its ACK (RFC 3261 13.3.1.4); the
/// ACK is then passed to the other leg, whose 2xx it answers.
#[derive(Debug)]
pub(super) struct AwaitingAck {
    pub(super) leg: LegId,
    pub(super) sent: Unacknowledged,
    /// The leg and INVITE sequence number to ACK when it arrives.
    pub(super) then: Option<(LegId, u32)>,
}

/// The call's transactions in progress, boxed so that the lists cost little while short, and
/// given back when empty: an established call holds none.
#[derive(Debug, Default)]
pub(super) struct Txns {
    #[expect(
        clippy::vec_box,
        reason = "a Vec holds 4 at least: 4 boxes, not 4 transactions"
    )]
    pub(super) servers: Vec<Box<Server>>,
    #[expect(clippy::vec_box, reason = "as above")]
    pub(super) clients: Vec<Box<Client>>,
    pub(super) awaiting_ack: Vec<AwaitingAck>,
    /// The id of the last server transaction.
    next_server: u32,
}

impl Txns {
    /// Whether none is left.
    pub(super) fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.clients.is_empty() && self.awaiting_ack.is_empty()
    }

    /// Whether a request is still in progress (not answered, or its 2xx not acknowledged):
    /// the moment a call cannot be handed over, whatever lingers after the answers. An
    /// OPTIONS probe does not count: another node probes again.
    pub(super) fn in_progress(&self) -> bool {
        self.servers.iter().any(|s| !s.answered)
            || self
                .clients
                .iter()
                .any(|c| c.method != Method::Options && !c.txn.is_answered())
            || !self.awaiting_ack.is_empty()
    }

    /// When a transaction or a 2xx awaiting its ACK next has something to do.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        let servers = self.servers.iter().filter_map(|s| s.txn.poll_timeout());
        let clients = self.clients.iter().filter_map(|c| c.txn.poll_timeout());
        let acks = self.awaiting_ack.iter().map(|a| a.sent.due());
        servers.chain(clients).chain(acks).min()
    }

    /// Whether a request of `purpose` to `leg` is in progress.
    pub(super) fn sending(&self, leg: LegId, purpose: impl Fn(Purpose) -> bool) -> bool {
        self.clients
            .iter()
            .any(|c| c.leg == leg && purpose(c.purpose))
    }

    /// Whether a request for `purpose` on `leg` waits for its answer (one answered and
    /// lingering to absorb retransmissions does not count).
    pub(super) fn awaiting(&self, leg: LegId, purpose: Purpose) -> bool {
        self.clients
            .iter()
            .any(|c| c.leg == leg && c.purpose == purpose && !c.txn.is_answered())
    }
}

impl Call {
    /// The transaction timers that are due.
    pub(super) fn transactions_due(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .txns
            .servers
            .iter()
            .filter(|s| s.txn.poll_timeout().is_some_and(|t| t <= now))
            .map(|s| s.id)
            .collect();
        for id in due {
            if let Some(s) = self.txns.servers.iter_mut().find(|s| s.id == id) {
                s.txn.handle_timeout(now);
            }
            self.flush_server(id);
        }
        let mut i = 0;
        while i < self.txns.clients.len() {
            if self.txns.clients[i]
                .txn
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.txns.clients[i].txn.handle_timeout(now);
                let before = self.txns.clients.len();
                self.flush_client(i, now);
                if self.txns.clients.len() < before {
                    continue;
                }
            }
            i += 1;
        }
    }

    pub(super) fn new_server(&mut self, leg: LegId, request: Request) -> u32 {
        self.txns.next_server += 1;
        let id = self.txns.next_server;
        let key = TransactionKey::for_request(&request).expect("the edge checked the Via");
        let reliable = self.legs.get(leg).transport.is_reliable();
        // The first server transaction of a call is the caller's INVITE.
        let initial = id == 1;
        self.txns.servers.push(Box::new(Server {
            id,
            key,
            leg,
            txn: ServerTransaction::new(&request, reliable, self.config.timers),
            request,
            answered: false,
            initial,
        }));
        id
    }

    /// A response to server transaction `id` with this side's tag on its leg.
    pub(super) fn response_to(&self, id: u32, status: u16) -> Response {
        let Some(s) = self.txns.servers.iter().find(|s| s.id == id) else {
            return Response::to_request(&Default::default(), status);
        };
        Response::to_request(&s.request.headers, status).with_to_tag(&self.legs.get(s.leg).tag)
    }

    pub(super) fn respond_to(&mut self, id: u32, response: Response, now: Instant) {
        if let Some(s) = self.txns.servers.iter_mut().find(|s| s.id == id) {
            s.txn.respond(&response, now);
            if response.status >= 200 {
                s.answered = true;
                slim(&mut s.request);
            }
        }
        self.flush_server(id);
    }

    pub(super) fn flush_server(&mut self, id: u32) {
        let Some(pos) = self.txns.servers.iter().position(|s| s.id == id) else {
            return;
        };
        let s = &mut self.txns.servers[pos];
        let l = match s.leg {
            LegId::A => &self.legs.a,
            LegId::B(i) => &self.legs.b[i],
        };
        while let Some(bytes) = s.txn.poll_transmit() {
            self.out.push_back(Output::Send {
                transport: l.transport,
                dest: l.peer,
                bytes,
            });
        }
        let mut terminated = false;
        while let Some(e) = s.txn.poll_event() {
            match e {
                ServerEvent::Terminated => terminated = true,
                ServerEvent::Ack(_) | ServerEvent::AckTimeout => {}
            }
        }
        if terminated {
            self.txns.servers.remove(pos);
            if self.txns.servers.is_empty() {
                self.txns.servers.shrink_to_fit();
            }
        }
    }

    pub(super) fn send_request(
        &mut self,
        leg: LegId,
        request: Request,
        branch: String,
        purpose: Purpose,
        now: Instant,
    ) {
        let reliable = self.legs.get(leg).transport.is_reliable();
        let method = request.method.clone();
        let txn = ClientTransaction::new(request, reliable, self.config.timers, now);
        self.txns.clients.push(Box::new(Client {
            branch,
            method,
            leg,
            txn,
            purpose,
        }));
        let i = self.txns.clients.len() - 1;
        self.flush_client(i, now);
    }

    pub(super) fn flush_client(&mut self, i: usize, now: Instant) {
        loop {
            let Some(c) = self.txns.clients.get_mut(i) else {
                return;
            };
            let (leg, purpose) = (c.leg, c.purpose);
            let mut sent = Vec::new();
            while let Some(bytes) = c.txn.poll_transmit() {
                sent.push(bytes);
            }
            let event = c.txn.poll_event();
            let l = self.legs.get(leg);
            let (transport, dest) = (l.transport, l.peer);
            for bytes in sent {
                self.out.push_back(Output::Send {
                    transport,
                    dest,
                    bytes,
                });
            }
            match event {
                None => return,
                Some(ClientEvent::Terminated) => {
                    self.txns.clients.remove(i);
                    if purpose == Purpose::Invite {
                        // Past Timer M no 2xx of this INVITE comes again: its ACK can go,
                        // and the INVITE (a leg that never answers keeps it until then, to
                        // CANCEL it or take a late 2xx).
                        let l = self.legs.get_mut(leg);
                        l.ack = None;
                        l.invite = None;
                    }
                    if self.txns.clients.is_empty() {
                        self.txns.clients.shrink_to_fit();
                    }
                    return;
                }
                Some(ClientEvent::Response(r)) => self.client_response(leg, purpose, r, now),
                Some(ClientEvent::TimedOut) | Some(ClientEvent::TransportError) => {
                    self.client_failed(leg, purpose, now)
                }
            }
        }
    }

    fn client_response(&mut self, leg: LegId, purpose: Purpose, r: Response, now: Instant) {
        match purpose {
            Purpose::Invite => match leg {
                LegId::B(i) => self.b_response(i, r, now),
                LegId::A => self.phone_response(r, now),
            },
            Purpose::Relay(server) => self.relayed_response(leg, server, r, now),
            Purpose::Refresh => self.refresh_answered(leg, r, now),
            Purpose::Probe => {
                if matches!(r.status, 408 | 481) {
                    self.end(
                        CallEventKind::Released,
                        "unreachable",
                        r.status,
                        Some(leg),
                        now,
                    );
                }
            }
            Purpose::Reoffer => self.reoffer_answered(leg, r, now),
            Purpose::Join(member) => self.joined(leg, member, r, now),
            Purpose::Supervise => {
                if let LegId::B(i) = leg {
                    self.supervisor_answered(i, r, now);
                }
            }
            Purpose::Msml => self.msml_answered(r, now),
            Purpose::Bridge(i) => self.bridged(i, r, now),
            Purpose::Cancel | Purpose::Bye | Purpose::Inform => {}
        }
    }

    fn client_failed(&mut self, leg: LegId, purpose: Purpose, now: Instant) {
        match purpose {
            Purpose::Invite => match leg {
                LegId::B(i) => {
                    let timeout = self.response_from_leg(i, 408);
                    self.b_response(i, timeout, now);
                }
                LegId::A => {
                    let timeout = Response::to_request(&Headers::default(), 408);
                    self.phone_response(timeout, now);
                }
            },
            Purpose::Relay(server) => {
                let r = self.response_to(server, 408);
                self.respond_to(server, r, now);
                self.end(CallEventKind::Released, "unreachable", 408, Some(leg), now);
            }
            Purpose::Probe | Purpose::Refresh => {
                self.end(CallEventKind::Released, "unreachable", 408, Some(leg), now)
            }
            Purpose::Reoffer => {
                let timeout = Response::to_request(&Headers::default(), 408);
                self.reoffer_answered(leg, timeout, now);
            }
            Purpose::Join(member) => {
                let timeout = Response::to_request(&Headers::default(), 408);
                self.joined(leg, member, timeout, now);
            }
            Purpose::Supervise => {
                if let LegId::B(i) = leg {
                    let timeout = Response::to_request(&Headers::default(), 408);
                    self.supervisor_answered(i, timeout, now);
                }
            }
            Purpose::Msml => {
                let timeout = Response::to_request(&Headers::default(), 408);
                self.msml_answered(timeout, now);
            }
            Purpose::Bridge(i) => {
                let timeout = Response::to_request(&Headers::default(), 408);
                self.bridged(i, timeout, now);
            }
            Purpose::Cancel | Purpose::Bye | Purpose::Inform => {}
        }
    }

    /// A response as if it came from B leg `i` (a timeout), for the same handling.
    fn response_from_leg(&self, i: usize, status: u16) -> Response {
        match &self.legs.b[i].invite {
            Some(invite) => Response::to_request(&invite.headers, status),
            None => Response::to_request(&Default::default(), status),
        }
    }

    /// The server transaction of the caller's INVITE, while it has no final response.
    pub(super) fn initial_invite(&self) -> Option<u32> {
        let first = self.txns.servers.iter().find(|s| s.initial)?;
        (!first.answered).then_some(first.id)
    }

    /// Answers a request that belongs to no transaction or dialog of the call, statelessly.
    pub(super) fn answer_alone(
        &mut self,
        request: &Request,
        source: SocketAddr,
        transport: Transport,
        status: u16,
    ) {
        let r = Response::answering(&request.headers, status);
        self.out.push_back(Output::Send {
            transport,
            dest: source,
            bytes: r.to_bytes(),
        });
    }

    /// Sends a request of `method` in `leg`'s dialog: this side's Via, its Contact for the
    /// methods that carry one, the `extra` headers, and `body` with its content type.
    pub(super) fn send_in_dialog(
        &mut self,
        leg: LegId,
        method: Method,
        extra: &[(HeaderName, String)],
        body: Option<(&str, Bytes)>,
        purpose: Purpose,
        now: Instant,
    ) {
        let transport = self.legs.get(leg).transport;
        let contact = self.local.contact(transport);
        let Some(dialog) = self.legs.get_mut(leg).dialog.as_mut() else {
            return;
        };
        let mut request = dialog.request(method.clone());
        let (via, branch) = self.local.via(transport);
        request.headers.push_front(HeaderName::Via, via);
        let mut headers = std::mem::take(&mut request.headers);
        headers.remove(&HeaderName::ContentLength);
        if matches!(method, Method::Invite | Method::Update | Method::Notify) {
            headers.push(HeaderName::Contact, contact);
        }
        for (name, value) in extra {
            headers.push(name.clone(), value.as_str());
        }
        if let Some((content_type, body)) = body {
            headers.push(HeaderName::ContentType, content_type);
            request.body = body;
        }
        headers.push(HeaderName::ContentLength, "0");
        request.headers = headers;
        self.send_request(leg, request, branch, purpose, now);
    }

    /// Sends `body` to `leg` in a re-INVITE.
    pub(super) fn offer(&mut self, leg: LegId, body: Vec<u8>, now: Instant) {
        self.offer_for(leg, body, Purpose::Reoffer, now);
    }

    /// As [`Call::offer`], with the answer handled for `purpose`.
    pub(super) fn offer_for(&mut self, leg: LegId, body: Vec<u8>, purpose: Purpose, now: Instant) {
        let mut extra = vec![(HeaderName::Allow, ALLOW.to_owned())];
        if let Some(timer) = self.legs.get(leg).timer.as_ref() {
            extra.push((HeaderName::Supported, TIMER.to_owned()));
            extra.push((HeaderName::SessionExpires, timer.in_request()));
        }
        self.legs.get_mut(leg).sdp = Some(body.clone().into_boxed_slice());
        let body = Some(("application/sdp", Bytes::from(body)));
        self.send_in_dialog(leg, Method::Invite, &extra, body, purpose, now);
    }

    pub(super) fn stray_2xx(&mut self, response: &Response) {
        let Some(call_id) = response.headers.call_id() else {
            return;
        };
        if !(200..300).contains(&response.status) {
            return;
        }
        if let Some(leg) = self.legs.b.iter().find(|l| l.call_id == *call_id)
            && let Some(ack) = leg.ack_again()
        {
            self.out.push_back(Output::Send {
                transport: leg.transport,
                dest: leg.peer,
                bytes: ack,
            });
        }
    }

    pub(super) fn ack(&mut self, leg: LegId, request: &Request, now: Instant) {
        let Some(Ok(cseq)) = request.headers.cseq() else {
            return;
        };
        let Some(i) = self
            .txns
            .awaiting_ack
            .iter()
            .position(|a| a.leg == leg && a.sent.seq == cseq.seq)
        else {
            return;
        };
        let waited = self.txns.awaiting_ack.remove(i);
        if self.txns.awaiting_ack.is_empty() {
            self.txns.awaiting_ack.shrink_to_fit();
        }
        if let Some((other, seq)) = waited.then {
            self.send_ack(other, seq, request.body.clone(), &request.headers, now);
        }
        // The call is set up on both sides: its setup need not be kept.
        if leg == LegId::A && self.legs.a.progress == Progress::Answered {
            self.legs.a.invite = None;
            if let Some(i) = self.legs.winner {
                self.legs.b[i].invite = None;
            }
        }
    }

    /// ACKs a 2xx received on `leg` for its INVITE of sequence `seq`, with the answer (if
    /// any) the other side's ACK carried.
    pub(super) fn send_ack(
        &mut self,
        leg: LegId,
        seq: u32,
        body: Bytes,
        from: &Headers,
        _now: Instant,
    ) {
        let l = self.legs.get(leg);
        let Some(dialog) = &l.dialog else {
            return;
        };
        let mut ack = dialog.ack(seq);
        let (via, _) = self.local.via(l.transport);
        ack.headers.push_front(HeaderName::Via, via);
        if !body.is_empty() {
            let mut headers = std::mem::take(&mut ack.headers);
            headers.remove(&HeaderName::ContentLength);
            copy_body_headers(from, &mut headers);
            headers.push(HeaderName::ContentLength, "0");
            ack.headers = headers;
            ack.body = body;
        }
        let bytes = ack.to_bytes();
        self.legs.get_mut(leg).sent_sdp(&ack.body);
        let l = self.legs.get_mut(leg);
        l.ack = Some(bytes.clone());
        let (transport, dest) = (l.transport, l.peer);
        self.out.push_back(Output::Send {
            transport,
            dest,
            bytes,
        });
    }

    /// ACKs a 2xx no one waits for any more.
    pub(super) fn ack_orphan(&mut self, leg: LegId, r: &Response, now: Instant) {
        let seq = seq_of(&r.headers);
        self.send_ack(leg, seq, Bytes::new(), &Headers::default(), now);
    }

    pub(super) fn await_ack(
        &mut self,
        leg: LegId,
        seq: u32,
        bytes: Bytes,
        then: Option<(LegId, u32)>,
        now: Instant,
    ) {
        self.txns.awaiting_ack.retain(|a| a.leg != leg);
        self.txns.awaiting_ack.push(AwaitingAck {
            leg,
            sent: Unacknowledged::new(seq, bytes, self.config.timers, now),
            then,
        });
    }

    /// RFC 3261 13.3.1.4: the 2xx goes again at T1, doubling to T2, until its ACK; none by
    /// 64*T1 ends the call.
    pub(super) fn retransmit_2xx(&mut self, now: Instant) {
        let mut gave_up = None;
        for a in &mut self.txns.awaiting_ack {
            match a.sent.poll(now, self.config.timers) {
                None => {}
                Some(AckDue::GiveUp) => gave_up = Some(a.leg),
                Some(AckDue::Resend(bytes)) => {
                    let l = match a.leg {
                        LegId::A => &self.legs.a,
                        LegId::B(i) => &self.legs.b[i],
                    };
                    if !l.transport.is_reliable() {
                        self.out.push_back(Output::Send {
                            transport: l.transport,
                            dest: l.peer,
                            bytes,
                        });
                    }
                }
            }
        }
        if let Some(leg) = gave_up {
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, "no ACK for a 2xx");
            self.txns.awaiting_ack.retain(|a| a.leg != leg);
            // The leg that never ACKed gets a BYE too: it may have the 2xx and think the call
            // is up (RFC 3261 13.3.1.4).
            self.end(CallEventKind::Released, "no-ack", 0, None, now);
        }
    }

    pub(super) fn bye(&mut self, leg: LegId, now: Instant) {
        let transport = self.legs.get(leg).transport;
        let Some(dialog) = self.legs.get_mut(leg).dialog.as_mut() else {
            return;
        };
        let mut bye = dialog.request(Method::Bye);
        let (via, branch) = self.local.via(transport);
        bye.headers.push_front(HeaderName::Via, via);
        self.legs.get_mut(leg).progress = Progress::Over;
        self.send_request(leg, bye, branch, Purpose::Bye, now);
    }

    /// Stops B leg `i` ringing: CANCEL once it has answered provisionally (RFC 3261 9.1),
    /// or as soon as it does.
    pub(super) fn cancel_leg(&mut self, i: usize, now: Instant) {
        match self.legs.b[i].progress {
            Progress::Early => self.send_cancel(LegId::B(i), now),
            Progress::Calling => self.legs.b[i].progress = Progress::Cancelling,
            _ => {}
        }
    }

    /// CANCELs the INVITE `leg` was placed with (RFC 3261 9.1); the leg is given up.
    pub(super) fn send_cancel(&mut self, leg: LegId, now: Instant) {
        let Some(invite) = self.legs.get(leg).invite.as_deref() else {
            return;
        };
        let cancel = cancel_for(invite);
        let branch = invite
            .headers
            .top_via()
            .and_then(Result::ok)
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        self.legs.get_mut(leg).progress = Progress::Failed(487);
        // CANCEL shares its INVITE's branch, a transaction of its own told apart by method.
        self.send_request(leg, cancel, branch, Purpose::Cancel, now);
    }

    /// Whether an offer is in progress on either leg besides server transaction `except`: a
    /// re-INVITE received or relayed and not answered, or a 2xx still waiting for its ACK.
    pub(super) fn invite_pending(&self, except: u32) -> bool {
        let re_invite = |r: &Request| {
            r.method == Method::Invite
                && r.headers
                    .to()
                    .and_then(Result::ok)
                    .is_some_and(|t| t.tag().is_some())
        };
        self.txns
            .servers
            .iter()
            .any(|s| s.id != except && !s.answered && re_invite(&s.request))
            || !self.txns.awaiting_ack.is_empty()
    }

    /// A send to `dest` failed: its transactions fail as if timed out.
    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        let mut i = 0;
        while i < self.txns.clients.len() {
            if self.legs.get(self.txns.clients[i].leg).peer == dest {
                self.txns.clients[i].txn.transport_failed();
                let before = self.txns.clients.len();
                self.flush_client(i, now);
                if self.txns.clients.len() < before {
                    continue;
                }
            }
            i += 1;
        }
    }
}
