//! The run: events on virtual time, in order of time and then of scheduling. Callers arrive,
//! their strategies' sessions act, the matcher reserves agents, phones ring and are
//! answered (or not), calls end, agents wrap up, take breaks and end their shifts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::report::{End, Tally};
use super::rng::Rng;
use super::scenario::{Arrivals, Scenario, ScenarioError, day_ms, offset_ms};
use super::{Report, Tenant, profile_of};
use crate::matcher::{Availability, Known, Matcher, Told};
use crate::queue::Waiting;
use crate::strategy::{Action, CallInfo, Event, Program, Route, Session};

/// Stream purposes: the callers' own draws, and those of agents' phones.
const CALLERS: u64 = 1;
const PHONES: u64 = 2;
/// Each routing point's arrivals: this plus its index.
const ARRIVALS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive(usize),
    SessionDue(usize),
    TreatmentEnd(usize),
    Abandon(usize),
    /// The agent's phone answers the call (the ring's number, to tell a stale one).
    Answer(usize, u64),
    NoAnswer(usize, u64),
    HangUp(usize),
    WrapEnd(usize),
    ShiftStart(usize),
    ShiftEnd(usize),
    BreakStart(usize, u64),
    BreakEnd(usize),
    RonaEnd(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// In treatment or queue.
    Waiting,
    Ringing {
        agent: usize,
        ring: u64,
    },
    Talking {
        agent: usize,
    },
    Over,
}

struct Call {
    id: String,
    routing_point: usize,
    arrived: u64,
    session: Session,
    handle_ms: u64,
    /// How long it waited before it was answered.
    waited: u64,
    queue: Option<String>,
    overflowed: bool,
    stage: Stage,
    due: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentState {
    Off,
    Ready,
    Ringing,
    Talking,
    WrapUp,
    Break,
    /// Not ready after letting a call ring.
    Rona,
}

struct Agent {
    id: String,
    profile: usize,
    state: AgentState,
    on_shift: bool,
    /// A break due while the agent was busy: its length, taken once free.
    break_due: Option<u64>,
    /// Since when its time is not yet counted.
    counted_to: u64,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    known: Known,
    matcher: Matcher,
    programs: Vec<Arc<Program>>,
    arrivals: Vec<Source<'a>>,
    calls: Vec<Call>,
    agents: Vec<Agent>,
    by_id: HashMap<String, usize>,
    call_ids: HashMap<String, usize>,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    now: u64,
    /// Unix ms of virtual time 0.
    epoch: u64,
    interval_ms: u64,
    end_ms: u64,
    /// The scenario's durations, in ms.
    times: Times,
    callers: Rng,
    phones: Rng,
    rings: u64,
    tally: Tally,
}

/// The scenario's durations in ms, converted once.
struct Times {
    ring: u64,
    announcement: u64,
    wrap_up: u64,
    rona_timeout: u64,
    rona_not_ready: u64,
    threshold: u64,
}

impl Times {
    fn of(s: &Scenario) -> Self {
        Self {
            ring: ms(s.ring_secs),
            announcement: ms(s.announcement_secs),
            wrap_up: ms(s.wrap_up_secs.unwrap_or(0.0)),
            rona_timeout: ms(s.rona_timeout_secs),
            rona_not_ready: ms(s.rona_not_ready_secs),
            threshold: ms(s.service_level_secs),
        }
    }
}

/// A routing point's arrivals.
struct Source<'a> {
    spec: &'a Arrivals,
    rng: Rng,
    /// For a CSV: the next line.
    next: usize,
    /// The last arrival's exact time (ms), from which the next is drawn: rounding each to
    /// the millisecond it is scheduled at would shift the rate.
    clock: f64,
}

