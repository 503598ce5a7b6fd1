//! SIP messages counted as they cross the transport, each way: requests by method, responses
//! by status class. Lock-free counters in fixed arrays, cheap enough for every message.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::Message;

/// The methods counted on their own; any other is counted as `OTHER`.
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
    "OTHER",
];

/// The status classes, 1xx to 6xx.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In = 0,
    Out = 1,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

#[derive(Debug, Default)]
pub struct MessageCounts {
    requests: [[AtomicU64; METHODS.len()]; 2],
    responses: [[AtomicU64; CLASSES.len()]; 2],
}

impl MessageCounts {
    /// A message received whole.
    pub fn received(&self, message: &Message) {
        match message {
            Message::Request(r) => self.request(Direction::In, method_index(r.method.as_str())),
            Message::Response(r) => self.response(Direction::In, r.status),
        }
    }

    /// Bytes of one message about to be sent: a response by its status line, a request by
    /// its method (read off the first line, not parsed).
    pub fn sent(&self, bytes: &[u8]) {
        if let Some(code) = bytes.strip_prefix(b"SIP/2.0 ") {
            let class = code.first().map_or(0, |d| d.wrapping_sub(b'0'));
            self.response(Direction::Out, u16::from(class) * 100);
        } else {
            // Keep-alives (a blank line) are no message.
            let end = bytes.iter().position(|&b| b == b' ').unwrap_or(0);
            if end == 0 {
                return;
            }
            let method = std::str::from_utf8(&bytes[..end]).unwrap_or_default();
            self.request(Direction::Out, method_index(method));
        }
    }

    fn request(&self, direction: Direction, method: usize) {
        self.requests[direction as usize][method].fetch_add(1, Ordering::Relaxed);
    }

    fn response(&self, direction: Direction, status: u16) {
        if let Some(class) = (status / 100).checked_sub(1).filter(|&c| c < 6) {
            self.responses[direction as usize][usize::from(class)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests counted: (direction, method, count), methods never seen left out.
    pub fn requests(&self) -> Vec<(Direction, &'static str, u64)> {
        Self::each(&self.requests, &METHODS)
    }

    /// Responses counted: (direction, class, count), classes never seen left out.
    pub fn responses(&self) -> Vec<(Direction, &'static str, u64)> {
        Self::each(&self.responses, &CLASSES)
    }

    fn each<const N: usize>(
        counts: &[[AtomicU64; N]; 2],
        names: &[&'static str; N],
    ) -> Vec<(Direction, &'static str, u64)> {
        let mut out = Vec::new();
        for direction in [Direction::In, Direction::Out] {
            for (name, count) in names.iter().zip(&counts[direction as usize]) {
                let n = count.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((direction, *name, n));
                }
            }
        }
        out
    }
}

fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .filter(|_| method != "OTHER")
        .unwrap_or(METHODS.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_by_method_and_class_each_way() {
        let counts = MessageCounts::default();
        counts.sent(b"INVITE sip:a@b SIP/2.0\r\n\r\n");
        counts.sent(b"SIP/2.0 180 Ringing\r\n\r\n");
        counts.sent(b"SIP/2.0 183 Session Progress\r\n\r\n");
        counts.sent(b"FOO sip:a@b SIP/2.0\r\n\r\n");
        counts.sent(b"OTHER sip:a@b SIP/2.0\r\n\r\n");
        let bye = crate::parse_datagram(bytes::Bytes::from_static(
            b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
              To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("parses");
        counts.received(&bye);
        assert_eq!(
            counts.requests(),
            [
                (Direction::In, "BYE", 1),
                (Direction::Out, "INVITE", 1),
                (Direction::Out, "OTHER", 2)
            ]
        );
        assert_eq!(counts.responses(), [(Direction::Out, "1xx", 2)]);
    }
}
