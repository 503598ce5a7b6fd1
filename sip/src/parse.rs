//! The parser: datagrams (one message each, bytes past Content-Length ignored) and streams
//! (messages framed by Content-Length, where "incomplete, read more" is told apart from
//! "invalid, close the connection"). Parsing does no I/O.
//!
//! A message is accepted only when the headers every element relies on are valid: Via, From,
//! To, Call-ID, CSeq, Max-Forwards, Content-Length, and, where present, Contact, Route,
//! Record-Route and Expires. Other headers are kept as text and checked when they are used.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use memchr::memchr_iter;

use crate::error::{ParseError, ParseErrorKind};
use crate::header::{CSeq, Contact, HeaderName, Headers, NameAddr, Typed, Via};
use crate::message::{Message, Method, Request, Response};
use crate::scan::{find_byte, is_word, is_ws, parse_delta_seconds, split_at_byte, split_commas};
use crate::uri::Uri;

/// Parses one datagram. Leading CRLFs are skipped, and bytes past Content-Length are ignored
/// (RFC 3261 18.3); without a Content-Length the body is the rest of the datagram.
pub fn parse_datagram(buf: Bytes) -> Result<Message, ParseError> {
    let start = leading_crlf(&buf);
    let Some((head_len, body_start)) = find_head_end(&buf[start..]) else {
        return Err(ParseError::bare(ParseErrorKind::NoHeadEnd));
    };
    let head = RawHead::read(buf.slice(start..start + head_len))?;
    let body_start = start + body_start;
    let available = buf.len() - body_start;
    let body = match head.content_length {
        Err(()) => return Err(head.error(ParseErrorKind::ContentLength)),
        Ok(Some(len)) if len > available => return Err(head.error(ParseErrorKind::BodyTruncated)),
        Ok(Some(len)) => buf.slice(body_start..body_start + len),
        Ok(None) => buf.slice(body_start..),
    };
    head.into_message(body)
}

/// One item read off a stream.
#[derive(Debug)]
pub enum StreamItem {
    /// A complete message; the parse may still have rejected its content, in which case the
    /// connection stays usable (the framing was sound).
    Message(Result<Message, ParseError>),
    /// An RFC 5626 keep-alive (a double CRLF), to be answered with a single CRLF.
    Ping,
}

/// A stream whose framing is broken: the connection must be closed. `reply` holds the error
/// for a request that can still be answered first.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("message exceeds {limit} bytes")]
    TooLarge {
        limit: usize,
        reply: Option<ParseError>,
    },
    #[error("unframeable message: {0}")]
    Invalid(ParseError),
}

/// A connection's receive buffer, framed into messages by Content-Length. It remembers how far
/// it has searched for the end of a head, and the head of a message whose body is still on the
/// way, so a peer sending a byte at a time costs linear work, not quadratic.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    /// Bounds a message, head and body together.
    max: usize,
    /// Bytes at the front already searched for the empty line that ends a head.
    searched: usize,
    /// The message at the front, once its head is complete: the head, where its body starts,
    /// and the body's length.
    pending: Option<(RawHead, usize, usize)>,
}

