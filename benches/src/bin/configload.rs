//! `configload`: writes the large benchmark tenant into PostgreSQL, then times loading it back
//! into a snapshot, as a node does at start and on every change.
//!
//! ```text
//! configload --postgres postgres://postgres@127.0.0.1:5432/bench --rounds 5
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use switchboard_actors::tenant::Tenant;
use switchboard_actors::tenant::postgres::ConfigStore;
use switchboard_benches::tenants::large_tenant;

#[derive(Debug, Parser)]
#[command(about = "Time loading a 10,000-agent tenant from PostgreSQL into a snapshot")]
struct Args {
    /// The database (its schema is created if needed; the tenant `large` is replaced).
    #[arg(long)]
    postgres: String,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = large_tenant();
    let mut store = ConfigStore::connect(&args.postgres)
        .await
        .context("connecting")?;
    let started = Instant::now();
    store.import(&config).await.context("importing")?;
    let import = started.elapsed();
    let mut loads = Vec::new();
    let mut snapshots = Vec::new();
    for _ in 0..args.rounds.max(1) {
        let started = Instant::now();
        let loaded = store.load("large").await?.context("tenant missing")?;
        let read = started.elapsed();
        let snapshot = Tenant::from_config(&loaded.config)?;
        loads.push(started.elapsed());
        snapshots.push(started.elapsed() - read);
        anyhow::ensure!(snapshot.dns.len() == 20_000, "all DNs loaded");
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    writeln!(
        std::io::stdout().lock(),
        "large tenant (10,000 agents, 20,000 DNs, 500 rules): import {:.0} ms; \
         load into a snapshot {:.0} ms median of {} (of which building the snapshot {:.0} ms)",
        ms(import),
        ms(median(&mut loads)),
        loads.len(),
        ms(median(&mut snapshots)),
    )?;
    Ok(())
}
