//! socat as a test peer: TLS in front of a TCP server, or TCP in front of a TLS one.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// socat relaying between `from` and `to` (its address specs), killed with its children when
/// dropped; started once it listens on `port`.
pub struct Socat(Child);

impl Socat {
    pub fn start(from: String, to: String, ip: &str, port: u16) -> Self {
        let child = Command::new("socat")
            .args([from, to])
            .process_group(0)
            .stderr(Stdio::null())
            .spawn()
            .expect("socat runs (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            assert!(Instant::now() < deadline, "socat did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Socat(child)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.0.wait();
    }
}
