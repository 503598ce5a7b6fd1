//! SIP capture for Homer: every message the transport receives or sends, copied to a
//! collector as HEP v3 (HEP3, the Homer Encapsulation Protocol) over UDP, with the message's
//! Call-ID as correlation id. Capture stays off the hot path: a message is handed to a
//! bounded queue and a task of its own encodes and sends it; when the collector (or the
//! network to it) is slower than the traffic, messages are dropped and counted, never waited
//! for.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::Transport;

/// How many messages may wait for the sender.
const QUEUE: usize = 10_000;

/// Where captured messages go, and what came of them.
#[derive(Debug)]
pub struct Hep {
    queue: mpsc::Sender<Captured>,
    /// Messages sent to the collector, and dropped for want of room in the queue or a send
    /// that failed.
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
}

/// One message as it crossed the transport.
#[derive(Debug)]
struct Captured {
    at: SystemTime,
    source: SocketAddr,
    destination: SocketAddr,
    transport: Transport,
    bytes: Bytes,
}

/// What identifies this node to the collector.
#[derive(Debug, Clone)]
pub struct HepConfig {
    pub collector: SocketAddr,
    /// The capture agent id Homer shows (`node` in its searches).
    pub agent_id: u32,
    /// The collector's password, if it asks for one.
    pub password: Option<String>,
}

