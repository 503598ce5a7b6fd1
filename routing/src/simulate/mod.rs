//! What-if on virtual time: a scenario's calls run through the tenant's real strategies
//! ([`crate::strategy::Session`]) and real matching ([`crate::matcher::Matcher`]: the queues'
//! order and the choice among Ready agents), with simulated callers and agents around them,
//! and the day's service level, waits, abandons and occupancy reported per interval.
//!
//! Deterministic: the same scenario, tenant and seed give the same report, byte for byte.
//! Events at the same virtual time run in the order they were scheduled, random draws come
//! from streams of their own ([`rng::Rng`]), and no hash map's order decides anything. Each
//! call's handle time, patience and data are drawn as it arrives, from a stream of their
//! own, so that two strategies compared on one seed meet the same callers.

mod engine;
pub mod erlang;
mod report;
pub mod rng;
mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use engine::run;
pub use report::{
    ProfileRow, Report, Row, abandon_rate, batch_means, service_level, speed_of_answer,
};
pub use scenario::{
    AgentProfile, Arrival, Arrivals, Break, Distribution, Routing, Scenario, ScenarioError, Shift,
};

use crate::pool::Choice;
use crate::strategy::Program;
use crate::target::Profile;
use scenario::refuse;

/// What the simulator takes of a tenant's configuration.
#[derive(Debug, Clone, Default)]
pub struct Tenant {
    /// Each routing point's strategy, by number.
    pub routing_points: BTreeMap<String, Arc<Program>>,
    /// How each queue chooses among agents, in the configuration's order.
    pub queues: Vec<(String, Choice)>,
    /// The skills and agent groups the tenant has.
    pub skills: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

impl Tenant {
    /// Refuses a scenario that names what the tenant lacks, or whose agents can never
    /// serve a target its routing points' strategies queue for.
    pub fn check(&self, scenario: &Scenario) -> Result<(), ScenarioError> {
        scenario.check()?;
        for a in &scenario.arrivals {
            if !self.routing_points.contains_key(&a.routing_point) {
                return refuse(format!(
                    "arrivals: the tenant has no routing point {:?}",
                    a.routing_point
                ));
            }
        }
        for p in &scenario.agents {
            if let Some(s) = p
                .skills
                .keys()
                .find(|s| !self.skills.contains(&s.to_lowercase()))
            {
                return refuse(format!(
                    "agents {:?}: the tenant has no skill {s:?}",
                    p.name
                ));
            }
            if let Some(g) = p.groups.iter().find(|g| !self.groups.contains(*g)) {
                return refuse(format!(
                    "agents {:?}: the tenant has no agent group {g:?}",
                    p.name
                ));
            }
        }
        let profiles: Vec<Profile> = scenario.agents.iter().map(profile_of).collect();
        for a in &scenario.arrivals {
            let program = &self.routing_points[&a.routing_point];
            for (line, queue, targets) in program.targets() {
                let served = targets
                    .iter()
                    .any(|t| profiles.iter().any(|p| t.matches(p)));
                if !served {
                    let target = targets.first().map(|t| t.to_string()).unwrap_or_default();
                    return refuse(format!(
                        "routing point {}: line {line}: no agent of the scenario can serve queue {queue:?} for target {target:?}",
                        a.routing_point
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The profile matching sees of a scenario's agents (the id is the profile's name).
fn profile_of(p: &AgentProfile) -> Profile {
    Profile::new(
        &p.name,
        p.groups.iter().map(String::as_str),
        p.skills.iter().map(|(s, l)| (s.as_str(), *l)),
    )
}
