//! The call's sans-io tests: a [`Run`] drives one call on simulated time, playing the SBC and
//! the phones with parsed messages, and keeps what the call sent and reported. One file per
//! part of the call, as the call's own files.

mod control;
mod direct;
mod monitor;
mod recording;
mod routing;
mod snapshot;
mod timers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Message, Method, Request, Response, parse_datagram};

use super::{Call, Local, Output, ToOrs, with_body};
use crate::messages::call_state::CallEvent;
use crate::messages::registrar::Binding;
use crate::messages::sip_cluster::{Control, ControlError, NewDialog, Origin};
use crate::sip_cluster::{ClusterConfig, DnCalls};
use crate::tenant::{Directory, Tenant, demo_tenant};

pub(in crate::sip_cluster) const SBC: &str = "127.0.0.2:5070";

pub(super) const OFFER: &str = "v=0\r\no=sbc 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

pub(in crate::sip_cluster) fn tenant(options: &[(&str, &str)]) -> Arc<Tenant> {
    let mut c = demo_tenant();
    for (k, v) in options {
        c.dns[0].options.insert((*k).into(), (*v).into());
    }
    compiled(c)
}

/// The demo tenant `c`, changed by the test, as the node runs it.
pub(super) fn compiled(c: crate::tenant::TenantConfig) -> Arc<Tenant> {
    Directory::new(&[c])
        .expect("demo")
        .by_name("demo")
        .expect("demo")
        .clone()
}

pub(super) fn message(text: &str) -> Message {
    parse_datagram(Bytes::from(
        text.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
    ))
    .expect("parses")
}

pub(in crate::sip_cluster) fn sbc_invite(number: &str) -> Request {
    sbc_invite_with(number, "")
}

/// The SBC's INVITE with `extra` header lines.
pub(super) fn sbc_invite_with(number: &str, extra: &str) -> Request {
    let text = format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {SBC};branch=z9hG4bKa1\r\n{extra}\
         Max-Forwards: 70\r\nFrom: <sip:+15551234@127.0.0.2>;tag=sbc\r\nTo: <sip:{number}@127.0.0.1>\r\n\
         Call-ID: a-leg\r\nCSeq: 1 INVITE\r\nContact: <sip:sbc@{SBC}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    );
    match message(&text) {
        Message::Request(r) => r,
        other => panic!("{other:?}"),
    }
}

pub(super) struct Run {
    pub(super) call: Call,
    pub(super) now: Instant,
    /// Every message the call sent, and where.
    pub(super) sent: Vec<(SocketAddr, Message)>,
    pub(super) events: Vec<CallEvent>,
    /// What the call asked of or told its routing session.
    pub(super) routing: Vec<ToOrs>,
}

impl Run {
    pub(super) fn start(tenant: Arc<Tenant>, dn_calls: DnCalls, number: &str) -> Self {
        Self::start_with(tenant, dn_calls, sbc_invite(number))
    }

    pub(super) fn start_with(tenant: Arc<Tenant>, dn_calls: DnCalls, request: Request) -> Self {
        Self::configured(tenant, dn_calls, request, ClusterConfig::default())
    }

    pub(super) fn configured(
        tenant: Arc<Tenant>,
        dn_calls: DnCalls,
        request: Request,
        config: ClusterConfig,
    ) -> Self {
        let now = Instant::now();
        let call = Call::start(
            Arc::from("call-1"),
            NewDialog {
                tenant,
                origin: Origin::Trunk("carrier".into()),
                request,
                source: SBC.parse().expect("addr"),
                transport: Transport::Udp,
                proxy: None,
            },
            Local {
                addrs: Arc::new(super::Addrs {
                    udp: "127.0.0.1:5060".parse().expect("addr"),
                    tcp: "127.0.0.1:5060".parse().expect("addr"),
                    tls: None,
                    ws: None,
                    wss: None,
                }),
                node: "sbtest".into(),
                key: 1,
            },
            Arc::new(config),
            dn_calls,
            now,
        );
        let mut run = Self {
            call,
            now,
            sent: Vec::new(),
            events: Vec::new(),
            routing: Vec::new(),
        };
        run.drain();
        run
    }

    pub(super) fn drain(&mut self) {
        while let Some(out) = self.call.poll_output() {
            match out {
                Output::Send { dest, bytes, .. } => self
                    .sent
                    .push((dest, parse_datagram(bytes).expect("we send valid SIP"))),
                Output::Event(e) => self.events.push(*e),
                Output::Routing(r) => self.routing.push(r),
                Output::Locate { .. } | Output::Replace { .. } => {}
            }
        }
    }

    pub(super) fn located(&mut self, phones: &[&str]) {
        self.located_at("1001", phones);
    }

    /// DN `dn` is found registered at `phones`.
    pub(super) fn located_at(&mut self, dn: &str, phones: &[&str]) {
        let bindings = phones
            .iter()
            .map(|addr| Binding {
                aor: format!("sip:{dn}@demo.local"),
                dn: dn.into(),
                contact: format!("sip:{dn}@{addr}"),
                params: String::new(),
                key: String::new(),
                q: None,
                expires_at_ms: u64::MAX,
                call_id: "reg".into(),
                cseq: 1,
                source: addr.parse().expect("addr"),
                transport: "udp".into(),
                user_agent: None,
            })
            .collect();
        self.call.located(Ok(bindings), self.now);
        self.drain();
    }

