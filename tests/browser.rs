//! An agent in a browser: SIP.js (from the npm registry, vendored at a pinned version in
//! tests/fixtures/browser) in Debian's headless Chromium registers as agent a1003's DN over
//! `wss` (the test authority's certificate trusted by its key's hash), and rings when the
//! demo strategy routes the carrier's call to the agent. Signalling only: media in a browser
//! needs a media gateway outside this core.

mod support;

use std::process::Command;
use std::time::Duration;

use support::browser::{self, Browser};
use support::certs::Authority;
use support::sipp::{Running, scenario, serving, sipp_errors};
use support::{Server, free_port};

/// The pinned SIP.js and the integrity the npm registry gives for it.
const SIP_JS: &str = "sip.js-0.21.2.tgz";
const SIP_JS_INTEGRITY: &str = "sha512-tSqTcIgrOd2IhP/rd70JablvAp+fSfLSxO4hGNY6LkWRY1SKygTO7OtJEV/BQb8oIxtMRx0LE7nUF2MaqGbFzA==";

fn sh(command: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The page: SIP.js's user agent for DN 1003 on `server`, registering, noting what happens
/// in `window.seen`, and answering an INVITE with 180 Ringing.
fn page(server: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>agent</title>
<script type="module">
import {{ UserAgent, Registerer }} from "./package/lib/index.js";
const seen = window.seen = [];
const ua = new UserAgent({{
  uri: UserAgent.makeURI("sip:1003@demo.local"),
  authorizationUsername: "1003",
  authorizationPassword: "demo1003",
  transportOptions: {{ server: "{server}" }},
  logLevel: "warn",
  delegate: {{
    onInvite(invitation) {{
      seen.push("invite from " + invitation.remoteIdentity.uri.user);
      invitation.progress();
    }},
  }},
}});
const registerer = new Registerer(ua);
registerer.stateChange.addListener((state) => seen.push("registration " + state));
ua.start().then(() => {{ seen.push("connected"); return registerer.register(); }})
  .catch((e) => seen.push("error " + e));
</script>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_js_in_chromium_registers_over_wss_and_rings_on_a_routed_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let fixture = support::manifest_dir()
        .join("tests/fixtures/browser")
        .join(SIP_JS);
    let integrity = sh(&format!(
        "openssl dgst -sha512 -binary {} | base64 -w0",
        fixture.display()
    ));
    assert_eq!(format!("sha512-{integrity}"), SIP_JS_INTEGRITY);
    let site = d.join("site");
    std::fs::create_dir(&site).expect("site");
    sh(&format!(
        "tar xzf {} -C {}",
        fixture.display(),
        site.display()
    ));

    let ca = Authority::new(d, "ca");
    let node = ca.issue("node");
    let wss = free_port();
    let config = format!(
        "[tls]\nlisten = \"127.0.0.1:{}\"\ncertificate = \"{}\"\nkey = \"{}\"\n\
         [websocket]\nsecure_listen = \"127.0.0.1:{wss}\"\n",
        free_port(),
        node.pem.display(),
        node.key.display()
    );
    let server = Server::start_with_config(Some(&config), &[]);
    std::fs::write(
        site.join("index.html"),
        page(&format!("wss://127.0.0.1:{wss}")),
    )
    .expect("page");
    let http = browser::serve(&site);
    // Chromium trusts the node's certificate by the hash of its public key.
    let spki = sh(&format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | base64 -w0",
        node.pem.display()
    ));
    let mut chromium = Browser::open(
        &format!("http://{http}/index.html"),
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    );
    let registered = chromium.wait_for(
        "window.seen && window.seen.includes('registration Registered')",
        Duration::from_secs(20),
    );
    assert!(
        registered.is_ok(),
        "SIP.js registers over wss: {registered:?}\n{}",
        server.log_text()
    );

    // Agent a1003 at that DN, Ready; the carrier calls the support line, whose strategy
    // routes the call to the agent.
    let mut agents =
        switchboard_proto::voice::agents_client::AgentsClient::new(support::grpc(&server).await);
    support::log_in(&mut agents, &["1003"], true).await;
    let _media = Running(vec![serving(
        d,
        "media_server.xml",
        "gvp",
        "127.0.0.3",
        5090,
    )]);
    let calls = d.join("calls.csv");
    std::fs::write(&calls, "SEQUENTIAL\n+18005550100;+15551230000;\n").expect("calls");
    let _sbc = Running(vec![support::sipp::sbc_calls(
        d,
        &server,
        &scenario("sbc_queue.xml"),
        &calls,
        1,
        10.0,
        30,
    )]);
    let rang = chromium.wait_for(
        "window.seen.some((s) => s.startsWith('invite from'))",
        Duration::from_secs(20),
    );
    assert!(
        rang.is_ok(),
        "the browser rings: {rang:?}\n{}\n{}",
        sipp_errors(d),
        server.log_text()
    );

    // A WebSocket that does not ask for SIP is refused at its handshake (on a node with a
    // plain `ws` port).
    let ws = free_port();
    let plain = Server::start_with_config(
        Some(&format!("[websocket]\nlisten = \"127.0.0.1:{ws}\"\n")),
        &[],
    );
    let refused = refused_handshake(ws);
    assert!(
        refused.starts_with("HTTP/1.1 400"),
        "{refused}\n{}",
        plain.log_text()
    );
}

/// The answer to a WebSocket handshake on `port` without `Sec-WebSocket-Protocol: sip`.
fn refused_handshake(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("ws port");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .expect("handshake");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}
