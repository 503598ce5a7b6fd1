//! The Ready agents a queue may offer calls to, indexed by skill level, group and id, so that
//! finding an agent for a target looks at the agents that can satisfy it rather than at
//! every agent (the target's [`Target::seeds`]); only a target anyone may satisfy scans them
//! all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::target::{Profile, Seed, Target};

/// How a call's agent is chosen among those who satisfy its target. Ties go to the agent
/// Ready the longest, then to the lower id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The one Ready the longest.
    #[default]
    LongestIdle,
    /// The one with the highest levels (summed) in the skills the target names.
    MostSkilled,
    /// The one who took the fewest calls ([`Pool::insert_loaded`]).
    LeastOccupied,
    /// The one offered a call the longest ago (each in turn).
    RoundRobin,
    /// Every one at once, the first to answer taking the call ([`Pool::choose_all`]); as
    /// a single choice, the longest idle.
    RingAll,
}

impl Choice {
    /// `longest-idle`, `most-skilled`, `least-occupied`, `round-robin`, `ring-all`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "longest-idle" => Choice::LongestIdle,
            "most-skilled" => Choice::MostSkilled,
            "least-occupied" => Choice::LeastOccupied,
            "round-robin" => Choice::RoundRobin,
            "ring-all" => Choice::RingAll,
            _ => return None,
        })
    }
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
    /// When each agent was last offered a call (a counter), for round robin; kept while
    /// the agent is not Ready.
    turns: HashMap<String, u64>,
    turn: u64,
}

#[derive(Debug)]
struct Ready {
    profile: Profile,
    /// When the agent became Ready (any clock, as long as it is the same for all).
    since: u64,
    /// The calls the agent took lately, for least occupied.
    load: u32,
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
        self.insert_loaded(profile, since, 0);
    }

    /// As [`Pool::insert`], with the calls the agent took lately.
    pub fn insert_loaded(&mut self, profile: Profile, since: u64, load: u32) {
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
        self.slots[slot as usize] = Some(Ready {
            profile,
            since,
            load,
        });
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

    /// Whether the agent is in the pool.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Takes the agent out to offer it a call: removed, and its turn taken for round robin.
    pub fn reserve(&mut self, id: &str) -> bool {
        self.turn += 1;
        self.turns.insert(id.to_owned(), self.turn);
        self.remove(id)
    }

    /// The agent to offer a call with `target`, if any Ready agent satisfies it.
    pub fn choose(&self, target: &Target, choice: Choice) -> Option<&str> {
        let skills: Vec<String> = match choice {
            Choice::MostSkilled => target.names().skills.into_iter().collect(),
            _ => Vec::new(),
        };
        // Lower is better.
        let rank = |r: &Ready| -> (u64, u64) {
            let first = match choice {
                Choice::LongestIdle | Choice::RingAll => 0,
                Choice::MostSkilled => {
                    let sum: u64 = skills
                        .iter()
                        .map(|s| u64::from(r.profile.skills.get(s).copied().unwrap_or(0)))
                        .sum();
                    u64::MAX - sum
                }
                Choice::LeastOccupied => u64::from(r.load),
                Choice::RoundRobin => self.turns.get(&r.profile.id).copied().unwrap_or(0),
            };
            (first, r.since)
        };
        let mut best: Option<(&Ready, (u64, u64))> = None;
        self.candidates(target, |ready| {
            let key = rank(ready);
            let better = best.is_none_or(|(b, bk)| {
                (key, ready.profile.id.as_str()) < (bk, b.profile.id.as_str())
            });
            if better {
                best = Some((ready, key));
            }
        });
        best.map(|(r, _)| r.profile.id.as_str())
    }

    /// Every Ready agent who satisfies `target`, longest idle first (ring-all).
    pub fn choose_all(&self, target: &Target) -> Vec<&str> {
        let mut all: Vec<&Ready> = Vec::new();
        self.candidates(target, |r| all.push(r));
        all.sort_by(|a, b| (a.since, &a.profile.id).cmp(&(b.since, &b.profile.id)));
        all.dedup_by(|a, b| a.profile.id == b.profile.id);
        all.into_iter().map(|r| r.profile.id.as_str()).collect()
    }

    /// Calls `f` with each Ready agent who satisfies `target`, looking only where its seeds
    /// say (an agent may come more than once).
    fn candidates<'a>(&'a self, target: &Target, mut f: impl FnMut(&'a Ready)) {
        let mut consider = |slot: u32| {
            if let Some(ready) = self.slots.get(slot as usize).and_then(Option::as_ref)
                && target.matches(&ready.profile)
            {
                f(ready);
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
    fn most_skilled_least_occupied_round_robin_and_ring_all() {
        let mut pool = Pool::default();
        pool.insert_loaded(profile("a1", &[("english", 3), ("billing", 1)], &[]), 10, 7);
        pool.insert_loaded(profile("a2", &[("english", 9)], &[]), 20, 2);
        pool.insert_loaded(profile("a3", &[("english", 4), ("billing", 4)], &[]), 30, 2);
        let t = target("english > 0 | billing > 0");
        assert_eq!(pool.choose(&t, Choice::LongestIdle), Some("a1"));
        assert_eq!(pool.choose(&t, Choice::MostSkilled), Some("a2"));
        assert_eq!(
            pool.choose(&target("billing > 0"), Choice::MostSkilled),
            Some("a3")
        );
        // a2 and a3 took 2 calls each; a2 waits longer.
        assert_eq!(pool.choose(&t, Choice::LeastOccupied), Some("a2"));
        assert_eq!(pool.choose_all(&t), ["a1", "a2", "a3"]);
        // Round robin: each in turn, whatever their idle time.
        let mut order = Vec::new();
        for _ in 0..6 {
            let id = pool
                .choose(&t, Choice::RoundRobin)
                .expect("valid")
                .to_owned();
            assert!(pool.reserve(&id));
            pool.insert(profile(&id, &[("english", 1)], &[]), 0);
            order.push(id);
        }
        assert_eq!(order, ["a1", "a2", "a3", "a1", "a2", "a3"]);
        assert_eq!(Choice::parse("ring-all"), Some(Choice::RingAll));
        assert_eq!(Choice::parse("random"), None);
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
