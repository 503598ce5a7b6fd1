//! One agent's state as a sans-io machine: commands from the desktop, the calls of its DN and
//! its phone's registration go in with the time; the state changes to report come out, or
//! the reason a command is refused (the desktop's FAILED_PRECONDITION). The actor around it
//! keeps it in a store and writes the changes to the `voice-agentstate` stream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::messages::agent_state::{Command, Monitoring, Refusal, WorkMode};

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

/// A state asked for while the agent is on a call (Amazon Connect's "next status"), applied
/// when the call ends, or when its after-call work ends if the tenant says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextState {
    Logout,
    NotReady {
        reason: Option<String>,
        work_mode: WorkMode,
    },
}

impl NextState {
    pub fn name(&self) -> &'static str {
        match self {
            NextState::Logout => "Logout",
            NextState::NotReady { .. } => "NotReady",
        }
    }
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
    /// A next state was asked for, replaced, or cancelled (the agent's `next_state` says
    /// which, empty once cancelled).
    NextState,
    /// A supervisor monitors the agent's calls from now on, or no longer.
    Monitoring,
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
            Change::NextState => "AgentNextState",
            Change::Monitoring => "AgentMonitoring",
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
    /// What the agent asked to become once off its calls.
    pub next: Option<NextState>,
    /// Whether a next state waits for the end of after-call work (the tenant's choice;
    /// otherwise it is applied as the last call ends, and no after-call work follows).
    pub next_after_wrap_up: bool,
    /// The supervisor monitoring each call the agent takes, until stopped or logged out.
    pub monitored: Option<Monitoring>,
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
            next: None,
            next_after_wrap_up: true,
            monitored: None,
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
        let on_call = !self.calls.is_empty();
        let change = match command {
            Command::Login { .. } => unreachable!("handled above"),
            Command::Logout if on_call => return Ok(self.keep_next(NextState::Logout)),
            Command::NotReady { reason, work_mode } if on_call => {
                return Ok(self.keep_next(NextState::NotReady { reason, work_mode }));
            }
            Command::Logout => {
                self.next = None;
                self.logout()
            }
            Command::NotReady { reason, work_mode } => {
                self.next = None;
                self.not_ready(reason, work_mode)
            }
            Command::Ready => {
                if !self.in_service {
                    return Err(Refusal::OutOfService(dn));
                }
                let mut changes = Vec::with_capacity(2);
                if self.next.take().is_some() {
                    changes.push(Change::NextState);
                }
                self.mode = Mode::Ready;
                changes.push(Change::Ready);
                return Ok(changes);
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
            Command::Monitored(monitoring) => {
                if self.monitored == monitoring {
                    return Ok(Vec::new());
                }
                self.monitored = monitoring;
                Change::Monitoring
            }
        };
        Ok(vec![change])
    }

    /// Keeps `next` as the state to take once off the calls, in place of any kept before.
    fn keep_next(&mut self, next: NextState) -> Vec<Change> {
        if self.next.as_ref() == Some(&next) {
            return Vec::new();
        }
        self.next = Some(next);
        vec![Change::NextState]
    }

    /// Takes the next state kept, if any.
    fn apply_next(&mut self) -> Option<Change> {
        Some(match self.next.take()? {
            NextState::Logout => self.logout(),
            NextState::NotReady { reason, work_mode } => self.not_ready(reason, work_mode),
        })
    }

    fn logout(&mut self) -> Change {
        self.session = None;
        self.dnd = false;
        self.monitored = None;
        self.mode = Mode::NotReady {
            reason: None,
            work_mode: WorkMode::Unknown,
        };
        Change::Logout
    }

    fn not_ready(&mut self, reason: Option<String>, work_mode: WorkMode) -> Change {
        self.mode = Mode::NotReady {
            reason: reason.clone(),
            work_mode,
        };
        Change::NotReady { reason, work_mode }
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
    /// as Genesys reports emulated after-call work before the call's release. A next state
    /// kept is taken then, after the OnHook, unless it waits for the after-call work to end.
    pub fn call_ended(&mut self, call: &str, now: Instant) -> Vec<Change> {
        if !self.calls.remove(call) || !self.calls.is_empty() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        let wraps_up =
            self.session.is_some() && self.mode == Mode::Ready && !self.wrap_up.is_zero();
        if self.next.is_some() && !(wraps_up && self.next_after_wrap_up) {
            changes.push(Change::OnHook);
            changes.extend(self.apply_next());
            return changes;
        }
        if wraps_up {
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

    /// Timed wrap-up over: Ready again, or the next state kept.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Change> {
        match self.mode {
            Mode::AfterCallWork { until: Some(until) } if until <= now => {
                if let Some(next) = self.apply_next() {
                    return vec![next];
                }
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
        agent.command(Command::Dnd(true)).expect("dnd");
        assert_eq!(
            agent.registration(false).len(),
            1,
            "the phone went away: out of service"
        );
        assert_eq!(
            agent.command(Command::Ready),
            Err(Refusal::OutOfService("1001".into()))
        );
        assert!(agent.dnd, "a refused command changes nothing");
    }

    fn not_ready(reason: &str) -> Command {
        Command::NotReady {
            reason: Some(reason.into()),
            work_mode: WorkMode::AuxWork,
        }
    }

    #[test]
    fn a_logout_asked_during_a_call_waits_for_its_end() {
        let (mut agent, now) = logged_in(0);
        agent.command(Command::Ready).expect("ready");
        agent.call_began("c1");
        assert_eq!(
            names(&agent.command(Command::Logout).expect("kept")),
            ["AgentNextState"]
        );
        assert_eq!(agent.next, Some(NextState::Logout));
        assert!(agent.session.is_some(), "still logged in during the call");
        assert!(
            agent.command(Command::Logout).expect("same").is_empty(),
            "asked again: nothing new"
        );
        agent.call_began("c2");
        assert!(agent.call_ended("c1", now).is_empty(), "one call left");
        assert_eq!(
            names(&agent.call_ended("c2", now)),
            ["OnHook", "AgentLogout"]
        );
        assert_eq!(agent.session, None);
        assert_eq!(agent.next, None);
    }

    #[test]
    fn a_not_ready_asked_during_a_call_is_replaced_then_taken_after_wrap_up() {
        let (mut agent, now) = logged_in(30);
        agent.command(Command::Ready).expect("ready");
        agent.call_began("c1");
        assert_eq!(
            names(&agent.command(Command::Logout).expect("kept")),
            ["AgentNextState"]
        );
        assert_eq!(
            names(&agent.command(not_ready("lunch")).expect("replaces")),
            ["AgentNextState"]
        );
        assert_eq!(agent.mode, Mode::Ready, "not yet: the agent is on a call");
        assert_eq!(
            names(&agent.call_ended("c1", now)),
            ["AgentNotReady", "OnHook"],
            "after-call work first"
        );
        assert!(matches!(agent.mode, Mode::AfterCallWork { .. }));
        assert_eq!(
            names(&agent.handle_timeout(now + Duration::from_secs(30))),
            ["AgentNotReady"]
        );
        assert_eq!(
            agent.mode,
            Mode::NotReady {
                reason: Some("lunch".into()),
                work_mode: WorkMode::AuxWork
            }
        );
        assert!(!agent.available());
    }

    #[test]
    fn a_tenant_may_take_the_next_state_as_the_call_ends_without_wrap_up() {
        let (mut agent, now) = logged_in(30);
        agent.next_after_wrap_up = false;
        agent.command(Command::Ready).expect("ready");
        agent.call_began("c1");
        agent.command(not_ready("break")).expect("kept");
        assert_eq!(
            names(&agent.call_ended("c1", now)),
            ["OnHook", "AgentNotReady"]
        );
        assert_eq!(agent.poll_timeout(), None, "no after-call work");
    }

    #[test]
    fn a_supervisor_monitoring_the_agents_calls_is_kept_until_stopped_or_logout() {
        use crate::messages::agent_state::Monitoring;
        use crate::messages::sip_cluster::MonitorMode;
        let (mut agent, _) = logged_in(0);
        let by = Monitoring {
            supervisor: "1020".into(),
            mode: MonitorMode::Listen,
        };
        assert_eq!(
            names(
                &agent
                    .command(Command::Monitored(Some(by.clone())))
                    .expect("monitored")
            ),
            ["AgentMonitoring"]
        );
        assert!(
            agent
                .command(Command::Monitored(Some(by.clone())))
                .expect("again")
                .is_empty()
        );
        assert_eq!(agent.monitored, Some(by.clone()));
        agent.command(Command::Logout).expect("logout");
        assert_eq!(agent.monitored, None, "a logout ends it");
        assert_eq!(
            agent.command(Command::Monitored(Some(by))),
            Err(Refusal::NotLoggedIn)
        );
    }

    #[test]
    fn ready_cancels_a_next_state() {
        let (mut agent, now) = logged_in(0);
        agent.command(Command::Ready).expect("ready");
        agent.call_began("c1");
        agent.command(not_ready("break")).expect("kept");
        assert_eq!(
            names(&agent.command(Command::Ready).expect("cancels")),
            ["AgentNextState", "AgentReady"]
        );
        assert_eq!(agent.next, None);
        assert_eq!(names(&agent.call_ended("c1", now)), ["OnHook"]);
        assert!(agent.available(), "Ready after the call");
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
