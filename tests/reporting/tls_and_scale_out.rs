//! Reporting over TLS with SASL to a broker behind socat (certificates made with openssl), and
//! proxies in front of a node whose spool is past its high-water mark.

use super::*;
use support::certs::{Authority, Issued};
use support::socat::Socat;

/// The test authority with the broker's certificate for 127.0.0.1, and a second authority
/// that signed nothing of the broker's.
struct Certs {
    ca: PathBuf,
    broker: Issued,
    stranger: PathBuf,
}

fn certs(dir: &Path) -> Certs {
    let ca = Authority::new(dir, "ca");
    Certs {
        broker: ca.issue("broker"),
        stranger: Authority::new(dir, "stranger").pem,
        ca: ca.pem,
    }
}

/// TLS in front of the broker (tansu's own TLS options cannot be given together): socat
/// terminates TLS on `port` with the broker's certificate and passes the bytes to `to`.
fn tls_front(port: u16, to: u16, certs: &Certs) -> Socat {
    Socat::start(
        format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            certs.broker.pem.display(),
            certs.broker.key.display()
        ),
        format!("TCP:127.0.0.1:{to}"),
        "127.0.0.1",
        port,
    )
}

/// Waits (20 s at most) until the server's log holds `text`.
fn log_shows(server: &Server, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log_text();
        if log.contains(text) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kafka over TLS with SASL SCRAM: switchboard verifies the broker's certificate against
/// `ssl_ca`, authenticates, and sends its events; a node given an authority that did not sign
/// the certificate, and one given a wrong password, keep their events spooled and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_broker_over_tls_with_scram_and_a_failed_handshake_is_named() {
    let url = support::redis_db(39);
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs(dir.path());
    let front = free_port();
    let users = [("switchboard", "s3cret"), ("reader", "r3ader")];
    let broker = Broker::secured(dir.path(), front, &users);
    let _tls = tls_front(front, broker.port, &certs);
    let brokers = format!("127.0.0.1:{front}");
    let secured = |spool: &str, ca: &Path, password: &str| {
        let security = format!(
            "security_protocol = \"sasl_ssl\"\nssl_ca = \"{}\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
             sasl_username = \"switchboard\"\nsasl_password = \"{password}\"\n",
            ca.display()
        );
        kafka_config(&brokers, &dir.path().join(spool), &security)
    };

    let config = secured("spool", &certs.ca, "s3cret");
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let mut agents = agents_at(&server, dir.path(), &["1001"]).await;
    toggle(&mut agents, &["a1001"]).await;
    let ca = certs.ca.to_str().expect("path");
    let outside = Outside::start_with(
        &brokers,
        &[
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", ca),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "reader"),
            ("sasl.password", "r3ader"),
        ],
    );
    let redis = stored(&url);
    assert!(
        redis.len() >= 3,
        "a registration and agent changes: {redis:?}"
    );
    let missing = missing_from_kafka(&outside, &redis, 0).await;
    assert!(
        missing.is_empty(),
        "never reached Kafka over TLS: {missing:?}\n{}",
        server.log_text()
    );
    check_against_redis(&in_partition_order(outside.read()), &redis);
    assert_eq!(metric(&server, "switchboard_kafka_connected"), 1.0);

    // A node given an authority that did not sign the broker's certificate, and one given a
    // wrong password: each keeps its events spooled and says why.
    let refused = [
        (
            "spool-2",
            &certs.stranger,
            "s3cret",
            "certificate verify failed",
        ),
        ("spool-3", &certs.ca, "guess", "SASL authentication error"),
    ];
    for (spool, ca, password, why) in refused {
        let node = Server::start_with_config(Some(&secured(spool, ca, password)), &[]);
        let log = log_shows(&node, "kafka unreachable");
        assert!(
            log.contains(why) && log.contains("TLS or SASL handshake failed"),
            "{log}"
        );
        assert_eq!(metric(&node, "switchboard_kafka_connected"), 0.0);
    }
}

/// The SBC calls `dn` at the raw `phone` through `server` and cancels while it rings: the
/// CANCEL reaches the phone, and the caller gets 487.
fn cancelled_while_ringing(server: &Server, phone: &support::peer::Peer, dn: &str, call_id: &str) {
    use support::peer::{Peer, cancel, ringing_call};
    use switchboard_sip::{Message, Method};
    let sbc = Peer::sbc(server);
    let invite = ringing_call(server, &sbc, phone, dn, call_id);
    loop {
        match sbc.next(Duration::from_secs(5)) {
            Some(Message::Response(r)) if r.status == 180 => break,
            Some(_) => {}
            None => panic!("no 180 for {call_id}\n{}", server.log_text()),
        }
    }
    sbc.send(&cancel(sbc.port(), server, dn, call_id));
    let phone_cancel = phone
        .request(Method::Cancel, Duration::from_secs(2))
        .unwrap_or_else(|| {
            panic!(
                "the CANCEL of {call_id} reaches the phone\n{}",
                server.log_text()
            )
        });
    phone.answer(&phone_cancel, 200, None);
    phone.answer(&invite, 487, None);
    let mut finals = Vec::new();
    while let Some(r) = sbc.final_response(Duration::from_secs(2)) {
        finals.push(r.status);
        if r.status == 487 {
            break;
        }
    }
    assert_eq!(finals, [200, 487], "the CANCEL answered, then the INVITE");
}

