//! The SIP edge: the node's UDP and TCP sockets, the server transactions of requests that reach
//! it, the checks of [`edge`], the hand-over of REGISTER to the registrar, the admission of new
//! calls ([`admit`]) and the hand-over of every message of a call to its call actor.
//!
//! The actor never waits for another: a REGISTER goes straight to its registrar shard (through
//! the [`Router`]) with a reply that casts the answer back to the proxy, and the transaction
//! sends it; a registrar that does not answer in time gets the phone a 503. Transaction timers
//! and those deadlines are driven by a tick.
//!
//! In one process the cluster node is this process: an admitted INVITE starts a call actor
//! here (the hop skips the socket), which owns its transactions and sends through the edge's
//! sockets, with the edge's address in its Via and Contact so that every later message of the
//! call comes back here and is handed to it by Call-ID. A proxy given remote cluster nodes
//! forwards calls to them instead ([`forward`]), and a node behind proxies takes the calls
//! they admitted and reaches callees through them.

pub mod admit;
pub mod edge;
pub mod forward;
pub mod ring;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use switchboard_sip::transaction::{
    ClientEvent, ClientTransaction, ServerEvent, ServerTransaction, TimerConfig, TransactionKey,
    cancel_for,
};
use switchboard_sip::transport::{Endpoint, Inbound, InboundHandler, Transport, TransportConfig};
use switchboard_sip::{HeaderName, Headers, Host, Message, Method, ParseError, Request, Response};

use switchboard_sip::auth::{NonceCounts, NonceKey};

use crate::call_state::CallThreads;
use crate::registrar::{RegisterRequest, Router};
use crate::sip_cluster::{
    CallMsg, CallRef, CallView, Calls, ClusterConfig, Control, ControlError, Handover, Invalid,
    Locate, NewDialog, Refusal, Shared,
};
use crate::tenant::Directory;
use crate::wakeups::Wakeups;
use edge::{Core, Decision};
use forward::Forwarder;

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
    /// Messages waiting for the proxy beyond which new requests get 503 at once.
    pub max_backlog: usize,
    /// How long the registrar may take before the proxy answers 503 itself.
    pub registrar_timeout: Duration,
    /// Remote cluster nodes: when given, this proxy forwards calls to them (see [`forward`])
    /// instead of running them.
    pub cluster_nodes: Vec<SocketAddr>,
    /// How often the cluster nodes are probed with OPTIONS.
    pub probe_interval: Duration,
    /// Proxies whose admission of a call (the [`forward::ADMITTED`] header) this node takes.
    pub trusted_proxies: Vec<SocketAddr>,
    /// Cleared while new calls and registrations must be refused (503): reporting's spool is
    /// past its high-water mark, and what room is left belongs to the calls in progress.
    pub accepting: Arc<AtomicBool>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            aliases: Vec::new(),
            transport: TransportConfig::default(),
            timers: TimerConfig::default(),
            max_backlog: 20_000,
            registrar_timeout: Duration::from_secs(8),
            cluster_nodes: Vec::new(),
            probe_interval: Duration::from_secs(2),
            trusted_proxies: Vec::new(),
            accepting: Arc::new(AtomicBool::new(true)),
        }
    }
}

pub struct ProxyArgs {
    pub config: ProxyConfig,
    pub directory: Arc<Directory>,
    /// Reaches the registrar's shards.
    pub registrar: Router,
    /// The calls of this node.
    pub cluster: ClusterArgs,
}

