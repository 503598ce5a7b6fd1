//! Figures the actors keep for the node's metrics as they work: agents by state and
//! registrations per tenant, and how long routing takes to decide. Shared by the systems
//! that move them (agent state, the registrar, ORS) and read at each scrape; small maps
//! behind a lock, touched once per change.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

#[derive(Debug)]
pub struct Figures {
    /// Agents of this node's tenants, by (tenant, state): `Ready`, `NotReady`,
    /// `AfterCallWork`, `LoggedOut` for those known but logged out.
    agents: Mutex<BTreeMap<(String, &'static str), i64>>,
    /// Registrations per tenant: accepted, and refused for their credentials.
    registrations: Mutex<BTreeMap<String, Registrations>>,
    /// Seconds from a call's route request to its strategy's first decision (a route, or a
    /// queue).
    pub routing_decisions: Histogram,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Registrations {
    pub accepted: u64,
    pub refused: u64,
}

impl Default for Figures {
    fn default() -> Self {
        let buckets = [
            0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Self {
            agents: Mutex::default(),
            registrations: Mutex::default(),
            routing_decisions: Histogram::new(buckets),
        }
    }
}

impl Figures {
    /// An agent of `tenant` left state `from` (none: it was not counted yet) for `to` (none:
    /// it is no longer counted here).
    pub fn agent_moved(&self, tenant: &str, from: Option<&'static str>, to: Option<&'static str>) {
        if from == to {
            return;
        }
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(from) = from {
            let key = (tenant.to_owned(), from);
            if let Some(n) = agents.get_mut(&key) {
                *n -= 1;
                if *n <= 0 {
                    agents.remove(&key);
                }
            }
        }
        if let Some(to) = to {
            *agents.entry((tenant.to_owned(), to)).or_default() += 1;
        }
    }

    /// Agents by (tenant, state).
    pub fn agents(&self) -> Vec<(String, &'static str, i64)> {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents
            .iter()
            .map(|((t, s), n)| (t.clone(), *s, *n))
            .collect()
    }

    /// A REGISTER of `tenant` accepted, or refused for its credentials.
    pub fn registration(&self, tenant: &str, accepted: bool) {
        let mut all = self.registrations.lock().unwrap_or_else(|e| e.into_inner());
        let counts = match all.get_mut(tenant) {
            Some(counts) => counts,
            None => all.entry(tenant.to_owned()).or_default(),
        };
        if accepted {
            counts.accepted += 1;
        } else {
            counts.refused += 1;
        }
    }

    /// Registrations by tenant.
    pub fn registrations(&self) -> Vec<(String, Registrations)> {
        let all = self.registrations.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|(t, r)| (t.clone(), *r)).collect()
    }

    /// How long a strategy took to decide.
    pub fn routing_decided(&self, took: Duration) {
        self.routing_decisions.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_move_between_states_and_leave() {
        let f = Figures::default();
        f.agent_moved("a", None, Some("Ready"));
        f.agent_moved("a", None, Some("Ready"));
        f.agent_moved("a", Some("Ready"), Some("AfterCallWork"));
        f.agent_moved("b", None, Some("NotReady"));
        f.agent_moved("b", Some("NotReady"), None);
        assert_eq!(
            f.agents(),
            [
                ("a".to_owned(), "AfterCallWork", 1),
                ("a".to_owned(), "Ready", 1)
            ]
        );
    }
}
