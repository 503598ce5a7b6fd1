//! Where logged-in agents' states are kept, so that a restart does not log anyone out: a Redis
//! hash per tenant (`sb:{tenant}:agents`, one JSON field per agent), or memory. A logged-out
//! agent has no entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::redis_retry::query;

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

#[derive(Clone)]
pub enum AgentStore {
    Memory(Arc<Mutex<HashMap<String, HashMap<String, Stored>>>>),
    Redis(ConnectionManager),
}

impl std::fmt::Debug for AgentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AgentStore::Memory(_) => "AgentStore::Memory",
            AgentStore::Redis(_) => "AgentStore::Redis",
        })
    }
}

fn hash_name(tenant: &str) -> String {
    format!("sb:{tenant}:agents")
}

impl AgentStore {
    pub fn memory() -> Self {
        AgentStore::Memory(Arc::default())
    }

    /// Every logged-in agent of a tenant. An entry that cannot be read is logged and left out
    /// (that agent is logged out), rather than keep the tenant's agents from starting.
    pub async fn load_all(&self, tenant: &str) -> Result<Vec<Stored>> {
        match self {
            AgentStore::Memory(map) => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok(map
                    .get(tenant)
                    .map(|agents| agents.values().cloned().collect())
                    .unwrap_or_default())
            }
            AgentStore::Redis(conn) => {
                let all: HashMap<String, String> =
                    query(conn, redis::cmd("HGETALL").arg(hash_name(tenant))).await?;
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
            }
        }
    }

    /// One agent's stored state, if logged in.
    pub async fn load(&self, tenant: &str, agent: &str) -> Result<Option<Stored>> {
        match self {
            AgentStore::Memory(map) => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok(map.get(tenant).and_then(|a| a.get(agent)).cloned())
            }
            AgentStore::Redis(conn) => {
                let json: Option<String> =
                    query(conn, redis::cmd("HGET").arg(hash_name(tenant)).arg(agent)).await?;
                Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
            }
        }
    }

    /// Stores an agent's state; `None` for a logged-out agent.
    pub async fn save(&self, tenant: &str, agent: &str, state: Option<&Stored>) -> Result<()> {
        match self {
            AgentStore::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let agents = map.entry(tenant.to_owned()).or_default();
                match state {
                    Some(s) => agents.insert(agent.to_owned(), s.clone()),
                    None => agents.remove(agent),
                };
                Ok(())
            }
            AgentStore::Redis(conn) => {
                let cmd = match state {
                    Some(s) => {
                        let mut c = redis::cmd("HSET");
                        c.arg(hash_name(tenant))
                            .arg(agent)
                            .arg(serde_json::to_string(s).unwrap_or_default());
                        c
                    }
                    None => {
                        let mut c = redis::cmd("HDEL");
                        c.arg(hash_name(tenant)).arg(agent);
                        c
                    }
                };
                query::<()>(conn, &cmd).await?;
                Ok(())
            }
        }
    }
}
