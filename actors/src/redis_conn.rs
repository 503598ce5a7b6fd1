//! One Redis or a Redis Cluster, behind one connection type.
//!
//! `--redis` names one Redis (`redis://host:port/db`) or a Redis Cluster: several seed nodes
//! separated by commas, or one node of a cluster (found out by asking it). Every key of a
//! tenant carries the tenant as its hash tag (see [`crate::keys`]), so a tenant's scripts,
//! transactions and multi-stream reads stay on one slot; a node's own keys carry the node.
//! What still spans slots is split here or by its caller: a pipeline of the bus's writer is
//! sent slot by slot ([`Conn::slot_groups`]), a scan looks on the master of one slot
//! ([`Conn::scan_slot`]).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A connection to Redis, shared by clones.
#[derive(Clone)]
pub enum Conn {
    /// One Redis, connected again behind a lost connection.
    One(ConnectionManager),
    /// A connection of its own to one Redis, for reads that block.
    Own(MultiplexedConnection),
    /// A Redis Cluster: each command goes to the master of its key's slot, following the
    /// cluster as slots move.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::One(_) => "Conn::One",
            Conn::Own(_) => "Conn::Own",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(c) => c.req_packed_command(cmd),
            Conn::Own(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Own(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(c) => c.get_db(),
            Conn::Own(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// `items` split into runs that one pipeline may carry, keeping their order: all of them
    /// on one Redis; on a cluster, those whose key (`key_of`) is in one slot.
    pub fn slot_groups<'a, T>(
        &self,
        items: &'a [T],
        key_of: impl Fn(&T) -> &str,
    ) -> Vec<Vec<&'a T>> {
        if !self.is_cluster() {
            return vec![items.iter().collect()];
        }
        let mut groups: Vec<(Slot, Vec<&T>)> = Vec::new();
        for item in items {
            let slot = Slot::for_key(key_of(item));
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, group)) => group.push(item),
                None => groups.push((slot, vec![item])),
            }
        }
        groups.into_iter().map(|(_, group)| group).collect()
    }

    /// The keys matching `pattern` that share the slot of `key_in_slot` (on a cluster, SCAN on
    /// that slot's master; on one Redis, SCAN).
    pub async fn scan_slot(
        &mut self,
        pattern: &str,
        key_in_slot: &str,
    ) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = match self {
                Conn::Cluster(c) => {
                    let route = Route::with_key(key_in_slot, SlotAddr::Master);
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    redis::from_redis_value(c.route_command(cmd, routing).await?)?
                }
                _ => cmd.query_async(self).await?,
            };
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// Where a node's connections to Redis come from.
#[derive(Clone)]
pub enum Redis {
    One(redis::Client),
    Cluster(ClusterClient),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redis::One(_) => "Redis::One",
            Redis::Cluster(_) => "Redis::Cluster",
        })
    }
}

impl Redis {
    /// The Redis `urls` names (comma-separated seed nodes for a cluster), and the node's
    /// shared connection. One URL of a node with cluster mode on is taken as a cluster's seed.
    pub async fn connect(urls: &str) -> RedisResult<(Redis, Conn)> {
        let seeds: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if let [url] = seeds[..] {
            let client = redis::Client::open(url)?;
            let mut conn = ConnectionManager::new(client.clone()).await?;
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut conn)
                .await?;
            if !info.contains("cluster_enabled:1") {
                return Ok((Redis::One(client), Conn::One(conn)));
            }
        }
        let client = ClusterClient::new(seeds)?;
        let conn = client.get_async_connection().await?;
        Ok((Redis::Cluster(client), Conn::Cluster(conn)))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }

    /// A connection of its own, for reads that block up to `block`: its answers may take
    /// that long, and it holds up no other command meanwhile.
    pub async fn own_connection(&self, block: Duration) -> RedisResult<Conn> {
        let patience = block + Duration::from_secs(5);
        match self {
            Redis::One(client) => {
                let config =
                    redis::AsyncConnectionConfig::new().set_response_timeout(Some(patience));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Conn::Own(conn))
            }
            Redis::Cluster(client) => {
                let config = ClusterConfig::new().set_response_timeout(patience);
                let conn = client.get_async_connection_with_config(config).await?;
                Ok(Conn::Cluster(conn))
            }
        }
    }
}
