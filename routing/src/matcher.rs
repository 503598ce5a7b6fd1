//! Calls and Ready agents meeting, for one tenant, without I/O: the virtual queues, the pool
//! of Ready agents, the reservations between them, and what each side is told. The RQ actor
//! drives it with its messages and the wall clock; the simulator drives it with virtual time.
//! Both get the same matching, so what the simulator predicts is what the node would do.
//!
//! An agent reserved for a call leaves the pool, and the call's outcome gives it back:
//! delivered, withdrawn (the caller hung up, the call went elsewhere) or queued again after
//! the agent's phone did not take it. An agent who did not answer (RONA) stays out until it
//! is reported not available and then available again. An agent who stops being available
//! while reserved and before the call reaches the phone gives the reservation back: the
//! call's session is told, and the call waits again with its age.
//!
//! Nothing here iterates a hash map to decide anything: queues are kept in name order, so
//! that two runs with the same inputs make the same choices.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::pool::{Choice, Pool};
use crate::queue::{Queue, WaitEstimate, Waiting};
use crate::strategy::Overflow;
use crate::target::Profile;

/// How many recent waits a queue's estimate is made from.
const ESTIMATE_FROM: usize = 50;

/// What matching reads of a tenant's configuration, indexed when it changes rather than
/// looked up in it on every event.
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub profiles: HashMap<String, Profile>,
    /// How each queue chooses among agents, in the configuration's order.
    pub queues: Vec<(String, Choice)>,
}

impl Known {
    pub fn choice(&self, queue: &str) -> Choice {
        self.queues
            .iter()
            .find(|(name, _)| name == queue)
            .map_or_else(Choice::default, |(_, c)| *c)
    }
}

/// What a call's routing session is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// The call's queue reserved `agent` (at `dn`) for it.
    Matched {
        call: String,
        queue: String,
        agent: String,
        dn: String,
    },
    /// The agent reserved for the call is no longer available: the call waits again.
    Unreserved { call: String, agent: String },
}

/// An agent as matching knows it.
#[derive(Debug, Default, Clone)]
pub struct AgentInfo {
    pub dn: String,
    pub queues: BTreeSet<String>,
    pub available: bool,
    pub on_call: bool,
    /// It let a call ring unanswered and has not been reported unavailable since.
    pub rona: bool,
    /// Calls delivered, for least occupied.
    pub load: u32,
}

/// What agent state reports of an agent.
#[derive(Debug, Clone)]
pub struct Availability {
    pub agent: String,
    pub dn: String,
    pub queues: Vec<String>,
    pub available: bool,
    pub on_call: bool,
}

/// An agent reserved for a call.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub call: String,
    pub queue: String,
    /// Whether the call reached the agent's DN (it rings there).
    pub reached: bool,
}

/// One tenant's queues, Ready agents and reservations.
#[derive(Debug, Default)]
pub struct Matcher {
    pool: Pool,
    queues: BTreeMap<String, Queue>,
    /// Waiting calls: their queue.
    waiting: HashMap<String, String>,
    /// Reserved agents: the call and its queue; and the other way.
    reserved: HashMap<String, Reservation>,
    by_call: HashMap<String, String>,
    agents: HashMap<String, AgentInfo>,
    estimates: HashMap<String, WaitEstimate>,
    out: VecDeque<Told>,
}

impl Matcher {
    /// What a session is to be told next.
    pub fn poll(&mut self) -> Option<Told> {
        self.out.pop_front()
    }

    /// A call waits in `queue` (again, with its age, after its agent did not answer): any
    /// agent reserved for it is given back, and it is matched if an agent is Ready.
    pub fn submit(&mut self, known: &Known, queue: &str, waiting: Waiting, now: u64) {
        let call = waiting.call.clone();
        let released = self.release_call(&call);
        self.queues
            .entry(queue.to_owned())
            .or_default()
            .push(waiting);
        self.waiting.insert(call.clone(), queue.to_owned());
        self.match_call(known, queue, &call);
        if let Some(agent) = released {
            self.free_agent(known, &agent, now);
        }
    }

