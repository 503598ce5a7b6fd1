//! The checks every request meets at the edge, in the order of design.md "SIP behaviour at the
//! edge", as a pure function of the request, the tenants and the node's own identity: OPTIONS
//! to the core first, then Max-Forwards, loops, the Request-URI scheme, Require, the body an
//! INVITE carries, and finally what the node serves: REGISTER for the registrar, a new INVITE
//! for admission and the cluster (requests of calls in progress never get here: the edge hands
//! them to their call first).

use std::sync::Arc;

use switchboard_sip::header::Via;
use switchboard_sip::support::{self, ALLOW};
use switchboard_sip::{HeaderName, Host, Method, Request, Response, Uri};

use crate::tenant::{Directory, Tenant};

/// Who the node is: the hosts and port that address it.
#[derive(Debug, Clone)]
pub struct Core {
    pub hosts: Vec<Host>,
    pub port: u16,
}

impl Core {
    /// Whether `host[:port]` names this node (a tenant's domain counts).
    fn is_me(&self, host: &Host, port: Option<u16>, directory: &Directory) -> bool {
        let port_ok = port.is_none_or(|p| p == self.port);
        match host {
            Host::Domain(d) if directory.by_domain(d).is_some() => true,
            h => port_ok && self.hosts.iter().any(|mine| mine.matches(h)),
        }
    }
}

/// What to do with a request that passed the parser.
#[derive(Debug)]
pub enum Decision {
    /// Answer it here.
    Respond(Response),
    /// A REGISTER for the registrar, in this tenant.
    Register(Arc<Tenant>),
    /// A REGISTER for a domain no tenant has: challenged as a tenant's would be.
    Unserved,
    /// A new call: admission, then the cluster.
    NewCall,
}

/// What to do with `request`. Answers made here carry a To tag of their own; a request handed
/// on gets its tag where it is answered.
pub fn decide(request: &Request, directory: &Directory, core: &Core) -> Decision {
    let respond = |status| Decision::Respond(Response::answering(&request.headers, status));
    let respond_with = |status, name, value: String| {
        Decision::Respond(Response::answering(&request.headers, status).with_header(name, value))
    };
    let sip_uri = request.uri.as_sip();
    let capabilities = || {
        Decision::Respond(
            Response::answering(&request.headers, 200)
                .with_header(HeaderName::Allow, ALLOW)
                .with_header(HeaderName::Accept, "application/sdp"),
        )
    };
    // OPTIONS to the core itself: the keep-alive and health probe of SBCs and phones.
    if request.method == Method::Options
        && let Some(uri) = sip_uri
        && uri.user.is_none()
        && core.is_me(&uri.host, uri.port, directory)
    {
        return capabilities();
    }
    if let Some(Ok(0)) = request.headers.max_forwards() {
        return respond(483);
    }
    // A request that carries this node's own Via has been here before.
    // (The top Via is the sender's: skipped before it is parsed.)
    let looped = request
        .headers
        .values(&HeaderName::Via)
        .skip(1)
        .filter_map(|v| Via::parse(&v).ok())
        .any(|via| {
            core.hosts.iter().any(|h| h.matches(&via.host)) && via.port.unwrap_or(5060) == core.port
        });
    if looped {
        return respond(482);
    }
    if !matches!(request.uri, Uri::Sip(_)) {
        return respond(416);
    }
    let unsupported: Vec<String> = [HeaderName::Require, HeaderName::ProxyRequire]
        .iter()
        .flat_map(|name| request.headers.values(name))
        .filter(|tag| !support::supports(tag))
        .map(|tag| tag.to_string())
        .collect();
    if !unsupported.is_empty() && request.method != Method::Cancel {
        return respond_with(420, HeaderName::Unsupported, unsupported.join(", "));
    }
    if request.method == Method::Invite
        && let Some(status) = invite_body_problem(request)
    {
        return respond_with(status, HeaderName::Accept, "application/sdp".into());
    }
    match &request.method {
        Method::Register => match register_tenant(request, directory, core) {
            Some(tenant) => Decision::Register(tenant.clone()),
            None => Decision::Unserved,
        },
        Method::Cancel => respond(481),
        // OPTIONS to a user is answered by the node, alike for every user and domain (it is
        // not forwarded: the capabilities are the node's, as its Allow header says).
        Method::Options if !request.headers.to_has_tag() => capabilities(),
        Method::Invite if !request.headers.to_has_tag() => Decision::NewCall,
        Method::Other(_) => respond_with(501, HeaderName::Allow, ALLOW.into()),
        _ if request.headers.to_has_tag() => respond(481),
        _ => respond_with(405, HeaderName::Allow, ALLOW.into()),
    }
}

