//! Forwarding to remote cluster nodes (design.md "Scaling out"): a proxy configured with
//! cluster nodes runs no calls itself. It admits a new call as always, then forwards the
//! INVITE to the node that [`Ring`] picks for its Call-ID, with its own Via, a Record-Route so
//! that the call's in-dialog requests come back through it, Max-Forwards one less, and the
//! admission it made (tenant and origin) in [`ADMITTED`], which a cluster node believes only
//! from the proxies it is told to trust. Responses go back by their Via; a request routed
//! through the proxy (its Route on top) goes on to the next hop; a CANCEL, or the ACK of a
//! failed INVITE, goes to the node its INVITE went to, on the same branch.
//!
//! The INVITE that starts a call is forwarded statefully by the proxy (its server transaction
//! toward the caller, a client transaction toward the node, CANCEL hop by hop: see the
//! relays in the proxy); requests within the call pass by Route and responses by Via, with
//! branches derived from the incoming ones, so that a retransmission goes on as the same
//! transaction and the node's own transaction absorbs it.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::header::{NameAddr, Via, split_values};
use switchboard_sip::transport::{LARGE_REQUEST, Transport};
use switchboard_sip::{HeaderName, Host, Request, Response, Uri};

use super::ring::Ring;
use crate::messages::sip_cluster::Origin;
use crate::messages::sip_proxy::flow_of;

/// The header that carries a proxy's admission of a call to a cluster node:
/// `<tenant> <origin>` (the origin as [`Origin::describe`] writes it).
pub const ADMITTED: &str = "X-Switchboard-Admitted";

/// Where a forwarded message goes.
#[derive(Debug)]
pub struct Hop {
    pub transport: Transport,
    pub dest: SocketAddr,
    pub bytes: Bytes,
}

/// A proxy's view of its cluster nodes.
#[derive(Debug)]
pub struct Forwarder {
    ring: Ring,
    /// This proxy's address, in its Via and Record-Route.
    me: SocketAddr,
    /// Probes sent and not answered, by branch.
    probes: Vec<(String, SocketAddr)>,
    probe_seq: u64,
}

impl Forwarder {
    pub fn new(nodes: &[SocketAddr], me: SocketAddr) -> Self {
        Self {
            ring: Ring::new(nodes.iter().copied()),
            me,
            probes: Vec::new(),
            probe_seq: 0,
        }
    }

    /// Whether this proxy forwards calls (it was given cluster nodes).
    pub fn enabled(&self) -> bool {
        !self.ring.nodes().is_empty()
    }

    /// The node for a call, `None` when none is up.
    pub fn node_for(&self, request: &Request) -> Option<SocketAddr> {
        self.ring.pick(request.headers.call_id()?.as_bytes())
    }

    /// An admitted dialog-creating request as it goes on to its node, and its branch: for
    /// the proxy's client transaction, which sends it.
    pub fn new_call(
        &self,
        mut request: Request,
        tenant: &str,
        origin: &Origin,
    ) -> (Request, String) {
        request.headers.remove(&HeaderName::Other(ADMITTED.into()));
        let rr = format!("<sip:{};lr>", self.me);
        request.headers.push_front(HeaderName::RecordRoute, rr);
        request.headers.push_front(
            HeaderName::Other(ADMITTED.into()),
            format!("{tenant} {}", origin.describe()),
        );
        self.stamp(request)
    }

    /// The branch of a response's top Via when it is this proxy's.
    pub fn our_branch(&self, response: &Response) -> Option<String> {
        let via = response.headers.top_via()?.ok()?;
        if via.port != Some(self.me.port()) || via.host.ip() != Some(self.me.ip()) {
            return None;
        }
        via.branch().map(str::to_owned)
    }

    /// A CANCEL, or the ACK of a non-2xx final response, outside any dialog this proxy
    /// routes: to the node of its INVITE, on the INVITE's branch (RFC 3261 9.1, 17.1.1.3).
    /// Gives the request back (boxed: the rare path) when no node is up.
    pub fn follow_invite(&self, request: Request) -> Result<Hop, Box<Request>> {
        match self.node_for(&request) {
            Some(node) => Ok(self.hop(request, node)),
            None => Err(Box::new(request)),
        }
    }

