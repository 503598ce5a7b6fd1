//! SIPp, a real SIP peer, registers DNs of the demo tenant with MD5 digest authentication
//! (benches/sipp/register_md5.xml), and fails with a wrong password.

mod support;

use std::process::Command;

use support::{Server, free_port};

fn sipp(server: &Server, dn: &str, password: &str) -> std::process::ExitStatus {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = support::manifest_dir().join("benches/sipp/register_md5.xml");
    Command::new("sipp")
        .current_dir(dir.path())
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", dn, "-au", dn, "-ap", password])
        .args(["-m", "1", "-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["-timeout", "10s", "-nostdin"])
        .arg(server.sip.to_string())
        .output()
        .expect("sipp runs (scripts/test.sh installs sip-tester)")
        .status
}

#[test]
fn sipp_registers_with_md5() {
    let server = Server::start(&[]);
    for dn in ["1001", "1002", "1003", "1004", "1005"] {
        let status = sipp(&server, dn, &format!("demo{dn}"));
        assert!(
            status.success(),
            "DN {dn}: sipp {status}\n{}",
            server.log_text()
        );
    }
    let status = sipp(&server, "1006", "not-the-password");
    assert!(!status.success(), "a wrong password must not register");
    // Told as a failure of the source's (summarised should it repeat).
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("SIP sources' failures") && l.contains("credentials")),
        "{log}"
    );
}
