//! The switchboard node: `switchboard serve` runs the SIP edge, the registrar, the tenant
//! configuration and its provisioning API in one process, on embedded defaults, a TOML file or
//! PostgreSQL;
//! `switchboard config` moves tenants between TOML and PostgreSQL;
//! `switchboard simulate` runs a scenario through a tenant's routing on virtual time.

mod auth;
mod config;
mod grpc;
mod http;
mod metrics;
mod node;
mod provisioning;
mod simulate;
mod stats;
mod tls;
mod voice;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use anyhow::Context;
use switchboard_actors::tenant::demo_tenant;
use switchboard_actors::tenant::postgres::ConfigStore;

use crate::config::{NodeConfig, TenantsFile};

/// jemalloc rather than glibc's malloc: with its background threads on (see `main`) it gives
/// the system back, within seconds, the pages a burst freed (a flood's ten thousand calls, once
/// they ended), where glibc keeps them in its per-thread arenas for good. The feature
/// `system-alloc` keeps the system's allocator, for tools that follow malloc (heaptrack, as
/// `benches/sipp/call_heap.sh` uses it).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Voice and routing core for contact centers"
)]
struct Cli {
    /// How log lines are written to standard error: `text` for people, `json` (one object a
    /// line: timestamp, level, target, fields, span) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SWITCHBOARD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: with no configuration, the demo tenant on 127.0.0.1.
    Serve(ServeArgs),
    /// Move tenants between TOML and PostgreSQL.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a day's calls through a tenant's strategies and queues on virtual time, and
    /// report service level, waits, abandons and occupancy per interval.
    Simulate(simulate::SimulateArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write the tenants of a TOML file (its [[tenants]] tables) into PostgreSQL, each whole,
    /// replacing a stored tenant of the same name.
    Import {
        file: PathBuf,
        #[command(flatten)]
        source: ConfigSource,
    },
    /// Print tenants as TOML: from PostgreSQL when configured, else the node's file, else the
    /// demo tenant.
    Export {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Include the DNs' digest passwords (left out by default, so that an export can
        /// be shared).
        #[arg(long)]
        with_secrets: bool,
        #[command(flatten)]
        source: ConfigSource,
    },
}

/// Where `config` finds the configuration.
#[derive(clap::Args)]
struct ConfigSource {
    /// The node's TOML configuration (for its [stores] postgres and inline tenants).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL (postgres://user@host:port/db).
    #[arg(long, env = "SWITCHBOARD_POSTGRES")]
    postgres: Option<String>,
}

impl ConfigSource {
    fn load(&self) -> anyhow::Result<NodeConfig> {
        let mut config = match &self.config {
            Some(path) => NodeConfig::load(path)?,
            None => NodeConfig::default(),
        };
        if let Some(url) = &self.postgres {
            config.stores.postgres = Some(url.clone());
        }
        Ok(config)
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The node's TOML configuration.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Redis for bindings and event streams (redis://host:port/db); memory without it.
    #[arg(long, env = "SWITCHBOARD_REDIS")]
    redis: Option<String>,
    /// PostgreSQL for tenant configuration (postgres://user@host:port/db).
    #[arg(long, env = "SWITCHBOARD_POSTGRES")]
    postgres: Option<String>,
    /// SIP address for UDP and TCP.
    #[arg(long, env = "SWITCHBOARD_SIP_LISTEN")]
    sip_listen: Option<SocketAddr>,
    /// HTTP address for /livez and /readyz.
    #[arg(long, env = "SWITCHBOARD_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// HTTP address for the GES callbacks API (/callbacks/{id}).
    #[arg(long, env = "SWITCHBOARD_CALLBACKS_LISTEN")]
    callbacks_listen: Option<SocketAddr>,
    /// gRPC address for the provisioning API.
    #[arg(long, env = "SWITCHBOARD_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// The provisioning API's administrator key.
    #[arg(long, env = "SWITCHBOARD_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Kafka brokers (`host:port,...`): report events there (the rest of `[kafka]` from the
    /// file, or its defaults).
    #[arg(long, env = "SWITCHBOARD_KAFKA")]
    kafka: Option<String>,
    /// Where the spool for Kafka lives.
    #[arg(long, env = "SWITCHBOARD_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Without Kafka: the JSON-lines file events are appended to (empty: none).
    #[arg(long, env = "SWITCHBOARD_EVENTS_FILE")]
    events_file: Option<PathBuf>,
    /// Serve the demo tenant (published passwords and API key) on addresses beyond
    /// loopback too.
    #[arg(long, env = "SWITCHBOARD_EXPOSE_DEMO")]
    expose_demo: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        // Colours for a terminal only: a log file or a collector gets plain text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            // jemalloc purges freed pages on a thread of its own, so a node that falls idle
            // after a burst gives its memory back too (without it, only when it allocates).
            #[cfg(not(feature = "system-alloc"))]
            if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
                tracing::warn!(error = %e, "jemalloc's background purging is off");
            }
            runtime.block_on(serve(args))
        }
        Command::Config(command) => runtime.block_on(config_command(command)),
        Command::Simulate(args) => runtime.block_on(simulate::simulate(args)),
    }
}

