//! The SIP edge: the node's UDP and TCP sockets, the server transactions of requests that reach
//! it, the checks of [`edge`], the hand-over of REGISTER to the registrar, the admission of new
//! calls ([`admit`]) and the hand-over of every message of a call to its call.
//!
//! The actor never waits for another: a call starts under the cluster as its INVITE is
//! admitted, through the starter the cluster gave the edge, so that none of its later messages
//! (a retransmitted INVITE, a CANCEL) can arrive before the edge knows where they go. A
//! REGISTER goes straight to its registrar shard (through the [`Router`]) with a reply that
//! casts the answer back to the proxy, and the transaction sends it; a registrar that does not
//! answer in time gets the phone a 503. Transaction timers and those deadlines are driven by a
//! tick.
//!
//! In one process the cluster node is this process: an admitted INVITE is handed to the
//! cluster, which starts its call (the hop skips the socket); the call owns its transactions
//! and sends through the edge's sockets, with the edge's address in its Via and Contact so that
//! every later message of the call comes back here and is handed to it by Call-ID
//! ([`routes`]). A proxy given remote cluster nodes forwards calls to them instead ([`relay`],
//! [`forward`]), and a node behind proxies takes the calls they admitted and reaches callees
//! through them.

pub mod admit;
mod answered;
pub mod edge;
pub mod forward;
mod relay;
pub mod ring;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use switchboard_sip::auth::Role;
use switchboard_sip::auth::{NonceCounts, NonceKey};
use switchboard_sip::header::Via;
use switchboard_sip::transaction::{ServerEvent, ServerTransaction, TimerConfig, TransactionKey};
use switchboard_sip::transport::{
    Endpoint, Gate, Inbound, InboundHandler, Transport, TransportConfig,
};
use switchboard_sip::{HeaderName, Headers, Host, Message, Method, ParseError, Request, Response};

use crate::defence::{Defence, Failure};
use crate::messages::registrar::{RegisterRequest, Router};
use crate::messages::sip_cluster::{CallIn, CallStarter, Cluster, NewDialog, Origin, Refusal};
use crate::messages::sip_proxy::CallRoute;
use crate::supervisor::Supervisor;
use crate::tenant::Directory;
use answered::Answered;
use edge::{Core, Decision};
use forward::Forwarder;
use relay::Relay;
use routes::Routes;

/// How the edge is set up.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where to listen, UDP and TCP.
    pub listen: SocketAddr,
    /// Further names of this node (an advertised address, a DNS name), besides the listening
    /// address and the tenants' domains.
    pub aliases: Vec<Host>,
    pub transport: TransportConfig,
    pub timers: TimerConfig,
    /// Messages waiting for the proxy beyond which every request gets 503 at once.
    pub max_backlog: usize,
    /// Messages waiting beyond which new work (requests outside a dialog: calls,
    /// registrations) gets 503 at once, while the calls in progress still queue up to
    /// `max_backlog`.
    pub max_new_backlog: usize,
    /// Calls in progress the node runs at most; a new call past them gets 503.
    pub max_calls: usize,
    /// Calls that ended and wait out their last transactions (up to 64*T1 after their end,
    /// to answer retransmissions) the node keeps at most; a new call past them gets 503.
    pub max_ending: usize,
    /// Requests refused for overload (either limit above), for the metrics.
    pub overloaded: Arc<std::sync::atomic::AtomicU64>,
    /// How long the registrar may take before the proxy answers 503 itself.
    pub registrar_timeout: Duration,
    /// Remote cluster nodes: when given, this proxy forwards calls to them (see [`forward`])
    /// instead of running them.
    pub cluster_nodes: Vec<SocketAddr>,
    /// How often the cluster nodes are probed with OPTIONS.
    pub probe_interval: Duration,
    /// How long a node forwarded a new call has to say it has it (100 Trying or any
    /// answer) before the proxy cancels it there and tries the next node.
    pub forward_timeout: Duration,
    /// Proxies whose admission of a call (the [`forward::ADMITTED`] header) this node takes.
    pub trusted_proxies: Vec<SocketAddr>,
    /// Cleared while new calls and registrations must be refused (503): reporting's spool is
    /// past its high-water mark, and what room is left belongs to the calls in progress.
    pub accepting: Arc<AtomicBool>,
    /// Set as the node stops: new calls and the proxies' probes get 503 while its calls end.
    pub draining: Arc<AtomicBool>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            aliases: Vec::new(),
            transport: TransportConfig::default(),
            timers: TimerConfig::default(),
            max_backlog: 20_000,
            max_new_backlog: 2_000,
            max_calls: 10_000,
            max_ending: 50_000,
            overloaded: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            registrar_timeout: Duration::from_secs(8),
            cluster_nodes: Vec::new(),
            probe_interval: Duration::from_millis(300),
            forward_timeout: Duration::from_millis(500),
            trusted_proxies: Vec::new(),
            accepting: Arc::new(AtomicBool::new(true)),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }
}

