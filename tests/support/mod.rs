//! Shared by the end-to-end tests: starting the switchboard binary on free ports, the private
//! Redis of the test harness, and raw SIP over UDP and TCP.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod certs;
pub mod desktop;
pub mod peer;
pub mod sipp;
pub mod socat;
pub mod store;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::{Message, Response, parse_datagram};

pub const WAIT: Duration = Duration::from_secs(5);

/// A port free for both UDP and TCP on 127.0.0.1, below Linux's ephemeral range (32768 and
/// up) so that no outgoing connection of another test takes it between this check and the
/// server's bind; picked at random so that tests running side by side in other processes
/// rarely try the same, and never handed out twice by this process: two tests starting
/// servers at once would otherwise both find a port free that neither has bound yet.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mixed =
            (seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let port = 20_000 + (mixed >> 33) as u16 % 12_000;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).contains(&port) {
            continue;
        }
        let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            drop(udp);
            given.get_or_insert_with(HashSet::new).insert(port);
            return port;
        }
    }
}

/// The Redis that `scripts/test.sh` starts for the tests.
pub fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS").unwrap_or_else(|_| {
        panic!("SWITCHBOARD_TEST_REDIS is not set: run the tests with scripts/test.sh, which starts a private Redis")
    })
}

/// A flushed Redis database of the harness's server for one test (databases 1 to 63, so
/// tests that run side by side do not meet).
pub fn redis_db(db: u8) -> String {
    let url = format!("{}/{db}", redis_url().trim_end_matches('/'));
    let mut conn = redis(&url);
    redis::cmd("FLUSHDB")
        .query::<()>(&mut conn)
        .expect("flushdb");
    url
}

/// A connection to the Redis at `url`.
pub fn redis(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("redis url")
        .get_connection()
        .expect("redis reachable")
}

/// The fields of every entry of a Redis stream, oldest first.
pub fn stream_entries(
    conn: &mut dyn redis::ConnectionLike,
    stream: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(conn)
        .expect("xrange");
    entries.into_iter().map(|(_, fields)| fields).collect()
}

