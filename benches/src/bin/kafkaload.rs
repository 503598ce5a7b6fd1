//! `kafkaload`: the reporting pipeline's rates against a real broker. Three phases, each on
//! `--events` call events of about 700 bytes:
//!
//! 1. spool write: the broker unreachable, every event emitted and written to the spool
//!    (synced in its batches), timed until the spool is closed and synced;
//! 2. drain: the broker up, a reporter started on that spool, timed until Kafka has
//!    acknowledged all of it;
//! 3. live: events emitted as fast as one thread can, timed until Kafka has acknowledged
//!    them all (the sustained rate into Kafka, through the spool).
//!
//! ```text
//! kafkaload --tansu ~/.cache/switchboard/tools/bin/tansu --events 500000
//! kafkaload --brokers 10.0.0.5:9092 --events 1000000     # a broker of your own (phases 2-3)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use switchboard_benches::events::call_event;
use switchboard_kafka::{Format, KafkaConfig, Reporter};

#[derive(Debug, Parser)]
#[command(about = "Spool write, drain and live rates of the Kafka reporter")]
struct Args {
    /// A tansu binary to run as the broker (memory storage, a free local port).
    #[arg(long, conflicts_with = "brokers")]
    tansu: Option<PathBuf>,
    /// A broker already running; phase 1 then uses an unreachable address instead.
    #[arg(long)]
    brokers: Option<String>,
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Protobuf payloads instead of JSON.
    #[arg(long)]
    protobuf: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tansu(path: &Path, port: u16) -> anyhow::Result<Broker> {
    let child = switchboard_benches::events::tansu(path, port)
        .spawn()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "tansu did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Broker(child))
}

fn rate(what: &str, events: u64, bytes: u64, took: Duration) {
    let secs = took.as_secs_f64();
    let _ = writeln!(
        std::io::stdout(),
        "{what:<34} {events:>9} events in {secs:>7.3} s: {:>9.0} events/s, {:>7.1} MB/s",
        events as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

/// Emits events `from..to` as fast as the spool's writer takes them (emitting faster than
/// that for long only fills memory, and past a bound the reporter drops events).
async fn emit_all(reporter: &Reporter, from: u64, to: u64) {
    for n in from..to {
        if n % 1000 == 0 {
            while reporter.status().queued > 50_000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        reporter.emit(call_event(n));
    }
}

/// Waits until Kafka has acknowledged `delivered` events in all.
async fn delivered(reporter: &Reporter, delivered: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while reporter.status().delivered < delivered {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Kafka took {} of {delivered} events in 10 minutes: {:?}",
            reporter.status().delivered,
            reporter.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile_dir()?;
    let format = if args.protobuf {
        Format::Protobuf
    } else {
        Format::Json
    };
    let config = |brokers: String| KafkaConfig {
        brokers,
        format,
        spool_dir: dir.clone(),
        spool_max_bytes: 64 << 30,
        ..KafkaConfig::default()
    };
    let size = switchboard_kafka::encode(&call_event(0), format).len() as u64;
    let _ = writeln!(
        std::io::stdout(),
        "{} events of {size} bytes ({format:?})",
        args.events
    );

    // 1. Spool write, Kafka unreachable.
    let unreachable = format!("127.0.0.1:{}", free_port()?);
    let spooling = Reporter::kafka(config(unreachable))?;
    let start = Instant::now();
    emit_all(&spooling, 0, args.events).await;
    let emitted = start.elapsed();
    spooling.close().await;
    let spooled = spooling.status().spooled_bytes;
    rate("emit (paced by the writer)", args.events, spooled, emitted);
    anyhow::ensure!(
        spooling.status().lost == 0,
        "events lost: {:?}",
        spooling.status()
    );
    rate(
        "spool write (written and synced)",
        args.events,
        spooled,
        start.elapsed(),
    );

    // 2. Drain, Kafka up.
    let port = free_port()?;
    let (brokers, _broker) = match (&args.tansu, &args.brokers) {
        (Some(path), _) => (format!("127.0.0.1:{port}"), Some(start_tansu(path, port)?)),
        (None, Some(brokers)) => (brokers.clone(), None),
        (None, None) => anyhow::bail!("give --tansu PATH or --brokers HOST:PORT"),
    };
    let start = Instant::now();
    let reporter = Reporter::kafka(config(brokers))?;
    delivered(&reporter, args.events).await?;
    rate(
        "drain (spool to Kafka)",
        args.events,
        spooled,
        start.elapsed(),
    );

    // 3. Live: emitted as fast as one thread can, through the spool into Kafka.
    let start = Instant::now();
    emit_all(&reporter, args.events, 2 * args.events).await;
    delivered(&reporter, 2 * args.events).await?;
    rate(
        "live into Kafka (acknowledged)",
        args.events,
        spooled,
        start.elapsed(),
    );
    reporter.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kafkaload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
