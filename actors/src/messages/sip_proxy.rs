//! The face of the SIP edge: what the cluster tells it of its calls (which call takes which
//! messages), and the Route by which a node behind proxies reaches a phone through the proxy on
//! the flow the phone registered from (see [`crate::sip_proxy`]).

use std::net::SocketAddr;

use bytestring::ByteString;
use switchboard_sip::Uri;
use switchboard_sip::header::NameAddr;
use switchboard_sip::transport::Transport;

use crate::messages::sip_cluster::{CallIn, CallInbox};

/// What the cluster tells the edge of its calls, so that the edge hands each message to its
/// call without asking: a call's own Call-IDs carry its number on the node.
pub enum CallRoute {
    /// A call the core placed (a desktop's): its Call-IDs carry `key`.
    Placed { key: u64, call: CallInbox<CallIn> },
    /// Messages with SIP Call-ID `call_id` (a leg handed from one call to another) go to call
    /// `key` from now on.
    Moved { call_id: ByteString, key: u64 },
    /// A call adopted from a node that died, whose legs have these SIP Call-IDs.
    Adopted {
        key: u64,
        call_ids: Vec<ByteString>,
        call: CallInbox<CallIn>,
    },
    /// These calls are over (told in batches: a message of an ended call that reaches the
    /// edge before reaches the call's shard, which hands it back: [`CallRoute::Returned`]).
    Ended(Vec<u64>),
    /// A message the edge handed to call `key` after the call was over (before the edge was
    /// told): it is the edge's again.
    Returned { key: u64, message: CallIn },
}

/// The URI parameter of a Route to a proxy that names the flow to send on (`ip:port`), with
/// [`FLOW_TCP`] when the flow is a TCP connection.
pub const FLOW: &str = "sb-flow";
pub const FLOW_TCP: &str = "sb-tcp";
/// With [`FLOW`], when the flow is a TLS connection.
pub const FLOW_TLS: &str = "sb-tls";
/// With [`FLOW`], when the flow is a browser's WebSocket (plain or secure).
pub const FLOW_WS: &str = "sb-ws";
pub const FLOW_WSS: &str = "sb-wss";

/// The Route a cluster node puts on a request for `dest` through `proxy`.
pub fn route_through(proxy: SocketAddr, dest: SocketAddr, transport: Transport) -> String {
    let tcp = match transport {
        Transport::Tcp => format!(";{FLOW_TCP}"),
        Transport::Tls => format!(";{FLOW_TLS}"),
        Transport::Ws => format!(";{FLOW_WS}"),
        Transport::Wss => format!(";{FLOW_WSS}"),
        Transport::Udp => String::new(),
    };
    format!("<sip:{proxy};lr;{FLOW}={dest}{tcp}>")
}

pub fn flow_of(route: &str) -> Option<(SocketAddr, Transport)> {
    let addr = NameAddr::parse(&route.to_owned().into()).ok()?;
    let Uri::Sip(sip) = &addr.uri else {
        return None;
    };
    let dest = sip.params.value(FLOW)?.parse().ok()?;
    let transport = if sip.params.contains(FLOW_TCP) {
        Transport::Tcp
    } else if sip.params.contains(FLOW_TLS) {
        Transport::Tls
    } else if sip.params.contains(FLOW_WS) {
        Transport::Ws
    } else if sip.params.contains(FLOW_WSS) {
        Transport::Wss
    } else {
        Transport::Udp
    };
    Some((dest, transport))
}
