//! RFC 4475 and RFC 5118 torture messages through the parser: each valid one parses (and
//! prints back to a message that parses the same), each invalid one is rejected with the status
//! the RFC prescribes, or dropped when it is a response.
//!
//! The messages are read from `shared/reference/sip-torture/` beside the checkout.

use std::path::PathBuf;

use bytes::Bytes;
use switchboard_sip::{
    Framer, HeaderName, Host, Message, Method, ParseErrorKind, StreamItem, Uri, header::Contact,
    parse_datagram,
};

fn torture_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../shared/reference/sip-torture")
}

fn load(name: &str) -> Bytes {
    let path = torture_dir().join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn parses(name: &str) -> Message {
    let m = parse_datagram(load(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let printed = m.to_bytes();
    let again = parse_datagram(printed.clone())
        .unwrap_or_else(|e| panic!("{name} printed does not parse: {e}\n{printed:?}"));
    assert_eq!(again, m, "{name}: print and parse changed the message");
    assert_eq!(again.to_bytes(), printed, "{name}: printing is not stable");
    m
}

fn request(name: &str) -> switchboard_sip::Request {
    match parses(name) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{name}: expected a request"),
    }
}

/// The status the parser prescribes for an invalid request, which must carry an echo.
fn rejected(name: &str) -> (u16, ParseErrorKind) {
    let e = parse_datagram(load(name)).expect_err(name);
    assert!(
        e.echo.is_some(),
        "{name}: a rejected request can be answered"
    );
    (e.status(), e.kind)
}

const VALID_4475: &[&str] = &[
    "wsinv",
    "lwsdisp",
    "longreq",
    "transports",
    "unreason",
    "noreason",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "dblreq",
    "semiuri",
    "mpart01",
    "inv2543",
    "cparam01",
    "cparam02",
    "regescrt",
    "baddate",
    "badbranch",
    "bcast",
    "bext01",
    "invut",
    "novelsc",
    "unkscm",
    "unksm2",
    "regaut01",
    "zeromf",
    "sdp01",
];

const INVALID_4475: &[&str] = &[
    "badinv01",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "regbadct",
    "badaspec",
    "baddn",
    "mismatch01",
    "scalar02",
    "insuf",
    "multi01",
    "clerr",
    "ncl",
    "mcl01",
    "lwsstart",
    "trws",
    "escruri",
    "mismatch02",
];

const VALID_5118: &[&str] = &[
    "ipv6-good",
    "ipv6-correct-abnf-2-colons",
    "ipv6-bug-abnf-3-colons",
    "port-unambiguous",
    "port-ambiguous",
    "via-received-param-with-delim",
    "via-received-param-no-delim",
    "ipv6-in-sdp",
    "mult-ip-in-header",
    "mult-ip-in-sdp",
    "ipv4-mapped-ipv6",
];

#[test]
fn every_torture_file_is_classified() {
    let mut known: Vec<String> = VALID_4475
        .iter()
        .chain(INVALID_4475)
        .chain(&["badvers", "scalarlg", "bigcode"])
        .map(|n| format!("rfc4475/{n}.dat"))
        .chain(VALID_5118.iter().map(|n| format!("rfc5118/{n}.dat")))
        .chain(["rfc5118/ipv6-bad.dat".to_owned()])
        .collect();
    known.sort();
    let mut found = Vec::new();
    for dir in ["rfc4475", "rfc5118"] {
        for entry in std::fs::read_dir(torture_dir().join(dir)).expect("torture dir") {
            let name = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8");
            found.push(format!("{dir}/{name}"));
        }
    }
    found.sort();
    assert_eq!(found, known);
}

#[test]
fn valid_messages_parse_and_round_trip() {
    for name in VALID_4475 {
        parses(&format!("rfc4475/{name}.dat"));
    }
    for name in VALID_5118 {
        parses(&format!("rfc5118/{name}.dat"));
    }
}

#[test]
fn invalid_requests_get_400() {
    for name in INVALID_4475 {
        assert_eq!(rejected(&format!("rfc4475/{name}.dat")).0, 400, "{name}");
    }
    assert_eq!(rejected("rfc5118/ipv6-bad.dat").0, 400);
}

#[test]
fn specific_rejections() {
    let kind = |n: &str| rejected(&format!("rfc4475/{n}.dat")).1;
    assert_eq!(kind("mismatch01"), ParseErrorKind::CSeqMethod);
    assert_eq!(kind("mismatch02"), ParseErrorKind::CSeqMethod);
    assert_eq!(kind("clerr"), ParseErrorKind::BodyTruncated);
    assert_eq!(kind("ncl"), ParseErrorKind::ContentLength);
    assert_eq!(kind("mcl01"), ParseErrorKind::ContentLength);
    assert_eq!(kind("insuf"), ParseErrorKind::Missing("From"));
    assert_eq!(kind("multi01"), ParseErrorKind::Repeated("From"));
    assert_eq!(kind("ltgtruri"), ParseErrorKind::RequestUri);
    assert_eq!(kind("escruri"), ParseErrorKind::RequestUri);
    assert_eq!(kind("lwsruri"), ParseErrorKind::StartLine);
    assert_eq!(kind("lwsstart"), ParseErrorKind::StartLine);
    assert_eq!(kind("trws"), ParseErrorKind::StartLine);
    assert_eq!(
        rejected("rfc4475/badvers.dat"),
        (505, ParseErrorKind::Version)
    );
}

#[test]
fn invalid_responses_are_dropped() {
    for name in ["scalarlg", "bigcode"] {
        let e = parse_datagram(load(&format!("rfc4475/{name}.dat"))).expect_err(name);
        assert!(e.echo.is_none(), "{name}: nothing to answer");
    }
}

#[test]
fn wsinv_values_are_unfolded() {
    let r = request("rfc4475/wsinv.dat");
    let h = &r.headers;
    assert_eq!(h.max_forwards().and_then(Result::ok), Some(68));
    let cseq = h.cseq().expect("cseq").expect("valid");
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias: Vec<_> = h.vias().map(|v| v.expect("via")).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(
        h.to().expect("to").expect("valid").tag(),
        Some("1918181833n")
    );
    assert_eq!(
        h.get(&HeaderName::Other("NewFangledHeader".into()))
            .map(|v| &**v),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(h.get(&HeaderName::Subject).map(|v| &**v), Some(""));
    let contact = h.contacts().next().expect("contact").expect("valid");
    assert_eq!(contact.q(), Some(330));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn odd_methods_uris_and_headers() {
    let r = request("rfc4475/intmeth.dat");
    assert_eq!(
        r.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    let r = request("rfc4475/esc02.dat");
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_eq!(r.headers.count(&HeaderName::Contact), 2);
    assert_eq!(r.headers.count(&HeaderName::Other("C%6Fntact".into())), 1);
    let r = request("rfc4475/semiuri.dat");
    let uri = r.uri.as_sip().expect("sip");
    assert_eq!(uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert!(uri.params.is_empty());
    let r = request("rfc4475/escnull.dat");
    assert_eq!(r.headers.contacts().count(), 2);
    let r = request("rfc4475/unkscm.dat");
    assert_eq!(r.uri.scheme(), "nobodyKnowsThisScheme");
    let r = request("rfc4475/regescrt.dat");
    let Some(Ok(Contact::Addr(c))) = r.headers.contacts().next() else {
        panic!("contact");
    };
    assert_eq!(
        c.uri.as_sip().and_then(|u| u.headers.as_deref()),
        Some("Route=%3Csip:sip.example.com%3E")
    );
}

#[test]
fn bodies_follow_content_length() {
    let r = request("rfc4475/dblreq.dat");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    let r = request("rfc4475/mpart01.dat");
    let len: usize = r
        .headers
        .get(&HeaderName::ContentLength)
        .expect("cl")
        .parse()
        .expect("n");
    assert_eq!(r.body.len(), len);
    assert!(r.body.contains(&0), "the body keeps its NUL bytes");
    let r = request("rfc4475/inv2543.dat");
    assert!(!r.headers.contains(&HeaderName::ContentLength));
    assert!(r.body.starts_with(b"v=0"));
}

#[test]
fn ipv6_references() {
    let r = request("rfc5118/port-ambiguous.dat");
    let uri = r.uri.as_sip().expect("sip");
    assert_eq!(
        uri.host,
        Host::Ipv6("2001:db8::10:5070".parse().expect("ip"))
    );
    assert_eq!(uri.port, None);
    let r = request("rfc5118/port-unambiguous.dat");
    assert_eq!(r.uri.as_sip().expect("sip").port, Some(5070));
    let r = request("rfc5118/ipv6-bug-abnf-3-colons.dat");
    assert_eq!(
        r.uri.as_sip().expect("sip").host,
        Host::Ipv6("2001:db8::192.0.2.1".parse().expect("ip"))
    );
    for name in [
        "via-received-param-with-delim",
        "via-received-param-no-delim",
    ] {
        let r = request(&format!("rfc5118/{name}.dat"));
        let via = r.headers.top_via().expect("via").expect("valid");
        assert_eq!(via.received(), Some("2001:db8::9:255".parse().expect("ip")));
    }
    let r = request("rfc5118/mult-ip-in-header.dat");
    assert_eq!(r.headers.vias().count(), 3);
    assert!(matches!(Uri::parse_str("sip:[::1]:5060"), Ok(Uri::Sip(_))));
}

/// On a stream, clerr waits for more and ncl and mcl01 break the framing.
#[test]
fn stream_outcomes() {
    let framer = |name: &str| {
        let mut framer = Framer::new(65_536);
        framer.buffer().extend_from_slice(&load(name));
        framer
    };
    assert!(matches!(framer("rfc4475/clerr.dat").next_item(), Ok(None)));
    for name in ["ncl", "mcl01"] {
        let e = framer(&format!("rfc4475/{name}.dat"))
            .next_item()
            .expect_err(name);
        assert!(
            matches!(e, switchboard_sip::FramingError::Invalid(_)),
            "{name}"
        );
    }
    // Two requests back to back on a stream come out one by one.
    let mut both = framer("rfc4475/dblreq.dat");
    let first = both.next_item().expect("framed").expect("complete");
    assert!(
        matches!(first, StreamItem::Message(Ok(Message::Request(ref r))) if r.method == Method::Register)
    );
    let second = both.next_item().expect("framed").expect("complete");
    assert!(
        matches!(second, StreamItem::Message(Ok(Message::Request(ref r))) if r.method == Method::Invite)
    );
}
