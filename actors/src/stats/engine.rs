//! A tenant's real-time statistics, folded from its events one at a time (no scan of history
//! per request): the calls of its virtual queues (offered, answered, abandoned, speed of
//! answer, handle time, transfers) and its agents' states and time (occupancy), for the
//! tenant, each queue, each agent and each agent group.
//!
//! Only the events decide (their kinds, payloads and times), never the clock of the node
//! folding them: two nodes that fold the same streams give the same figures. Definitions:
//!
//! - **offered**: a call entered the queue (`Queued`); a call moved to another queue is
//!   offered there too.
//! - **answered**: the call was answered after it was queued (`Established`), in time if
//!   within the tenant's service-level threshold of entering the queue; **speed of answer**
//!   is that time.
//! - **abandoned**: the caller hung up while waiting (`Abandoned`); **short** if within the
//!   short-abandon threshold.
//! - **service level** = answered in time / (answered + abandoned after the short-abandon
//!   threshold).
//! - **handle time** = talk and hold (answer to release, or to the transfer that hands the
//!   call on) + the agent's after-call work that follows, counted when that work ends.
//! - **transfers**: calls their answering party transferred (`PartyChanged`).
//! - **occupancy** = time busy (on calls or in after-call work) / (time busy + time Ready).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::tz::TimeZone;
use switchboard_proto::events::{AgentState, CallThread, Event, event::Payload};

use super::periods::{Counts, Periods};

/// What a tenant's statistics are computed with.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    /// Answered within this of entering the queue counts toward the service level.
    pub service_level: Duration,
    /// Abandoned within this is a short abandon, left out of the service level.
    pub short_abandon: Duration,
    /// Where "today" starts and ends.
    pub time_zone: TimeZone,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self {
            service_level: Duration::from_secs(20),
            short_abandon: Duration::from_secs(5),
            time_zone: TimeZone::UTC,
        }
    }
}

/// One scope's counts over the two periods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Both {
    pub window: Counts,
    pub today: Counts,
}

/// A virtual queue now.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueNow {
    pub name: String,
    pub waiting: u32,
    pub longest_wait_ms: u64,
    /// A call joining now: (its place) × today's average handle time / the agents serving
    /// the queue; none before a call was handled.
    pub estimated_wait_ms: Option<u64>,
    /// Agents serving the queue (logged in to it) who are Ready, and who are busy.
    pub ready: u32,
    pub busy: u32,
    pub counts: Both,
}

/// An agent now.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentNow {
    pub id: String,
    pub dn: String,
    /// LoggedOut, Ready, NotReady or AfterCallWork.
    pub state: String,
    pub reason: String,
    pub time_in_state_ms: u64,
    /// On a call now.
    pub on_call: bool,
    pub counts: Both,
}

/// An agent group now.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNow {
    pub name: String,
    /// Its agents logged in, by state: (state, how many).
    pub states: Vec<(String, u32)>,
    pub counts: Both,
}

/// A tenant's statistics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantNow {
    pub at_ms: u64,
    pub waiting: u32,
    pub longest_wait_ms: u64,
    pub counts: Both,
    pub queues: Vec<QueueNow>,
    pub agents: Vec<AgentNow>,
    pub groups: Vec<GroupNow>,
}

/// A call being followed: from entering a queue to its end.
#[derive(Debug)]
struct CallTrack {
    queue: String,
    entered_ms: u64,
    /// The DN the call was routed to (RouteUsed), while it rings.
    routed_to: Option<String>,
    /// When it was answered, and the agent who answered (none for a DN no agent is on).
    answered: Option<(u64, Option<String>)>,
    /// Transferred away by whoever answered: their handling is over.
    handed_on: bool,
}

/// A call over whose handle time waits for its agent's after-call work to end.
#[derive(Debug)]
struct Handling {
    queue: String,
    talk_ms: u64,
    /// When the after-call work began, once it has.
    wrap_up_from: Option<u64>,
}

#[derive(Debug, Default)]
struct AgentTrack {
    dn: String,
    state: String,
    reason: String,
    queues: Vec<String>,
    on_call: bool,
    /// Since when the agent is in its state; up to when its time (busy, Ready or neither)
    /// is counted.
    state_since: u64,
    class_since: u64,
    periods: Periods,
}

impl AgentTrack {
    /// Busy (on a call, or in after-call work), Ready, or neither.
    fn class(&self) -> Option<bool> {
        if self.on_call || self.state == "AfterCallWork" {
            Some(true)
        } else if self.state == "Ready" {
            Some(false)
        } else {
            None
        }
    }

