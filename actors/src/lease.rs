//! Which node is a tenant's owner: the one node at a time that runs the tenant's routing (its
//! queues, Ready-agent pool and reservations, routing sessions, callbacks) and its agent
//! registry. Ownership is a lease in Redis, `<prefix>:{<tenant>}:owner`, holding the owner's
//! node id and its fencing number:
//!
//! - a node takes a free lease with the next number of `<prefix>:{<tenant>}:fence`, so every
//!   owner a tenant ever had has a number above its predecessors';
//! - the owner renews its lease well within its time to live; a lease not renewed expires by
//!   Redis's own TTL (no node compares its clock with another's), and another node takes it;
//! - a node that cannot renew (Redis away, the lease taken) stops owning at once, and a node
//!   paused past its lease (SIGSTOP) finds, on waking, that its time ran out before it does
//!   anything else;
//! - what only the owner may do in Redis checks the fencing number in the same script
//!   ([`FENCE_CHECK`]), so a node that lost its lease and has not noticed yet is refused;
//! - a node stopping cleanly releases its leases, and the others take them on their next look
//!   (every [`LeaseConfig::claim_every`]), not after the time to live.
//!
//! [`hold_leases`] runs the loop for a node and tells the node which tenants it owns through
//! a watch channel.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::redis_conn::Conn;
use redis::Script;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::keys::Keys;

/// An owner's fencing number: each new owner of a tenant has a higher one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence(pub u64);

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The tenants a node owns, each with its fencing number.
pub type Owned = Arc<BTreeMap<String, Fence>>;

/// How long leases last and how often they are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A lease's time to live in Redis: how long a dead owner's tenants wait for another.
    pub ttl: Duration,
    /// How often a node looks at the leases it does not hold, to take a free one, and renews
    /// those it holds.
    pub claim_every: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3),
            claim_every: Duration::from_millis(500),
        }
    }
}

impl LeaseConfig {
    /// How long a node waits for Redis to answer a claim or renewal before it counts the
    /// leases it holds as lost: a third of their time to live.
    fn answer_within(&self) -> Duration {
        self.ttl / 3
    }
}

/// Who holds a tenant's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    pub fence: Fence,
}

/// KEYS[1] the lease, KEYS[2] the fencing counter; ARGV[1] this node, ARGV[2] the time to
/// live (ms). Takes a free lease or renews this node's: {1, fence, node}; a lease another node
/// holds: {0, fence, node}.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. fence, 'PX', ARGV[2])
  return {1, fence, ARGV[1]}
end
local sep = string.find(held, ' ', 1, true)
local node = string.sub(held, 1, sep - 1)
local fence = tonumber(string.sub(held, sep + 1))
if node == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, fence, node}
end
return {0, fence, node}
";

/// KEYS[1] the lease; ARGV[1] `node fence`, ARGV[2] the time to live (ms): 1 if renewed, 0
/// if the lease is no longer this holder's.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS[1] the lease; ARGV[1] `node fence`: 1 if released, 0 if it was not this holder's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The first lines of a script that only a tenant's owner may run: KEYS[1] the lease,
/// ARGV[1] `node fence`. A holder that is not the lease's now gets the error `FENCED`.
pub const FENCE_CHECK: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the tenant has another owner')
end
";

/// KEYS[1] the lease, KEYS[2] a hash; ARGV[1] the writer's `node fence` (empty for a node
/// alone, which holds no lease), ARGV[2] the field, ARGV[3] its value (empty: remove it).
const FENCED_HASH_WRITE: &str = r"
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the tenant has another owner')
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
return 1
";

/// What a store needs to write as a tenant's owner only: each write checks, in Redis and in
/// the same script, that the lease is still this node's under the fencing number it holds.
#[derive(Clone)]
pub struct Fencing {
    node: Arc<str>,
    ownership: Ownership,
    keys: Keys,
    script: Arc<Script>,
}

impl fmt::Debug for Fencing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fencing").field("node", &self.node).finish()
    }
}

impl Fencing {
    pub fn new(node: &str, ownership: Ownership, keys: Keys) -> Self {
        Self {
            node: node.into(),
            ownership,
            keys,
            script: Arc::new(Script::new(FENCED_HASH_WRITE)),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Sets (or with `None` removes) `field` of `hash`, one of `tenant`'s keys, if this node
    /// owns `tenant`: [`crate::Error::NotOwner`] otherwise, even when it has not noticed yet
    /// that its lease passed to another node.
    pub async fn write_hash(
        &self,
        conn: &Conn,
        tenant: &str,
        hash: &str,
        field: &str,
        value: Option<&str>,
    ) -> crate::Result<()> {
        let token = match &self.ownership {
            Ownership::Alone => String::new(),
            Ownership::Leased(_) => match self.ownership.fence(tenant) {
                Some(fence) => format!("{} {fence}", self.node),
                None => return Err(crate::Error::NotOwner(tenant.to_owned())),
            },
        };
        let lease = self.keys.owner(tenant);
        let script = &self.script;
        let (lease, token, value) = (&lease, &token, value.unwrap_or(""));
        let written = crate::redis_retry::retrying(conn, |mut c| async move {
            script
                .key(lease)
                .key(hash)
                .arg(token)
                .arg(field)
                .arg(value)
                .invoke_async::<()>(&mut c)
                .await
        })
        .await;
        match written {
            Err(e) if e.code() == Some("FENCED") => Err(crate::Error::NotOwner(tenant.to_owned())),
            other => Ok(other?),
        }
    }
}

/// A node's leases in Redis.
#[derive(Clone)]
pub struct Leases {
    conn: Conn,
    keys: Keys,
    node: Arc<str>,
    claim: Arc<Script>,
    renew: Arc<Script>,
    release: Arc<Script>,
}

impl fmt::Debug for Leases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leases").field("node", &self.node).finish()
    }
}

