//! SIP over WebSocket (RFC 7118, on RFC 6455), for browser softphones: the opening handshake
//! (the `sip` subprotocol required, the `Origin` checked against an allowlist when one is
//! configured) and the framing, each SIP message one WebSocket message. A browser cannot be
//! reached any other way: its connection is its flow, and nothing is ever sent to it on a
//! connection of the node's own.
//!
//! The framing is also the client side's (masking), for tools that speak WebSocket to
//! others, such as the tests' DevTools client.

use bytes::{Buf, Bytes, BytesMut};

/// The subprotocol of SIP (RFC 7118 3).
pub const PROTOCOL: &str = "sip";

/// The longest opening handshake taken.
pub const MAX_HANDSHAKE: usize = 8 * 1024;

/// Who may open a SIP WebSocket: the allowed `Origin`s (none: any).
#[derive(Debug, Clone, Default)]
pub struct WsSettings {
    pub origins: Vec<String>,
}

/// The answer to the opening handshake `head` (the request up to its blank line): the 101 to
/// send and go on, or the refusal to send and close, with why.
pub fn answer_handshake(head: &[u8], settings: &WsSettings) -> Result<Vec<u8>, (Vec<u8>, String)> {
    let refuse = |status: &str, why: &str, extra: &str| {
        let response =
            format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
        Err((response.into_bytes(), why.to_owned()))
    };
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    if !request_line.starts_with("GET ") || !request_line.ends_with(" HTTP/1.1") {
        return refuse("400 Bad Request", "not a GET over HTTP/1.1", "");
    }
    let headers: Vec<(String, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let has_token = |name: &str, token: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return refuse("400 Bad Request", "not a WebSocket upgrade", "");
    }
    if header("sec-websocket-version") != Some("13") {
        return refuse(
            "426 Upgrade Required",
            "WebSocket version not 13",
            "Sec-WebSocket-Version: 13\r\n",
        );
    }
    let Some(key) = header("sec-websocket-key") else {
        return refuse("400 Bad Request", "no Sec-WebSocket-Key", "");
    };
    if !has_token("sec-websocket-protocol", PROTOCOL) {
        return refuse(
            "400 Bad Request",
            "no Sec-WebSocket-Protocol: sip (RFC 7118)",
            "",
        );
    }
    if !settings.origins.is_empty() {
        let origin = header("origin").unwrap_or_default();
        if !settings
            .origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
        {
            return refuse("403 Forbidden", "origin not allowed", "");
        }
    }
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n",
        accept_key(key)
    )
    .into_bytes())
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(&sha.digest().bytes())
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The opcodes used.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// One frame, FIN set: unmasked as a server sends, or masked with `mask` as a client must.
pub fn frame(op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 14);
    out.extend_from_slice(&[0x80 | op]);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.extend_from_slice(&[masked | n as u8]),
        n if n <= usize::from(u16::MAX) => {
            out.extend_from_slice(&[masked | 126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[masked | 127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out.freeze()
}

/// What a connection's bytes come to.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A whole message, text or binary (fragments joined).
    Message(Bytes),
    Ping(Bytes),
    Pong,
    /// The peer closes (its close frame is to be answered).
    Close,
}

/// Why a connection's framing cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("message of {0} bytes over the limit")]
    TooLarge(u64),
    #[error("frame not masked by the client")]
    Unmasked,
    #[error("bad frame: {0}")]
    Bad(&'static str),
}

/// Reads frames off a byte stream: a server's reader (client frames must be masked) or, with
/// `expect_mask` false, a client's.
#[derive(Debug)]
pub struct Deframer {
    buf: BytesMut,
    max: usize,
    expect_mask: bool,
    /// The fragments of a message begun.
    partial: Option<BytesMut>,
}

impl Deframer {
    pub fn new(max: usize, expect_mask: bool) -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            max,
            expect_mask,
            partial: None,
        }
    }

    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes read and not yet a whole item (a message begun, frame or fragments).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, BytesMut::len)
    }

    /// The next whole item, if the buffer holds one.
    pub fn next_item(&mut self) -> Result<Option<Item>, WsError> {
        loop {
            let Some((fin, op, payload)) = self.next_frame()? else {
                return Ok(None);
            };
            match op {
                opcode::PING => return Ok(Some(Item::Ping(payload))),
                opcode::PONG => return Ok(Some(Item::Pong)),
                opcode::CLOSE => return Ok(Some(Item::Close)),
                opcode::TEXT | opcode::BINARY if self.partial.is_none() => {
                    if fin {
                        return Ok(Some(Item::Message(payload)));
                    }
                    self.partial = Some(BytesMut::from(&payload[..]));
                }
                opcode::CONTINUATION => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(WsError::Bad("continuation of nothing"));
                    };
                    if partial.len() + payload.len() > self.max {
                        return Err(WsError::TooLarge((partial.len() + payload.len()) as u64));
                    }
                    partial.extend_from_slice(&payload);
                    if fin {
                        let whole = self.partial.take().unwrap_or_default();
                        return Ok(Some(Item::Message(whole.freeze())));
                    }
                }
                opcode::TEXT | opcode::BINARY => {
                    return Err(WsError::Bad("new message inside a fragmented one"));
                }
                _ => return Err(WsError::Bad("unknown opcode")),
            }
        }
    }

    fn next_frame(&mut self) -> Result<Option<(bool, u8, Bytes)>, WsError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(WsError::Bad("reserved bits set"));
        }
        let op = b[0] & 0x0F;
        let masked = b[1] & 0x80 != 0;
        if masked != self.expect_mask {
            return Err(if self.expect_mask {
                WsError::Unmasked
            } else {
                WsError::Bad("masked frame from a server")
            });
        }
        let (len, mut at) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if op >= 0x8 && (len > 125 || !fin) {
            return Err(WsError::Bad("control frame too long or fragmented"));
        }
        if len > self.max as u64 {
            return Err(WsError::TooLarge(len));
        }
        let mask_at = at;
        if masked {
            at += 4;
        }
        let total = at + len as usize;
        if b.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        let key = masked.then(|| {
            let mut k = [0u8; 4];
            k.copy_from_slice(&frame[mask_at..mask_at + 4]);
            k
        });
        frame.advance(at);
        if let Some(key) = key {
            for (i, byte) in frame.iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        Ok(Some((fin, op, frame.freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_of_rfc_6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn the_handshake_wants_the_sip_subprotocol_and_an_allowed_origin() {
        let head = |protocol: &str, origin: &str| {
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 {protocol}Origin: {origin}\r\n"
            )
        };
        let any = WsSettings::default();
        let ok = answer_handshake(
            head("Sec-WebSocket-Protocol: sip\r\n", "https://a").as_bytes(),
            &any,
        )
        .expect("101");
        let ok = String::from_utf8(ok).expect("text");
        assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
        assert!(ok.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(ok.contains("Sec-WebSocket-Protocol: sip\r\n"));
        let (refusal, why) =
            answer_handshake(head("", "https://a").as_bytes(), &any).expect_err("no sip");
        assert!(refusal.starts_with(b"HTTP/1.1 400"), "{why}");
        let only = WsSettings {
            origins: vec!["https://desk.example".into()],
        };
        let (refusal, _) = answer_handshake(
            head("Sec-WebSocket-Protocol: sip\r\n", "https://evil.example").as_bytes(),
            &only,
        )
        .expect_err("origin");
        assert!(refusal.starts_with(b"HTTP/1.1 403"));
        assert!(
            answer_handshake(
                head("Sec-WebSocket-Protocol: sip\r\n", "https://desk.example").as_bytes(),
                &only
            )
            .is_ok()
        );
    }

    #[test]
    fn frames_both_ways_fragments_and_limits() {
        let mut server = Deframer::new(100, true);
        let mask = Some([1, 2, 3, 4]);
        server
            .buffer()
            .extend_from_slice(&frame(opcode::TEXT, b"OPTIONS", mask));
        server
            .buffer()
            .extend_from_slice(&frame(opcode::PING, b"p", mask));
        assert_eq!(
            server.next_item(),
            Ok(Some(Item::Message(Bytes::from_static(b"OPTIONS"))))
        );
        assert_eq!(
            server.next_item(),
            Ok(Some(Item::Ping(Bytes::from_static(b"p"))))
        );
        assert_eq!(server.next_item(), Ok(None));
        // Fragmented: a text frame without FIN, then a continuation with it.
        let mut first = frame(opcode::TEXT, b"REG", mask).to_vec();
        first[0] &= 0x7F;
        server.buffer().extend_from_slice(&first);
        assert_eq!(server.next_item(), Ok(None));
        server
            .buffer()
            .extend_from_slice(&frame(opcode::CONTINUATION, b"ISTER", mask));
        assert_eq!(
            server.next_item(),
            Ok(Some(Item::Message(Bytes::from_static(b"REGISTER"))))
        );
        server
            .buffer()
            .extend_from_slice(&frame(opcode::TEXT, b"x", None));
        assert_eq!(server.next_item(), Err(WsError::Unmasked));
        let mut small = Deframer::new(10, true);
        small
            .buffer()
            .extend_from_slice(&frame(opcode::TEXT, &[b'a'; 300], mask));
        assert_eq!(small.next_item(), Err(WsError::TooLarge(300)));
        let mut client = Deframer::new(100_000, false);
        client
            .buffer()
            .extend_from_slice(&frame(opcode::BINARY, &[7; 70_000], None));
        assert!(matches!(client.next_item(), Ok(Some(Item::Message(m))) if m.len() == 70_000));
    }
}