/// What the node's calls need besides the edge's sockets.
pub struct ClusterArgs {
    pub config: ClusterConfig,
    pub locate: Locate,
    pub call_state: CallThreads,
    /// Signs the nonces of the 407 challenges of phones' calls.
    pub nonce_key: NonceKey,
    /// Runs the strategies of routing points; without it, their calls take the default
    /// destination.
    pub ors: Option<crate::ors::Ors>,
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
    /// How many calls are in progress.
    Calls(RpcReplyPort<usize>),
    /// A desktop asks for a call from the agent at `dn` to `dial`; the new call's id.
    MakeCall {
        tenant: String,
        dn: String,
        dial: String,
        user_data: std::collections::BTreeMap<String, String>,
        /// The call it consults about.
        thread: Option<String>,
        reply: RpcReplyPort<Result<String, ControlError>>,
    },
    /// Completing a transfer: call `call` gives up its consulted party's leg.
    HandOver {
        tenant: String,
        consult: CallRef,
        dn: String,
        reply: RpcReplyPort<Result<Handover, ControlError>>,
    },
    /// Completing a transfer: call `call` takes the leg `handover` in place of the agent's
    /// at `dn` (or beside it, into a conference); the leg's messages reach it from now on.
    Adopt {
        tenant: String,
        call: String,
        dn: String,
        handover: Handover,
        conference: bool,
        reply: RpcReplyPort<Result<CallView, ControlError>>,
    },
    /// A desktop's request for call `call`, for the agent at `dn` (see [`CallMsg::Control`]).
    Control {
        tenant: String,
        call: String,
        dn: String,
        control: Control,
        reply: RpcReplyPort<Result<CallView, ControlError>>,
    },
}

#[derive(Debug)]
pub struct SipProxy;

pub struct ProxyState {
    endpoint: Endpoint,
    directory: Arc<Directory>,
    registrar: Router,
    core: Core,
    config: ProxyConfig,
    transactions: HashMap<TxnId, Entry>,
    /// Transactions by next wake-up; the number tells apart equal instants.
    timers: BTreeMap<(Instant, u64), TxnId>,
    timer_seq: u64,
    /// Requests handed on and not answered yet, by the time the proxy answers 503 itself,
    /// with their headers to answer with.
    handed_on: BTreeMap<(Instant, u64), (TxnId, Headers)>,
    backlog: Arc<AtomicUsize>,
    calls: Calls,
    nonce_key: NonceKey,
    /// The nonce counts of phones' calls (REGISTERs have theirs in the registrar).
    nonce_counts: NonceCounts,
    forwarder: Forwarder,
    next_probe: Instant,
    /// Requests forwarded to cluster nodes, by the branch of the proxy's client transaction
    /// (a CANCEL's with `;cancel` after it).
    relays: HashMap<String, Relay>,
    /// The relay of each INVITE server transaction, for its CANCEL.
    relay_of: HashMap<TxnId, String>,
    relay_timers: BTreeMap<(Instant, u64), String>,
}

/// A request forwarded statefully: the edge's server transaction toward the caller, a client
/// transaction toward the node.
struct Relay {
    /// The caller's transaction (none for a CANCEL the proxy sends of its own).
    server: Option<TxnId>,
    client: ClientTransaction,
    node: SocketAddr,
    /// The request as forwarded, until its final response (its CANCEL is built from it).
    forwarded: Option<Request>,
    /// The caller's request headers, to answer 408 with.
    headers: Headers,
    answered: bool,
    scheduled: Option<(Instant, u64)>,
}

/// A server transaction as the edge knows it: RFC 3261's key, and the address the request
/// came from. A branch is unique only per client, and a retransmission comes from the same
/// address, so two clients that happen to pick the same branch do not meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxnId {
    key: TransactionKey,
    source: SocketAddr,
    transport: Transport,
}

