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
//!
//! The call holds its state in typed parts, each in a file of its own: its [`legs`], their
//! transactions and the 2xx awaiting an ACK ([`txns`]), its [`timers`], and a [`Mode`] that
//! says what drives its B legs, whose rules are in [`direct`], [`originate`], [`routing`] and
//! [`conference`]. Requests within the legs' dialogs are in [`dialog`], transfers in
//! [`transfer`], what a desktop may ask in [`control`], and events and the snapshot in
//! [`report`].

mod conference;
mod control;
mod dialog;
mod direct;
mod legs;
mod monitor;
mod msml;
mod originate;
mod recording;
pub use recording::failed as recordings_failed;
mod report;
pub mod restore;
mod routing;
pub mod snapshot;
#[cfg(test)]
pub(super) mod tests;
mod timers;
mod transfer;
mod txns;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use switchboard_sip::dialog::DialogState;
use switchboard_sip::header::Via;
use switchboard_sip::invite::prack::{self, Reliability};
use switchboard_sip::invite::session_timer::SessionTimer;
use switchboard_sip::sdp::Sdp;
use switchboard_sip::transaction::TransactionKey;
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Headers, Host, Message, Method, Request, Response, SipUri, Uri};

pub use routing::ToOrs;
pub use transfer::Handover;

use super::{ClusterConfig, DnCalls};
use crate::messages::call_state::{CallEvent, CallEventKind};
use crate::messages::registrar::Binding;
use crate::messages::sip_cluster::{NewDialog, Origin};
use crate::tenant::Tenant;
use conference::Conference;
use legs::{Leg, LegId, Legs, Progress};
use originate::Originate;
use routing::Waiting;
use timers::{Timer, TimerTable};
use transfer::Thread;
use txns::Txns;

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

/// Who a call is and what it works with, as its node gives them.
struct Setting {
    id: Arc<str>,
    tenant: Arc<Tenant>,
    local: Local,
    config: Arc<ClusterConfig>,
    dn_calls: DnCalls,
}

/// Who the call is on the wire.
#[derive(Debug, Clone)]
pub struct Local {
    pub addrs: Arc<Addrs>,
    /// The node's Call-ID prefix.
    pub node: Arc<str>,
    /// The call's number on this node.
    pub key: u64,
}

/// Where the node takes each transport.
#[derive(Debug, Clone)]
pub struct Addrs {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub wss: Option<SocketAddr>,
}

impl Addrs {
    pub fn of(endpoint: &switchboard_sip::transport::Endpoint) -> Self {
        Self {
            udp: endpoint.udp_addr(),
            tcp: endpoint.tcp_addr(),
            tls: endpoint.tls_addr(),
            ws: endpoint.ws_addr(),
            wss: endpoint.wss_addr(),
        }
    }
}

impl Local {
    fn addr(&self, transport: Transport) -> SocketAddr {
        let a = &self.addrs;
        match transport {
            Transport::Udp => a.udp,
            Transport::Tcp => a.tcp,
            Transport::Tls => a.tls.unwrap_or(a.tcp),
            Transport::Ws => a.ws.unwrap_or(a.tcp),
            Transport::Wss => a.wss.unwrap_or(a.tcp),
        }
    }

