//! The UDP side: readers that parse each datagram, and sends of one datagram each.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{Endpoint, Inbound, Transport};
use crate::error::Result;
use crate::parse::parse_datagram;

/// Reads datagrams until the endpoint shuts down. Several of these share the socket, each
/// parsing what it reads, so parsing spreads over the cores.
pub(super) async fn read_loop(endpoint: Endpoint) {
    let socket = endpoint.inner.udp.clone();
    let max = endpoint.inner.config.max_message_size;
    // Large enough for any datagram, so an oversized one is seen whole and dropped rather than
    // truncated into something that might parse.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, source) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors for earlier sends surface here on some systems; they concern a
                // peer, not the socket.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let data = &buf[..len];
        // Keep-alives: CRLF (RFC 5626 uses STUN on UDP, but phones send CRLF) or nothing at all.
        if data.iter().all(|c| c.is_ascii_whitespace() || *c == 0) {
            tracing::trace!(%source, "udp keep-alive");
            continue;
        }
        if len > max {
            tracing::debug!(%source, len, max, "oversized datagram dropped");
            continue;
        }
        let message = parse_datagram(Bytes::copy_from_slice(data));
        endpoint.deliver(Inbound {
            message,
            source,
            transport: Transport::Udp,
            received_at: Instant::now(),
        });
    }
}

pub(super) fn send(socket: &UdpSocket, dest: SocketAddr, bytes: &[u8]) -> Result<()> {
    match socket.try_send_to(bytes, dest) {
        Ok(_) => Ok(()),
        // The socket buffer is full: this datagram is lost, as it could be in the network;
        // retransmissions recover.
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            tracing::debug!(%dest, "udp send buffer full, datagram dropped");
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
