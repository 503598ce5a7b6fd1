//! The SIP edge of a running `switchboard serve` (demo tenant, bindings in memory), spoken to
//! over raw UDP and TCP: what a phone or an SBC sees on the wire.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{Server, Udp, challenges, register, with_credentials};
use switchboard_sip::HeaderName;

fn header(r: &switchboard_sip::Response, name: HeaderName) -> Option<&str> {
    r.headers.get(&name).map(|v| &**v)
}

#[test]
fn health_endpoints_answer() {
    let server = Server::start(&[]);
    let live = support::http_get(server.http, "/livez").expect("http");
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let ready = support::http_get(server.http, "/readyz").expect("http");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let other = support::http_get(server.http, "/nope").expect("http");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
}

/// The HTTP endpoints keep a connection for the next request, and gzip what is worth it for
/// a client that takes gzip.
#[test]
fn http_keeps_connections_open_and_gzips_for_those_who_ask() {
    let server = Server::start(&[]);
    let mut s = support::tcp_from("127.0.0.1", server.http);
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (head, body) = support::read_http_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok\n");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br, gzip\r\n\r\n")
        .expect("write");
    let (head, body) = support::read_http_response(&mut s);
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert!(text.contains("\nswitchboard_calls_active "), "{text}");
    // Without Accept-Encoding, plain text on the same connection.
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (head, body) = support::read_http_response(&mut s);
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("switchboard_calls_active"));
}

/// Every series the Grafana dashboard in `docs/grafana` queries is one the node serves, of
/// the type the query takes it for (a rate of a counter, quantiles of a histogram).
#[test]
fn the_grafana_dashboard_queries_only_series_the_node_serves() {
    let server = Server::start(&[]);
    let path = support::manifest_dir().join("docs/grafana/switchboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["query"].as_str() {
            queries.push(query.to_owned());
        }
    }
    let text = support::http_get(server.http, "/metrics").expect("metrics");
    let types: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("# TYPE ")?.split(' ');
            Some((words.next()?, words.next()?))
        })
        .collect();
    let mut checked = 0;
    for query in &queries {
        let names = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("switchboard_") || w.starts_with("process_"));
        for name in names {
            let (family, kind) = if let Some(f) = name.strip_suffix("_total") {
                (f, "counter")
            } else if let Some(f) = name.strip_suffix("_bucket") {
                (f, "histogram")
            } else {
                (name, "gauge")
            };
            assert_eq!(
                types.get(family).copied(),
                Some(kind),
                "{name} of `{query}` is served as a {kind}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} series checked");
}

/// Clients that hold HTTP connections open sending a request's head a byte at a time
/// (slowloris), or that open connection after connection, take their own share and no more:
/// the node closes them when their time is up, and other clients, the other HTTP port and
/// SIP are answered meanwhile.
#[test]
fn slow_and_greedy_http_clients_starve_no_one() {
    let config = "[http]\nmax_connections_per_source = 8\nhead_timeout_secs = 2\n";
    let server = Server::start_with_config(Some(config), &[]);
    let mut slow: Vec<_> = (0..8)
        .map(|_| {
            let mut s = support::tcp_from("127.0.0.1", server.http);
            s.write_all(b"GET /livez HTTP/1.1\r\nHo").expect("write");
            s
        })
        .collect();
    // A ninth from the same source is closed unanswered.
    let mut greedy = support::tcp_from("127.0.0.1", server.http);
    let _ = greedy.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = greedy.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(
        support::eventually(Duration::from_secs(5), || server
            .log_text()
            .contains("HTTP connections refused")),
        "{}",
        server.log_text()
    );

    // Everyone else is served: another source, the callbacks port, SIP.
    let mut other = support::tcp_from("127.0.0.2", server.http);
    other
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (head, _) = support::read_http_response(&mut other);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let callbacks = support::http_get(server.callbacks, "/callbacks/x").expect("callbacks");
    assert!(callbacks.starts_with("HTTP/1.1 401"), "{callbacks}");
    let udp = Udp::new(server.sip);
    let options = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKslow\r\n\
         Max-Forwards: 70\r\nTo: <sip:{}>\r\nFrom: <sip:probe@sbc>;tag=1\r\nCall-ID: slow1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        server.sip,
        udp.port(),
        server.sip
    );
    assert_eq!(udp.request(options.as_bytes()).status, 200);

    // The slow ones are closed once their head is overdue, and their source served again.
    for s in &mut slow {
        let mut rest = Vec::new();
        let closed =
            s.read_to_end(&mut rest).is_ok() || s.read(&mut [0u8; 1]).is_ok_and(|n| n == 0);
        assert!(closed, "a slow head is cut off");
        assert!(
            !String::from_utf8_lossy(&rest).contains(" 200 "),
            "never answered"
        );
    }
    let again = support::http_get(server.http, "/livez").expect("http");
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

