//! `callload`: full calls over UDP (INVITE, 200, ACK, BYE) at a steady rate, from many SBC
//! sockets on several threads, to phones it plays itself on the other side, so that the
//! load generator is not the limit of what it measures. Prints the calls placed, completed
//! and failed, the setup time (INVITE to 200) and, given the server's pid, its CPU time per
//! call from /proc.
//!
//! ```text
//! callload --target 127.0.0.1:5060 --register --rate 4000 --secs 10 --pid $(pidof switchboard)
//! ```
//!
//! Phone `i` (1 to `--phones`) answers DN `1000 + i` on 127.0.0.1:`phone-base + i`: it
//! registers there with `--register` (digest, password `demo{dn}`), or a relay routes to it by
//! the dialed number's last digit (benches/sipp/kamailio_relay.cfg).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use switchboard_benches::load::{Phones, Round};
use switchboard_sip::{HeaderName, Message, Response, parse_datagram};
use tokio::net::UdpSocket;

#[derive(Debug, Parser)]
#[command(about = "Full SIP calls over UDP at a steady rate, with the phones answering")]
struct Args {
    /// The server calls go through.
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// The address the SBC sockets send from (the demo trunk's).
    #[arg(long, default_value = "127.0.0.2")]
    from: IpAddr,
    /// SBC sockets placing calls.
    #[arg(long, default_value_t = 8)]
    sbcs: usize,
    /// Phones answering (DNs 1001 and up).
    #[arg(long, default_value_t = 8)]
    phones: u16,
    #[arg(long, default_value_t = 36000)]
    phone_base: u16,
    /// Register each phone first (digest, password `demo{dn}`, domain `--domain`).
    #[arg(long)]
    register: bool,
    #[arg(long, default_value = "demo.local")]
    domain: String,
    /// Calls a second, in all.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// For how long calls are placed.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// How long one call may take, from INVITE to the BYE's answer.
    #[arg(long, default_value_t = 8000)]
    timeout_ms: u64,
    /// Threads driving the sockets.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[command(flatten)]
    server: switchboard_benches::ServerPids,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    switchboard_benches::runtime(args.threads)
        .context("runtime")?
        .block_on(run(args))
}

