//! Raw SIP peers for end-to-end tests: an SBC on 127.0.0.2 and phones that register, each a
//! UDP socket that sends what a test writes and reads what comes back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::{HeaderName, Message, Method, Request, Response, parse_datagram};

use super::{Server, Udp};

/// One end of SIP over UDP, toward the server under test.
pub struct Peer {
    pub socket: std::net::UdpSocket,
    pub server: std::net::SocketAddr,
}

impl Peer {
    pub fn sbc(server: &Server) -> Self {
        Self::on(
            std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2"),
            server,
        )
    }

    pub fn on(socket: std::net::UdpSocket, server: &Server) -> Self {
        Self {
            socket,
            server: server.sip,
        }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    pub fn send(&self, text: &str) {
        self.socket
            .send_to(text.as_bytes(), self.server)
            .expect("send");
    }

    pub fn send_bytes(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).expect("send");
    }

    /// The next message within `within`.
    pub fn next(&self, within: Duration) -> Option<Message> {
        let end = Instant::now() + within;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let n = self.socket.recv(&mut buf).ok()?;
            if let Ok(m) = parse_datagram(Bytes::copy_from_slice(&buf[..n])) {
                return Some(m);
            }
        }
    }

    /// The next final response within `within`, provisional ones skipped.
    pub fn final_response(&self, within: Duration) -> Option<Response> {
        let end = Instant::now() + within;
        loop {
            match self.next(end.checked_duration_since(Instant::now())?)? {
                Message::Response(r) if r.status >= 200 => return Some(r),
                _ => {}
            }
        }
    }

    /// The next request of `method` within `within`, anything else skipped.
    pub fn request(&self, method: Method, within: Duration) -> Option<Request> {
        let end = Instant::now() + within;
        loop {
            match self.next(end.checked_duration_since(Instant::now())?)? {
                Message::Request(r) if r.method == method => return Some(r),
                _ => {}
            }
        }
    }

    /// Answers `request` with `status`, adding a To tag, a Contact, the request's
    /// Record-Route (RFC 3261 12.1.1) and `sdp` when given.
    pub fn answer(&self, request: &Request, status: u16, sdp: Option<&str>) -> Response {
        let mut r = Response::to_request(&request.headers, status)
            .with_to_tag("peer")
            .with_header(
                HeaderName::Contact,
                format!("<sip:peer@{}>", self.socket.local_addr().expect("addr")),
            );
        for route in request.headers.get_all(&HeaderName::RecordRoute) {
            r = r.with_header(HeaderName::RecordRoute, route.clone());
        }
        if let Some(sdp) = sdp {
            r = r.with_header(HeaderName::ContentType, "application/sdp");
            r.body = Bytes::from(sdp.to_owned());
        }
        self.send_bytes(&r.to_bytes());
        r
    }
}

pub fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// An INVITE from the SBC peer on `port` to `number`, with `body` as SDP.
pub fn sbc_invite(port: u16, server: &Server, number: &str, call_id: &str, body: &str) -> String {
    format!(
        "INVITE sip:{number}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550001111@127.0.0.2>;tag=sbc\r\n\
         To: <sip:{number}@{sip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:sbc@127.0.0.2:{port}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        sip = server.sip,
        len = body.len()
    )
}

/// The SBC's CANCEL of its INVITE [`sbc_invite`] on `port`.
pub fn cancel(port: u16, server: &Server, number: &str, call_id: &str) -> String {
    format!(
        "CANCEL sip:{number}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550001111@127.0.0.2>;tag=sbc\r\n\
         To: <sip:{number}@{sip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip,
    )
}

pub fn raw_phone(server: &Server, dn: &str) -> Peer {
    let phone = Udp::new(server.sip);
    assert_eq!(
        super::register_with(&phone, dn, &format!("demo{dn}"), &format!("reg-{dn}")),
        200
    );
    Peer::on(phone.socket, server)
}

