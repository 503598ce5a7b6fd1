//! SIP over TLS with real peers: Debian's baresip as a phone registering and called over TLS
//! (its connection reused for the call, RFC 5626 style); the carrier's SBC and gateway as SIPp
//! over TCP behind socat's TLS (Debian's SIPp has no TLS of its own), with client
//! certificates both ways; and the node's certificate renewed on disk while it runs.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::certs::{Authority, Issued};
use support::sipp::{
    answering_phone, phone_1002_dials, register, scenario, sipp, sipp_errors, wait,
};
use support::socat::Socat;
use support::{Server, Udp, eventually, free_port};
use switchboard_actors::tenant::{TenantConfig, demo_tenant};

/// The node's file: the demo tenant changed by `change`, TLS on `tls` with `cert`, trusting
/// `ca`, files looked at every 200 ms.
fn config(tls: u16, cert: &Issued, ca: &Path, change: impl FnOnce(&mut TenantConfig)) -> String {
    let mut demo = demo_tenant();
    change(&mut demo);
    let tenants = support::tenants_toml(&[&demo]);
    format!(
        "[tls]\nlisten = \"127.0.0.1:{tls}\"\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\
         reload_check_ms = 200\n\n{tenants}",
        cert.pem.display(),
        cert.key.display(),
        ca.display()
    )
}

/// The subject of the certificate the node presents on `port` now, as openssl s_client
/// prints it.
fn presented(port: u16, ca: &Path) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_owned()
}