async fn config_command(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Import { file, source } => {
            let node = source.load()?;
            let Some(url) = &node.stores.postgres else {
                anyhow::bail!(
                    "import writes into PostgreSQL: give --postgres URL (or [stores] postgres)"
                );
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let tenants: TenantsFile = toml::from_str(&text)
                .with_context(|| format!("invalid tenants in {}", file.display()))?;
            if tenants.tenants.is_empty() {
                anyhow::bail!("{} holds no [[tenants]]", file.display());
            }
            let mut store = ConfigStore::connect(url)
                .await
                .with_context(|| format!("configuration database {}", node::redact(url)))?;
            for tenant in &tenants.tenants {
                let version = store
                    .import(tenant)
                    .await
                    .with_context(|| format!("tenant {:?} not imported", tenant.name))?;
                tracing::info!(tenant = %tenant.name, version, "tenant imported");
            }
            Ok(())
        }
        ConfigCommand::Export {
            tenant,
            with_secrets,
            source,
        } => {
            let node = source.load()?;
            let mut tenants = match &node.stores.postgres {
                Some(url) => ConfigStore::connect(url)
                    .await
                    .with_context(|| format!("configuration database {}", node::redact(url)))?
                    .load_all()
                    .await?
                    .into_iter()
                    .map(|v| v.config)
                    .collect(),
                None if node.tenants.is_empty() => vec![demo_tenant()],
                None => node.tenants.clone(),
            };
            if let Some(name) = &tenant {
                tenants.retain(|t| &t.name == name);
                if tenants.is_empty() {
                    anyhow::bail!("no tenant named {name:?}");
                }
            }
            if !with_secrets {
                let mut left_out = 0;
                for dn in tenants.iter_mut().flat_map(|t| t.dns.iter_mut()) {
                    if !dn.password.is_empty() {
                        dn.password.clear();
                        left_out += 1;
                    }
                }
                if left_out > 0 {
                    eprintln!(
                        "{left_out} DN passwords left out: `config export --with-secrets` includes them"
                    );
                }
            }
            let text = toml::to_string(&TenantsFile { tenants })?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        // No configuration at all: the demo tenant.
        None => NodeConfig {
            demo: args.postgres.is_none(),
            ..NodeConfig::default()
        },
    };
    if let Some(redis) = args.redis {
        config.stores.redis = Some(redis);
    }
    if let Some(postgres) = args.postgres {
        config.stores.postgres = Some(postgres);
    }
    if let Some(listen) = args.sip_listen {
        config.sip.listen = listen;
    }
    if let Some(listen) = args.http_listen {
        config.http.listen = listen;
    }
    if let Some(listen) = args.callbacks_listen {
        config.http.callbacks_listen = listen;
    }
    if let Some(listen) = args.grpc_listen {
        config.grpc.listen = listen;
    }
    if let Some(key) = args.admin_key {
        config.auth.admin_key = Some(key);
    }
    if let Some(brokers) = args.kafka {
        config.kafka.get_or_insert_with(Default::default).brokers = brokers;
    }
    if let Some(dir) = args.spool_dir {
        match config.kafka.as_mut() {
            Some(kafka) => kafka.spool_dir = dir,
            None => anyhow::bail!("--spool-dir is the spool for Kafka: give --kafka BROKERS too"),
        }
    }
    if let Some(file) = args.events_file {
        config.events.file = file;
    }
    config.check_demo(args.expose_demo)?;
    let mut node = node::Node::start(config).await?;
    let failed = tokio::select! {
        _ = shutdown_signal() => None,
        fatal = node.failed() => Some(fatal),
    };
    tracing::info!("shutting down");
    node.stop().await;
    match failed {
        // The log has said which system failed; the status says so to the service manager.
        Some(fatal) => anyhow::bail!("the {} system failed: {}", fatal.system, fatal.reason),
        None => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