pub struct ProxyArgs {
    pub config: ProxyConfig,
    pub directory: Arc<Directory>,
    /// Reaches the registrar's shards.
    pub registrar: Router,
    /// The node's calls; none for a proxy that forwards every call to remote nodes.
    pub cluster: Option<Cluster>,
    /// The prefix of the Call-IDs the node's calls make, by which their messages are found.
    pub node: Arc<str>,
    /// Signs the nonces of the 407 challenges of phones' calls.
    pub nonce_key: NonceKey,
    /// Limits and bans of sources (see [`crate::defence`]).
    pub defence: Arc<Defence>,
}

pub enum ProxyMsg {
    Inbound(Inbound),
    /// The answer to a request handed on, for its transaction.
    Reply {
        txn: TxnId,
        response: Response,
    },
    Tick,
    ConfigChanged(Arc<Directory>),
    /// The addresses the sockets are bound to (UDP, TCP).
    LocalAddrs(RpcReplyPort<(SocketAddr, SocketAddr)>),
    /// What the cluster tells of its calls.
    Route(CallRoute),
}

crate::messages::wraps!(ProxyMsg::Route(CallRoute));

#[derive(Debug)]
pub struct SipProxy;

pub struct ProxyState {
    endpoint: Endpoint,
    directory: Arc<Directory>,
    registrar: Router,
    core: Core,
    config: ProxyConfig,
    transactions: TxnMap<Entry>,
    /// What the finished transactions over UDP answer their requests' retransmissions.
    answered: Answered,
    /// Transactions by next wake-up; the number tells apart equal instants.
    timers: BTreeMap<(Instant, u64), TxnId>,
    timer_seq: u64,
    /// Requests handed on and not answered yet, by the time the proxy answers 503 itself,
    /// with their headers to answer with.
    handed_on: BTreeMap<(Instant, u64), (TxnId, Response)>,
    backlog: Arc<AtomicUsize>,
    /// Starts the calls this node runs (none for a proxy that forwards every call).
    starter: Option<Arc<dyn CallStarter>>,
    routes: Routes,
    nonce_key: NonceKey,
    /// The nonce counts of phones' calls (REGISTERs have theirs in the registrar).
    nonce_counts: NonceCounts,
    forwarder: Forwarder,
    next_probe: Instant,
    /// Requests forwarded to cluster nodes, by the branch of the proxy's client transaction
    /// (a CANCEL's with `;cancel` after it).
    relays: HashMap<String, Relay>,
    /// The relay of each INVITE server transaction, for its CANCEL.
    relay_of: TxnMap<String>,
    relay_timers: BTreeMap<(Instant, u64), String>,
    defence: Arc<Defence>,
}

/// A server transaction as the edge knows it: RFC 3261's key, and the address the request
/// came from. A branch is unique only per client, and a retransmission comes from the same
/// address, so two clients that happen to pick the same branch do not meet.
///
/// The key is hashed once, as it is made, into a 128-bit fingerprint under the process's
/// random keys: the edge's tables of transactions hash that fingerprint alone, which no source
/// can steer, and [`answered`] keeps only the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnId {
    fingerprint: u128,
    key: TransactionKey,
    source: SocketAddr,
    transport: Transport,
}

impl TxnId {
    pub(crate) fn new(key: TransactionKey, source: SocketAddr, transport: Transport) -> Self {
        static KEYS: OnceLock<(RandomState, RandomState)> = OnceLock::new();
        let (a, b) = KEYS.get_or_init(|| (RandomState::new(), RandomState::new()));
        let whole = (&key, source, transport);
        let fingerprint = (u128::from(a.hash_one(whole)) << 64) | u128::from(b.hash_one(whole));
        Self {
            fingerprint,
            key,
            source,
            transport,
        }
    }
}

impl Hash for TxnId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint as u64);
    }
}

/// Tables keyed by [`TxnId`]: its fingerprint is already a keyed hash, so it is used as it is.
type TxnMap<V> = HashMap<TxnId, V, BuildHasherDefault<Fingerprint>>;