/// baresip registers DN 1001 over TLS (trusting the test authority); the SBC's call to 1001
/// reaches it over that same connection, and is answered, held, resumed and hung up.
#[test]
fn a_phone_registers_and_is_called_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Authority::new(dir.path(), "ca");
    let node = ca.issue("node");
    let tls = free_port();
    let server = Server::start_with_config(Some(&config(tls, &node, &ca.pem, |_| {})), &[]);
    let home = dir.path().join("baresip");
    std::fs::create_dir(&home).expect("dir");
    std::fs::write(
        home.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:0\nsip_cafile {}\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule account.so\n\
             audio_player none\naudio_source none\naudio_alert none\n",
            ca.pem.display()
        ),
    )
    .expect("config");
    std::fs::write(
        home.join("accounts"),
        format!(
            "<sip:1001@demo.local;transport=tls>;auth_pass=demo1001;\
             outbound=\"sip:127.0.0.1:{tls};transport=tls\";regint=600;answermode=auto\n"
        ),
    )
    .expect("accounts");
    let trace = dir.path().join("baresip.out");
    let mut baresip = Command::new("baresip")
        .arg("-f")
        .arg(&home)
        .args(["-t", "15", "-s"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&trace).expect("trace"))
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip runs (scripts/test.sh installs baresip-core)");
    let read = || std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || read()
            .contains("SIP/2.0 200 OK")),
        "baresip registers over TLS:\n{}\n{}",
        read(),
        server.log_text()
    );
    let status = sipp(
        dir.path(),
        &[
            "-sf",
            scenario("sbc_hold.xml").to_str().expect("path"),
            "-s",
            "1001",
            "-m",
            "1",
            "-i",
            "127.0.0.2",
            "-p",
            &free_port().to_string(),
            "-timeout",
            "15s",
            &server.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs");
    // The BYE reaches baresip just after the SBC has its 200.
    eventually(Duration::from_secs(5), || read().contains("BYE sip:1001"));
    let _ = baresip.kill();
    let _ = baresip.wait();
    let trace = read();
    assert!(
        status.success(),
        "the SBC's call: {status}\n{}\n{trace}\n{}",
        sipp_errors(dir.path()),
        server.log_text()
    );
    let invite = trace
        .lines()
        .find(|l| l.starts_with("INVITE sip:1001"))
        .unwrap_or_else(|| panic!("baresip was called:\n{trace}"));
    assert!(invite.contains(";transport=tls"), "{invite}");
    assert!(trace.contains("BYE sip:1001"), "{trace}");
}

/// The carrier's trunk requires a client certificate: its SBC (SIPp behind socat's TLS, from
/// the trunk's address, with a certificate of the trusted authority) calls a phone; a phone
/// calls out through the trunk's gateway (SIPp behind socat's TLS, which asks the node for a
/// certificate in turn). Without a certificate the SBC's handshake is refused, and over plain
/// UDP the trunk's calls are refused with 403.
#[test]
fn a_tls_trunk_with_client_certificates_places_and_receives_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ca = Authority::new(d, "ca");
    let (node, sbc_cert, gateway_cert) = (ca.issue("node"), ca.issue("sbc"), ca.issue("gw"));
    let (tls, gateway) = (free_port(), free_port());
    let trunk = |demo: &mut TenantConfig| {
        let carrier = &mut demo.trunks[0];
        carrier.gateway = Some(format!("127.0.0.1:{gateway}"));
        carrier.options.insert("transport".into(), "tls".into());
        carrier
            .options
            .insert("client-certificate".into(), "required".into());
    };
    let server = Server::start_with_config(Some(&config(tls, &node, &ca.pem, trunk)), &[]);
    let phone_port = free_port();
    register(&server, d, "1001", phone_port);
    let mut phone = answering_phone(d, "1001", "127.0.0.1", phone_port);

    // In: SIPp's TCP to socat on 127.0.0.2, socat's TLS from 127.0.0.2 to the node.
    let sbc_calls = |port: u16| {
        sipp(
            d,
            &[
                "-sf",
                scenario("sbc_hold.xml").to_str().expect("path"),
                "-s",
                "1001",
                "-m",
                "1",
                "-t",
                "t1",
                "-i",
                "127.0.0.2",
                "-p",
                &free_port().to_string(),
                "-timeout",
                "10s",
                &format!("127.0.0.2:{port}"),
            ],
        )
        .status()
        .expect("sipp runs")
    };
    let front = free_port();
    let with_cert = Socat::start(
        format!("TCP-LISTEN:{front},bind=127.0.0.2,reuseaddr,fork"),
        format!(
            "OPENSSL:127.0.0.1:{tls},bind=127.0.0.2,cert={},key={},cafile={}",
            sbc_cert.pem.display(),
            sbc_cert.key.display(),
            ca.pem.display()
        ),
        "127.0.0.2",
        front,
    );
    let status = sbc_calls(front);
    assert!(
        status.success(),
        "the SBC's call over TLS: {status}\n{}\n{}",
        sipp_errors(d),
        server.log_text()
    );
    assert!(wait(&mut phone, Duration::from_secs(5)).success());
    drop(with_cert);

    // Out: a phone dials 9<number>; the node opens TLS to the gateway (socat, which checks
    // the node's certificate), and SIPp behind it answers.
    let uas_port = free_port();
    let mut uas = support::sipp::uas(
        d,
        "phone_answer.xml",
        "15550001111",
        "127.0.0.3",
        uas_port,
        &["-t", "t1", "-m", "1", "-timeout", "20s"],
    );
    let _gateway = Socat::start(
        format!(
            "OPENSSL-LISTEN:{gateway},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
            gateway_cert.pem.display(),
            gateway_cert.key.display(),
            ca.pem.display()
        ),
        format!("TCP:127.0.0.3:{uas_port}"),
        "127.0.0.1",
        gateway,
    );
    let caller = phone_1002_dials(&server, d, "915550001111");
    assert!(
        caller.success(),
        "the call out over TLS: {caller}\n{}\n{}",
        sipp_errors(d),
        server.log_text()
    );
    assert!(wait(&mut uas, Duration::from_secs(5)).success());

    // No certificate: the handshake is refused, and no call gets through.
    let front = free_port();
    let _without = Socat::start(
        format!("TCP-LISTEN:{front},bind=127.0.0.2,reuseaddr,fork"),
        format!(
            "OPENSSL:127.0.0.1:{tls},bind=127.0.0.2,cafile={}",
            ca.pem.display()
        ),
        "127.0.0.2",
        front,
    );
    assert!(!sbc_calls(front).success());
    assert!(
        server.log_text().contains("tls handshake failed"),
        "{}",
        server.log_text()
    );
    // Over UDP from the trunk's address: refused.
    let plain = Udp::on("127.0.0.2", server.sip);
    let invite = format!(
        "INVITE sip:1001@{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{};branch=z9hG4bKplain\r\n\
         Max-Forwards: 70\r\nTo: <sip:1001@demo.local>\r\nFrom: <sip:+15551230000@127.0.0.2>;tag=1\r\n\
         Call-ID: plain\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        server.sip,
        plain.port()
    );
    assert_eq!(plain.request(invite.as_bytes()).status, 403);
}

