//! SIP messages: requests and responses over `bytes`, with their headers as text and their body
//! as raw bytes, and the construction of responses (RFC 3261 8.2.6).

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

use crate::header::{HeaderName, Headers};
use crate::scan::is_token_str;
use crate::uri::Uri;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
    /// A method switchboard does not know (still a valid token).
    Other(ByteString),
}

impl Method {
    /// Parses a method token; methods are case-sensitive (RFC 3261 7.1).
    pub(crate) fn parse(text: &ByteString, s: &str) -> Option<Self> {
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            other if is_token_str(other) => Method::Other(text.slice_ref(other)),
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Other(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// 100 to 699.
    pub status: u16,
    pub reason: ByteString,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }
}

impl Response {
    /// A response to a request with the headers RFC 3261 8.2.6.2 copies: every Via, From, To,
    /// Call-ID and CSeq; then `Content-Length: 0`. The caller adds a To tag where one is due.
    pub fn to_request(request_headers: &Headers, status: u16) -> Self {
        let mut headers = Headers::with_capacity(8);
        for h in request_headers {
            if matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) {
                headers.push(h.name.clone(), h.value.clone());
            }
        }
        headers.push(HeaderName::ContentLength, ByteString::from_static("0"));
        Self {
            status,
            reason: ByteString::from_static(reason_phrase(status)),
            headers,
            body: Bytes::new(),
        }
    }

    /// [`Response::to_request`] with a fresh random To tag where the request's To has none: what
    /// a UAS or stateful proxy answering on its own sends (RFC 3261 8.2.6.2).
    pub fn answering(request_headers: &Headers, status: u16) -> Self {
        Self::to_request(request_headers, status).with_to_tag(&crate::token::<6>())
    }

    /// Adds `;tag=` to the To header unless it has one (RFC 3261 8.2.6.2).
    pub fn with_to_tag(mut self, tag: &str) -> Self {
        if let Some(to) = self.headers.get(&HeaderName::To)
            && !self.headers.to_has_tag()
        {
            let mut tagged = String::with_capacity(to.len() + 5 + tag.len());
            tagged.push_str(to);
            tagged.push_str(";tag=");
            tagged.push_str(tag);
            self.headers.set(HeaderName::To, tagged);
        }
        self
    }

    /// Adds a header before the trailing Content-Length.
    pub fn with_header(mut self, name: HeaderName, value: impl Into<ByteString>) -> Self {
        let cl = self.headers.remove_first(&HeaderName::ContentLength);
        self.headers.push(name, value);
        if let Some(cl) = cl {
            self.headers.push(HeaderName::ContentLength, cl);
        }
        self
    }

    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

/// The reason phrase RFC 3261 21 (and its extensions) give a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_copies_the_right_headers() {
        let mut h = Headers::new();
        h.push(HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK1");
        h.push(HeaderName::Via, "SIP/2.0/UDP b;branch=z9hG4bK2");
        h.push(HeaderName::From, "<sip:a@x>;tag=1");
        h.push(HeaderName::To, "<sip:b@x>");
        h.push(HeaderName::CallId, "c1");
        h.push(HeaderName::CSeq, "1 REGISTER");
        h.push(HeaderName::Contact, "<sip:a@10.0.0.1>");
        h.push(HeaderName::MaxForwards, "70");
        let r = Response::to_request(&h, 401)
            .with_to_tag("t9")
            .with_header(HeaderName::WwwAuthenticate, "Digest realm=\"x\"");
        let names: Vec<_> = r
            .headers
            .iter()
            .map(|h| h.name.as_str().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "Via",
                "Via",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "WWW-Authenticate",
                "Content-Length"
            ]
        );
        assert_eq!(
            r.headers.get(&HeaderName::To).map(|v| &**v),
            Some("<sip:b@x>;tag=t9")
        );
        assert_eq!(r.reason, "Unauthorized");
        let again = r.clone().with_to_tag("other");
        assert_eq!(
            again.headers.get(&HeaderName::To).map(|v| &**v),
            Some("<sip:b@x>;tag=t9")
        );
    }
}
