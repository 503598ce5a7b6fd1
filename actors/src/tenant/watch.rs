//! Live reload: follows the configuration in PostgreSQL and hands the tenant actor a new
//! snapshot whenever a tenant's version passes the one it holds.
//!
//! The watcher LISTENs on [`CHANNEL`]; every committed change notifies `<tenant>:<version>`,
//! and the watcher reloads that tenant. On every (re)connection it first compares the versions
//! of all tenants, so a node that was away catches up on what it missed. While PostgreSQL is
//! away the node keeps serving the last snapshot, [`Watcher::connected`] is false, and the
//! watcher retries on its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::postgres::{CHANNEL, ConfigStore, Versioned};
use super::{Directory, TenantMsg};

/// A handle on the running watcher; dropping it stops the watcher.
#[derive(Debug)]
pub struct Watcher {
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Starts following `url` from the tenants the node holds now.
    pub fn spawn(url: String, tenant: ActorRef<TenantMsg>, held: Vec<Versioned>) -> Self {
        let connected = Arc::new(AtomicBool::new(false));
        let held = held
            .into_iter()
            .map(|v| (v.config.name.clone(), v))
            .collect();
        let task = tokio::spawn(follow(url, tenant, held, connected.clone()));
        Self { connected, task }
    }

    /// Whether changes are being followed right now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The flag behind [`Watcher::connected`], for a readiness check.
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        self.connected.clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(
    url: String,
    tenant: ActorRef<TenantMsg>,
    mut held: BTreeMap<String, Versioned>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match session(&url, &tenant, &mut held, &connected).await {
            Ok(()) => tracing::warn!("configuration database connection closed; retrying"),
            Err(e) => {
                tracing::warn!(error = %e, "configuration database unavailable; serving the last snapshot")
            }
        }
        connected.store(false, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's worth of following: catch up, then apply notifications until the
/// connection ends.
async fn session(
    url: &str,
    tenant: &ActorRef<TenantMsg>,
    held: &mut BTreeMap<String, Versioned>,
    connected: &AtomicBool,
) -> crate::Result<()> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, mut notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "configuration listener connection failed");
                    break;
                }
                None => break,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let mut store = ConfigStore::from_client(client);

    // Catch up: whatever changed while we were not listening.
    let now: BTreeMap<String, Versioned> = store
        .load_all()
        .await?
        .into_iter()
        .map(|v| (v.config.name.clone(), v))
        .collect();
    let changed = now.len() != held.len()
        || now
            .iter()
            .any(|(name, v)| held.get(name).is_none_or(|h| h.version != v.version));
    if changed {
        tracing::info!("configuration changed while not followed; catching up");
        *held = now;
        publish(tenant, held);
    }
    connected.store(true, Ordering::Relaxed);

    while let Some(first) = notifications.recv().await {
        // Take every notification already waiting, so a burst of changes makes one snapshot.
        let mut names = vec![first];
        while let Ok(more) = notifications.try_recv() {
            names.push(more);
        }
        let mut any = false;
        for payload in names {
            let Some((name, version)) = payload.rsplit_once(':') else {
                continue;
            };
            let version: i64 = version.parse().unwrap_or(i64::MAX);
            if held.get(name).is_some_and(|h| h.version >= version) {
                continue;
            }
            match store.load(name).await? {
                Some(v) => {
                    tracing::info!(
                        tenant = name,
                        version = v.version,
                        "tenant configuration changed"
                    );
                    held.insert(name.to_owned(), v);
                }
                None => {
                    tracing::info!(tenant = name, "tenant deleted");
                    held.remove(name);
                }
            }
            any = true;
        }
        if any {
            publish(tenant, held);
        }
    }
    Ok(())
}

/// Hands the tenant actor a snapshot of `held`; a set of tenants that does not make a valid
/// directory (it cannot, as PostgreSQL checks on write) leaves the current one in place.
fn publish(tenant: &ActorRef<TenantMsg>, held: &BTreeMap<String, Versioned>) {
    let configs: Vec<_> = held.values().map(|v| v.config.clone()).collect();
    match Directory::new(&configs) {
        Ok(directory) => {
            let _ = tenant.cast(TenantMsg::Replace(Arc::new(directory)));
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration from PostgreSQL refused; keeping the last snapshot")
        }
    }
}
