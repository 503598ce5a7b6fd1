//! The switchboard node: `switchboard serve` runs the SIP edge, the registrar and the tenant
//! configuration in one process, on embedded defaults or a TOML file.

mod config;
mod health;
mod node;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::NodeConfig;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Voice and routing core for contact centers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: with no configuration, the demo tenant on 127.0.0.1.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The node's TOML configuration.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Redis for bindings and event streams (redis://host:port/db); memory without it.
    #[arg(long, env = "SWITCHBOARD_REDIS")]
    redis: Option<String>,
    /// SIP address for UDP and TCP.
    #[arg(long, env = "SWITCHBOARD_SIP_LISTEN")]
    sip_listen: Option<SocketAddr>,
    /// HTTP address for /livez and /readyz.
    #[arg(long, env = "SWITCHBOARD_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    if let Some(redis) = args.redis {
        config.stores.redis = Some(redis);
    }
    if let Some(listen) = args.sip_listen {
        config.sip.listen = listen;
    }
    if let Some(listen) = args.http_listen {
        config.http.listen = listen;
    }
    let node = node::Node::start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.stop().await;
    Ok(())
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