/// Runs `scenario` against `tenant`, after checking it.
pub fn run(tenant: &Tenant, scenario: &Scenario) -> Result<Report, ScenarioError> {
    tenant.check(scenario)?;
    let interval_ms = u64::from(scenario.interval_minutes) * 60_000;
    let end_ms = interval_ms * u64::from(scenario.interval_count());
    let mut known = Known {
        queues: tenant.queues.clone(),
        ..Known::default()
    };
    let mut agents = Vec::new();
    let mut by_id = HashMap::new();
    for (p, profile) in scenario.agents.iter().enumerate() {
        for n in 1..=profile.count {
            let id = format!("{}-{n}", profile.name);
            let mut matching = profile_of(profile);
            matching.id = id.clone();
            known.profiles.insert(id.clone(), matching);
            by_id.insert(id.clone(), agents.len());
            agents.push(Agent {
                id,
                profile: p,
                state: AgentState::Off,
                on_shift: false,
                break_due: None,
                counted_to: 0,
            });
        }
    }
    let mut sim = Sim {
        scenario,
        known,
        matcher: Matcher::default(),
        programs: scenario
            .arrivals
            .iter()
            .map(|a| tenant.routing_points[&a.routing_point].clone())
            .collect(),
        arrivals: scenario
            .arrivals
            .iter()
            .enumerate()
            .map(|(i, spec)| Source {
                spec,
                rng: Rng::new(scenario.seed, ARRIVALS + i as u64),
                next: 0,
                clock: 0.0,
            })
            .collect(),
        calls: Vec::new(),
        agents,
        by_id,
        call_ids: HashMap::new(),
        events: BinaryHeap::new(),
        seq: 0,
        now: 0,
        epoch: day_ms(&scenario.start)?,
        interval_ms,
        end_ms,
        times: Times::of(scenario),
        callers: Rng::new(scenario.seed, CALLERS),
        phones: Rng::new(scenario.seed, PHONES),
        rings: 0,
        tally: Tally::default(),
    };
    sim.plan_agents()?;
    for i in 0..sim.arrivals.len() {
        if let Some(at) = sim.next_arrival(i) {
            sim.at(at, Ev::Arrive(i));
        }
    }
    while let Some(Reverse((at, _, ev))) = sim.events.pop() {
        sim.now = at;
        sim.handle(ev);
    }
    Ok(sim.finish())
}

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round() as u64
}

