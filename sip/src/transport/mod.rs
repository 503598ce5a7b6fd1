//! UDP, TCP and TLS transports: sockets that turn bytes into parsed messages for a handler,
//! and an [`Endpoint`] handle that sends bytes back out, reusing a connection to the same peer
//! where one is open (the one a phone registered over, RFC 5626 style) and connecting where
//! none is.
//!
//! The transports parse but do not interpret: every message, valid or not, goes to the handler
//! with where it came from. Only what cannot reach a handler is dealt with here: oversized
//! datagrams are dropped, keep-alives are answered, and a TCP connection whose framing breaks is
//! answered 400 (when the request can be answered) and closed.

pub mod counts;
pub mod hep;
mod tcp;
mod tls;
mod udp;
pub mod ws;

pub use tls::{Tls, TlsFiles, TlsSettings};
pub use ws::WsSettings;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::{Error, ParseError, Result};
use crate::message::Message;

/// A request over this many bytes is sent over TCP rather than UDP where the path's MTU is
/// not known to be larger (RFC 3261 18.1.1).
pub const LARGE_REQUEST: usize = 1300;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// WebSocket (RFC 7118): a browser's connection, which only it can open.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    /// Reliable transports need no retransmissions (RFC 3261 17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The name as it appears in a Via (`UDP`, `TCP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    pub fn from_via_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("UDP") {
            Some(Transport::Udp)
        } else if name.eq_ignore_ascii_case("TCP") {
            Some(Transport::Tcp)
        } else if name.eq_ignore_ascii_case("TLS") {
            Some(Transport::Tls)
        } else if name.eq_ignore_ascii_case("WS") {
            Some(Transport::Ws)
        } else if name.eq_ignore_ascii_case("WSS") {
            Some(Transport::Wss)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        })
    }
}

/// Says whether traffic from an address is let in at all: a source it refuses (a banned
/// one) has its datagrams and connections dropped unanswered, before they are parsed.
#[derive(Clone)]
pub struct Gate(Arc<dyn Fn(IpAddr) -> bool + Send + Sync>);

impl Gate {
    pub fn new(admits: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(admits))
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        (self.0)(ip)
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Gate")
    }
}

/// What crossed the transport: messages each way, and connections closed for bad input or
/// faults by reason (each is also logged).
#[derive(Debug, Default)]
pub struct TransportFigures {
    /// SIP messages received and sent.
    pub messages: counts::MessageCounts,
    /// TLS handshakes that failed or timed out (a wrong certificate, an old protocol,
    /// garbage, a client certificate missing).
    pub tls_handshake: std::sync::atomic::AtomicU64,
    /// WebSocket handshakes refused (no `sip` subprotocol, an Origin not allowed, not a
    /// WebSocket) or not done in time.
    pub websocket_handshake: std::sync::atomic::AtomicU64,
    /// Byte streams whose SIP framing broke (a bad Content-Length, a message too large).
    pub framing: std::sync::atomic::AtomicU64,
    /// WebSocket framing that broke (unmasked, oversized, bad frames).
    pub websocket_framing: std::sync::atomic::AtomicU64,
    /// Messages that did not arrive whole in time, and connections never used.
    pub slow: std::sync::atomic::AtomicU64,
    /// Connections refused at the per-address or global limit.
    pub limit: std::sync::atomic::AtomicU64,
}

