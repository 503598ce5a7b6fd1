//! A strategy running for one call: a sans-io state machine that takes the call's events and
//! the time, and gives the actions the call's routing session carries out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::{Instr, Overflow, Program, Route, Treatment};
use crate::target::Target;

/// The call a session routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallInfo {
    pub caller: String,
    pub dialed: String,
    pub data: BTreeMap<String, String>,
}

/// What a session asks of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply a treatment (replacing the one in progress).
    Treat(Treatment),
    /// Collect digits with a VoiceXML dialog.
    Collect { digits: u32, uri: String },
    /// Attach data to the call.
    SetData { key: String, value: String },
    /// Record the call from its answer.
    Record,
    /// Have the supervisor at `dn` monitor the call from its answer, in `mode`.
    Monitor { dn: String, mode: String },
    /// Put the call in a queue (again, keeping its age `since`, after an agent did not
    /// answer).
    Submit {
        queue: String,
        target: Target,
        priority: u32,
        since: u64,
    },
    /// Change the call's place in its queue (overflow).
    Overflow { queue: String, change: Overflow },
    /// Take the call out of its queue.
    Withdraw { queue: String },
    /// Route the call; the session is over once it is routed.
    Route(Route),
}

/// What happens to the call, for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A blocking treatment ended; for collect, the digits.
    TreatmentEnded { digits: Option<String> },
    /// A treatment could not be applied (no media server answered).
    TreatmentFailed,
    /// The queue reserved an agent.
    Matched { agent: String, dn: String },
    /// The reserved agent did not answer (or the route failed): back to the queue.
    RouteFailed,
    /// The call reached its destination.
    Routed,
    /// The caller hung up.
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    /// A blocking treatment in progress.
    Treating {
        collect: Option<String>,
    },
    Waiting {
        until: u64,
    },
    Queued(Box<Queued>),
    /// Routed to an agent, awaiting the outcome.
    Routing(Box<Queued>),
    /// Routed elsewhere, awaiting the outcome.
    Sent,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Queued {
    queue: String,
    since: u64,
    timeout_at: Option<u64>,
    /// The overflow steps still to come, at absolute times.
    after: VecDeque<(u64, Overflow)>,
    /// The latest target and priority, to submit again after RONA.
    target: Target,
    priority: u32,
}

/// A session at rest as it is kept outside the node (see [`Session::save`]), so that another
/// node resumes it where it was: the statement it is at, what it waits for, its queue's
/// deadlines and overflow steps at absolute times.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    call: CallInfo,
    pub(super) pc: usize,
    phase: SavedPhase,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
enum SavedPhase {
    Treating { collect: Option<String> },
    Waiting { until: u64 },
    Queued(SavedQueued),
    Routing(SavedQueued),
    Sent,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedQueued {
    queue: String,
    since: u64,
    timeout_at: Option<u64>,
    after: Vec<(u64, SavedOverflow)>,
    target: String,
    priority: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
enum SavedOverflow {
    Priority(u32),
    Target(String),
}

/// Why a saved session cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("its statement {0} is past the end of the strategy")]
    PastTheEnd(usize),
    #[error("its target {0:?} does not parse")]
    Target(String),
}

/// Where a resumed session's call waits, so that its queue takes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InQueue {
    pub queue: String,
    pub target: Target,
    pub priority: u32,
    pub since: u64,
    /// Routed to a reserved agent, awaiting the outcome.
    pub routing: bool,
}

impl Queued {
    fn save(&self) -> SavedQueued {
        SavedQueued {
            queue: self.queue.clone(),
            since: self.since,
            timeout_at: self.timeout_at,
            after: self
                .after
                .iter()
                .map(|(t, o)| {
                    let o = match o {
                        Overflow::Priority(p) => SavedOverflow::Priority(*p),
                        Overflow::Target(t) => SavedOverflow::Target(t.to_string()),
                    };
                    (*t, o)
                })
                .collect(),
            target: self.target.to_string(),
            priority: self.priority,
        }
    }

    fn resume(s: SavedQueued) -> Result<Box<Self>, ResumeError> {
        let target = |t: String| Target::parse(&t).map_err(|_| ResumeError::Target(t));
        let after = s
            .after
            .into_iter()
            .map(|(at, o)| {
                Ok((
                    at,
                    match o {
                        SavedOverflow::Priority(p) => Overflow::Priority(p),
                        SavedOverflow::Target(t) => Overflow::Target(target(t)?),
                    },
                ))
            })
            .collect::<Result<_, ResumeError>>()?;
        Ok(Box::new(Queued {
            queue: s.queue,
            since: s.since,
            timeout_at: s.timeout_at,
            after,
            target: target(s.target)?,
            priority: s.priority,
        }))
    }
}

