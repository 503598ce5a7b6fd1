//! Interop with a real softphone: Debian's baresip registers DN 1001 of the demo tenant with
//! its own digest implementation, and unregisters when it quits. What it did is read off the
//! registrar's event stream in Redis.

mod support;

use std::process::Command;

use support::Server;

#[test]
fn baresip_registers_with_its_own_digest_and_unregisters_on_quit() {
    let url = support::redis_db(5);
    let server = Server::start(&["--redis", &url]);
    let home = tempfile::tempdir().expect("baresip config dir");
    std::fs::write(
        home.path().join("config"),
        "poll_method epoll\nsip_listen 127.0.0.1:0\nsip_trans_def udp\n\
         module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule account.so\n\
         audio_player none\naudio_source none\naudio_alert none\n",
    )
    .expect("config");
    std::fs::write(
        home.path().join("accounts"),
        format!(
            "<sip:1001@demo.local;transport=udp>;auth_pass=demo1001;\
             outbound=\"sip:{};transport=udp\";regint=600\n",
            server.sip
        ),
    )
    .expect("accounts");

    // -t 3: quit after three seconds, unregistering first; -s: trace SIP on stdout.
    let output = Command::new("baresip")
        .arg("-f")
        .arg(home.path())
        .args(["-t", "3", "-s"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("baresip runs (scripts/test.sh installs baresip-core)");
    let trace = String::from_utf8_lossy(&output.stdout);
    assert!(
        trace.contains("Authorization: Digest username=\"1001\""),
        "baresip answered the challenge:\n{trace}"
    );

    let mut conn = support::redis(&url);
    let seen: Vec<(String, String)> =
        support::stream_entries(&mut conn, "sb:{demo}:voice-registrar")
            .into_iter()
            .map(|f| (f["kind"].clone(), f["payload"].clone()))
            .collect();
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["BindingAdded", "BindingRemoved"],
        "{seen:?}\n{trace}\n{}",
        server.log_text()
    );
    assert!(
        seen[0].1.contains("baresip") && seen[0].1.contains("sip:1001-"),
        "the binding is baresip's contact: {}",
        seen[0].1
    );
}