    /// The requests of `method` sent to `dest` so far.
    pub(super) fn take(&mut self, dest: &str, method: Method) -> Vec<Request> {
        let dest: SocketAddr = dest.parse().expect("addr");
        self.sent
            .iter()
            .filter_map(|(d, m)| match m {
                Message::Request(r) if *d == dest && r.method == method => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Final statuses sent to the SBC.
    pub(super) fn finals_to_sbc(&self) -> Vec<u16> {
        let sbc: SocketAddr = SBC.parse().expect("addr");
        self.sent
            .iter()
            .filter_map(|(d, m)| match m {
                Message::Response(r) if *d == sbc && r.status >= 200 => Some(r.status),
                _ => None,
            })
            .collect()
    }

    pub(super) fn respond(&mut self, request: &Request, status: u16, tag: &str) {
        let mut r = Response::to_request(&request.headers, status).with_to_tag(tag);
        r = r.with_header(HeaderName::Contact, "<sip:1001@192.0.2.9>");
        let from = self.call.legs.b[0].peer;
        self.call
            .receive(Message::Response(r), from, Transport::Udp, self.now);
        self.drain();
    }

    pub(super) fn kinds(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.kind.name()).collect()
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.call.handle_timeout(self.now);
        self.drain();
    }
}

/// A call from an SBC that sends `extra` headers, answered by one phone with `answer`
/// headers and ACKed; probes off, so that only session timers act.
pub(super) fn timed_call(extra: &str, answer: &[(HeaderName, &str)]) -> Run {
    let config = ClusterConfig {
        probe_interval: Duration::ZERO,
        ..ClusterConfig::default()
    };
    let invite = sbc_invite_with("1001", extra);
    let mut run = Run::configured(tenant(&[]), DnCalls::default(), invite, config);
    run.located(&["192.0.2.9:5062"]);
    let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
    let mut ok = Response::to_request(&invite.headers, 200)
        .with_to_tag("ph")
        .with_header(HeaderName::Contact, "<sip:1001@192.0.2.9:5062>");
    for (name, value) in answer {
        ok = ok.with_header(name.clone(), *value);
    }
    ok = with_body(ok, &invite.headers, invite.body.clone());
    run.phone_sends(Message::Response(ok));
    run.sbc_request("ACK", 1, "");
    run
}

impl Run {
    pub(super) fn phone_sends(&mut self, m: Message) {
        let phone = self.call.legs.b[0].peer;
        self.call.receive(m, phone, Transport::Udp, self.now);
        self.drain();
    }

    /// The last final response sent to the SBC.
    pub(super) fn last_final_to_sbc(&self) -> Response {
        let sbc: SocketAddr = SBC.parse().expect("addr");
        self.sent
            .iter()
            .rev()
            .find_map(|(d, m)| match m {
                Message::Response(r) if *d == sbc && r.status >= 200 => Some(r.clone()),
                _ => None,
            })
            .expect("a final response to the SBC")
    }

    /// The phone at 192.0.2.9:5062 answers the call's INVITE (tag `ph`), and the SBC ACKs;
    /// the phone's answer.
    pub(super) fn answer_at_phone(&mut self) -> String {
        let invite = self.take("192.0.2.9:5062", Method::Invite).remove(0);
        let answer = OFFER.replace("sbc", "phone").replace("4000", "5000");
        self.phone_sends(Message::Response(
            ok_with(&invite, "ph", &answer)
                .with_header(HeaderName::Contact, "<sip:1001@192.0.2.9:5062>"),
        ));
        self.sbc_request("ACK", 1, "");
        answer
    }

    /// A request from the SBC within its dialog, with `extra` header lines.
    pub(super) fn sbc_request(&mut self, method: &str, seq: u32, extra: &str) {
        let text = format!(
            "{method} sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {SBC};branch=z9hG4bK{method}{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+15551234@127.0.0.2>;tag=sbc\r\n\
             To: <sip:1001@127.0.0.1>;tag={}\r\nCall-ID: a-leg\r\nCSeq: {seq} {method}\r\n\
             {extra}Content-Length: 0\r\n\r\n",
            self.call.local.addrs.udp, self.call.legs.a.tag
        );
        self.call.receive(
            message(&text),
            SBC.parse().expect("addr"),
            Transport::Udp,
            self.now,
        );
        self.drain();
    }
}

/// The 200 a party gives a request of the call's, with `body`.
pub(super) fn ok_with(request: &Request, tag: &str, body: &str) -> Response {
    let mut ok = Response::to_request(&request.headers, 200).with_to_tag(tag);
    if !body.is_empty() {
        ok = with_body(ok, &request.headers, Bytes::from(body.to_owned()));
    }
    ok
}

/// A call from an SBC that requires 100rel, to one phone that sends 183 with early media.
pub(super) fn reliable_call() -> (Run, Request) {
    let invite = sbc_invite_with("1001", "Require: 100rel\r\n");
    let ring = tenant(&[("no-answer-timeout", "60")]);
    let mut run = Run::start_with(ring, DnCalls::default(), invite);
    run.located(&["192.0.2.9:5062"]);
    let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
    let early = with_body(
        Response::to_request(&invite.headers, 183)
            .with_to_tag("ph")
            .with_header(HeaderName::Contact, "<sip:1001@192.0.2.9:5062>"),
        &invite.headers,
        invite.body.clone(),
    );
    run.phone_sends(Message::Response(early));
    (run, invite)
}

impl Run {
    pub(super) fn to_sbc(&self, status: u16) -> Vec<Response> {
        let sbc: SocketAddr = SBC.parse().expect("addr");
        self.sent
            .iter()
            .filter_map(|(d, m)| match m {
                Message::Response(r) if *d == sbc && r.status == status => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn prack(&mut self, rseq: u32) {
        self.sbc_request("PRACK", rseq + 1, &format!("RAck: {rseq} 1 INVITE\r\n"));
    }
}
