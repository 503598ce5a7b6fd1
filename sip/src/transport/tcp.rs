//! The connection side, TCP, TLS and WebSocket alike: accepting connections within the limits
//! (and TLS's and WebSocket's handshakes within their time), framing each byte stream into
//! messages (or taking each WebSocket message as one), queueing sends on the connection to a
//! peer (opening one when needed, never to a browser), answering keep-alives and closing idle,
//! slow or broken connections.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::ws;
use super::{Connection, Endpoint, Inbound, Transport};
use crate::error::{Error, ParseError, Result};
use crate::message::Response;
use crate::parse::{Framer, FramingError, StreamItem, parse_datagram};
use crate::repeated::Repeated;

/// Messages that may wait for a connection's writer.
const QUEUE: usize = 1024;

pub(super) async fn accept_loop(endpoint: Endpoint, listener: TcpListener, transport: Transport) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !endpoint.inner.config.admits(peer.ip()) {
            drop(stream);
            continue;
        }
        match register(&endpoint, transport, peer, true) {
            Ok((connection, outbound)) => {
                let link = Link {
                    endpoint: endpoint.clone(),
                    peer,
                    transport,
                    id: connection.id,
                };
                endpoint.spawn(accepted(link, stream, outbound));
            }
            Err(e) => {
                count(&endpoint, |f| &f.limit);
                static REFUSED: Repeated = Repeated::new(Duration::from_secs(10));
                if let Some(refused) = REFUSED.count() {
                    tracing::warn!(%peer, %transport, error = %e, refused,
                        "connections refused (this one and those since the last line)");
                }
                drop(stream);
            }
        }
    }
}

/// One connection as the endpoint knows it.
struct Link {
    endpoint: Endpoint,
    peer: SocketAddr,
    transport: Transport,
    id: u64,
}

/// A connection accepted: over TLS, its handshake first (with a client certificate asked of
/// the sources that must present one), within the handshake timeout.
async fn accepted(link: Link, stream: TcpStream, outbound: mpsc::Receiver<Bytes>) {
    let _ = stream.set_nodelay(true);
    if !matches!(link.transport, Transport::Tls | Transport::Wss) {
        return serve(link, stream, outbound).await;
    }
    let Some(settings) = link.endpoint.inner.config.tls.clone() else {
        return unregister(&link);
    };
    let Some(config) = settings.tls.server_for(link.peer.ip()) else {
        tracing::warn!(peer = %link.peer,
            "tls connection refused: its source must present a client certificate, and no [tls] ca is configured to check one");
        return unregister(&link);
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve(link, tls, outbound).await,
        Ok(Err(e)) => {
            count(&link.endpoint, |f| &f.tls_handshake);
            tracing::info!(peer = %link.peer, error = %e, "tls handshake failed");
            unregister(&link);
        }
        Err(_) => {
            count(&link.endpoint, |f| &f.tls_handshake);
            tracing::info!(peer = %link.peer, "tls handshake not done in time");
            unregister(&link);
        }
    }
}

/// Runs a connection accepted (over TLS, past its handshake): a WebSocket's opening handshake
/// first.
async fn serve<S: AsyncRead + AsyncWrite + Send + Unpin>(
    link: Link,
    mut stream: S,
    outbound: mpsc::Receiver<Bytes>,
) {
    let max = link.endpoint.inner.config.max_message_size;
    if !matches!(link.transport, Transport::Ws | Transport::Wss) {
        return run(
            link,
            stream,
            outbound,
            true,
            Framing::Stream(Framer::new(max)),
        )
        .await;
    }
    match websocket(&link, &mut stream).await {
        Some(rest) => {
            let mut deframer = ws::Deframer::new(max, true);
            deframer.buffer().extend_from_slice(&rest);
            run(link, stream, outbound, true, Framing::Ws(deframer)).await;
        }
        None => unregister(&link),
    }
}

