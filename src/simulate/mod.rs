//! `switchboard simulate`: a scenario run against a tenant's configuration on virtual time
//! ([`switchboard_routing::simulate`]), reported as a table, CSV or JSON, with charts; or two
//! scenarios side by side on the same seed.

mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use switchboard_actors::tenant::postgres::ConfigStore;
use switchboard_actors::tenant::provision::latest_strategy;
use switchboard_actors::tenant::{TenantConfig, compile_strategy, demo_tenant};
use switchboard_routing::simulate::{self, Report, Scenario};
use switchboard_routing::strategy::Program;

use crate::config::TenantsFile;

#[derive(clap::Args)]
pub(crate) struct SimulateArgs {
    /// The scenario (TOML): arrivals, handle times, patience, agents, seed.
    scenario: PathBuf,
    /// The tenant's configuration: a TOML file of [[tenants]], as `config export` prints
    /// (before PostgreSQL when both are given).
    #[arg(long)]
    tenant_file: Option<PathBuf>,
    /// The tenant's configuration from PostgreSQL (postgres://user@host:port/db).
    #[arg(long, env = "SWITCHBOARD_POSTGRES")]
    postgres: Option<String>,
    /// Which tenant of the file or database (the only one, or the first, by default).
    #[arg(long)]
    tenant: Option<String>,
    /// What to print: a table, or CSV or JSON for tools.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write charts (SVG: service level, waiting, occupancy per interval) into this folder.
    #[arg(long)]
    charts: Option<PathBuf>,
    /// A second scenario, run on the first's seed, and reported beside it.
    #[arg(long)]
    compare: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Csv,
    Json,
}

pub(crate) async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let config = tenant_config(&args).await?;
    let scenario = load(&args.scenario)?;
    let report = run(&config, &scenario, &args.scenario)?;
    let mut out = Vec::new();
    let written = match &args.compare {
        None => print(&mut out, &args, &report),
        Some(other) => compare(&mut out, &args, &config, &scenario, &report, other),
    };
    written?;
    // A reader that stopped early (`| head`) is no error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), &out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Reports one run as `args` ask.
fn print(out: &mut Vec<u8>, args: &SimulateArgs, report: &Report) -> anyhow::Result<()> {
    match args.format {
        Format::Table => render::table(out, report)?,
        Format::Csv => render::csv(out, report)?,
        Format::Json => serde_json::to_writer_pretty(&mut *out, report)?,
    }
    if let Some(dir) = &args.charts {
        render::charts(dir, report, None)?;
    }
    Ok(())
}

/// Runs the scenario at `other_path` on the first one's seed, and reports both.
fn compare(
    out: &mut Vec<u8>,
    args: &SimulateArgs,
    config: &TenantConfig,
    scenario: &Scenario,
    report: &Report,
    other_path: &Path,
) -> anyhow::Result<()> {
    let mut other = load(other_path)?;
    // The same callers: the first scenario's seed.
    other.seed = scenario.seed;
    let other_report = run(config, &other, other_path)?;
    let names = [name_of(&args.scenario), name_of(other_path)];
    match args.format {
        Format::Table => render::comparison(out, &names, report, &other_report)?,
        Format::Csv => {
            render::csv(out, report)?;
            render::csv(out, &other_report)?;
        }
        Format::Json => serde_json::to_writer_pretty(
            &mut *out,
            &serde_json::json!({ names[0].as_str(): report, names[1].as_str(): other_report }),
        )?,
    }
    if let Some(dir) = &args.charts {
        render::charts(dir, report, Some((&names, &other_report)))?;
    }
    Ok(())
}

fn name_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The tenant the scenario runs against: from a file, PostgreSQL, or the demo.
async fn tenant_config(args: &SimulateArgs) -> anyhow::Result<TenantConfig> {
    let tenants = match (&args.tenant_file, &args.postgres) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let tenants: TenantsFile = toml::from_str(&text)
                .with_context(|| format!("invalid tenants in {}", file.display()))?;
            tenants.tenants
        }
        (None, Some(url)) => ConfigStore::connect(url)
            .await
            .with_context(|| format!("configuration database {}", crate::node::redact(url)))?
            .load_all()
            .await?
            .into_iter()
            .map(|v| v.config)
            .collect(),
        (None, None) => vec![demo_tenant()],
    };
    match &args.tenant {
        Some(name) => tenants
            .into_iter()
            .find(|t| &t.name == name)
            .with_context(|| format!("no tenant named {name:?}")),
        None => tenants.into_iter().next().context("no tenant configured"),
    }
}