impl TransportFigures {
    /// (reason, count) for the metrics.
    pub fn by_reason(&self) -> [(&'static str, u64); 6] {
        use std::sync::atomic::Ordering::Relaxed;
        [
            ("tls-handshake", self.tls_handshake.load(Relaxed)),
            (
                "websocket-handshake",
                self.websocket_handshake.load(Relaxed),
            ),
            ("framing", self.framing.load(Relaxed)),
            ("websocket-framing", self.websocket_framing.load(Relaxed)),
            ("slow", self.slow.load(Relaxed)),
            ("limit", self.limit.load(Relaxed)),
        ]
    }
}

/// Limits and timeouts of the transports.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The largest message accepted, head and body (Kamailio drops requests past 16 KB).
    pub max_message_size: usize,
    /// A TCP connection with nothing received for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Once a message's first byte has arrived on a connection, the whole message (head and
    /// body) must follow within this, or the connection is closed: a client sending a byte
    /// at a time does not hold it open.
    pub message_timeout: Duration,
    /// Open TCP connections allowed from one address.
    pub max_connections_per_ip: usize,
    /// Open TCP connections allowed in all.
    pub max_connections: usize,
    /// Tasks parsing UDP datagrams; the datagrams of one source always go to the same one, so
    /// they are delivered in the order they arrived.
    pub udp_readers: usize,
    /// The UDP socket's kernel buffers, each way: room for bursts (a few hundred phones
    /// registering at once overflow Linux's default of 208 KiB). The kernel caps it at
    /// `net.core.rmem_max` and `wmem_max`.
    pub udp_buffer_size: usize,
    /// Who is let in; everyone when none.
    pub gate: Option<Gate>,
    /// Where connections closed for bad input are counted.
    pub figures: Arc<TransportFigures>,
    /// SIP over TLS on a port of its own; none without a certificate.
    pub tls: Option<TlsSettings>,
    /// SIP over WebSocket (`ws`) and over secure WebSocket (`wss`, with `tls`'s certificate),
    /// each on a port of its own when given.
    pub ws: Option<SocketAddr>,
    pub wss: Option<SocketAddr>,
    pub ws_settings: WsSettings,
    /// What the node calls itself in the `Server` header of its responses and the
    /// `User-Agent` of its requests; none by default, so that nothing tells a scanner what
    /// it found.
    pub product: Option<String>,
    /// Where every message in and out is copied for Homer (HEP v3), if anywhere.
    pub hep: Option<Arc<hep::Hep>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_message_size: 16 * 1024,
            tcp_idle_timeout: Duration::from_secs(600),
            message_timeout: Duration::from_secs(10),
            max_connections_per_ip: 64,
            max_connections: 10_000,
            udp_readers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            udp_buffer_size: 4 * 1024 * 1024,
            gate: None,
            figures: Arc::new(TransportFigures::default()),
            tls: None,
            ws: None,
            wss: None,
            ws_settings: WsSettings::default(),
            product: None,
            hep: None,
        }
    }
}

impl TransportConfig {
    /// Whether traffic from `ip` is let in.
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        self.gate.as_ref().is_none_or(|g| g.admits(ip))
    }
}

/// A message that arrived, valid or not, with where it came from.
#[derive(Debug)]
pub struct Inbound {
    pub message: Result<Message, ParseError>,
    pub source: SocketAddr,
    pub transport: Transport,
    pub received_at: Instant,
}

/// Receives every inbound message; called on the transport's tasks, so it must not block.
pub type InboundHandler = Arc<dyn Fn(Inbound) + Send + Sync>;

/// The sockets of one listening address, and the way out.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    udp: Arc<UdpSocket>,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    ws_addr: Option<SocketAddr>,
    wss_addr: Option<SocketAddr>,
    config: TransportConfig,
    handler: InboundHandler,
    connections: Mutex<Connections>,
    tasks: Mutex<JoinSet<()>>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("udp", &self.inner.udp_addr)
            .field("tcp", &self.inner.tcp_addr)
            .finish()
    }
}

/// Open connections (TCP and TLS) by transport and peer address, and how many each remote IP
/// holds.
#[derive(Default)]
struct Connections {
    by_peer: HashMap<(Transport, SocketAddr), Connection>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
}

#[derive(Clone)]
struct Connection {
    id: u64,
    outbound: mpsc::Sender<Bytes>,
}

