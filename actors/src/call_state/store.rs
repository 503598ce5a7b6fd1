//! Where snapshots of live calls are kept, so that another node can carry a call on when its
//! own dies (design.md "Scaling out").
//!
//! In Redis, each call is a hash `<p>:{<tenant>}:call:<id>` (a day at most: a call no node
//! finishes does not stay for ever) holding the node running it (`node`), a number bumped
//! each time that is settled again (`gen`) and the snapshot's JSON (`snap`); beside it, the
//! tenant's `call-nodes` hash says which node runs each live call, for the sweep that adopts
//! the calls of dead nodes, and its `sipcalls` hash names the call of each SIP Call-ID of its
//! legs, for the node a stray in-dialog request reaches. All in the tenant's hash slot: one
//! script writes them together.
//!
//! Every write is the running node's only: a write or removal from a node that no longer
//! runs the call (it was adopted while the node was away) changes nothing and says so. A
//! claim takes a call from a dead node in one script, comparing node and generation, so that
//! of two nodes racing one wins, and a node coming back that settles its call first (which
//! bumps the generation) makes a late claim fail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use redis::Script;

use crate::redis_conn::Conn;

use crate::keys::Keys;
use crate::messages::bus::BusFuture;
use crate::messages::call_state::{Claim, SnapshotChange, SnapshotStore, Stored};
use crate::messages::sip_cluster::CallNodes;
use crate::redis_retry::{query, retrying};
use crate::store::StoreFuture;

/// How long a node's announced SIP address stands without being said again.
const ANNOUNCE_SECS: u64 = 10;

const SNAPSHOT_TTL_SECS: u64 = 24 * 3600;

/// KEYS: the call's hash, the tenant's call-nodes, the tenant's SIP Call-IDs. ARGV: node,
/// call, JSON, time to live, then the SIP Call-IDs to index.
const WRITE: &str = r"
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'snap', ARGV[3])
if not owner then redis.call('HSET', KEYS[1], 'gen', 0) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if not owner then redis.call('HSET', KEYS[2], ARGV[2], ARGV[1]) end
for i = 5, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[2]) end
return 1
";

/// KEYS: the call's hash, the tenant's call-nodes, the tenant's SIP Call-IDs. ARGV: node,
/// call, then the SIP Call-IDs to forget.
const REMOVE: &str = r"
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
for i = 3, #ARGV do redis.call('HDEL', KEYS[3], ARGV[i]) end
return 1
";

