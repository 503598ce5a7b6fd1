//! The connection side, TCP and TLS alike: accepting connections within the limits (and TLS's
//! handshake within its time), framing each byte stream into messages, queueing sends on the
//! connection to a peer (opening one when needed), answering keep-alives and closing idle,
//! slow or broken connections.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{Connection, Endpoint, Inbound, Transport};
use crate::error::{Error, ParseError, Result};
use crate::message::Response;
use crate::parse::{Framer, FramingError, StreamItem};

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
                tracing::info!(%peer, %transport, error = %e, "connection refused");
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
    if link.transport != Transport::Tls {
        return run(link, stream, outbound, true).await;
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
        Ok(Ok(tls)) => run(link, tls, outbound, true).await,
        Ok(Err(e)) => {
            tracing::info!(peer = %link.peer, error = %e, "tls handshake failed");
            unregister(&link);
        }
        Err(_) => {
            tracing::info!(peer = %link.peer, "tls handshake not done in time");
            unregister(&link);
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
                    Ok(Ok(tls)) => return run(link, tls, outbound, false).await,
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
                return run(link, stream, outbound, false).await;
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
) {
    let (endpoint, peer, transport) = (link.endpoint.clone(), link.peer, link.transport);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let config = endpoint.inner.config.clone();
    let mut framer = Framer::new(config.max_message_size);
    let mut deadline = tokio::time::Instant::now() + config.tcp_idle_timeout;
    // When the message begun in the buffer must be complete; a connection accepted must
    // bring its first within the same time, so one opened and never used does not stay.
    let mut message_due = accepted.then(|| tokio::time::Instant::now() + config.message_timeout);
    let mut received = false;
    tracing::debug!(%peer, %transport, "connection open");
    let closed = 'conn: loop {
        // Everything complete in the buffer first.
        loop {
            match framer.next_item() {
                Ok(Some(StreamItem::Message(message))) => {
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
                Ok(Some(StreamItem::Ping)) => {
                    if let Err(e) = writer.write_all(b"\r\n").await {
                        break 'conn Closed::Error(e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let reply = match &e {
                        FramingError::Invalid(p) => Some((p, 400)),
                        FramingError::TooLarge { reply: Some(p), .. } => Some((p, 513)),
                        FramingError::TooLarge { reply: None, .. } => None,
                    };
                    if let Some(bytes) = reply.and_then(|(p, status)| error_response(p, status)) {
                        let _ = writer.write_all(&bytes).await;
                    }
                    break 'conn Closed::Framing(e);
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
                    if let Err(e) = writer.write_all(&bytes).await {
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
    match closed {
        Closed::Framing(e) => {
            tracing::info!(%peer, %transport, error = %e, "connection closed: broken framing");
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

/// The stateless answer to a request the framing could not carry on from.
fn error_response(error: &ParseError, status: u16) -> Option<Bytes> {
    let echo = error.echo.as_deref()?;
    let response = Response::to_request(echo, status).with_to_tag(&crate::random::token::<8>());
    Some(response.to_bytes())
}
