//! Where logged-in agents' states are kept, so that a restart does not log anyone out: a Redis
//! hash per tenant (`sb:{<tenant>}:agents`, one JSON field per agent), or memory. A logged-out
//! agent has no entry.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::redis_conn::Conn;
use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::lease::Fencing;
use crate::redis_retry::query;
use crate::store::StoreFuture;

/// A logged-in agent's state as stored, with the calls its DN is on and the node running
/// each (a call of a node that no longer runs is left out as the state loads).
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<StoredCall>,
    /// The state asked for during a call: Logout or NotReady.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_work_mode: Option<String>,
    /// The DN of the supervisor monitoring the agent's calls, and its mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitored_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_mode: Option<String>,
}

/// A call an agent's DN is on, and the node running it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCall {
    pub call: String,
    pub node: String,
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

/// Agents' states in Redis: a restart keeps everyone logged in, and a node that takes a
/// tenant over finds its agents as their last owner left them. Writes are fenced: only the
/// tenant's owner makes them (see [`crate::lease::Fencing`]).
#[derive(Clone)]
pub struct RedisAgents {
    conn: Conn,
    fencing: Fencing,
}

impl RedisAgents {
    pub fn new(conn: Conn, fencing: Fencing) -> Self {
        Self { conn, fencing }
    }

    fn keys(&self) -> &Keys {
        self.fencing.keys()
    }

    /// `stored` without the calls of nodes that no longer run (their calls ended with them).
    async fn live_calls(&self, mut stored: Stored) -> crate::Result<Stored> {
        if stored.calls.is_empty() {
            return Ok(stored);
        }
        let mut nodes: Vec<String> = stored.calls.iter().map(|c| c.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let mut running = Vec::new();
        for node in nodes {
            let alive: bool = query(
                &self.conn,
                redis::cmd("EXISTS").arg(self.keys().node_alive(&node)),
            )
            .await?;
            if alive {
                running.push(node);
            }
        }
        stored.calls.retain(|c| running.contains(&c.node));
        Ok(stored)
    }
}

impl AgentStore for RedisAgents {
    fn load_all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Stored>> {
        Box::pin(async move {
            let all: HashMap<String, String> = query(
                &self.conn,
                redis::cmd("HGETALL").arg(self.keys().agents(tenant)),
            )
            .await?;
            let mut loaded = Vec::with_capacity(all.len());
            for (agent, json) in all {
                match serde_json::from_str(&json) {
                    Ok(stored) => loaded.push(self.live_calls(stored).await?),
                    Err(e) => {
                        tracing::warn!(tenant, %agent, error = %e,
                            "stored agent state unreadable: the agent starts logged out");
                    }
                }
            }
            Ok(loaded)
        })
    }

    fn load<'a>(&'a self, tenant: &'a str, agent: &'a str) -> StoreFuture<'a, Option<Stored>> {
        Box::pin(async move {
            let json: Option<String> = query(
                &self.conn,
                redis::cmd("HGET")
                    .arg(self.keys().agents(tenant))
                    .arg(agent),
            )
            .await?;
            match json.and_then(|j| serde_json::from_str(&j).ok()) {
                Some(stored) => Ok(Some(self.live_calls(stored).await?)),
                None => Ok(None),
            }
        })
    }

    fn save<'a>(
        &'a self,
        tenant: &'a str,
        agent: &'a str,
        state: Option<&'a Stored>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let json = state.map(|s| serde_json::to_string(s).unwrap_or_default());
            self.fencing
                .write_hash(
                    &self.conn,
                    tenant,
                    &self.keys().agents(tenant),
                    agent,
                    json.as_deref(),
                )
                .await
        })
    }
}
