//! Bindings in Redis, so they survive a restart and every node sees them:
//!
//! - `sb:{<tenant>}:reg:<aor>`: a hash from contact key to the binding (JSON), which expires by
//!   itself a minute after its last binding should have;
//! - `sb:{<tenant>}:reg-expiry`: a sorted set of `aor \n key` by expiry time, from which a script
//!   takes expired bindings atomically, so one node alone reports each expiry.

use crate::redis_conn::Conn;
use redis::Script;
use std::sync::Arc;

use crate::keys::Keys;
use crate::messages::registrar::{Binding, BindingStore, Changes};
use crate::redis_retry::{query, retrying};
use crate::store::StoreFuture;

#[derive(Clone)]
pub struct RedisBindings {
    conn: Conn,
    keys: Keys,
    take_expired: Arc<Script>,
}

impl std::fmt::Debug for RedisBindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisBindings")
    }
}

/// KEYS[1] the expiry set; ARGV[1] now, ARGV[2] limit, ARGV[3] the hash key prefix.
/// Returns the bindings removed, as stored.
const TAKE_EXPIRED: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local taken = {}
for _, member in ipairs(due) do
  local sep = string.find(member, '\n', 1, true)
  local hash = ARGV[3] .. string.sub(member, 1, sep - 1)
  local field = string.sub(member, sep + 1)
  local value = redis.call('HGET', hash, field)
  redis.call('ZREM', KEYS[1], member)
  if value then
    redis.call('HDEL', hash, field)
    taken[#taken + 1] = value
  end
end
return taken
";

impl RedisBindings {
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Self {
            conn,
            keys,
            take_expired: Arc::new(Script::new(TAKE_EXPIRED)),
        }
    }
}

impl BindingStore for RedisBindings {
    fn load<'a>(&'a self, tenant: &'a str, aor: &'a str) -> StoreFuture<'a, Vec<Arc<Binding>>> {
        Box::pin(async move {
            let values: Vec<String> = query(
                &self.conn,
                redis::cmd("HVALS").arg(self.keys.bindings(tenant, aor)),
            )
            .await?;
            values
                .iter()
                .map(|v| serde_json::from_str(v).map(Arc::new).map_err(Into::into))
                .collect()
        })
    }

    fn save<'a>(&'a self, tenant: &'a str, aor: &'a str, changes: Changes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(());
            }
            let hash = self.keys.bindings(tenant, aor);
            let expiry = self.keys.binding_expiry(tenant);
            let mut pipe = redis::pipe();
            pipe.atomic();
            for key in &changes.removals {
                pipe.cmd("HDEL").arg(&hash).arg(key).ignore();
                pipe.cmd("ZREM")
                    .arg(&expiry)
                    .arg(format!("{aor}\n{key}"))
                    .ignore();
            }
            let mut latest = 0;
            for b in &changes.upserts {
                pipe.cmd("HSET")
                    .arg(&hash)
                    .arg(&b.key)
                    .arg(serde_json::to_string(&**b)?)
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(&expiry)
                    .arg(b.expires_at_ms)
                    .arg(format!("{aor}\n{}", b.key))
                    .ignore();
                latest = latest.max(b.expires_at_ms);
            }
            if latest > 0 {
                // The hash outlives its last binding by a minute at most, swept or not; GT keeps a
                // later expiry set by another binding of the same address of record.
                pipe.cmd("PEXPIREAT")
                    .arg(&hash)
                    .arg(latest + 60_000)
                    .arg("GT")
                    .ignore();
                pipe.cmd("PEXPIREAT")
                    .arg(&hash)
                    .arg(latest + 60_000)
                    .arg("NX")
                    .ignore();
            }
            let pipe = &pipe;
            retrying(&self.conn, |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await?;
            Ok(())
        })
    }

    fn take_expired<'a>(
        &'a self,
        tenant: &'a str,
        now_ms: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Arc<Binding>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let values: Vec<String> = self
                .take_expired
                .key(self.keys.binding_expiry(tenant))
                .arg(now_ms)
                .arg(limit)
                .arg(self.keys.bindings_prefix(tenant))
                .invoke_async(&mut conn)
                .await?;
            values
                .iter()
                .map(|v| serde_json::from_str(v).map(Arc::new).map_err(Into::into))
                .collect()
        })
    }

    fn all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let prefix = self.keys.bindings_prefix(tenant);
            // A tenant's keys share its slot: on a cluster, they are all on that slot's master.
            let keys = conn.scan_slot(&format!("{prefix}*"), &prefix).await?;
            let mut all = Vec::new();
            for key in keys {
                let values: Vec<String> =
                    redis::cmd("HVALS").arg(&key).query_async(&mut conn).await?;
                for v in values {
                    all.push(serde_json::from_str(&v)?);
                }
            }
            Ok(all)
        })
    }
}
