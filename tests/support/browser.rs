//! A real browser for tests: Debian's Chromium, headless, driven over its DevTools protocol
//! (JSON messages on a WebSocket) by a client of the project's own, which speaks WebSocket
//! with the sip crate's framing. Pages are served from a directory by a small HTTP server of
//! the test's own (module scripts do not load from file:// URLs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_sip::transport::ws::{self, Deframer, Item};

/// Serves the files under `root` over HTTP on a free loopback port, for as long as the test
/// runs.
pub fn serve(root: &Path) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let root = root.to_owned();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || answer(stream, &root));
        }
    });
    addr
}

fn answer(mut stream: TcpStream, root: &Path) {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The rest of the head.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = line.split(' ').nth(1).unwrap_or("/");
    let path = path
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_start_matches('/');
    let file: PathBuf = root.join(path);
    let reply = match std::fs::read(&file) {
        Ok(body) if !path.contains("..") => {
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("js") => "text/javascript",
                Some("html") => "text/html",
                _ => "application/octet-stream",
            };
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            head.extend(body);
            head
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&reply);
}

/// Headless Chromium on one page, killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: TcpStream,
    deframer: Deframer,
    next_id: u64,
}

impl Browser {
    /// Opens `url` with Chromium's flags `extra` besides the headless ones.
    pub fn open(url: &str, extra: &[String]) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium runs (scripts/test.sh installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let (found, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                    let _ = found.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
            }
        });
        let browser: SocketAddr = port
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium's DevTools address")
            .parse()
            .expect("address");
        let page = page_path(browser);
        let mut devtools = TcpStream::connect(browser).expect("DevTools");
        devtools
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            devtools,
            "GET {page} HTTP/1.1\r\nHost: {browser}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            devtools.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Self {
            child,
            _profile: profile,
            devtools,
            deframer: Deframer::new(16 * 1024 * 1024, false),
            next_id: 0,
        }
    }

    /// The value of JavaScript `expression` in the page (awaited when it is a promise).
    pub fn evaluate(&mut self, expression: &str) -> serde_json::Value {
        let params = serde_json::json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        self.call("Runtime.evaluate", params)["result"]["value"].clone()
    }

    /// The page as a PNG image.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64")
    }

    /// The result of DevTools method `method` with `params`.
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = serde_json::json!({"id": id, "method": method, "params": params});
        let message = ws::frame(
            ws::opcode::TEXT,
            call.to_string().as_bytes(),
            Some([7, 1, 9, 3]),
        );
        self.devtools.write_all(&message).expect("DevTools call");
        loop {
            match self.deframer.next_item().expect("DevTools framing") {
                Some(Item::Message(m)) => {
                    let answer: serde_json::Value =
                        serde_json::from_slice(&m).expect("DevTools JSON");
                    if answer["id"] == id {
                        return answer["result"].clone();
                    }
                }
                Some(_) => {}
                None => {
                    let mut buf = [0u8; 65_536];
                    let n = self.devtools.read(&mut buf).expect("DevTools answer");
                    assert!(n > 0, "DevTools closed");
                    self.deframer.buffer().extend_from_slice(&buf[..n]);
                }
            }
        }
    }

    /// Waits until `expression` is true in the page; its last value if it never was.
    pub fn wait_for(
        &mut self,
        expression: &str,
        within: Duration,
    ) -> Result<(), serde_json::Value> {
        let end = Instant::now() + within;
        loop {
            let value = self.evaluate(expression);
            if value == serde_json::Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(value);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools path of the page the browser opened.
fn page_path(browser: SocketAddr) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let list = get(browser, "/json/list");
        let body = list.split("\r\n\r\n").nth(1).unwrap_or_default();
        if let Ok(serde_json::Value::Array(targets)) = serde_json::from_str(body)
            && let Some(page) = targets.iter().find(|t| t["type"] == "page")
            && let Some(url) = page["webSocketDebuggerUrl"].as_str()
        {
            let path = url.splitn(4, '/').nth(3).unwrap_or_default();
            return format!("/{path}");
        }
        assert!(Instant::now() < end, "no page target: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP GET's whole answer, the connection closed after.
fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