/// The hasher of [`TxnMap`]: it passes on the fingerprint it is given.
#[derive(Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        // `TxnId` writes its fingerprint alone, through `write_u64`; any other bytes are folded
        // in, so that the hasher stays a hasher.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Entry {
    txn: ServerTransaction,
    transport: Transport,
    dest: SocketAddr,
    scheduled: Option<(Instant, u64)>,
    /// The key in `handed_on` while the request waits for another actor's answer.
    handed_on: Option<(Instant, u64)>,
    /// The request brought credentials: a challenge in answer means they were refused.
    credentials: bool,
}

/// How often transaction timers are looked at; well below T1.
const TICK: Duration = Duration::from_millis(20);

impl Actor for SipProxy {
    type Msg = ProxyMsg;
    type State = ProxyState;
    type Arguments = ProxyArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let backlog = Arc::new(AtomicUsize::new(0));
        // The handler sheds load through the endpoint it is itself passed to.
        let endpoint_cell = Arc::new(OnceLock::new());
        let handler = inbound_handler(
            myself.clone(),
            backlog.clone(),
            Limits {
                all: args.config.max_backlog,
                new: args.config.max_new_backlog.min(args.config.max_backlog),
                refused: args.config.overloaded.clone(),
            },
            endpoint_cell.clone(),
            args.defence.clone(),
        );
        let mut transport = args.config.transport.clone();
        let defence = args.defence.clone();
        transport.gate = Some(Gate::new(move |ip| defence.admits(ip)));
        let endpoint = Endpoint::bind(args.config.listen, transport, handler).await?;
        let _ = endpoint_cell.set(endpoint.clone());
        ask_client_certificates(&endpoint, &args.directory);
        let mut hosts = vec![Host::from(endpoint.udp_addr().ip())];
        if endpoint.udp_addr().ip().is_loopback() {
            hosts.push(Host::Domain("localhost".into()));
        }
        hosts.extend(args.config.aliases.iter().cloned());
        tracing::info!(udp = %endpoint.udp_addr(), tcp = %endpoint.tcp_addr(),
            tls = ?endpoint.tls_addr(), ws = ?endpoint.ws_addr(), wss = ?endpoint.wss_addr(),
            "sip listening");
        myself.send_interval(TICK, || ProxyMsg::Tick);
        // The cluster's calls send through these sockets and tell the edge where their
        // messages go; the edge starts the calls it admits through what the cluster gives.
        let starter = match &args.cluster {
            Some(cluster) => cluster.edge(endpoint.clone(), myself.get_derived()).await,
            None => None,
        };
        let forwarder = Forwarder::new(&args.config.cluster_nodes, endpoint.udp_addr());
        if forwarder.enabled() {
            tracing::info!(nodes = ?args.config.cluster_nodes, "calls forwarded to cluster nodes");
        }
        Ok(ProxyState {
            forwarder,
            next_probe: Instant::now(),
            relays: HashMap::new(),
            relay_of: TxnMap::default(),
            relay_timers: BTreeMap::new(),
            starter,
            routes: Routes::new(args.node),
            nonce_key: args.nonce_key,
            nonce_counts: NonceCounts::default(),
            core: Core {
                hosts,
                port: endpoint.udp_addr().port(),
            },
            endpoint,
            directory: args.directory,
            registrar: args.registrar,
            config: args.config,
            transactions: TxnMap::default(),
            answered: Answered::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            handed_on: BTreeMap::new(),
            backlog,
            defence: args.defence,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.endpoint.shutdown();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Everything but a call's start is done at once, outside this future: ractor moves
        // a handler's whole future for every message, so what it holds across the wait costs
        // every REGISTER and every answer too.
        let starting = state
            .handle_now(message, &myself)
            .map(|new| Box::pin(state.start_call(new)));
        if let Some(start) = starting {
            start.await;
        }
        Ok(())
    }
}

impl SipProxy {
    /// Starts the edge under the root supervisor: its failure stops the node (it owns the
    /// sockets and the edge's transactions).
    pub async fn spawn(
        args: ProxyArgs,
        supervisor: &Supervisor,
    ) -> Result<ActorRef<ProxyMsg>, ractor::SpawnErr> {
        supervisor.spawn("sip_proxy", SipProxy, args).await
    }
}

impl ProxyState {
    /// Handles a message of the edge; a dialog-creating request it admitted comes back, for
    /// [`ProxyState::start_call`].
    fn handle_now(&mut self, message: ProxyMsg, myself: &ActorRef<ProxyMsg>) -> Option<NewDialog> {
        match message {
            ProxyMsg::Inbound(inbound) => {
                self.backlog.fetch_sub(1, Ordering::Relaxed);
                self.inbound(inbound, myself)
            }
            ProxyMsg::Reply { txn, response } => {
                self.reply(&txn, &response, Instant::now());
                None
            }
            ProxyMsg::Tick => {
                let now = Instant::now();
                if self.forwarder.enabled() && now >= self.next_probe {
                    self.next_probe = now + self.config.probe_interval;
                    for hop in self.forwarder.probes() {
                        send(&self.endpoint, hop.transport, hop.dest, hop.bytes);
                    }
                }
                self.tick(now);
                None
            }
            ProxyMsg::ConfigChanged(directory) => {
                self.defence.directory_changed(directory.clone());
                ask_client_certificates(&self.endpoint, &directory);
                self.directory = directory;
                None
            }
            ProxyMsg::LocalAddrs(reply) => {
                let _ = reply.send((self.endpoint.udp_addr(), self.endpoint.tcp_addr()));
                None
            }
            ProxyMsg::Route(route) => {
                // A message of a call that was over by the time it reached the call.
                if let Some(CallIn {
                    message,
                    source,
                    transport,
                }) = self.routes.apply(route)
                {
                    let now = Instant::now();
                    self.outside_calls(message, None, source, transport, now, myself)
                } else {
                    None
                }
            }
        }
    }