    /// The agent did not answer the call it was offered: out until reported unavailable.
    pub fn rona(&mut self, agent: &str) {
        if let Some(info) = self.agents.get_mut(agent) {
            info.rona = true;
        }
    }

    /// A waiting call's priority or target changes (its strategy's overflow).
    pub fn overflow(&mut self, known: &Known, call: &str, change: Overflow) {
        let Some(queue) = self.waiting.get(call).cloned() else {
            return;
        };
        if let Some(q) = self.queues.get_mut(&queue) {
            match change {
                Overflow::Priority(p) => q.set_priority(call, p),
                Overflow::Target(target) => q.set_target(call, target),
            };
        }
        self.match_call(known, &queue, call);
    }

    /// The call leaves its queue (abandoned, timed out, routed elsewhere); its agent, if
    /// one was reserved, is given back.
    pub fn withdraw(&mut self, known: &Known, call: &str, now: u64) {
        if let Some(queue) = self.waiting.remove(call)
            && let Some(q) = self.queues.get_mut(&queue)
        {
            q.remove(call);
        }
        if let Some(agent) = self.release_call(call) {
            self.free_agent(known, &agent, now);
        }
    }

    /// The call reached its agent after waiting `waited_ms`: the reservation ends, and the
    /// agent comes back when it is reported free.
    pub fn delivered(&mut self, known: &Known, call: &str, waited_ms: u64, now: u64) {
        let Some(agent) = self.by_call.remove(call) else {
            return;
        };
        let Some(r) = self.reserved.remove(&agent) else {
            return;
        };
        self.estimates
            .entry(r.queue)
            .or_insert_with(|| WaitEstimate::new(ESTIMATE_FROM))
            .served(waited_ms);
        if let Some(info) = self.agents.get_mut(&agent) {
            info.load += 1;
        }
        // The agent is on the call, and agent state reports it free when the call ends;
        // unless that report came first (a call already over). An agent not yet reported on
        // the call must wait for that report: freed now, it would be offered a second call.
        let over = r.reached && self.agents.get(&agent).is_some_and(|i| !i.on_call);
        if over {
            self.free_agent(known, &agent, now);
        }
    }

    /// A reservation made before (by the node that owned the tenant's routing), taken back
    /// on takeover.
    pub fn restore(&mut self, call: &str, queue: &str, agent: &str) {
        self.pool.reserve(agent);
        self.by_call.insert(call.to_owned(), agent.to_owned());
        let reached = self.agents.get(agent).is_some_and(|i| i.on_call);
        self.reserved.insert(
            agent.to_owned(),
            Reservation {
                call: call.to_owned(),
                queue: queue.to_owned(),
                reached,
            },
        );
    }

    /// What agent state reports of an agent: into the pool and offered a call when it may
    /// take one, out of it otherwise.
    pub fn availability(&mut self, known: &Known, a: Availability, now: u64) {
        let info = self.agents.entry(a.agent.clone()).or_default();
        info.dn = a.dn;
        info.queues = a.queues.into_iter().collect();
        info.available = a.available;
        info.on_call = a.on_call;
        if !a.available {
            info.rona = false;
        }
        let rona = info.rona;
        if let Some(r) = self.reserved.get_mut(&a.agent) {
            if a.on_call {
                // The call reaches the agent's phone.
                r.reached = true;
                return;
            }
            if a.available || r.reached {
                // Still Ready while the call is on its way; or the call rang the phone and
                // its outcome (delivered, withdrawn, queued again) gives the agent back.
                return;
            }
            // Not ready or logged out before the call reached the phone: the call waits
            // again with its age.
            let r = self.reserved.remove(&a.agent).expect("present");
            self.by_call.remove(&r.call);
            self.out.push_back(Told::Unreserved {
                call: r.call,
                agent: a.agent.clone(),
            });
        }
        if a.available && !rona {
            self.free_agent(known, &a.agent, now);
        } else {
            self.pool.remove(&a.agent);
        }
    }

    /// Gives back the reservation made for `call`, if any; the agent, to offer again if it
    /// is still available.
    fn release_call(&mut self, call: &str) -> Option<String> {
        let agent = self.by_call.remove(call)?;
        self.reserved.remove(&agent);
        Some(agent)
    }