/// KEYS: the call's hash, the tenant's call-nodes. ARGV: the node it is taken from, the
/// generation read, this node, call.
const CLAIM: &str = r"
local v = redis.call('HMGET', KEYS[1], 'node', 'gen', 'snap')
if not v[1] then return {'gone', ''} end
if v[1] == ARGV[3] then return {'mine', v[3]} end
if v[1] ~= ARGV[1] or tostring(v[2]) ~= ARGV[2] then return {'other', v[1]} end
redis.call('HSET', KEYS[1], 'node', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
return {'won', v[3]}
";

/// KEYS: the call's hash. ARGV: node.
const CONFIRM: &str = r"
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then return 0 end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
return 1
";

/// Snapshots in this process, lost when it stops; this node is the only one.
#[derive(Debug)]
pub struct MemorySnapshots {
    node: String,
    calls: Mutex<HashMap<(String, String), Stored>>,
    index: Mutex<HashMap<String, (String, String)>>,
}

impl Default for MemorySnapshots {
    fn default() -> Self {
        Self::new("local")
    }
}

impl MemorySnapshots {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            calls: Mutex::default(),
            index: Mutex::default(),
        }
    }

    /// The snapshot of `call`, if it is live.
    pub fn get(&self, tenant: &str, call: &str) -> Option<String> {
        let map = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.to_owned(), call.to_owned()))
            .map(|s| s.snapshot.clone())
    }

    fn stored(&self, tenant: &str, call: &str) -> Option<Stored> {
        let map = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.to_owned(), call.to_owned())).cloned()
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl SnapshotStore for MemorySnapshots {
    fn node(&self) -> &str {
        &self.node
    }

    fn write<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        change: SnapshotChange<'a>,
    ) -> StoreFuture<'a, bool> {
        let key = (tenant.to_owned(), call.to_owned());
        {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            for id in change.index {
                index.insert(id.clone(), key.clone());
            }
            for id in change.unindex {
                index.remove(id);
            }
        }
        let mut map = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        match change.snapshot {
            Some(s) => {
                let entry = map.entry(key).or_insert_with(|| Stored {
                    node: self.node.clone(),
                    generation: 0,
                    snapshot: String::new(),
                });
                entry.snapshot = s.to_owned();
            }
            None => {
                map.remove(&key);
            }
        }
        ready(true)
    }

    fn find<'a>(
        &'a self,
        _tenants: &'a [String],
        sip_call_id: &'a str,
    ) -> StoreFuture<'a, Option<(String, String)>> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        ready(index.get(sip_call_id).cloned())
    }

    fn read<'a>(&'a self, tenant: &'a str, call: &'a str) -> StoreFuture<'a, Option<Stored>> {
        ready(self.stored(tenant, call))
    }

    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        _from: &'a str,
        _generation: u64,
    ) -> StoreFuture<'a, Claim> {
        ready(match self.stored(tenant, call) {
            Some(s) => Claim::Mine(s.snapshot),
            None => Claim::Gone,
        })
    }

    fn confirm<'a>(&'a self, tenant: &'a str, call: &'a str) -> StoreFuture<'a, bool> {
        ready(self.stored(tenant, call).is_some())
    }

    fn calls<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        let map = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let calls = map
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, c), s)| (c.clone(), s.node.clone()))
            .collect();
        ready(calls)
    }

    fn alive<'a>(&'a self, node: &'a str) -> StoreFuture<'a, bool> {
        ready(node == self.node)
    }

    fn announce(&self, _sip: SocketAddr) -> StoreFuture<'_, ()> {
        ready(())
    }

    fn say_alive(&self, _ttl: std::time::Duration) -> StoreFuture<'_, ()> {
        ready(())
    }

    fn sip_of<'a>(&'a self, _node: &'a str) -> StoreFuture<'a, Option<SocketAddr>> {
        ready(None)
    }
}

/// Snapshots in Redis, where another node finds them.
#[derive(Clone)]
pub struct RedisSnapshots {
    conn: Conn,
    keys: Keys,
    node: String,
    scripts: Arc<[Script; 4]>,
}

impl RedisSnapshots {
    pub fn new(conn: Conn, keys: Keys, node: &str) -> Self {
        Self {
            conn,
            keys,
            node: node.to_owned(),
            scripts: Arc::new([WRITE, REMOVE, CLAIM, CONFIRM].map(Script::new)),
        }
    }
}

impl SnapshotStore for RedisSnapshots {
    fn node(&self) -> &str {
        &self.node
    }