    /// Starts the call of a dialog-creating request the edge admitted, under the cluster; the
    /// call's later messages go to it from then on. A node whose calls cannot start answers
    /// 503.
    async fn start_call(&mut self, new: NewDialog) {
        let headers = new.request.headers.clone();
        let (source, transport) = (new.source, new.transport);
        let call_id =
            ByteString::from(headers.call_id().map(|c| c.to_string()).unwrap_or_default());
        let started = match &self.starter {
            Some(starter) => starter.start(new).await,
            None => Err(Refusal::NotStarted("this node runs no calls".into()).into()),
        };
        match started {
            Ok(started) => self.routes.started(started.key, call_id, started.call),
            Err(e) => {
                tracing::error!(error = %e, "call not started");
                send(
                    &self.endpoint,
                    transport,
                    source,
                    unavailable(&headers).to_bytes(),
                );
            }
        }
    }

    /// Handles an inbound message; a new call admitted is returned for the caller to start.
    fn inbound(&mut self, inbound: Inbound, myself: &ActorRef<ProxyMsg>) -> Option<NewDialog> {
        let Inbound {
            message,
            source,
            transport,
            received_at,
        } = inbound;
        let mut message = match message {
            Ok(message) => message,
            Err(error) => {
                self.reject_unparsed(&error, source, transport);
                return None;
            }
        };
        let top_via = match &mut message {
            Message::Request(request) => stamp_top_via(request, source),
            Message::Response(_) => None,
        };
        // A request the forwarder hands back keeps its Via as it was stamped.
        if self.forwarder.enabled() {
            message = self.forward(message, source, transport, received_at)?;
        }
        // Every message of a call in progress goes to its call, which owns its transactions.
        if let Some((key, call)) = message
            .headers()
            .call_id()
            .and_then(|c| self.routes.find(c))
        {
            let sent = call.send(CallIn {
                message,
                source,
                transport,
            });
            match sent {
                Err(MessagingErr::SendErr(CallIn { message: m, .. })) => {
                    // Its call is gone, before the cluster said so: the message is the edge's.
                    self.routes.ended(key);
                    message = m;
                }
                _ => return None,
            }
        }
        self.outside_calls(message, top_via, source, transport, received_at, myself)
    }

    /// Handles a message that no call of the node takes; a new call admitted is returned for
    /// the caller to start. `top_via` is a request's top Via as [`stamp_top_via`] left it, when
    /// the caller has it.
    fn outside_calls(
        &mut self,
        message: Message,
        top_via: Option<Via>,
        source: SocketAddr,
        transport: Transport,
        received_at: Instant,
        myself: &ActorRef<ProxyMsg>,
    ) -> Option<NewDialog> {
        match message {
            // Any other response answers nothing of ours (RFC 3261 18.1.2 drops it; RFC 4475
            // bcast).
            // ... unless it belongs to a call another node ran, which this one may adopt.
            Message::Response(r) => {
                let stray = CallIn {
                    message: Message::Response(r),
                    source,
                    transport,
                };
                match &self.starter {
                    Some(starter) => {
                        if let Err(back) = starter.adopt(stray) {
                            tracing::debug!(%source, "stray response dropped");
                            drop(back);
                        }
                    }
                    None => tracing::debug!(%source, "stray response dropped"),
                }
            }
            Message::Request(request) => {
                return self.request(request, top_via, source, transport, received_at, myself);
            }
        }
        None
    }