impl Endpoint {
    /// Binds UDP and TCP on `addr` (port 0 picks a free port, the same for both where
    /// possible) and starts reading. Every message goes to `handler`.
    pub async fn bind(
        addr: SocketAddr,
        config: TransportConfig,
        handler: InboundHandler,
    ) -> Result<Self> {
        let (udp, listener) = bind_pair(addr, config.udp_buffer_size).await?;
        let tls_listener = match &config.tls {
            Some(settings) => Some(tcp_listener(settings.listen)?),
            None => None,
        };
        let ws_listener = config.ws.map(tcp_listener).transpose()?;
        let wss_listener = match (config.wss, &config.tls) {
            (Some(addr), Some(_)) => Some(tcp_listener(addr)?),
            (Some(_), None) => {
                return Err(Error::Io(std::io::Error::other(
                    "secure WebSocket needs a TLS certificate",
                )));
            }
            (None, _) => None,
        };
        let addr_of = |l: &Option<tokio::net::TcpListener>| -> Result<Option<SocketAddr>> {
            Ok(match l {
                Some(l) => Some(l.local_addr()?),
                None => None,
            })
        };
        let udp = Arc::new(udp);
        let inner = Arc::new(Inner {
            udp_addr: udp.local_addr()?,
            tcp_addr: listener.local_addr()?,
            tls_addr: addr_of(&tls_listener)?,
            ws_addr: addr_of(&ws_listener)?,
            wss_addr: addr_of(&wss_listener)?,
            udp: udp.clone(),
            config,
            handler,
            connections: Mutex::new(Connections::default()),
            tasks: Mutex::new(JoinSet::new()),
        });
        let endpoint = Self { inner };
        let parsers = endpoint.inner.config.udp_readers.max(1);
        endpoint.spawn(udp::read_loop(endpoint.clone(), parsers));
        endpoint.spawn(tcp::accept_loop(endpoint.clone(), listener, Transport::Tcp));
        for (listener, transport) in [
            (tls_listener, Transport::Tls),
            (ws_listener, Transport::Ws),
            (wss_listener, Transport::Wss),
        ] {
            if let Some(listener) = listener {
                endpoint.spawn(tcp::accept_loop(endpoint.clone(), listener, transport));
            }
        }
        Ok(endpoint)
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.inner.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.inner.tcp_addr
    }

    /// Where TLS is taken, when it is.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.inner.tls_addr
    }

    /// Where WebSocket is taken, when it is.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.inner.ws_addr
    }

    /// Where secure WebSocket is taken, when it is.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.inner.wss_addr
    }

    /// TLS's certificate and authorities, for reloading them.
    pub fn tls(&self) -> Option<&Tls> {
        self.inner.config.tls.as_ref().map(|t| &t.tls)
    }

    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Sends `bytes` to `dest`. Over UDP this is one datagram, sent now if the socket can take
    /// it. Over TCP the bytes are queued on the open connection to `dest`, or a connection is
    /// opened first. Failures after queueing are logged, not returned.
    pub fn send(&self, transport: Transport, dest: SocketAddr, bytes: Bytes) -> Result<()> {
        let bytes = match &self.inner.config.product {
            Some(product) => with_product(bytes, product),
            None => bytes,
        };
        self.inner.config.figures.messages.sent(&bytes);
        if let Some(hep) = &self.inner.config.hep {
            hep.capture(self.local_addr(transport), dest, transport, bytes.clone());
        }
        match transport {
            Transport::Udp => udp::send(&self.inner.udp, dest, &bytes),
            _ => tcp::send(self, transport, dest, bytes),
        }
    }

    /// The address this endpoint takes `transport` on.
    fn local_addr(&self, transport: Transport) -> SocketAddr {
        let i = &self.inner;
        match transport {
            Transport::Udp => i.udp_addr,
            Transport::Tcp => i.tcp_addr,
            Transport::Tls => i.tls_addr.unwrap_or(i.tcp_addr),
            Transport::Ws => i.ws_addr.unwrap_or(i.tcp_addr),
            Transport::Wss => i.wss_addr.unwrap_or(i.tcp_addr),
        }
    }

    /// How many TCP and TLS connections are open.
    pub fn tcp_connections(&self) -> usize {
        self.connections().by_peer.len()
    }

    /// Stops every task of the endpoint; open connections close.
    pub fn shutdown(&self) {
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.abort_all();
        }
        self.connections().by_peer.clear();
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            // Reap finished tasks so the set does not grow with every connection.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(task);
        }
    }

    fn deliver(&self, inbound: Inbound) {
        if let Ok(message) = &inbound.message {
            self.inner.config.figures.messages.received(message);
            if let Some(hep) = &self.inner.config.hep {
                let local = self.local_addr(inbound.transport);
                hep.capture(inbound.source, local, inbound.transport, message.to_bytes());
            }
        }
        (self.inner.handler)(inbound);
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, Connections> {
        // A panic while holding this lock leaves plain maps behind; keep using them.
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `message` with a `Server` (for a response) or `User-Agent` (for a request) header naming
/// `product` after its first line, unless it has one (a request relayed keeps its own).
fn with_product(message: Bytes, product: &str) -> Bytes {
    let Some(first) = message.windows(2).position(|w| w == b"\r\n") else {
        return message;
    };
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let name: &[u8] = if message.starts_with(b"SIP/2.0 ") {
        b"Server"
    } else {
        b"User-Agent"
    };
    let has = message[first..end].split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..].trim_ascii_start().starts_with(b":")
    });
    if has {
        return message;
    }
    let mut out = Vec::with_capacity(message.len() + name.len() + product.len() + 4);
    out.extend_from_slice(&message[..first + 2]);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(product.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&message[first + 2..]);
    Bytes::from(out)
}