    /// The Contact of the call's legs: requests within its dialogs come back to the edge.
    fn contact(&self, transport: Transport) -> String {
        let addr = self.addr(transport);
        match transport {
            Transport::Udp => format!("<sip:{}>", addr),
            other => format!("<sip:{addr};transport={other}>"),
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

    /// A Call-ID of this node for the call's `n`th leg it places: `<node>-<key>-<n>`, by
    /// which the edge finds the call.
    fn call_id(&self, n: u32) -> ByteString {
        crate::messages::sip_cluster::call_id(&self.node, self.key, n)
    }
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

/// What drives the call's B legs. A mode changes how every event of the call is handled, so
/// each is a variant with its rules in a file of its own rather than a field checked
/// everywhere.
#[derive(Debug)]
enum Mode {
    /// Put through as the dial plan says (an extension's phones, a trunk, an announcement),
    /// or answered: leg A and the winner talk, requests pass from one to the other
    /// ([`direct`]).
    Direct,
    /// The core places the parties itself, third-party call control (RFC 3725): the agent's
    /// phone first for a desktop's call, or the party of an answered call put through anew
    /// (single-step transfer); the callee is offered the session kept here and its answer is
    /// offered to leg A ([`originate`]). Boxed: rare.
    Originating(Box<Originate>),
    /// At a routing point: the strategy's treatments and the agent a queue reserved take
    /// their turns as the caller's other party ([`routing`]). Boxed: most calls never are.
    Routing(Box<Waiting>),
    /// Every party talks through a media server's conference ([`conference`]). Boxed: rare.
    Conference(Box<Conference>),
}

/// Whom the call rings: the destination party its events name.
#[derive(Debug, Default)]
struct Callee {
    /// The DN, number, routing point or URI rung.
    name: Option<String>,
    /// Whether it is one of the tenant's DNs (whose agent the call concerns).
    dn: bool,
    /// Whether that DN holds a place among its calls in progress (its `max-calls`).
    counted: bool,
    /// Whether the call goes out through a trunk, whose own failures the caller is told.
    trunk: bool,
}

impl Callee {
    /// Whether the call rings (or has reached) the tenant's DN `dn`.
    fn is_dn(&self, dn: &str) -> bool {
        self.dn && self.name.as_deref() == Some(dn)
    }
}

/// The call.
pub struct Call {
    /// Shared with the node's table of calls.
    id: Arc<str>,
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
    callee: Callee,
    phase: Phase,
    mode: Mode,
    legs: Legs,
    txns: Txns,
    timers: TimerTable,
    /// The call thread it belongs to, and its consultation relatives.
    thread: Thread,
    held: bool,
    /// A hold (true) or resume (false) a desktop asked, with the legs still to answer it.
    reoffer: Option<(bool, u8)>,
    /// Offers to make once the leg's offer in progress is answered (one INVITE at a time in
    /// a dialog): a party taken off a conference while its leg into it was being set up.
    deferred: Vec<(LegId, Vec<u8>)>,
    /// A supervisor's monitoring asked before the call was answered (the agent's next
    /// calls are monitored): started once it is, and its answer is through.
    pending_monitor: Option<Box<(String, crate::messages::sip_cluster::MonitorMode)>>,
    /// A recording asked before the call was answered (the DN's configuration): started
    /// once it is.
    pending_record: bool,
    /// The virtual queue the call waited in last, kept once it is routed: whether it may be
    /// monitored is the queue's to say.
    queue: Option<Box<str>>,
    /// Key-value data attached to the call.
    user_data: BTreeMap<String, String>,
    /// Whether Ringing has been reported.
    rung: bool,
    /// How many Call-IDs the call has made for the legs it places.
    next_call_id: u32,
    /// The SIP Call-IDs of its legs by which another node finds the call (see
    /// [`snapshot`]), once a snapshot named them.
    indexed: Vec<ByteString>,
    /// Reliable provisional responses, when the caller requires them (boxed: most do not).
    reliability: Option<Box<Reliability<(usize, Response)>>>,
    /// The proxy the call came through, if this node runs behind proxies: callees are
    /// reached through it, on the flows it holds.
    outbound: Option<SocketAddr>,
    out: VecDeque<Output>,
}

impl Call {
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
            tenant,
            origin,
            local,
            config,
            dn_calls,
            started: now,
            ani,
            dnis,
            caller_uri,
            callee: Callee::default(),
            phase: Phase::Routing,
            mode: Mode::Direct,
            legs: Legs::new(a),
            txns: Txns::default(),
            timers: TimerTable::default(),
            thread: Thread::default(),
            held: false,
            reoffer: None,
            deferred: Vec::new(),
            pending_monitor: None,
            pending_record: false,
            queue: None,
            user_data: BTreeMap::new(),
            rung: false,
            next_call_id: 0,
            indexed: Vec::new(),
            reliability: None,
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
            tracing::debug!(tenant = %call.tenant.name, call_id = %call.id, %dn, "dialing");
            call.event(CallEventKind::Dialing, "", 0);
        }
        if let Some(problem) = sdp_problem(&request) {
            call.fail(488, "bad-sdp", Some(problem), now);
            return call;
        }
        let (interval, min_se) = (call.config.session_expires, call.config.min_se);
        match SessionTimer::for_caller(&request.headers, interval, min_se) {
            Ok(timer) => call.legs.a.timer = timer,
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

    /// The call's id, as events and desktops name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The call thread it belongs to.
    pub fn thread_id(&self) -> &str {
        self.thread.joined.as_deref().unwrap_or(&self.id)
    }

    pub fn tenant_name(&self) -> &str {
        &self.tenant.name
    }

    /// Whether the call is over and every transaction of it finished.
    /// The call ended (released on every leg); its transactions may still run.
    pub fn has_ended(&self) -> bool {
        self.phase == Phase::Ending
    }

    pub fn is_over(&self) -> bool {
        self.phase == Phase::Ending && self.txns.is_empty()
    }

    /// Gives back the DN's place among its calls in progress (also when the call leaves its
    /// shard).
    pub fn release_dn(&mut self) {
        if self.callee.counted
            && let Some(dn) = &self.callee.name
        {
            self.dn_calls.release(&self.tenant.name, dn);
            self.callee.counted = false;
        }
    }

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
        self.when_answered(now);
    }

    /// Starts what waited for the call to be answered: its recording, its monitoring.
    fn when_answered(&mut self, now: Instant) {
        if self.pending_record {
            self.record_when_answered(now);
        }
        if self.pending_monitor.is_some() {
            self.monitor_when_answered(now);
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
        if let Some(s) = self.txns.servers.iter_mut().find(|s| s.key == key) {
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
        let Some(leg) = self.legs.of_request(&request) else {
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

    fn response(&mut self, response: Response, now: Instant) {
        let Some(Ok(via)) = response.headers.top_via() else {
            return;
        };
        let (Some(branch), Some(Ok(cseq))) = (via.branch(), response.headers.cseq()) else {
            return;
        };
        let Some(i) = self
            .txns
            .clients
            .iter()
            .position(|c| c.branch == branch && c.method == cseq.method)
        else {
            // A 2xx retransmission after its INVITE transaction ended: ACK it again.
            self.stray_2xx(&response);
            return;
        };
        self.txns.clients[i].txn.receive(response, now);
        self.flush_client(i, now);
    }

    /// Ends an unanswered call: the caller gets `status`.
    /// The node stops and nobody carries the call on: it ends on every leg (a caller not
    /// answered yet gets 503, answered legs a BYE, legs still ringing a CANCEL, the media
    /// server's included), with its closing event, cause `shutdown`.
    pub fn shut_down(&mut self, now: Instant) {
        if self.phase == Phase::Ending {
            return;
        }
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
            "the node stops: call ended");
        self.fail(503, "shutdown", Some("the node is stopping".into()), now);
    }

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
        tracing::debug!(tenant = %self.tenant.name, call_id = %self.id, kind = kind.name(), cause,
            "call over");
        self.phase = Phase::Ending;
        self.timers.stop(Timer::NoAnswer);
        self.timers.stop(Timer::Probe);
        // A callee whose answer waited for the caller's PRACK is ACKed and hung up below.
        if let Some((i, _)) = self.reliability.as_mut().and_then(|r| r.finish()) {
            self.legs.b[i].progress = Progress::Answered;
        }
        self.txns.awaiting_ack.clear();
        // Requests still waiting for an answer get one (a re-INVITE racing a BYE: 487).
        let pending: Vec<u32> = self
            .txns
            .servers
            .iter()
            .filter(|s| !s.answered)
            .map(|s| s.id)
            .collect();
        for id in pending {
            let status = if self
                .txns
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
                .legs
                .a
                .dialog
                .as_ref()
                .is_some_and(|d| d.state == DialogState::Confirmed)
        {
            self.bye(LegId::A, now);
        } else if from != Some(LegId::A)
            && self.originating().is_some()
            && self.legs.a.progress.ringing()
            && self.legs.a.invite.is_some()
        {
            // The agent's phone still rings for a call placed for its desktop.
            self.send_cancel(LegId::A, now);
        }
        for i in 0..self.legs.b.len() {
            if from == Some(LegId::B(i)) {
                self.legs.b[i].progress = Progress::Over;
                continue;
            }
            match self.legs.b[i].progress {
                Progress::Answered => {
                    // Its 2xx may still wait for the caller's ACK: a UAC ACKs before it
                    // hangs up (RFC 3261 13.2.2.4).
                    if self.legs.b[i].ack.is_none() {
                        let seq = self.legs.b[i].invite_seq;
                        self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
                    }
                    self.bye(LegId::B(i), now)
                }
                Progress::Calling | Progress::Early => self.cancel_leg(i, now),
                _ => {}
            }
        }
        self.release_dn();
        if self.recording().is_some() {
            // The media server closes the file as its legs are hung up.
            self.event(CallEventKind::RecordingStopped, "call-ended", 0);
        }
        self.event(kind, cause, status);
        if self.waiting().is_some() {
            self.leave_routing_point();
        }
    }

    /// The routing point the call waits at, if it does.
    fn waiting(&self) -> Option<&Waiting> {
        match &self.mode {
            Mode::Routing(w) => Some(w),
            _ => None,
        }
    }

    fn waiting_mut(&mut self) -> Option<&mut Waiting> {
        match &mut self.mode {
            Mode::Routing(w) => Some(w),
            _ => None,
        }
    }

    /// What a call whose parties the core places still needs, while it does.
    fn originating(&self) -> Option<&Originate> {
        match &self.mode {
            Mode::Originating(o) => Some(o),
            _ => None,
        }
    }

    fn originating_mut(&mut self) -> Option<&mut Originate> {
        match &mut self.mode {
            Mode::Originating(o) => Some(o),
            _ => None,
        }
    }

    /// The conference the parties talk through, once the call is one.
    fn conference(&self) -> Option<&Conference> {
        match &self.mode {
            Mode::Conference(c) => Some(c),
            _ => None,
        }
    }

    fn conference_mut(&mut self) -> Option<&mut Conference> {
        match &mut self.mode {
            Mode::Conference(c) => Some(c),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.id)
            .finish_non_exhaustive()
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