/// The node's certificate renewed on disk is presented at the next handshake; files that do
/// not load (garbage, a certificate that does not match its key) leave it in use, with an
/// error in the log.
#[test]
fn a_certificate_replaced_on_disk_is_used_for_the_next_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Authority::new(dir.path(), "ca");
    let first = ca.issue("first");
    let (second, third) = (ca.issue("second"), ca.issue("third"));
    let tls = free_port();
    let server = Server::start_with_config(Some(&config(tls, &first, &ca.pem, |_| {})), &[]);
    assert!(presented(tls, &ca.pem).contains("CN = first"));

    let renew = |from: &Issued| {
        std::fs::copy(&from.key, &first.key).expect("key");
        std::fs::copy(&from.pem, &first.pem).expect("cert");
    };
    renew(&second);
    assert!(
        eventually(Duration::from_secs(5), || presented(tls, &ca.pem)
            .contains("CN = second")),
        "{}",
        server.log_text()
    );
    std::fs::write(&first.pem, "not a certificate\n").expect("garbage");
    assert!(
        eventually(Duration::from_secs(5), || server
            .log_text()
            .contains("do not load")),
        "{}",
        server.log_text()
    );
    assert!(presented(tls, &ca.pem).contains("CN = second"));
    // The third's certificate with the second's key.
    std::fs::copy(&third.pem, &first.pem).expect("cert");
    assert!(
        eventually(Duration::from_secs(5), || server
            .log_text()
            .matches("do not load")
            .count()
            >= 2),
        "{}",
        server.log_text()
    );
    assert!(presented(tls, &ca.pem).contains("CN = second"));
}

/// Bad input on TLS and WebSocket: garbage instead of a handshake, a client that offers only
/// TLS 1.0, a handshake never finished, a WebSocket without the sip subprotocol, a WebSocket
/// message that is no SIP, an oversized frame, an unmasked one. Each connection is closed and
/// counted by reason in /metrics, and a phone is answered as ever after.
#[test]
fn bad_tls_and_websocket_input_is_closed_and_counted() {
    use std::io::{Read, Write};
    use switchboard_sip::transport::ws;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Authority::new(dir.path(), "ca");
    let node = ca.issue("node");
    let (tls, ws_port) = (free_port(), free_port());
    let config = format!(
        "[websocket]\nlisten = \"127.0.0.1:{ws_port}\"\n{}",
        config(tls, &node, &ca.pem, |_| {}).replace(
            "reload_check_ms = 200",
            "reload_check_ms = 200\nhandshake_timeout_ms = 500"
        )
    );
    let server = Server::start_with_config(Some(&config), &[]);
    let closed = |reason: &str| {
        support::metric(
            &server,
            &format!("switchboard_connections_closed_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or_default()
    };
    // Read until the node closes; what it said.
    let until_closed = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    let connect = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");

    let mut garbage = connect(tls);
    garbage
        .write_all(b"GARBAGE / HTTP/1.0\r\n\r\n")
        .expect("write");
    until_closed(&mut garbage);
    let old = Command::new("openssl")
        .args(["s_client", "-tls1", "-connect", &format!("127.0.0.1:{tls}")])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    assert!(!String::from_utf8_lossy(&old.stdout).contains("BEGIN CERTIFICATE"));
    let mut half_open = connect(tls);
    until_closed(&mut half_open);
    assert!(
        eventually(Duration::from_secs(5), || closed("tls-handshake") >= 3.0),
        "{}",
        server.log_text()
    );

    let handshake = |protocol: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{protocol}\r\n"
        )
    };
    let mut no_sip = connect(ws_port);
    no_sip.write_all(handshake("").as_bytes()).expect("write");
    assert!(until_closed(&mut no_sip).starts_with(b"HTTP/1.1 400"));
    assert_eq!(closed("websocket-handshake"), 1.0);
    let opened = || {
        let mut s = connect(ws_port);
        s.write_all(handshake("Sec-WebSocket-Protocol: sip\r\n").as_bytes())
            .expect("write");
        let mut head = [0u8; 12];
        s.read_exact(&mut head).expect("101");
        assert_eq!(&head, b"HTTP/1.1 101");
        s
    };
    let mask = Some([1, 2, 3, 4]);
    for (what, frame) in [
        (
            "not SIP",
            ws::frame(ws::opcode::TEXT, b"hello, world", mask),
        ),
        (
            "oversized",
            ws::frame(ws::opcode::TEXT, &[b'x'; 20_000], mask),
        ),
        ("unmasked", ws::frame(ws::opcode::TEXT, b"OPTIONS", None)),
    ] {
        let mut s = opened();
        s.write_all(&frame).expect("write");
        let said = until_closed(&mut s);
        assert!(!said.is_empty(), "{what}: the node says why it closes");
    }
    assert!(
        eventually(Duration::from_secs(5), || closed("websocket-framing")
            >= 3.0),
        "{}",
        server.log_text()
    );
    let phone = Udp::new(server.sip);
    assert_eq!(
        support::register_with(&phone, "1001", "demo1001", "after-bad-input"),
        200
    );
}