/// 415 for a body that is not SDP (or a multipart that may hold SDP), 406 when the caller
/// accepts no SDP in the answer (RFC 3261 21.4.7, 21.4.13; RFC 4475 invut, sdp01).
fn invite_body_problem(request: &Request) -> Option<u16> {
    if !request.body.is_empty() {
        let content_type = request.headers.get(&HeaderName::ContentType).map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match content_type.as_deref() {
            Some("application/sdp") | Some("multipart/mixed") | Some("multipart/alternative") => {}
            _ => return Some(415),
        }
    }
    let accepts = request
        .headers
        .values(&HeaderName::Accept)
        .collect::<Vec<_>>();
    if !accepts.is_empty()
        && !accepts.iter().any(|a| {
            let media = a
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            matches!(media.as_str(), "application/sdp" | "application/*" | "*/*")
        })
    {
        return Some(406);
    }
    None
}

/// Whether a node that takes no new calls (its event spool past the high-water mark) answers
/// 503 instead of `decision`: to a registration, a new call, and the health probe it would
/// answer 200, so that proxies and SBCs send new calls to other nodes. Calls in progress go on.
pub fn refused_when_full(request: &Request, decision: &Decision) -> bool {
    match decision {
        Decision::Register(_) | Decision::Unserved | Decision::NewCall => true,
        Decision::Respond(r) => request.method == Method::Options && r.status == 200,
    }
}

