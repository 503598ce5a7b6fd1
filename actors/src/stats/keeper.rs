//! Every tenant's statistics on this node: one task per tenant follows the tenant's merged
//! streams (agent states and call threads, as desktops follow them) from a quarter of an hour
//! before today began in its time zone, and folds each event into its [`TenantStats`]. Every
//! node does the same from the same streams (Redis with a cluster), so that every node
//! serves the same figures, whichever owns the tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::engine::{StatsSettings, TenantNow, TenantStats};
use super::periods::{WINDOW_MINUTES, day_of};
use crate::events::EventSink;
use crate::feed::{self, Cursor, FeedError};
use crate::tenant::{Directory, Tenant};

/// The statistics of every tenant of the node's directory.
#[derive(Clone)]
pub struct Statistics {
    kept: Arc<Mutex<HashMap<String, Arc<Kept>>>>,
}

/// One tenant's statistics.
pub struct Kept {
    stats: Mutex<TenantStats>,
    /// Counts the changes, for those watching.
    changed: watch::Sender<u64>,
    settings: Mutex<Shown>,
    task: JoinHandle<()>,
}

/// The settings the figures were counted with, as a tenant wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub time_zone: String,
    pub service_level_secs: u32,
    pub short_abandon_secs: u32,
    /// The tenant's queues, in its configuration's order.
    pub queues: Vec<String>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Statistics {
    /// Starts keeping the statistics of the tenants of `directory`, following it as it
    /// changes, from the events of `events`.
    pub fn start(events: EventSink, mut directory: watch::Receiver<Arc<Directory>>) -> Self {
        let statistics = Self {
            kept: Arc::default(),
        };
        let keeper = statistics.clone();
        tokio::spawn(async move {
            loop {
                let now = directory.borrow_and_update().clone();
                keeper.follow_directory(&events, &now);
                if directory.changed().await.is_err() {
                    return;
                }
            }
        });
        statistics
    }

    fn follow_directory(&self, events: &EventSink, directory: &Directory) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|name, _| directory.by_name(name).is_some());
        for tenant in directory.tenants() {
            let (settings, shown) = settings_of(tenant);
            if let Some(k) = kept.get(&tenant.name) {
                let mut was = k.settings.lock().unwrap_or_else(|e| e.into_inner());
                if *was != shown {
                    let c = &tenant.config;
                    k.stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .reconfigure(
                            settings,
                            shown.queues.clone(),
                            c.agent_groups.iter().map(|g| g.name.clone()),
                            c.agents.iter().map(|a| (a.id.clone(), a.groups.clone())),
                        );
                    *was = shown;
                    k.changed.send_modify(|n| *n += 1);
                }
                continue;
            }
            let c = &tenant.config;
            let start = start_of_statistics(&settings, crate::unix_ms());
            let stats = TenantStats::new(
                settings,
                shown.queues.clone(),
                c.agent_groups.iter().map(|g| g.name.clone()),
                c.agents.iter().map(|a| (a.id.clone(), a.groups.clone())),
            );
            let k = Arc::new_cyclic(|me: &std::sync::Weak<Kept>| {
                let task = tokio::spawn(follow(
                    events.clone(),
                    tenant.name.clone(),
                    me.clone(),
                    start,
                ));
                Kept {
                    stats: Mutex::new(stats),
                    changed: watch::channel(0).0,
                    settings: Mutex::new(shown),
                    task,
                }
            });
            kept.insert(tenant.name.clone(), k);
        }
    }

    fn kept(&self, tenant: &str) -> Option<Arc<Kept>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(tenant).cloned()
    }

    /// The tenant's figures at `now_ms`, and the settings they were counted with.
    pub fn now(&self, tenant: &str, now_ms: u64) -> Option<(TenantNow, Shown)> {
        let k = self.kept(tenant)?;
        let now = k
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .now(now_ms);
        let shown = k.settings.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some((now, shown))
    }

    /// The settings the tenant's figures are counted with, and its queues: what checking a
    /// request needs, without working out the figures.
    pub fn shown(&self, tenant: &str) -> Option<Shown> {
        let k = self.kept(tenant)?;
        let shown = k.settings.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some(shown)
    }

    /// Told of each change of the tenant's figures.
    pub fn changes(&self, tenant: &str) -> Option<watch::Receiver<u64>> {
        self.kept(tenant).map(|k| k.changed.subscribe())
    }
}

/// Waits until a tenant's figures are worth sending again: a change, with whatever follows it
/// within `calm` (sent together), or `tick` with none (times in state run on). False once the
/// tenant's statistics are gone.
pub async fn next_update(
    changes: &mut watch::Receiver<u64>,
    calm: Duration,
    tick: Duration,
) -> bool {
    tokio::select! {
        changed = changes.changed() => {
            if changed.is_err() {
                return false;
            }
            tokio::time::sleep(calm).await;
            changes.borrow_and_update();
            true
        }
        () = tokio::time::sleep(tick) => true,
    }
}

/// How the tenant's statistics are counted, and what of it is shown.
fn settings_of(tenant: &Tenant) -> (StatsSettings, Shown) {
    let c = &tenant.config;
    let time_zone = jiff::tz::TimeZone::get(&c.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let settings = StatsSettings {
        service_level: Duration::from_secs(u64::from(c.stats.service_level_secs)),
        short_abandon: Duration::from_secs(u64::from(c.stats.short_abandon_secs)),
        time_zone,
    };
    let shown = Shown {
        time_zone: c.time_zone.clone(),
        service_level_secs: c.stats.service_level_secs,
        short_abandon_secs: c.stats.short_abandon_secs,
        queues: c.queues.iter().map(|q| q.name.clone()).collect(),
    };
    (settings, shown)
}

/// Where a tenant's statistics start reading: far enough back for today and for the window.
fn start_of_statistics(settings: &StatsSettings, now_ms: u64) -> u64 {
    let (_, midnight) = day_of(&settings.time_zone, now_ms);
    midnight.min(now_ms.saturating_sub(WINDOW_MINUTES * 60_000))
}

/// Folds the tenant's events, from `start_ms` on, for as long as its statistics are kept.
async fn follow(events: EventSink, tenant: String, kept: std::sync::Weak<Kept>, start_ms: u64) {
    let mut from = Cursor::since(start_ms);
    loop {
        let follower = match feed::open(events.clone(), tenant.clone(), Some(from)).await {
            Ok(follower) => follower,
            Err(FeedError::Trimmed { stream, oldest }) => {
                tracing::warn!(%tenant, stream,
                    "statistics: events of today are no longer held; counting from the oldest held");
                from = from.past_trimmed(stream, oldest, crate::unix_ms());
                continue;
            }
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "statistics: the event streams cannot be read; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (tx, mut rx) = mpsc::channel(1024);
        tokio::spawn(follower.run(tx));
        while let Some(item) = rx.recv().await {
            let Some(k) = kept.upgrade() else {
                return;
            };
            match item {
                Ok((cursor, entry)) => {
                    from = cursor;
                    let changed = k
                        .stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .apply(&entry.event);
                    if changed {
                        k.changed.send_modify(|n| *n += 1);
                    }
                }
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "statistics: following the events failed; following again");
                    break;
                }
            }
        }
        if kept.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
