//! One call as a sans-io back-to-back user agent. Leg A is the caller's (the INVITE that
//! arrived); the B legs are what the call places: one per registered contact of an extension
//! (parallel fork, the first 2xx wins and the others are CANCELed), a trunk's gateway, or a
//! media server. Each leg has its own dialog and Call-ID; requests within one leg's dialog are
//! relayed into the other's with their bodies: SDP passes through, switchboard carries no
//! media.
//!
//! Time is an argument and I/O is output, as in `switchboard_sip::transaction`: the owner
//! passes messages in, then drains [`Call::poll_output`] and sleeps until
//! [`Call::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use switchboard_proto::events::{CallThread, Party};
use switchboard_routing::dialplan::Destination;
use switchboard_sip::dialog::{Dialog, DialogState, InDialogError, establishing};
use switchboard_sip::header::{NameAddr, Via};
use switchboard_sip::sdp::{self, Direction, Sdp};
use switchboard_sip::transaction::{
    ClientEvent, ClientTransaction, ServerEvent, ServerTransaction, TransactionKey, cancel_for,
};
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Headers, Host, Message, Method, Request, Response, SipUri, Uri};

mod routing;

pub use routing::ToOrs;

use super::{ClusterConfig, DnCalls, NewDialog, Origin};
use crate::call_state::{CallEvent, CallEventKind};
use crate::registrar::Binding;
use crate::tenant::Tenant;
use switchboard_sip::invite::ack::{AckDue, AwaitingAck as Unacknowledged};
use switchboard_sip::invite::prack::{self, PrackDue, Released, Reliability};
use switchboard_sip::invite::session_timer::{self, SessionTimer, TAG as TIMER};
use switchboard_sip::support::ALLOW_IN_DIALOG as ALLOW;

/// What the call asks of its owner.
#[derive(Debug)]
pub enum Output {
    Send {
        transport: Transport,
        dest: SocketAddr,
        bytes: Bytes,
    },
    /// Look up the bindings of `aor` and pass them to [`Call::located`].
    Locate { tenant: String, aor: String },
    /// Boxed: the queue of outputs stays small however often the call reports.
    Event(Box<CallEvent>),
    /// An attended transfer from the agent's phone (REFER with Replaces): take the party of
    /// the call whose leg has SIP Call-ID `replaces` (the agent's consultation call) in place
    /// of the agent at `dn`.
    Replace { replaces: String, dn: String },
    /// A request or report for the call's routing session (boxed in [`ToOrs`]: rare).
    Routing(ToOrs),
}

/// What a desktop asks of a call, for the agent at one of its DNs.
#[derive(Debug)]
pub enum Control {
    /// Only the call as it is.
    View,
    /// The ringing phone is asked to answer (NOTIFY with the talk event, as the phones that
    /// take remote answer know it).
    Answer,
    /// The agent consults about this call on call `0` (for the capabilities it lists); empty
    /// once it no longer does.
    Consulting(String),
    Hold,
    Retrieve,
    /// Retrieved if held, left as it is if established (reconnecting after a consultation).
    Reconnect,
    Release,
    AttachUserData(Vec<(String, String)>),
    UpdateUserData(Vec<(String, String)>),
    /// The keys to delete; none for all.
    DeleteUserData(Vec<String>),
    SendDtmf(String),
    /// Completing a transfer, the main call: the agent's leg is replaced by the consulted
    /// party's.
    Adopt(Handover),
    /// Completing a transfer or conference, the consultation call once its other party is
    /// handed over: it ends, in the thread of the call that took its party (so that its end
    /// is reported after that call's change).
    Finish {
        conferenced: bool,
        thread: String,
    },
    /// Completing a conference: the consulted party's leg joins, and every party is put
    /// through a conference on the tenant's media server.
    Conference(Handover),
    /// A party (by DN or number) leaves the conference.
    DeleteFromConference(String),
    /// Single-step transfer: the agent leaves at once and the other party is put through to
    /// the number given, as the dial plan routes it.
    SingleStepTransfer(String),
}

/// The leg of a consulted party, moving from the consultation call to the main call.
pub struct Handover {
    /// The consultation call it leaves.
    from_call: String,
    leg: Box<Leg>,
    /// The party: a DN of the tenant (`to_dn`) or a number.
    party: String,
    to_dn: bool,
    /// The party's session description, as the consultation call last offered it.
    media: Option<Box<[u8]>>,
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

/// Why a control was not carried out; the call is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no call {0} for this agent")]
    NotFound(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Invalid(String),
    /// The node's calls could not be asked.
    #[error("calls unavailable: {0}")]
    Unavailable(String),
}

/// A call as a desktop sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallView {
    pub call: CallThread,
    /// Dialing, Ringing, Established, Held or Released.
    pub state: &'static str,
    /// What may be asked of it now: hold, retrieve, release, send-dtmf, attach-user-data, ...
    pub capabilities: Vec<&'static str>,
}

/// A call whose parties talk through a media server's conference (RFC 4240 `conf=`): each
/// party's leg is paired with a leg of its own into the conference.
#[derive(Debug)]
struct Conference {
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    party: LegId,
    /// The DN or number.
    dn: String,
    /// Whether `dn` is one of the tenant's DNs.
    internal: bool,
    /// Its leg into the conference (a B leg), once placed.
    ms: Option<usize>,
}

/// Who a call is and what it works with, as its node gives them.
struct Setting {
    id: Arc<str>,
    tenant: Arc<Tenant>,
    local: Local,
    config: Arc<ClusterConfig>,
    dn_calls: DnCalls,
}

/// What a call placed for a desktop still needs.
#[derive(Debug)]
struct Originate {
    /// The number to dial once the agent's phone answers.
    dial: String,
    /// The phone's offer, from its 2xx: what the callee is offered.
    offer: Option<Bytes>,
}

/// Who the call is on the wire.
#[derive(Debug, Clone)]
pub struct Local {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The node's Call-ID prefix.
    pub node: Arc<str>,
    /// The call's number on this node.
    pub key: u64,
}

