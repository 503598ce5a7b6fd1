//! Where a tenant's routing sessions and callbacks are kept as they change, so that a node
//! taking the tenant over resumes them: a Redis hash per tenant of JSON records by call (or
//! callback) id, written by the tenant's owner alone; or memory, on a node alone.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::redis_conn::Conn;

use crate::lease::Fencing;
use crate::redis_retry::query;
use crate::store::StoreFuture;

/// Which of a tenant's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Sessions,
    Callbacks,
}

/// Records of routing sessions and callbacks by tenant and id.
pub trait RoutingStore: Send + Sync + 'static {
    /// Every record of a tenant's `kind`, by id.
    fn load_all<'a>(
        &'a self,
        kind: Kind,
        tenant: &'a str,
    ) -> StoreFuture<'a, Vec<(String, String)>>;

    /// Writes one record (`None` removes it).
    fn save<'a>(
        &'a self,
        kind: Kind,
        tenant: &'a str,
        id: &'a str,
        record: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;
}

/// Records in this process, lost when it stops.
#[derive(Debug, Default)]
pub struct MemoryRouting(Mutex<HashMap<(Kind, String), HashMap<String, String>>>);

impl RoutingStore for MemoryRouting {
    fn load_all<'a>(
        &'a self,
        kind: Kind,
        tenant: &'a str,
    ) -> StoreFuture<'a, Vec<(String, String)>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let all = map
            .get(&(kind, tenant.to_owned()))
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(all)))
    }

    fn save<'a>(
        &'a self,
        kind: Kind,
        tenant: &'a str,
        id: &'a str,
        record: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let records = map.entry((kind, tenant.to_owned())).or_default();
        match record {
            Some(r) => records.insert(id.to_owned(), r.to_owned()),
            None => records.remove(id),
        };
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Records in Redis (`<prefix>:{<tenant>}:sessions` and `...:callbacks`), written only by the
/// tenant's owner.
#[derive(Clone)]
pub struct RedisRouting {
    conn: Conn,
    fencing: Fencing,
}

impl RedisRouting {
    pub fn new(conn: Conn, fencing: Fencing) -> Self {
        Self { conn, fencing }
    }

    fn hash(&self, kind: Kind, tenant: &str) -> String {
        match kind {
            Kind::Sessions => self.fencing.keys().sessions(tenant),
            Kind::Callbacks => self.fencing.keys().callbacks(tenant),
        }
    }
}

impl RoutingStore for RedisRouting {
    fn load_all<'a>(
        &'a self,
        kind: Kind,
        tenant: &'a str,
    ) -> StoreFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let all: HashMap<String, String> = query(
                &self.conn,
                redis::cmd("HGETALL").arg(self.hash(kind, tenant)),
            )
            .await?;
            Ok(all.into_iter().collect())
        })
    }

    fn save<'a>(
        &'a self,
        kind: Kind,
        tenant: &'a str,
        id: &'a str,
        record: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.fencing
                .write_hash(&self.conn, tenant, &self.hash(kind, tenant), id, record)
                .await
        })
    }
}