#[test]
fn options_to_the_core_is_a_keepalive() {
    let server = Server::start(&[]);
    let udp = Udp::new(server.sip);
    let options = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKopt1\r\n\
         Max-Forwards: 0\r\nTo: <sip:{}>\r\nFrom: <sip:probe@sbc>;tag=1\r\nCall-ID: opt1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        server.sip,
        udp.port(),
        server.sip
    );
    let r = udp.request(options.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, HeaderName::Allow),
        Some("INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER")
    );
    // The same over TCP.
    let mut tcp = std::net::TcpStream::connect(server.sip).expect("tcp");
    tcp.set_read_timeout(Some(support::WAIT)).expect("timeout");
    let over_tcp = options
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("z9hG4bKopt1", "z9hG4bKopt2");
    tcp.write_all(over_tcp.as_bytes()).expect("write");
    let mut buf = [0u8; 2048];
    let n = tcp.read(&mut buf).expect("read");
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
}

#[test]
fn a_phone_registers_refreshes_and_unregisters() {
    let server = Server::start(&[]);
    let phone = Udp::new(server.sip);
    let port = phone.port();
    let contact = format!("Contact: <sip:1001@127.0.0.1:{port}>;expires=600\r\n");
    let first = register("1001", port, "reg-a", 1, &contact);
    let challenge = phone.request(first.as_bytes());
    assert_eq!(challenge.status, 401);
    let algorithms: Vec<_> = challenges(&challenge).into_iter().map(|c| c.1).collect();
    assert_eq!(algorithms, ["MD5"], "the demo tenant offers MD5 only");
    // NAT: the response tells the phone where its request came from.
    let via = header(&challenge, HeaderName::Via).expect("via");
    assert!(via.contains(&format!("rport={port}")), "{via}");
    assert!(via.contains("received=127.0.0.1"), "{via}");

    let second = with_credentials(
        &register("1001", port, "reg-a", 2, &contact),
        &challenge,
        "1001",
        "demo1001",
        1,
    );
    let ok = phone.request(second.as_bytes());
    assert_eq!(ok.status, 200, "{}", server.log_text());
    assert_eq!(
        header(&ok, HeaderName::Contact),
        Some(format!("<sip:1001@127.0.0.1:{port}>;expires=600").as_str())
    );
    // Its retransmission (the 200 lost, say) gets the same answer, kept by the edge: the
    // registrar would have given another To tag, and refused the nonce count it saw already.
    let again = phone.request(second.as_bytes());
    assert_eq!(again.status, 200);
    assert_eq!(header(&again, HeaderName::To), header(&ok, HeaderName::To));

    // A query lists the binding without changing it.
    let query = with_credentials(
        &register("1001", port, "reg-a", 3, ""),
        &challenge,
        "1001",
        "demo1001",
        2,
    );
    let listed = phone.request(query.as_bytes());
    assert_eq!(listed.status, 200);
    assert_eq!(listed.headers.count(&HeaderName::Contact), 1);

    // Too short an expiry: 423 with the minimum.
    let short = with_credentials(
        &register(
            "1001",
            port,
            "reg-a",
            4,
            &format!("Contact: <sip:1001@127.0.0.1:{port}>;expires=5\r\n"),
        ),
        &challenge,
        "1001",
        "demo1001",
        3,
    );
    let brief = phone.request(short.as_bytes());
    assert_eq!(brief.status, 423);
    assert_eq!(header(&brief, HeaderName::MinExpires), Some("60"));

    // Unregister everything.
    let star = with_credentials(
        &register("1001", port, "reg-a", 5, "Contact: *\r\nExpires: 0\r\n"),
        &challenge,
        "1001",
        "demo1001",
        4,
    );
    let gone = phone.request(star.as_bytes());
    assert_eq!(gone.status, 200);
    assert_eq!(gone.headers.count(&HeaderName::Contact), 0);
}

