//! Where snapshots of live calls are kept, so that another node can finish a call: a Redis key
//! per call (`sb:{<tenant>}:call:<id>`, a day at most: a call no node finishes does not stay for
//! ever), or memory.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::redis_conn::Conn;

use crate::keys::Keys;
use crate::messages::bus::BusFuture;
use crate::messages::sip_cluster::CallNodes;
use crate::redis_retry::query;
use crate::store::StoreFuture;

/// Snapshots of live calls by tenant and call.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Writes the snapshot of `call`, or removes it (`None`) once the call is over.
    fn write<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        snapshot: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;
}

const SNAPSHOT_TTL_SECS: u64 = 24 * 3600;

/// The node a snapshot names.
fn node_in(snapshot: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(snapshot).ok()?;
    value["node"].as_str().map(str::to_owned)
}

/// Snapshots in this process, lost when it stops.
#[derive(Debug, Default)]
pub struct MemorySnapshots(Mutex<HashMap<(String, String), String>>);

impl MemorySnapshots {
    /// The snapshot of `call`, if it is live.
    pub fn get(&self, tenant: &str, call: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.to_owned(), call.to_owned())).cloned()
    }
}

impl SnapshotStore for MemorySnapshots {
    fn write<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        snapshot: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        let key = (tenant.to_owned(), call.to_owned());
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match snapshot {
            Some(s) => map.insert(key, s.to_owned()),
            None => map.remove(&key),
        };
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Snapshots in Redis, where another node finds them.
#[derive(Clone)]
pub struct RedisSnapshots {
    conn: Conn,
    keys: Keys,
}

impl RedisSnapshots {
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Self { conn, keys }
    }
}

impl SnapshotStore for RedisSnapshots {
    fn write<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        snapshot: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        let key = self.keys.call(tenant, call);
        let cmd = match snapshot {
            Some(s) => {
                let mut c = redis::cmd("SET");
                c.arg(&key).arg(s).arg("EX").arg(SNAPSHOT_TTL_SECS);
                c
            }
            None => {
                let mut c = redis::cmd("DEL");
                c.arg(&key);
                c
            }
        };
        Box::pin(async move { Ok(query::<()>(&self.conn, &cmd).await?) })
    }
}

impl std::fmt::Debug for RedisSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisSnapshots")
    }
}

impl CallNodes for RedisSnapshots {
    fn node_of<'a>(&'a self, tenant: &'a str, call: &'a str) -> BusFuture<'a, Option<String>> {
        Box::pin(async move {
            let snapshot: Option<String> = query(
                &self.conn,
                redis::cmd("GET").arg(self.keys.call(tenant, call)),
            )
            .await
            .ok()
            .flatten();
            snapshot.as_deref().and_then(node_in)
        })
    }
}

impl CallNodes for MemorySnapshots {
    fn node_of<'a>(&'a self, tenant: &'a str, call: &'a str) -> BusFuture<'a, Option<String>> {
        let node = self.get(tenant, call).as_deref().and_then(node_in);
        Box::pin(std::future::ready(node))
    }
}