    /// The first call in order (priority, then age, then the queue's name) across the
    /// queues that the agent of `profile` satisfies: its queue and id.
    fn first_for(&self, profile: &Profile) -> Option<(String, String)> {
        self.queues
            .iter()
            .filter_map(|(name, q)| q.first_for(profile).map(|w| (name, w)))
            .min_by_key(|(_, w)| (std::cmp::Reverse(w.priority), w.since))
            .map(|(name, w)| (name.clone(), w.call.clone()))
    }

    /// An agent became free (Ready, or a reservation ended): into the pool, and offered the
    /// first call (by priority, then age) across the queues it may take; unless it is there
    /// already or may not take a call.
    fn free_agent(&mut self, known: &Known, agent: &str, now: u64) {
        let Some(profile) = known.profiles.get(agent) else {
            return;
        };
        let Some(info) = self.agents.get(agent) else {
            return;
        };
        if !info.available
            || info.on_call
            || info.rona
            || self.reserved.contains_key(agent)
            || self.pool.contains(agent)
        {
            return;
        }
        self.pool.insert_loaded(profile.clone(), now, info.load);
        if let Some((queue, call)) = self.first_for(profile) {
            self.reserve(&queue, &call, agent);
        }
    }

    /// A call arrived or changed: the agent its queue chooses, if one is Ready. A call
    /// behind others of higher rank that the same agent could take waits its turn: the
    /// agent goes to the first call in order it satisfies, and the call tries the next
    /// agent. Each turn reserves an agent, so it ends.
    fn match_call(&mut self, known: &Known, queue: &str, call: &str) {
        loop {
            let Some(waiting) = self.queues.get(queue).and_then(|q| q.get(call)) else {
                return;
            };
            let Some(agent) = self.pool.choose(&waiting.target, known.choice(queue)) else {
                return;
            };
            let Some((first_queue, first)) =
                known.profiles.get(agent).and_then(|p| self.first_for(p))
            else {
                return;
            };
            let agent = agent.to_owned();
            self.reserve(&first_queue, &first, &agent);
            if first == call {
                return;
            }
        }
    }

    fn reserve(&mut self, queue: &str, call: &str, agent: &str) {
        if self
            .queues
            .get_mut(queue)
            .and_then(|q| q.remove(call))
            .is_none()
        {
            return;
        }
        if self.waiting.remove(call).is_none() {
            return;
        }
        self.pool.reserve(agent);
        let dn = self
            .agents
            .get(agent)
            .map(|i| i.dn.clone())
            .unwrap_or_default();
        self.out.push_back(Told::Matched {
            call: call.to_owned(),
            queue: queue.to_owned(),
            agent: agent.to_owned(),
            dn,
        });
        self.by_call.insert(call.to_owned(), agent.to_owned());
        self.reserved.insert(
            agent.to_owned(),
            Reservation {
                call: call.to_owned(),
                queue: queue.to_owned(),
                reached: false,
            },
        );
    }

    /// The calls waiting in `queue`, in order.
    pub fn queue(&self, queue: &str) -> Option<&Queue> {
        self.queues.get(queue)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Every agent reported, in no particular order.
    pub fn agents(&self) -> impl Iterator<Item = (&String, &AgentInfo)> {
        self.agents.iter()
    }

    pub fn is_reserved(&self, agent: &str) -> bool {
        self.reserved.contains_key(agent)
    }

    /// The agent reserved for `call`, and its reservation.
    pub fn reservation_of(&self, call: &str) -> Option<(&String, &Reservation)> {
        let agent = self.by_call.get(call)?;
        Some((agent, self.reserved.get(agent)?))
    }

    /// The queue `call` waits in.
    pub fn waiting_in(&self, call: &str) -> Option<&String> {
        self.waiting.get(call)
    }

    /// The estimated wait of a call at `position` (from 1) in `queue`.
    pub fn estimate(&self, queue: &str, position: usize) -> Option<u64> {
        self.estimates.get(queue)?.for_position(position)
    }
}