#[test]
fn a_tenant_offers_its_algorithms_in_its_order_and_takes_sha256() {
    let config = "[[tenants]]\nname = \"acme\"\ndomain = \"demo.local\"\ndigest = [\"SHA-256\", \"MD5\"]\n\
                  [[tenants.dns]]\nnumber = \"1001\"\npassword = \"pw1001\"\n";
    let server = Server::start_with_config(Some(config), &[]);
    let phone = Udp::new(server.sip);
    let port = phone.port();
    let contact = format!("Contact: <sip:1001@127.0.0.1:{port}>\r\n");
    let challenge = phone.request(register("1001", port, "sha", 1, &contact).as_bytes());
    let algorithms: Vec<_> = challenges(&challenge).into_iter().map(|c| c.1).collect();
    assert_eq!(algorithms, ["SHA-256", "MD5"]);
    // The phone answers the first challenge, SHA-256.
    let answer = with_credentials(
        &register("1001", port, "sha", 2, &contact),
        &challenge,
        "1001",
        "pw1001",
        1,
    );
    assert!(answer.contains("algorithm=SHA-256"), "{answer}");
    assert_eq!(phone.request(answer.as_bytes()).status, 200);
}

/// The nonce and algorithm of each Proxy-Authenticate challenge of a 407, in order.
fn proxy_challenges(r: &switchboard_sip::Response) -> Vec<(String, String)> {
    r.headers
        .get_all(&HeaderName::ProxyAuthenticate)
        .map(|h| {
            let c = switchboard_sip::header::Credentials::parse(h).expect("challenge parses");
            let get = |n| c.get(n).unwrap_or_default().to_owned();
            (get("nonce"), get("algorithm"))
        })
        .collect()
}

