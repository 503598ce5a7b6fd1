//! The UDP side: a reader that hands each datagram to a parser by its source, and sends of
//! one datagram each.

use std::hash::{Hash, Hasher};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{Endpoint, Inbound, Transport};
use crate::error::Result;
use crate::parse::parse_datagram;

/// Reads datagrams until the endpoint shuts down, handing each to one of `parsers` tasks
/// chosen by its source: parsing spreads over the cores, while the datagrams of one peer are
/// delivered in the order they arrived (a phone's 180 before its 200, which several tasks
/// reading the socket side by side could swap).
pub(super) async fn read_loop(endpoint: Endpoint, parsers: usize) {
    let socket = endpoint.inner.udp.clone();
    let max = endpoint.inner.config.max_message_size;
    let queues: Vec<mpsc::Sender<(Bytes, SocketAddr)>> = (0..parsers.max(1))
        .map(|_| {
            let (queue, datagrams) = mpsc::channel(PARSER_QUEUE);
            endpoint.spawn(parse_loop(endpoint.clone(), datagrams));
            queue
        })
        .collect();
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
        if !endpoint.inner.config.admits(source.ip()) {
            continue;
        }
        if len > max {
            tracing::debug!(%source, len, max, "oversized datagram dropped");
            continue;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        source.hash(&mut hasher);
        let queue = &queues[(hasher.finish() % queues.len() as u64) as usize];
        // A full queue waits here, and the kernel's buffer takes the burst meanwhile.
        if queue
            .send((Bytes::copy_from_slice(data), source))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Datagrams a parser may have waiting.
const PARSER_QUEUE: usize = 4096;

/// Parses the datagrams of the sources it is given, in order, and delivers them.
async fn parse_loop(endpoint: Endpoint, mut datagrams: mpsc::Receiver<(Bytes, SocketAddr)>) {
    while let Some((data, source)) = datagrams.recv().await {
        endpoint.deliver(Inbound {
            message: parse_datagram(data),
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