/// The opening handshake of a WebSocket, within the message timeout: what followed it, or
/// none when it was refused (answered, and logged).
async fn websocket<S: AsyncRead + AsyncWrite + Unpin>(
    link: &Link,
    stream: &mut S,
) -> Option<BytesMut> {
    let config = &link.endpoint.inner.config;
    let mut head = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(end);
            }
            if head.len() > ws::MAX_HANDSHAKE {
                return Err("handshake too large".to_owned());
            }
            match stream.read_buf(&mut head).await {
                Ok(0) => return Err("closed during the handshake".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let end = match tokio::time::timeout(config.message_timeout, read).await {
        Ok(Ok(end)) => end,
        Ok(Err(why)) => {
            count(&link.endpoint, |f| &f.websocket_handshake);
            tracing::info!(peer = %link.peer, why, "websocket handshake failed");
            return None;
        }
        Err(_) => {
            count(&link.endpoint, |f| &f.websocket_handshake);
            tracing::info!(peer = %link.peer, "websocket handshake not done in time");
            return None;
        }
    };
    let rest = head.split_off(end + 4);
    match ws::answer_handshake(&head[..end], &config.ws_settings) {
        Ok(accepted) => {
            write_out(stream, &accepted).await.ok()?;
            tracing::debug!(peer = %link.peer, transport = %link.transport, "websocket open");
            Some(rest)
        }
        Err((refusal, why)) => {
            count(&link.endpoint, |f| &f.websocket_handshake);
            let _ = stream.write_all(&refusal).await;
            let _ = stream.shutdown().await;
            tracing::info!(peer = %link.peer, why, "websocket handshake refused");
            None
        }
    }
}

/// How a connection's bytes become messages.
enum Framing {
    /// SIP's own framing on a byte stream (TCP, TLS): Content-Length, CRLF keep-alives.
    Stream(Framer),
    /// One SIP message per WebSocket message.
    Ws(ws::Deframer),
}

/// What the framing found next.
enum Next {
    Message(std::result::Result<crate::message::Message, ParseError>),
    /// To write back (a keep-alive's answer).
    Reply(Bytes),
    /// Nothing to do with (a pong).
    Skip,
    /// The buffer holds nothing whole.
    More,
    /// The connection ends, after `Bytes` is written when there is something to say.
    Close(Closed, Option<Bytes>),
}

impl Framing {
    fn buffer(&mut self) -> &mut BytesMut {
        match self {
            Framing::Stream(f) => f.buffer(),
            Framing::Ws(d) => d.buffer(),
        }
    }

    fn buffered(&self) -> usize {
        match self {
            Framing::Stream(f) => f.buffered(),
            Framing::Ws(d) => d.buffered(),
        }
    }

    /// A message as it goes on the wire.
    fn encode(&self, message: Bytes) -> Bytes {
        match self {
            Framing::Stream(_) => message,
            Framing::Ws(_) => ws::frame(ws::opcode::TEXT, &message, None),
        }
    }

    fn next(&mut self) -> Next {
        match self {
            Framing::Stream(framer) => match framer.next_item() {
                Ok(Some(StreamItem::Message(message))) => Next::Message(message),
                Ok(Some(StreamItem::Ping)) => Next::Reply(Bytes::from_static(b"\r\n")),
                Ok(None) => Next::More,
                Err(e) => {
                    let reply = match &e {
                        FramingError::Invalid(p) => Some((p, 400)),
                        FramingError::TooLarge { reply: Some(p), .. } => Some((p, 513)),
                        FramingError::TooLarge { reply: None, .. } => None,
                    };
                    let answer = reply.and_then(|(p, status)| error_response(p, status));
                    Next::Close(Closed::Framing(e), answer)
                }
            },
            Framing::Ws(deframer) => match deframer.next_item() {
                // A keep-alive in a message (RFC 5626's double CRLF) gets its CRLF.
                Ok(Some(ws::Item::Message(m))) if m.iter().all(u8::is_ascii_whitespace) => {
                    if m.len() >= 4 {
                        Next::Reply(ws::frame(ws::opcode::TEXT, b"\r\n", None))
                    } else {
                        Next::Skip
                    }
                }
                // A message that is no SIP at all (nothing to answer 400 to) ends the
                // connection: 1007, data not of the kind agreed.
                Ok(Some(ws::Item::Message(m))) => match parse_datagram(m) {
                    Err(e) if e.echo.is_none() => Next::Close(
                        Closed::WebSocket(ws::WsError::Bad("not a SIP message")),
                        Some(ws::frame(ws::opcode::CLOSE, &[3, 239], None)),
                    ),
                    parsed => Next::Message(parsed),
                },
                Ok(Some(ws::Item::Ping(p))) => Next::Reply(ws::frame(ws::opcode::PONG, &p, None)),
                Ok(Some(ws::Item::Pong)) => Next::Skip,
                Ok(Some(ws::Item::Close)) => Next::Close(
                    Closed::ByPeer,
                    Some(ws::frame(ws::opcode::CLOSE, &[3, 232], None)),
                ),
                Ok(None) => Next::More,
                // 1002: protocol error; 1009: too big.
                Err(e) => {
                    let code: &[u8] = match e {
                        ws::WsError::TooLarge(_) => &[3, 241],
                        _ => &[3, 234],
                    };
                    Next::Close(
                        Closed::WebSocket(e),
                        Some(ws::frame(ws::opcode::CLOSE, code, None)),
                    )
                }
            },
        }
    }
}

/// Queues `bytes` on the connection to `dest`, opening one if there is none.
pub(super) fn send(
    endpoint: &Endpoint,
    transport: Transport,
    dest: SocketAddr,
    bytes: Bytes,
) -> Result<()> {
    let existing = endpoint
        .connections()
        .by_peer
        .get(&(transport, dest))
        .cloned();
    let connection = match existing {
        Some(c) => c,
        // A browser's connection is the only way to it.
        None if matches!(transport, Transport::Ws | Transport::Wss) => return Err(Error::Closed),
        None => {
            let (connection, outbound) = register(endpoint, transport, dest, false)?;
            let link = Link {
                endpoint: endpoint.clone(),
                peer: dest,
                transport,
                id: connection.id,
            };
            endpoint.spawn(open(link, outbound));
            connection
        }
    };
    connection
        .outbound
        .try_send(bytes)
        .map_err(|_| Error::Closed)
}

/// A connection to `dest` from this end's own port (`local`), so that the other end knows
/// it by the address it knows this end by; from any port when that one cannot be used (the
/// same pair of ports still in TIME_WAIT, say).
/// Opens the connection of `link` (over TLS, the server's certificate checked against the
/// configured authorities) and runs it.
async fn open(link: Link, outbound: mpsc::Receiver<Bytes>) {
    let dest = link.peer;
    let max = link.endpoint.inner.config.max_message_size;
    let opened: std::io::Result<()> = match link.transport {
        Transport::Tls => match link.endpoint.inner.config.tls.clone() {
            Some(settings) => {
                let connector = tokio_rustls::TlsConnector::from(settings.tls.client());
                let handshake = async {
                    let stream = TcpStream::connect(dest).await?;
                    let _ = stream.set_nodelay(true);
                    connector
                        .connect(super::Tls::server_name(dest), stream)
                        .await
                };
                match tokio::time::timeout(settings.handshake_timeout, handshake).await {
                    Ok(Ok(tls)) => {
                        let framing = Framing::Stream(Framer::new(max));
                        return run(link, tls, outbound, false, framing).await;
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "tls handshake not done in time",
                    )),
                }
            }
            None => Err(std::io::Error::other("no [tls] configured")),
        },
        _ => match connect(link.endpoint.tcp_addr(), dest).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let framing = Framing::Stream(Framer::new(max));
                return run(link, stream, outbound, false, framing).await;
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = opened {
        tracing::info!(%dest, transport = %link.transport, error = %e, "connect failed");
    }
    unregister(&link);
}

async fn connect(local: SocketAddr, dest: SocketAddr) -> std::io::Result<TcpStream> {
    let from_own_port = async {
        let socket = super::shared_port_socket(local)?;
        socket.bind(local)?;
        socket.connect(dest).await
    };
    match from_own_port.await {
        Ok(stream) => Ok(stream),
        Err(e) if e.kind() != std::io::ErrorKind::ConnectionRefused => {
            tracing::debug!(%dest, error = %e, "tcp connection from the listening port failed: from any port");
            TcpStream::connect(dest).await
        }
        Err(e) => Err(e),
    }
}

/// Records a connection to or from `peer`, within the limits (which apply to inbound
/// connections only); returns it and the queue its writer drains.
fn register(
    endpoint: &Endpoint,
    transport: Transport,
    peer: SocketAddr,
    inbound: bool,
) -> Result<(Connection, mpsc::Receiver<Bytes>)> {
    let config = &endpoint.inner.config;
    let mut conns = endpoint.connections();
    if inbound {
        if conns.by_peer.len() >= config.max_connections {
            return Err(Error::ConnectionLimit(peer.ip()));
        }
        if conns.per_ip.get(&peer.ip()).copied().unwrap_or(0) >= config.max_connections_per_ip {
            return Err(Error::ConnectionLimit(peer.ip()));
        }
    }
    conns.next_id += 1;
    let id = conns.next_id;
    let (tx, rx) = mpsc::channel(QUEUE);
    let connection = Connection { id, outbound: tx };
    if let Some(old) = conns.by_peer.insert((transport, peer), connection.clone()) {
        tracing::debug!(%peer, old = old.id, "tcp connection replaced");
    } else {
        *conns.per_ip.entry(peer.ip()).or_default() += 1;
    }
    Ok((connection, rx))
}

fn unregister(link: &Link) {
    let mut conns = link.endpoint.connections();
    let key = (link.transport, link.peer);
    if conns.by_peer.get(&key).is_some_and(|c| c.id == link.id) {
        conns.by_peer.remove(&key);
        if let Some(n) = conns.per_ip.get_mut(&link.peer.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                conns.per_ip.remove(&link.peer.ip());
            }
        }
    }
}