#[test]
fn a_phones_call_is_challenged_in_its_dns_own_order_as_its_register_is() {
    let config = "[[tenants]]\nname = \"acme\"\ndomain = \"demo.local\"\ndigest = [\"MD5\", \"SHA-256\"]\n\
                  [[tenants.dns]]\nnumber = \"1001\"\npassword = \"pw1001\"\ndigest = [\"SHA-256\", \"MD5\"]\n\
                  [[tenants.dns]]\nnumber = \"1002\"\npassword = \"pw1002\"\n\
                  [[tenants.dial_plan]]\npattern = '^(1\\d{3})$'\ndestination = \"extension:$1\"\n";
    let server = Server::start_with_config(Some(config), &[]);
    let phone = Udp::new(server.sip);
    let port = phone.port();
    let contact = format!("Contact: <sip:1001@127.0.0.1:{port}>\r\n");
    let registered = phone.request(register("1001", port, "own", 1, &contact).as_bytes());
    let algorithms =
        |pairs: Vec<(String, String)>| pairs.into_iter().map(|c| c.1).collect::<Vec<_>>();
    assert_eq!(algorithms(challenges(&registered)), ["SHA-256", "MD5"]);
    let invite = |from: &str, cseq: u32, extra: &str| {
        format!(
            "INVITE sip:1002@demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKown{from}{cseq}\r\n\
             Max-Forwards: 70\r\nTo: <sip:1002@demo.local>\r\nFrom: <sip:{from}@demo.local>;tag=t{from}\r\n\
             Call-ID: own-{from}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{from}@127.0.0.1:{port}>\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    };
    let challenge = phone.request(invite("1001", 1, "").as_bytes());
    assert_eq!(challenge.status, 407);
    assert_eq!(
        algorithms(proxy_challenges(&challenge)),
        ["SHA-256", "MD5"],
        "1001's own order"
    );
    let other = phone.request(invite("1002", 1, "").as_bytes());
    assert_eq!(
        algorithms(proxy_challenges(&other)),
        ["MD5", "SHA-256"],
        "the tenant's"
    );
    // The phone answers the first challenge, SHA-256, and its call goes on (1002 has no
    // registered phone: 480).
    let (nonce, algorithm) = proxy_challenges(&challenge).remove(0);
    let digest = switchboard_sip::auth::ClientDigest {
        algorithm: switchboard_sip::auth::Algorithm::Sha256,
        username: "1001",
        realm: "demo.local",
        password: "pw1001",
    };
    let response = digest.response("INVITE", "sip:1002@demo.local", &nonce, 1, "c0ffee");
    let credentials = format!(
        "Proxy-Authorization: Digest username=\"1001\", realm=\"demo.local\", nonce=\"{nonce}\", \
         uri=\"sip:1002@demo.local\", response=\"{response}\", algorithm={algorithm}, qop=auth, \
         nc=00000001, cnonce=\"c0ffee\"\r\n"
    );
    phone.send(invite("1001", 2, &credentials).as_bytes());
    let mut last = phone.recv();
    while last.status < 200 {
        last = phone.recv();
    }
    assert_eq!(
        last.status,
        480,
        "authenticated and routed: {}",
        server.log_text()
    );
}

#[test]
fn replays_and_wrong_credentials_are_refused_alike() {
    let server = Server::start(&[]);
    let phone = Udp::new(server.sip);
    let port = phone.port();
    let contact = format!("Contact: <sip:1002@127.0.0.1:{port}>\r\n");
    let challenge = phone.request(register("1002", port, "reg-b", 1, &contact).as_bytes());
    let good = with_credentials(
        &register("1002", port, "reg-b", 2, &contact),
        &challenge,
        "1002",
        "demo1002",
        1,
    );
    assert_eq!(phone.request(good.as_bytes()).status, 200);
    // The same credentials again, in a new transaction: a replay.
    let replay = good
        .replace("branch=z9hG4bKreg-b2", "branch=z9hG4bKreg-b2-again")
        .replace("CSeq: 2 ", "CSeq: 3 ");
    let refused = phone.request(replay.as_bytes());
    assert_eq!(refused.status, 401);

    let wrong = with_credentials(
        &register("1002", port, "reg-c", 1, &contact),
        &challenge,
        "1002",
        "guess",
        7,
    );
    let unknown = with_credentials(
        &register("1999", port, "reg-d", 1, &contact),
        &challenge,
        "1999",
        "guess",
        8,
    );
    let w = phone.request(wrong.as_bytes());
    let u = phone.request(unknown.as_bytes());
    assert_eq!((w.status, u.status), (401, 401));
    assert_eq!(w.reason, u.reason);
    let names = |r: &switchboard_sip::Response| {
        r.headers
            .iter()
            .map(|h| h.name.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&w), names(&u));
}

#[test]
fn a_tenant_on_a_trusted_network_may_register_without_digest() {
    let config = "[[tenants]]\nname = \"lab\"\ndomain = \"demo.local\"\nauthenticate = false\n\
                  [[tenants.dns]]\nnumber = \"1001\"\n\
                  [[tenants.dns]]\nnumber = \"1002\"\npassword = \"secret\"\nauthenticate = true\n";
    let server = Server::start_with_config(Some(config), &[]);
    assert!(
        server
            .log_text()
            .contains("DNs register without authentication"),
        "the operator is warned: {}",
        server.log_text()
    );
    let phone = Udp::new(server.sip);
    let port = phone.port();
    let contact = |dn: &str| format!("Contact: <sip:{dn}@127.0.0.1:{port}>\r\n");
    let open = phone.request(register("1001", port, "lab-a", 1, &contact("1001")).as_bytes());
    assert_eq!(open.status, 200, "{}", server.log_text());
    assert!(header(&open, HeaderName::Contact).is_some_and(|c| c.contains("1001@127.0.0.1")));
    let guarded = phone.request(register("1002", port, "lab-b", 1, &contact("1002")).as_bytes());
    assert_eq!(guarded.status, 401);
    let unknown = phone.request(register("1999", port, "lab-c", 1, &contact("1999")).as_bytes());
    assert_eq!(unknown.status, 404);
}

#[test]
fn requests_not_served_get_their_rfc_answer() {
    let server = Server::start(&[]);
    let udp = Udp::new(server.sip);
    let port = udp.port();
    let request = |method: &str, to_tag: &str| {
        format!(
            "{method} sip:1001@demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}\r\n\
             Max-Forwards: 70\r\nTo: <sip:1001@demo.local>{to_tag}\r\nFrom: <sip:1002@demo.local>;tag=9\r\n\
             Call-ID: {method}-1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // A phone's new call must prove which DN it is.
    let r = udp.request(request("INVITE", "").as_bytes());
    assert_eq!(r.status, 407);
    assert!(
        header(&r, HeaderName::ProxyAuthenticate)
            .is_some_and(|c| c.contains("realm=\"demo.local\""))
    );
    let r = udp.request(request("MESSAGE", "").as_bytes());
    assert_eq!(r.status, 405);
    assert_eq!(
        header(&r, HeaderName::Allow),
        Some("INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER")
    );
    assert_eq!(udp.request(request("BYE", ";tag=x").as_bytes()).status, 481);
    assert_eq!(udp.request(request("CANCEL", "").as_bytes()).status, 481);
    assert_eq!(udp.request(request("NEWTHING", "").as_bytes()).status, 501);
    // ACK is never answered.
    udp.send(request("ACK", ";tag=x").as_bytes());
    assert!(udp.recv_within(Duration::from_millis(300)).is_none());
}

#[test]
fn a_challenge_is_kept_nowhere_and_garbage_is_ignored() {
    let server = Server::start(&[]);
    let udp = Udp::new(server.sip);
    udp.send(b"\x00\x01garbage that is not SIP at all\r\n\r\n");
    assert!(udp.recv_within(Duration::from_millis(300)).is_none());
    // A retransmitted REGISTER is challenged afresh: no transaction keeps the first answer
    // for a source that may never answer it.
    let req = register("1003", udp.port(), "reg-r", 1, "");
    let first = udp.request(req.as_bytes());
    let again = udp.request(req.as_bytes());
    assert_eq!((first.status, again.status), (401, 401));
    let nonce = |r: &switchboard_sip::Response| challenges(r)[0].0.clone();
    assert_ne!(nonce(&first), nonce(&again));
}

/// A challenge or a refusal goes out once, however long its ACK is awaited: a spoofed source
/// that never acknowledges gains one answer per request (with T1 at 100 ms, a transaction
/// would have resent the 407 four times within the wait).
#[test]
fn an_unacknowledged_challenge_is_sent_once() {
    let server = Server::start_with_config(Some("[sip]\nt1_ms = 100\n"), &[]);
    let udp = Udp::new(server.sip);
    let invite = |user: &str, domain: &str| {
        format!(
            "INVITE sip:{user}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK{user}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{user}@{domain}>\r\nFrom: <sip:1002@{domain}>;tag=9\r\n\
             Call-ID: amp-{user}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            udp.port()
        )
    };
    for (user, domain) in [("1001", "demo.local"), ("9999", "elsewhere.example")] {
        let first = udp.request(invite(user, domain).as_bytes());
        assert!(first.status >= 400, "{first:?}");
        let again = udp.recv_within(Duration::from_millis(1_600));
        assert!(again.is_none(), "resent: {again:?}");
    }
}

#[test]
fn over_capacity_requests_get_503_at_once() {
    // No room at all behind the edge: every request is shed before it queues.
    let server = Server::start_with_config(Some("[sip]\nmax_backlog = 0\n"), &[]);
    let udp = Udp::new(server.sip);
    let r = udp.request(register("1001", udp.port(), "shed", 1, "").as_bytes());
    assert_eq!(r.status, 503);
    assert_eq!(header(&r, HeaderName::RetryAfter), Some("2"));
}

/// Whether something on this host listens on UDP `port` (read from /proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let port = format!(":{port:04X} ");
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|local| format!("{local} ").ends_with(&port))
    })
}