    fn logged_in(&self) -> bool {
        !self.state.is_empty() && self.state != "LoggedOut"
    }
}

/// A tenant's statistics as its events have made them.
#[derive(Debug, Default)]
pub struct TenantStats {
    settings: StatsSettings,
    /// The groups of each agent, from the tenant's configuration.
    groups_of: HashMap<String, Vec<String>>,
    tenant: Periods,
    queues: BTreeMap<String, Periods>,
    agents: BTreeMap<String, AgentTrack>,
    groups: BTreeMap<String, Periods>,
    calls: HashMap<String, CallTrack>,
    /// The agent logged in on each DN.
    agent_on: HashMap<String, String>,
    handling: HashMap<String, Handling>,
}

impl TenantStats {
    /// Statistics of a tenant whose queues and agent groups are `queues` and `groups` (agent
    /// id, its groups), shown even before anything happens in them.
    pub fn new(
        settings: StatsSettings,
        queues: impl IntoIterator<Item = String>,
        groups: impl IntoIterator<Item = String>,
        agents: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Self {
        Self {
            settings,
            queues: queues
                .into_iter()
                .map(|q| (q, Periods::default()))
                .collect(),
            groups: groups
                .into_iter()
                .map(|g| (g, Periods::default()))
                .collect(),
            groups_of: agents.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Takes the tenant's configuration as it is now: settings, queues, groups. What was
    /// counted stays.
    pub fn reconfigure(
        &mut self,
        settings: StatsSettings,
        queues: impl IntoIterator<Item = String>,
        groups: impl IntoIterator<Item = String>,
        agents: impl IntoIterator<Item = (String, Vec<String>)>,
    ) {
        self.settings = settings;
        for q in queues {
            self.queues.entry(q).or_default();
        }
        for g in groups {
            self.groups.entry(g).or_default();
        }
        self.groups_of = agents.into_iter().collect();
    }

    /// Folds one event in; whether it changed anything.
    pub fn apply(&mut self, event: &Event) -> bool {
        let at = event.at_ms.max(0) as u64;
        match &event.payload {
            Some(Payload::Agent(a)) => {
                self.agent(a, at);
                true
            }
            Some(Payload::Call(c)) => self.call(&event.kind, c, at),
            _ => false,
        }
    }

    fn agent(&mut self, a: &AgentState, at: u64) {
        let tz = self.settings.time_zone.clone();
        let groups = self.groups_of.get(&a.agent_id).cloned().unwrap_or_default();
        let agent = self.agents.entry(a.agent_id.clone()).or_default();
        // The time in its class until now goes to the agent, its groups and the tenant.
        if let Some(busy) = agent.class() {
            let from = agent.class_since;
            agent.periods.time(&tz, from, at, busy);
            for g in &groups {
                if let Some(p) = self.groups.get_mut(g) {
                    p.time(&tz, from, at, busy);
                }
            }
            self.tenant.time(&tz, from, at, busy);
        }
        let was_wrapping_up = agent.state == "AfterCallWork";
        if agent.state != a.state || agent.state_since == 0 {
            agent.state_since = at;
        }
        agent.state.clone_from(&a.state);
        agent.reason.clone_from(&a.reason);
        agent.on_call = !a.calls.is_empty();
        if !a.dn.is_empty() {
            if agent.dn != a.dn {
                self.agent_on.remove(&agent.dn);
            }
            agent.dn.clone_from(&a.dn);
            agent.queues.clone_from(&a.queues);
            self.agent_on.insert(a.dn.clone(), a.agent_id.clone());
        } else if !agent.dn.is_empty() {
            self.agent_on.remove(&agent.dn);
            agent.dn.clear();
            agent.queues.clear();
        }
        // Counted up to `at`: what follows counts from there.
        agent.class_since = at;
        // The after-call work of the agent's last call, begun or over.
        let wrapping_up = agent.state == "AfterCallWork";
        let idle = !agent.on_call && !wrapping_up;
        if let Some(h) = self.handling.get_mut(&a.agent_id) {
            if wrapping_up && h.wrap_up_from.is_none() {
                h.wrap_up_from = Some(at);
            } else if idle {
                let wrap_up = h
                    .wrap_up_from
                    .filter(|_| was_wrapping_up)
                    .map_or(0, |f| at - f);
                self.handled(&a.agent_id, at, wrap_up);
            }
        }
    }

    fn call(&mut self, kind: &str, c: &CallThread, at: u64) -> bool {
        match kind {
            "Queued" if !c.queue.is_empty() => {
                let moved = self
                    .calls
                    .get(&c.call_id)
                    .is_none_or(|t| t.queue != c.queue && t.answered.is_none());
                if !moved {
                    return false;
                }
                self.calls.insert(
                    c.call_id.clone(),
                    CallTrack {
                        queue: c.queue.clone(),
                        entered_ms: at,
                        routed_to: None,
                        answered: None,
                        handed_on: false,
                    },
                );
                self.count_call(&c.queue, None, at, |n| n.offered += 1);
                true
            }
            "RouteUsed" => {
                let Some(track) = self.calls.get_mut(&c.call_id) else {
                    return false;
                };
                track.routed_to = c
                    .parties
                    .iter()
                    .find(|p| p.role == "destination")
                    .map(|p| p.dn.clone());
                false
            }
            "Established" => {
                let Some(track) = self.calls.get_mut(&c.call_id) else {
                    return false;
                };
                if track.answered.is_some() {
                    return false;
                }
                let agent = track
                    .routed_to
                    .as_ref()
                    .and_then(|dn| self.agent_on.get(dn))
                    .cloned();
                track.answered = Some((at, agent.clone()));
                let speed = at.saturating_sub(track.entered_ms);
                let in_time = speed <= self.settings.service_level.as_millis() as u64;
                let queue = track.queue.clone();
                self.count_call(&queue, agent.as_deref(), at, |n| {
                    n.answered += 1;
                    n.answer_ms += speed;
                    n.answered_in_time += u64::from(in_time);
                });
                true
            }
            "Abandoned" => {
                let Some(track) = self.calls.remove(&c.call_id) else {
                    return false;
                };
                if track.answered.is_some() {
                    return false;
                }
                let waited = at.saturating_sub(track.entered_ms);
                let short = waited <= self.settings.short_abandon.as_millis() as u64;
                self.count_call(&track.queue, None, at, |n| {
                    n.abandoned += 1;
                    n.short_abandoned += u64::from(short);
                });
                true
            }
            "PartyChanged" => {
                // The party who answered transferred the call: one transfer, and the end of
                // their handling (the call goes on without them).
                let Some(track) = self.calls.get_mut(&c.call_id) else {
                    return false;
                };
                let Some((answered_at, agent)) = track.answered.clone() else {
                    return false;
                };
                if std::mem::replace(&mut track.handed_on, true) {
                    return false;
                }
                let queue = track.queue.clone();
                self.count_call(&queue, agent.as_deref(), at, |n| n.transfers += 1);
                self.handling_over(queue, answered_at, agent, at);
                true
            }
            "Released" => {
                let Some(track) = self.calls.remove(&c.call_id) else {
                    return false;
                };
                let Some((answered_at, agent)) = track.answered else {
                    return false;
                };
                if !track.handed_on {
                    self.handling_over(track.queue, answered_at, agent, at);
                }
                true
            }
            _ => false,
        }
    }

    /// The talk of a call answered at `answered_at` by `agent` is over at `at`: handled now
    /// when no after-call work follows, or once it ends.
    fn handling_over(&mut self, queue: String, answered_at: u64, agent: Option<String>, at: u64) {
        let talk_ms = at.saturating_sub(answered_at);
        let Some(agent) = agent else {
            // No agent to wrap up.
            self.count_call(&queue, None, at, |n| {
                n.handled += 1;
                n.handle_ms += talk_ms;
            });
            return;
        };
        // The agent's after-call work began already (its event is written before the
        // call's), or comes next, or never (no wrap-up: handled now).
        let (wrapping_up, since, idle) = self.agents.get(&agent).map_or((false, at, false), |a| {
            (a.state == "AfterCallWork", a.state_since, !a.on_call)
        });
        self.handling.insert(
            agent.clone(),
            Handling {
                queue,
                talk_ms,
                wrap_up_from: wrapping_up.then_some(since),
            },
        );
        if idle && !wrapping_up {
            self.handled(&agent, at, 0);
        }
    }

    /// The handling of `agent`'s last call is over at `at`, with `wrap_up_ms` of after-call
    /// work.
    fn handled(&mut self, agent: &str, at: u64, wrap_up_ms: u64) {
        let Some(h) = self.handling.remove(agent) else {
            return;
        };
        let handle = h.talk_ms + wrap_up_ms;
        self.count_call(&h.queue, Some(agent), at, |n| {
            n.handled += 1;
            n.handle_ms += handle;
        });
    }

    /// Counts a call's change at `at` for its queue, the tenant, and the agent who has it
    /// with the agent's groups.
    fn count_call(
        &mut self,
        queue: &str,
        agent: Option<&str>,
        at: u64,
        change: impl Fn(&mut Counts),
    ) {
        let tz = &self.settings.time_zone;
        self.tenant.count(tz, at, &change);
        self.queues
            .entry(queue.to_owned())
            .or_default()
            .count(tz, at, &change);
        let Some(agent) = agent else {
            return;
        };
        self.agents
            .entry(agent.to_owned())
            .or_default()
            .periods
            .count(tz, at, &change);
        for g in self.groups_of.get(agent).into_iter().flatten() {
            if let Some(p) = self.groups.get_mut(g) {
                p.count(tz, at, &change);
            }
        }
    }

    /// The figures at `now_ms`.
    pub fn now(&self, now_ms: u64) -> TenantNow {
        let tz = &self.settings.time_zone;
        let both = |p: &Periods| Both {
            window: p.window(now_ms),
            today: p.today(now_ms),
        };
        // Each agent's time in its class up to now, not yet counted by an event.
        let ongoing = |a: &AgentTrack| {
            let mut p = Periods::default();
            if let Some(busy) = a.class() {
                p.time(tz, a.class_since, now_ms.max(a.class_since), busy);
            }
            both(&p)
        };
        let plus = |mut a: Both, b: &Both| {
            a.window.add(&b.window);
            a.today.add(&b.today);
            a
        };
        let mut tenant = both(&self.tenant);
        let mut groups: BTreeMap<&str, (Both, BTreeMap<String, u32>)> = self
            .groups
            .iter()
            .map(|(g, p)| (g.as_str(), (both(p), BTreeMap::new())))
            .collect();
        let mut agents = Vec::new();
        for (id, a) in &self.agents {
            let extra = ongoing(a);
            tenant = plus(tenant, &extra);
            for g in self.groups_of.get(id).into_iter().flatten() {
                if let Some((counts, states)) = groups.get_mut(g.as_str()) {
                    *counts = plus(*counts, &extra);
                    if a.logged_in() {
                        *states.entry(a.state.clone()).or_default() += 1;
                    }
                }
            }
            agents.push(AgentNow {
                id: id.clone(),
                dn: a.dn.clone(),
                state: if a.state.is_empty() {
                    "LoggedOut".to_owned()
                } else {
                    a.state.clone()
                },
                reason: a.reason.clone(),
                time_in_state_ms: now_ms.saturating_sub(a.state_since),
                on_call: a.on_call,
                counts: plus(both(&a.periods), &extra),
            });
        }
        let mut queues = Vec::new();
        let (mut all_waiting, mut all_longest) = (0, 0);
        for (name, p) in &self.queues {
            let waits: Vec<u64> = self
                .calls
                .values()
                .filter(|c| c.queue == *name && c.answered.is_none())
                .map(|c| now_ms.saturating_sub(c.entered_ms))
                .collect();
            let serving = self
                .agents
                .values()
                .filter(|a| a.logged_in() && a.queues.contains(name));
            let (mut ready, mut busy) = (0, 0);
            for a in serving {
                match a.class() {
                    Some(true) => busy += 1,
                    Some(false) => ready += 1,
                    None => {}
                }
            }
            let counts = both(p);
            let waiting = waits.len() as u32;
            let longest = waits.iter().copied().max().unwrap_or(0);
            let estimated_wait_ms = counts
                .today
                .average_handle_ms()
                .map(|aht| aht * u64::from(waiting + 1) / u64::from((ready + busy).max(1)));
            all_waiting += waiting;
            all_longest = all_longest.max(longest);
            queues.push(QueueNow {
                name: name.clone(),
                waiting,
                longest_wait_ms: longest,
                estimated_wait_ms,
                ready,
                busy,
                counts,
            });
        }
        TenantNow {
            at_ms: now_ms,
            waiting: all_waiting,
            longest_wait_ms: all_longest,
            counts: tenant,
            queues,
            agents,
            groups: groups
                .into_iter()
                .map(|(name, (counts, states))| GroupNow {
                    name: name.to_owned(),
                    states: states.into_iter().collect(),
                    counts,
                })
                .collect(),
        }
    }
}