impl Sim<'_> {
    fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    /// Shifts and breaks on the calendar; agents without shifts work all the run.
    fn plan_agents(&mut self) -> Result<(), ScenarioError> {
        for a in 0..self.agents.len() {
            let profile = &self.scenario.agents[self.agents[a].profile];
            if profile.shifts.is_empty() {
                self.at(0, Ev::ShiftStart(a));
            }
            for s in &profile.shifts {
                let what = format!("agents {:?}: shift", profile.name);
                let start = offset_ms(&what, &s.start)?;
                let end = offset_ms(&what, &s.end)?;
                self.at(start, Ev::ShiftStart(a));
                self.at(end, Ev::ShiftEnd(a));
            }
            for b in &profile.breaks {
                let at = offset_ms(&format!("agents {:?}: break", profile.name), &b.at)?;
                self.at(at, Ev::BreakStart(a, ms(b.minutes * 60.0)));
            }
        }
        Ok(())
    }

    /// The next arrival at routing point `i`: Poisson at the rate of each interval in turn
    /// (memoryless, so a draw that crosses into the next interval starts again there), or
    /// the CSV's next line.
    fn next_arrival(&mut self, i: usize) -> Option<u64> {
        let interval_ms = self.interval_ms;
        let end = self.end_ms;
        let source = &mut self.arrivals[i];
        if !source.spec.times.is_empty() {
            let t = source.spec.times.get(source.next)?;
            return Some(ms(t.secs)).filter(|t| *t < end);
        }
        let mut t = source.clock;
        while t < end as f64 {
            let interval = (t / interval_ms as f64) as usize;
            let per_ms = match (&source.spec.per_hour, &source.spec.per_interval) {
                (Some(h), _) => h / 3_600_000.0,
                (_, Some(curve)) => {
                    curve.get(interval).copied().unwrap_or(0.0) / interval_ms as f64
                }
                _ => 0.0,
            };
            let boundary = ((interval as u64 + 1) * interval_ms) as f64;
            if per_ms <= 0.0 {
                t = boundary;
                continue;
            }
            let next = t + source.rng.exponential(1.0 / per_ms);
            if next < boundary {
                source.clock = next;
                return Some(next as u64);
            }
            t = boundary;
        }
        source.clock = t;
        None
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive(i) => self.arrive(i),
            Ev::SessionDue(c) => {
                if self.calls[c].due == Some(self.now) {
                    self.calls[c].due = None;
                    let now = self.unix();
                    self.calls[c].session.handle_timeout(now);
                    self.drive(c);
                }
            }
            Ev::TreatmentEnd(c) => {
                if self.calls[c].stage == Stage::Waiting {
                    let now = self.unix();
                    self.calls[c]
                        .session
                        .handle(Event::TreatmentEnded { digits: None }, now);
                    self.drive(c);
                }
            }
            Ev::Abandon(c) => self.abandon(c),
            Ev::Answer(c, ring) => self.answer(c, ring),
            Ev::NoAnswer(c, ring) => self.no_answer(c, ring),
            Ev::HangUp(c) => self.hang_up(c),
            Ev::WrapEnd(a) => {
                if self.agents[a].state == AgentState::WrapUp {
                    self.free(a);
                }
            }
            Ev::ShiftStart(a) => {
                self.agents[a].on_shift = true;
                if self.agents[a].state == AgentState::Off {
                    self.free(a);
                }
            }
            Ev::ShiftEnd(a) => {
                self.agents[a].on_shift = false;
                if self.agents[a].state == AgentState::Ready {
                    self.set(a, AgentState::Off);
                    self.report(a, false, false);
                }
            }
            Ev::BreakStart(a, length) => match self.agents[a].state {
                AgentState::Ready => self.take_break(a, length),
                AgentState::Off | AgentState::Break => {}
                _ => self.agents[a].break_due = Some(length),
            },
            Ev::BreakEnd(a) | Ev::RonaEnd(a) => {
                if matches!(self.agents[a].state, AgentState::Break | AgentState::Rona) {
                    self.free(a);
                }
            }
        }
    }

    fn unix(&self) -> u64 {
        self.epoch + self.now
    }

    fn arrive(&mut self, i: usize) {
        if let Some(next) = self.next_arrival(i) {
            self.at(next, Ev::Arrive(i));
        }
        let source = &mut self.arrivals[i];
        let line = source.spec.times.get(source.next).cloned();
        source.next += 1;
        let spec = source.spec;
        let (caller, mut data) = (spec.caller.clone(), spec.data.clone());
        let caller = line
            .as_ref()
            .and_then(|l| l.caller.clone())
            .unwrap_or(caller);
        if let Some(l) = line {
            data.extend(l.data);
        }
        // The caller's own draws, in arrival order, whatever the routing does.
        let handle_ms = ms(self.scenario.handle.draw(&mut self.callers));
        let patience = self
            .scenario
            .patience
            .as_ref()
            .map(|p| ms(p.draw(&mut self.callers)));
        let c = self.calls.len();
        let id = format!("call-{c}");
        let info = CallInfo {
            caller,
            dialed: spec.routing_point.clone(),
            data,
        };
        let session = Session::new(self.programs[i].clone(), info, self.unix());
        self.call_ids.insert(id.clone(), c);
        self.calls.push(Call {
            id,
            routing_point: i,
            arrived: self.now,
            session,
            handle_ms,
            waited: 0,
            queue: None,
            overflowed: false,
            stage: Stage::Waiting,
            due: None,
        });
        if let Some(p) = patience {
            self.at(self.now + p, Ev::Abandon(c));
        }
        self.drive(c);
    }

    /// Carries out what call `c`'s session asks, then what the matcher says.
    fn drive(&mut self, c: usize) {
        let now = self.unix();
        while let Some(action) = self.calls[c].session.poll_action() {
            match action {
                Action::Treat(ref t) if !t.blocks() => {}
                Action::Treat(_) | Action::Collect { .. } => {
                    let end = self.now + self.times.announcement;
                    self.at(end, Ev::TreatmentEnd(c));
                }
                Action::SetData { .. } | Action::Record | Action::Monitor { .. } => {}
                Action::Submit {
                    queue,
                    target,
                    priority,
                    since,
                } => {
                    self.calls[c].queue = Some(queue.clone());
                    let waiting = Waiting {
                        call: self.calls[c].id.clone(),
                        target,
                        priority,
                        since,
                    };
                    self.matcher.submit(&self.known, &queue, waiting, now);
                }
                Action::Overflow { change, .. } => {
                    self.calls[c].overflowed = true;
                    let id = self.calls[c].id.clone();
                    self.matcher.overflow(&self.known, &id, change);
                }
                Action::Withdraw { .. } => {
                    let id = self.calls[c].id.clone();
                    self.matcher.withdraw(&self.known, &id, now);
                }
                Action::Route(Route::Agent { agent, .. }) => self.ring(c, &agent),
                Action::Route(_) => self.end(c, End::RoutedAway),
            }
        }
        let due = (!self.calls[c].session.is_done())
            .then(|| self.calls[c].session.poll_timeout())
            .flatten()
            .map(|at| at.saturating_sub(self.epoch).max(self.now));
        if due != self.calls[c].due {
            self.calls[c].due = due;
            if let Some(at) = due {
                self.at(at, Ev::SessionDue(c));
            }
        }
        self.told();
    }

    /// Passes what the matcher said to the calls' sessions.
    fn told(&mut self) {
        while let Some(told) = self.matcher.poll() {
            let (call, event) = match told {
                Told::Matched {
                    call, agent, dn, ..
                } => (call, Event::Matched { agent, dn }),
                Told::Unreserved { call, .. } => (call, Event::RouteFailed),
            };
            let Some(&c) = self.call_ids.get(&call) else {
                continue;
            };
            let now = self.unix();
            self.calls[c].session.handle(event, now);
            self.drive(c);
        }
    }

    /// The reserved agent's phone rings with call `c`.
    fn ring(&mut self, c: usize, agent: &str) {
        let Some(&a) = self.by_id.get(agent) else {
            return;
        };
        self.rings += 1;
        let ring = self.rings;
        self.calls[c].stage = Stage::Ringing { agent: a, ring };
        self.set(a, AgentState::Ringing);
        self.report(a, false, true);
        let rona =
            self.scenario.rona_share > 0.0 && self.phones.uniform() < self.scenario.rona_share;
        if rona {
            let at = self.now + self.times.rona_timeout;
            self.at(at, Ev::NoAnswer(c, ring));
        } else {
            let at = self.now + self.times.ring;
            self.at(at, Ev::Answer(c, ring));
        }
    }

    fn answer(&mut self, c: usize, ring: u64) {
        let Stage::Ringing { agent, ring: r } = self.calls[c].stage else {
            return;
        };
        if r != ring {
            return;
        }
        let now = self.unix();
        let waited = self.now - self.calls[c].arrived;
        let id = self.calls[c].id.clone();
        self.matcher.delivered(&self.known, &id, waited, now);
        self.calls[c].session.handle(Event::Routed, now);
        self.calls[c].stage = Stage::Talking { agent };
        self.calls[c].waited = waited;
        self.set(agent, AgentState::Talking);
        let end = self.now + self.calls[c].handle_ms;
        self.at(end, Ev::HangUp(c));
        self.drive(c);
    }

    /// The phone rang unanswered: the call goes back to its queue, the agent not ready
    /// for a while.
    fn no_answer(&mut self, c: usize, ring: u64) {
        let Stage::Ringing { agent, ring: r } = self.calls[c].stage else {
            return;
        };
        if r != ring {
            return;
        }
        let now = self.unix();
        self.calls[c].stage = Stage::Waiting;
        let id = self.agents[agent].id.clone();
        self.matcher.rona(&id);
        self.set(agent, AgentState::Rona);
        self.report(agent, false, false);
        let back = self.now + self.times.rona_not_ready;
        self.at(back, Ev::RonaEnd(agent));
        self.calls[c].session.handle(Event::RouteFailed, now);
        self.drive(c);
    }

    /// The caller's patience ran out: hung up, unless already talking or gone.
    fn abandon(&mut self, c: usize) {
        let ringing = match self.calls[c].stage {
            Stage::Waiting => None,
            Stage::Ringing { agent, .. } => Some(agent),
            Stage::Talking { .. } | Stage::Over => return,
        };
        let now = self.unix();
        self.calls[c].session.handle(Event::Abandoned, now);
        self.end(c, End::Abandoned);
        self.drive(c);
        if let Some(a) = ringing {
            self.free(a);
        }
    }

    fn hang_up(&mut self, c: usize) {
        let Stage::Talking { agent } = self.calls[c].stage else {
            return;
        };
        self.end(c, End::Answered);
        if self.times.wrap_up > 0 {
            self.set(agent, AgentState::WrapUp);
            self.report(agent, false, false);
            let at = self.now + self.times.wrap_up;
            self.at(at, Ev::WrapEnd(agent));
        } else {
            self.free(agent);
        }
    }

    /// Counts call `c`'s end.
    fn end(&mut self, c: usize, end: End) {
        let call = &mut self.calls[c];
        if call.stage == Stage::Over {
            return;
        }
        let waited = match end {
            End::Answered => call.waited,
            _ => self.now - call.arrived,
        };
        call.stage = Stage::Over;
        call.due = None;
        let routing_point = &self.scenario.arrivals[call.routing_point].routing_point;
        self.tally.call(
            routing_point,
            call.queue.as_deref(),
            (call.arrived / self.interval_ms) as u32,
            end,
            waited,
            self.times.threshold,
            call.overflowed,
        );
        let id = call.id.clone();
        self.call_ids.remove(&id);
    }

    /// The agent is free: Ready, or off its shift, or on the break it owes.
    fn free(&mut self, a: usize) {
        if !self.agents[a].on_shift {
            self.set(a, AgentState::Off);
            self.report(a, false, false);
        } else if let Some(length) = self.agents[a].break_due.take() {
            self.take_break(a, length);
        } else {
            self.set(a, AgentState::Ready);
            self.report(a, true, false);
        }
    }

    fn take_break(&mut self, a: usize, length: u64) {
        self.set(a, AgentState::Break);
        self.report(a, false, false);
        self.at(self.now + length, Ev::BreakEnd(a));
    }

    /// Tells the matcher what the agent's state is, as agent state does.
    fn report(&mut self, a: usize, available: bool, on_call: bool) {
        let report = Availability {
            agent: self.agents[a].id.clone(),
            dn: self.agents[a].id.clone(),
            queues: Vec::new(),
            available,
            on_call,
        };
        let now = self.unix();
        self.matcher.availability(&self.known, report, now);
        self.told();
    }

    /// The agent's state changes now: its time so far is counted.
    fn set(&mut self, a: usize, state: AgentState) {
        self.count(a, self.now);
        self.agents[a].state = state;
    }

    /// Counts agent `a`'s time up to `to` (within the run's intervals).
    fn count(&mut self, a: usize, to: u64) {
        let agent = &self.agents[a];
        let (from, to) = (agent.counted_to, to.min(self.end_ms));
        let staffed = !matches!(agent.state, AgentState::Off | AgentState::Break);
        let busy = matches!(
            agent.state,
            AgentState::Ringing | AgentState::Talking | AgentState::WrapUp
        );
        let profile = agent.profile;
        self.agents[a].counted_to = to.max(from);
        if !staffed || to <= from {
            return;
        }
        let mut t = from;
        while t < to {
            let interval = t / self.interval_ms;
            let boundary = ((interval + 1) * self.interval_ms).min(to);
            self.tally
                .time(profile, interval as u32, boundary - t, busy);
            t = boundary;
        }
    }

    fn finish(mut self) -> Report {
        for c in 0..self.calls.len() {
            if self.calls[c].stage != Stage::Over {
                self.end(c, End::Unfinished);
            }
        }
        for a in 0..self.agents.len() {
            self.count(a, self.end_ms);
        }
        let names: Vec<String> = self
            .scenario
            .agents
            .iter()
            .map(|p| p.name.clone())
            .collect();
        self.tally.report(
            self.scenario.interval_minutes,
            self.scenario.service_level_secs,
            self.scenario.answer_percentile,
            &names,
        )
    }
}