/// How many statements may run without waiting before a session is stopped (a guard; the
/// compiler refuses loops that would do it).
const MAX_STEPS: usize = 10_000;

/// One call's run through a strategy. Time (unix ms) is an argument; what the core must do
/// comes out of [`Session::poll_action`]; [`Session::poll_timeout`] says when to call
/// [`Session::handle_timeout`].
#[derive(Debug)]
pub struct Session {
    program: Arc<Program>,
    call: CallInfo,
    pc: usize,
    phase: Phase,
    out: VecDeque<Action>,
}

impl Session {
    /// Starts a session; it runs until it first waits.
    pub fn new(program: Arc<Program>, call: CallInfo, now: u64) -> Self {
        let mut s = Self {
            program,
            call,
            pc: 0,
            phase: Phase::Running,
            out: VecDeque::new(),
        };
        s.run(now);
        s
    }

    /// The session as it rests now, to resume elsewhere; `None` once it is over (or while
    /// it has actions not yet taken, which a session at rest never has).
    pub fn save(&self) -> Option<Saved> {
        if !self.out.is_empty() {
            return None;
        }
        let phase = match &self.phase {
            Phase::Running | Phase::Done => return None,
            Phase::Treating { collect } => SavedPhase::Treating {
                collect: collect.clone(),
            },
            Phase::Waiting { until } => SavedPhase::Waiting { until: *until },
            Phase::Queued(q) => SavedPhase::Queued(q.save()),
            Phase::Routing(q) => SavedPhase::Routing(q.save()),
            Phase::Sent => SavedPhase::Sent,
        };
        Some(Saved {
            call: self.call.clone(),
            pc: self.pc,
            phase,
        })
    }

    /// A saved session of `program` (the strategy version it started with), as it was.
    pub fn resume(program: Arc<Program>, saved: Saved) -> Result<Self, ResumeError> {
        if saved.pc > program.code.len() {
            return Err(ResumeError::PastTheEnd(saved.pc));
        }
        let phase = match saved.phase {
            SavedPhase::Treating { collect } => Phase::Treating { collect },
            SavedPhase::Waiting { until } => Phase::Waiting { until },
            SavedPhase::Queued(q) => Phase::Queued(Queued::resume(q)?),
            SavedPhase::Routing(q) => Phase::Routing(Queued::resume(q)?),
            SavedPhase::Sent => Phase::Sent,
        };
        Ok(Self {
            program,
            call: saved.call,
            pc: saved.pc,
            phase,
            out: VecDeque::new(),
        })
    }

