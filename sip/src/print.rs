//! The printer: a message back to bytes. Headers print in their order with switchboard's
//! spelling of known names, folding already undone; Content-Length always states the length of
//! the body that follows. Printing a parsed message and parsing the result gives the same
//! message.

use std::fmt::Write;

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{HeaderName, Headers};
use crate::message::{Message, Request, Response};

impl Request {
    pub fn write_to(&self, buf: &mut BytesMut) {
        let _ = write!(buf, "{} {} SIP/2.0\r\n", self.method, self.uri);
        write_rest(&self.headers, &self.body, buf);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(estimate(&self.headers, &self.body));
        self.write_to(&mut buf);
        buf.freeze()
    }

    /// About how many bytes the request prints to, without printing it: for
    /// choosing its transport by size (RFC 3261 18.1.1).
    pub fn estimated_len(&self) -> usize {
        estimate(&self.headers, &self.body)
    }
}

impl Response {
    pub fn write_to(&self, buf: &mut BytesMut) {
        buf.put_slice(b"SIP/2.0 ");
        buf.put_slice(itoa::Buffer::new().format(self.status).as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(self.reason.as_bytes());
        buf.put_slice(b"\r\n");
        write_rest(&self.headers, &self.body, buf);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(estimate(&self.headers, &self.body));
        self.write_to(&mut buf);
        buf.freeze()
    }
}

impl Message {
    pub fn write_to(&self, buf: &mut BytesMut) {
        match self {
            Message::Request(r) => r.write_to(buf),
            Message::Response(r) => r.write_to(buf),
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

fn estimate(headers: &Headers, body: &[u8]) -> usize {
    64 + body.len()
        + headers
            .iter()
            .map(|h| h.name.as_str().len() + h.value.len() + 4)
            .sum::<usize>()
}

fn write_rest(headers: &Headers, body: &[u8], buf: &mut BytesMut) {
    for h in headers {
        buf.put_slice(h.name.as_str().as_bytes());
        buf.put_slice(b": ");
        if h.name == HeaderName::ContentLength {
            buf.put_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        } else {
            buf.put_slice(h.value.as_bytes());
        }
        buf.put_slice(b"\r\n");
    }
    buf.put_slice(b"\r\n");
    buf.put_slice(body);
}