/// The UDP packets of a pcap file of Ethernet frames (as sngrep writes what it decoded from
/// HEP): (source, destination, payload) each.
fn pcap_udp(file: &[u8]) -> Vec<(std::net::SocketAddr, std::net::SocketAddr, Vec<u8>)> {
    assert_eq!(&file[..4], [0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap");
    let linktype = u32::from_le_bytes(file[20..24].try_into().expect("linktype"));
    assert_eq!(linktype, 1, "Ethernet frames");
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        let len = u32::from_le_bytes(file[at + 8..at + 12].try_into().expect("len")) as usize;
        let frame = &file[at + 16..at + 16 + len];
        at += 16 + len;
        let ip = &frame[14..];
        if ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let header = usize::from(ip[0] & 0x0f) * 4;
        let addr = |a: &[u8], p: &[u8]| {
            std::net::SocketAddr::from(([a[0], a[1], a[2], a[3]], u16::from_be_bytes([p[0], p[1]])))
        };
        let udp = &ip[header..];
        packets.push((
            addr(&ip[12..16], &udp[0..2]),
            addr(&ip[16..20], &udp[2..4]),
            udp[8..].to_vec(),
        ));
    }
    packets
}

/// Every SIP message in and out reaches a Homer collector as HEP v3: Debian's sngrep,
/// listening for HEP, writes what it decoded into a pcap file, read here. A phone's
/// registration shows as its four messages, in order, each with its addresses; /metrics
/// counts them sent.
#[test]
fn sip_capture_reaches_a_hep_collector_in_order_with_its_addresses() {
    let dir = tempfile::tempdir().expect("dir");
    let pcap = dir.path().join("hep.pcap");
    let hep = support::free_port();
    let mut sngrep = std::process::Command::new("sngrep")
        .args([
            "-N",
            "-q",
            "-F",
            "-L",
            &format!("udp:127.0.0.1:{hep}"),
            "-O",
        ])
        .arg(&pcap)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sngrep runs (scripts/test.sh installs it)");
    assert!(
        support::eventually(Duration::from_secs(10), || udp_bound(hep)),
        "sngrep listens for HEP"
    );
    let config = format!("[hep]\ncollector = \"127.0.0.1:{hep}\"\nagent_id = 42\n");
    let server = Server::start_with_config(Some(&config), &[]);
    let phone = Udp::on("127.0.0.5", server.sip);
    assert_eq!(
        support::register_with(&phone, "1001", "demo1001", "hep-1"),
        200
    );
    let messages = || pcap_udp(&std::fs::read(&pcap).unwrap_or_default());
    assert!(
        support::eventually(Duration::from_secs(10), || messages().len() >= 4),
        "{:?}",
        messages()
    );
    let _ = sngrep.kill();
    let _ = sngrep.wait();
    let seen: Vec<(std::net::SocketAddr, std::net::SocketAddr, String)> = messages()
        .into_iter()
        .map(|(from, to, payload)| {
            let text = String::from_utf8_lossy(&payload).into_owned();
            let first = text.lines().next().unwrap_or_default().to_owned();
            assert!(text.contains("Call-ID: hep-1"), "{text}");
            (from, to, first)
        })
        .collect();
    let phone_addr = std::net::SocketAddr::from(([127, 0, 0, 5], phone.port()));
    let node = server.sip;
    let lines: Vec<(std::net::SocketAddr, std::net::SocketAddr, &str)> = seen
        .iter()
        .map(|(f, t, l)| (*f, *t, l.split(' ').take(2).last().unwrap_or_default()))
        .collect();
    assert_eq!(
        lines,
        [
            (phone_addr, node, "sip:demo.local"),
            (node, phone_addr, "401"),
            (phone_addr, node, "sip:demo.local"),
            (node, phone_addr, "200"),
        ],
        "{seen:#?}"
    );
    assert!(seen[0].2.starts_with("REGISTER ") && seen[2].2.starts_with("REGISTER "));
    assert!(support::eventually(Duration::from_secs(5), || {
        support::metric(&server, "switchboard_hep_sent_total") == Some(4.0)
    }));
}
