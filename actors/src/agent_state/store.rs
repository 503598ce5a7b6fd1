//! Where logged-in agents' states are kept, so that a restart does not log anyone out: a Redis
//! hash per tenant (`sb:{<tenant>}:agents`, one JSON field per agent), or memory. A logged-out
//! agent has no entry.

use std::collections::HashMap;
use std::sync::Mutex;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::redis_retry::query;
use crate::store::StoreFuture;

/// A logged-in agent's state as stored. Calls are not kept: they live on the node that runs
/// them and are reported again by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub agent: String,
    pub dn: String,
    pub queues: Vec<String>,
    /// Ready, NotReady or AfterCallWork.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub work_mode: String,
    /// When timed after-call work ends, UTC milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_up_until_ms: Option<u64>,
    #[serde(default)]
    pub dnd: bool,
    pub in_service: bool,
}

/// Logged-in agents' states by tenant and agent.
pub trait AgentStore: Send + Sync + 'static {
    /// Every logged-in agent of a tenant. An entry that cannot be read is logged and left out
    /// (that agent is logged out), rather than keep the tenant's agents from starting.
    fn load_all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Stored>>;

    /// One agent's stored state, if logged in.
    fn load<'a>(&'a self, tenant: &'a str, agent: &'a str) -> StoreFuture<'a, Option<Stored>>;

    /// Stores an agent's state; `None` for a logged-out agent.
    fn save<'a>(
        &'a self,
        tenant: &'a str,
        agent: &'a str,
        state: Option<&'a Stored>,
    ) -> StoreFuture<'a, ()>;
}

/// Agents' states in this process, lost when it stops.
#[derive(Debug, Default)]
pub struct MemoryAgents(Mutex<HashMap<String, HashMap<String, Stored>>>);

impl MemoryAgents {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Stored>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AgentStore for MemoryAgents {
    fn load_all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Stored>> {
        let all = self
            .lock()
            .get(tenant)
            .map(|agents| agents.values().cloned().collect())
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(all)))
    }

    fn load<'a>(&'a self, tenant: &'a str, agent: &'a str) -> StoreFuture<'a, Option<Stored>> {
        let one = self.lock().get(tenant).and_then(|a| a.get(agent)).cloned();
        Box::pin(std::future::ready(Ok(one)))
    }

    fn save<'a>(
        &'a self,
        tenant: &'a str,
        agent: &'a str,
        state: Option<&'a Stored>,
    ) -> StoreFuture<'a, ()> {
        let mut map = self.lock();
        let agents = map.entry(tenant.to_owned()).or_default();
        match state {
            Some(s) => agents.insert(agent.to_owned(), s.clone()),
            None => agents.remove(agent),
        };
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Agents' states in Redis: a restart keeps everyone logged in.
#[derive(Clone)]
pub struct RedisAgents {
    conn: ConnectionManager,
    keys: Keys,
}

impl RedisAgents {
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }
}

impl AgentStore for RedisAgents {
    fn load_all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Stored>> {
        Box::pin(async move {
            let all: HashMap<String, String> = query(
                &self.conn,
                redis::cmd("HGETALL").arg(self.keys.agents(tenant)),
            )
            .await?;
            Ok(all
                .into_iter()
                .filter_map(|(agent, json)| match serde_json::from_str(&json) {
                    Ok(stored) => Some(stored),
                    Err(e) => {
                        tracing::warn!(tenant, %agent, error = %e,
                            "stored agent state unreadable: the agent starts logged out");
                        None
                    }
                })
                .collect())
        })
    }

    fn load<'a>(&'a self, tenant: &'a str, agent: &'a str) -> StoreFuture<'a, Option<Stored>> {
        Box::pin(async move {
            let json: Option<String> = query(
                &self.conn,
                redis::cmd("HGET").arg(self.keys.agents(tenant)).arg(agent),
            )
            .await?;
            Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
        })
    }

    fn save<'a>(
        &'a self,
        tenant: &'a str,
        agent: &'a str,
        state: Option<&'a Stored>,
    ) -> StoreFuture<'a, ()> {
        let cmd = match state {
            Some(s) => {
                let mut c = redis::cmd("HSET");
                c.arg(self.keys.agents(tenant))
                    .arg(agent)
                    .arg(serde_json::to_string(s).unwrap_or_default());
                c
            }
            None => {
                let mut c = redis::cmd("HDEL");
                c.arg(self.keys.agents(tenant)).arg(agent);
                c
            }
        };
        Box::pin(async move { Ok(query::<()>(&self.conn, &cmd).await?) })
    }
}