/// Binds a UDP socket and a TCP listener on the same address; with port 0, tries a few ports
/// until both are free.
async fn bind_pair(
    addr: SocketAddr,
    udp_buffer_size: usize,
) -> Result<(UdpSocket, tokio::net::TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = bind_udp(addr, udp_buffer_size)?;
        let mut tcp_addr = addr;
        tcp_addr.set_port(udp.local_addr()?.port());
        match tcp_listener(tcp_addr) {
            Ok(listener) => return Ok((udp, listener)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port pair")
    })))
}

/// A TCP listener on `addr` whose port the connections this end opens over TCP may share (see
/// [`tcp::send`]): SO_REUSEPORT on both, so that the other end sees them come from the port
/// it knows this end by, as with UDP (RFC 5923's connection reuse). The UDP socket bound on
/// the same port first keeps two processes apart.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = shared_port_socket(addr)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A TCP socket that may bind a port other sockets of this process listen or connect on.
fn shared_port_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    Ok(socket)
}

/// A UDP socket with kernel buffers of `buffer_size` each way, or as close as the kernel
/// allows (said in the log when it allows less).
fn bind_udp(addr: SocketAddr, buffer_size: usize) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a kernel that refuses keeps its default, which still works.
    let _ = socket.set_recv_buffer_size(buffer_size);
    let _ = socket.set_send_buffer_size(buffer_size);
    // Linux reports twice what was granted (the bookkeeping overhead included).
    let granted = socket.recv_buffer_size()? / 2;
    if granted < buffer_size {
        tracing::warn!(asked = buffer_size, granted, %addr,
            "UDP receive buffer smaller than configured: raise net.core.rmem_max for bursts");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_goes_after_the_first_line_once() {
        let response = Bytes::from_static(b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert_eq!(
            &with_product(response, "acme-sbc")[..],
            b"SIP/2.0 200 OK\r\nServer: acme-sbc\r\nCSeq: 1 OPTIONS\r\n\r\n"
        );
        let request = Bytes::from_static(b"BYE sip:a@b SIP/2.0\r\nCSeq: 2 BYE\r\n\r\n");
        assert_eq!(
            &with_product(request, "acme-sbc")[..],
            b"BYE sip:a@b SIP/2.0\r\nUser-Agent: acme-sbc\r\nCSeq: 2 BYE\r\n\r\n"
        );
        let relayed = Bytes::from_static(
            b"INVITE sip:a@b SIP/2.0\r\nuser-agent : phone\r\n\r\nv=0 User-Agent",
        );
        assert_eq!(with_product(relayed.clone(), "acme-sbc"), relayed);
    }
}
