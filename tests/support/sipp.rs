//! SIPp as a test peer: the scenarios of benches/sipp run as phones that register and answer.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Server;

/// A SIPp scenario from benches/sipp.
pub fn scenario(name: &str) -> std::path::PathBuf {
    super::manifest_dir().join("benches/sipp").join(name)
}

pub fn sipp(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sipp");
    c.current_dir(dir)
        .args(args)
        .args(["-nostdin", "-trace_err"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Registers `dn` from 127.0.0.1:`port`, so that a SIPp phone later bound there is rung.
pub fn register(server: &Server, dir: &Path, dn: &str, port: u16) {
    let status = sipp(
        dir,
        &[
            "-sf",
            scenario("register_md5.xml").to_str().expect("path"),
            "-s",
            dn,
            "-au",
            dn,
            "-ap",
            &format!("demo{dn}"),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-timeout",
            "10s",
            &server.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs (scripts/test.sh installs sip-tester)");
    assert!(
        status.success(),
        "{dn} registers: {status}\n{}",
        server.log_text()
    );
}

/// A SIPp phone on `dn` at `ip`:`port` that answers one call (phone_answer.xml).
pub fn answering_phone(dir: &Path, dn: &str, ip: &str, port: u16) -> Child {
    uas(
        dir,
        "phone_answer.xml",
        dn,
        ip,
        port,
        &["-m", "1", "-timeout", "30s"],
    )
}

/// A SIPp UAS running scenario `name` on `ip`:`port`, for as many calls as come, until
/// killed.
pub fn serving(dir: &Path, name: &str, service: &str, ip: &str, port: u16) -> Child {
    uas(dir, name, service, ip, port, &[])
}

/// SIPp's arguments for running `scenario` as `service` from `ip`:`port`.
fn running<'a>(scenario: &'a Path, service: &'a str, ip: &'a str, port: &'a str) -> Vec<&'a str> {
    let scenario = scenario.to_str().expect("path");
    vec!["-sf", scenario, "-s", service, "-i", ip, "-p", port]
}

/// A SIPp UAS running scenario `name` as `service` on `ip`:`port`, with `extra` arguments.
pub fn uas(dir: &Path, name: &str, service: &str, ip: &str, port: u16, extra: &[&str]) -> Child {
    let port = port.to_string();
    let scenario = scenario(name);
    let mut args = running(&scenario, service, ip, &port);
    args.extend_from_slice(extra);
    let child = sipp(dir, &args)
        .spawn()
        .expect("sipp runs (scripts/test.sh installs sip-tester)");
    // SIPp binds its socket at once; give it the moment it needs.
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// The carrier's SBC from 127.0.0.2 (the demo trunk's address): SIPp placing `count` calls of
/// `scenario` at `rate` a second to `server`, each line of injection file `calls` one call,
/// within `limit_secs`; with `-trace_logs`, the scenario's log actions go to its directory.
pub fn sbc_calls(
    dir: &Path,
    server: &Server,
    scenario: &Path,
    calls: &Path,
    count: usize,
    rate: f64,
    limit_secs: u64,
) -> Child {
    sipp(
        dir,
        &[
            "-sf",
            scenario.to_str().expect("path"),
            "-inf",
            calls.to_str().expect("path"),
            "-i",
            "127.0.0.2",
            "-p",
            &super::free_port().to_string(),
            "-r",
            &format!("{rate}"),
            "-m",
            &count.to_string(),
            "-trace_logs",
            "-timeout",
            &format!("{limit_secs}s"),
            &server.sip.to_string(),
        ],
    )
    .spawn()
    .expect("sipp runs (scripts/test.sh installs sip-tester)")
}

/// The carrier's SBC from 127.0.0.2: SIPp placing one call of `scenario` to `service` at
/// `server`, with `extra` arguments (a hold time, a message log, a time limit).
pub fn sbc_once(
    dir: &Path,
    server: &Server,
    scenario: &Path,
    service: &str,
    extra: &[&str],
) -> Command {
    let port = super::free_port().to_string();
    let mut args = running(scenario, service, "127.0.0.2", &port);
    args.extend_from_slice(&["-m", "1"]);
    args.extend_from_slice(extra);
    let target = server.sip.to_string();
    args.push(&target);
    sipp(dir, &args)
}

/// A SIPp phone on 1002 dials `number`, proves it is 1002 after the 407, and hangs up once
/// answered.
pub fn phone_1002_dials(server: &Server, dir: &Path, number: &str) -> ExitStatus {
    sipp(
        dir,
        &[
            "-sf",
            scenario("phone_call.xml").to_str().expect("path"),
            "-s",
            number,
            "-key",
            "caller",
            "1002",
            "-au",
            "1002",
            "-ap",
            "demo1002",
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &super::free_port().to_string(),
            "-timeout",
            "20s",
            &server.sip.to_string(),
        ],
    )
    .status()
    .expect("sipp runs")
}

/// SIPp instances killed when dropped, whether the test passed or not.
pub struct Running(pub Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait(child: &mut Child, within: Duration) -> ExitStatus {
    let end = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            return child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The error log SIPp writes in its directory, for failure messages.
pub fn sipp_errors(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_errors.log") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}
