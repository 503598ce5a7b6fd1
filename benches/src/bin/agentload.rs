//! `agentload`: logs in every agent of the large benchmark tenant over the voice gRPC API, opens
//! event-stream subscribers, then sends agent state changes (NotReady, each with its own
//! reason code) at a steady rate and times each from its request to its event reaching every
//! subscriber; with `--pid`, the CPU the node used meanwhile.
//!
//! ```text
//! agentload --print-tenant > large.toml      # the tenant, for the node's configuration
//! agentload --grpc 127.0.0.1:9101 --rate 1000 --seconds 30 --subscribers 100 --pid $PID
//! ```
//!
//! With `--wallboard HOST:PORT --wallboard-clients N`, N clients also follow the wallboard's
//! server-sent events, and each change is timed from its request to the first update that
//! shows it (the agent's reason code) at every client.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use switchboard_benches::tenants::{AGENTS, as_toml, large_tenant};
use switchboard_benches::{keyed, runtime};
use switchboard_proto::events::Payload;
use switchboard_proto::voice as pb;
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
#[command(about = "Agent state changes through the voice gRPC API, timed to their events")]
struct Args {
    /// Print the large tenant as node configuration (TOML) and stop.
    #[arg(long)]
    print_tenant: bool,
    #[arg(long, default_value = "127.0.0.1:9101")]
    grpc: String,
    #[arg(long, default_value = "large-key")]
    key: String,
    #[arg(long, default_value_t = AGENTS)]
    agents: usize,
    /// State changes per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Event-stream subscribers (each following the whole tenant).
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// The node's process, to report the CPU it used during the load.
    #[arg(long)]
    pid: Option<u32>,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// The node's HTTP address, for wallboard clients.
    #[arg(long)]
    wallboard: Option<String>,
    /// Clients following the wallboard's server-sent events.
    #[arg(long, default_value_t = 0)]
    wallboard_clients: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_tenant {
        let text = as_toml(&[&large_tenant()])?;
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(());
    }
    runtime(2)?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.grpc))?
        .connect()
        .await
        .context("connecting to the gRPC API")?;
    let agents = pb::agents_client::AgentsClient::new(channel.clone());
    let limit = Arc::new(Semaphore::new(args.in_flight));

    // Everyone logs in.
    let started = Instant::now();
    let mut logins = Vec::with_capacity(args.agents);
    for i in 0..args.agents {
        let permit = limit.clone().acquire_owned().await?;
        let (mut client, key) = (agents.clone(), args.key.clone());
        logins.push(tokio::spawn(async move {
            let request = pb::LoginRequest {
                agent_id: format!("agent{i}"),
                ..Default::default()
            };
            let done = client.login(keyed(&key, request)).await;
            drop(permit);
            done.map(|_| ())
        }));
    }
    let mut refused = 0;
    for login in logins {
        if !matches!(login.await, Ok(Ok(()))) {
            refused += 1;
        }
    }
    let took = started.elapsed();
    say(format!(
        "logins: {} agents in {:.2} s ({:.0}/s), {refused} refused (already logged in counts here)",
        args.agents,
        took.as_secs_f64(),
        args.agents as f64 / took.as_secs_f64()
    ));

    // Subscribers, each timing every change it is handed.
    let total = (args.rate * args.seconds) as usize;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let mut events = pb::events_client::EventsClient::new(channel.clone());
        let mut stream = events
            .subscribe(keyed(&args.key, pb::SubscribeRequest::default()))
            .await
            .context("subscribing")?
            .into_inner();
        let sent = sent.clone();
        subscribers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            while let Ok(Some(e)) = stream.message().await {
                let Some(pb::stream_event::Change::AgentStateChanged(event)) = e.change else {
                    continue;
                };
                let Some(Payload::Agent(agent)) = event.payload else {
                    continue;
                };
                let Some(n) = agent
                    .reason
                    .strip_prefix('b')
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                let at = origin.elapsed().as_micros() as u64;
                let Some(from) = sent.get(n).map(|s| s.load(Ordering::Relaxed)) else {
                    continue;
                };
                latencies.push(at.saturating_sub(from));
                if latencies.len() == total {
                    break;
                }
            }
            latencies
        }));
    }

    // Wallboard clients, each timing every change from its request to the first update that
    // shows it.
    let mut boards = Vec::new();
    if let Some(http) = &args.wallboard {
        for _ in 0..args.wallboard_clients {
            boards.push(tokio::spawn(follow_board(
                http.clone(),
                args.key.clone(),
                sent.clone(),
                origin,
                total,
            )));
        }
    }

    // The load: `rate` changes a second, spread over the agents.
    let cpu_meter = switchboard_benches::CpuMeter::start(args.pid.as_slice())?;
    let load_start = Instant::now();
    let failed = Arc::new(AtomicUsize::new(0));
    let acks: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let mut requests = Vec::with_capacity(total);
    for n in 0..total {
        let due = load_start + Duration::from_micros(n as u64 * 1_000_000 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = limit.clone().acquire_owned().await?;
        let (mut client, key) = (agents.clone(), args.key.clone());
        let (sent, failed, acks) = (sent.clone(), failed.clone(), acks.clone());
        let agent = format!("agent{}", n % args.agents);
        requests.push(tokio::spawn(async move {
            let request = pb::NotReadyRequest {
                agent_id: agent,
                reason: format!("b{n}"),
                ..Default::default()
            };
            let at = origin.elapsed().as_micros() as u64;
            sent[n].store(at, Ordering::Relaxed);
            if client.not_ready(keyed(&key, request)).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            let ack = origin.elapsed().as_micros() as u64 - at;
            acks.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
            drop(permit);
        }));
    }
    for r in requests {
        let _ = r.await;
    }
    let sending = load_start.elapsed();
    // Let the last events reach everyone.
    let mut latencies = Vec::new();
    let mut short = 0;
    for s in subscribers {
        match tokio::time::timeout(Duration::from_secs(10), s).await {
            Ok(Ok(l)) => {
                if l.len() < total {
                    short += 1;
                }
                latencies.extend(l);
            }
            _ => short += 1,
        }
    }
    let cpu = match cpu_meter.seconds()? {
        Some(used) => format!(
            ", node CPU {:.2} s over {:.1} s ({:.0}% of one core)",
            used,
            sending.as_secs_f64(),
            used / sending.as_secs_f64() * 100.0
        ),
        None => String::new(),
    };
    let mut shown = Vec::new();
    for b in boards {
        if let Ok(Ok(Ok(l))) = tokio::time::timeout(Duration::from_secs(10), b).await {
            shown.extend(l);
        }
    }
    shown.sort_unstable();
    latencies.sort_unstable();
    let mut acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|e| e.into_inner()));
    acks.sort_unstable();
    let pct = |v: &[u64], p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0
    };
    say(format!(
        "changes: {total} at {:.0}/s over {:.1} s, {} failed{cpu}",
        total as f64 / sending.as_secs_f64(),
        sending.as_secs_f64(),
        failed.load(Ordering::Relaxed)
    ));
    say(format!(
        "acknowledged: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&acks, 0.5),
        pct(&acks, 0.99),
        pct(&acks, 1.0)
    ));
    say(format!(
        "request to event at each of {} subscribers: {} deliveries of {} expected, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; {short} subscribers short",
        args.subscribers,
        latencies.len(),
        total * args.subscribers,
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 0.999),
        pct(&latencies, 1.0)
    ));
    if args.wallboard_clients > 0 {
        say(format!(
            "request to wallboard update at each of {} clients: {} shown of {} expected, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            args.wallboard_clients,
            shown.len(),
            total * args.wallboard_clients,
            pct(&shown, 0.5),
            pct(&shown, 0.99),
            pct(&shown, 1.0)
        ));
    }
    Ok(())
}