/// The SBC calls `dn`; the raw phone rings (180). Returns the INVITE the phone got.
pub fn ringing_call(server: &Server, sbc: &Peer, phone: &Peer, dn: &str, call_id: &str) -> Request {
    sbc.send(&sbc_invite(sbc.port(), server, dn, call_id, &sdp(4000)));
    let invite = phone
        .request(Method::Invite, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the phone is rung\n{}", server.log_text()));
    phone.answer(&invite, 180, None);
    invite
}

/// The SBC calls `dn`; the raw phone answers. Returns the 200 the SBC got.
pub fn answered_call(
    server: &Server,
    sbc: &Peer,
    phone: &Peer,
    dn: &str,
    call_id: &str,
) -> (Request, Response) {
    let invite = ringing_call(server, sbc, phone, dn, call_id);
    phone.answer(&invite, 200, Some(&sdp(5000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("the SBC gets the answer");
    assert_eq!(ok.status, 200);
    (invite, ok)
}

/// An in-dialog request from the SBC within the dialog its 200 `ok` made.
pub fn sbc_in_dialog(
    sbc: &Peer,
    server: &Server,
    ok: &Response,
    call_id: &str,
    method: &str,
    cseq: u32,
    body: &str,
) -> String {
    let to = ok.headers.get(&HeaderName::To).expect("To");
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bK{call_id}{method}{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550001111@127.0.0.2>;tag=sbc\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:sbc@127.0.0.2:{port}>\r\n\
         {content_type}Content-Length: {len}\r\n\r\n{body}",
        sip = server.sip,
        port = sbc.port(),
        len = body.len()
    )
}

impl Peer {
    /// A request from this peer within the dialog that `invite` (which it answered with its
    /// `peer` tag) made: to the INVITE's Contact, From and To swapped, with `extra` header
    /// lines.
    pub fn in_dialog(&self, invite: &Request, method: &str, cseq: u32, extra: &str) -> String {
        let target = invite
            .headers
            .get(&HeaderName::Contact)
            .map(|c| {
                c.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default();
        let from = invite.headers.get(&HeaderName::From).expect("From");
        let to = invite.headers.get(&HeaderName::To).expect("To");
        let call_id = invite.headers.call_id().expect("Call-ID");
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}{cseq}{port}\r\n\
             Max-Forwards: 70\r\nFrom: {to};tag=peer\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:peer@127.0.0.1:{port}>\r\n{extra}Content-Length: 0\r\n\r\n",
            port = self.port(),
        )
    }
}

/// An in-dialog request from the SBC done properly: to the 200's Contact, through its
/// Record-Route (sent to the proxy that recorded it).
pub fn routed_in_dialog(
    sbc: &Peer,
    ok: &Response,
    call_id: &str,
    method: &str,
    cseq: u32,
) -> String {
    let to = ok.headers.get(&HeaderName::To).expect("To");
    let contact = ok.headers.get(&HeaderName::Contact).expect("Contact");
    let target = contact
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("URI");
    let route = ok
        .headers
        .get(&HeaderName::RecordRoute)
        .expect("Record-Route");
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bK{call_id}{method}{cseq}\r\n\
         Route: {route}\r\nMax-Forwards: 70\r\nFrom: <sip:+15550001111@127.0.0.2>;tag=sbc\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        port = sbc.port(),
    )
}

/// A raw peer in a thread of its own: it answers the requests that need no decision (OPTIONS
/// probes, BYE and NOTIFY: 200) and keeps every message it gets, with when, for the test to
/// read; the test sends through [`Answering::sender`].
pub struct Answering {
    got: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Message)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Peer>>,
    sender: Peer,
}

impl Answering {
    pub fn start(peer: Peer) -> Self {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, stopping) = (got.clone(), stop.clone());
        let sender = Peer {
            socket: peer.socket.try_clone().expect("socket"),
            server: peer.server,
        };
        let thread = std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(m) = peer.next(Duration::from_millis(100)) else {
                    continue;
                };
                if let Message::Request(r) = &m
                    && matches!(r.method, Method::Options | Method::Bye | Method::Notify)
                {
                    peer.answer(r, 200, None);
                }
                kept.lock().expect("lock").push((Instant::now(), m));
            }
            peer
        });
        Self {
            got,
            stop,
            thread: Some(thread),
            sender,
        }
    }

    /// Sends from the peer's socket.
    pub fn sender(&self) -> &Peer {
        &self.sender
    }

    /// The requests of `method` got since `since`.
    pub fn requests(&self, since: Instant, method: Method) -> Vec<Request> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|(at, m)| match m {
                Message::Request(r) if *at >= since && r.method == method => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The Via values of each request of `method` got since `since`.
    pub fn vias(&self, since: Instant, method: Method) -> Vec<String> {
        self.requests(since, method)
            .iter()
            .map(|r| {
                r.headers
                    .get_all(&HeaderName::Via)
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect()
    }

    /// The first request of `method` got since `since`, waited for `within`.
    pub fn request(&self, since: Instant, method: Method, within: Duration) -> Option<Request> {
        let end = Instant::now() + within;
        loop {
            if let Some(r) = self.requests(since, method.clone()).into_iter().next() {
                return Some(r);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first final response to a request of `method` got since `since`, waited for
    /// `within`.
    pub fn final_response(
        &self,
        since: Instant,
        method: Method,
        within: Duration,
    ) -> Option<Response> {
        let end = Instant::now() + within;
        loop {
            let found = self
                .got
                .lock()
                .expect("lock")
                .iter()
                .find_map(|(at, m)| match m {
                    Message::Response(r)
                        if *at >= since
                            && r.status >= 200
                            && r.headers
                                .cseq()
                                .and_then(Result::ok)
                                .is_some_and(|c| c.method == method) =>
                    {
                        Some(r.clone())
                    }
                    _ => None,
                });
            if found.is_some() || Instant::now() > end {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(mut self) -> Peer {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("peer thread")
    }
}