    /// A request outside any call: its source noted in the top Via already.
    fn request(
        &mut self,
        mut request: Request,
        top_via: Option<Via>,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
        myself: &ActorRef<ProxyMsg>,
    ) -> Option<NewDialog> {
        let key = match &top_via {
            Some(via) => TransactionKey::for_request_with(&request, via)?,
            None => TransactionKey::for_request(&request)?,
        };
        let key = TxnId::new(key, source, transport);
        if let Some(entry) = self.transactions.get_mut(&key) {
            entry.txn.receive(&request, now);
            self.flush(&key);
            return None;
        }
        if request.method != Method::Ack
            && let Some(answer) = self.answered.get(&key)
        {
            send(&self.endpoint, transport, source, answer.clone());
            return None;
        }
        // A request within a dialog no call here has: its call may be one another node
        // ran, that this node adopts (or the cluster answers 481 once it knows).
        let in_dialog = request.method != Method::Register && request.headers.to_has_tag();
        if in_dialog && let Some(starter) = &self.starter {
            let stray = CallIn {
                message: Message::Request(request),
                source,
                transport,
            };
            match starter.adopt(stray) {
                Ok(()) => return None,
                Err(back) => match back.message {
                    Message::Request(r) => request = r,
                    Message::Response(_) => return None,
                },
            }
        }
        // An ACK without its INVITE transaction is never answered.
        if request.method == Method::Ack {
            tracing::debug!(%source, "ACK without a transaction dropped");
            return None;
        }
        let mut decision = edge::decide(&request, &self.directory, &self.core);
        if edge::refused_when_full(&request, &decision) {
            if self.config.draining.load(Ordering::Relaxed) {
                tracing::debug!(%source, method = %request.method, "refused: the node is stopping");
                decision = Decision::Respond(unavailable(&request.headers));
            } else if !self.config.accepting.load(Ordering::Relaxed) {
                tracing::debug!(%source, method = %request.method,
                    "refused: the event spool is past its high-water mark");
                decision = Decision::Respond(unavailable(&request.headers));
            }
        }
        match decision {
            Decision::Respond(response) => {
                if response.status >= 300 {
                    tracing::debug!(%source, method = %request.method, status = response.status,
                        "request answered at the edge");
                }
                if response.status == 481 {
                    self.defence.stray(source.ip(), now);
                }
                send(&self.endpoint, transport, source, response.to_bytes());
            }
            Decision::Unserved => {
                let domain = admit::named_domain(&request);
                let refusal = admit::unserved(
                    &request,
                    Role::Registrar,
                    &domain,
                    &self.nonce_key,
                    &mut self.nonce_counts,
                    crate::unix_ms(),
                );
                self.refuse(&refusal, transport, source, now);
            }
            Decision::Register(tenant) => {
                self.open(&key, &request);
                // The 503 should the registrar not answer: the five headers it copies, not all.
                let fallback = Response::to_request(&request.headers, 503);
                let register = RegisterRequest {
                    tenant,
                    request,
                    source,
                    transport,
                };
                let (proxy, txn) = (myself.clone(), key.clone());
                let reply = Box::new(move |response| {
                    let _ = proxy.cast(ProxyMsg::Reply { txn, response });
                });
                if self.registrar.register(register, reply).is_err() {
                    self.reply(&key, &retry_later(fallback), now);
                    return None;
                }
                self.timer_seq += 1;
                let deadline = (now + self.config.registrar_timeout, self.timer_seq);
                if let Some(entry) = self.transactions.get_mut(&key) {
                    entry.handed_on = Some(deadline);
                }
                self.handed_on.insert(deadline, (key, fallback));
            }
            Decision::NewCall => {
                let load = self.starter.as_ref().map(|s| s.live());
                if let Some((in_progress, ending)) = load
                    && !self.forwarder.enabled()
                    && (in_progress >= self.config.max_calls || ending >= self.config.max_ending)
                {
                    self.config.overloaded.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%source, in_progress, ending,
                        "call refused: the node runs as many calls as it may");
                    let refusal = unavailable(&request.headers);
                    send(&self.endpoint, transport, source, refusal.to_bytes());
                    return None;
                }
                let admitted = match self.admitted_by_proxy(&request, source) {
                    Some(admitted) => Ok(admitted),
                    None => admit::admit(
                        &request,
                        source,
                        transport,
                        &self.directory,
                        &self.nonce_key,
                        &mut self.nonce_counts,
                        crate::unix_ms(),
                    ),
                };
                match admitted {
                    Ok((tenant, origin)) if self.forwarder.enabled() => {
                        if matches!(origin, Origin::Phone(_)) {
                            self.defence.authenticated(source.ip(), now);
                        }
                        let Some(node) = self.forwarder.node_for(&request) else {
                            tracing::warn!(%source, "no cluster node takes calls: call refused");
                            let refusal = unavailable(&request.headers);
                            send(&self.endpoint, transport, source, refusal.to_bytes());
                            return None;
                        };
                        // The edge's transaction answers the caller (100 now, then what the
                        // node says); a client transaction carries the INVITE to the node.
                        tracing::debug!(%source, %node, tenant = %tenant.name, "call forwarded");
                        self.open(&key, &request);
                        let trying = Response::to_request(&request.headers, 100);
                        self.respond(&key, &trying, now);
                        let headers = request.headers.clone();
                        let (out, branch) = self.forwarder.new_call(request, &tenant.name, &origin);
                        self.relay_of.insert(key.clone(), branch.clone());
                        self.start_relay(branch, Some(key), node, out, headers, now);
                    }
                    Ok((tenant, origin)) => {
                        if matches!(origin, Origin::Phone(_)) {
                            self.defence.authenticated(source.ip(), now);
                        }
                        // The call owns its transaction.
                        tracing::debug!(%source, tenant = %tenant.name, origin = %origin.describe(),
                            "call admitted");
                        let proxy = self
                            .config
                            .trusted_proxies
                            .contains(&source)
                            .then_some(source);
                        return Some(NewDialog {
                            tenant,
                            origin,
                            request,
                            source,
                            transport,
                            proxy,
                        });
                    }
                    Err(refusal) => self.refuse(&refusal, transport, source, now),
                }
            }
        }
        None
    }