impl Framer {
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            max,
            searched: 0,
            pending: None,
        }
    }

    /// Where to read into; bytes may only be appended.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next item off the front: `Ok(None)` means "incomplete, read more". After an
    /// error the connection must be closed.
    pub fn next_item(&mut self) -> Result<Option<StreamItem>, FramingError> {
        if self.pending.is_none() {
            if let Some(ping) = self.skip_crlf() {
                return Ok(ping);
            }
            if !self.read_head()? {
                return Ok(None);
            }
        }
        let Some((_, body_start, len)) = &self.pending else {
            return Ok(None);
        };
        let end = body_start + len;
        if self.buf.len() < end {
            return Ok(None);
        }
        let Some((head, body_start, _)) = self.pending.take() else {
            return Ok(None);
        };
        let mut frame = self.buf.split_to(end).freeze();
        let body = frame.split_off(body_start);
        self.searched = 0;
        Ok(Some(StreamItem::Message(head.into_message(body))))
    }

    /// RFC 3261 7.5: CRLFs before a start line are ignored; RFC 5626 3.5.1: a double CRLF is
    /// a keep-alive ping, a single one its pong. `Some` is what to return at once.
    fn skip_crlf(&mut self) -> Option<Option<StreamItem>> {
        let buf = &mut self.buf;
        loop {
            if buf.starts_with(b"\r\n\r\n") {
                buf.advance(4);
                return Some(Some(StreamItem::Ping));
            }
            if buf.starts_with(b"\r\n") && buf.len() >= 3 && buf[2] != b'\r' {
                buf.advance(2);
            } else if buf.first() == Some(&b'\n') {
                buf.advance(1);
            } else {
                break;
            }
        }
        (buf.is_empty() || buf.starts_with(b"\r") && buf.len() < 4).then_some(None)
    }

    /// Looks for a complete head at the front and reads it into `pending`; `false` when it
    /// has not all arrived.
    fn read_head(&mut self) -> Result<bool, FramingError> {
        // A head ends in "\n\n" or "\n\r\n": the last two bytes searched may start one.
        let from = self.searched.saturating_sub(2);
        let Some((head_len, body_start)) = find_head_end(&self.buf[from..]) else {
            self.searched = self.buf.len();
            if self.buf.len() > self.max {
                return Err(FramingError::TooLarge {
                    limit: self.max,
                    reply: None,
                });
            }
            return Ok(false);
        };
        let (head_len, body_start) = (from + head_len, from + body_start);
        let head = RawHead::read(Bytes::copy_from_slice(&self.buf[..head_len]))
            .map_err(FramingError::Invalid)?;
        let len = match head.content_length {
            Err(()) => {
                return Err(FramingError::Invalid(
                    head.error(ParseErrorKind::ContentLength),
                ));
            }
            // RFC 3261 18.3 makes Content-Length mandatory on streams; without one there is
            // no body.
            Ok(len) => len.unwrap_or(0),
        };
        if body_start + len > self.max {
            let reply = head
                .is_request()
                .then(|| head.error(ParseErrorKind::ContentLength));
            return Err(FramingError::TooLarge {
                limit: self.max,
                reply,
            });
        }
        self.pending = Some((head, body_start, len));
        Ok(true)
    }
}

fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count()
}

/// Finds the empty line that ends a message head: returns the length of the head (its last
/// header line included, without the empty line) and where the body starts. Lines may end in
/// CRLF or, leniently, in a bare LF.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    for nl in memchr_iter(b'\n', buf) {
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((nl + 1, nl + 2)),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some((nl + 1, nl + 3)),
            _ => {}
        }
    }
    None
}

/// A message head split into its start line and headers, before the checks that need the
/// body or decide validity.
#[derive(Debug)]
struct RawHead {
    start: ByteString,
    headers: Headers,
    content_length: Result<Option<usize>, ()>,
    line_error: bool,
}

