//! Keeps a node's bans in step with the others': the bans this node makes go to the store as
//! they happen, and every second the node looks at the store's version and, when it moved,
//! takes the store's list (bans made elsewhere, bans lifted). Without Redis the node's bans
//! are its own, and this only forgets what has lapsed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::store::BanStore;
use super::{Defence, NewBan};

/// How often the store's version is looked at, and lapsed state forgotten.
const POLL: Duration = Duration::from_secs(1);

/// Runs until the node stops (the task is aborted) or the defence is dropped.
pub async fn run(
    defence: Arc<Defence>,
    store: Option<BanStore>,
    mut new: mpsc::UnboundedReceiver<NewBan>,
) {
    let mut seen = None;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ban = new.recv() => {
                let Some(ban) = ban else { return };
                let Some(store) = &store else { continue };
                let config = defence.config();
                match store.ban(&ban, config.max_ban, config.offence_memory).await {
                    // The store counts offences across the nodes: its end stands.
                    Ok(stored) => defence.install(stored),
                    Err(e) => tracing::warn!(ip = %ban.ban.ip, error = %e,
                        "ban not shared with the other nodes: redis did not take it"),
                }
            }
            _ = poll.tick() => {
                defence.sweep(Instant::now());
                let Some(store) = &store else { continue };
                let since = crate::unix_ms();
                let version = match store.version().await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(error = %e, "bans not read from redis");
                        continue;
                    }
                };
                if seen == Some(version) {
                    continue;
                }
                match store.list(since).await {
                    Ok(bans) => {
                        defence.replace(bans, since);
                        seen = Some(version);
                    }
                    Err(e) => tracing::debug!(error = %e, "bans not read from redis"),
                }
            }
        }
    }
}