    /// Refuses a new call or registration: once, statelessly (a challenge resent until an ACK
    /// that a spoofed source never sends would amplify what it sent), counted against its
    /// source when it is a failure.
    fn refuse(
        &self,
        refusal: &admit::Refusal,
        transport: Transport,
        source: SocketAddr,
        now: Instant,
    ) {
        if let Some(why) = &refusal.why {
            // Failures are told (summarised) where they are counted, by the defence.
            tracing::debug!(%source, status = refusal.response.status, why = %why, "refused");
        }
        send(
            &self.endpoint,
            transport,
            source,
            refusal.response.to_bytes(),
        );
        if let Some(failure) = refusal.failure {
            self.defence.failed(source.ip(), failure, now);
        }
    }

    /// The server transaction of a request the edge hands on (a REGISTER to the registrar, a
    /// new call to a cluster node): it absorbs the request's retransmissions meanwhile. What
    /// the edge refuses at once has none: it answers statelessly.
    fn open(&mut self, key: &TxnId, request: &Request) {
        let reliable = key.transport.is_reliable();
        self.transactions.insert(
            key.clone(),
            Entry {
                txn: ServerTransaction::new(request, reliable, self.config.timers),
                // Responses go back where the request came from (RFC 3261 18.2.2, RFC 3581):
                // over the same connection, or over UDP to the source address and port, which
                // is what reaches a phone behind NAT whether or not it asked with `rport`.
                transport: key.transport,
                dest: key.source,
                scheduled: None,
                handed_on: None,
                credentials: request.headers.get(&HeaderName::Authorization).is_some()
                    || request
                        .headers
                        .get(&HeaderName::ProxyAuthorization)
                        .is_some(),
            },
        );
    }

    /// The answer of the actor a request was handed on to. A refusal (a challenge among them)
    /// is sent once and the transaction forgotten, as the edge's own refusals are: a
    /// retransmitted request is asked again.
    fn reply(&mut self, key: &TxnId, response: &Response, now: Instant) {
        let credentials = self
            .transactions
            .get(key)
            .is_some_and(|entry| entry.credentials);
        if let Some(failure) = registrar_failure(response, credentials) {
            self.defence.failed(key.source.ip(), failure, now);
        } else if (200..300).contains(&response.status) {
            self.defence.authenticated(key.source.ip(), now);
        }
        if response.status < 300 {
            if let Some(deadline) = self
                .transactions
                .get_mut(key)
                .and_then(|entry| entry.handed_on.take())
            {
                self.handed_on.remove(&deadline);
            }
            self.respond(key, response, now);
            return;
        }
        if self.forget(key) {
            send(
                &self.endpoint,
                key.transport,
                key.source,
                response.to_bytes(),
            );
        }
    }

