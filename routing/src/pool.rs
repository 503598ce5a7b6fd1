//! The Ready agents a queue may offer calls to, indexed by skill level, group and id, so that
//! finding an agent for a target looks at the agents that can satisfy it rather than at
//! every agent (the target's [`Target::seeds`]); only a target anyone may satisfy scans them
//! all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::target::{Profile, Seed, Target};

/// How a call's agent is chosen among those who satisfy its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The one Ready the longest.
    #[default]
    LongestIdle,
}

/// Ready agents, with when each became Ready.
#[derive(Debug, Default)]
pub struct Pool {
    agents: HashMap<String, Ready>,
    /// Skill (lowercase) to level to the agents at that level.
    by_skill: HashMap<String, BTreeMap<u32, BTreeSet<String>>>,
    by_group: HashMap<String, BTreeSet<String>>,
}

#[derive(Debug)]
struct Ready {
    profile: Profile,
    /// When the agent became Ready (any clock, as long as it is the same for all).
    since: u64,
}

impl Pool {
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The agent of `profile` is Ready since `since` (again, if it was already).
    pub fn insert(&mut self, profile: Profile, since: u64) {
        self.remove(&profile.id);
        let id = profile.id.clone();
        for (skill, level) in &profile.skills {
            self.by_skill
                .entry(skill.clone())
                .or_default()
                .entry(*level)
                .or_default()
                .insert(id.clone());
        }
        for group in &profile.groups {
            self.by_group
                .entry(group.clone())
                .or_default()
                .insert(id.clone());
        }
        self.agents.insert(id, Ready { profile, since });
    }

    /// The agent is no longer Ready (reserved, busy, not ready, logged out).
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(ready) = self.agents.remove(id) else {
            return false;
        };
        for (skill, level) in &ready.profile.skills {
            if let Some(levels) = self.by_skill.get_mut(skill) {
                if let Some(ids) = levels.get_mut(level) {
                    ids.remove(id);
                    if ids.is_empty() {
                        levels.remove(level);
                    }
                }
                if levels.is_empty() {
                    self.by_skill.remove(skill);
                }
            }
        }
        for group in &ready.profile.groups {
            if let Some(ids) = self.by_group.get_mut(group) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_group.remove(group);
                }
            }
        }
        true
    }

    /// The agent to offer a call with `target`, if any Ready agent satisfies it.
    pub fn choose(&self, target: &Target, choice: Choice) -> Option<&str> {
        let Choice::LongestIdle = choice;
        let better = |best, id: &str| self.better(target, best, id);
        let mut best = None;
        match target.seeds() {
            Some(seeds) => {
                for seed in seeds {
                    match &seed {
                        Seed::Skill { skill, min } => {
                            let Some(levels) = self.by_skill.get(skill) else {
                                continue;
                            };
                            for ids in levels.range(min..).map(|(_, ids)| ids) {
                                for id in ids {
                                    best = better(best, id);
                                }
                            }
                        }
                        Seed::Group(g) => {
                            for id in self.by_group.get(g).into_iter().flatten() {
                                best = better(best, id);
                            }
                        }
                        Seed::Agent(a) => best = better(best, a),
                    }
                }
            }
            None => {
                for id in self.agents.keys() {
                    best = better(best, id);
                }
            }
        }
        best.map(|(id, _)| id)
    }

    /// `best` so far, or agent `id` if it satisfies `target` and has been Ready longer (the
    /// id breaks ties, so that the choice does not depend on the order looked in).
    fn better<'a>(
        &'a self,
        target: &Target,
        best: Option<(&'a str, u64)>,
        id: &str,
    ) -> Option<(&'a str, u64)> {
        let Some(ready) = self.agents.get(id) else {
            return best;
        };
        if !target.matches(&ready.profile) {
            return best;
        }
        match best {
            Some((b, since)) if (since, b) <= (ready.since, id) => best,
            _ => Some((ready.profile.id.as_str(), ready.since)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: &str, skills: &[(&str, u32)], groups: &[&str]) -> Profile {
        Profile::new(id, groups.iter().copied(), skills.iter().copied())
    }

    fn target(text: &str) -> Target {
        Target::parse(text).expect(text)
    }

    #[test]
    fn the_longest_idle_of_those_who_satisfy_the_target() {
        let mut pool = Pool::default();
        pool.insert(
            profile("a1", &[("english", 9), ("billing", 5)], &["support"]),
            30,
        );
        pool.insert(
            profile("a2", &[("english", 5), ("sales", 5)], &["support"]),
            10,
        );
        pool.insert(profile("a3", &[("english", 2)], &[]), 5);
        let t = target("english >= 5 & (billing > 0 | sales > 3)");
        assert_eq!(pool.choose(&t, Choice::LongestIdle), Some("a2"));
        assert!(pool.remove("a2"));
        assert_eq!(pool.choose(&t, Choice::LongestIdle), Some("a1"));
        assert_eq!(
            pool.choose(&target("english < 3"), Choice::LongestIdle),
            Some("a3")
        );
        assert_eq!(
            pool.choose(&target("group:support"), Choice::LongestIdle),
            Some("a1")
        );
        assert_eq!(
            pool.choose(&target("agent:a3 | agent:a9"), Choice::LongestIdle),
            Some("a3")
        );
        assert_eq!(
            pool.choose(&target("french > 0"), Choice::LongestIdle),
            None
        );
        // Ready again: idle from now.
        pool.insert(profile("a3", &[("english", 2)], &[]), 50);
        assert_eq!(
            pool.choose(&target("english > 0"), Choice::LongestIdle),
            Some("a1")
        );
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn removing_every_agent_leaves_no_index_behind() {
        let mut pool = Pool::default();
        for i in 0..10 {
            pool.insert(
                profile(&format!("a{i}"), &[("english", i)], &["g"]),
                u64::from(i),
            );
        }
        for i in 0..10 {
            assert!(pool.remove(&format!("a{i}")));
        }
        assert!(!pool.remove("a0"));
        assert!(pool.is_empty());
        assert!(pool.by_skill.is_empty() && pool.by_group.is_empty());
    }
}