/// What the SBC sockets counted.
#[derive(Default)]
struct Counts {
    placed: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retransmitted: AtomicU64,
    /// Failures by the final status that ended them (0: no answer in time).
    statuses: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl Counts {
    fn fail(&self, status: u16) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.statuses.lock() {
            *s.entry(status).or_default() += 1;
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut sockets = Vec::new();
    for i in 1..=args.phones {
        let at = SocketAddr::new([127, 0, 0, 1].into(), args.phone_base + i);
        sockets.push(
            UdpSocket::bind(at)
                .await
                .with_context(|| format!("phone {i} at {at}"))?,
        );
    }
    let phones = Phones::on_sockets(args.target, sockets).await?;
    if args.register {
        let round = Round {
            domain: args.domain.clone(),
            dns: (1..=args.phones).map(|i| (1000 + i).to_string()).collect(),
            password: Some("demo{dn}".into()),
            expires: 3600,
            number: 1,
            timeout: Duration::from_secs(8),
        };
        let report = phones.run(&round).await;
        if report.ok() != round.dns.len() {
            bail!("phones not registered: {:?}", report.failures());
        }
    }
    for (i, socket) in phones.into_sockets().into_iter().enumerate() {
        tokio::spawn(answer(socket, 1001 + i as u16));
    }

    let counts = Arc::new(Counts::default());
    let setups = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let cpu = switchboard_benches::CpuMeter::start(&args.server.pid)?;
    let started = Instant::now();
    let mut sbcs = tokio::task::JoinSet::new();
    for s in 0..args.sbcs.max(1) {
        let socket = UdpSocket::bind(SocketAddr::new(args.from, 0)).await?;
        socket.connect(args.target).await?;
        let sbc = Sbc {
            socket,
            index: s,
            count: args.sbcs.max(1),
            phones: args.phones,
            rate: args.rate as f64 / args.sbcs.max(1) as f64,
            until: started + Duration::from_secs(args.secs),
            timeout: Duration::from_millis(args.timeout_ms),
            counts: counts.clone(),
            setups: setups.clone(),
        };
        sbcs.spawn(sbc.run());
    }
    while sbcs.join_next().await.is_some() {}
    let (placed, completed, failed) = (
        counts.placed.load(Ordering::Relaxed),
        counts.completed.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let mut setups = setups.lock().map(|s| s.clone()).unwrap_or_default();
    setups.sort_unstable();
    let quantile = |q: f64| {
        setups
            .get(((setups.len() as f64 * q) as usize).min(setups.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "rate {} calls/s for {} s: placed {placed}, completed {completed}, failed {failed}, retransmitted {}; setup p50 {:.2} ms, p99 {:.2} ms",
        args.rate,
        args.secs,
        counts.retransmitted.load(Ordering::Relaxed),
        quantile(0.5),
        quantile(0.99)
    )?;
    if let Ok(statuses) = counts.statuses.lock()
        && !statuses.is_empty()
    {
        write!(out, "; failures by status (0: unanswered) {statuses:?}")?;
    }
    if let Some(micros) = cpu.micros_per(completed)? {
        write!(out, "; server CPU {micros:.1} µs per call")?;
    }
    writeln!(out)?;
    if failed > 0 || completed < placed {
        bail!("{} calls not completed", placed - completed);
    }
    Ok(())
}

/// A phone: answers every INVITE with 200 and a session, every BYE and other request with
/// 200; the 200 to an INVITE is sent again if the INVITE is.
async fn answer(socket: UdpSocket, dn: u16) {
    let local = socket.local_addr().ok();
    let contact = local.map_or_else(String::new, |a| format!("<sip:{dn}@{a}>"));
    let sdp = format!(
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        20_000 + dn
    );
    let mut answered: HashMap<String, Bytes> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(Message::Request(request)) = parse_datagram(Bytes::copy_from_slice(&buf[..n]))
        else {
            continue;
        };
        let call_id = request
            .headers
            .get(&HeaderName::CallId)
            .map(|c| c.to_string())
            .unwrap_or_default();
        let reply = match request.method.as_str() {
            "INVITE" => answered
                .entry(call_id)
                .or_insert_with(|| {
                    let mut ok = Response::to_request(&request.headers, 200)
                        .with_to_tag(&format!("ph{dn}"))
                        .with_header(HeaderName::Contact, contact.clone())
                        .with_header(HeaderName::ContentType, "application/sdp");
                    ok.body = Bytes::from(sdp.clone());
                    ok.to_bytes()
                })
                .clone(),
            "ACK" => continue,
            "BYE" => {
                answered.remove(&call_id);
                Response::to_request(&request.headers, 200).to_bytes()
            }
            _ => Response::to_request(&request.headers, 200).to_bytes(),
        };
        let _ = socket.send_to(&reply, from).await;
    }
}

/// One SBC socket placing its share of the calls.
struct Sbc {
    socket: UdpSocket,
    index: usize,
    count: usize,
    phones: u16,
    /// Calls a second from this socket.
    rate: f64,
    until: Instant,
    timeout: Duration,
    counts: Arc<Counts>,
    setups: Arc<std::sync::Mutex<Vec<Duration>>>,
}

/// A call in progress.
struct Call {
    started: Instant,
    /// The request to send again until it is answered: the INVITE, then the BYE.
    pending: Bytes,
    resend_at: Instant,
    interval: Duration,
    /// The ACK, once the 200 came (sent again if the 200 is).
    ack: Option<Bytes>,
}

impl Sbc {
    async fn run(self) {
        let local = match self.socket.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let target = self.socket.peer_addr().ok();
        let target = target.map_or_else(String::new, |t| t.to_string());
        let mut calls: HashMap<String, Call> = HashMap::new();
        let mut setups = Vec::new();
        let mut placed = 0u64;
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if now >= self.until && calls.is_empty() {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    // The calls due by now at this socket's rate.
                    let due = if now < self.until {
                        (now.duration_since(started).as_secs_f64() * self.rate) as u64
                    } else {
                        placed
                    };
                    while placed < due {
                        let n = placed * self.count as u64 + self.index as u64;
                        let dn = 1001 + (n % u64::from(self.phones)) as u16;
                        let key = format!("{}-{n}", local.port());
                        let call_id = format!("cl{key}@{}", local.ip());
                        let invite = invite(&call_id, &key, dn, local, &target);
                        let _ = self.socket.send(&invite).await;
                        calls.insert(call_id, Call {
                            started: now,
                            pending: invite,
                            resend_at: now + Duration::from_millis(500),
                            interval: Duration::from_millis(500),
                            ack: None,
                        });
                        placed += 1;
                    }
                    let mut expired = Vec::new();
                    for (id, call) in calls.iter_mut() {
                        if now.duration_since(call.started) > self.timeout {
                            expired.push(id.clone());
                        } else if now >= call.resend_at {
                            let _ = self.socket.send(&call.pending).await;
                            self.counts.retransmitted.fetch_add(1, Ordering::Relaxed);
                            call.interval = (call.interval * 2).min(Duration::from_secs(4));
                            call.resend_at = now + call.interval;
                        }
                    }
                    for id in expired {
                        calls.remove(&id);
                        self.counts.fail(0);
                    }
                }
                received = self.socket.recv(&mut buf) => {
                    let Ok(n) = received else { break };
                    let Ok(message) = parse_datagram(Bytes::copy_from_slice(&buf[..n])) else {
                        continue;
                    };
                    match message {
                        Message::Response(r) => {
                            self.response(r, &mut calls, &mut setups, local).await;
                        }
                        Message::Request(r) => {
                            // An in-dialog request of the server's: answered.
                            if r.method.as_str() != "ACK" {
                                let ok = Response::to_request(&r.headers, 200).to_bytes();
                                let _ = self.socket.send(&ok).await;
                            }
                        }
                    }
                }
            }
        }
        self.counts.placed.fetch_add(placed, Ordering::Relaxed);
        if let Ok(mut all) = self.setups.lock() {
            all.extend(setups);
        }
    }

    async fn response(
        &self,
        r: Response,
        calls: &mut HashMap<String, Call>,
        setups: &mut Vec<Duration>,
        local: SocketAddr,
    ) {
        let Some(call_id) = r.headers.get(&HeaderName::CallId).map(|c| c.to_string()) else {
            return;
        };
        let method = r
            .headers
            .get(&HeaderName::CSeq)
            .and_then(|c| c.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default();
        let Some(call) = calls.get_mut(&call_id) else {
            return;
        };
        let now = Instant::now();
        match (method.as_str(), r.status) {
            ("INVITE", 100..=199) => {
                // Provisional: no more retransmissions of the INVITE, only the deadline.
                call.resend_at = call.started + self.timeout;
            }
            ("INVITE", 200..=299) => {
                if call.ack.is_none() {
                    setups.push(now.duration_since(call.started));
                    let (ack, bye) = in_dialog(&r, &call_id, local);
                    call.ack = Some(ack);
                    call.pending = bye;
                    call.interval = Duration::from_millis(500);
                    call.resend_at = now + call.interval;
                }
                if let Some(ack) = &call.ack {
                    let _ = self.socket.send(ack).await;
                }
                if call.pending.starts_with(b"BYE") {
                    let _ = self.socket.send(&call.pending).await;
                }
            }
            ("INVITE", status) => {
                calls.remove(&call_id);
                self.counts.fail(status);
            }
            ("BYE", 200..=299) => {
                calls.remove(&call_id);
                self.counts.completed.fetch_add(1, Ordering::Relaxed);
            }
            ("BYE", 100..=199) => {}
            ("BYE", status) => {
                calls.remove(&call_id);
                self.counts.fail(status);
            }
            _ => {}
        }
    }
}

/// The INVITE of call `call_id` (`key` for its branches) to DN `dn`.
fn invite(call_id: &str, key: &str, dn: u16, local: SocketAddr, target: &str) -> Bytes {
    let sdp = format!(
        "v=0\r\no=sbc 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = local.ip()
    );
    Bytes::from(format!(
        "INVITE sip:{dn}@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{key}-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550100000@{ip}>;tag=sbc{key}\r\n\
         To: <sip:{dn}@{target}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sbc@{local}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        ip = local.ip(),
        len = sdp.len()
    ))
}

/// The ACK and the BYE of the dialog the 2xx `ok` set up: to its Contact, through its
/// Record-Route (reversed, as the caller's route set).
fn in_dialog(ok: &Response, call_id: &str, local: SocketAddr) -> (Bytes, Bytes) {
    let key = call_id
        .trim_start_matches("cl")
        .split('@')
        .next()
        .unwrap_or_default();
    let header = |name: HeaderName| {
        ok.headers
            .get(&name)
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let contact = header(HeaderName::Contact);
    let uri = contact
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map_or(contact.as_str(), |(u, _)| u)
        .to_owned();
    let mut routes: Vec<String> = ok
        .headers
        .get_all(&HeaderName::RecordRoute)
        .map(|r| r.to_string())
        .collect();
    routes.reverse();
    let route = if routes.is_empty() {
        String::new()
    } else {
        format!("Route: {}\r\n", routes.join(", "))
    };
    let (from, to) = (header(HeaderName::From), header(HeaderName::To));
    let request = |method: &str, cseq: u32| {
        Bytes::from(format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{key}-{cseq}{method};rport\r\n\
             Max-Forwards: 70\r\n\
             {route}From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    };
    (request("ACK", 1), request("BYE", 2))
}