    /// Where the call waits in a queue (or is routed to an agent its queue reserved), if it
    /// does.
    pub fn in_queue(&self) -> Option<InQueue> {
        let (q, routing) = match &self.phase {
            Phase::Queued(q) => (q, false),
            Phase::Routing(q) => (q, true),
            _ => return None,
        };
        Some(InQueue {
            queue: q.queue.clone(),
            target: q.target.clone(),
            priority: q.priority,
            since: q.since,
            routing,
        })
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When the session next needs [`Session::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.phase {
            Phase::Waiting { until } => Some(*until),
            Phase::Queued(q) => {
                let next = q.after.front().map(|(t, _)| *t);
                match (next, q.timeout_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            _ => None,
        }
    }

    /// Whether the session is over (routed or abandoned).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The call's attached data as the strategy left it.
    pub fn data(&self) -> &BTreeMap<String, String> {
        &self.call.data
    }

    /// The queue the call waits in, if any.
    pub fn queue(&self) -> Option<&str> {
        match &self.phase {
            Phase::Queued(q) | Phase::Routing(q) => Some(&q.queue),
            _ => None,
        }
    }

    pub fn handle(&mut self, event: Event, now: u64) {
        match (std::mem::replace(&mut self.phase, Phase::Running), event) {
            (Phase::Done, _) => self.phase = Phase::Done,
            (Phase::Queued(q) | Phase::Routing(q), Event::Abandoned) => {
                self.out.push_back(Action::Withdraw { queue: q.queue });
                self.phase = Phase::Done;
            }
            (_, Event::Abandoned | Event::Routed) => self.phase = Phase::Done,
            (Phase::Treating { collect }, Event::TreatmentEnded { digits }) => {
                if let (Some(key), Some(digits)) = (collect, digits) {
                    self.call.data.insert(key.clone(), digits.clone());
                    self.out.push_back(Action::SetData { key, value: digits });
                }
                self.run(now);
            }
            (Phase::Treating { .. }, Event::TreatmentFailed) => self.run(now),
            (Phase::Queued(q), Event::Matched { agent, dn }) => {
                self.out
                    .push_back(Action::Route(Route::Agent { agent, dn }));
                self.phase = Phase::Routing(q);
            }
            (Phase::Routing(q), Event::RouteFailed) => {
                // Back in the queue with its age.
                self.out.push_back(Action::Submit {
                    queue: q.queue.clone(),
                    target: q.target.clone(),
                    priority: q.priority,
                    since: q.since,
                });
                self.phase = Phase::Queued(q);
            }
            (phase, _) => self.phase = phase,
        }
    }

    pub fn handle_timeout(&mut self, now: u64) {
        match std::mem::replace(&mut self.phase, Phase::Running) {
            Phase::Waiting { until } if until <= now => self.run(now),
            Phase::Queued(mut q) => {
                while q.after.front().is_some_and(|(t, _)| *t <= now) {
                    let Some((_, change)) = q.after.pop_front() else {
                        break;
                    };
                    match &change {
                        Overflow::Priority(p) => q.priority = *p,
                        Overflow::Target(t) => q.target = t.clone(),
                    }
                    self.out.push_back(Action::Overflow {
                        queue: q.queue.clone(),
                        change,
                    });
                }
                if q.timeout_at.is_some_and(|t| t <= now) {
                    self.out.push_back(Action::Withdraw { queue: q.queue });
                    self.run(now);
                } else {
                    self.phase = Phase::Queued(q);
                }
            }
            phase => self.phase = phase,
        }
    }

    /// Runs statements until one waits or routes.
    fn run(&mut self, now: u64) {
        let program = self.program.clone();
        for _ in 0..MAX_STEPS {
            let Some(instr) = program.code.get(self.pc) else {
                self.route(Route::Default);
                return;
            };
            self.pc += 1;
            match instr {
                Instr::Treat(t) => {
                    self.out.push_back(Action::Treat(t.clone()));
                    if t.blocks() {
                        self.phase = Phase::Treating { collect: None };
                        return;
                    }
                }
                Instr::Collect { key, digits, uri } => {
                    self.out.push_back(Action::Collect {
                        digits: *digits,
                        uri: uri.clone(),
                    });
                    self.phase = Phase::Treating {
                        collect: Some(key.clone()),
                    };
                    return;
                }
                Instr::Set(key, value) => {
                    self.call.data.insert(key.clone(), value.clone());
                    self.out.push_back(Action::SetData {
                        key: key.clone(),
                        value: value.clone(),
                    });
                }
                Instr::Record => self.out.push_back(Action::Record),
                Instr::Monitor { dn, mode } => self.out.push_back(Action::Monitor {
                    dn: dn.clone(),
                    mode: mode.clone(),
                }),
                Instr::Unless(c, to) => {
                    if !program.holds(c, &self.call, now) {
                        self.pc = *to;
                    }
                }
                Instr::Jump(to) => self.pc = *to,
                Instr::Wait(ms) => {
                    self.phase = Phase::Waiting { until: now + ms };
                    return;
                }
                Instr::Queue(s) => {
                    self.out.push_back(Action::Submit {
                        queue: s.queue.clone(),
                        target: s.target.clone(),
                        priority: s.priority,
                        since: now,
                    });
                    self.phase = Phase::Queued(Box::new(Queued {
                        queue: s.queue.clone(),
                        since: now,
                        timeout_at: s.timeout_ms.map(|t| now + t),
                        after: s.after.iter().map(|(t, o)| (now + t, o.clone())).collect(),
                        target: s.target.clone(),
                        priority: s.priority,
                    }));
                    return;
                }
                Instr::Route(r) => {
                    self.route(r.clone());
                    return;
                }
            }
        }
        // A guard the compiler's loop check makes unreachable.
        self.route(Route::Default);
    }

    fn route(&mut self, route: Route) {
        self.out.push_back(Action::Route(route));
        self.phase = Phase::Sent;
    }
}