/// The tenant of a REGISTER: the one whose domain the Request-URI names, or, when it names the
/// node by address, the one of the To domain.
fn register_tenant<'a>(
    request: &Request,
    directory: &'a Directory,
    core: &Core,
) -> Option<&'a Arc<Tenant>> {
    let uri = request.uri.as_sip()?;
    if let Host::Domain(d) = &uri.host
        && let Some(t) = directory.by_domain(d)
    {
        return Some(t);
    }
    if !core.is_me(&uri.host, uri.port, directory) {
        return None;
    }
    match request.headers.to()?.ok()?.uri {
        Uri::Sip(to) => match &to.host {
            Host::Domain(d) => directory.by_domain(d),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchboard_sip::{Message, parse_datagram};

    use super::*;
    use crate::tenant::demo_tenant;

    fn directory() -> Directory {
        Directory::new(&[demo_tenant()]).expect("demo")
    }

    fn core() -> Core {
        Core {
            hosts: vec![Host::Ipv4([127, 0, 0, 1].into())],
            port: 5060,
        }
    }

    fn request(first_line: &str, extra: &str) -> Request {
        let method = first_line.split(' ').next().unwrap_or_default();
        let text = format!(
            "{first_line}\r\nVia: SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
             To: <sip:1001@demo.local>\r\nFrom: <sip:1002@demo.local>;tag=1\r\nCall-ID: x\r\n\
             CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn status(r: &Request) -> u16 {
        match decide(r, &directory(), &core()) {
            Decision::Respond(resp) => resp.status,
            Decision::Register(_) => 0,
            Decision::NewCall => 1,
            Decision::Unserved => 2,
        }
    }

    #[test]
    fn options_to_the_core_is_answered_first() {
        for uri in ["sip:127.0.0.1", "sip:127.0.0.1:5060", "sip:demo.local"] {
            let mut r = request(&format!("OPTIONS {uri} SIP/2.0"), "Require: foo\r\n");
            r.headers.set(HeaderName::MaxForwards, "0");
            assert_eq!(status(&r), 200, "{uri}");
        }
        let Decision::Respond(ok) = decide(
            &request("OPTIONS sip:127.0.0.1 SIP/2.0", ""),
            &directory(),
            &core(),
        ) else {
            panic!("respond");
        };
        assert_eq!(
            ok.headers.get(&HeaderName::Allow).map(|a| &**a),
            Some(ALLOW)
        );
        assert!(
            ok.headers.to_has_tag(),
            "an answer of the edge carries its own To tag"
        );
        // To a user, known or not, in a domain served or not: alike.
        for uri in [
            "sip:1001@demo.local",
            "sip:nobody@demo.local",
            "sip:1001@other.example",
        ] {
            let options = request(&format!("OPTIONS {uri} SIP/2.0"), "");
            let Decision::Respond(r) = decide(&options, &directory(), &core()) else {
                panic!("respond");
            };
            assert_eq!(r.status, 200, "{uri}");
            assert_eq!(r.headers.get(&HeaderName::Allow).map(|a| &**a), Some(ALLOW));
        }
    }

    #[test]
    fn a_full_node_refuses_registrations_new_calls_and_its_health_probe() {
        let refused = |r: &Request| refused_when_full(r, &decide(r, &directory(), &core()));
        let register = request(
            "REGISTER sip:demo.local SIP/2.0",
            "Contact: <sip:1001@10.0.0.9:5062>\r\n",
        );
        assert!(refused(&register));
        assert!(refused(&request("INVITE sip:1001@demo.local SIP/2.0", "")));
        assert!(refused(&request("OPTIONS sip:127.0.0.1 SIP/2.0", "")));
        // What the edge refuses anyway stays as it is.
        assert!(!refused(&request("OPTIONS tel:+1234 SIP/2.0", "")));
    }

    #[test]
    fn checks_in_order() {
        let mut zero = request("OPTIONS sip:1001@demo.local SIP/2.0", "");
        zero.headers.set(HeaderName::MaxForwards, "0");
        assert_eq!(status(&zero), 483);
        let looped = request(
            "INVITE sip:1001@demo.local SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKme\r\n",
        );
        assert_eq!(status(&looped), 482);
        assert_eq!(status(&request("OPTIONS tel:+1234 SIP/2.0", "")), 416);
        assert_eq!(status(&request("OPTIONS urn:x:y SIP/2.0", "")), 416);
        let bext = request(
            "OPTIONS sip:1001@demo.local SIP/2.0",
            "Require: nothingSupportsThis, nothingSupportsThisEither\r\n",
        );
        let Decision::Respond(r) = decide(&bext, &directory(), &core()) else {
            panic!("respond");
        };
        assert_eq!(r.status, 420);
        assert_eq!(
            r.headers.get(&HeaderName::Unsupported).map(|v| &**v),
            Some("nothingSupportsThis, nothingSupportsThisEither")
        );
    }

    #[test]
    fn invite_bodies() {
        let mut invut = request(
            "INVITE sip:1001@demo.local SIP/2.0",
            "Content-Type: application/unknownformat\r\n",
        );
        invut.body = Bytes::from_static(b"<audio/>");
        assert_eq!(status(&invut), 415);
        let mut sdp01 = request(
            "INVITE sip:1001@demo.local SIP/2.0",
            "Content-Type: application/sdp\r\nAccept: text/nobodyKnowsThis\r\n",
        );
        sdp01.body = Bytes::from_static(b"v=0\r\n");
        assert_eq!(status(&sdp01), 406);
        let mut fine = request(
            "INVITE sip:1001@demo.local SIP/2.0",
            "Content-Type: application/sdp\r\n",
        );
        fine.body = Bytes::from_static(b"v=0\r\n");
        assert_eq!(status(&fine), 1, "a new call");
    }

    #[test]
    fn dispatch() {
        assert_eq!(status(&request("REGISTER sip:demo.local SIP/2.0", "")), 0);
        assert_eq!(status(&request("REGISTER sip:127.0.0.1 SIP/2.0", "")), 0);
        assert_eq!(status(&request("REGISTER sip:example.com SIP/2.0", "")), 2);
        assert_eq!(
            status(&request("CANCEL sip:1001@demo.local SIP/2.0", "")),
            481
        );
        assert_eq!(status(&request("FOO sip:1001@demo.local SIP/2.0", "")), 501);
        let mut bye = request("BYE sip:1001@demo.local SIP/2.0", "");
        bye.headers
            .set(HeaderName::To, "<sip:1001@demo.local>;tag=abc");
        assert_eq!(status(&bye), 481);
        assert_eq!(
            status(&request("MESSAGE sip:1001@demo.local SIP/2.0", "")),
            405
        );
        assert_eq!(
            status(&request("OPTIONS sip:1001@demo.local SIP/2.0", "")),
            200
        );
    }
}