impl Hep {
    /// Starts sending to `config.collector` from a socket of its own.
    pub async fn start(config: HepConfig) -> std::io::Result<Arc<Self>> {
        let bind: SocketAddr = match config.collector.ip() {
            IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(config.collector).await?;
        let (queue, mut rx) = mpsc::channel::<Captured>(QUEUE);
        let hep = Arc::new(Self {
            queue,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let counts = Arc::downgrade(&hep);
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(4096);
            while let Some(c) = rx.recv().await {
                buf.clear();
                encode(&c, &config, &mut buf);
                let sent = socket.send(&buf).await;
                let Some(counts) = counts.upgrade() else {
                    return;
                };
                match sent {
                    Ok(_) => counts.sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counts.dropped.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        Ok(hep)
    }

    /// Copies one message: queued if there is room, dropped and counted if not.
    pub(super) fn capture(
        &self,
        source: SocketAddr,
        destination: SocketAddr,
        transport: Transport,
        bytes: Bytes,
    ) {
        let captured = Captured {
            at: SystemTime::now(),
            source,
            destination,
            transport,
            bytes,
        };
        if self.queue.try_send(captured).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Chunk types of HEP3 (vendor 0, the generic ones).
mod chunk {
    pub(super) const FAMILY: u16 = 0x0001;
    pub(super) const PROTOCOL: u16 = 0x0002;
    pub(super) const SOURCE_V4: u16 = 0x0003;
    pub(super) const DESTINATION_V4: u16 = 0x0004;
    pub(super) const SOURCE_V6: u16 = 0x0005;
    pub(super) const DESTINATION_V6: u16 = 0x0006;
    pub(super) const SOURCE_PORT: u16 = 0x0007;
    pub(super) const DESTINATION_PORT: u16 = 0x0008;
    pub(super) const SECONDS: u16 = 0x0009;
    pub(super) const MICROSECONDS: u16 = 0x000a;
    pub(super) const PROTOCOL_TYPE: u16 = 0x000b;
    pub(super) const AGENT: u16 = 0x000c;
    pub(super) const PASSWORD: u16 = 0x000e;
    pub(super) const PAYLOAD: u16 = 0x000f;
    pub(super) const CORRELATION: u16 = 0x0011;
}

/// One message as a HEP3 packet.
fn encode(c: &Captured, config: &HepConfig, out: &mut BytesMut) {
    out.put_slice(b"HEP3");
    out.put_u16(0); // the total length, written last
    let put = |out: &mut BytesMut, kind: u16, value: &[u8]| {
        out.put_u16(0);
        out.put_u16(kind);
        out.put_u16((6 + value.len()) as u16);
        out.put_slice(value);
    };
    let v6 = c.source.is_ipv6() || c.destination.is_ipv6();
    put(out, chunk::FAMILY, &[if v6 { 10 } else { 2 }]);
    // TCP carries TLS and WebSocket too, as Homer expects them.
    let protocol = if c.transport == Transport::Udp { 17 } else { 6 };
    put(out, chunk::PROTOCOL, &[protocol]);
    match (c.source.ip(), c.destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(out, chunk::SOURCE_V4, &s.octets());
            put(out, chunk::DESTINATION_V4, &d.octets());
        }
        (s, d) => {
            put(out, chunk::SOURCE_V6, &v6_of(s).octets());
            put(out, chunk::DESTINATION_V6, &v6_of(d).octets());
        }
    }
    put(out, chunk::SOURCE_PORT, &c.source.port().to_be_bytes());
    put(
        out,
        chunk::DESTINATION_PORT,
        &c.destination.port().to_be_bytes(),
    );
    let since = c.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    put(out, chunk::SECONDS, &(since.as_secs() as u32).to_be_bytes());
    put(
        out,
        chunk::MICROSECONDS,
        &since.subsec_micros().to_be_bytes(),
    );
    put(out, chunk::PROTOCOL_TYPE, &[1]); // SIP
    put(out, chunk::AGENT, &config.agent_id.to_be_bytes());
    if let Some(password) = &config.password {
        put(out, chunk::PASSWORD, password.as_bytes());
    }
    if let Some(call_id) = call_id(&c.bytes) {
        put(out, chunk::CORRELATION, call_id);
    }
    put(out, chunk::PAYLOAD, &c.bytes);
    let total = (out.len() as u16).to_be_bytes();
    out[4..6].copy_from_slice(&total);
}

fn v6_of(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The Call-ID of a message's head (`Call-ID:` or its compact form `i:`), read off the bytes.
fn call_id(message: &[u8]) -> Option<&[u8]> {
    let head_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    message[..head_end].split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        let name = name.trim_ascii();
        (name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i"))
            .then(|| value[1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_becomes_a_hep3_packet_of_chunks() {
        let c = Captured {
            at: UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_000_123),
            source: "10.0.0.1:5060".parse().expect("addr"),
            destination: "10.0.0.2:5070".parse().expect("addr"),
            transport: Transport::Udp,
            bytes: Bytes::from_static(b"OPTIONS sip:a SIP/2.0\r\ni: abc@h\r\n\r\n"),
        };
        let config = HepConfig {
            collector: "127.0.0.1:9060".parse().expect("addr"),
            agent_id: 7,
            password: None,
        };
        let mut out = BytesMut::new();
        encode(&c, &config, &mut out);
        assert_eq!(&out[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])), out.len());
        // Walk the chunks: every one well formed, the ones that matter as written.
        let mut at = 6;
        let mut seen = std::collections::HashMap::new();
        while at < out.len() {
            let kind = u16::from_be_bytes([out[at + 2], out[at + 3]]);
            let len = usize::from(u16::from_be_bytes([out[at + 4], out[at + 5]]));
            seen.insert(kind, out[at + 6..at + len].to_vec());
            at += len;
        }
        assert_eq!(at, out.len());
        assert_eq!(seen[&chunk::SOURCE_V4], [10, 0, 0, 1]);
        assert_eq!(seen[&chunk::DESTINATION_PORT], 5070u16.to_be_bytes());
        assert_eq!(seen[&chunk::MICROSECONDS], 123u32.to_be_bytes());
        assert_eq!(seen[&chunk::CORRELATION], b"abc@h");
        assert_eq!(seen[&chunk::PAYLOAD], &c.bytes[..]);
        assert_eq!(seen[&chunk::PROTOCOL], [17]);
    }
}
