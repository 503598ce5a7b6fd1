//! `configload`: writes the large benchmark tenant into PostgreSQL, then times loading it back
//! into a snapshot, as a node does at start and on every change; then times live reload: a DN
//! added through the provisioning store, from its commit until a node following PostgreSQL
//! (a tenant actor and its watcher, as `serve` runs them) publishes the snapshot holding it,
//! for the large tenant and for the small demo tenant beside it.
//!
//! ```text
//! configload --postgres postgres://postgres@127.0.0.1:5432/bench --rounds 5
//! ```

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ractor::{Actor, OutputPort};
use switchboard_actors::tenant::postgres::ConfigStore;
use switchboard_actors::tenant::provision::DNS;
use switchboard_actors::tenant::watch::Watcher;
use switchboard_actors::tenant::{
    Directory, DnConfig, Tenant, TenantActor, TenantMsg, demo_tenant,
};
use switchboard_benches::tenants::large_tenant;

#[derive(Debug, Parser)]
#[command(about = "Time loading a 10,000-agent tenant from PostgreSQL into a snapshot")]
struct Args {
    /// The database (its schema is created if needed; the tenant `large` is replaced).
    #[arg(long)]
    postgres: String,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Changes timed for live reload, per tenant.
    #[arg(long, default_value_t = 20)]
    changes: usize,
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

    store
        .import(&demo_tenant())
        .await
        .context("importing demo")?;
    let mut held = Vec::new();
    for v in store.load_all().await? {
        held.push(Arc::new(v.checked()?));
    }
    let directory = Arc::new(Directory::from_tenants(held)?);
    let (actor, _) = Actor::spawn(
        None,
        TenantActor,
        (directory.clone(), Arc::new(OutputPort::default())),
    )
    .await?;
    let mut latest = ractor::call!(actor, TenantMsg::Follow)?;
    let watcher = Watcher::spawn(args.postgres.clone(), actor.clone(), &directory);
    while !watcher.connected_flag().load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for name in ["demo", "large"] {
        let mut writes = Vec::new();
        let mut delays = Vec::new();
        for i in 0..args.changes.max(1) {
            let dn = DnConfig {
                number: format!("9{i:05}"),
                kind: Default::default(),
                password: "bench".into(),
                digest: None,
                authenticate: None,
                options: Default::default(),
            };
            let held = latest.borrow().by_name(name).cloned();
            let started = Instant::now();
            let stored = store.create(name, held.as_deref(), &DNS, dn).await?;
            let committed = Instant::now();
            latest
                .wait_for(|d| d.version(name).is_some_and(|v| v >= stored.version))
                .await?;
            writes.push(committed - started);
            delays.push(committed.elapsed());
        }
        let worst = delays.iter().max().copied().unwrap_or_default();
        writeln!(
            std::io::stdout().lock(),
            "{name}: add a DN through the store {:.1} ms median; commit to the node's new \
             snapshot {:.1} ms median, {:.1} ms worst of {}",
            ms(median(&mut writes)),
            ms(median(&mut delays)),
            ms(worst),
            delays.len(),
        )?;
    }
    drop(watcher);
    actor.stop(None);
    Ok(())
}