/// Scaled out: a cluster node whose spool is past its high-water mark answers the proxies'
/// probes with 503 as it does new calls, and the proxies send every new call to the other
/// node, whether a probe told them or a call the node turned away (which then goes on to the
/// other node rather than back to the caller, and a CANCEL follows it there). Once its spool
/// has drained, calls reach it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_send_new_calls_around_a_node_whose_spool_is_past_its_mark() {
    let url = support::redis_db(40);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::stopped(dir.path());
    let sip =
        || -> std::net::SocketAddr { format!("127.0.0.1:{}", free_port()).parse().expect("addr") };
    let (probing_sip, blind_sip, canceller_sip) = (sip(), sip(), sip());
    let (full_sip, other_sip) = (sip(), sip());
    let trust =
        format!("[cluster]\nproxies = [\"{probing_sip}\", \"{blind_sip}\", \"{canceller_sip}\"]\n");
    let small_spool = kafka_config(
        &broker.addr(),
        &dir.path().join("spool"),
        "spool_max_bytes = 65536\nspool_high_water = 0.5\n",
    );
    let full = Server::start_on(
        full_sip,
        Some(&format!("{trust}{small_spool}")),
        &["--redis", &url],
    );
    let other = Server::start_on(other_sip, Some(&trust), &["--redis", &url]);
    let nodes = format!("[cluster]\nnodes = [\"{full_sip}\", \"{other_sip}\"]\n");
    // One proxy probes every 200 ms. The other probes at its start and then not for ten
    // minutes: it can only learn from the calls the node turns away.
    let probing = Server::start_on(
        probing_sip,
        Some(&format!("{nodes}probe_ms = 200\n")),
        &["--redis", &url],
    );
    let blind = Server::start_on(
        blind_sip,
        Some(&format!("{nodes}probe_ms = 600000\n")),
        &["--redis", &url],
    );
    // Another that does not probe, with a phone registered at it.
    let canceller = Server::start_on(
        canceller_sip,
        Some(&format!("{nodes}probe_ms = 600000\n")),
        &["--redis", &url],
    );
    let phone = support::peer::raw_phone(&canceller, "1002");
    let ran_on = |node: &Server| node.log_text().matches("no dial plan rule matches").count();
    let calls = |proxy: &Server, name: &str| -> Vec<u16> {
        (0..20)
            .map(|i| sbc_call_status(proxy, "5555", &format!("{name}-{i}")))
            .collect()
    };
    // Both nodes take calls at first.
    assert_eq!(calls(&probing, "before"), [404; 20]);
    assert!(
        ran_on(&full) > 0 && ran_on(&other) > 0,
        "calls spread over both"
    );

    // Kafka never answered: agent changes on the node fill its spool past the mark.
    let mut agents = agents_at(&full, dir.path(), &["1001"]).await;
    fill_past_mark(&full, &mut agents).await;
    assert_eq!(
        sbc_call_status(&full, "5555", "direct"),
        503,
        "the node refuses"
    );
    let on_full = ran_on(&full);

    // The blind proxy's calls that pick the node get its 503 and go on to the other node.
    assert_eq!(calls(&blind, "blind"), [404; 20], "{}", blind.log_text());
    assert!(
        blind.log_text().contains("call forwarded to the next node"),
        "some call picked the node first: {}",
        blind.log_text()
    );
    assert!(blind.log_text().contains("refuses new calls (503)"));

    // A caller's CANCEL of a call that went on to the next node stops the phone ringing
    // there: calls to the phone, each cancelled while it rings, until one had been turned
    // away by the full node first.
    let went_on = || {
        canceller
            .log_text()
            .matches("call forwarded to the next node")
            .count()
    };
    let mut tries = 0;
    while went_on() == 0 {
        tries += 1;
        assert!(tries <= 20, "no call picked the full node first");
        cancelled_while_ringing(&canceller, &phone, "1002", &format!("cancel-{tries}"));
    }
    // The probing proxy knows from the node's answer to its probes.
    let log = log_shows(&probing, "refuses new calls (503)");
    assert!(log.contains("refuses new calls (503)"), "{log}");
    assert_eq!(calls(&probing, "probing"), [404; 20]);
    assert!(
        !probing
            .log_text()
            .contains("call forwarded to the next node")
    );
    assert_eq!(
        ran_on(&full),
        on_full,
        "no call ran on the node past its mark"
    );

    // Kafka comes: the spool drains, the node answers its probes with 200, and takes calls.
    broker.start_again();
    let log = log_shows(&probing, "takes calls again");
    assert!(
        log.contains("takes calls again"),
        "{log}\n{}",
        full.log_text()
    );
    assert!(ready(&full));
    assert_eq!(calls(&probing, "after"), [404; 20]);
    assert!(ran_on(&full) > on_full, "calls reach the node again");
}
