//! Every RFC 4475 and RFC 5118 torture message sent to a running switchboard, over UDP and over
//! TCP, with the outcome the RFCs prescribe for a node that is a registrar for `example.com`
//! and takes calls: valid messages get their application answer (never 400: a new INVITE from
//! an address that is no trunk is challenged with 407, and a REGISTER with 401, whether or not
//! it names the tenant's domain; OPTIONS to a user is answered 200 with the node's Allow),
//! invalid ones 400 (505 for the unknown version), and responses or unroutable junk get
//! nothing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Server, Udp, torture_dir};

const CONFIG: &str = r#"
[[tenants]]
name = "torture"
domain = "example.com"

[[tenants.dns]]
number = "user"
password = "torture"
"#;

/// The status each message gets, or `None` when it must get no answer.
const OUTCOMES: &[(&str, Option<u16>)] = &[
    // Valid: parsed, then answered by the edge, the registrar or admission.
    // Its To carries a tag: an in-dialog request for a dialog that does not exist.
    ("rfc4475/wsinv", Some(481)),
    ("rfc4475/lwsdisp", Some(200)),
    ("rfc4475/longreq", Some(407)),
    ("rfc4475/transports", Some(200)),
    ("rfc4475/intmeth", Some(501)),
    ("rfc4475/esc01", Some(407)),
    ("rfc4475/escnull", Some(401)),
    ("rfc4475/esc02", Some(501)),
    ("rfc4475/dblreq", Some(401)),
    ("rfc4475/semiuri", Some(200)),
    ("rfc4475/mpart01", Some(405)),
    ("rfc4475/inv2543", Some(407)),
    ("rfc4475/cparam01", Some(401)),
    ("rfc4475/cparam02", Some(401)),
    ("rfc4475/regescrt", Some(401)),
    ("rfc4475/baddate", Some(407)),
    ("rfc4475/badbranch", Some(200)),
    ("rfc4475/bext01", Some(420)),
    ("rfc4475/invut", Some(415)),
    ("rfc4475/novelsc", Some(416)),
    ("rfc4475/unkscm", Some(416)),
    ("rfc4475/unksm2", Some(400)),
    ("rfc4475/regaut01", Some(401)),
    ("rfc4475/zeromf", Some(483)),
    ("rfc4475/sdp01", Some(406)),
    // Responses that match no transaction of ours: dropped.
    ("rfc4475/unreason", None),
    ("rfc4475/noreason", None),
    ("rfc4475/bcast", None),
    ("rfc4475/scalarlg", None),
    ("rfc4475/bigcode", None),
    // Invalid requests.
    ("rfc4475/badinv01", Some(400)),
    ("rfc4475/quotbal", Some(400)),
    ("rfc4475/ltgtruri", Some(400)),
    ("rfc4475/lwsruri", Some(400)),
    ("rfc4475/regbadct", Some(400)),
    ("rfc4475/badaspec", Some(400)),
    ("rfc4475/baddn", Some(400)),
    ("rfc4475/mismatch01", Some(400)),
    ("rfc4475/mismatch02", Some(400)),
    ("rfc4475/scalar02", Some(400)),
    ("rfc4475/insuf", Some(400)),
    ("rfc4475/multi01", Some(400)),
    ("rfc4475/clerr", Some(400)),
    ("rfc4475/ncl", Some(400)),
    ("rfc4475/mcl01", Some(400)),
    ("rfc4475/lwsstart", Some(400)),
    ("rfc4475/trws", Some(400)),
    ("rfc4475/escruri", Some(400)),
    ("rfc4475/badvers", Some(505)),
    // RFC 5118: IPv6 references parse; the addresses are not this node's.
    ("rfc5118/ipv6-good", Some(401)),
    ("rfc5118/ipv6-bad", Some(400)),
    ("rfc5118/ipv6-correct-abnf-2-colons", Some(200)),
    ("rfc5118/ipv6-bug-abnf-3-colons", Some(200)),
    ("rfc5118/port-ambiguous", Some(401)),
    ("rfc5118/port-unambiguous", Some(401)),
    ("rfc5118/via-received-param-with-delim", Some(481)),
    ("rfc5118/via-received-param-no-delim", Some(200)),
    ("rfc5118/ipv6-in-sdp", Some(407)),
    ("rfc5118/mult-ip-in-header", Some(481)),
    ("rfc5118/mult-ip-in-sdp", Some(407)),
    ("rfc5118/ipv4-mapped-ipv6", Some(407)),
];

fn load(name: &str) -> Vec<u8> {
    std::fs::read(torture_dir().join(format!("{name}.dat"))).expect("torture message")
}

#[test]
fn every_message_is_covered() {
    let mut count = 0;
    for dir in ["rfc4475", "rfc5118"] {
        for entry in std::fs::read_dir(torture_dir().join(dir)).expect("dir") {
            let file = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("name");
            let name = format!("{dir}/{}", file.trim_end_matches(".dat"));
            assert!(
                OUTCOMES.iter().any(|(n, _)| *n == name),
                "{name} has no expected outcome"
            );
            count += 1;
        }
    }
    assert_eq!(count, OUTCOMES.len());
}

#[test]
fn over_udp() {
    let server = Server::start_with_config(Some(CONFIG), &[]);
    let mut wrong = Vec::new();
    for (name, expected) in OUTCOMES {
        let udp = Udp::new(server.sip);
        udp.send(&load(name));
        let got = udp.recv_status_within(Duration::from_millis(if expected.is_some() {
            3000
        } else {
            300
        }));
        if got != *expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", server.log_text());
}

/// The statuses of the responses on a fresh connection within `wait`, and whether the server
/// closed it.
fn over_one_connection(server: &Server, bytes: &[u8], wait: Duration) -> (Vec<u16>, bool) {
    let mut conn = TcpStream::connect(server.sip).expect("connect");
    conn.write_all(bytes).expect("write");
    conn.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut closed = false;
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                // After the first response, wait a little for more (dblreq holds two requests).
                conn.set_read_timeout(Some(Duration::from_millis(150)))
                    .expect("timeout");
            }
            Err(_) => break,
        }
    }
    let statuses = buf
        .windows(8)
        .enumerate()
        .filter(|(i, w)| *w == b"SIP/2.0 " && (*i == 0 || buf[i - 1] == b'\n'))
        .filter_map(|(i, _)| support::status_line(&buf[i..]))
        .collect();
    (statuses, closed)
}

#[test]
fn over_tcp() {
    let server = Server::start_with_config(Some(CONFIG), &[]);
    let mut wrong = Vec::new();
    for (name, expected) in OUTCOMES {
        // On a stream, clerr's body never arrives: the server waits (and its idle timer will
        // close the connection), it does not answer.
        let expected = if *name == "rfc4475/clerr" {
            None
        } else {
            *expected
        };
        let wait = Duration::from_millis(if expected.is_some() { 3000 } else { 300 });
        let (got, closed) = over_one_connection(&server, &load(name), wait);
        let fine = match expected {
            Some(status) => got.contains(&status) && !got.contains(&400) || got == [400],
            None => got.is_empty(),
        };
        if !fine {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
        // A Content-Length that cannot frame the stream ends the connection after the 400.
        if matches!(*name, "rfc4475/ncl" | "rfc4475/mcl01") && !closed {
            wrong.push(format!("{name}: the connection stayed open"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", server.log_text());
}