impl RawHead {
    fn read(raw: Bytes) -> Result<Self, ParseError> {
        let text =
            ByteString::try_from(raw).map_err(|_| ParseError::bare(ParseErrorKind::NotUtf8))?;
        let s: &str = &text;
        let mut lines = Lines { s, pos: 0 };
        let start = lines.next().unwrap_or("");
        let mut headers = Headers::with_capacity(16);
        let mut line_error = false;
        let mut content_length = Ok(None);

        let mut current: Option<(&str, &str, Option<String>)> = None;
        let flush = |current: &mut Option<(&str, &str, Option<String>)>,
                     headers: &mut Headers,
                     content_length: &mut Result<Option<usize>, ()>| {
            if let Some((name, value, folded)) = current.take() {
                let value = match folded {
                    None => text.slice_ref(value),
                    Some(joined) => ByteString::from(joined),
                };
                let name = HeaderName::from_wire(&text, name);
                if name == HeaderName::ContentLength {
                    *content_length = match (*content_length, parse_content_length(&value)) {
                        (Ok(None), Some(len)) => Ok(Some(len)),
                        _ => Err(()),
                    };
                }
                headers.push(name, value);
            }
        };
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if is_ws(line.as_bytes()[0]) {
                let more = line.trim_matches(|c| c == ' ' || c == '\t');
                match &mut current {
                    Some((_, value, folded)) => {
                        let joined = folded.get_or_insert_with(|| value.to_owned());
                        if !more.is_empty() {
                            if !joined.is_empty() {
                                joined.push(' ');
                            }
                            joined.push_str(more);
                        }
                    }
                    None => line_error = true,
                }
                continue;
            }
            flush(&mut current, &mut headers, &mut content_length);
            let Some(colon) = find_byte(line, b':') else {
                line_error = true;
                continue;
            };
            let name = line[..colon].trim_end_matches([' ', '\t']);
            if name.is_empty() || !name.bytes().all(crate::scan::is_token) {
                line_error = true;
                continue;
            }
            let value = line[colon + 1..].trim_matches(|c| c == ' ' || c == '\t');
            current = Some((name, value, None));
        }
        flush(&mut current, &mut headers, &mut content_length);
        Ok(Self {
            start: text.slice_ref(start),
            headers,
            content_length,
            line_error,
        })
    }

    fn is_request(&self) -> bool {
        !self
            .start
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    }

    fn error(&self, kind: ParseErrorKind) -> ParseError {
        // A response can only find its way back with a Via, and be matched with a CSeq.
        let answerable = self.is_request()
            && self.headers.contains(&HeaderName::Via)
            && self.headers.contains(&HeaderName::CSeq);
        let echo = answerable.then(|| {
            let mut echo = Headers::with_capacity(6);
            for h in &self.headers {
                if matches!(
                    h.name,
                    HeaderName::Via
                        | HeaderName::From
                        | HeaderName::To
                        | HeaderName::CallId
                        | HeaderName::CSeq
                ) {
                    echo.push(h.name.clone(), h.value.clone());
                }
            }
            Box::new(echo)
        });
        ParseError { kind, echo }
    }

    fn into_message(mut self, body: Bytes) -> Result<Message, ParseError> {
        if self.is_request() {
            let checked = self.request_line().and_then(|line| {
                if self.line_error {
                    return Err(ParseErrorKind::HeaderLine);
                }
                check_request(&line.0, &mut self.headers)?;
                Ok(line)
            });
            match checked {
                Ok((method, uri)) => Ok(Message::Request(Request {
                    method,
                    uri,
                    headers: self.headers,
                    body,
                })),
                Err(kind) => Err(self.error(kind)),
            }
        } else {
            let checked = self.status_line().and_then(|line| {
                if self.line_error {
                    return Err(ParseErrorKind::HeaderLine);
                }
                let (_, typed) = check_common(&self.headers)?;
                self.headers.keep_typed(typed);
                Ok(line)
            });
            match checked {
                Ok((status, reason)) => Ok(Message::Response(Response {
                    status,
                    reason,
                    headers: self.headers,
                    body,
                })),
                Err(kind) => Err(self.error(kind)),
            }
        }
    }

    /// `Method SP Request-URI SP SIP-Version`, single spaces, nothing around.
    fn request_line(&self) -> Result<(Method, Uri), ParseErrorKind> {
        let parts = split_at_byte(&self.start, b' ')
            .and_then(|(method, rest)| Some((method, split_at_byte(rest, b' ')?)));
        let Some((method, (uri, version))) =
            parts.filter(|(_, (_, v))| find_byte(v, b' ').is_none())
        else {
            return Err(ParseErrorKind::StartLine);
        };
        check_version(version)?;
        let method = Method::parse(&self.start, method).ok_or(ParseErrorKind::StartLine)?;
        let uri = Uri::parse(&self.start, uri).map_err(|_| ParseErrorKind::RequestUri)?;
        // RFC 3261 19.1.1: no headers in a Request-URI (RFC 4475 escruri).
        if uri.as_sip().is_some_and(|u| u.headers.is_some()) {
            return Err(ParseErrorKind::RequestUri);
        }
        Ok((method, uri))
    }

    /// `SIP-Version SP Status-Code SP Reason-Phrase`; the reason may be empty.
    fn status_line(&self) -> Result<(u16, ByteString), ParseErrorKind> {
        let s: &str = &self.start;
        let (version, rest) = split_at_byte(s, b' ').ok_or(ParseErrorKind::StartLine)?;
        check_version(version)?;
        let (code, reason) = split_at_byte(rest, b' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ParseErrorKind::Status);
        }
        let status: u16 = code.parse().map_err(|_| ParseErrorKind::Status)?;
        if !(100..700).contains(&status) {
            return Err(ParseErrorKind::Status);
        }
        Ok((status, self.start.slice_ref(reason)))
    }
}