/// Why a connection ended, for the log.
enum Closed {
    ByPeer,
    Idle,
    /// A WebSocket's framing broke.
    WebSocket(ws::WsError),
    /// A message that did not arrive whole within the message timeout.
    Slow,
    /// Its source was refused (banned) meanwhile.
    Refused,
    Error(std::io::Error),
    Framing(FramingError),
    Shutdown,
}

async fn run<S: AsyncRead + AsyncWrite + Send + Unpin>(
    link: Link,
    stream: S,
    mut outbound: mpsc::Receiver<Bytes>,
    accepted: bool,
    mut framer: Framing,
) {
    let (endpoint, peer, transport) = (link.endpoint.clone(), link.peer, link.transport);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let config = endpoint.inner.config.clone();
    let mut deadline = tokio::time::Instant::now() + config.tcp_idle_timeout;
    // When the message begun in the buffer must be complete; a connection accepted must
    // bring its first within the same time, so one opened and never used does not stay.
    let mut message_due = accepted.then(|| tokio::time::Instant::now() + config.message_timeout);
    let mut received = false;
    tracing::debug!(%peer, %transport, "connection open");
    let closed = 'conn: loop {
        // Everything complete in the buffer first.
        loop {
            match framer.next() {
                Next::Message(message) => {
                    if !config.admits(peer.ip()) {
                        break 'conn Closed::Refused;
                    }
                    received = true;
                    endpoint.deliver(Inbound {
                        message,
                        source: peer,
                        transport,
                        received_at: Instant::now(),
                    });
                }
                Next::Reply(bytes) => {
                    if let Err(e) = write_out(&mut writer, &bytes).await {
                        break 'conn Closed::Error(e);
                    }
                }
                Next::Skip => {}
                Next::More => break,
                Next::Close(closed, last) => {
                    if let Some(bytes) = last {
                        let _ = write_out(&mut writer, &bytes).await;
                    }
                    break 'conn closed;
                }
            }
        }
        message_due = match (framer.buffered(), message_due) {
            (0, due) if !received => due,
            (0, _) => None,
            (_, Some(due)) => Some(due),
            (_, None) => Some(tokio::time::Instant::now() + config.message_timeout),
        };
        let until = message_due.map_or(deadline, |due| due.min(deadline));
        tokio::select! {
            read = reader.read_buf(framer.buffer()) => match read {
                Ok(0) => break Closed::ByPeer,
                Ok(_) => deadline = tokio::time::Instant::now() + config.tcp_idle_timeout,
                Err(e) => break Closed::Error(e),
            },
            out = outbound.recv() => match out {
                Some(bytes) => {
                    if let Err(e) = write_out(&mut writer, &framer.encode(bytes)).await {
                        break Closed::Error(e);
                    }
                }
                None => break Closed::Shutdown,
            },
            () = tokio::time::sleep_until(until) => {
                break if message_due.is_some_and(|due| due <= tokio::time::Instant::now()) {
                    Closed::Slow
                } else {
                    Closed::Idle
                };
            }
        }
    };
    unregister(&link);
    let _ = writer.shutdown().await;
    let figures = &config.figures;
    match &closed {
        Closed::Framing(_) => figures.framing.fetch_add(1, Ordering::Relaxed),
        Closed::WebSocket(_) => figures.websocket_framing.fetch_add(1, Ordering::Relaxed),
        Closed::Slow => figures.slow.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    match closed {
        Closed::Framing(e) => {
            tracing::info!(%peer, %transport, error = %e, "connection closed: broken framing");
        }
        Closed::WebSocket(e) => {
            tracing::info!(%peer, %transport, error = %e, "connection closed: broken websocket framing");
        }
        Closed::Error(e) => tracing::debug!(%peer, error = %e, "connection closed: error"),
        Closed::ByPeer => tracing::debug!(%peer, "connection closed by peer"),
        Closed::Idle => tracing::debug!(%peer, "connection closed: idle"),
        Closed::Slow => {
            tracing::info!(%peer, timeout_ms = config.message_timeout.as_millis() as u64,
            "connection closed: a message did not arrive whole in time")
        }
        Closed::Refused => tracing::debug!(%peer, "connection closed: source refused"),
        Closed::Shutdown => tracing::debug!(%peer, "connection closed: shutdown"),
    }
}

/// Counts a connection closed for `reason`.
/// Writes bytes whole and pushes them onto the wire: over TLS, bytes the socket did not take
/// at once would otherwise wait in the TLS session for the next write.
async fn write_out<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

fn count(
    endpoint: &Endpoint,
    reason: impl Fn(&super::TransportFigures) -> &std::sync::atomic::AtomicU64,
) {
    reason(&endpoint.inner.config.figures).fetch_add(1, Ordering::Relaxed);
}

/// The stateless answer to a request the framing could not carry on from.
fn error_response(error: &ParseError, status: u16) -> Option<Bytes> {
    let echo = error.echo.as_deref()?;
    let response = Response::to_request(echo, status).with_to_tag(&crate::random::token::<8>());
    Some(response.to_bytes())
}
