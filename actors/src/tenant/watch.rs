//! Live reload: follows the configuration in PostgreSQL and hands the tenant actor a new
//! snapshot whenever a tenant's version passes the one it holds.
//!
//! The watcher LISTENs on [`CHANNEL`]; every committed change notifies `<tenant>:<version>`,
//! and the watcher reloads that tenant alone: the others keep their snapshots. On every
//! (re)connection it first compares the versions of all tenants, so a node that was away
//! catches up on what it missed. While PostgreSQL is away the node keeps serving the last
//! snapshot, [`Watcher::connected_flag`] is false, and the watcher retries on its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::postgres::{CHANNEL, ConfigStore};
use super::{Directory, Tenant, TenantMsg};

/// A handle on the running watcher; dropping it stops the watcher.
#[derive(Debug)]
pub struct Watcher {
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// The tenants the node holds, by name (each knows the version it was read at).
type Held = BTreeMap<String, Arc<Tenant>>;

impl Watcher {
    /// Starts following `url` from the snapshot the node holds now.
    pub fn spawn(url: String, tenant: ActorRef<TenantMsg>, current: &Directory) -> Self {
        let connected = Arc::new(AtomicBool::new(false));
        let held = current
            .tenants()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        let task = tokio::spawn(follow(url, tenant, held, connected.clone()));
        Self { connected, task }
    }

    /// Whether changes are being followed right now, as a flag a readiness check can read.
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
    mut held: Held,
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
    held: &mut Held,
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

    // Catch up: whatever changed while we were not listening, by version.
    let versions = store.versions().await?;
    let gone: Vec<String> = held
        .keys()
        .filter(|name| !versions.contains_key(*name))
        .cloned()
        .collect();
    let mut changed = !gone.is_empty();
    for name in gone {
        tracing::info!(tenant = %name, "tenant deleted");
        held.remove(&name);
    }
    for (name, version) in &versions {
        if held.get(name).is_none_or(|t| t.version != *version) {
            changed |= reload(&mut store, held, name).await?;
        }
    }
    if changed {
        publish(tenant, held);
    }
    connected.store(true, Ordering::Relaxed);

    while let Some(first) = notifications.recv().await {
        // Take every notification already waiting, so a burst of changes makes one snapshot.
        let mut payloads = vec![first];
        while let Ok(more) = notifications.try_recv() {
            payloads.push(more);
        }
        let mut any = false;
        for payload in payloads {
            let Some((name, version)) = payload.rsplit_once(':') else {
                continue;
            };
            let version: i64 = version.parse().unwrap_or(i64::MAX);
            if held.get(name).is_some_and(|t| t.version >= version) {
                continue;
            }
            any |= reload(&mut store, held, name).await?;
        }
        if any {
            publish(tenant, held);
        }
    }
    Ok(())
}

/// Reads tenant `name` again into `held` (or drops it when it is gone); whether `held`
/// changed.
async fn reload(store: &mut ConfigStore, held: &mut Held, name: &str) -> crate::Result<bool> {
    let Some(loaded) = store.load(name).await? else {
        tracing::info!(tenant = name, "tenant deleted");
        return Ok(held.remove(name).is_some());
    };
    match loaded.checked() {
        Ok(t) => {
            tracing::info!(
                tenant = name,
                version = loaded.version,
                "tenant configuration changed"
            );
            held.insert(name.to_owned(), Arc::new(t));
            Ok(true)
        }
        // PostgreSQL holds only what passed these checks on write; a node of an older release
        // may check more.
        Err(e) => {
            tracing::error!(tenant = name, error = %e, "stored tenant refused; keeping its last snapshot");
            Ok(false)
        }
    }
}

/// Hands the tenant actor a snapshot of `held`: the tenants that did not change are shared
/// with the previous snapshot, not rebuilt.
fn publish(tenant: &ActorRef<TenantMsg>, held: &Held) {
    match Directory::from_tenants(held.values().cloned()) {
        Ok(directory) => {
            let _ = tenant.cast(TenantMsg::Replace(Arc::new(directory)));
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration from PostgreSQL refused; keeping the last snapshot")
        }
    }
}