/// `SIP/2.0` (case-insensitive) is the version; another well-formed `SIP/x.y` is unsupported
/// (505); anything else is a syntax error.
fn check_version(v: &str) -> Result<(), ParseErrorKind> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    Err(if well_formed {
        ParseErrorKind::Version
    } else {
        ParseErrorKind::StartLine
    })
}

fn parse_content_length(v: &str) -> Option<usize> {
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

struct Lines<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.s.len() {
            return None;
        }
        let rest = &self.s[self.pos..];
        let (line, advance) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(nl) => (&rest[..nl], nl + 1),
            None => (rest, rest.len()),
        };
        self.pos += advance;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

/// Exactly one header of this name, parsed.
fn single<'a>(
    headers: &'a Headers,
    name: &'a HeaderName,
    what: &'static str,
) -> Result<&'a ByteString, ParseErrorKind> {
    let mut all = headers.get_all(name);
    let first = all.next().ok_or(ParseErrorKind::Missing(what))?;
    if all.next().is_some() {
        return Err(ParseErrorKind::Repeated(what));
    }
    Ok(first)
}

/// The headers both requests and responses must carry, and carry well-formed; with the views
/// parsed on the way, for the headers to keep.
fn check_common(headers: &Headers) -> Result<(CSeq, Typed), ParseErrorKind> {
    let mut top_via = None;
    for via in headers.values(&HeaderName::Via) {
        let via = Via::parse(&via)?;
        top_via.get_or_insert(via);
    }
    if top_via.is_none() || headers.get_all(&HeaderName::Via).any(|v| v.is_empty()) {
        return Err(ParseErrorKind::Missing("Via"));
    }
    let from = NameAddr::parse(single(headers, &HeaderName::From, "From")?)?;
    let to = NameAddr::parse(single(headers, &HeaderName::To, "To")?)?;
    let call_id = single(headers, &HeaderName::CallId, "Call-ID")?;
    let valid_call_id = match split_at_byte(call_id, b'@') {
        Some((a, b)) => is_words(a) && is_words(b),
        None => is_words(call_id),
    };
    if !valid_call_id {
        return Err(ParseErrorKind::Invalid(crate::InvalidSyntax("Call-ID")));
    }
    let cseq = CSeq::parse(single(headers, &HeaderName::CSeq, "CSeq")?)?;
    let typed = Typed {
        top_via,
        from: Some(from),
        to: Some(to),
        contacts: None,
    };
    Ok((cseq, typed))
}

fn is_words(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_word)
}