/// Reads a scenario and the files it names (relative to it).
fn load(path: &Path) -> anyhow::Result<Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut scenario: Scenario =
        toml::from_str(&text).with_context(|| format!("invalid scenario {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).with_context(|| format!("cannot read {file}"))
    };
    for a in &mut scenario.arrivals {
        if let Some(file) = a.file.clone() {
            a.load(&file, &read(&file)?)?;
        }
    }
    for d in std::iter::once(&mut scenario.handle).chain(scenario.patience.as_mut()) {
        if let Some(file) = d.file.clone() {
            d.load(&file, &read(&file)?)?;
        }
    }
    for r in scenario.routing.values_mut() {
        if let Some(file) = r.strategy_file.clone() {
            r.strategy = Some(read(&file)?);
        }
    }
    Ok(scenario)
}

/// Runs `scenario` against the tenant `config`; errors name the scenario's file. Agents wrap
/// up as the tenant says unless the scenario says otherwise.
fn run(config: &TenantConfig, scenario: &Scenario, path: &Path) -> anyhow::Result<Report> {
    let tenant = tenant(config, scenario).with_context(|| format!("{}", path.display()))?;
    let mut scenario = scenario.clone();
    scenario
        .wrap_up_secs
        .get_or_insert(f64::from(config.wrap_up_secs));
    simulate::run(&tenant, &scenario).with_context(|| format!("{}", path.display()))
}

/// What the simulator takes of the tenant: each routing point's strategy (its latest
/// version, or the one the scenario names), its queues, skills and agent groups. Read from
/// the configuration rather than the node's compiled tenant, which an export without its
/// DNs' passwords would not make.
fn tenant(config: &TenantConfig, scenario: &Scenario) -> anyhow::Result<simulate::Tenant> {
    let mut routing_points = std::collections::BTreeMap::new();
    for rp in &config.routing_points {
        let wanted = scenario.routing.get(&rp.number);
        let program = match wanted.and_then(|w| w.strategy.as_deref()) {
            Some(text) => {
                let s = switchboard_actors::tenant::StrategyConfig {
                    name: rp.strategy.clone(),
                    version: 0,
                    document: text.to_owned(),
                    options: Default::default(),
                };
                compile_strategy(config, &s)
                    .map_err(|e| anyhow::anyhow!("routing.{:?}.strategy: {e}", rp.number))?
            }
            None => {
                let version = wanted.and_then(|w| w.strategy_version);
                let found = match version {
                    Some(v) => config
                        .strategies
                        .iter()
                        .find(|s| s.name == rp.strategy && s.version == v),
                    None => latest_strategy(config, &rp.strategy),
                };
                let Some(s) = found else {
                    match version {
                        Some(v) => bail!(
                            "routing.{:?}: strategy {:?} has no version {v}",
                            rp.number,
                            rp.strategy
                        ),
                        // A routing point without its strategy routes to its default.
                        None => {
                            routing_points.insert(rp.number.clone(), default_only());
                            continue;
                        }
                    }
                };
                compile_strategy(config, s).map_err(anyhow::Error::msg)?
            }
        };
        routing_points.insert(rp.number.clone(), Arc::new(program));
    }
    if let Some(number) = scenario
        .routing
        .keys()
        .find(|n| !routing_points.contains_key(*n))
    {
        bail!("routing: the tenant has no routing point {number:?}");
    }
    Ok(simulate::Tenant {
        routing_points,
        queues: config.queue_choices(),
        skills: config
            .skills
            .iter()
            .map(|s| s.name.to_lowercase())
            .collect(),
        groups: config.agent_groups.iter().map(|g| g.name.clone()).collect(),
    })
}

fn default_only() -> Arc<Program> {
    Arc::new(Program::compile("route default\n").expect("a valid strategy"))
}