impl Leases {
    /// The leases of node `node` (an id no other node, and no earlier run of this one, has).
    pub fn new(conn: Conn, keys: Keys, node: &str) -> Self {
        Self {
            conn,
            keys,
            node: node.into(),
            claim: Arc::new(Script::new(CLAIM)),
            renew: Arc::new(Script::new(RENEW)),
            release: Arc::new(Script::new(RELEASE)),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The lease's key for `tenant`.
    pub fn key(&self, tenant: &str) -> String {
        self.keys.owner(tenant)
    }

    /// What a fenced script takes as ARGV[1] from this node holding `fence`.
    pub fn token(&self, fence: Fence) -> String {
        format!("{} {fence}", self.node)
    }

    /// Takes `tenant`'s lease if it is free, or renews it if this node holds it: the holder
    /// either way.
    pub async fn claim(&self, tenant: &str, ttl: Duration) -> redis::RedisResult<Holder> {
        let mut conn = self.conn.clone();
        let (_, fence, node): (u8, u64, String) = self
            .claim
            .key(self.keys.owner(tenant))
            .key(self.keys.fence(tenant))
            .arg(&*self.node)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(Holder {
            node,
            fence: Fence(fence),
        })
    }

    /// Renews this node's lease of `tenant` under `fence`; false if it is no longer this
    /// node's (it expired, and perhaps another node took it).
    pub async fn renew(
        &self,
        tenant: &str,
        fence: Fence,
        ttl: Duration,
    ) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        self.renew
            .key(self.keys.owner(tenant))
            .arg(self.token(fence))
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
    }

    /// Gives up this node's lease of `tenant` so another node takes it at once; false if it
    /// was not this node's.
    pub async fn release(&self, tenant: &str, fence: Fence) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        self.release
            .key(self.keys.owner(tenant))
            .arg(self.token(fence))
            .invoke_async(&mut conn)
            .await
    }

    /// Who holds `tenant`'s lease now, if anyone.
    pub async fn holder(&self, tenant: &str) -> redis::RedisResult<Option<Holder>> {
        let mut conn = self.conn.clone();
        let held: Option<String> = redis::cmd("GET")
            .arg(self.keys.owner(tenant))
            .query_async(&mut conn)
            .await?;
        Ok(held.and_then(|h| {
            let (node, fence) = h.rsplit_once(' ')?;
            Some(Holder {
                node: node.to_owned(),
                fence: Fence(fence.parse().ok()?),
            })
        }))
    }
}

/// Asks the holding loop to release every lease and end; answered once they are released.
#[derive(Debug)]
pub struct Stop(pub tokio::sync::oneshot::Sender<()>);

/// The names of the tenants whose leases a node holds (all it serves).
pub trait TenantNames {
    fn tenant_names(&self) -> Vec<String>;
}

impl TenantNames for Vec<String> {
    fn tenant_names(&self) -> Vec<String> {
        self.clone()
    }
}

impl TenantNames for Arc<crate::tenant::Directory> {
    fn tenant_names(&self) -> Vec<String> {
        self.tenants().map(|t| t.name.clone()).collect()
    }
}

/// Which tenants this node owns. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Ownership {
    /// A node without Redis is alone: it owns every tenant, with no lease.
    Alone,
    /// Leases held by [`hold_leases`].
    Leased(watch::Receiver<Owned>),
}

impl Ownership {
    /// This node's fencing number for `tenant`, if it owns it (0 when alone).
    pub fn fence(&self, tenant: &str) -> Option<Fence> {
        match self {
            Ownership::Alone => Some(Fence(0)),
            Ownership::Leased(owned) => owned.borrow().get(tenant).copied(),
        }
    }

    pub fn owns(&self, tenant: &str) -> bool {
        self.fence(tenant).is_some()
    }
}