fn check_request(method: &Method, headers: &mut Headers) -> Result<(), ParseErrorKind> {
    let (cseq, mut typed) = check_common(headers)?;
    if &cseq.method != method {
        return Err(ParseErrorKind::CSeqMethod);
    }
    // Max-Forwards may be missing (RFC 2543 clients, RFC 4475 inv2543) but not repeated or
    // out of range.
    if headers.count(&HeaderName::MaxForwards) > 1 {
        return Err(ParseErrorKind::Repeated("Max-Forwards"));
    }
    if let Some(mf) = headers.max_forwards() {
        mf?;
    }
    let contacts = headers
        .values(&HeaderName::Contact)
        .map(|c| Contact::parse(&c))
        .collect::<Result<Vec<_>, _>>()?;
    if headers.count(&HeaderName::Contact) > 1
        && headers
            .values(&HeaderName::Contact)
            .any(|c| c.trim() == "*")
    {
        return Err(ParseErrorKind::Invalid(crate::InvalidSyntax("Contact")));
    }
    for name in [HeaderName::Route, HeaderName::RecordRoute] {
        for value in headers.values(&name) {
            NameAddr::parse(&value)?;
        }
    }
    if headers.count(&HeaderName::Expires) > 1 {
        return Err(ParseErrorKind::Repeated("Expires"));
    }
    if let Some(e) = headers.get(&HeaderName::Expires)
        && parse_delta_seconds(e).is_none()
    {
        return Err(ParseErrorKind::Invalid(crate::InvalidSyntax("Expires")));
    }
    for name in [HeaderName::Require, HeaderName::ProxyRequire] {
        for v in headers.get_all(&name) {
            if split_commas(v).any(|t| t.is_empty() || !crate::scan::is_token_str(t)) {
                return Err(ParseErrorKind::Invalid(crate::InvalidSyntax("Require")));
            }
        }
    }
    typed.contacts = Some(contacts);
    headers.keep_typed(typed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Result<Message, ParseError> {
        parse_datagram(Bytes::copy_from_slice(s.as_bytes()))
    }

    const REGISTER: &str = "REGISTER sip:demo.local SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776;rport\r\n\
        Max-Forwards: 70\r\n\
        To: <sip:1001@demo.local>\r\n\
        From: <sip:1001@demo.local>;tag=456\r\n\
        Call-ID: reg1@127.0.0.1\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:1001@127.0.0.1:5062>;expires=600\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn register_parses() {
        let Ok(Message::Request(r)) = msg(REGISTER) else {
            panic!("expected a request");
        };
        assert_eq!(r.method, Method::Register);
        assert_eq!(r.uri.to_string(), "sip:demo.local");
        assert_eq!(r.headers.len(), 8);
        assert_eq!(r.headers.call_id().map(|c| &**c), Some("reg1@127.0.0.1"));
        assert!(r.body.is_empty());
    }

    /// The views the parser keeps read as the headers' text does, before and after a change.
    #[test]
    fn kept_views_follow_the_headers_text() {
        let Ok(Message::Request(mut r)) = msg(REGISTER) else {
            panic!("expected a request");
        };
        let reparsed = |h: &Headers, name: &HeaderName| h.get(name).cloned().expect("header");
        let h = &r.headers;
        assert_eq!(
            h.to().and_then(Result::ok),
            NameAddr::parse(&reparsed(h, &HeaderName::To)).ok()
        );
        assert_eq!(
            h.from().and_then(Result::ok),
            NameAddr::parse(&reparsed(h, &HeaderName::From)).ok()
        );
        assert_eq!(
            h.top_via().and_then(Result::ok),
            Via::parse(&reparsed(h, &HeaderName::Via)).ok()
        );
        let contacts: Vec<_> = h.contacts().collect();
        assert_eq!(
            contacts,
            [Contact::parse(&reparsed(h, &HeaderName::Contact))]
        );

        r.headers.set(HeaderName::To, "<sip:2002@demo.local>;tag=9");
        r.headers
            .replace_first(&HeaderName::From, "<sip:3003@demo.local>;tag=8");
        r.headers
            .push_front(HeaderName::Via, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKtop");
        r.headers.remove(&HeaderName::Contact);
        let h = &r.headers;
        let user = |n: Option<Result<NameAddr, _>>| match n.and_then(Result::ok).map(|n| n.uri) {
            Some(Uri::Sip(u)) => u.user.map(|u| u.to_string()),
            _ => None,
        };
        assert_eq!(user(h.to()).as_deref(), Some("2002"));
        assert_eq!(user(h.from()).as_deref(), Some("3003"));
        let top = h.top_via().and_then(Result::ok).expect("a top Via");
        assert_eq!(top.branch(), Some("z9hG4bKtop"));
        assert_eq!(h.contacts().count(), 0);

        r.headers.push(HeaderName::Contact, "<sip:2002@10.0.0.2>");
        assert_eq!(r.headers.contacts().count(), 1);
    }

    #[test]
    fn folding_joins_with_one_space() {
        let m = msg(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1\r\n  OPTIONS\r\n\
            Subject: one\r\n\t two \r\n   three\r\nl: 0\r\n\r\n",
        )
        .expect("valid");
        let h = m.headers();
        assert_eq!(
            h.get(&HeaderName::Subject).map(|v| &**v),
            Some("one two three")
        );
        assert_eq!(h.get(&HeaderName::CSeq).map(|v| &**v), Some("1 OPTIONS"));
    }

    #[test]
    fn rejections_carry_the_echo() {
        let bad = REGISTER.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE");
        let e = msg(&bad).expect_err("mismatch");
        assert_eq!(e.kind, ParseErrorKind::CSeqMethod);
        assert_eq!(e.status(), 400);
        let echo = e.echo.expect("echo");
        assert_eq!(echo.len(), 5);
        let e = msg(&REGISTER.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia")).expect_err("version");
        assert_eq!(e.status(), 505);
        let e =
            msg(&REGISTER.replace("Content-Length: 0", "Content-Length: 10")).expect_err("short");
        assert_eq!(e.kind, ParseErrorKind::BodyTruncated);
    }

    #[test]
    fn responses_have_no_echo() {
        let e = msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n")
            .expect_err("missing headers");
        assert!(e.echo.is_none());
    }

    #[test]
    fn stream_framing() {
        let mut framer = Framer::new(1000);
        assert!(matches!(framer.next_item(), Ok(None)));
        framer.buffer().extend_from_slice(b"\r\n\r\n");
        assert!(matches!(framer.next_item(), Ok(Some(StreamItem::Ping))));
        let with_body = REGISTER.replace("Content-Length: 0", "Content-Length: 4");
        framer.buffer().extend_from_slice(with_body.as_bytes());
        assert!(matches!(framer.next_item(), Ok(None)));
        framer.buffer().extend_from_slice(b"abcdREGI");
        let Ok(Some(StreamItem::Message(Ok(Message::Request(r))))) = framer.next_item() else {
            panic!("expected a request");
        };
        assert_eq!(&r.body[..], b"abcd");
        assert_eq!(framer.buffered(), 4);

        let mut framer = Framer::new(1000);
        framer.buffer().extend_from_slice(
            REGISTER
                .replace("Content-Length: 0", "Content-Length: -1")
                .as_bytes(),
        );
        assert!(matches!(framer.next_item(), Err(FramingError::Invalid(_))));
        let mut framer = Framer::new(1000);
        framer.buffer().extend_from_slice(&[b'x'; 1001]);
        assert!(matches!(
            framer.next_item(),
            Err(FramingError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_message_dribbled_a_byte_at_a_time_frames_as_a_whole() {
        let with_body = REGISTER.replace("Content-Length: 0", "Content-Length: 4") + "abcd";
        let mut framer = Framer::new(1000);
        let mut items = Vec::new();
        for &byte in with_body.as_bytes() {
            framer.buffer().extend_from_slice(&[byte]);
            while let Some(item) = framer.next_item().expect("framing holds") {
                items.push(item);
            }
        }
        let [StreamItem::Message(Ok(Message::Request(r)))] = &items[..] else {
            panic!("one request expected: {items:?}");
        };
        assert_eq!(&r.body[..], b"abcd");
        assert_eq!(framer.buffered(), 0);
    }
}
