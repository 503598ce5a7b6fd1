//! `sipload`: registers a range of DNs against a registrar over UDP, TCP or TLS, each DN with
//! its own password, and reports the rate.
//!
//! ```text
//! sipload --target 127.0.0.1:5060 --domain demo.local --first 1001 --count 20 \
//!         --password 'demo{dn}' --phones 20 --rounds 2 --unregister
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use switchboard_benches::load::{Link, Phones, Report, Round};

#[derive(Debug, Parser)]
#[command(about = "REGISTER load over UDP, TCP or TLS with per-DN digest credentials")]
struct Args {
    /// The registrar.
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// The SIP domain of the DNs.
    #[arg(long, default_value = "demo.local")]
    domain: String,
    /// The first DN (numeric DNs, counted up from here).
    #[arg(long, default_value_t = 1001)]
    first: u64,
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// The password of each DN; `{dn}` stands for the DN.
    #[arg(long, default_value = "demo{dn}")]
    password: String,
    /// The registrar does not challenge (a 401 counts as a failure).
    #[arg(long)]
    no_auth: bool,
    /// Phones (UDP sockets) registering at once.
    #[arg(long, default_value_t = 100)]
    phones: usize,
    #[arg(long, default_value_t = 300)]
    expires: u32,
    /// Rounds of registration (the second and later refresh).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Unregister every DN after the last round.
    #[arg(long)]
    unregister: bool,
    /// How long one registration may take, retransmissions included.
    #[arg(long, default_value_t = 8000)]
    timeout_ms: u64,
    /// Threads driving the phones.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// udp, tcp (a connection per phone) or tls (the same, over TLS).
    #[arg(long, default_value = "udp")]
    transport: String,
    /// With tls: the authority (PEM) the registrar's certificate is checked against.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// The address the phones send from (any by default).
    #[arg(long)]
    from: Option<std::net::IpAddr>,
    /// Start a round every this many milliseconds (0: each as soon as the last is done).
    #[arg(long, default_value_t = 0)]
    every_ms: u64,
    #[command(flatten)]
    server: switchboard_benches::ServerPids,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    switchboard_benches::runtime(args.threads)
        .context("runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let link = match args.transport.as_str() {
        "udp" => Link::Udp,
        "tcp" => Link::Tcp,
        "tls" => Link::Tls(tls_client(args.ca.as_deref())?),
        other => bail!("--transport {other:?}: udp, tcp or tls"),
    };
    let phones = Phones::connect(args.target, args.phones.max(1), link, args.from)
        .await
        .context("the phones' sockets or connections")?;
    let mut round = Round {
        domain: args.domain.clone(),
        dns: (args.first..args.first + args.count)
            .map(|dn| dn.to_string())
            .collect(),
        password: (!args.no_auth).then(|| args.password.clone()),
        expires: args.expires,
        number: 0,
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    let started = tokio::time::Instant::now();
    for number in 1..=args.rounds + u32::from(args.unregister) {
        let due = started + Duration::from_millis(args.every_ms * u64::from(number - 1));
        tokio::time::sleep_until(due).await;
        round.number = number;
        let label = if number > args.rounds {
            round.expires = 0;
            "unregister"
        } else if number == 1 {
            "register"
        } else {
            "refresh"
        };
        let cpu = switchboard_benches::CpuMeter::start(&args.server.pid)?;
        let report = phones.run(&round).await;
        write!(out, "{}", summary(label, &report, phones.len()))?;
        match cpu.micros_per(report.outcomes.len() as u64)? {
            Some(micros) => writeln!(out, ", server CPU {micros:.1} µs per registration")?,
            None => writeln!(out)?,
        }
        failed += report.outcomes.len() - report.ok();
    }
    if failed > 0 {
        bail!("{failed} registrations failed");
    }
    Ok(())
}

/// TLS trusting the authority in `ca`.
fn tls_client(
    ca: Option<&std::path::Path>,
) -> anyhow::Result<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let ca = ca.context("--transport tls needs --ca FILE")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("--ca")? {
        roots.add(cert.context("--ca")?)?;
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

fn summary(label: &str, report: &Report, phones: usize) -> String {
    let secs = report.elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut line = format!(
        "{label}: {ok}/{all} in {secs:.2} s with {phones} phones: {rate:.0} registrations/s, \
         {tps:.0} transactions/s, latency p50 {p50:.1} ms p99 {p99:.1} ms, \
         {retrans} retransmissions",
        ok = report.ok(),
        all = report.outcomes.len(),
        rate = report.rate(),
        tps = report.transactions as f64 / secs,
        p50 = ms(report.latency(0.5)),
        p99 = ms(report.latency(0.99)),
        retrans = report.retransmissions,
    );
    let failures = report.failures();
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(status, n)| match status {
                0 => format!("{n} timed out"),
                s => format!("{n} got {s}"),
            })
            .collect();
        line.push_str(&format!("; failures: {}", list.join(", ")));
    }
    line
}