    /// A request whose top Route is this proxy: the Route goes, the request goes on to the
    /// next Route or, with none left, to its Request-URI. From a cluster node, a Route that
    /// names a flow ([`FLOW`]: the address a phone registered from, through this proxy) sends
    /// it there instead, and a new dialog keeps the same Route as its Record-Route, so that
    /// the node's later requests find the flow again and the phone's come back here.
    /// A request for a node out of the ring goes to the node the ring picks for its Call-ID.
    /// Gives the request back when its top Route is not this proxy or it names no next hop.
    pub fn routed(&self, mut request: Request, from_node: bool) -> Result<Hop, Box<Request>> {
        let first = request
            .headers
            .get(&HeaderName::Route)
            .and_then(|top| split_values(top).next().map(str::to_owned));
        let Some(first) = first.filter(|f| self.is_me(f)) else {
            return Err(Box::new(request));
        };
        pop_first_value(&mut request.headers, &HeaderName::Route);
        let flow = from_node.then(|| flow_of(&first)).flatten();
        if let Some((dest, transport)) = flow {
            let new_dialog = request.method == switchboard_sip::Method::Invite
                && request
                    .headers
                    .to()
                    .and_then(Result::ok)
                    .is_none_or(|t| t.tag().is_none());
            if new_dialog {
                request.headers.push_front(HeaderName::RecordRoute, first);
            }
            let mut hop = self.hop(request, dest);
            hop.transport = transport;
            return Ok(hop);
        }
        let next = match request.headers.get(&HeaderName::Route) {
            Some(route) => split_values(route).next().and_then(uri_addr),
            None => sip_addr(&request.uri),
        };
        // A request of a call whose node left the ring goes to the node the ring picks for
        // its Call-ID now, as every proxy would pick it: that node adopts the call (or sends
        // the request on to the node that did).
        let next = match next {
            Some(dead) if self.ring.is_down(dead) => {
                let moved = request
                    .headers
                    .call_id()
                    .and_then(|c| self.ring.pick(c.as_bytes()));
                if let Some(to) = moved {
                    tracing::debug!(%dead, %to, method = %request.method,
                        "a request for a node out of the ring: to the node that adopts its call");
                }
                moved.or(Some(dead))
            }
            other => other,
        };
        match next {
            Some(next) => Ok(self.hop(request, next)),
            None => Err(Box::new(request)),
        }
    }

    /// Whether `addr` is one of this proxy's cluster nodes.
    pub fn is_node(&self, addr: SocketAddr) -> bool {
        self.ring.nodes().iter().any(|n| n.addr == addr)
    }

    /// Whether a response on `branch` answers one of this round's probes. A node that
    /// answers 503 takes no new calls until it answers 200 again.
    pub fn probe_answered(&mut self, branch: &str, status: u16, now: Instant) -> bool {
        let Some(i) = self.probes.iter().position(|(b, _)| b == branch) else {
            return false;
        };
        let (_, node) = self.probes.swap_remove(i);
        if status == 503 {
            self.refused(node, now);
        } else if self.ring.answered(node, now) {
            tracing::info!(%node, "cluster node takes calls again: back in the ring");
        }
        true
    }

    /// `node` said it takes no new calls (503): none go to it until a probe finds it
    /// taking them again.
    pub fn refused(&mut self, node: SocketAddr, now: Instant) {
        if self.ring.refused(node, now) {
            tracing::warn!(%node,
                "cluster node refuses new calls (503): out of the ring until it takes them again");
        }
    }

    /// A forwarded INVITE (`branch` its branch) as it goes again, to another node: the same
    /// request on a branch of its own.
    pub fn again(&self, mut request: Request, branch: &str) -> (Request, String) {
        pop_first_value(&mut request.headers, &HeaderName::Via);
        let branch = format!("{branch}r");
        self.push_via(&mut request, &branch);
        (request, branch)
    }

    /// How a request goes to a cluster node: over TCP when it is larger than UDP safely
    /// carries (RFC 3261 18.1.1: over 1,300 bytes) or already said so (a CANCEL or ACK
    /// follows its INVITE), with this proxy's Via, on top, naming the transport.
    pub fn over_link(&self, mut request: Request) -> (Transport, Request) {
        let tcp_via = request
            .headers
            .top_via()
            .and_then(Result::ok)
            .is_some_and(|v| v.transport_is("TCP"));
        if tcp_via {
            return (Transport::Tcp, request);
        }
        if request.estimated_len() <= LARGE_REQUEST {
            return (Transport::Udp, request);
        }
        if let Some(top) = request.headers.get(&HeaderName::Via).map(|v| v.to_string()) {
            let first = split_values(&top).next().unwrap_or_default().to_owned();
            pop_first_value(&mut request.headers, &HeaderName::Via);
            request.headers.push_front(
                HeaderName::Via,
                first.replacen("SIP/2.0/UDP", "SIP/2.0/TCP", 1),
            );
        }
        (Transport::Tcp, request)
    }

    /// This proxy's Via on a request it makes itself (an ACK or a BYE of its own).
    pub fn stamp_via(&self, request: &mut Request, branch: &str) {
        self.push_via(request, branch);
    }

