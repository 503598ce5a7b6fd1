//! One agent's state as a sans-io machine: commands from the desktop, the calls of its DN and
//! its phone's registration go in with the time; the state changes to report come out, or
//! the reason a command is refused (the desktop's FAILED_PRECONDITION). The actor around it
//! keeps it in a store and writes the changes to the `voice-agentstate` stream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::messages::agent_state::{Command, Refusal, WorkMode};

/// Whether the agent takes calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Ready,
    NotReady {
        reason: Option<String>,
        work_mode: WorkMode,
    },
    /// Wrap-up after a call: back to Ready by itself at `until` when timed, or when the
    /// agent asks.
    AfterCallWork {
        until: Option<Instant>,
    },
}

/// A logged-in agent's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub dn: String,
    /// The queues (agent groups) the agent serves this session.
    pub queues: Vec<String>,
}

/// A change to report, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Login(Session),
    Logout,
    Ready,
    NotReady {
        reason: Option<String>,
        work_mode: WorkMode,
    },
    DndOn,
    DndOff,
    /// The DN's first call began, or its last ended.
    OffHook,
    OnHook,
    OutOfService,
    BackInService,
}

impl Change {
    /// The event name (design.md "Events").
    pub fn name(&self) -> &'static str {
        match self {
            Change::Login(_) => "AgentLogin",
            Change::Logout => "AgentLogout",
            Change::Ready => "AgentReady",
            Change::NotReady { .. } => "AgentNotReady",
            Change::DndOn => "DNDOn",
            Change::DndOff => "DNDOff",
            Change::OffHook => "OffHook",
            Change::OnHook => "OnHook",
            Change::OutOfService => "DNOutOfService",
            Change::BackInService => "DNBackInService",
        }
    }
}

/// One agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    /// Wrap-up after each call; zero for none.
    pub wrap_up: Duration,
    pub session: Option<Session>,
    pub mode: Mode,
    pub dnd: bool,
    /// Whether the DN's phone is registered.
    pub in_service: bool,
    /// The calls the agent's DN is on.
    pub calls: BTreeSet<String>,
}

impl Agent {
    pub fn new(id: impl Into<String>, wrap_up: Duration) -> Self {
        Self {
            id: id.into(),
            wrap_up,
            session: None,
            mode: Mode::NotReady {
                reason: None,
                work_mode: WorkMode::Unknown,
            },
            dnd: false,
            in_service: true,
            calls: BTreeSet::new(),
        }
    }

    /// Whether routing may offer the agent a call now.
    pub fn available(&self) -> bool {
        self.session.is_some()
            && self.mode == Mode::Ready
            && !self.dnd
            && self.in_service
            && self.calls.is_empty()
    }

    /// A desktop's command.
    pub fn command(&mut self, command: Command) -> Result<Vec<Change>, Refusal> {
        if let Command::Login { dn, queues } = command {
            if let Some(s) = &self.session {
                return Err(Refusal::AlreadyLoggedIn(s.dn.clone()));
            }
            let session = Session { dn, queues };
            self.session = Some(session.clone());
            self.mode = Mode::NotReady {
                reason: None,
                work_mode: WorkMode::Unknown,
            };
            return Ok(vec![Change::Login(session)]);
        }
        let Some(session) = &self.session else {
            return Err(Refusal::NotLoggedIn);
        };
        let dn = session.dn.clone();
        let change = match command {
            Command::Login { .. } => unreachable!("handled above"),
            Command::Logout => {
                if !self.calls.is_empty() {
                    return Err(Refusal::HasCalls);
                }
                self.session = None;
                self.dnd = false;
                self.mode = Mode::NotReady {
                    reason: None,
                    work_mode: WorkMode::Unknown,
                };
                Change::Logout
            }
            Command::Ready => {
                if !self.in_service {
                    return Err(Refusal::OutOfService(dn));
                }
                self.mode = Mode::Ready;
                Change::Ready
            }
            Command::NotReady { reason, work_mode } => {
                self.mode = Mode::NotReady {
                    reason: reason.clone(),
                    work_mode,
                };
                Change::NotReady { reason, work_mode }
            }
            Command::AfterCallWork => {
                self.mode = Mode::AfterCallWork { until: None };
                Change::NotReady {
                    reason: None,
                    work_mode: WorkMode::AfterCallWork,
                }
            }
            Command::Dnd(on) => {
                if self.dnd == on {
                    return Ok(Vec::new());
                }
                self.dnd = on;
                if on { Change::DndOn } else { Change::DndOff }
            }
        };
        Ok(vec![change])
    }

    /// The agent's DN joined a call (ringing or answered).
    pub fn call_began(&mut self, call: &str) -> Vec<Change> {
        let first = self.calls.is_empty();
        self.calls.insert(call.to_owned());
        if first {
            vec![Change::OffHook]
        } else {
            Vec::new()
        }
    }

    /// The agent's DN left a call. After the last one, a logged-in agent who was Ready goes
    /// to timed after-call work when the agent has a wrap-up time; the NotReady comes first,
    /// as Genesys reports emulated after-call work before the call's release.
    pub fn call_ended(&mut self, call: &str, now: Instant) -> Vec<Change> {
        if !self.calls.remove(call) || !self.calls.is_empty() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        if self.session.is_some() && self.mode == Mode::Ready && !self.wrap_up.is_zero() {
            self.mode = Mode::AfterCallWork {
                until: Some(now + self.wrap_up),
            };
            changes.push(Change::NotReady {
                reason: None,
                work_mode: WorkMode::AfterCallWork,
            });
        }
        changes.push(Change::OnHook);
        changes
    }