/// A running `switchboard serve`, stopped when dropped.
pub struct Server {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// The GES callbacks API.
    pub callbacks: SocketAddr,
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the binary with `args` after `serve`, on free ports, and waits until ready.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_config(None, args)
    }

    pub fn start_with_config(config: Option<&str>, args: &[&str]) -> Self {
        Self::start_at(None, config, args)
    }

    /// Starts on a SIP address chosen beforehand (a peer's configuration names it).
    pub fn start_on(sip: SocketAddr, config: Option<&str>, args: &[&str]) -> Self {
        Self::start_at(Some(sip), config, args)
    }

    /// Starts on `sip`, or a free port, and free HTTP, gRPC and callbacks ports. A port found
    /// free may still be taken by another process before the server binds it: then the
    /// server is started again on fresh ports (all but a SIP port given by the caller).
    fn start_at(sip: Option<SocketAddr>, config: Option<&str>, args: &[&str]) -> Self {
        let fresh = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut attempt = 1;
        loop {
            let ports = [sip.unwrap_or_else(fresh), fresh(), fresh(), fresh()];
            match Self::try_start(ports, config, args) {
                Ok(server) => return server,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    attempt += 1;
                }
                Err(log) => panic!("switchboard did not become ready:\n{log}"),
            }
        }
    }

    fn try_start(
        [sip, http, grpc, callbacks]: [SocketAddr; 4],
        config: Option<&str>,
        args: &[&str],
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("switchboard.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("serve")
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--grpc-listen")
            .arg(grpc.to_string())
            .arg("--callbacks-listen")
            .arg(callbacks.to_string())
            .args(args)
            // SWITCHBOARD_TEST_LOG sets the servers' log filter for a run by hand.
            .env(
                "RUST_LOG",
                std::env::var("SWITCHBOARD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // The embedded default's events file and spool land in the server's directory.
            .current_dir(dir.path())
            .env("SWITCHBOARD_EVENTS_FILE", dir.path().join("events.jsonl"))
            .env_remove("SWITCHBOARD_KAFKA")
            .env_remove("SWITCHBOARD_SPOOL_DIR")
            .env_remove("SWITCHBOARD_REDIS")
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("SWITCHBOARD_POSTGRES")
            .env_remove("SWITCHBOARD_ADMIN_KEY")
            .env_remove("SWITCHBOARD_CALLBACKS_LISTEN")
            .env_remove("SWITCHBOARD_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(text) = config {
            let path = dir.path().join("node.toml");
            // A file of no tenants of its own runs the demo tenant, which it must ask for.
            let demo = !text.contains("[[tenants]]")
                && !text.contains("postgres")
                && !args.contains(&"--postgres");
            let text = if demo {
                format!("demo = true\n{text}")
            } else {
                text.to_owned()
            };
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .expect("config file");
            cmd.arg("--config").arg(path);
        }
        let child = cmd.spawn().expect("start switchboard");
        let mut server = Self {
            child,
            sip,
            http,
            grpc,
            callbacks,
            log,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Stops this server and starts another on the same SIP port (where phones and peers
    /// reach it) with the same arguments. The HTTP and gRPC ports are fresh: once freed, a
    /// port of the ephemeral range may be taken at once by any outgoing connection.
    pub fn restart(mut self, config: Option<&str>, args: &[&str]) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Self::start_at(Some(self.sip), config, args)
    }

    /// Waits until `/readyz` answers 200; the log if the process exits or takes over 20 s.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get(self.http, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.log_text())
    }

    /// The JSON-lines file the server reports its events to (without Kafka).
    pub fn events_file(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// Stops the process as an operator would (SIGTERM), and waits for it to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("switchboard did not stop on SIGTERM:\n{}", self.log_text());
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A figure of the server's `/metrics`, named with its labels as the text spells them
/// (`switchboard_tenant_owned{tenant="demo"}`); `None` if the server or the line is missing.
pub fn metric(server: &Server, series: &str) -> Option<f64> {
    let text = http_get(server.http, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
}

/// Waits until `test` holds, looking every 20 ms; false if it did not within `within`.
pub fn eventually(within: Duration, mut test: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if test() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain HTTP GET; the whole response, or `None` if the server cannot be reached.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    http_request(addr, "GET", path, "")
}

/// An HTTP/1.1 request with `headers` (each line ending in CRLF); the whole response.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, headers: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A TCP connection to `to` from loopback address `ip` (any of 127.0.0.0/8): a source of its
/// own.
pub fn tcp_from(ip: &str, to: SocketAddr) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let ip: std::net::IpAddr = ip.parse().expect("ip");
    socket.bind(&SocketAddr::new(ip, 0).into()).expect("bind");
    socket.connect(&to.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// One HTTP/1.1 response read off a connection kept open: its head and its body (of the
/// length the head gives).
pub fn read_http_response(s: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before a whole head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("content-length");
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before the whole body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (head, buf[head_end..head_end + length].to_vec())
}

/// A UDP socket speaking raw SIP to the server.
pub struct Udp {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl Udp {
    pub fn new(server: SocketAddr) -> Self {
        Self::on("127.0.0.1", server)
    }

    /// A socket on loopback address `ip` (any of 127.0.0.0/8): a source of its own.
    pub fn on(ip: &str, server: SocketAddr) -> Self {
        let socket = UdpSocket::bind((ip, 0)).expect("bind");
        socket.set_read_timeout(Some(WAIT)).expect("timeout");
        Self { socket, server }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    pub fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).expect("send");
    }

    /// The next response, or `None` when nothing comes within `wait`.
    pub fn recv_within(&self, wait: Duration) -> Option<Response> {
        self.socket.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = vec![0u8; 65_536];
        let n = self.socket.recv(&mut buf).ok()?;
        match parse_datagram(Bytes::copy_from_slice(&buf[..n])) {
            Ok(Message::Response(r)) => Some(r),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// The status of the next response, read off its status line only: the answer to a
    /// malformed request copies its malformed headers.
    pub fn recv_status_within(&self, wait: Duration) -> Option<u16> {
        self.socket.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = vec![0u8; 65_536];
        let n = self.socket.recv(&mut buf).ok()?;
        status_line(&buf[..n])
    }

    pub fn recv(&self) -> Response {
        self.recv_within(WAIT).expect("a response in time")
    }

    pub fn request(&self, bytes: &[u8]) -> Response {
        self.send(bytes);
        self.recv()
    }
}

/// Tenants as a node's TOML file holds them (its `[[tenants]]` tables).
pub fn tenants_toml(tenants: &[&switchboard_actors::tenant::TenantConfig]) -> String {
    switchboard_benches::tenants::as_toml(tenants).expect("tenants as TOML")
}

/// The RFC torture messages beside the checkout.
pub fn torture_dir() -> PathBuf {
    manifest_dir().join("../shared/reference/sip-torture")
}

/// A REGISTER from a phone on `port`, for `dn` of the demo tenant.
pub fn register(dn: &str, port: u16, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:demo.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq};rport\r\n\
         Max-Forwards: 70\r\nTo: <sip:{dn}@demo.local>\r\nFrom: <sip:{dn}@demo.local>;tag=p{port}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nUser-Agent: e2e\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The nonce and algorithm of each challenge of a 401, in order.
pub fn challenges(r: &Response) -> Vec<(String, String)> {
    r.headers
        .get_all(&switchboard_sip::HeaderName::WwwAuthenticate)
        .map(|h| {
            let creds = switchboard_sip::header::Credentials::parse(h).expect("challenge parses");
            (
                creds.get("nonce").unwrap_or_default().to_owned(),
                creds.get("algorithm").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Adds digest credentials answering the first challenge of `challenge`.
pub fn with_credentials(
    request: &str,
    challenge: &Response,
    user: &str,
    password: &str,
    nc: u32,
) -> String {
    let (nonce, algorithm) = challenges(challenge)
        .into_iter()
        .next()
        .expect("a challenge");
    let alg = switchboard_sip::auth::Algorithm::from_name(&algorithm).expect("known algorithm");
    let digest = switchboard_sip::auth::ClientDigest {
        algorithm: alg,
        username: user,
        realm: "demo.local",
        password,
    };
    let response = digest.response("REGISTER", "sip:demo.local", &nonce, nc, "0a4f113b");
    let header = format!(
        "Authorization: Digest username=\"{user}\", realm=\"demo.local\", nonce=\"{nonce}\", uri=\"sip:demo.local\", response=\"{response}\", algorithm={algorithm}, qop=auth, nc={nc:08x}, cnonce=\"0a4f113b\"\r\n"
    );
    request.replacen(
        "Content-Length: 0\r\n",
        &format!("{header}Content-Length: 0\r\n"),
        1,
    )
}

/// Registers `dn` of domain demo.local with `password` through the whole challenge; the final
/// status.
pub fn register_with(phone: &Udp, dn: &str, password: &str, call_id: &str) -> u16 {
    register_for(phone, dn, password, call_id, 1, None)
}

/// As [`register_with`], the REGISTERs numbered from `cseq` (above the last of this Call-ID)
/// and the contact given `expires` (0 removes it).
pub fn register_for(
    phone: &Udp,
    dn: &str,
    password: &str,
    call_id: &str,
    cseq: u32,
    expires: Option<u32>,
) -> u16 {
    let port = phone.port();
    let expires = expires.map(|e| format!(";expires={e}")).unwrap_or_default();
    let contact = format!("Contact: <sip:{dn}@127.0.0.1:{port}>{expires}\r\n");
    let challenge = phone.request(register(dn, port, call_id, cseq, &contact).as_bytes());
    if challenge.status != 401 {
        return challenge.status;
    }
    let answer = with_credentials(
        &register(dn, port, call_id, cseq + 1, &contact),
        &challenge,
        dn,
        password,
        1,
    );
    phone.request(answer.as_bytes()).status
}

/// The status code of a response's status line.
pub fn status_line(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// This checkout, read at run time: a build cache shared by several checkouts must not point a
/// test at another one.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var("CARGO_MANIFEST_DIR")
        .expect("tests run under cargo")
        .into()
}

/// A fresh, empty database on the harness's PostgreSQL; its URL.
pub fn postgres_db(name: &str) -> String {
    let base = std::env::var("SWITCHBOARD_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("SWITCHBOARD_TEST_POSTGRES is not set: run the tests with scripts/test.sh, which starts a private PostgreSQL")
    });
    // On a thread of its own, so that async tests (already inside a runtime) may call it too.
    let admin = base.clone();
    let db = name.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .expect("postgresql reachable");
            tokio::spawn(connection);
            // One statement each: a multi-statement batch runs as one transaction.
            for sql in [
                format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                format!("CREATE DATABASE {db}"),
            ] {
                client.batch_execute(&sql).await.expect("fresh database");
            }
        });
    })
    .join()
    .expect("fresh database");
    let (prefix, _) = base.rsplit_once('/').expect("url with a database");
    format!("{prefix}/{name}")
}

/// Runs `switchboard` with `args` to the end; its status, stdout and stderr.
pub fn switchboard(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_POSTGRES")
        .output()
        .expect("switchboard runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP relay to `target` that a test can cut and restore, standing for a network or a server
/// that goes away: cut closes every relayed connection and refuses new ones.
pub struct Relay {
    pub addr: SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listens");
        let addr = listener.local_addr().expect("relay address");
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, live2) = (up.clone(), live.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                for pair in pairs {
                    if let (Ok(mut from), Ok(mut to)) = pair {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
                let mut live = live2.lock().unwrap_or_else(|p| p.into_inner());
                live.push(client);
                live.push(server);
            }
        });
        Self { addr, up, live }
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        for stream in live.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The `host:port` of a PostgreSQL URL, to put a [`Relay`] in front of it.
pub fn postgres_addr(url: &str) -> SocketAddr {
    url.split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(addr, _)| addr.parse().ok())
        .expect("postgres address")
}

/// `url` with its `host:port` replaced by `addr`.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("url");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{addr}/{path}")
}

/// A gRPC channel to the node's API (provisioning, voice).
pub async fn grpc(server: &Server) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC reachable")
}

/// `message` with `authorization: Bearer <key>`, as the APIs ask.
pub fn with_key<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

/// The demo tenant's API key.
pub const DEMO_KEY: &str = "demo-key";

/// Logs in demo agent `a<dn>` at each DN, and makes it Ready when `ready`.
pub async fn log_in(
    agents: &mut switchboard_proto::voice::agents_client::AgentsClient<tonic::transport::Channel>,
    dns: &[&str],
    ready: bool,
) {
    for dn in dns {
        let id = format!("a{dn}");
        agents
            .login(with_key(DEMO_KEY, login(&id, dn)))
            .await
            .expect("login");
        if ready {
            agents
                .ready(with_key(DEMO_KEY, agent(&id, "")))
                .await
                .expect("ready");
        }
    }
}

/// A request about agent `id`, with `reference` for the answer to name.
pub fn agent(id: &str, reference: &str) -> switchboard_proto::voice::AgentRequest {
    switchboard_proto::voice::AgentRequest {
        agent_id: id.into(),
        reference_id: reference.into(),
        ..Default::default()
    }
}

pub fn login(id: &str, dn: &str) -> switchboard_proto::voice::LoginRequest {
    switchboard_proto::voice::LoginRequest {
        agent_id: id.into(),
        dn: dn.into(),
        reference_id: format!("login-{id}"),
        ..Default::default()
    }
}

/// The demo tenant's call-thread events, oldest first, as (kind, payload JSON).
pub fn call_events(conn: &mut redis::Connection) -> Vec<(String, serde_json::Value)> {
    stream_events(conn, "sb:{demo}:voice-callthread")
}

/// The events of `stream`, oldest first, as (kind, payload JSON).
pub fn stream_events(
    conn: &mut dyn redis::ConnectionLike,
    stream: &str,
) -> Vec<(String, serde_json::Value)> {
    stream_entries(conn, stream)
        .into_iter()
        .map(|fields| {
            let payload = serde_json::from_str(&fields["payload"]).expect("payload JSON");
            (fields["kind"].clone(), payload)
        })
        .collect()
}

/// A call event's parties as (role, DN).
pub fn parties(call: &serde_json::Value) -> Vec<(&str, &str)> {
    call["parties"]
        .as_array()
        .map(|parties| {
            parties
                .iter()
                .map(|p| {
                    (
                        p["role"].as_str().unwrap_or(""),
                        p["dn"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