/// One wallboard client: follows `/wallboard/events` on `http` and times each change `b<n>`
/// from its request (`sent[n]`) to the first update showing it, until all `total` were seen
/// or the stream has been quiet for 5 s.
async fn follow_board(
    http: String,
    key: String,
    sent: Arc<Vec<AtomicU64>>,
    origin: Instant,
    total: usize,
) -> anyhow::Result<Vec<u64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&http).await?;
    let request = format!(
        "GET /wallboard/events HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut seen = vec![false; total];
    let mut latencies = Vec::with_capacity(total);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    const MARK: &[u8] = b"\"reason\":\"b";
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Whole events only: up to the last blank line.
        let Some(end) = buf.windows(2).rposition(|w| w == b"\n\n") else {
            continue;
        };
        let at = origin.elapsed().as_micros() as u64;
        let mut i = 0;
        while let Some(p) = buf[i..end].windows(MARK.len()).position(|w| w == MARK) {
            let digits = i + p + MARK.len();
            let len = buf[digits..end]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if let Some(n) = std::str::from_utf8(&buf[digits..digits + len])
                .ok()
                .and_then(|d| d.parse::<usize>().ok())
                .filter(|&n| n < total && !seen[n])
            {
                seen[n] = true;
                latencies.push(at.saturating_sub(sent[n].load(Ordering::Relaxed)));
            }
            i = digits + len;
        }
        buf.drain(..end + 2);
        if latencies.len() == total {
            break;
        }
    }
    Ok(latencies)
}

/// Prints a line of the report.
fn say(line: String) {
    let _ = writeln!(std::io::stdout(), "{line}");
}