    /// This proxy's Via, over UDP, on top.
    fn push_via(&self, request: &mut Request, branch: &str) {
        let via = Via::new(
            "UDP",
            Host::from(self.me.ip()),
            Some(self.me.port()),
            branch,
        );
        request
            .headers
            .push_front(HeaderName::Via, format!("{via};rport"));
    }

    /// OPTIONS to every node; a node that left the last ones unanswered misses them.
    pub fn probes(&mut self) -> Vec<Hop> {
        for (_, node) in std::mem::take(&mut self.probes) {
            if self.ring.missed(node) {
                tracing::warn!(%node, "cluster node stopped answering: out of the ring");
            }
        }
        let nodes: Vec<SocketAddr> = self.ring.nodes().iter().map(|n| n.addr).collect();
        nodes
            .into_iter()
            .map(|node| {
                self.probe_seq += 1;
                let branch = format!("z9hG4bKsbprobe{:x}", self.probe_seq);
                let text = format!(
                    "OPTIONS sip:{node} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:proxy@{me}>;tag=probe\r\nTo: <sip:{node}>\r\n\
                     Call-ID: probe-{seq:x}@{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                    me = self.me,
                    seq = self.probe_seq,
                );
                self.probes.push((branch, node));
                Hop {
                    transport: Transport::Udp,
                    dest: node,
                    bytes: Bytes::from(text),
                }
            })
            .collect()
    }

    /// Pushes this proxy's Via (branch derived from the incoming one), takes one from
    /// Max-Forwards, and sends to `dest` over UDP.
    fn hop(&self, request: Request, dest: SocketAddr) -> Hop {
        let (request, _) = self.stamp(request);
        let (transport, request) = if self.is_node(dest) {
            self.over_link(request)
        } else {
            (Transport::Udp, request)
        };
        Hop {
            transport,
            dest,
            bytes: request.to_bytes(),
        }
    }

    /// This proxy's Via on top (its branch, derived from the incoming one, returned), and
    /// Max-Forwards one less.
    fn stamp(&self, mut request: Request) -> (Request, String) {
        let incoming = request
            .headers
            .top_via()
            .and_then(Result::ok)
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        // A CANCEL or a non-2xx ACK shares its INVITE's branch, and so must the forwarded one.
        let branch = format!("z9hG4bKsbp{:016x}", super::ring::hash(incoming.as_bytes()));
        self.push_via(&mut request, &branch);
        let hops = match request.headers.max_forwards() {
            Some(Ok(n)) => n.saturating_sub(1),
            _ => 70,
        };
        request
            .headers
            .set(HeaderName::MaxForwards, hops.to_string());
        (request, branch)
    }

    fn is_me(&self, route: &str) -> bool {
        uri_addr(route).is_some_and(|a| a == self.me)
    }
}

/// A response on to the Via below this proxy's, where its request came from (RFC 3261 16.7,
/// 18.2.2).
pub fn by_via(mut response: Response) -> Option<Hop> {
    pop_first_value(&mut response.headers, &HeaderName::Via);
    let next = response.headers.top_via()?.ok()?;
    let port = next.rport().flatten().or(next.port).unwrap_or(5060);
    let ip = next.received().or_else(|| next.host.ip())?;
    let transport = if next.transport_is("TLS") {
        Transport::Tls
    } else if next.transport_is("TCP") {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    Some(Hop {
        transport,
        dest: SocketAddr::new(ip, port),
        bytes: response.to_bytes(),
    })
}

/// A response without this proxy's Via on top: what goes back where its request came from.
pub fn popped(mut response: Response) -> Response {
    pop_first_value(&mut response.headers, &HeaderName::Via);
    response
}

/// The address a Route or Record-Route value names.
fn uri_addr(value: &str) -> Option<SocketAddr> {
    let addr = NameAddr::parse(&value.to_owned().into()).ok()?;
    sip_addr(&addr.uri)
}

fn sip_addr(uri: &Uri) -> Option<SocketAddr> {
    let Uri::Sip(sip) = uri else {
        return None;
    };
    Some(SocketAddr::new(sip.host.ip()?, sip.port.unwrap_or(5060)))
}

/// Removes the first value of the first header `name` (which may list several).
fn pop_first_value(headers: &mut switchboard_sip::Headers, name: &HeaderName) {
    let Some(line) = headers.get(name).cloned() else {
        return;
    };
    let rest: Vec<&str> = split_values(&line).skip(1).collect();
    if rest.is_empty() {
        headers.remove_first(name);
    } else {
        headers.replace_first(name, rest.join(", "));
    }
}
