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

/// Ready agents, with when each became Ready. Agents sit in slots; the indexes hold slot
/// numbers, so that looking at a candidate costs no lookup by name.
#[derive(Debug, Default)]
pub struct Pool {
    slots: Vec<Option<Ready>>,
    free: Vec<u32>,
    by_id: HashMap<String, u32>,
    /// Skill (lowercase) to level to the agents at that level.
    by_skill: HashMap<String, BTreeMap<u32, BTreeSet<u32>>>,
    by_group: HashMap<String, BTreeSet<u32>>,
}

#[derive(Debug)]
struct Ready {
    profile: Profile,
    /// When the agent became Ready (any clock, as long as it is the same for all).
    since: u64,
}

impl Pool {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The agent of `profile` is Ready since `since` (again, if it was already).
    pub fn insert(&mut self, profile: Profile, since: u64) {
        self.remove(&profile.id);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        for (skill, level) in &profile.skills {
            self.by_skill
                .entry(skill.clone())
                .or_default()
                .entry(*level)
                .or_default()
                .insert(slot);
        }
        for group in &profile.groups {
            self.by_group.entry(group.clone()).or_default().insert(slot);
        }
        self.by_id.insert(profile.id.clone(), slot);
        self.slots[slot as usize] = Some(Ready { profile, since });
    }

    /// The agent is no longer Ready (reserved, busy, not ready, logged out).
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.by_id.remove(id) else {
            return false;
        };
        let Some(ready) = self.slots[slot as usize].take() else {
            return false;
        };
        self.free.push(slot);
        for (skill, level) in &ready.profile.skills {
            if let Some(levels) = self.by_skill.get_mut(skill) {
                if let Some(slots) = levels.get_mut(level) {
                    slots.remove(&slot);
                    if slots.is_empty() {
                        levels.remove(level);
                    }
                }
                if levels.is_empty() {
                    self.by_skill.remove(skill);
                }
            }
        }
        for group in &ready.profile.groups {
            if let Some(slots) = self.by_group.get_mut(group) {
                slots.remove(&slot);
                if slots.is_empty() {
                    self.by_group.remove(group);
                }
            }
        }
        true
    }

    /// The agent to offer a call with `target`, if any Ready agent satisfies it.
    pub fn choose(&self, target: &Target, choice: Choice) -> Option<&str> {
        let Choice::LongestIdle = choice;
        let mut best: Option<&Ready> = None;
        let mut consider = |slot: u32| {
            let Some(ready) = self.slots.get(slot as usize).and_then(Option::as_ref) else {
                return;
            };
            let longer = best.is_none_or(|b| {
                (ready.since, ready.profile.id.as_str()) < (b.since, b.profile.id.as_str())
            });
            if longer && target.matches(&ready.profile) {
                best = Some(ready);
            }
        };
        match target.seeds() {
            Some(seeds) => {
                for seed in seeds {
                    match &seed {
                        Seed::Skill { skill, min } => {
                            let levels = self.by_skill.get(skill);
                            for slots in levels.into_iter().flat_map(|l| l.range(min..)) {
                                slots.1.iter().for_each(|&s| consider(s));
                            }
                        }
                        Seed::Group(g) => {
                            for &slot in self.by_group.get(g).into_iter().flatten() {
                                consider(slot);
                            }
                        }
                        Seed::Agent(a) => {
                            if let Some(&slot) = self.by_id.get(a) {
                                consider(slot);
                            }
                        }
                    }
                }
            }
            None => {
                for slot in 0..self.slots.len() as u32 {
                    consider(slot);
                }
            }
        }
        best.map(|r| r.profile.id.as_str())
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
        assert_eq!(pool.free.len(), 10, "slots are reused");
    }
}