    /// Drops a transaction with its timers; whether it was there.
    fn forget(&mut self, key: &TxnId) -> bool {
        let Some(entry) = self.transactions.remove(key) else {
            return false;
        };
        if let Some(scheduled) = entry.scheduled {
            self.timers.remove(&scheduled);
        }
        if let Some(deadline) = entry.handed_on {
            self.handed_on.remove(&deadline);
        }
        true
    }

    /// Sends a response through its transaction.
    fn respond(&mut self, key: &TxnId, response: &Response, now: Instant) {
        if let Some(entry) = self.transactions.get_mut(key) {
            entry.txn.respond(response, now);
            self.flush(key);
        }
    }

    /// Sends what the transaction has queued, forgets it once terminated, and keeps its next
    /// wake-up scheduled.
    fn flush(&mut self, key: &TxnId) {
        let Some(entry) = self.transactions.get_mut(key) else {
            return;
        };
        while let Some(bytes) = entry.txn.poll_transmit() {
            send(&self.endpoint, entry.transport, entry.dest, bytes);
        }
        let mut terminated = false;
        while let Some(event) = entry.txn.poll_event() {
            match event {
                ServerEvent::Terminated => terminated = true,
                ServerEvent::AckTimeout => {
                    tracing::debug!(dest = %entry.dest, "no ACK for a final response");
                }
                ServerEvent::Ack(_) => {}
            }
        }
        if terminated {
            self.forget(key);
            return;
        }
        let next = entry.txn.poll_timeout();
        // Finished but for its retransmissions: only the answer is kept for them, until its
        // Timer J.
        if let (Some(answer), Some(until)) = (entry.txn.completed_response(), next) {
            let answer = answer.clone();
            self.forget(key);
            self.answered.insert(key, answer, until);
            return;
        }
        if next != entry.scheduled.map(|(at, _)| at) {
            if let Some(old) = entry.scheduled.take() {
                self.timers.remove(&old);
            }
            if let Some(at) = next {
                self.timer_seq += 1;
                entry.scheduled = Some((at, self.timer_seq));
                self.timers.insert((at, self.timer_seq), key.clone());
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        self.answered.expire(now);
        while let Some(entry) = self.relay_timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            if let Some(relay) = self.relays.get_mut(&id) {
                relay.scheduled = None;
                if relay.deadline.is_some_and(|d| d <= now) {
                    relay.deadline = None;
                    self.give_up_on_node(&id, now);
                } else {
                    relay.client.handle_timeout(now);
                }
                self.flush_relay(&id, now);
            }
        }
        while let Some(entry) = self.handed_on.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (key, fallback) = entry.remove();
            tracing::warn!(source = %key.source, "registrar did not answer in time: 503");
            if let Some(entry) = self.transactions.get_mut(&key) {
                entry.handed_on = None;
            }
            self.reply(&key, &retry_later(fallback), now);
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(t) = self.transactions.get_mut(&key) {
                t.scheduled = None;
                t.txn.handle_timeout(now);
                self.flush(&key);
            }
        }
    }

    /// A request the parser rejected: answered statelessly when its head allowed (400, or
    /// 505), dropped otherwise.
    fn reject_unparsed(&self, error: &ParseError, source: SocketAddr, transport: Transport) {
        let Some(echo) = error.echo.as_deref() else {
            tracing::debug!(%source, %transport, error = %error, "unparseable message dropped");
            return;
        };
        tracing::info!(%source, %transport, error = %error, status = error.status(),
            "malformed request rejected");
        let mut response = Response::answering(echo, error.status());
        response.reason = format!("{} ({error})", response.reason).into();
        send(&self.endpoint, transport, source, response.to_bytes());
    }
}

/// Notes the source address in the top Via (RFC 3261 18.2.1, RFC 3581), so responses carry
/// `received` and `rport` back to a phone behind NAT.
/// Returns the top Via as it now reads.
fn stamp_top_via(request: &mut Request, source: SocketAddr) -> Option<Via> {
    let Some(Ok(mut via)) = request.headers.top_via() else {
        return None;
    };
    if !via.stamp_source(source) {
        return Some(via);
    }
    // The top Via may share a header line with others; rewrite that line's first value.
    let line = request.headers.get(&HeaderName::Via).cloned()?;
    let mut value = String::with_capacity(line.len() + 40);
    let _ = via.write_into(&mut value);
    for r in switchboard_sip::header::split_values(&line).skip(1) {
        value.push_str(", ");
        value.push_str(r);
    }
    request.headers.replace_first(&HeaderName::Via, value);
    Some(via)
}