/// The leases a node holds in the background, and how to stop holding them.
#[derive(Debug)]
pub struct Holding {
    pub ownership: Ownership,
    stop: tokio::sync::mpsc::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

impl Holding {
    /// Starts [`hold_leases`] for the tenants `tenants` names.
    pub fn start<T: TenantNames + Send + Sync + 'static>(
        leases: Leases,
        tenants: watch::Receiver<T>,
        config: LeaseConfig,
    ) -> Self {
        let (owned_tx, owned) = watch::channel(Owned::default());
        let (stop, stop_rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(hold_leases(leases, tenants, config, owned_tx, stop_rx));
        Self {
            ownership: Ownership::Leased(owned),
            stop,
            task,
        }
    }

    /// Holds no lease at all: a proxy in front of cluster nodes owns no tenant, and reaches
    /// each tenant's owner over the bus.
    pub fn none() -> Self {
        let (owned_tx, owned) = watch::channel(Owned::default());
        let (stop, mut stop_rx) = tokio::sync::mpsc::channel::<Stop>(1);
        let task = tokio::spawn(async move {
            let _owned = owned_tx;
            if let Some(Stop(done)) = stop_rx.recv().await {
                let _ = done.send(());
            }
        });
        Self {
            ownership: Ownership::Leased(owned),
            stop,
            task,
        }
    }

    /// Stops holding without releasing anything, as a node that dies: the leases expire.
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Releases every lease (so other nodes take the tenants at once) and stops; gives up
    /// waiting for Redis after `within`, leaving the leases to expire.
    pub async fn release(self, within: Duration) {
        let (done, answered) = tokio::sync::oneshot::channel();
        if self.stop.send(Stop(done)).await.is_ok()
            && tokio::time::timeout(within, answered).await.is_err()
        {
            tracing::warn!("leases not released in time: other nodes take them when they expire");
        }
        self.task.abort();
    }
}

/// Holds the leases of the tenants `tenants` names for this node, for as long as it runs:
/// takes free ones, renews its own, and tells `owned` which it holds (with their fencing
/// numbers) whenever that changes. A lease it cannot renew in time, or that another node now
/// holds, leaves `owned` at once. When `stop` fires, it releases every lease it holds and
/// answers.
pub async fn hold_leases<T: TenantNames + Send + Sync>(
    leases: Leases,
    mut tenants: watch::Receiver<T>,
    config: LeaseConfig,
    owned: watch::Sender<Owned>,
    mut stop: tokio::sync::mpsc::Receiver<Stop>,
) {
    // Each held lease, and until when this node may count on it: the moment its last
    // renewal was sent, plus its time to live, less a margin for Redis's clock running fast.
    let mut held: BTreeMap<String, (Fence, Instant)> = BTreeMap::new();
    let margin = config.ttl / 10;
    let mut tick = tokio::time::interval(config.claim_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tenants.changed() => {}
            asked = stop.recv() => {
                for (tenant, (fence, _)) in std::mem::take(&mut held) {
                    match leases.release(&tenant, fence).await {
                        Ok(true) => tracing::info!(%tenant, %fence, "tenant's lease released: another node takes its routing"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(%tenant, error = %e, "tenant's lease not released: another node takes it when it expires"),
                    }
                }
                owned.send_replace(Arc::default());
                if let Some(Stop(done)) = asked {
                    let _ = done.send(());
                }
                return;
            }
        }
        let now = Instant::now();
        // A node that slept past its leases (SIGSTOP, a stalled runtime) gives them up before
        // anything else, whatever Redis would say.
        let expired: Vec<String> = held
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for tenant in expired {
            if let Some((fence, _)) = held.remove(&tenant) {
                tracing::warn!(%tenant, %fence,
                    "tenant's lease ran out before it was renewed: its routing stops here");
            }
        }
        let wanted = tenants.borrow_and_update().tenant_names();
        held.retain(|t, _| wanted.contains(t));
        for tenant in &wanted {
            let sent = Instant::now();
            let answer =
                tokio::time::timeout(config.answer_within(), leases.claim(tenant, config.ttl))
                    .await;
            match answer {
                Ok(Ok(holder)) if holder.node == leases.node() => {
                    let until = sent + config.ttl - margin;
                    match held.insert(tenant.clone(), (holder.fence, until)) {
                        Some((fence, _)) if fence == holder.fence => {}
                        _ => tracing::info!(%tenant, fence = %holder.fence,
                            "this node owns the tenant's routing now"),
                    }
                }
                Ok(Ok(holder)) => {
                    if let Some((fence, _)) = held.remove(tenant) {
                        tracing::warn!(%tenant, %fence, owner = %holder.node, new_fence = %holder.fence,
                            "tenant's lease taken by another node: its routing stops here");
                    }
                }
                Ok(Err(e)) => {
                    if let Some((fence, _)) = held.remove(tenant) {
                        tracing::warn!(%tenant, %fence, error = %e,
                            "tenant's lease not renewed (Redis): its routing stops here");
                    }
                }
                Err(_) => {
                    if let Some((fence, _)) = held.remove(tenant) {
                        tracing::warn!(%tenant, %fence,
                            "tenant's lease not renewed (Redis did not answer in time): its routing stops here");
                    }
                }
            }
        }
        let now_owned: BTreeMap<String, Fence> =
            held.iter().map(|(t, (f, _))| (t.clone(), *f)).collect();
        owned.send_if_modified(|o| {
            if **o == now_owned {
                return false;
            }
            *o = Arc::new(now_owned);
            true
        });
    }
}