    fn write<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        change: SnapshotChange<'a>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let keys = [
                self.keys.call(tenant, call),
                self.keys.call_nodes(tenant),
                self.keys.sip_calls(tenant),
            ];
            let keys = &keys;
            let node = &self.node;
            let written: i64 = retrying(&self.conn, |mut c| async move {
                let mut invocation = match change.snapshot {
                    Some(json) => {
                        let mut i = self.scripts[0].prepare_invoke();
                        i.arg(node).arg(call).arg(json).arg(SNAPSHOT_TTL_SECS);
                        for id in change.index {
                            i.arg(id);
                        }
                        i
                    }
                    None => {
                        let mut i = self.scripts[1].prepare_invoke();
                        i.arg(node).arg(call);
                        for id in change.unindex {
                            i.arg(id);
                        }
                        i
                    }
                };
                for key in keys {
                    invocation.key(key);
                }
                invocation.invoke_async(&mut c).await
            })
            .await?;
            Ok(written == 1)
        })
    }

    fn find<'a>(
        &'a self,
        tenants: &'a [String],
        sip_call_id: &'a str,
    ) -> StoreFuture<'a, Option<(String, String)>> {
        Box::pin(async move {
            for tenant in tenants {
                let found: Option<String> = query(
                    &self.conn,
                    redis::cmd("HGET")
                        .arg(self.keys.sip_calls(tenant))
                        .arg(sip_call_id),
                )
                .await?;
                if let Some(call) = found {
                    return Ok(Some((tenant.clone(), call)));
                }
            }
            Ok(None)
        })
    }

    fn read<'a>(&'a self, tenant: &'a str, call: &'a str) -> StoreFuture<'a, Option<Stored>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(self.keys.call(tenant, call))
                .arg("node")
                .arg("gen")
                .arg("snap");
            let (node, generation, snapshot): (Option<String>, Option<u64>, Option<String>) =
                query(&self.conn, &cmd).await?;
            Ok(match (node, snapshot) {
                (Some(node), Some(snapshot)) => Some(Stored {
                    node,
                    generation: generation.unwrap_or(0),
                    snapshot,
                }),
                _ => None,
            })
        })
    }

    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        call: &'a str,
        from: &'a str,
        generation: u64,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let (key, nodes) = (self.keys.call(tenant, call), self.keys.call_nodes(tenant));
            let (how, what): (String, String) = self.scripts[2]
                .key(&key)
                .key(&nodes)
                .arg(from)
                .arg(generation.to_string())
                .arg(&self.node)
                .arg(call)
                .invoke_async(&mut self.conn.clone())
                .await?;
            Ok(match how.as_str() {
                "won" => Claim::Won(what),
                "mine" => Claim::Mine(what),
                "other" => Claim::Other(what),
                _ => Claim::Gone,
            })
        })
    }

    fn confirm<'a>(&'a self, tenant: &'a str, call: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let key = self.keys.call(tenant, call);
            let mine: i64 = self.scripts[3]
                .key(&key)
                .arg(&self.node)
                .invoke_async(&mut self.conn.clone())
                .await?;
            Ok(mine == 1)
        })
    }

    fn calls<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let all: HashMap<String, String> = query(
                &self.conn,
                redis::cmd("HGETALL").arg(self.keys.call_nodes(tenant)),
            )
            .await?;
            Ok(all.into_iter().collect())
        })
    }

    fn alive<'a>(&'a self, node: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n: i64 = query(
                &self.conn,
                redis::cmd("EXISTS").arg(self.keys.node_alive(node)),
            )
            .await?;
            Ok(n == 1)
        })
    }

    fn announce(&self, sip: SocketAddr) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut set = redis::cmd("SET");
            set.arg(self.keys.node_sip(&self.node))
                .arg(sip.to_string())
                .arg("EX")
                .arg(ANNOUNCE_SECS);
            Ok(query::<()>(&self.conn, &set).await?)
        })
    }

    fn say_alive(&self, ttl: std::time::Duration) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut set = redis::cmd("SET");
            set.arg(self.keys.node_alive(&self.node))
                .arg(1)
                .arg("PX")
                .arg(ttl.as_millis() as u64);
            Ok(query::<()>(&self.conn, &set).await?)
        })
    }

    fn sip_of<'a>(&'a self, node: &'a str) -> StoreFuture<'a, Option<SocketAddr>> {
        Box::pin(async move {
            let addr: Option<String> =
                query(&self.conn, redis::cmd("GET").arg(self.keys.node_sip(node))).await?;
            Ok(addr.and_then(|a| a.parse().ok()))
        })
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
            let node: Option<String> = query(
                &self.conn,
                redis::cmd("HGET")
                    .arg(self.keys.call(tenant, call))
                    .arg("node"),
            )
            .await
            .ok()
            .flatten();
            node
        })
    }
}

impl CallNodes for MemorySnapshots {
    fn node_of<'a>(&'a self, tenant: &'a str, call: &'a str) -> BusFuture<'a, Option<String>> {
        let node = self.stored(tenant, call).map(|s| s.node);
        Box::pin(std::future::ready(node))
    }
}