/// What the registrar's answer counts as against its source: credentials refused (a
/// challenge to a request that brought some, not for a stale nonce), or a DN unknown (404 in
/// a tenant that does not authenticate). A 403 is not: it refuses what an authenticated phone
/// asked (more contacts than allowed, another DN's bindings).
fn registrar_failure(response: &Response, credentials: bool) -> Option<Failure> {
    match response.status {
        401 if credentials => {
            let stale = response
                .headers
                .get_all(&HeaderName::WwwAuthenticate)
                .any(|c| c.to_ascii_lowercase().contains("stale=true"));
            (!stale).then_some(Failure::Credentials)
        }
        404 => Some(Failure::Credentials),
        _ => None,
    }
}

/// Has TLS ask the trunks that must present a client certificate for one.
fn ask_client_certificates(endpoint: &Endpoint, directory: &Arc<Directory>) {
    if let Some(tls) = endpoint.tls() {
        let directory = directory.clone();
        tls.set_mutual(move |ip| admit::requires_client_certificate(&directory, ip));
    }
}

/// What the edge answers when the actor behind it cannot: try again shortly.
fn unavailable(request: &Headers) -> Response {
    retry_later(Response::to_request(request, 503))
}

/// A 503 made from a request's headers, completed as [`unavailable`] answers: with a To tag
/// of its own (RFC 3261 8.2.6.2) and Retry-After.
fn retry_later(response: Response) -> Response {
    response
        .with_to_tag(&switchboard_sip::token::<6>())
        .with_header(HeaderName::RetryAfter, "5")
}

fn send(endpoint: &Endpoint, transport: Transport, dest: SocketAddr, bytes: Bytes) {
    if let Err(e) = endpoint.send(transport, dest, bytes) {
        tracing::debug!(%dest, %transport, error = %e, "send failed");
    }
}

/// How much may wait for the proxy.
struct Limits {
    /// Past this, every request gets 503 at once.
    all: usize,
    /// Past this, new work does.
    new: usize,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

/// Hands each inbound message to the proxy, counting what waits in its mailbox; past the
/// limits, requests (new work first) are answered 503 at once instead of queueing.
fn inbound_handler(
    proxy: ActorRef<ProxyMsg>,
    backlog: Arc<AtomicUsize>,
    limits: Limits,
    endpoint: Arc<OnceLock<Endpoint>>,
    defence: Arc<Defence>,
) -> InboundHandler {
    Arc::new(move |inbound: Inbound| {
        let ip = inbound.source.ip();
        let mut new_work = false;
        match &inbound.message {
            Err(_) => {
                defence.failed(ip, Failure::Malformed, inbound.received_at);
                if !defence.admits(ip) {
                    return;
                }
            }
            // A request outside any dialog: paid for by a source that has not authenticated.
            Ok(Message::Request(r)) if r.method != Method::Ack && !r.headers.to_has_tag() => {
                let credentials = r.headers.get(&HeaderName::Authorization).is_some()
                    || r.headers.get(&HeaderName::ProxyAuthorization).is_some();
                if !defence.request(ip, credentials, inbound.received_at) {
                    return;
                }
                new_work = r.method != Method::Cancel;
            }
            Ok(_) => {}
        }
        let waiting = backlog.load(Ordering::Relaxed);
        if waiting >= limits.all || (new_work && waiting >= limits.new) {
            limits.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(endpoint) = endpoint.get() {
                shed_load(endpoint, &inbound);
            }
            return;
        }
        backlog.fetch_add(1, Ordering::Relaxed);
        if proxy.cast(ProxyMsg::Inbound(inbound)).is_err() {
            backlog.fetch_sub(1, Ordering::Relaxed);
        }
    })
}

/// Over capacity: requests get 503 with Retry-After at once, without queueing (RFC 3261
/// 21.5.4); everything else is dropped.
fn shed_load(endpoint: &Endpoint, inbound: &Inbound) {
    if let Ok(Message::Request(r)) = &inbound.message
        && r.method != Method::Ack
    {
        let response =
            Response::answering(&r.headers, 503).with_header(HeaderName::RetryAfter, "2");
        send(
            endpoint,
            inbound.transport,
            inbound.source,
            response.to_bytes(),
        );
    }
}