    /// The DN's phone registered or unregistered. A logged-in agent whose phone went away is
    /// reported out of service and no longer available, not silently kept Ready.
    pub fn registration(&mut self, present: bool) -> Vec<Change> {
        if self.in_service == present {
            return Vec::new();
        }
        self.in_service = present;
        if self.session.is_none() {
            return Vec::new();
        }
        vec![if present {
            Change::BackInService
        } else {
            Change::OutOfService
        }]
    }

    /// When [`Agent::handle_timeout`] is next due: the end of timed wrap-up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.mode {
            Mode::AfterCallWork { until } => until,
            _ => None,
        }
    }

    /// Timed wrap-up over: Ready again.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Change> {
        match self.mode {
            Mode::AfterCallWork { until: Some(until) } if until <= now => {
                self.mode = Mode::Ready;
                vec![Change::Ready]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(changes: &[Change]) -> Vec<&'static str> {
        changes.iter().map(Change::name).collect()
    }

    fn logged_in(wrap_up: u64) -> (Agent, Instant) {
        let now = Instant::now();
        let mut agent = Agent::new("a1001", Duration::from_secs(wrap_up));
        let login = Command::Login {
            dn: "1001".into(),
            queues: vec!["support".into()],
        };
        assert_eq!(names(&agent.command(login).expect("login")), ["AgentLogin"]);
        (agent, now)
    }

    #[test]
    fn a_call_ends_in_timed_wrap_up_reported_before_on_hook_then_ready_by_itself() {
        let (mut agent, now) = logged_in(30);
        agent.command(Command::Ready).expect("ready");
        assert!(agent.available());
        assert_eq!(names(&agent.call_began("c1")), ["OffHook"]);
        assert!(!agent.available(), "busy while on a call");
        assert!(agent.call_began("c2").is_empty(), "already off hook");
        assert!(agent.call_ended("c2", now).is_empty(), "one call left");
        assert_eq!(
            names(&agent.call_ended("c1", now)),
            ["AgentNotReady", "OnHook"]
        );
        assert_eq!(agent.poll_timeout(), Some(now + Duration::from_secs(30)));
        assert!(
            agent
                .handle_timeout(now + Duration::from_secs(29))
                .is_empty()
        );
        assert_eq!(
            names(&agent.handle_timeout(now + Duration::from_secs(30))),
            ["AgentReady"]
        );
        assert!(agent.available());
    }

    #[test]
    fn untimed_wrap_up_lasts_until_ready_and_no_wrap_up_time_means_none() {
        let (mut agent, now) = logged_in(0);
        agent.command(Command::Ready).expect("ready");
        agent.call_began("c1");
        assert_eq!(names(&agent.call_ended("c1", now)), ["OnHook"]);
        assert_eq!(agent.mode, Mode::Ready);
        agent.command(Command::AfterCallWork).expect("acw");
        assert_eq!(agent.poll_timeout(), None);
        assert!(!agent.available());
        agent.command(Command::Ready).expect("ready");
        assert!(agent.available());
    }

    #[test]
    fn commands_that_do_not_fit_the_state_are_refused_and_change_nothing() {
        let mut agent = Agent::new("a1001", Duration::ZERO);
        assert_eq!(agent.command(Command::Ready), Err(Refusal::NotLoggedIn));
        assert_eq!(agent.command(Command::Logout), Err(Refusal::NotLoggedIn));
        let (mut agent, _) = logged_in(0);
        let again = Command::Login {
            dn: "1002".into(),
            queues: Vec::new(),
        };
        assert_eq!(
            agent.command(again),
            Err(Refusal::AlreadyLoggedIn("1001".into()))
        );
        agent.call_began("c1");
        assert_eq!(agent.command(Command::Logout), Err(Refusal::HasCalls));
        assert!(agent.session.is_some());
        assert_eq!(agent.session.as_ref().map(|s| s.dn.as_str()), Some("1001"));
    }

    #[test]
    fn a_phone_that_unregisters_puts_the_agent_out_of_service_and_out_of_routing() {
        let (mut agent, _) = logged_in(0);
        agent.command(Command::Ready).expect("ready");
        assert_eq!(names(&agent.registration(false)), ["DNOutOfService"]);
        assert!(!agent.available());
        assert!(agent.registration(false).is_empty(), "said once");
        assert_eq!(
            agent
                .command(Command::NotReady {
                    reason: None,
                    work_mode: WorkMode::AuxWork
                })
                .map(|c| names(&c)),
            Ok(vec!["AgentNotReady"])
        );
        assert_eq!(
            agent.command(Command::Ready),
            Err(Refusal::OutOfService("1001".into()))
        );
        assert_eq!(names(&agent.registration(true)), ["DNBackInService"]);
        agent.command(Command::Ready).expect("ready");
        assert!(agent.available());
    }

    #[test]
    fn dnd_takes_the_agent_out_of_routing_and_is_said_once() {
        let (mut agent, _) = logged_in(0);
        agent.command(Command::Ready).expect("ready");
        assert_eq!(
            names(&agent.command(Command::Dnd(true)).expect("dnd")),
            ["DNDOn"]
        );
        assert!(agent.command(Command::Dnd(true)).expect("dnd").is_empty());
        assert!(!agent.available());
        assert_eq!(
            names(&agent.command(Command::Dnd(false)).expect("dnd")),
            ["DNDOff"]
        );
        assert!(agent.available());
    }
}