struct Entry {
    txn: ServerTransaction,
    transport: Transport,
    dest: SocketAddr,
    scheduled: Option<(Instant, u64)>,
    /// The key in `handed_on` while the request waits for another actor's answer.
    handed_on: Option<(Instant, u64)>,
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
            args.config.max_backlog,
            endpoint_cell.clone(),
        );
        let endpoint =
            Endpoint::bind(args.config.listen, args.config.transport.clone(), handler).await?;
        let _ = endpoint_cell.set(endpoint.clone());
        let mut hosts = vec![Host::from(endpoint.udp_addr().ip())];
        if endpoint.udp_addr().ip().is_loopback() {
            hosts.push(Host::Domain("localhost".into()));
        }
        hosts.extend(args.config.aliases.iter().cloned());
        tracing::info!(udp = %endpoint.udp_addr(), tcp = %endpoint.tcp_addr(), "sip listening");
        myself.send_interval(TICK, || ProxyMsg::Tick);
        let ClusterArgs {
            config: cluster_config,
            locate,
            call_state,
            nonce_key,
            ors,
        } = args.cluster;
        let calls = Calls::new(Shared {
            endpoint: endpoint.clone(),
            config: Arc::new(cluster_config),
            locate,
            call_state,
            dn_calls: Default::default(),
            node: format!("sb{}", switchboard_sip::token::<6>()).into(),
            wakeups: Wakeups::start(|| CallMsg::Wake),
            edge: myself.clone(),
            ors,
        });
        let forwarder = Forwarder::new(&args.config.cluster_nodes, endpoint.udp_addr());
        if forwarder.enabled() {
            tracing::info!(nodes = ?args.config.cluster_nodes, "calls forwarded to cluster nodes");
        }
        Ok(ProxyState {
            forwarder,
            next_probe: Instant::now(),
            relays: HashMap::new(),
            relay_of: HashMap::new(),
            relay_timers: BTreeMap::new(),
            calls,
            nonce_key,
            nonce_counts: NonceCounts::default(),
            core: Core {
                hosts,
                port: endpoint.udp_addr().port(),
            },
            endpoint,
            directory: args.directory,
            registrar: args.registrar,
            config: args.config,
            transactions: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            handed_on: BTreeMap::new(),
            backlog,
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
        match message {
            ProxyMsg::Inbound(inbound) => {
                state.backlog.fetch_sub(1, Ordering::Relaxed);
                if let Some(new) = state.inbound(inbound, &myself) {
                    let headers = new.request.headers.clone();
                    let (source, transport) = (new.source, new.transport);
                    if let Err(e) = state.calls.start(new, myself.get_cell()).await {
                        tracing::error!(error = %e, "call actor not started");
                        let r = unavailable(&headers);
                        send(&state.endpoint, transport, source, r.to_bytes());
                    }
                }
            }
            ProxyMsg::Reply { txn, response } => state.reply(&txn, &response, Instant::now()),
            ProxyMsg::Tick => {
                let now = Instant::now();
                if state.forwarder.enabled() && now >= state.next_probe {
                    state.next_probe = now + state.config.probe_interval;
                    for hop in state.forwarder.probes() {
                        send(&state.endpoint, hop.transport, hop.dest, hop.bytes);
                    }
                }
                state.tick(now)
            }
            ProxyMsg::ConfigChanged(directory) => state.directory = directory,
            ProxyMsg::LocalAddrs(reply) => {
                let _ = reply.send((state.endpoint.udp_addr(), state.endpoint.tcp_addr()));
            }
            ProxyMsg::Calls(reply) => {
                let _ = reply.send(state.calls.len());
            }
            ProxyMsg::MakeCall {
                tenant,
                dn,
                dial,
                user_data,
                thread,
                reply,
            } => {
                let Some(t) = state.directory.by_name(&tenant).cloned() else {
                    let _ = reply.send(Err(ControlError::NotFound(tenant)));
                    return Ok(());
                };
                if t.dial_plan.route(&dial).is_none() {
                    let no_route = Invalid::NoRoute {
                        tenant,
                        dialed: dial,
                    };
                    let _ = reply.send(Err(no_route.into()));
                    return Ok(());
                }
                let started = state
                    .calls
                    .originate(t, dn, dial, user_data, thread, myself.get_cell())
                    .await;
                let _ = reply.send(started.map_err(|e| {
                    tracing::error!(error = %e, "call actor not started");
                    Refusal::NotStarted(e.to_string()).into()
                }));
            }
            ProxyMsg::HandOver {
                tenant,
                consult,
                dn,
                reply,
            } => match state.calls.lookup(&consult) {
                Some(actor) => {
                    let _ = actor.cast(CallMsg::HandOver { tenant, dn, reply });
                }
                None => {
                    let (CallRef::Id(name) | CallRef::SipCallId(name)) = consult;
                    let _ = reply.send(Err(ControlError::NotFound(name)));
                }
            },
            ProxyMsg::Adopt {
                tenant,
                call,
                dn,
                handover,
                conference,
                reply,
            } => {
                state.calls.rebind(handover.call_id().clone(), &call);
                match state.calls.by_id(&call) {
                    Some(actor) => {
                        let _ = actor.cast(CallMsg::Control {
                            tenant,
                            dn,
                            control: if conference {
                                Control::Conference(handover)
                            } else {
                                Control::Adopt(handover)
                            },
                            reply,
                        });
                    }
                    None => {
                        tracing::warn!(%call, "the main call ended before it took the consulted party");
                        let _ = reply.send(Err(ControlError::NotFound(call)));
                    }
                }
            }
            ProxyMsg::Control {
                tenant,
                call,
                dn,
                control,
                reply,
            } => match state.calls.by_id(&call) {
                Some(actor) => {
                    let _ = actor.cast(CallMsg::Control {
                        tenant,
                        dn,
                        control,
                        reply,
                    });
                }
                None => {
                    let _ = reply.send(Err(ControlError::NotFound(call)));
                }
            },
        }
        Ok(())
    }

    /// A call actor stopped, at the end of its call or by failing: its call is forgotten.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => state.calls.ended(cell.get_id()),
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(actor = %cell.get_id(), error = %error, "call actor failed");
                state.calls.ended(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl ProxyState {
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
        if let Message::Request(request) = &mut message {
            stamp_top_via(request, source);
        }
        if self.forwarder.enabled() {
            message = self.forward(message, source, transport, received_at)?;
        }
        // Every message of a call in progress goes to its call, which owns its transactions.
        if let Some(call) = message.headers().call_id().and_then(|c| self.calls.find(c)) {
            let _ = call.cast(CallMsg::Sip {
                message,
                source,
                transport,
            });
            return None;
        }
        match message {
            // Any other response answers nothing of ours (RFC 3261 18.1.2 drops it; RFC 4475
            // bcast).
            Message::Response(r) => {
                tracing::debug!(%source, status = r.status, "stray response dropped");
            }
            Message::Request(request) => {
                return self.request(request, source, transport, received_at, myself);
            }
        }
        None
    }

    /// A request outside any call: its source noted in the top Via already.
    fn request(
        &mut self,
        request: Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
        myself: &ActorRef<ProxyMsg>,
    ) -> Option<NewDialog> {
        let key = TransactionKey::for_request(&request)?;
        let key = TxnId {
            key,
            source,
            transport,
        };
        if let Some(entry) = self.transactions.get_mut(&key) {
            entry.txn.receive(&request, now);
            self.flush(&key);
            return None;
        }
        // An ACK without its INVITE transaction is never answered.
        if request.method == Method::Ack {
            tracing::debug!(%source, "ACK without a transaction dropped");
            return None;
        }
        // Responses go back where the request came from (RFC 3261 18.2.2, RFC 3581): over the
        // same connection, or over UDP to the source address and port, which is what reaches a
        // phone behind NAT whether or not it asked with `rport`.
        let dest = source;
        let txn = ServerTransaction::new(&request, transport.is_reliable(), self.config.timers);
        self.transactions.insert(
            key.clone(),
            Entry {
                txn,
                transport,
                dest,
                scheduled: None,
                handed_on: None,
            },
        );
        let mut decision = edge::decide(&request, &self.directory, &self.core);
        if !self.config.accepting.load(Ordering::Relaxed)
            && edge::refused_when_full(&request, &decision)
        {
            tracing::debug!(%source, method = %request.method,
                "refused: the event spool is past its high-water mark");
            decision = Decision::Respond(unavailable(&request.headers));
        }
        match decision {
            Decision::Respond(response) => {
                if response.status >= 300 {
                    tracing::debug!(%source, method = %request.method, status = response.status,
                        "request answered at the edge");
                }
                self.respond(&key, &response, now);
            }
            Decision::Register(tenant) => {
                let headers = request.headers.clone();
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
                    self.respond(&key, &unavailable(&headers), now);
                    return None;
                }
                self.timer_seq += 1;
                let deadline = (now + self.config.registrar_timeout, self.timer_seq);
                if let Some(entry) = self.transactions.get_mut(&key) {
                    entry.handed_on = Some(deadline);
                }
                self.handed_on.insert(deadline, (key, headers));
            }
            Decision::NewCall => {
                let admitted = match self.admitted_by_proxy(&request, source) {
                    Some(admitted) => Ok(admitted),
                    None => admit::admit(
                        &request,
                        source,
                        &self.directory,
                        &self.nonce_key,
                        &mut self.nonce_counts,
                        crate::unix_ms(),
                    ),
                };
                match admitted {
                    Ok((tenant, origin)) if self.forwarder.enabled() => {
                        let Some(node) = self.forwarder.node_for(&request) else {
                            tracing::warn!(%source, "no cluster node takes calls: call refused");
                            self.respond(&key, &unavailable(&request.headers), now);
                            return None;
                        };
                        // The edge's transaction answers the caller (100 now, then what the
                        // node says); a client transaction carries the INVITE to the node.
                        tracing::debug!(%source, %node, tenant = %tenant.name, "call forwarded");
                        let trying = Response::to_request(&request.headers, 100);
                        self.respond(&key, &trying, now);
                        let headers = request.headers.clone();
                        let (out, branch) = self.forwarder.new_call(request, &tenant.name, &origin);
                        self.relay_of.insert(key.clone(), branch.clone());
                        self.start_relay(branch, Some(key), node, out, headers, now);
                    }
                    Ok((tenant, origin)) => {
                        // The call owns its transaction from here: the edge's goes.
                        self.transactions.remove(&key);
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
                    Err(refusal) => {
                        if let Some(why) = &refusal.why {
                            tracing::info!(%source, status = refusal.response.status, why = %why,
                                "call refused");
                        }
                        self.respond(&key, &refusal.response, now);
                    }
                }
            }
        }
        None
    }

    /// A proxy that forwards calls: a message it passes on is sent and gone (`None`); any
    /// other is handed back for the edge's usual handling.
    fn forward(
        &mut self,
        message: Message,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Option<Message> {
        let hop = match message {
            Message::Response(response) => {
                // Only a response with this proxy's Via on top is its to pass on.
                let Some(branch) = self.forwarder.our_branch(&response) else {
                    return Some(Message::Response(response));
                };
                let cancel = response
                    .headers
                    .cseq()
                    .and_then(Result::ok)
                    .is_some_and(|c| c.method == Method::Cancel);
                let id = if cancel {
                    format!("{branch};cancel")
                } else {
                    branch
                };
                if let Some(relay) = self.relays.get_mut(&id) {
                    relay.client.receive(response, now);
                    self.flush_relay(&id, now);
                    return None;
                }
                if self.forwarder.probe_answered(&id, response.status, now) {
                    return None;
                }
                // A request passed on by Route (or a 2xx again after its relay ended): back by
                // Via. A probe's late answer has no Via below and goes no further.
                forward::by_via(response)?
            }
            Message::Request(request) => {
                let routed = request.headers.contains(&HeaderName::Route);
                let follows_invite =
                    matches!(request.method, Method::Cancel | Method::Ack) && !routed;
                let relayed_invite = || {
                    let key = TransactionKey::for_request(&request)?.of_invite();
                    let invite = TxnId {
                        key,
                        source,
                        transport,
                    };
                    let branch = self.relay_of.get(&invite)?.clone();
                    Some((invite, branch))
                };
                if follows_invite && let Some((invite, branch)) = relayed_invite() {
                    // The proxy holds the INVITE's transaction: its ACK ends there, its
                    // CANCEL is answered here and sent on as the proxy's own.
                    if request.method == Method::Cancel {
                        self.cancel_relay(&request, source, &invite, &branch, now);
                        return None;
                    }
                    return Some(Message::Request(request));
                }
                let passed_on = if routed {
                    let from_node = self.forwarder.is_node(source);
                    self.forwarder.routed(request, from_node)
                } else if follows_invite {
                    self.forwarder.follow_invite(request)
                } else {
                    return Some(Message::Request(request));
                };
                match passed_on {
                    Ok(hop) => hop,
                    Err(request) => return Some(Message::Request(*request)),
                }
            }
        };
        send(&self.endpoint, hop.transport, hop.dest, hop.bytes);
        None
    }

    fn start_relay(
        &mut self,
        id: String,
        server: Option<TxnId>,
        node: SocketAddr,
        out: Request,
        headers: Headers,
        now: Instant,
    ) {
        let client = ClientTransaction::new(out.clone(), false, self.config.timers, now);
        self.relays.insert(
            id.clone(),
            Relay {
                server,
                client,
                node,
                forwarded: Some(out),
                headers,
                answered: false,
                scheduled: None,
            },
        );
        self.flush_relay(&id, now);
    }

    /// A CANCEL of a forwarded INVITE: 200 here, and the proxy's own CANCEL to the node
    /// while the INVITE has no final response (RFC 3261 16.10).
    fn cancel_relay(
        &mut self,
        cancel: &Request,
        source: SocketAddr,
        invite: &TxnId,
        branch: &str,
        now: Instant,
    ) {
        let ok = Response::to_request(&cancel.headers, 200);
        send(&self.endpoint, invite.transport, source, ok.to_bytes());
        let Some(relay) = self.relays.get(branch) else {
            return;
        };
        if relay.answered || self.relays.contains_key(&format!("{branch};cancel")) {
            return;
        }
        let Some(forwarded) = relay.forwarded.as_ref() else {
            return;
        };
        let out = cancel_for(forwarded);
        let node = relay.node;
        // The proxy's own CANCEL answers no one: no caller's headers to keep.
        let none = Headers::with_capacity(0);
        self.start_relay(format!("{branch};cancel"), None, node, out, none, now);
    }

    /// Sends what a relay's client transaction queued, passes its responses to the caller's
    /// transaction, answers 408 when the node never did, and forgets it once over.
    fn flush_relay(&mut self, id: &str, now: Instant) {
        let Some(relay) = self.relays.get_mut(id) else {
            return;
        };
        while let Some(bytes) = relay.client.poll_transmit() {
            send(&self.endpoint, Transport::Udp, relay.node, bytes);
        }
        let mut events = Vec::new();
        while let Some(event) = relay.client.poll_event() {
            events.push(event);
        }
        let (server, headers, node) = (relay.server.clone(), relay.headers.clone(), relay.node);
        let mut terminated = false;
        for event in events {
            match event {
                ClientEvent::Response(r) => {
                    let Some(server) = &server else {
                        continue;
                    };
                    let already = self.relays.get(id).is_some_and(|r| r.answered);
                    if !already
                        && r.status == 503
                        && r.headers.get(&HeaderName::RetryAfter).is_some()
                        && self.forward_elsewhere(id, server, node, now)
                    {
                        continue;
                    }
                    if r.status >= 200
                        && let Some(relay) = self.relays.get_mut(id)
                    {
                        relay.answered = true;
                        relay.forwarded = None;
                    }
                    if already && (200..300).contains(&r.status) {
                        // A 2xx again (the node waits for the caller's ACK): straight on.
                        if let Some(hop) = forward::by_via(r) {
                            send(&self.endpoint, hop.transport, hop.dest, hop.bytes);
                        }
                    } else {
                        self.respond(server, &forward::popped(r), now);
                    }
                }
                ClientEvent::TimedOut | ClientEvent::TransportError => {
                    if let Some(server) = &server {
                        tracing::warn!(%node, "cluster node did not answer a forwarded request: 408");
                        self.respond(server, &Response::to_request(&headers, 408), now);
                    }
                }
                ClientEvent::Terminated => terminated = true,
            }
        }
        let Some(relay) = self.relays.get_mut(id) else {
            return;
        };
        if let Some(old) = relay.scheduled.take() {
            self.relay_timers.remove(&old);
        }
        if terminated {
            if let Some(server) = &relay.server {
                self.relay_of.remove(server);
            }
            self.relays.remove(id);
            return;
        }
        if let Some(at) = relay.client.poll_timeout() {
            self.timer_seq += 1;
            relay.scheduled = Some((at, self.timer_seq));
            self.relay_timers
                .insert((at, self.timer_seq), id.to_owned());
        }
    }

    /// A node turned a forwarded INVITE away as unavailable (503 with Retry-After: its event
    /// spool past the high-water mark, or overloaded), where a 503 of the call's own (no
    /// gateway, say) has none. The node takes no new calls until a probe finds it taking them
    /// again, and the INVITE goes on to the next node, unless none is left. Whether it went.
    fn forward_elsewhere(
        &mut self,
        id: &str,
        server: &TxnId,
        node: SocketAddr,
        now: Instant,
    ) -> bool {
        self.forwarder.refused(node, now);
        let Some(relay) = self.relays.get_mut(id) else {
            return false;
        };
        let Some(forwarded) = relay
            .forwarded
            .as_ref()
            .filter(|r| r.method == Method::Invite)
        else {
            return false;
        };
        let Some(next) = self.forwarder.node_for(forwarded) else {
            return false;
        };
        // This relay ends toward its node (the client transaction acknowledges the 503) and
        // answers the caller no more; the next one does.
        let forwarded = relay.forwarded.take().expect("checked above");
        relay.answered = true;
        relay.server = None;
        let headers = relay.headers.clone();
        tracing::info!(%node, %next, "cluster node unavailable (503): call forwarded to the next node");
        let (out, branch) = self.forwarder.again(forwarded, id);
        self.relay_of.insert(server.clone(), branch.clone());
        self.start_relay(branch, Some(server.clone()), next, out, headers, now);
        true
    }

    /// The admission a trusted proxy made of a call it forwarded here, if it did.
    fn admitted_by_proxy(
        &self,
        request: &Request,
        source: SocketAddr,
    ) -> Option<(Arc<crate::tenant::Tenant>, crate::sip_cluster::Origin)> {
        let text = request
            .headers
            .get(&HeaderName::Other(forward::ADMITTED.into()))?;
        if !self.config.trusted_proxies.contains(&source) {
            tracing::warn!(%source, "call admission claimed by an untrusted source: ignored");
            return None;
        }
        let (tenant, origin) = text.split_once(' ')?;
        let tenant = self.directory.tenants().find(|t| t.name == tenant)?.clone();
        Some((tenant, crate::sip_cluster::Origin::parse(origin)?))
    }

    /// The answer of the actor a request was handed on to.
    fn reply(&mut self, key: &TxnId, response: &Response, now: Instant) {
        if let Some(deadline) = self
            .transactions
            .get_mut(key)
            .and_then(|entry| entry.handed_on.take())
        {
            self.handed_on.remove(&deadline);
        }
        self.respond(key, response, now);
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
            if let Some(scheduled) = entry.scheduled {
                self.timers.remove(&scheduled);
            }
            if let Some(deadline) = entry.handed_on {
                self.handed_on.remove(&deadline);
            }
            self.transactions.remove(key);
            return;
        }
        let next = entry.txn.poll_timeout();
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
        while let Some(entry) = self.relay_timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            if let Some(relay) = self.relays.get_mut(&id) {
                relay.scheduled = None;
                relay.client.handle_timeout(now);
                self.flush_relay(&id, now);
            }
        }
        while let Some(entry) = self.handed_on.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (key, headers) = entry.remove();
            tracing::warn!(source = %key.source, "registrar did not answer in time: 503");
            if let Some(entry) = self.transactions.get_mut(&key) {
                entry.handed_on = None;
            }
            self.respond(&key, &unavailable(&headers), now);
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
fn stamp_top_via(request: &mut Request, source: SocketAddr) {
    let Some(Ok(mut via)) = request.headers.top_via() else {
        return;
    };
    if !via.stamp_source(source) {
        return;
    }
    let mut value = via.to_string();
    // The top Via may share a header line with others; rewrite that line's first value.
    let Some(line) = request.headers.get(&HeaderName::Via).cloned() else {
        return;
    };
    for r in switchboard_sip::header::split_values(&line).skip(1) {
        value.push_str(", ");
        value.push_str(r);
    }
    request.headers.replace_first(&HeaderName::Via, value);
}

/// What the edge answers when the actor behind it cannot: try again shortly.
fn unavailable(request: &Headers) -> Response {
    Response::answering(request, 503).with_header(HeaderName::RetryAfter, "5")
}

fn send(endpoint: &Endpoint, transport: Transport, dest: SocketAddr, bytes: Bytes) {
    if let Err(e) = endpoint.send(transport, dest, bytes) {
        tracing::debug!(%dest, %transport, error = %e, "send failed");
    }
}

/// Hands each inbound message to the proxy, counting what waits in its mailbox; past `max`,
/// requests are answered 503 at once instead of queueing.
fn inbound_handler(
    proxy: ActorRef<ProxyMsg>,
    backlog: Arc<AtomicUsize>,
    max: usize,
    endpoint: Arc<OnceLock<Endpoint>>,
) -> InboundHandler {
    Arc::new(move |inbound: Inbound| {
        if backlog.load(Ordering::Relaxed) >= max {
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