impl Local {
    fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
        }
    }

    /// The Contact of the call's legs: requests within its dialogs come back to the edge.
    fn contact(&self, transport: Transport) -> String {
        let addr = self.addr(transport);
        match transport {
            Transport::Udp => format!("<sip:{}>", addr),
            Transport::Tcp => format!("<sip:{};transport=tcp>", addr),
        }
    }

    fn via(&self, transport: Transport) -> (String, String) {
        let addr = self.addr(transport);
        let branch = format!("z9hG4bK{}", switchboard_sip::token::<10>());
        let via = Via::new(
            transport.via_name(),
            Host::from(addr.ip()),
            Some(addr.port()),
            &branch,
        );
        (format!("{via};rport"), branch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegId {
    A,
    B(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
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

#[derive(Debug)]
struct Leg {
    call_id: ByteString,
    /// This side's tag on the leg.
    tag: String,
    peer: SocketAddr,
    transport: Transport,
    dialog: Option<Dialog>,
    /// A: the INVITE received; B: the INVITE sent. Let go once the caller ACKs the answer: a
    /// long call keeps no copy of its setup.
    invite: Option<Box<Request>>,
    /// The INVITE's CSeq sequence number.
    invite_seq: u32,
    /// The Request-URI the leg was called at (B legs; the party's URI in events).
    target: String,
    /// The DN a B leg rings, if any.
    progress: Progress,
    /// The ACK sent for a B leg's 2xx, sent again for its retransmissions.
    ack: Option<Bytes>,
    /// Its session timer, if it negotiated one (RFC 4028).
    timer: Option<SessionTimer>,
    /// The session description last sent on the leg (own bytes, not a slice of a datagram):
    /// what a refresh, a hold or a resume offers again.
    sdp: Option<Box<[u8]>>,
}

impl Leg {
    /// A leg not answered yet, on `call_id` with this side's `tag`, reached at `peer`.
    fn new(call_id: ByteString, tag: String, peer: SocketAddr, transport: Transport) -> Self {
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
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
    /// An offer to the caller at a routing point, of the party on B leg `i` that takes the
    /// place of the one it hears.
    Bridge(usize),
}

#[derive(Debug)]
struct Client {
    /// The branch and method that match its responses (a CANCEL shares its INVITE's branch).
    branch: String,
    method: Method,
    leg: LegId,
    txn: ClientTransaction,
    purpose: Purpose,
}

#[derive(Debug)]
struct Server {
    id: u32,
    key: TransactionKey,
    leg: LegId,
    txn: ServerTransaction,
    /// The request; only its method and URI once it has its final response.
    request: Request,
    answered: bool,
    /// The caller's INVITE that started the call.
    initial: bool,
}

/// A 2xx to an INVITE sent on a leg, retransmitted until its ACK (RFC 3261 13.3.1.4); the
/// ACK is then passed to the other leg, whose 2xx it answers.
#[derive(Debug)]
struct AwaitingAck {
    leg: LegId,
    sent: Unacknowledged,
    /// The leg and INVITE sequence number to ACK when it arrives.
    then: Option<(LegId, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Looking the destination up.
    Routing,
    /// B legs ringing.
    Ringing,
    Established,
    /// Over: transactions finishing.
    Ending,
}

/// The call.
pub struct Call {
    /// Shared with the node's table of calls.
    id: Arc<str>,
    /// The call thread (the call and its consultation relatives), when it is not the call's
    /// own id: a call placed to consult about another joins that one's thread.
    joined: Option<Box<str>>,
    tenant: Arc<Tenant>,
    origin: Origin,
    local: Local,
    config: Arc<ClusterConfig>,
    dn_calls: DnCalls,
    started: Instant,
    ani: String,
    dnis: String,
    /// The caller's From URI.
    caller_uri: String,
    /// The DN (or number) rung, and whether it holds a place in `dn_calls`.
    destination: Option<String>,
    counted: bool,
    /// Whether the destination is one of the tenant's DNs (whose agent the call concerns).
    to_dn: bool,
    /// Whether the call goes out through a trunk, whose own failures the caller is told.
    to_trunk: bool,
    phase: Phase,
    a: Leg,
    b: Vec<Leg>,
    winner: Option<usize>,
    held: bool,
    /// A hold (true) or resume (false) a desktop asked, with the legs still to answer it.
    reoffer: Option<(bool, u8)>,
    /// Key-value data attached to the call.
    user_data: BTreeMap<String, String>,
    /// A call the core places for a desktop (make call): leg A is the agent's phone, which
    /// the core calls first, then the number to dial once it answers (boxed: rare).
    originate: Option<Box<Originate>>,
    /// Whether Ringing has been reported.
    rung: bool,
    /// The thread the call left for another, until its next event says so.
    former_thread: Option<Box<str>>,
    /// The consultation call its agent placed about it, until it is completed.
    consulting: Option<Box<str>>,
    /// The parties' legs into a media server's conference, once the call is one (boxed:
    /// rare).
    conference: Option<Box<Conference>>,
    /// Transactions in progress, boxed so that the lists cost little while short, and given
    /// back when empty: an established call holds none.
    #[expect(
        clippy::vec_box,
        reason = "a Vec holds 4 at least: 4 boxes, not 4 transactions"
    )]
    servers: Vec<Box<Server>>,
    #[expect(clippy::vec_box, reason = "as above")]
    clients: Vec<Box<Client>>,
    awaiting_ack: Vec<AwaitingAck>,
    next_server: u32,
    next_call_id: u32,
    no_answer_at: Option<Instant>,
    probe_at: Option<Instant>,
    /// Reliable provisional responses, when the caller requires them (boxed: most do not).
    reliability: Option<Box<Reliability<(usize, Response)>>>,
    /// The routing point the call waits at (boxed: most calls never do).
    waiting: Option<Box<routing::Waiting>>,
    /// The proxy the call came through, if this node runs behind proxies: callees are
    /// reached through it, on the flows it holds.
    outbound: Option<SocketAddr>,
    out: VecDeque<Output>,
}

impl Call {
    /// A call for an INVITE the edge admitted: answered 100 at once, then routed.
    /// A call in its first state, before its caller's leg does anything.
    fn new(
        setting: Setting,
        origin: Origin,
        a: Leg,
        ani: String,
        dnis: String,
        caller_uri: String,
        now: Instant,
    ) -> Self {
        let Setting {
            id,
            tenant,
            local,
            config,
            dn_calls,
        } = setting;
        Self {
            id,
            joined: None,
            tenant,
            origin,
            local,
            config,
            dn_calls,
            started: now,
            ani,
            dnis,
            caller_uri,
            destination: None,
            counted: false,
            to_dn: false,
            to_trunk: false,
            phase: Phase::Routing,
            a,
            b: Vec::new(),
            winner: None,
            held: false,
            reoffer: None,
            user_data: BTreeMap::new(),
            originate: None,
            rung: false,
            former_thread: None,
            consulting: None,
            conference: None,
            servers: Vec::new(),
            clients: Vec::new(),
            awaiting_ack: Vec::new(),
            next_server: 0,
            next_call_id: 0,
            no_answer_at: None,
            probe_at: None,
            reliability: None,
            waiting: None,
            outbound: None,
            out: VecDeque::new(),
        }
    }

    /// Starts the call `id` (unique and sortable, as events and desktops name it).
    pub fn start(
        id: Arc<str>,
        new: NewDialog,
        local: Local,
        config: Arc<ClusterConfig>,
        dn_calls: DnCalls,
        now: Instant,
    ) -> Self {
        let NewDialog {
            tenant,
            origin,
            request,
            source,
            transport,
            proxy,
        } = new;
        let dnis = request
            .uri
            .as_sip()
            .and_then(SipUri::user_text)
            .unwrap_or_default();
        let ani = match request.headers.from() {
            Some(Ok(from)) => from
                .uri
                .as_sip()
                .and_then(|u| u.user.as_ref().map(|u| u.to_string()))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let caller_uri = request
            .headers
            .from()
            .and_then(Result::ok)
            .map(|f| f.uri.to_string())
            .unwrap_or_default();
        // Copied: a slice would keep the whole INVITE datagram for as long as the call.
        let call_id = request
            .headers
            .call_id()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let mut a = Leg::new(
            ByteString::from(call_id),
            switchboard_sip::token::<8>(),
            source,
            transport,
        );
        a.invite_seq = seq_of(&request.headers);
        a.invite = Some(Box::new(request.clone()));
        let setting = Setting {
            id,
            tenant,
            local,
            config,
            dn_calls,
        };
        let mut call = Self::new(setting, origin, a, ani, dnis, caller_uri, now);
        call.reliability = prack::required(&request.headers).then(Box::default);
        call.outbound = proxy;
        let server = call.new_server(LegId::A, request.clone());
        call.respond_to(server, Response::to_request(&request.headers, 100), now);
        if let Origin::Phone(dn) = &call.origin {
            tracing::debug!(tenant = %call.tenant.name, call = %call.id, %dn, "dialing");
            call.event(CallEventKind::Dialing, "", 0);
        }
        if let Some(problem) = sdp_problem(&request) {
            call.fail(488, "bad-sdp", Some(problem), now);
            return call;
        }
        let (interval, min_se) = (call.config.session_expires, call.config.min_se);
        match SessionTimer::for_caller(&request.headers, interval, min_se) {
            Ok(timer) => call.a.timer = timer,
            Err(refusal) => {
                call.fail(
                    refusal.status(),
                    "session-interval",
                    Some(refusal.to_string()),
                    now,
                );
                return call;
            }
        }
        call.route(now);
        call
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        let next = self.out.pop_front();
        if next.is_none() && self.out.capacity() > 0 {
            // Drained: a call waits far longer than it works, and keeps no queue meanwhile.
            self.out = VecDeque::new();
        }
        next
    }

    /// When [`Call::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let servers = self.servers.iter().filter_map(|s| s.txn.poll_timeout());
        let clients = self.clients.iter().filter_map(|c| c.txn.poll_timeout());
        let acks = self.awaiting_ack.iter().map(|a| a.sent.due());
        servers
            .chain(clients)
            .chain(acks)
            .chain(self.no_answer_at)
            .chain(self.probe_at)
            .chain(self.reliability.as_ref().and_then(|r| r.due()))
            .chain(self.timer_due(LegId::A))
            .chain(self.winner.and_then(|i| self.timer_due(LegId::B(i))))
            .chain(self.waiting_due())
            .min()
    }

    /// Whether the call is over and every transaction of it finished.
    /// Starts a call the core places for the agent at `dn` (make call): the agent's phone is
    /// called first, told to answer by itself, then `dial` once it has. Third-party call
    /// control (RFC 3725): the phone is invited without an offer; its offer in the 2xx is
    /// answered on hold and passed to the callee, whose answer then reaches the phone in a
    /// re-INVITE.
    #[expect(clippy::too_many_arguments, reason = "the call's whole setting")]
    pub fn originate(
        id: Arc<str>,
        tenant: Arc<Tenant>,
        dn: &str,
        dial: &str,
        user_data: BTreeMap<String, String>,
        thread: Option<String>,
        local: Local,
        config: Arc<ClusterConfig>,
        dn_calls: DnCalls,
        now: Instant,
    ) -> Self {
        let call_id = ByteString::from(format!("{}-{:x}-0", local.node, local.key));
        let aor = tenant.aor(dn);
        let ring = tenant
            .registering(dn)
            .and_then(|d| d.no_answer_timeout)
            .map_or(config.no_answer, |s| Duration::from_secs(s.into()));
        let mut a = Leg::new(
            call_id,
            switchboard_sip::token::<8>(),
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Transport::Udp,
        );
        a.target = aor.clone();
        let joined = thread.filter(|t| **t != *id).map(String::into_boxed_str);
        let setting = Setting {
            id,
            tenant,
            local,
            config,
            dn_calls,
        };
        let origin = Origin::Phone(dn.to_owned());
        let mut call = Self::new(
            setting,
            origin,
            a,
            dn.to_owned(),
            dial.to_owned(),
            aor.clone(),
            now,
        );
        call.joined = joined;
        call.user_data = user_data;
        call.originate = Some(Box::new(Originate {
            dial: dial.to_owned(),
            offer: None,
        }));
        call.no_answer_at = Some(now + ring);
        tracing::debug!(tenant = %call.tenant.name, call = %call.id, dn, dial, "making a call");
        call.event(CallEventKind::Dialing, "", 0);
        call.out.push_back(Output::Locate {
            tenant: call.tenant.name.clone(),
            aor,
        });
        call
    }

    /// Whether the agent's phone of a call placed for a desktop has yet to answer.
    fn calling_phone(&self) -> bool {
        self.originate.is_some()
            && self
                .a
                .dialog
                .as_ref()
                .is_none_or(|d| d.state != DialogState::Confirmed)
    }

    /// Calls the agent's phone of a call placed for a desktop, at its first contact.
    fn call_phone(&mut self, bindings: Vec<Binding>, now: Instant) {
        let Some(b) = bindings.into_iter().next() else {
            self.end(CallEventKind::Released, "not-registered", 480, None, now);
            return;
        };
        let (Ok(uri), Some(originate)) = (Uri::parse_str(&b.contact), self.originate.as_deref())
        else {
            self.end(CallEventKind::Released, "not-registered", 480, None, now);
            return;
        };
        let dial = originate.dial.clone();
        let transport = if b.transport.eq_ignore_ascii_case("tcp") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        self.a.peer = b.source;
        self.a.transport = transport;
        let (via, branch) = self.local.via(transport);
        let me = self.local.contact(transport);
        let core = self.local.addr(transport);
        let mut headers = Headers::with_capacity(12);
        headers.push(HeaderName::Via, via);
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(
            HeaderName::From,
            format!("<sip:{dial}@{}>;tag={}", self.tenant.domain, self.a.tag),
        );
        headers.push(HeaderName::To, format!("<{}>", self.a.target));
        headers.push(HeaderName::CallId, self.a.call_id.clone());
        headers.push(HeaderName::CSeq, "1 INVITE");
        headers.push(HeaderName::Contact, me);
        headers.push(HeaderName::Allow, ALLOW);
        // Answer by itself: the desktop asked for the call (the hints phones know).
        headers.push(HeaderName::CallInfo, format!("<sip:{core}>;answer-after=0"));
        headers.push(
            HeaderName::AlertInfo,
            format!("<sip:{core}>;info=alert-autoanswer"),
        );
        headers.push(HeaderName::ContentLength, "0");
        let invite = Request {
            method: Method::Invite,
            uri,
            headers,
            body: Bytes::new(),
        };
        self.a.invite = Some(Box::new(invite.clone()));
        self.send_request(LegId::A, invite, branch, Purpose::Invite, now);
    }

    /// The agent's phone answered (or not) a call placed for its desktop.
    fn phone_response(&mut self, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        if self.phase == Phase::Ending {
            if (200..300).contains(&r.status) {
                // Too late: the call ended meanwhile.
                if let Some(invite) = self.a.invite.as_deref()
                    && let Ok(d) = Dialog::as_uac(invite, &r)
                {
                    self.a.dialog = Some(d);
                }
                self.send_ack(
                    LegId::A,
                    seq_of(&r.headers),
                    Bytes::new(),
                    &Headers::default(),
                    now,
                );
                self.bye(LegId::A, now);
            }
            return;
        }
        if r.status >= 300 {
            let cause = if r.status == 486 {
                "busy"
            } else {
                "not-answered"
            };
            tracing::info!(tenant = %self.tenant.name, call = %self.id, status = r.status,
                "the agent's phone did not take the call");
            self.a.progress = Progress::Failed(r.status);
            self.end(
                CallEventKind::Released,
                cause,
                r.status,
                Some(LegId::A),
                now,
            );
            return;
        }
        if self.a.progress == Progress::Answered {
            return;
        }
        if let Some(invite) = self.a.invite.as_deref()
            && let Ok(d) = Dialog::as_uac(invite, &r)
        {
            self.a.dialog = Some(d);
        }
        self.a.progress = Progress::Answered;
        self.a.invite = None;
        self.no_answer_at = None;
        // Its offer is answered on hold until the callee answers, then offered the callee.
        let hold = sdp::redirected(&r.body, Direction::Inactive);
        let Some(hold) = hold else {
            self.send_ack(
                LegId::A,
                seq_of(&r.headers),
                Bytes::new(),
                &Headers::default(),
                now,
            );
            self.end(CallEventKind::Released, "bad-sdp", 488, None, now);
            return;
        };
        let mut from = Headers::default();
        from.push(HeaderName::ContentType, "application/sdp");
        // (send_ack keeps it as the description sent on the leg.)
        self.send_ack(LegId::A, seq_of(&r.headers), Bytes::from(hold), &from, now);
        if let Some(originate) = self.originate.as_mut() {
            originate.offer = Some(Bytes::copy_from_slice(&r.body));
        }
        self.route(now);
    }

    /// A call placed for a desktop: the callee answered with `answer`; the agent's phone is
    /// offered it.
    fn connect_phone(&mut self, answer: &Bytes, now: Instant) {
        // As one session changing from the hold answer the phone has.
        let previous = self.a.sdp.clone();
        let body = match previous {
            Some(p) => sdp::reoffered(&p, answer, Direction::SendRecv),
            None => sdp::redirected(answer, Direction::SendRecv),
        };
        if let Some(body) = body {
            self.offer(LegId::A, body, now);
        }
    }

    /// The call's id, as events and desktops name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The call thread it belongs to.
    pub fn thread_id(&self) -> &str {
        self.joined.as_deref().unwrap_or(&self.id)
    }

    pub fn tenant_name(&self) -> &str {
        &self.tenant.name
    }

    pub fn is_over(&self) -> bool {
        self.phase == Phase::Ending
            && self.servers.is_empty()
            && self.clients.is_empty()
            && self.awaiting_ack.is_empty()
    }

    /// Gives back the DN's place among its calls in progress (also when the actor dies).
    pub fn release_dn(&mut self) {
        if self.counted
            && let Some(dn) = &self.destination
        {
            self.dn_calls.release(&self.tenant.name, dn);
            self.counted = false;
        }
    }

    // ----- control from a desktop -----

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
        let state = self.state();
        let not_allowed = |what: &str| {
            Err(ControlError::NotAllowed(format!(
                "cannot {what} a call that is {}",
                state.to_lowercase()
            )))
        };
        match control {
            Control::View => {}
            Control::Consulting(consult) => {
                self.consulting = (!consult.is_empty()).then(|| consult.into_boxed_str());
            }
            Control::Answer => {
                if state != "Ringing" || !(self.to_dn && self.destination.as_deref() == Some(dn)) {
                    return not_allowed("answer");
                }
                let early: Vec<usize> = (0..self.b.len())
                    .filter(|&i| {
                        self.b[i].progress == Progress::Early && self.b[i].dialog.is_some()
                    })
                    .collect();
                if early.is_empty() {
                    return Err(ControlError::NotAllowed(
                        "the phone has not reported ringing in a dialog: it cannot be answered remotely"
                            .into(),
                    ));
                }
                for i in early {
                    self.talk(LegId::B(i), now);
                }
            }
            Control::Hold => {
                if state != "Established" {
                    return not_allowed("hold");
                }
                self.reoffer_legs(true, now)?;
            }
            Control::Retrieve => {
                if state != "Held" {
                    return not_allowed("retrieve");
                }
                self.reoffer_legs(false, now)?;
            }
            Control::Reconnect => match state {
                "Held" => self.reoffer_legs(false, now)?,
                "Established" => {}
                _ => return not_allowed("reconnect to"),
            },
            Control::Release => match self.phase {
                Phase::Routing | Phase::Ringing => {
                    tracing::info!(tenant = %self.tenant.name, call = %self.id, dn,
                        "released from the desktop before it was answered");
                    self.fail(487, "released", None, now);
                }
                Phase::Established => {
                    tracing::info!(tenant = %self.tenant.name, call = %self.id, dn,
                        "released from the desktop");
                    self.end(CallEventKind::Released, "released", 0, None, now);
                }
                Phase::Ending => return not_allowed("release"),
            },
            Control::AttachUserData(pairs) | Control::UpdateUserData(pairs) => {
                if self.phase == Phase::Ending {
                    return not_allowed("attach data to");
                }
                if let Some(key) = pairs.iter().map(|(k, _)| k).find(|k| k.is_empty()) {
                    return Err(ControlError::Invalid(format!("user data key {key:?}")));
                }
                self.user_data.extend(pairs);
                self.event(CallEventKind::AttachedDataChanged, "", 0);
            }
            Control::DeleteUserData(keys) => {
                if self.phase == Phase::Ending {
                    return not_allowed("delete data of");
                }
                if keys.is_empty() {
                    self.user_data.clear();
                }
                for k in &keys {
                    self.user_data.remove(k);
                }
                self.event(CallEventKind::AttachedDataChanged, "", 0);
            }
            Control::Adopt(handover) => self.adopt(dn, handover, now)?,
            Control::Conference(handover) => self.confer(dn, handover, now)?,
            Control::SingleStepTransfer(dial) => {
                if state != "Established" && state != "Held" {
                    return not_allowed("transfer");
                }
                if self.tenant.dial_plan.route(&dial).is_none() {
                    return Err(ControlError::Invalid(format!(
                        "no dial plan rule of tenant {} matches {dial:?}",
                        self.tenant.name
                    )));
                }
                self.redirect(dn, &dial, now)?;
            }
            Control::DeleteFromConference(party) => {
                let Some(m) = self
                    .conference
                    .as_ref()
                    .and_then(|c| c.members.iter().position(|m| m.dn == party))
                else {
                    return Err(ControlError::NotAllowed(format!(
                        "{party:?} is not in a conference on this call"
                    )));
                };
                self.leave_conference(m, now);
            }
            Control::Finish {
                conferenced,
                thread,
            } => {
                if self.winner.is_some() {
                    return not_allowed("finish the transfer of");
                }
                if thread != self.thread_id() {
                    self.former_thread = Some(self.thread_id().into());
                    self.joined = Some(thread.into_boxed_str());
                }
                let cause = if conferenced {
                    "conferenced"
                } else {
                    "transferred"
                };
                self.end(CallEventKind::Released, cause, 0, None, now);
            }
            Control::SendDtmf(digits) => {
                if state != "Established" {
                    return not_allowed("send DTMF on");
                }
                if digits.is_empty()
                    || !digits
                        .chars()
                        .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c))
                {
                    return Err(ControlError::Invalid(format!(
                        "digits {digits:?}: 0-9, *, # and A-D only"
                    )));
                }
                // Toward the party at the other end from the agent.
                let toward = if self.to_dn && self.destination.as_deref() == Some(dn) {
                    Some(LegId::A)
                } else {
                    self.winner.map(LegId::B)
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

    /// Gives up the leg of the party the agent at `dn` consulted, for the main call to take:
    /// the call is left with the agent's leg only, to be ended by [`Control::Finish`] once
    /// the main call holds the party.
    pub fn hand_over(&mut self, dn: &str) -> Result<Handover, ControlError> {
        if !self.involves(dn) {
            return Err(ControlError::NotFound(self.id.to_string()));
        }
        let Some(w) = self.winner.filter(|_| self.phase == Phase::Established) else {
            return Err(ControlError::NotAllowed(
                "the consultation call is not answered".into(),
            ));
        };
        if !matches!(&self.origin, Origin::Phone(o) if o == dn) {
            return Err(ControlError::NotAllowed(
                "only the agent who placed the consultation call can complete it".into(),
            ));
        }
        // (Its INVITE transaction may linger after the answer: that is no request pending.)
        let pending = |c: &Client| c.leg == LegId::B(w) && c.purpose != Purpose::Invite;
        if self.reoffer.is_some() || self.clients.iter().any(|c| pending(c)) {
            return Err(ControlError::NotAllowed(
                "a request is in progress on the consultation call; try again".into(),
            ));
        }
        let mut gone = Leg::new(
            self.b[w].call_id.clone(),
            String::new(),
            self.b[w].peer,
            self.b[w].transport,
        );
        gone.progress = Progress::Over;
        let leg = std::mem::replace(&mut self.b[w], gone);
        self.winner = None;
        self.awaiting_ack.retain(|a| a.leg != LegId::B(w));
        Ok(Handover {
            from_call: self.id.to_string(),
            leg: Box::new(leg),
            party: self.destination.clone().unwrap_or_default(),
            to_dn: self.to_dn,
            media: self.a.sdp.clone(),
        })
    }

    /// Whether the agent at `dn` may complete a transfer (or a conference) on this call: the
    /// call answered by that agent, no offer in progress, and for a conference a media server
    /// and no conference yet. The agent's leg, and the handover, when it may; otherwise the
    /// consulted party, whose leg no call holds any more, is hung up.
    fn completing(
        &mut self,
        dn: &str,
        handover: Handover,
        conference: bool,
        now: Instant,
    ) -> Result<(usize, Handover), ControlError> {
        let refusal = match self.winner.filter(|_| self.phase == Phase::Established) {
            None => Some("the call is not answered"),
            Some(_) if !(self.to_dn && self.destination.as_deref() == Some(dn)) => {
                Some("a transfer or conference is completed by the agent who answered the call")
            }
            Some(_) if self.reoffer.is_some() || self.invite_pending(u32::MAX) => {
                Some("an offer is in progress on the call; try again")
            }
            Some(_) if conference && self.tenant.media_servers.is_empty() => {
                Some("the tenant has no media server for conferences")
            }
            Some(_) if conference && self.conference.is_some() => {
                Some("the call is a conference already")
            }
            Some(w) => return Ok((w, handover)),
        };
        let why = refusal.unwrap_or_default();
        tracing::warn!(tenant = %self.tenant.name, call = %self.id, party = %handover.party,
            why, "not completed; the consulted party is released");
        self.b.push(*handover.leg);
        let i = self.b.len() - 1;
        self.bye(LegId::B(i), now);
        self.b[i].progress = Progress::Over;
        Err(ControlError::NotAllowed(why.into()))
    }

    /// Takes the consulted party's leg in place of the agent's at `dn`: the agent's leg is
    /// hung up and the two remaining parties are offered each other's sessions.
    fn adopt(&mut self, dn: &str, handover: Handover, now: Instant) -> Result<(), ControlError> {
        let (old, handover) = self.completing(dn, handover, false, now)?;
        let Handover {
            leg,
            party,
            to_dn,
            media,
            ..
        } = handover;
        let customer = self.b[old].sdp.clone();
        self.bye(LegId::B(old), now);
        self.b[old].progress = Progress::Over;
        self.b[old].timer = None;
        self.b.push(*leg);
        let new = self.b.len() - 1;
        self.winner = Some(new);
        self.destination = Some(party);
        self.to_dn = to_dn;
        self.held = false;
        self.consulting = None;
        // Each remaining party is offered the other's session, as one session changing.
        let offers = [
            (LegId::A, self.a.sdp.clone(), media),
            (LegId::B(new), self.b[new].sdp.clone(), customer),
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
        tracing::info!(tenant = %self.tenant.name, call = %self.id, from = dn,
            to = ?self.destination, "transfer completed");
        self.event_leaving(CallEventKind::PartyChanged, "", 0, vec![dn.to_owned()]);
        Ok(())
    }

    /// Takes the consulted party's leg beside the agent's at `dn`, and puts every party
    /// through a conference on the tenant's first media server: one leg into the conference
    /// per party (`sip:conf=<call>@<server>`), each offered its party's session, whose answer
    /// the party is then offered.
    fn confer(&mut self, dn: &str, handover: Handover, now: Instant) -> Result<(), ControlError> {
        let (w, handover) = self.completing(dn, handover, true, now)?;
        let Some(server) = self.tenant.media_servers.first().map(|m| m.address) else {
            return Err(ControlError::NotAllowed("no media server".into()));
        };
        let Handover {
            leg,
            party,
            to_dn,
            media,
            ..
        } = handover;
        self.b.push(*leg);
        let joined = self.b.len() - 1;
        let caller = match &self.origin {
            Origin::Phone(d) => (d.clone(), true),
            _ => (self.ani.clone(), false),
        };
        // Each party's own session: what the call last offered the party it talked to.
        let sessions = [
            (LegId::A, caller.0, caller.1, self.b[w].sdp.clone()),
            (LegId::B(w), dn.to_owned(), true, self.a.sdp.clone()),
            (LegId::B(joined), party, to_dn, media),
        ];
        self.held = false;
        self.consulting = None;
        let mut members = Vec::with_capacity(3);
        for (i, (leg, member_dn, internal, session)) in sessions.into_iter().enumerate() {
            let ms = session.map(|body| self.invite_conference(server, body, i, now));
            members.push(Member {
                party: leg,
                dn: member_dn,
                internal,
                ms,
            });
        }
        self.conference = Some(Box::new(Conference { members }));
        tracing::info!(tenant = %self.tenant.name, call = %self.id, "conference of three");
        self.event(CallEventKind::PartyAdded, "", 0);
        Ok(())
    }

    /// Places a leg into the call's conference for member `member`, offering `session`.
    fn invite_conference(
        &mut self,
        server: SocketAddr,
        session: Box<[u8]>,
        member: usize,
        now: Instant,
    ) -> usize {
        self.next_call_id += 1;
        let call_id = ByteString::from(format!(
            "{}-{:x}-{}",
            self.local.node, self.local.key, self.next_call_id
        ));
        let tag = switchboard_sip::token::<8>();
        let uri = SipUri::new(
            Some(&format!("conf={}", self.id)),
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
        self.b.push(leg);
        let i = self.b.len() - 1;
        self.send_request(LegId::B(i), invite, branch, Purpose::Join(member), now);
        i
    }

    /// The media server answered a member's leg into the conference: the member is offered
    /// the conference's session.
    fn joined(&mut self, leg: LegId, member: usize, r: Response, now: Instant) {
        let LegId::B(i) = leg else {
            return;
        };
        if r.status < 200 {
            return;
        }
        if r.status >= 300 {
            tracing::warn!(tenant = %self.tenant.name, call = %self.id, status = r.status,
                "the media server refused a conference leg: that party hears no one");
            self.b[i].progress = Progress::Failed(r.status);
            return;
        }
        if let Some(invite) = self.b[i].invite.as_deref()
            && let Ok(d) = Dialog::as_uac(invite, &r)
        {
            self.b[i].dialog = Some(d);
        }
        let seq = self.b[i].invite_seq;
        self.b[i].progress = Progress::Answered;
        self.b[i].invite = None;
        self.send_ack(leg, seq, Bytes::new(), &Headers::default(), now);
        if self.phase == Phase::Ending {
            self.bye(leg, now);
            return;
        }
        let Some(party) = self
            .conference
            .as_ref()
            .and_then(|c| c.members.get(member))
            .map(|m| m.party)
        else {
            return;
        };
        let body = match self.leg(party).sdp.clone() {
            Some(previous) => sdp::reoffered(&previous, &r.body, Direction::SendRecv),
            None => sdp::redirected(&r.body, Direction::SendRecv),
        };
        if let Some(body) = body {
            self.offer(party, body, now);
        }
    }

    /// Member `m` leaves the conference: its leg and its conference leg are hung up. The
    /// call ends when one party is left.
    fn leave_conference(&mut self, m: usize, now: Instant) {
        let Some(conference) = self.conference.as_mut() else {
            return;
        };
        let member = conference.members.remove(m);
        let left = conference.members.len();
        // Indexes of the members after it moved down by one.
        if let Some(ms) = member.ms {
            self.bye(LegId::B(ms), now);
            self.b[ms].progress = Progress::Over;
        }
        if member.party == LegId::A {
            self.end(CallEventKind::Released, "caller-hangup", 0, None, now);
            return;
        }
        if self.leg(member.party).progress == Progress::Answered {
            self.bye(member.party, now);
        }
        if let LegId::B(i) = member.party {
            self.b[i].progress = Progress::Over;
        }
        if self.destination.as_deref() == Some(member.dn.as_str()) {
            // Not a party any more: its agent is not told of the call again.
            self.to_dn = false;
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

    /// Puts the caller through to `dial` in place of the agent at `dn`, who leaves at once
    /// (single-step transfer; a blind REFER from the agent's phone): the agent's leg is hung
    /// up, the number routed and rung with the caller's session, and the caller offered the
    /// answer, as for a call placed for a desktop.
    fn redirect(&mut self, dn: &str, dial: &str, now: Instant) -> Result<(), ControlError> {
        let Some(old) = self.winner.filter(|_| self.phase == Phase::Established) else {
            return Err(ControlError::NotAllowed("the call is not answered".into()));
        };
        if !(self.to_dn && self.destination.as_deref() == Some(dn)) {
            return Err(ControlError::NotAllowed(
                "a transfer is made by the agent who answered the call".into(),
            ));
        }
        if self.conference.is_some() || self.reoffer.is_some() || self.invite_pending(u32::MAX) {
            return Err(ControlError::NotAllowed(
                "the call cannot be transferred now (a conference, or an offer in progress)".into(),
            ));
        }
        tracing::info!(tenant = %self.tenant.name, call = %self.id, from = dn, to = dial,
            "single-step transfer");
        let customer = self.b[old].sdp.as_deref().map(Bytes::copy_from_slice);
        self.bye(LegId::B(old), now);
        self.b[old].progress = Progress::Over;
        self.b[old].timer = None;
        self.winner = None;
        self.release_dn();
        self.destination = None;
        self.to_dn = false;
        self.to_trunk = false;
        self.held = false;
        self.rung = false;
        self.probe_at = None;
        self.dnis = dial.to_owned();
        self.originate = Some(Box::new(Originate {
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
    fn refer(&mut self, leg: LegId, id: u32, request: &Request, now: Instant) {
        let dn = match (leg, self.winner, &self.destination) {
            (LegId::B(i), Some(w), Some(dn)) if i == w && self.to_dn => dn.clone(),
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
        self.notify_refer(leg, now);
        match replaces {
            Some(replaces) => {
                tracing::info!(tenant = %self.tenant.name, call = %self.id, %dn, %replaces,
                    "attended transfer from the phone");
                self.out.push_back(Output::Replace { replaces, dn });
            }
            None => {
                if let Err(e) = self.redirect(&dn, &dial, now) {
                    tracing::warn!(tenant = %self.tenant.name, call = %self.id, error = %e,
                        "blind transfer from the phone not carried out");
                }
            }
        }
    }

    /// Asks the phone on `leg` to answer: NOTIFY with `Event: talk` in its early dialog.
    fn talk(&mut self, leg: LegId, now: Instant) {
        let extra = [
            (HeaderName::Event, "talk".to_owned()),
            (HeaderName::SubscriptionState, "active".to_owned()),
        ];
        self.send_in_dialog(leg, Method::Notify, &extra, None, Purpose::Inform, now);
    }

    /// Tells the referrer on `leg` its transfer is taken in hand: the implicit subscription's
    /// only NOTIFY, a final 200 in `message/sipfrag` (RFC 3515 2.4.5).
    fn notify_refer(&mut self, leg: LegId, now: Instant) {
        let extra = [
            (HeaderName::Event, "refer".to_owned()),
            (
                HeaderName::SubscriptionState,
                "terminated;reason=noresource".to_owned(),
            ),
        ];
        let body = (
            "message/sipfrag;version=2.0",
            Bytes::from_static(b"SIP/2.0 200 OK\r\n"),
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

    /// Sends a request of `method` in `leg`'s dialog: this side's Via, its Contact for the
    /// methods that carry one, the `extra` headers, and `body` with its content type.
    fn send_in_dialog(
        &mut self,
        leg: LegId,
        method: Method,
        extra: &[(HeaderName, String)],
        body: Option<(&str, Bytes)>,
        purpose: Purpose,
        now: Instant,
    ) {
        let transport = self.leg(leg).transport;
        let contact = self.local.contact(transport);
        let Some(dialog) = self.leg_mut(leg).dialog.as_mut() else {
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
    fn offer(&mut self, leg: LegId, body: Vec<u8>, now: Instant) {
        self.offer_for(leg, body, Purpose::Reoffer, now);
    }

    /// As [`Call::offer`], with the answer handled for `purpose`.
    fn offer_for(&mut self, leg: LegId, body: Vec<u8>, purpose: Purpose, now: Instant) {
        let mut extra = vec![(HeaderName::Allow, ALLOW.to_owned())];
        if let Some(timer) = self.leg(leg).timer.as_ref() {
            extra.push((HeaderName::Supported, TIMER.to_owned()));
            extra.push((HeaderName::SessionExpires, timer.in_request()));
        }
        self.leg_mut(leg).sdp = Some(body.clone().into_boxed_slice());
        let body = Some(("application/sdp", Bytes::from(body)));
        self.send_in_dialog(leg, Method::Invite, &extra, body, purpose, now);
    }

    /// Whether `dn` is a party: the phone that placed the call or the DN it rings.
    fn involves(&self, dn: &str) -> bool {
        matches!(&self.origin, Origin::Phone(o) if o == dn)
            || (self.to_dn && self.destination.as_deref() == Some(dn))
            || self
                .conference
                .as_ref()
                .is_some_and(|c| c.members.iter().any(|m| m.internal && m.dn == dn))
    }

    /// The call's state as desktops name it.
    fn state(&self) -> &'static str {
        match self.phase {
            Phase::Routing => "Dialing",
            Phase::Ringing => "Ringing",
            Phase::Established if self.held => "Held",
            Phase::Established => "Established",
            Phase::Ending => "Released",
        }
    }

    /// The call for a desktop: its state, parties, data, and what may be asked of it now.
    pub fn view(&self) -> CallView {
        let capabilities: &[&'static str] = match self.state() {
            "Ringing" if self.to_dn => &[
                "answer",
                "release",
                "attach-user-data",
                "update-user-data",
                "delete-user-data",
            ],
            "Dialing" | "Ringing" => &[
                "release",
                "attach-user-data",
                "update-user-data",
                "delete-user-data",
            ],
            "Established" => &[
                "hold",
                "release",
                "send-dtmf",
                "attach-user-data",
                "update-user-data",
                "delete-user-data",
            ],
            "Held" => &[
                "retrieve",
                "release",
                "attach-user-data",
                "update-user-data",
                "delete-user-data",
            ],
            _ => &[],
        };
        let mut capabilities = capabilities.to_vec();
        // A call consulted about, and the consultation call itself once answered.
        let consultation = self.originate.is_some() && self.joined.is_some();
        if matches!(self.state(), "Established" | "Held")
            && (self.consulting.is_some() || consultation)
        {
            capabilities.extend([
                "complete-transfer",
                "complete-conference",
                "alternate",
                "reconnect",
            ]);
        }
        CallView {
            call: self.thread(""),
            state: self.state(),
            capabilities,
        }
    }

    /// Offers each leg its last description again, set on hold (`inactive`) or resumed.
    fn reoffer_legs(&mut self, hold: bool, now: Instant) -> Result<(), ControlError> {
        let Some(winner) = self.winner else {
            return Err(ControlError::NotAllowed("the call is not answered".into()));
        };
        let legs = [LegId::A, LegId::B(winner)];
        let busy = self.reoffer.is_some()
            || self.invite_pending(u32::MAX)
            || self.clients.iter().any(|c| {
                c.method == Method::Invite
                    && matches!(c.purpose, Purpose::Relay(_) | Purpose::Refresh)
            });
        if busy {
            return Err(ControlError::NotAllowed(
                "an offer is in progress on the call; try again".into(),
            ));
        }
        let direction = if hold {
            Direction::Inactive
        } else {
            Direction::SendRecv
        };
        let mut offers = Vec::with_capacity(2);
        for leg in legs {
            let l = self.leg(leg);
            let body = l.sdp.as_deref().and_then(|b| sdp::redirected(b, direction));
            match (body, l.dialog.is_some()) {
                (Some(body), true) => offers.push((leg, body)),
                _ => {
                    return Err(ControlError::NotAllowed(
                        "a leg of the call has no session to offer again".into(),
                    ));
                }
            }
        }
        self.reoffer = Some((hold, offers.len() as u8));
        for (leg, body) in offers {
            self.offer(leg, body, now);
        }
        Ok(())
    }

    /// A leg answered a hold or resume; once both have, the call is reported held or retrieved.
    fn reoffer_answered(&mut self, leg: LegId, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        if (200..300).contains(&r.status) {
            self.session_answered(leg, &r, now);
        } else {
            tracing::warn!(tenant = %self.tenant.name, call = %self.id, ?leg, status = r.status,
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

    // ----- routing -----

    fn route(&mut self, now: Instant) {
        let Some(route) = self.tenant.dial_plan.route(&self.dnis) else {
            let (status, cause) = if self.tenant.dial_plan.incomplete(&self.dnis) {
                (484, "incomplete-number")
            } else {
                (404, "unknown-number")
            };
            tracing::info!(tenant = %self.tenant.name, call = %self.id, dialed = %self.dnis,
                status, "no dial plan rule matches");
            self.fail(status, cause, None, now);
            return;
        };
        self.go_to(route.destination, route.number, now);
    }

    /// Sends the call to `destination` (of the dial plan, or a strategy's), dialed as
    /// `number`.
    fn go_to(&mut self, destination: Destination, number: String, now: Instant) {
        match destination {
            Destination::Extension(dn) => {
                let Some(d) = self.tenant.registering(&dn) else {
                    tracing::info!(tenant = %self.tenant.name, call = %self.id, %dn,
                        "dial plan names a DN that is not an extension");
                    self.fail(404, "unknown-number", None, now);
                    return;
                };
                let max = d.max_calls;
                self.destination = Some(dn.clone());
                if !self.dn_calls.acquire(&self.tenant.name, &dn, max) {
                    tracing::info!(tenant = %self.tenant.name, call = %self.id, %dn,
                        "DN at its max-calls");
                    self.event(CallEventKind::DestinationBusy, "max-calls", 486);
                    self.fail(486, "busy", None, now);
                    return;
                }
                self.counted = true;
                self.to_dn = true;
                let ring = d
                    .no_answer_timeout
                    .map_or(self.config.no_answer, |s| Duration::from_secs(s.into()));
                self.no_answer_at = Some(now + ring);
                self.out.push_back(Output::Locate {
                    tenant: self.tenant.name.clone(),
                    aor: self.tenant.aor(&dn),
                });
            }
            Destination::Trunk(name) => {
                let gateway = self
                    .tenant
                    .trunks
                    .iter()
                    .find(|t| t.name == name)
                    .and_then(|t| t.gateway);
                let Some(gateway) = gateway else {
                    tracing::warn!(tenant = %self.tenant.name, call = %self.id, trunk = %name,
                        "trunk has no usable gateway (host:port)");
                    self.fail(503, "no-gateway", None, now);
                    return;
                };
                self.destination = Some(number.clone());
                self.to_trunk = true;
                let uri = SipUri::new(
                    Some(&number),
                    Host::from(gateway.ip()),
                    Some(gateway.port()),
                );
                let to = format!("<{uri}>");
                self.place(Uri::Sip(uri), to, gateway, Transport::Udp, now);
            }
            Destination::Announcement(text) => {
                let Some((uri, addr)) = self.media_uri(&text) else {
                    tracing::warn!(tenant = %self.tenant.name, call = %self.id, uri = %text,
                        "announcement names no configured media server");
                    self.fail(503, "no-media-server", None, now);
                    return;
                };
                self.destination = Some(text.clone());
                let to = format!("<{uri}>");
                self.place(uri, to, addr, Transport::Udp, now);
            }
            Destination::Reject(status) => {
                self.fail(status, "rejected", None, now);
            }
            Destination::RoutingPoint(rp) => self.at_routing_point(rp, now),
            Destination::Queue(q) => {
                tracing::warn!(tenant = %self.tenant.name, call = %self.id, queue = %q,
                    "a queue is reached through a routing point's strategy, not dialed");
                self.fail(480, "not-routed", None, now);
            }
        }
    }

    /// An RFC 4240 URI whose host names a configured media server (or is an address): the
    /// URI to send, with the server's address as host, and where to send it.
    fn media_uri(&self, text: &str) -> Option<(Uri, SocketAddr)> {
        let Ok(Uri::Sip(mut uri)) = Uri::parse_str(text) else {
            return None;
        };
        let host = uri.host.to_string();
        let addr = match self
            .tenant
            .media_servers
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(&host))
        {
            Some(m) => m.address,
            None => SocketAddr::new(uri.host.ip()?, uri.port.unwrap_or(5060)),
        };
        uri.host = Host::from(addr.ip());
        uri.port = Some(addr.port());
        Some((Uri::Sip(uri), addr))
    }

    /// The bindings of the extension rung.
    pub fn located(&mut self, result: crate::Result<Vec<Binding>>, now: Instant) {
        if self.waiting.is_some() {
            self.agent_located(result.unwrap_or_default(), now);
            return;
        }
        if self.phase != Phase::Routing {
            return;
        }
        if self.calling_phone() && self.a.invite.is_none() {
            self.call_phone(live(result.unwrap_or_default()), now);
            return;
        }
        let bindings = match result {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant.name, call = %self.id, error = %e,
                    "bindings unavailable");
                self.fail(480, "unavailable", None, now);
                return;
            }
        };
        let bindings = live(bindings);
        let dn = self.destination.clone().unwrap_or_default();
        if bindings.is_empty() {
            tracing::info!(tenant = %self.tenant.name, call = %self.id, %dn,
                "DN has no registered phone");
            self.fail(480, "not-registered", None, now);
            return;
        }
        if self.ring(&dn, bindings, None, now).is_empty() {
            self.fail(480, "not-registered", None, now);
        }
    }

    /// Rings every contact of `dn` at once, with `offer` in place of the caller's if given
    /// (see [`Call::place_with`]); the indexes of the legs placed.
    fn ring(
        &mut self,
        dn: &str,
        bindings: Vec<Binding>,
        offer: Option<Bytes>,
        now: Instant,
    ) -> Vec<usize> {
        let to = format!("<{}>", self.tenant.aor(dn));
        // A leg is large and a Vec grows by four: room for exactly the legs rung.
        self.b.reserve_exact(bindings.len());
        let mut legs = Vec::with_capacity(bindings.len());
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
        legs
    }

    /// Sends a B leg's INVITE, carrying the caller's offer.
    fn place(
        &mut self,
        uri: Uri,
        to: String,
        dest: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        self.place_with(uri, to, dest, transport, None, now);
    }

    /// As [`Call::place`], with `offer` in place of the caller's (empty: no offer, for a
    /// party that takes the place of another, RFC 3725).
    fn place_with(
        &mut self,
        uri: Uri,
        to: String,
        dest: SocketAddr,
        transport: Transport,
        offer: Option<Bytes>,
        now: Instant,
    ) {
        self.phase = Phase::Ringing;
        self.next_call_id += 1;
        let call_id = ByteString::from(format!(
            "{}-{:x}-{}",
            self.local.node, self.local.key, self.next_call_id
        ));
        let tag = switchboard_sip::token::<8>();
        // The caller's INVITE, or for a call placed for a desktop the phone's offer.
        let empty = Headers::default();
        let offer_given = offer.is_some();
        let (h, body) = match (self.a.invite.as_deref(), self.originate.as_deref()) {
            _ if offer_given => (&empty, offer.unwrap_or_default()),
            (_, Some(o)) => (&empty, o.offer.clone().unwrap_or_default()),
            (Some(a_invite), None) => (&a_invite.headers, a_invite.body.clone()),
            (None, None) => return,
        };
        let from = match &self.origin {
            Origin::Phone(dn) => format!("<sip:{dn}@{}>;tag={tag}", self.tenant.domain),
            _ => match h.from() {
                Some(Ok(mut from)) => {
                    from.params = Default::default();
                    format!("{from};tag={tag}")
                }
                // A transfer placed by the core: the caller as it came in.
                _ if !self.caller_uri.is_empty() => format!("<{}>;tag={tag}", self.caller_uri),
                _ => format!("<sip:anonymous@{}>;tag={tag}", self.tenant.domain),
            },
        };
        let max_forwards = match h.max_forwards() {
            Some(Ok(n)) => n.saturating_sub(1).min(70),
            _ => 70,
        };
        // Behind a proxy, the callee is reached through it, on the flow it holds.
        let (dest, transport, route) = match self.outbound {
            Some(proxy) => (
                proxy,
                Transport::Udp,
                Some(crate::sip_proxy::forward::route_through(
                    proxy, dest, transport,
                )),
            ),
            None => (dest, transport, None),
        };
        let (via, branch) = self.local.via(transport);
        let mut headers = Headers::with_capacity(12);
        headers.push(HeaderName::Via, via);
        if let Some(route) = route {
            headers.push(HeaderName::Route, route);
        }
        headers.push(HeaderName::MaxForwards, max_forwards.to_string());
        headers.push(HeaderName::From, from);
        headers.push(HeaderName::To, to);
        headers.push(HeaderName::CallId, call_id.clone());
        headers.push(HeaderName::CSeq, "1 INVITE");
        headers.push(HeaderName::Contact, self.local.contact(transport));
        headers.push(HeaderName::Allow, ALLOW);
        // Offer the callee session timers, at the caller's interval if it has one.
        let interval = self
            .a
            .timer
            .as_ref()
            .map_or(self.config.session_expires, |t| t.interval);
        headers.push(HeaderName::Supported, TIMER);
        headers.push(HeaderName::SessionExpires, interval.as_secs().to_string());
        headers.push(HeaderName::MinSe, self.config.min_se.as_secs().to_string());
        if self.originate.is_some() || (offer_given && !body.is_empty()) {
            headers.push(HeaderName::ContentType, "application/sdp");
        } else {
            copy_body_headers(h, &mut headers);
        }
        headers.push(HeaderName::ContentLength, "0");
        let invite = Request {
            method: Method::Invite,
            uri,
            headers,
            body,
        };
        let index = self.b.len();
        if self.b.capacity() == 0 {
            self.b.reserve_exact(1);
        }
        let mut leg = Leg::new(call_id, tag, dest, transport);
        leg.target = invite.uri.to_string();
        leg.invite = Some(Box::new(invite.clone()));
        self.b.push(leg);
        self.send_request(LegId::B(index), invite, branch, Purpose::Invite, now);
    }

    // ----- input -----

    /// A message of one of the call's legs.
    pub fn receive(
        &mut self,
        message: Message,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        match message {
            Message::Response(r) => self.response(r, now),
            Message::Request(r) => self.request(r, source, transport, now),
        }
    }

    fn request(
        &mut self,
        request: Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let Some(key) = TransactionKey::for_request(&request) else {
            return;
        };
        // A retransmission, or the ACK of a non-2xx final response.
        if let Some(s) = self.servers.iter_mut().find(|s| s.key == key) {
            s.txn.receive(&request, now);
            let id = s.id;
            self.flush_server(id);
            return;
        }
        let has_to_tag = request
            .headers
            .to()
            .and_then(Result::ok)
            .is_some_and(|t| t.tag().is_some());
        if !has_to_tag && !matches!(request.method, Method::Ack | Method::Cancel) {
            // The same Call-ID in a new request that is not a retransmission: a merged
            // request (RFC 3261 8.2.2.2).
            self.answer_alone(&request, source, transport, 482);
            return;
        }
        let Some(leg) = self.leg_of_request(&request) else {
            if request.method != Method::Ack {
                self.answer_alone(&request, source, transport, 481);
            }
            return;
        };
        match request.method {
            Method::Ack => self.ack(leg, &request, now),
            Method::Cancel => self.cancel(leg, request, source, transport, now),
            _ => self.in_dialog(leg, request, now),
        }
    }

    /// The leg a request names: by Call-ID, and by this side's tag when it carries one.
    fn leg_of_request(&self, request: &Request) -> Option<LegId> {
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

    fn cancel(
        &mut self,
        leg: LegId,
        request: Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        // A CANCEL matches the INVITE with the same branch (RFC 3261 9.2).
        let invite_key = TransactionKey::for_request(&request).map(TransactionKey::of_invite);
        let invite = self
            .servers
            .iter()
            .find(|s| Some(&s.key) == invite_key.as_ref() && s.request.method == Method::Invite)
            .map(|s| (s.id, s.answered));
        let Some((invite, answered)) = invite else {
            self.answer_alone(&request, source, transport, 481);
            return;
        };
        let id = self.new_server(leg, request.clone());
        let ok = Response::to_request(&request.headers, 200).with_to_tag(&self.a.tag);
        self.respond_to(id, ok, now);
        if answered || leg != LegId::A {
            // Too late: the INVITE has its final response (a CANCEL racing a 200).
            return;
        }
        tracing::debug!(tenant = %self.tenant.name, call = %self.id, "caller cancelled");
        let terminated = self.response_to(invite, 487);
        self.respond_to(invite, terminated, now);
        let was_ringing = self.phase == Phase::Ringing;
        self.end(
            if was_ringing {
                CallEventKind::Abandoned
            } else {
                CallEventKind::Released
            },
            "caller-cancel",
            487,
            None,
            now,
        );
    }

    fn ack(&mut self, leg: LegId, request: &Request, now: Instant) {
        let Some(Ok(cseq)) = request.headers.cseq() else {
            return;
        };
        let Some(i) = self
            .awaiting_ack
            .iter()
            .position(|a| a.leg == leg && a.sent.seq == cseq.seq)
        else {
            return;
        };
        let waited = self.awaiting_ack.remove(i);
        if self.awaiting_ack.is_empty() {
            self.awaiting_ack.shrink_to_fit();
        }
        if let Some((other, seq)) = waited.then {
            self.send_ack(other, seq, request.body.clone(), &request.headers, now);
        }
        // The call is set up on both sides: its setup need not be kept.
        if leg == LegId::A && self.a.progress == Progress::Answered {
            self.a.invite = None;
            if let Some(i) = self.winner {
                self.b[i].invite = None;
            }
        }
    }

    /// ACKs a 2xx received on `leg` for its INVITE of sequence `seq`, with the answer (if
    /// any) the other side's ACK carried.
    fn send_ack(&mut self, leg: LegId, seq: u32, body: Bytes, from: &Headers, _now: Instant) {
        let l = self.leg(leg);
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
        self.sent_sdp(leg, &ack.body);
        let l = self.leg_mut(leg);
        l.ack = Some(bytes.clone());
        let (transport, dest) = (l.transport, l.peer);
        self.out.push_back(Output::Send {
            transport,
            dest,
            bytes,
        });
    }

    /// A request within one leg's dialog.
    fn in_dialog(&mut self, leg: LegId, request: Request, now: Instant) {
        let id = self.new_server(leg, request.clone());
        let established = self.leg(leg).dialog.is_some();
        if !established || self.phase == Phase::Ending {
            let r = self.response_to(id, 481);
            self.respond_to(id, r, now);
            return;
        }
        if let Some(dialog) = self.leg_mut(leg).dialog.as_mut() {
            match dialog.receive(&request) {
                Ok(()) => {}
                Err(InDialogError::OutOfOrder { .. }) => {
                    let r = self.response_to(id, 500);
                    self.respond_to(id, r, now);
                    return;
                }
                Err(InDialogError::Invalid(_)) => {
                    let r = self.response_to(id, 400);
                    self.respond_to(id, r, now);
                    return;
                }
            }
        }
        match request.method {
            Method::Bye => {
                let ok = self.response_to(id, 200);
                self.respond_to(id, ok, now);
                // A party hanging up leaves the conference; the others stay.
                if let Some(m) = self
                    .conference
                    .as_ref()
                    .and_then(|c| c.members.iter().position(|m| m.party == leg))
                    .filter(|_| leg != LegId::A)
                {
                    if let LegId::B(i) = leg {
                        self.b[i].progress = Progress::Over;
                        self.b[i].dialog = None;
                    }
                    self.leave_conference(m, now);
                    return;
                }
                if let LegId::B(i) = leg
                    && self.waiting_bye(i, &request.body)
                {
                    return;
                }
                match leg {
                    LegId::A => self.end(
                        CallEventKind::Released,
                        "caller-hangup",
                        0,
                        Some(LegId::A),
                        now,
                    ),
                    LegId::B(i) if Some(i) == self.winner => {
                        self.end(CallEventKind::Released, "callee-hangup", 0, Some(leg), now)
                    }
                    // An early dialog of a fork that lost: it is simply over.
                    LegId::B(i) => {
                        self.b[i].progress = Progress::Over;
                    }
                }
            }
            Method::Options => {
                let ok = self
                    .response_to(id, 200)
                    .with_header(HeaderName::Allow, ALLOW);
                self.respond_to(id, ok, now);
            }
            Method::Prack if leg == LegId::A => self.prack(id, &request, now),
            Method::Refer => self.refer(leg, id, &request, now),
            Method::Update if request.body.is_empty() && self.phase == Phase::Established => {
                // A session refresh and nothing else (RFC 4028 7.4): answered here, not
                // passed on; the other leg keeps its own timer.
                let mut ok = self.response_to(id, 200);
                if let Some(timer) = self.leg_mut(leg).timer.as_mut() {
                    timer.refreshed(now);
                    session_timer::add_to_response(&mut ok.headers, timer);
                }
                self.respond_to(id, ok, now);
            }
            Method::Invite | Method::Update | Method::Info => {
                if self.phase != Phase::Established {
                    let r = self.response_to(id, 491);
                    self.respond_to(id, r, now);
                    return;
                }
                if let Some(problem) = sdp_problem(&request) {
                    let r = self
                        .response_to(id, 488)
                        .with_header(HeaderName::Warning, warning(&problem));
                    self.respond_to(id, r, now);
                    return;
                }
                if request.method == Method::Invite && self.invite_pending(id) {
                    // Glare (RFC 3261 14.2): one offer at a time.
                    let r = self.response_to(id, 491);
                    self.respond_to(id, r, now);
                    return;
                }
                self.relay(leg, id, &request, now);
            }
            _ => {
                let r = self
                    .response_to(id, 405)
                    .with_header(HeaderName::Allow, ALLOW);
                self.respond_to(id, r, now);
            }
        }
    }

    /// Whether an offer is in progress on either leg besides server transaction `except`: a
    /// re-INVITE received or relayed and not answered, or a 2xx still waiting for its ACK.
    fn invite_pending(&self, except: u32) -> bool {
        let re_invite = |r: &Request| {
            r.method == Method::Invite
                && r.headers
                    .to()
                    .and_then(Result::ok)
                    .is_some_and(|t| t.tag().is_some())
        };
        self.servers
            .iter()
            .any(|s| s.id != except && !s.answered && re_invite(&s.request))
            || !self.awaiting_ack.is_empty()
    }

    /// Relays a request received on `from` into the other leg's dialog.
    fn relay(&mut self, from: LegId, server: u32, request: &Request, now: Instant) {
        let Some(to) = self.other(from) else {
            let r = self.response_to(server, 481);
            self.respond_to(server, r, now);
            return;
        };
        let transport = self.leg(to).transport;
        let contact = self.local.contact(transport);
        let Some(dialog) = self.leg_mut(to).dialog.as_mut() else {
            return;
        };
        let mut out = dialog.request(request.method.clone());
        let (via, branch) = self.local.via(transport);
        out.headers.push_front(HeaderName::Via, via);
        let mut headers = std::mem::take(&mut out.headers);
        headers.remove(&HeaderName::ContentLength);
        if matches!(request.method, Method::Invite | Method::Update) {
            headers.push(HeaderName::Contact, contact);
            headers.push(HeaderName::Allow, ALLOW);
            if let Some(timer) = self.leg_mut(to).timer.as_ref() {
                headers.push(HeaderName::Supported, TIMER);
                headers.push(HeaderName::SessionExpires, timer.in_request());
            }
            self.sent_sdp(to, &request.body);
        }
        copy_body_headers(&request.headers, &mut headers);
        headers.push(HeaderName::ContentLength, "0");
        out.headers = headers;
        out.body = request.body.clone();
        self.send_request(to, out, branch, Purpose::Relay(server), now);
    }

    fn other(&self, leg: LegId) -> Option<LegId> {
        match leg {
            LegId::A => self.winner.map(LegId::B),
            LegId::B(i) if Some(i) == self.winner => Some(LegId::A),
            LegId::B(_) => None,
        }
    }

    // ----- responses -----

    fn response(&mut self, response: Response, now: Instant) {
        let Some(Ok(via)) = response.headers.top_via() else {
            return;
        };
        let (Some(branch), Some(Ok(cseq))) = (via.branch(), response.headers.cseq()) else {
            return;
        };
        let Some(i) = self
            .clients
            .iter()
            .position(|c| c.branch == branch && c.method == cseq.method)
        else {
            // A 2xx retransmission after its INVITE transaction ended: ACK it again.
            self.stray_2xx(&response);
            return;
        };
        self.clients[i].txn.receive(response, now);
        self.flush_client(i, now);
    }

    fn stray_2xx(&mut self, response: &Response) {
        let Some(call_id) = response.headers.call_id() else {
            return;
        };
        if !(200..300).contains(&response.status) {
            return;
        }
        if let Some(leg) = self.b.iter().find(|l| l.call_id == *call_id)
            && let Some(ack) = &leg.ack
        {
            self.out.push_back(Output::Send {
                transport: leg.transport,
                dest: leg.peer,
                bytes: ack.clone(),
            });
        }
    }

    fn flush_client(&mut self, i: usize, now: Instant) {
        loop {
            let Some(c) = self.clients.get_mut(i) else {
                return;
            };
            let (leg, purpose) = (c.leg, c.purpose);
            let mut sent = Vec::new();
            while let Some(bytes) = c.txn.poll_transmit() {
                sent.push(bytes);
            }
            let event = c.txn.poll_event();
            let l = self.leg(leg);
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
                    self.clients.remove(i);
                    if purpose == Purpose::Invite {
                        // Past Timer M no 2xx of this INVITE comes again: its ACK can go,
                        // and the INVITE (a leg that never answers keeps it until then, to
                        // CANCEL it or take a late 2xx).
                        let l = self.leg_mut(leg);
                        l.ack = None;
                        l.invite = None;
                    }
                    if self.clients.is_empty() {
                        self.clients.shrink_to_fit();
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
            Purpose::Bridge(i) => {
                let timeout = Response::to_request(&Headers::default(), 408);
                self.bridged(i, timeout, now);
            }
            Purpose::Cancel | Purpose::Bye | Purpose::Inform => {}
        }
    }

    /// A response as if it came from B leg `i` (a timeout), for the same handling.
    fn response_from_leg(&self, i: usize, status: u16) -> Response {
        match &self.b[i].invite {
            Some(invite) => Response::to_request(&invite.headers, status),
            None => Response::to_request(&Default::default(), status),
        }
    }

    /// A response to a B leg's INVITE.
    fn b_response(&mut self, i: usize, r: Response, now: Instant) {
        let status = r.status;
        if status == 100 {
            return;
        }
        if status < 200 {
            if r.headers
                .to()
                .and_then(Result::ok)
                .is_some_and(|t| t.tag().is_some())
                && self.b[i].dialog.is_none()
                && let Some(invite) = &self.b[i].invite
                && let Ok(d) = Dialog::as_uac(invite, &r)
            {
                self.b[i].dialog = Some(d);
            }
            match self.b[i].progress {
                Progress::Calling => self.b[i].progress = Progress::Early,
                Progress::Cancelling => {
                    self.send_cancel(i, now);
                    return;
                }
                _ => {}
            }
            if !self.waiting_provisional(i) && self.phase == Phase::Ringing {
                self.ringing(&r, now);
            }
            return;
        }
        if self.waiting_final(i, &r, now) {
            return;
        }
        if status < 300 {
            self.b_answered(i, r, now);
            return;
        }
        self.b[i].progress = Progress::Failed(status);
        if self.phase == Phase::Ringing
            && self
                .b
                .iter()
                .all(|l| matches!(l.progress, Progress::Failed(_) | Progress::Over))
        {
            self.all_failed(now);
        }
    }

    /// A provisional response from a ringing B leg, passed to the caller.
    fn ringing(&mut self, r: &Response, now: Instant) {
        if self.originate.is_some() {
            if !self.rung {
                self.rung = true;
                self.event(CallEventKind::Ringing, "", 0);
            }
            return;
        }
        let first = self.a.dialog.is_none();
        let status = if r.body.is_empty() {
            180
        } else {
            r.status.max(180)
        };
        let (Some(invite), Some(a_invite)) = (self.initial_invite(), self.a.invite.as_deref())
        else {
            return;
        };
        let mut response = establishing(
            a_invite,
            status,
            &self.a.tag,
            &self.local.contact(self.a.transport),
        );
        if !r.body.is_empty() {
            response = with_body(response, &r.headers, r.body.clone());
        }
        if first {
            if let Ok(d) = Dialog::as_uas(a_invite, &response) {
                self.a.dialog = Some(d);
            }
            self.event(CallEventKind::Ringing, "", 0);
        }
        self.provisional(invite, response, now);
    }

    /// Sends a provisional response to the caller: reliably if it asked (one at a time, the
    /// next once the last is PRACKed), or once.
    fn provisional(&mut self, invite: u32, response: Response, now: Instant) {
        let response = match self.reliability.as_mut() {
            Some(r) => r.provisional(response, self.config.timers.t1, now),
            None => Some(response),
        };
        if let Some(response) = response {
            self.respond_to(invite, response, now);
        }
    }

    /// The caller acknowledges a reliable provisional response (RFC 3262 3): what waited for
    /// the PRACK goes now, the callee's answer or the next 18x.
    fn prack(&mut self, id: u32, request: &Request, now: Instant) {
        let a_seq = self.a.invite_seq;
        let released = self
            .reliability
            .as_mut()
            .and_then(|r| r.prack(&request.headers, a_seq));
        let status = if released.is_some() { 200 } else { 481 };
        let r = self.response_to(id, status);
        self.respond_to(id, r, now);
        match released {
            Some(Released::Answer((i, answer))) => self.b_answered(i, answer, now),
            Some(Released::Provisional(next)) => {
                if let Some(invite) = self.initial_invite() {
                    self.provisional(invite, next, now);
                }
            }
            Some(Released::Nothing) | None => {}
        }
    }

    /// Sends the unacknowledged reliable provisional response again (T1, doubling), and
    /// rejects the call when no PRACK came in 64*T1 (RFC 3262 3).
    fn retransmit_reliable(&mut self, now: Instant) {
        match self.reliability.as_mut().and_then(|r| r.poll(now)) {
            Some(PrackDue::Resend(bytes)) if !self.a.transport.is_reliable() => {
                self.out.push_back(Output::Send {
                    transport: self.a.transport,
                    dest: self.a.peer,
                    bytes,
                });
            }
            None | Some(PrackDue::Resend(_)) => {}
            Some(PrackDue::GiveUp) => {
                tracing::info!(tenant = %self.tenant.name, call = %self.id,
                    "no PRACK for a reliable provisional response");
                if self.initial_invite().is_some() {
                    self.fail(500, "no-prack", None, now);
                }
            }
        }
    }

    /// B leg `i`'s dialog from its 2xx: made, or brought up to date.
    fn take_dialog(&mut self, i: usize, r: &Response) {
        match &mut self.b[i].dialog {
            Some(d) if d.id.remote_tag == to_tag(r) => {
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

    fn b_answered(&mut self, i: usize, r: Response, now: Instant) {
        self.take_dialog(i, &r);
        let seq = self.b[i].invite_seq;
        if matches!(self.b[i].progress, Progress::Answered | Progress::Over) {
            // A retransmission: the ACK again once there is one (it may wait for the caller's).
            if let Some(ack) = self.b[i].ack.clone() {
                let l = &self.b[i];
                self.out.push_back(Output::Send {
                    transport: l.transport,
                    dest: l.peer,
                    bytes: ack,
                });
            }
            return;
        }
        if self.phase != Phase::Ringing || self.winner.is_some() {
            // Another fork won, or the caller left: take this answer and end it.
            self.b[i].progress = Progress::Answered;
            self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
            self.bye(LegId::B(i), now);
            return;
        }
        // The caller may not have acknowledged the early description yet: the answer then
        // waits for its PRACK (RFC 3262 3).
        let r = match self.reliability.as_mut() {
            Some(reliability) => match reliability.answer((i, r)) {
                Ok(()) => return,
                Err((_, r)) => r,
            },
            None => r,
        };
        self.winner = Some(i);
        self.b[i].progress = Progress::Answered;
        self.no_answer_at = None;
        self.b[i].timer = SessionTimer::from_answer(&r.headers);
        for j in 0..self.b.len() {
            if j != i {
                self.cancel_leg(j, now);
            }
        }
        if self.originate.is_some() {
            let offer = self
                .originate
                .as_ref()
                .and_then(|o| o.offer.clone())
                .unwrap_or_default();
            self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
            self.sent_sdp(LegId::B(i), &offer);
            self.connect_phone(&r.body, now);
            self.established(i, now);
            return;
        }
        let (Some(invite), Some(a_invite)) = (self.initial_invite(), self.a.invite.as_deref())
        else {
            return;
        };
        let mut ok = establishing(
            a_invite,
            200,
            &self.a.tag,
            &self.local.contact(self.a.transport),
        )
        .with_header(HeaderName::Allow, ALLOW);
        if let Some(timer) = self.a.timer.as_ref() {
            session_timer::add_to_response(&mut ok.headers, timer);
        }
        let offered = a_invite.body.clone();
        if !r.body.is_empty() {
            ok = with_body(ok, &r.headers, r.body.clone());
        }
        if let Ok(d) = Dialog::as_uas(a_invite, &ok) {
            self.a.dialog = Some(d);
        }
        self.sent_sdp(LegId::A, &r.body);
        self.sent_sdp(LegId::B(i), &offered);
        self.a.progress = Progress::Answered;
        let a_seq = self.a.invite_seq;
        self.respond_to(invite, ok.clone(), now);
        self.await_ack(
            LegId::A,
            a_seq,
            ok.to_bytes(),
            Some((LegId::B(i), seq)),
            now,
        );
        self.established(i, now);
    }

    /// The call is answered by B leg `i`.
    fn established(&mut self, i: usize, now: Instant) {
        self.phase = Phase::Established;
        for l in [LegId::A, LegId::B(i)] {
            if let Some(timer) = self.leg_mut(l).timer.as_mut() {
                timer.refreshed(now);
            }
        }
        if !self.config.probe_interval.is_zero() {
            self.probe_at = Some(now + self.config.probe_interval);
        }
        if self.waiting_established(i, now) {
            return;
        }
        self.event(CallEventKind::Established, "", 0);
    }

    /// Every B leg failed: the caller gets the status that says most.
    fn all_failed(&mut self, now: Instant) {
        let statuses: Vec<u16> = self
            .b
            .iter()
            .filter_map(|l| match l.progress {
                Progress::Failed(s) => Some(s),
                _ => None,
            })
            .collect();
        let (status, cause) = if statuses.iter().any(|&s| s == 486 || s == 600) {
            (486, "busy")
        } else if statuses.contains(&603) {
            (603, "rejected")
        } else if self.to_trunk {
            // A carrier's answer means something to the caller: pass it on (a 5xx as 502,
            // since the call, not the core, failed there).
            let s = statuses.first().copied().unwrap_or(480);
            (if (500..600).contains(&s) { 502 } else { s }, "failed")
        } else if statuses.iter().all(|&s| s == 408) {
            (408, "no-answer")
        } else {
            (480, "unavailable")
        };
        if status == 486 {
            self.event(CallEventKind::DestinationBusy, "busy", 486);
        }
        self.fail(status, cause, None, now);
    }

    /// The final response to a request relayed into `leg`, passed back.
    fn relayed_response(&mut self, leg: LegId, server: u32, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        let Some(s) = self.servers.iter().find(|s| s.id == server) else {
            // The other side gave up on it (the call ended meanwhile): ACK a 2xx and move on.
            if (200..300).contains(&r.status) {
                self.ack_orphan(leg, &r, now);
            }
            return;
        };
        let (from, method) = (s.leg, s.request.method.clone());
        let request_body_hold = Sdp::parse(&s.request.body).map(|s| s.is_hold()).ok();
        let from_seq = seq_of(&s.request.headers);
        let mut response = self.response_to(server, r.status);
        let refresh =
            (200..300).contains(&r.status) && matches!(method, Method::Invite | Method::Update);
        if refresh {
            response = response
                .with_header(
                    HeaderName::Contact,
                    self.local.contact(self.leg(from).transport),
                )
                .with_header(HeaderName::Allow, ALLOW);
            // The session went through end to end: both legs are refreshed.
            for l in [from, leg] {
                if let Some(timer) = self.leg_mut(l).timer.as_mut() {
                    timer.refreshed(now);
                }
            }
            if let Some(timer) = self.leg_mut(from).timer.as_ref() {
                session_timer::add_to_response(&mut response.headers, timer);
            }
            self.sent_sdp(from, &r.body);
        }
        if !r.body.is_empty() {
            response = with_body(response, &r.headers, r.body.clone());
        }
        if let Some(dialog) = self.leg_mut(leg).dialog.as_mut() {
            let _ = dialog.update_from_response(&r);
        }
        self.respond_to(server, response.clone(), now);
        if method == Method::Invite && (200..300).contains(&r.status) {
            let seq = seq_of(&r.headers);
            self.await_ack(from, from_seq, response.to_bytes(), Some((leg, seq)), now);
        }
        if (200..300).contains(&r.status)
            && matches!(method, Method::Invite | Method::Update)
            && let Some(hold) = request_body_hold
        {
            if hold && !self.held {
                self.held = true;
                self.event(CallEventKind::Held, "", 0);
            } else if !hold && self.held {
                self.held = false;
                self.event(CallEventKind::Retrieved, "", 0);
            }
        }
    }

    /// ACKs a 2xx no one waits for any more.
    fn ack_orphan(&mut self, leg: LegId, r: &Response, now: Instant) {
        let seq = seq_of(&r.headers);
        self.send_ack(leg, seq, Bytes::new(), &Headers::default(), now);
    }

    // ----- ending -----

    /// Ends an unanswered call: the caller gets `status`.
    fn fail(&mut self, status: u16, cause: &str, warning_text: Option<String>, now: Instant) {
        if let Some(invite) = self.initial_invite() {
            let mut r = self.response_to(invite, status);
            if let Some(w) = warning_text {
                r = r.with_header(HeaderName::Warning, warning(&w));
            }
            if status == 488 {
                r = r.with_header(HeaderName::Accept, "application/sdp");
            }
            if status == 422 {
                r = r.with_header(HeaderName::MinSe, self.config.min_se.as_secs().to_string());
            }
            self.respond_to(invite, r, now);
        }
        self.end(CallEventKind::Released, cause, status, None, now);
    }

    /// Ends the call on every leg but `from` (which ended it), and reports why.
    fn end(
        &mut self,
        kind: CallEventKind,
        cause: &str,
        status: u16,
        from: Option<LegId>,
        now: Instant,
    ) {
        if self.phase == Phase::Ending {
            return;
        }
        let kind = self.left_routing_point(kind, cause);
        tracing::debug!(tenant = %self.tenant.name, call = %self.id, kind = kind.name(), cause,
            "call over");
        self.phase = Phase::Ending;
        self.no_answer_at = None;
        self.probe_at = None;
        // A callee whose answer waited for the caller's PRACK is ACKed and hung up below.
        if let Some((i, _)) = self.reliability.as_mut().and_then(|r| r.finish()) {
            self.b[i].progress = Progress::Answered;
        }
        self.awaiting_ack.clear();
        // Requests still waiting for an answer get one (a re-INVITE racing a BYE: 487).
        let pending: Vec<u32> = self
            .servers
            .iter()
            .filter(|s| !s.answered)
            .map(|s| s.id)
            .collect();
        for id in pending {
            let status = if self
                .servers
                .iter()
                .any(|s| s.id == id && s.request.method == Method::Invite)
            {
                487
            } else {
                481
            };
            let r = self.response_to(id, status);
            self.respond_to(id, r, now);
        }
        if from != Some(LegId::A)
            && self
                .a
                .dialog
                .as_ref()
                .is_some_and(|d| d.state == DialogState::Confirmed)
        {
            self.bye(LegId::A, now);
        } else if from != Some(LegId::A)
            && self.originate.is_some()
            && matches!(self.a.progress, Progress::Calling | Progress::Early)
            && let Some(invite) = self.a.invite.as_deref()
        {
            // The agent's phone still rings for a call placed for its desktop.
            let cancel = cancel_for(invite);
            let branch = invite
                .headers
                .top_via()
                .and_then(Result::ok)
                .and_then(|v| v.branch().map(str::to_owned))
                .unwrap_or_default();
            self.a.progress = Progress::Failed(487);
            self.send_request(LegId::A, cancel, branch, Purpose::Cancel, now);
        }
        for i in 0..self.b.len() {
            if from == Some(LegId::B(i)) {
                self.b[i].progress = Progress::Over;
                continue;
            }
            match self.b[i].progress {
                Progress::Answered => {
                    // Its 2xx may still wait for the caller's ACK: a UAC ACKs before it
                    // hangs up (RFC 3261 13.2.2.4).
                    if self.b[i].ack.is_none() {
                        let seq = self.b[i].invite_seq;
                        self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
                    }
                    self.bye(LegId::B(i), now)
                }
                Progress::Calling | Progress::Early => self.cancel_leg(i, now),
                _ => {}
            }
        }
        self.release_dn();
        self.event(kind, cause, status);
        self.waiting = None;
    }

    fn bye(&mut self, leg: LegId, now: Instant) {
        let transport = self.leg(leg).transport;
        let Some(dialog) = self.leg_mut(leg).dialog.as_mut() else {
            return;
        };
        let mut bye = dialog.request(Method::Bye);
        let (via, branch) = self.local.via(transport);
        bye.headers.push_front(HeaderName::Via, via);
        self.leg_mut(leg).progress = Progress::Over;
        self.send_request(leg, bye, branch, Purpose::Bye, now);
    }

    /// Stops B leg `i` ringing: CANCEL once it has answered provisionally (RFC 3261 9.1),
    /// or as soon as it does.
    fn cancel_leg(&mut self, i: usize, now: Instant) {
        match self.b[i].progress {
            Progress::Early => self.send_cancel(i, now),
            Progress::Calling => self.b[i].progress = Progress::Cancelling,
            _ => {}
        }
    }

    fn send_cancel(&mut self, i: usize, now: Instant) {
        let Some(invite) = self.b[i].invite.as_deref() else {
            return;
        };
        let cancel = cancel_for(invite);
        let branch = invite
            .headers
            .top_via()
            .and_then(Result::ok)
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        self.b[i].progress = Progress::Failed(487);
        // CANCEL shares its INVITE's branch, a transaction of its own told apart by method.
        self.send_request(LegId::B(i), cancel, branch, Purpose::Cancel, now);
    }

    // ----- timers -----

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .servers
            .iter()
            .filter(|s| s.txn.poll_timeout().is_some_and(|t| t <= now))
            .map(|s| s.id)
            .collect();
        for id in due {
            if let Some(s) = self.servers.iter_mut().find(|s| s.id == id) {
                s.txn.handle_timeout(now);
            }
            self.flush_server(id);
        }
        let mut i = 0;
        while i < self.clients.len() {
            if self.clients[i].txn.poll_timeout().is_some_and(|t| t <= now) {
                self.clients[i].txn.handle_timeout(now);
                let before = self.clients.len();
                self.flush_client(i, now);
                if self.clients.len() < before {
                    continue;
                }
            }
            i += 1;
        }
        self.retransmit_2xx(now);
        self.retransmit_reliable(now);
        if self.waiting_due().is_some_and(|t| t <= now) {
            self.waiting_timeout(now);
        }
        if self.no_answer_at.is_some_and(|t| t <= now) {
            self.no_answer_at = None;
            if self.phase == Phase::Ringing {
                tracing::info!(tenant = %self.tenant.name, call = %self.id, "no answer");
                for i in 0..self.b.len() {
                    self.cancel_leg(i, now);
                }
                self.fail(480, "no-answer", None, now);
            } else if self.calling_phone() {
                tracing::info!(tenant = %self.tenant.name, call = %self.id,
                    "the agent's phone did not answer");
                self.end(CallEventKind::Released, "not-answered", 480, None, now);
            }
        }
        for leg in [Some(LegId::A), self.winner.map(LegId::B)]
            .into_iter()
            .flatten()
        {
            if self.phase == Phase::Established && self.timer_due(leg).is_some_and(|t| t <= now) {
                self.session_due(leg, now);
            }
        }
        if self.probe_at.is_some_and(|t| t <= now) {
            self.probe_at = Some(now + self.config.probe_interval);
            for leg in [Some(LegId::A), self.winner.map(LegId::B)]
                .into_iter()
                .flatten()
            {
                self.probe(leg, now);
            }
        }
    }

    /// RFC 3261 13.3.1.4: the 2xx goes again at T1, doubling to T2, until its ACK; none by
    /// 64*T1 ends the call.
    fn retransmit_2xx(&mut self, now: Instant) {
        let mut gave_up = None;
        for a in &mut self.awaiting_ack {
            match a.sent.poll(now, self.config.timers) {
                None => {}
                Some(AckDue::GiveUp) => gave_up = Some(a.leg),
                Some(AckDue::Resend(bytes)) => {
                    let l = match a.leg {
                        LegId::A => &self.a,
                        LegId::B(i) => &self.b[i],
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
            tracing::info!(tenant = %self.tenant.name, call = %self.id, "no ACK for a 2xx");
            self.awaiting_ack.retain(|a| a.leg != leg);
            // The leg that never ACKed gets a BYE too: it may have the 2xx and think the call
            // is up (RFC 3261 13.3.1.4).
            self.end(CallEventKind::Released, "no-ack", 0, None, now);
        }
    }

    fn await_ack(
        &mut self,
        leg: LegId,
        seq: u32,
        bytes: Bytes,
        then: Option<(LegId, u32)>,
        now: Instant,
    ) {
        self.awaiting_ack.retain(|a| a.leg != leg);
        self.awaiting_ack.push(AwaitingAck {
            leg,
            sent: Unacknowledged::new(seq, bytes, self.config.timers, now),
            then,
        });
    }

    fn timer_due(&self, leg: LegId) -> Option<Instant> {
        self.leg(leg).timer.as_ref().and_then(|t| t.due)
    }

    /// A leg's session timer is due: this side refreshes, or the other end failed to.
    fn session_due(&mut self, leg: LegId, now: Instant) {
        let Some(timer) = self.leg_mut(leg).timer.as_mut() else {
            return;
        };
        if !timer.we_refresh {
            tracing::info!(tenant = %self.tenant.name, call = %self.id, ?leg,
                "session expired: no refresh in time");
            self.end(CallEventKind::Released, "session-expired", 0, None, now);
            return;
        }
        // Again half an interval on, should this refresh get no answer meanwhile.
        timer.refreshed(now);
        let (update, value) = (timer.update, timer.in_request());
        let sdp = self.leg(leg).sdp.clone();
        if self
            .clients
            .iter()
            .any(|c| c.leg == leg && matches!(c.purpose, Purpose::Refresh | Purpose::Relay(_)))
        {
            return;
        }
        let method = match (update, &sdp) {
            (true, _) => Method::Update,
            (false, Some(_)) => Method::Invite,
            (false, None) => {
                tracing::warn!(tenant = %self.tenant.name, call = %self.id, ?leg,
                    "no way to refresh the session (no UPDATE, no description): timer off");
                self.leg_mut(leg).timer = None;
                return;
            }
        };
        let body = match (&method, sdp) {
            (Method::Invite, Some(sdp)) => Some(("application/sdp", Bytes::copy_from_slice(&sdp))),
            _ => None,
        };
        let extra = [
            (HeaderName::Allow, ALLOW.to_owned()),
            (HeaderName::Supported, TIMER.to_owned()),
            (HeaderName::SessionExpires, value),
        ];
        self.send_in_dialog(leg, method, &extra, body, Purpose::Refresh, now);
    }

    /// A 2xx to an offer or a refresh this side sent on `leg`: ACKed when it answers an
    /// INVITE, the dialog's target taken from it, the leg's session refreshed.
    fn session_answered(&mut self, leg: LegId, r: &Response, now: Instant) {
        let invite = r
            .headers
            .cseq()
            .and_then(Result::ok)
            .is_some_and(|c| c.method == Method::Invite);
        if invite {
            let seq = seq_of(&r.headers);
            self.send_ack(leg, seq, Bytes::new(), &Headers::default(), now);
        }
        if let Some(dialog) = self.leg_mut(leg).dialog.as_mut() {
            let _ = dialog.update_from_response(r);
        }
        if let Some(timer) = self.leg_mut(leg).timer.as_mut() {
            timer.refreshed(now);
        }
    }

    /// The answer to a session refresh this side sent.
    fn refresh_answered(&mut self, leg: LegId, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        match r.status {
            200..=299 => self.session_answered(leg, &r, now),
            408 | 481 => self.end(
                CallEventKind::Released,
                "unreachable",
                r.status,
                Some(leg),
                now,
            ),
            491 => {
                // Glare with the other end's own re-INVITE: try again shortly.
                if let Some(timer) = self.leg_mut(leg).timer.as_mut() {
                    timer.due = Some(now + Duration::from_secs(2));
                }
            }
            status => {
                tracing::warn!(tenant = %self.tenant.name, call = %self.id, ?leg, status,
                    "session refresh refused: timer off, the probes still watch the leg");
                self.leg_mut(leg).timer = None;
            }
        }
    }

    fn probe(&mut self, leg: LegId, now: Instant) {
        if self
            .clients
            .iter()
            .any(|c| c.leg == leg && c.purpose == Purpose::Probe)
        {
            return;
        }
        let transport = self.leg(leg).transport;
        let Some(dialog) = self.leg_mut(leg).dialog.as_mut() else {
            return;
        };
        let mut options = dialog.request(Method::Options);
        let (via, branch) = self.local.via(transport);
        options.headers.push_front(HeaderName::Via, via);
        self.send_request(leg, options, branch, Purpose::Probe, now);
    }

    /// A send to `dest` failed: its transactions fail as if timed out.
    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        let mut i = 0;
        while i < self.clients.len() {
            if self.leg(self.clients[i].leg).peer == dest {
                self.clients[i].txn.transport_failed();
                let before = self.clients.len();
                self.flush_client(i, now);
                if self.clients.len() < before {
                    continue;
                }
            }
            i += 1;
        }
    }

    // ----- plumbing -----

    /// Keeps the description sent on `leg`, if `body` holds one.
    fn sent_sdp(&mut self, leg: LegId, body: &[u8]) {
        if !body.is_empty() {
            self.leg_mut(leg).sdp = Some(body.into());
        }
    }

    fn leg(&self, leg: LegId) -> &Leg {
        match leg {
            LegId::A => &self.a,
            LegId::B(i) => &self.b[i],
        }
    }

    fn leg_mut(&mut self, leg: LegId) -> &mut Leg {
        match leg {
            LegId::A => &mut self.a,
            LegId::B(i) => &mut self.b[i],
        }
    }

    /// The server transaction of the caller's INVITE, while it has no final response.
    fn initial_invite(&self) -> Option<u32> {
        let first = self.servers.iter().find(|s| s.initial)?;
        (!first.answered).then_some(first.id)
    }

    fn new_server(&mut self, leg: LegId, request: Request) -> u32 {
        self.next_server += 1;
        let id = self.next_server;
        let key = TransactionKey::for_request(&request).expect("the edge checked the Via");
        let reliable = self.leg(leg).transport.is_reliable();
        // The first server transaction of a call is the caller's INVITE.
        let initial = id == 1;
        self.servers.push(Box::new(Server {
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
    fn response_to(&self, id: u32, status: u16) -> Response {
        let Some(s) = self.servers.iter().find(|s| s.id == id) else {
            return Response::to_request(&Default::default(), status);
        };
        Response::to_request(&s.request.headers, status).with_to_tag(&self.leg(s.leg).tag)
    }

    fn respond_to(&mut self, id: u32, response: Response, now: Instant) {
        if let Some(s) = self.servers.iter_mut().find(|s| s.id == id) {
            s.txn.respond(&response, now);
            if response.status >= 200 {
                s.answered = true;
                slim(&mut s.request);
            }
        }
        self.flush_server(id);
    }

    fn flush_server(&mut self, id: u32) {
        let Some(pos) = self.servers.iter().position(|s| s.id == id) else {
            return;
        };
        let s = &mut self.servers[pos];
        let l = match s.leg {
            LegId::A => &self.a,
            LegId::B(i) => &self.b[i],
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
            self.servers.remove(pos);
            if self.servers.is_empty() {
                self.servers.shrink_to_fit();
            }
        }
    }

    fn send_request(
        &mut self,
        leg: LegId,
        request: Request,
        branch: String,
        purpose: Purpose,
        now: Instant,
    ) {
        let reliable = self.leg(leg).transport.is_reliable();
        let method = request.method.clone();
        let txn = ClientTransaction::new(request, reliable, self.config.timers, now);
        self.clients.push(Box::new(Client {
            branch,
            method,
            leg,
            txn,
            purpose,
        }));
        let i = self.clients.len() - 1;
        self.flush_client(i, now);
    }

    /// Answers a request that belongs to no transaction or dialog of the call, statelessly.
    fn answer_alone(
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

    fn event(&mut self, kind: CallEventKind, cause: &str, status: u16) {
        self.event_leaving(kind, cause, status, Vec::new());
    }

    /// As [`Call::event`], with the DNs that are no longer parties.
    fn event_leaving(&mut self, kind: CallEventKind, cause: &str, status: u16, left: Vec<String>) {
        let mut call = self.thread(cause);
        call.status = u32::from(status);
        let snapshot = (!kind.ends_call()).then(|| self.snapshot(kind));
        let mut dns = Vec::new();
        if let Origin::Phone(dn) = &self.origin {
            dns.push(dn.clone());
        }
        // The DN rung counts once it is alerted (from Ringing), or to hear that it is over.
        if self.to_dn
            && self.phase != Phase::Routing
            && let Some(dn) = &self.destination
        {
            dns.push(dn.clone());
        }
        if let Some(conference) = &self.conference {
            for m in conference.members.iter().filter(|m| m.internal) {
                if !dns.contains(&m.dn) {
                    dns.push(m.dn.clone());
                }
            }
        }
        self.out.push_back(Output::Event(Box::new(CallEvent {
            tenant: self.tenant.name.clone(),
            kind,
            call,
            at_ms: crate::unix_ms(),
            snapshot,
            dns,
            left,
            former_thread: self.former_thread.take().map(String::from),
        })));
    }

    /// The call as events report it.
    fn thread(&self, cause: &str) -> CallThread {
        let mut parties = vec![Party {
            dn: match &self.origin {
                Origin::Phone(dn) => dn.clone(),
                _ => self.ani.clone(),
            },
            role: "origination".into(),
            uri: self.caller_uri.clone(),
        }];
        if let Some(conference) = &self.conference {
            for m in conference.members.iter().filter(|m| m.party != LegId::A) {
                parties.push(Party {
                    dn: m.dn.clone(),
                    role: "conference".into(),
                    uri: self.leg(m.party).target.clone(),
                });
            }
        } else if let Some(dest) = &self.destination {
            parties.push(Party {
                dn: dest.clone(),
                role: "destination".into(),
                uri: self
                    .winner
                    .map(|i| self.b[i].target.clone())
                    .unwrap_or_default(),
            });
        }
        let mut thread = CallThread {
            call_id: self.id.to_string(),
            thread_id: self.thread_id().to_owned(),
            parties,
            ani: self.ani.clone(),
            dnis: self.dnis.clone(),
            origin: self.origin.describe(),
            cause: cause.to_owned(),
            status: 0,
            duration_ms: self.started.elapsed().as_millis() as i64,
            user_data: self
                .user_data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..CallThread::default()
        };
        self.routing_fields(&mut thread);
        thread
    }

    /// What another node needs to finish the call: each leg's dialog and where it is reached.
    fn snapshot(&self, kind: CallEventKind) -> String {
        let leg = |role: &str, l: &Leg| {
            let d = l.dialog.as_ref();
            serde_json::json!({
                "role": role,
                "callId": l.call_id.to_string(),
                "localTag": l.tag,
                "remoteTag": d.map(|d| d.id.remote_tag.clone()),
                "local": d.map(|d| d.local.to_string()),
                "remote": d.map(|d| d.remote.to_string()),
                "remoteTarget": d.map(|d| d.remote_target.to_string()),
                "routeSet": d.map(|d| d.route_set.iter().map(NameAddr::to_string).collect::<Vec<_>>()),
                "localSeq": d.map(|d| d.local_seq()),
                "peer": l.peer.to_string(),
                "transport": l.transport.to_string(),
            })
        };
        let mut legs = vec![leg("caller", &self.a)];
        if let Some(i) = self.winner {
            legs.push(leg("callee", &self.b[i]));
        }
        serde_json::json!({
            "call": &*self.id,
            "thread": self.thread_id(),
            "tenant": self.tenant.name,
            "state": kind.name(),
            "held": self.held,
            "origin": self.origin.describe(),
            "ani": self.ani,
            "dnis": self.dnis,
            "destination": self.destination,
            "legs": legs,
        })
        .to_string()
    }
}

/// The bindings not expired yet, highest q first.
fn live(mut bindings: Vec<Binding>) -> Vec<Binding> {
    let now_ms = crate::unix_ms();
    bindings.retain(|b| b.expires_at_ms > now_ms);
    bindings.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
    bindings
}

/// The sequence number of a message's CSeq (the parser saw to it that there is one).
fn seq_of(headers: &Headers) -> u32 {
    headers.cseq().and_then(Result::ok).map_or(0, |c| c.seq)
}

fn to_tag(r: &Response) -> String {
    r.headers
        .to()
        .and_then(Result::ok)
        .and_then(|t| t.tag().map(str::to_owned))
        .unwrap_or_default()
}

/// Why an SDP body cannot be relayed, if it cannot.
fn sdp_problem(request: &Request) -> Option<String> {
    if request.body.is_empty() {
        return None;
    }
    let is_sdp = request
        .headers
        .get(&HeaderName::ContentType)
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"));
    if !is_sdp {
        return None;
    }
    Sdp::parse(&request.body).err().map(|e| format!("SDP: {e}"))
}

fn warning(text: &str) -> String {
    format!("399 switchboard \"{}\"", text.replace('"', "'"))
}

/// Copies the headers that describe a body (RFC 3261 20.11-20.15).
fn copy_body_headers(from: &Headers, to: &mut Headers) {
    for name in [HeaderName::ContentType, HeaderName::ContentDisposition] {
        if let Some(v) = from.get(&name) {
            to.push(name, v.clone());
        }
    }
}

fn with_body(mut r: Response, from: &Headers, body: Bytes) -> Response {
    let cl = r.headers.remove_first(&HeaderName::ContentLength);
    copy_body_headers(from, &mut r.headers);
    if let Some(cl) = cl {
        r.headers.push(HeaderName::ContentLength, cl);
    }
    r.body = body;
    r
}

/// Keeps of a request only what a call needs once it is answered: its method, URI and CSeq,
/// copied out so that the datagram it was parsed from can go.
fn slim(request: &mut Request) {
    if request.body.is_empty() && request.headers.len() <= 1 {
        return;
    }
    let cseq = request
        .headers
        .get(&HeaderName::CSeq)
        .map(|c| c.to_string());
    let mut headers = Headers::with_capacity(1);
    if let Some(cseq) = cseq {
        headers.push(HeaderName::CSeq, cseq);
    }
    request.headers = headers;
    request.body = Bytes::new();
    if let Ok(uri) = Uri::parse_str(&request.uri.to_string()) {
        request.uri = uri;
    }
}

#[cfg(test)]
mod tests {
    use switchboard_sip::parse_datagram;

    use super::*;
    use crate::tenant::{Directory, demo_tenant};

    const SBC: &str = "127.0.0.2:5070";
    const OFFER: &str = "v=0\r\no=sbc 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    fn tenant(options: &[(&str, &str)]) -> Arc<Tenant> {
        let mut c = demo_tenant();
        for (k, v) in options {
            c.dns[0].options.insert((*k).into(), (*v).into());
        }
        Directory::new(&[c])
            .expect("demo")
            .by_name("demo")
            .expect("demo")
            .clone()
    }

    fn message(text: &str) -> Message {
        parse_datagram(Bytes::from(
            text.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
        ))
        .expect("parses")
    }

    fn sbc_invite(number: &str) -> Request {
        sbc_invite_with(number, "")
    }

    /// The SBC's INVITE with `extra` header lines.
    fn sbc_invite_with(number: &str, extra: &str) -> Request {
        let text = format!(
            "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {SBC};branch=z9hG4bKa1\r\n{extra}\
             Max-Forwards: 70\r\nFrom: <sip:+15551234@127.0.0.2>;tag=sbc\r\nTo: <sip:{number}@127.0.0.1>\r\n\
             Call-ID: a-leg\r\nCSeq: 1 INVITE\r\nContact: <sip:sbc@{SBC}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
            OFFER.len()
        );
        match message(&text) {
            Message::Request(r) => r,
            other => panic!("{other:?}"),
        }
    }

    struct Run {
        call: Call,
        now: Instant,
        sent: Vec<(SocketAddr, Message)>,
        events: Vec<CallEvent>,
    }

    impl Run {
        fn start(tenant: Arc<Tenant>, dn_calls: DnCalls, number: &str) -> Self {
            Self::start_with(tenant, dn_calls, sbc_invite(number))
        }

        fn start_with(tenant: Arc<Tenant>, dn_calls: DnCalls, request: Request) -> Self {
            Self::configured(tenant, dn_calls, request, ClusterConfig::default())
        }

        fn configured(
            tenant: Arc<Tenant>,
            dn_calls: DnCalls,
            request: Request,
            config: ClusterConfig,
        ) -> Self {
            let now = Instant::now();
            let call = Call::start(
                Arc::from("call-1"),
                NewDialog {
                    tenant,
                    origin: Origin::Trunk("carrier".into()),
                    request,
                    source: SBC.parse().expect("addr"),
                    transport: Transport::Udp,
                    proxy: None,
                },
                Local {
                    udp: "127.0.0.1:5060".parse().expect("addr"),
                    tcp: "127.0.0.1:5060".parse().expect("addr"),
                    node: "sbtest".into(),
                    key: 1,
                },
                Arc::new(config),
                dn_calls,
                now,
            );
            let mut run = Self {
                call,
                now,
                sent: Vec::new(),
                events: Vec::new(),
            };
            run.drain();
            run
        }

        fn drain(&mut self) {
            while let Some(out) = self.call.poll_output() {
                match out {
                    Output::Send { dest, bytes, .. } => self
                        .sent
                        .push((dest, parse_datagram(bytes).expect("we send valid SIP"))),
                    Output::Event(e) => self.events.push(*e),
                    Output::Locate { .. } | Output::Replace { .. } | Output::Routing(_) => {}
                }
            }
        }

        fn located(&mut self, phones: &[&str]) {
            let bindings = phones
                .iter()
                .map(|addr| Binding {
                    aor: "sip:1001@demo.local".into(),
                    dn: "1001".into(),
                    contact: format!("sip:1001@{addr}"),
                    params: String::new(),
                    key: String::new(),
                    q: None,
                    expires_at_ms: u64::MAX,
                    call_id: "reg".into(),
                    cseq: 1,
                    source: addr.parse().expect("addr"),
                    transport: "udp".into(),
                    user_agent: None,
                })
                .collect();
            self.call.located(Ok(bindings), self.now);
            self.drain();
        }

        /// The requests of `method` sent to `dest` so far.
        fn take(&mut self, dest: &str, method: Method) -> Vec<Request> {
            let dest: SocketAddr = dest.parse().expect("addr");
            self.sent
                .iter()
                .filter_map(|(d, m)| match m {
                    Message::Request(r) if *d == dest && r.method == method => Some(r.clone()),
                    _ => None,
                })
                .collect()
        }

        /// Final statuses sent to the SBC.
        fn finals_to_sbc(&self) -> Vec<u16> {
            let sbc: SocketAddr = SBC.parse().expect("addr");
            self.sent
                .iter()
                .filter_map(|(d, m)| match m {
                    Message::Response(r) if *d == sbc && r.status >= 200 => Some(r.status),
                    _ => None,
                })
                .collect()
        }

        fn respond(&mut self, request: &Request, status: u16, tag: &str) {
            let mut r = Response::to_request(&request.headers, status).with_to_tag(tag);
            r = r.with_header(HeaderName::Contact, "<sip:1001@192.0.2.9>");
            let from = self.call.b[0].peer;
            self.call
                .receive(Message::Response(r), from, Transport::Udp, self.now);
            self.drain();
        }

        fn kinds(&self) -> Vec<&'static str> {
            self.events.iter().map(|e| e.kind.name()).collect()
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.call.handle_timeout(self.now);
            self.drain();
        }
    }

    #[test]
    fn a_busy_phone_makes_the_caller_hear_busy() {
        let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
        run.located(&["192.0.2.9:5062"]);
        let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        assert_eq!(
            invite.body,
            Bytes::from_static(OFFER.as_bytes()),
            "the offer is relayed"
        );
        run.respond(&invite, 486, "ph");
        assert_eq!(run.finals_to_sbc(), [486]);
        assert_eq!(run.kinds(), ["DestinationBusy", "Released"]);
        assert_eq!(run.events[1].call.cause, "busy");
    }

    #[test]
    fn every_phone_of_the_dn_rings_and_the_first_answer_wins() {
        let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
        run.located(&["192.0.2.9:5062", "192.0.2.10:5062"]);
        let first = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        let second = run.take("192.0.2.10:5062", Method::Invite).remove(0);
        assert_ne!(first.headers.call_id(), second.headers.call_id());
        // The second phone rings; the first answers.
        let r = Response::to_request(&second.headers, 180)
            .with_to_tag("two")
            .with_header(HeaderName::Contact, "<sip:1001@192.0.2.10:5062>");
        run.call.receive(
            Message::Response(r),
            "192.0.2.10:5062".parse().expect("addr"),
            Transport::Udp,
            run.now,
        );
        run.drain();
        run.respond(&first, 200, "one");
        assert_eq!(run.finals_to_sbc(), [200]);
        assert_eq!(
            run.take("192.0.2.10:5062", Method::Cancel).len(),
            1,
            "the other phone is CANCELed"
        );
        assert_eq!(run.kinds(), ["Ringing", "Established"]);
    }

    #[test]
    fn no_answer_within_the_dns_timeout_gives_480() {
        let mut run = Run::start(
            tenant(&[("no-answer-timeout", "5")]),
            DnCalls::default(),
            "1001",
        );
        run.located(&["192.0.2.9:5062"]);
        let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        run.respond(&invite, 180, "ph");
        run.advance(Duration::from_secs(4));
        assert!(run.finals_to_sbc().is_empty());
        run.advance(Duration::from_secs(2));
        assert_eq!(run.finals_to_sbc(), [480]);
        assert_eq!(run.take("192.0.2.9:5062", Method::Cancel).len(), 1);
        assert_eq!(run.kinds(), ["Ringing", "Released"]);
        assert_eq!(run.events[1].call.cause, "no-answer");
    }

    #[test]
    fn a_dn_at_its_max_calls_is_busy_and_the_place_comes_back() {
        let dn_calls = DnCalls::default();
        let tenant = tenant(&[("max-calls", "1")]);
        let mut first = Run::start(tenant.clone(), dn_calls.clone(), "1001");
        first.located(&["192.0.2.9:5062"]);
        assert_eq!(dn_calls.count("demo", "1001"), 1);
        let second = Run::start(tenant.clone(), dn_calls.clone(), "1001");
        assert_eq!(second.finals_to_sbc(), [486]);
        assert_eq!(second.kinds(), ["DestinationBusy", "Released"]);
        assert_eq!(second.events[0].call.cause, "max-calls");
        // The first call ends: the DN takes calls again.
        let invite = first.take("192.0.2.9:5062", Method::Invite).remove(0);
        first.respond(&invite, 603, "ph");
        assert_eq!(first.finals_to_sbc(), [603]);
        assert_eq!(dn_calls.count("demo", "1001"), 0);
        let third = Run::start(tenant, dn_calls.clone(), "1001");
        assert!(third.finals_to_sbc().is_empty(), "rings");
    }

    /// A call from an SBC that sends `extra` headers, answered by one phone with `answer`
    /// headers and ACKed; probes off, so that only session timers act.
    fn timed_call(extra: &str, answer: &[(HeaderName, &str)]) -> Run {
        let config = ClusterConfig {
            probe_interval: Duration::ZERO,
            ..ClusterConfig::default()
        };
        let invite = sbc_invite_with("1001", extra);
        let mut run = Run::configured(tenant(&[]), DnCalls::default(), invite, config);
        run.located(&["192.0.2.9:5062"]);
        let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        let mut ok = Response::to_request(&invite.headers, 200)
            .with_to_tag("ph")
            .with_header(HeaderName::Contact, "<sip:1001@192.0.2.9:5062>");
        for (name, value) in answer {
            ok = ok.with_header(name.clone(), *value);
        }
        ok = with_body(ok, &invite.headers, invite.body.clone());
        run.phone_sends(Message::Response(ok));
        run.sbc_request("ACK", 1, "");
        run
    }

    impl Run {
        fn phone_sends(&mut self, m: Message) {
            let phone = self.call.b[0].peer;
            self.call.receive(m, phone, Transport::Udp, self.now);
            self.drain();
        }

        /// The last final response sent to the SBC.
        fn last_final_to_sbc(&self) -> Response {
            let sbc: SocketAddr = SBC.parse().expect("addr");
            self.sent
                .iter()
                .rev()
                .find_map(|(d, m)| match m {
                    Message::Response(r) if *d == sbc && r.status >= 200 => Some(r.clone()),
                    _ => None,
                })
                .expect("a final response to the SBC")
        }

        /// A request from the SBC within its dialog, with `extra` header lines.
        fn sbc_request(&mut self, method: &str, seq: u32, extra: &str) {
            let text = format!(
                "{method} sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {SBC};branch=z9hG4bK{method}{seq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:+15551234@127.0.0.2>;tag=sbc\r\n\
                 To: <sip:1001@127.0.0.1>;tag={}\r\nCall-ID: a-leg\r\nCSeq: {seq} {method}\r\n\
                 {extra}Content-Length: 0\r\n\r\n",
                self.call.local.udp, self.call.a.tag
            );
            self.call.receive(
                message(&text),
                SBC.parse().expect("addr"),
                Transport::Udp,
                self.now,
            );
            self.drain();
        }
    }

    /// The 200 a party gives a request of the call's, with `body`.
    fn ok_with(request: &Request, tag: &str, body: &str) -> Response {
        let mut ok = Response::to_request(&request.headers, 200).with_to_tag(tag);
        if !body.is_empty() {
            ok = with_body(ok, &request.headers, Bytes::from(body.to_owned()));
        }
        ok
    }

    #[test]
    fn a_desktop_holds_and_retrieves_an_answered_call_by_reoffering_both_legs() {
        let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
        run.located(&["192.0.2.9:5062"]);
        assert!(
            matches!(
                run.call.control("1001", Control::Hold, run.now),
                Err(ControlError::NotAllowed(_))
            ),
            "not while it rings"
        );
        assert_eq!(
            run.call.view().capabilities,
            [
                "answer",
                "release",
                "attach-user-data",
                "update-user-data",
                "delete-user-data"
            ]
        );
        let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        let answer = OFFER.replace("sbc", "phone").replace("4000", "5000");
        run.phone_sends(Message::Response(
            ok_with(&invite, "ph", &answer)
                .with_header(HeaderName::Contact, "<sip:1001@192.0.2.9:5062>"),
        ));
        run.sbc_request("ACK", 1, "");
        assert!(matches!(
            run.call.control("1002", Control::View, run.now),
            Err(ControlError::NotFound(_))
        ));

        let view = run
            .call
            .control("1001", Control::Hold, run.now)
            .expect("hold");
        run.drain();
        assert_eq!(view.state, "Established", "held once both legs agree");
        let to_phone = run.take("192.0.2.9:5062", Method::Invite).remove(1);
        let to_sbc = run.take(SBC, Method::Invite).remove(0);
        for (reinvite, was) in [(&to_phone, OFFER), (&to_sbc, answer.as_str())] {
            let body = std::str::from_utf8(&reinvite.body).expect("sdp");
            assert!(body.contains("a=inactive"), "{body}");
            assert!(
                body.contains(" 1 2 IN IP4"),
                "a newer version of {was}: {body}"
            );
        }
        assert!(
            matches!(
                run.call.control("1001", Control::Hold, run.now),
                Err(ControlError::NotAllowed(_))
            ),
            "one offer at a time"
        );
        run.phone_sends(Message::Response(ok_with(&to_phone, "ph", &answer)));
        run.call.receive(
            Message::Response(ok_with(&to_sbc, "sbc", OFFER)),
            SBC.parse().expect("addr"),
            Transport::Udp,
            run.now,
        );
        run.drain();
        assert_eq!(run.kinds().last(), Some(&"Held"));
        assert_eq!(run.take(SBC, Method::Ack).len(), 1, "each 2xx is ACKed");
        assert_eq!(run.call.view().state, "Held");
        assert!(matches!(
            run.call
                .control("1001", Control::SendDtmf("1".into()), run.now),
            Err(ControlError::NotAllowed(_))
        ));

        run.call
            .control("1001", Control::Retrieve, run.now)
            .expect("retrieve");
        run.drain();
        let to_phone = run.take("192.0.2.9:5062", Method::Invite).remove(2);
        let to_sbc = run.take(SBC, Method::Invite).remove(1);
        assert!(
            std::str::from_utf8(&to_phone.body)
                .expect("sdp")
                .contains("a=sendrecv")
        );
        run.phone_sends(Message::Response(ok_with(&to_phone, "ph", &answer)));
        run.call.receive(
            Message::Response(ok_with(&to_sbc, "sbc", OFFER)),
            SBC.parse().expect("addr"),
            Transport::Udp,
            run.now,
        );
        run.drain();
        assert_eq!(run.kinds().last(), Some(&"Retrieved"));

        // DTMF goes to the party at the other end from the agent, one INFO per digit.
        run.call
            .control("1001", Control::SendDtmf("4#".into()), run.now)
            .expect("dtmf");
        run.drain();
        let infos = run.take(SBC, Method::Info);
        assert_eq!(infos.len(), 2);
        assert_eq!(
            infos[1].body,
            Bytes::from_static(b"Signal=#\r\nDuration=160\r\n")
        );
        assert!(matches!(
            run.call
                .control("1001", Control::SendDtmf("12x".into()), run.now),
            Err(ControlError::Invalid(_))
        ));

        // User data follows the call into its events.
        run.call
            .control(
                "1001",
                Control::AttachUserData(vec![("lang".into(), "fr".into())]),
                run.now,
            )
            .expect("attach");
        run.drain();
        let last = run.events.last().expect("an event");
        assert_eq!(last.kind.name(), "AttachedDataChanged");
        assert_eq!(
            last.call.user_data.get("lang").map(String::as_str),
            Some("fr")
        );
        run.call
            .control("1001", Control::Release, run.now)
            .expect("release");
        run.drain();
        assert_eq!(run.kinds().last(), Some(&"Released"));
        assert_eq!(run.events.last().expect("event").call.cause, "released");
        assert_eq!(run.events.last().expect("event").call.user_data.len(), 1);
    }

    #[test]
    fn a_caller_that_stops_refreshing_its_session_has_the_call_ended() {
        let mut run = timed_call(
            "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
            &[],
        );
        let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        assert_eq!(
            invite
                .headers
                .get(&HeaderName::SessionExpires)
                .map(|v| v.to_string()),
            Some("120".into()),
            "the phone is offered the caller's interval"
        );
        let ok = run.last_final_to_sbc();
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.headers
                .get(&HeaderName::SessionExpires)
                .map(|v| v.to_string()),
            Some("120;refresher=uac".into())
        );
        assert!(session_timer::supports_timer(&ok.headers));
        assert!(
            ok.headers
                .values(&HeaderName::Require)
                .any(|t| t == "timer")
        );
        // A refresh by UPDATE at 50 s is answered here, with the interval, and not passed on.
        run.advance(Duration::from_secs(50));
        run.sbc_request("UPDATE", 2, "");
        let refreshed = run.last_final_to_sbc();
        assert_eq!(refreshed.status, 200);
        assert_eq!(
            refreshed
                .headers
                .get(&HeaderName::SessionExpires)
                .map(|v| v.to_string()),
            Some("120;refresher=uac".into())
        );
        assert!(run.take("192.0.2.9:5062", Method::Update).is_empty());
        // 120 s less 32 after the refresh the session has expired: not before.
        run.advance(Duration::from_secs(87));
        assert!(
            run.take("192.0.2.9:5062", Method::Bye).is_empty(),
            "ended early"
        );
        run.advance(Duration::from_secs(2));
        assert_eq!(run.take("192.0.2.9:5062", Method::Bye).len(), 1);
        assert_eq!(run.take(SBC, Method::Bye).len(), 1);
        let last = run.events.last().expect("events");
        assert_eq!(last.kind.name(), "Released");
        assert_eq!(last.call.cause, "session-expired");
    }

    #[test]
    fn a_session_interval_under_the_minimum_gets_422_from_a_caller_that_can_do_better() {
        let invite = sbc_invite_with("1001", "Supported: timer\r\nSession-Expires: 30\r\n");
        let run = Run::start_with(tenant(&[]), DnCalls::default(), invite);
        let r = run.last_final_to_sbc();
        assert_eq!(r.status, 422);
        assert_eq!(
            r.headers.get(&HeaderName::MinSe).map(|v| v.to_string()),
            Some("90".into())
        );
        // A caller that does not support timers (a proxy put the header in) gets the minimum.
        let invite = sbc_invite_with("1001", "Session-Expires: 30\r\n");
        let mut run = Run::start_with(tenant(&[]), DnCalls::default(), invite);
        run.located(&["192.0.2.9:5062"]);
        let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        assert_eq!(
            invite
                .headers
                .get(&HeaderName::SessionExpires)
                .map(|v| v.to_string()),
            Some("90".into())
        );
    }

    #[test]
    fn a_callee_that_makes_the_core_refresh_gets_updates_and_one_left_unanswered_ends_the_call() {
        let mut run = timed_call(
            "",
            &[
                (HeaderName::SessionExpires, "100;refresher=uac"),
                (HeaderName::Allow, "INVITE, ACK, BYE, CANCEL, UPDATE"),
            ],
        );
        run.advance(Duration::from_secs(49));
        assert!(run.take("192.0.2.9:5062", Method::Update).is_empty());
        run.advance(Duration::from_secs(2));
        let update = run.take("192.0.2.9:5062", Method::Update);
        assert_eq!(update.len(), 1, "refreshed half-way");
        assert_eq!(
            update[0]
                .headers
                .get(&HeaderName::SessionExpires)
                .map(|v| v.to_string()),
            Some("100;refresher=uac".into())
        );
        let ok = Response::to_request(&update[0].headers, 200)
            .with_header(HeaderName::SessionExpires, "100;refresher=uac");
        run.phone_sends(Message::Response(ok));
        // The next refresh is never answered: the call ends on both legs.
        run.sent.clear();
        run.advance(Duration::from_secs(51));
        assert_eq!(run.take("192.0.2.9:5062", Method::Update).len(), 1);
        for _ in 0..40 {
            run.advance(Duration::from_secs(1));
        }
        assert!(
            !run.take(SBC, Method::Bye).is_empty(),
            "the caller is hung up"
        );
        let last = run.events.last().expect("events");
        assert_eq!(
            (last.kind.name(), last.call.cause.as_str()),
            ("Released", "unreachable")
        );
    }

    /// A call from an SBC that requires 100rel, to one phone that sends 183 with early media.
    fn reliable_call() -> (Run, Request) {
        let invite = sbc_invite_with("1001", "Require: 100rel\r\n");
        let ring = tenant(&[("no-answer-timeout", "60")]);
        let mut run = Run::start_with(ring, DnCalls::default(), invite);
        run.located(&["192.0.2.9:5062"]);
        let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
        let early = with_body(
            Response::to_request(&invite.headers, 183)
                .with_to_tag("ph")
                .with_header(HeaderName::Contact, "<sip:1001@192.0.2.9:5062>"),
            &invite.headers,
            invite.body.clone(),
        );
        run.phone_sends(Message::Response(early));
        (run, invite)
    }

    impl Run {
        fn to_sbc(&self, status: u16) -> Vec<Response> {
            let sbc: SocketAddr = SBC.parse().expect("addr");
            self.sent
                .iter()
                .filter_map(|(d, m)| match m {
                    Message::Response(r) if *d == sbc && r.status == status => Some(r.clone()),
                    _ => None,
                })
                .collect()
        }

        fn prack(&mut self, rseq: u32) {
            self.sbc_request("PRACK", rseq + 1, &format!("RAck: {rseq} 1 INVITE\r\n"));
        }
    }

    #[test]
    fn early_media_to_a_caller_requiring_100rel_is_reliable_and_the_answer_waits_for_prack() {
        let (mut run, invite) = reliable_call();
        let early = run.to_sbc(183);
        assert_eq!(early.len(), 1);
        assert_eq!(
            early[0]
                .headers
                .get(&HeaderName::RSeq)
                .map(|v| v.to_string()),
            Some("1".into())
        );
        assert!(
            early[0]
                .headers
                .values(&HeaderName::Require)
                .any(|t| t == "100rel")
        );
        assert!(!early[0].body.is_empty(), "early media");
        // Not PRACKed: it goes again after T1.
        run.advance(Duration::from_millis(600));
        assert_eq!(run.to_sbc(183).len(), 2);
        // The phone answers: the caller hears nothing of it before its PRACK.
        run.respond(&invite, 200, "ph");
        assert!(run.to_sbc(200).is_empty(), "the answer waits for the PRACK");
        run.prack(1);
        let oks = run.to_sbc(200);
        assert_eq!(oks.len(), 2, "the PRACK's 200, then the INVITE's");
        assert_eq!(
            oks[1].headers.cseq().and_then(Result::ok).map(|c| c.method),
            Some(Method::Invite)
        );
        assert_eq!(run.kinds(), ["Ringing", "Established"]);
        // A PRACK for nothing sent is 481.
        run.prack(7);
        assert_eq!(run.to_sbc(481).len(), 1);
    }

    #[test]
    fn a_caller_that_never_pracks_gets_500_and_the_phone_stops_ringing() {
        let (mut run, _) = reliable_call();
        for _ in 0..40 {
            run.advance(Duration::from_secs(1));
        }
        assert_eq!(run.finals_to_sbc().first(), Some(&500));
        assert!(!run.take("192.0.2.9:5062", Method::Cancel).is_empty());
        let last = run.events.last().expect("events");
        assert_eq!(last.call.cause, "no-prack");
    }
}
