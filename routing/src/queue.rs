//! Calls waiting in a virtual queue, in the order they are served: higher priority first,
//! then the one waiting longest. A call keeps its place (its age) when it comes back, after an
//! agent did not answer (RONA); a raised priority moves it up without resetting its age.
//! Also the estimated wait of a queue, from the waits of the calls it served lately.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::target::{Profile, Target};

/// A waiting call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub call: String,
    pub target: Target,
    pub priority: u32,
    /// When it began waiting (ms, any clock shared by the queue): its age.
    pub since: u64,
}

/// Where a call is in the order: priority (higher first), age (older first), then a number
/// that tells apart calls that arrived in the same millisecond.
type Place = (Reverse<u32>, u64, u64);

/// A virtual queue's waiting calls.
#[derive(Debug, Default)]
pub struct Queue {
    order: BTreeMap<Place, Waiting>,
    places: HashMap<String, Place>,
    next: u64,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Adds a call, or puts it back with the age it had (a call requeued after RONA).
    pub fn push(&mut self, waiting: Waiting) {
        self.remove(&waiting.call);
        self.next += 1;
        let place = (Reverse(waiting.priority), waiting.since, self.next);
        self.places.insert(waiting.call.clone(), place);
        self.order.insert(place, waiting);
    }

    /// Takes a call out (answered elsewhere, abandoned, timed out); it, if it was waiting.
    pub fn remove(&mut self, call: &str) -> Option<Waiting> {
        let place = self.places.remove(call)?;
        self.order.remove(&place)
    }

    /// Raises (or lowers) a call's priority, keeping its age.
    pub fn set_priority(&mut self, call: &str, priority: u32) -> bool {
        let Some(mut waiting) = self.remove(call) else {
            return false;
        };
        waiting.priority = priority;
        self.push(waiting);
        true
    }

    /// Widens (or changes) the target a call waits for (overflow).
    pub fn set_target(&mut self, call: &str, target: Target) -> bool {
        let Some(place) = self.places.get(call) else {
            return false;
        };
        match self.order.get_mut(place) {
            Some(waiting) => {
                waiting.target = target;
                true
            }
            None => false,
        }
    }

    /// The first call in order that the agent of `profile` satisfies, for an agent who just
    /// became Ready.
    pub fn first_for(&self, profile: &Profile) -> Option<&Waiting> {
        self.order.values().find(|w| w.target.matches(profile))
    }

    /// A waiting call.
    pub fn get(&self, call: &str) -> Option<&Waiting> {
        self.order.get(self.places.get(call)?)
    }

    /// The calls in the order they are served.
    pub fn iter(&self) -> impl Iterator<Item = &Waiting> {
        self.order.values()
    }

    /// A call's position in the order, from 1.
    pub fn position(&self, call: &str) -> Option<usize> {
        let place = self.places.get(call)?;
        Some(self.order.range(..place).count() + 1)
    }
}

/// How long calls waited before an agent took them, lately: the estimated wait of a queue.
#[derive(Debug, Clone)]
pub struct WaitEstimate {
    recent: VecDeque<u64>,
    keep: usize,
}

impl WaitEstimate {
    /// Keeps the last `keep` waits (at least one).
    pub fn new(keep: usize) -> Self {
        Self {
            recent: VecDeque::with_capacity(keep.max(1)),
            keep: keep.max(1),
        }
    }

    /// A call waited `ms` before it was served.
    pub fn served(&mut self, ms: u64) {
        if self.recent.len() == self.keep {
            self.recent.pop_front();
        }
        self.recent.push_back(ms);
    }

    /// The estimated wait of a call joining at `position` (from 1): the mean recent wait,
    /// scaled by how far back it stands against the calls that were served; `None` before
    /// any call was served.
    pub fn for_position(&self, position: usize) -> Option<u64> {
        if self.recent.is_empty() {
            return None;
        }
        let mean = self.recent.iter().sum::<u64>() / self.recent.len() as u64;
        Some(mean.saturating_mul(position.max(1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(call: &str, target: &str, priority: u32, since: u64) -> Waiting {
        Waiting {
            call: call.into(),
            target: Target::parse(target).expect(target),
            priority,
            since,
        }
    }

    fn order(q: &Queue) -> Vec<&str> {
        q.iter().map(|w| w.call.as_str()).collect()
    }

    #[test]
    fn priority_first_then_age_and_a_requeued_call_keeps_its_age() {
        let mut q = Queue::default();
        q.push(waiting("c1", "english > 0", 5, 100));
        q.push(waiting("c2", "english > 0", 5, 50));
        q.push(waiting("c3", "english > 0", 9, 200));
        q.push(waiting("c4", "english > 0", 5, 60));
        assert_eq!(order(&q), ["c3", "c2", "c4", "c1"]);
        assert_eq!(q.position("c4"), Some(3));
        // c2 is offered to an agent who does not answer: back in, with its age.
        let c2 = q.remove("c2").expect("waiting");
        q.push(c2);
        assert_eq!(order(&q), ["c3", "c2", "c4", "c1"]);
        // Raised priority moves c1 up; its age still counts among equals.
        assert!(q.set_priority("c1", 9));
        assert_eq!(order(&q), ["c1", "c3", "c2", "c4"]);
        assert!(!q.set_priority("gone", 1));
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn an_agent_who_becomes_ready_takes_the_first_call_it_satisfies() {
        let mut q = Queue::default();
        q.push(waiting("billing", "billing > 0", 9, 10));
        q.push(waiting("sales", "sales > 3", 5, 5));
        q.push(waiting("anyone", "english >= 1", 1, 1));
        let seller = Profile::new("a2", [], [("sales", 5), ("english", 3)]);
        assert_eq!(q.first_for(&seller).map(|w| w.call.as_str()), Some("sales"));
        let newcomer = Profile::new("a3", [], [("english", 1)]);
        assert_eq!(
            q.first_for(&newcomer).map(|w| w.call.as_str()),
            Some("anyone")
        );
        // Overflow widens a target: now anyone with english takes it first.
        assert!(q.set_target("billing", Target::parse("english > 0").expect("valid")));
        assert_eq!(
            q.first_for(&newcomer).map(|w| w.call.as_str()),
            Some("billing")
        );
        assert_eq!(q.first_for(&Profile::new("a4", [], [])), None);
    }

    #[test]
    fn the_estimated_wait_follows_recent_calls() {
        let mut ewt = WaitEstimate::new(3);
        assert_eq!(ewt.for_position(1), None);
        for ms in [10_000, 20_000, 30_000, 60_000] {
            ewt.served(ms);
        }
        // The last three: 20, 30 and 60 s.
        assert_eq!(ewt.for_position(1), Some(36_666));
        assert_eq!(ewt.for_position(2), Some(73_332));
    }
}
