//! Benchmarks for switchboard. The criterion benches live in `benches/`; `sipload` is the
//! REGISTER load client the SIPp comparison scripts in `sipp/` use beside SIPp.

pub mod events;
pub mod load;
pub mod tenants;

/// A request carrying the tenant's API key, as a desktop (GWS) sends it.
pub fn keyed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {key}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The load clients' runtime: `threads` workers (one at least).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
}

/// The server a load client measures: its processes, whose CPU time it reports.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerPids {
    /// The server's pids (a comma-separated list, for servers of several processes): its
    /// CPU time per operation, from /proc.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
}

/// The CPU time servers spend, from /proc: user and system time summed over their processes
/// (Kamailio runs several), read at the start and the end of what is measured.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: u64,
}

impl CpuMeter {
    /// Starts measuring the processes `pids` (none: measures nothing).
    pub fn start(pids: &[u32]) -> anyhow::Result<Self> {
        Ok(CpuMeter {
            pids: pids.to_vec(),
            start: cpu_ticks(pids)?,
        })
    }

    /// The CPU time since the start, in seconds; none without processes to measure.
    pub fn seconds(&self) -> anyhow::Result<Option<f64>> {
        if self.pids.is_empty() {
            return Ok(None);
        }
        let ticks = cpu_ticks(&self.pids)?.saturating_sub(self.start);
        // Linux counts CPU time in USER_HZ, 100 on every common configuration.
        Ok(Some(ticks as f64 / 100.0))
    }

    /// The CPU time since the start, in microseconds per one of `operations`.
    pub fn micros_per(&self, operations: u64) -> anyhow::Result<Option<f64>> {
        Ok(self
            .seconds()?
            .map(|s| s * 1_000_000.0 / operations.max(1) as f64))
    }
}

/// The processes' user and system CPU time so far, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    use anyhow::Context;
    let mut ticks = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("/proc/{pid}/stat"))?;
        // Fields after the command's closing parenthesis: utime and stime are the 12th and
        // 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(11) + field(12);
    }
    Ok(ticks)
}
