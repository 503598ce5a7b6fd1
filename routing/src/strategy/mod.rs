//! Routing strategies: the document an analyst writes for a routing point, compiled to a
//! [`Program`], and the [`Session`] that runs one for one call as a sans-io state machine.
//!
//! A strategy is plain text, one statement per line, `#` to the end of a line a comment:
//!
//! ```text
//! hours office: mon-fri 08:00-18:00, sat 09:00-13:00 utc+01:00
//! calendar holidays: 2026-12-25, 2027-01-01
//!
//! if closed office or holiday holidays
//!   play announcement file:///prompts/closed.wav
//!   route default
//! end
//! if data vip is "yes"
//!   set segment "gold"
//! end
//! play music file:///music/hold.wav
//! queue support target "english >= 3" priority 5 timeout 300s
//!   after 30s target "group:support"
//!   after 60s priority 10
//! route default
//! ```
//!
//! Statements:
//!
//! - `hours NAME: DAYS HH:MM-HH:MM, ... [utc±HH:MM]` and `calendar NAME: YYYY-MM-DD, ...
//!   [utc±HH:MM]` name opening hours and dates (holidays) that conditions refer to, in a
//!   fixed offset from UTC (UTC when none is given).
//! - `play music|announcement|busy URI`, `play ringback`, `play silence`: a treatment while
//!   the call waits. An announcement is played to its end before the strategy goes on; the
//!   others carry on until the next treatment or the end of the wait.
//! - `collect N digits into KEY from URI`: a VoiceXML dialog that collects digits, stored in
//!   the call's attached data under KEY.
//! - `set KEY "VALUE"`: attaches data to the call.
//! - `record`: the call is recorded from its answer (on a media server controlled by MSML).
//! - `monitor by DN in listen|whisper|barge`: the supervisor at DN monitors the call from its
//!   answer.
//! - `if CONDITION` ... [`else` ...] `end`. Conditions: `open HOURS`, `closed HOURS`,
//!   `holiday CALENDAR`, `caller is|starts "TEXT"`, `dialed is|starts "TEXT"`,
//!   `data KEY is "VALUE"`, `data KEY set`, `not CONDITION`, combined with `and` (first)
//!   and `or`.
//! - `queue QUEUE target "EXPRESSION" [priority N] [timeout DURATION]`, followed by any
//!   number of `after DURATION priority N` and `after DURATION target "EXPRESSION"` lines
//!   (overflow): waits for an agent of the target; the call is routed to the first one
//!   reserved. At the timeout the strategy goes on with the next statement.
//! - `wait DURATION`: waits (durations are `30s`, `5m`, `1h`).
//! - `route dn NUMBER`, `route number NUMBER` (through the dial plan), `route reject
//!   STATUS`, `route default` (the routing point's default destination).
//! - `label NAME` and `goto NAME`.
//!
//! Running off the end is `route default`. A strategy whose `goto`s can go round without
//! passing a statement that waits (`queue`, `wait`, an announcement, `collect`) is refused
//! when compiled, and so is one that names queues, skills, groups, agents or DNs the tenant
//! does not have ([`Program::check`]).

mod calendar;
mod parse;
mod session;

pub use session::{Action, CallInfo, Event, InQueue, ResumeError, Saved, Session};

use std::collections::{BTreeSet, HashMap};

use crate::target::Target;
use calendar::{Calendar, Hours, local_day};
use parse::Compiler;

/// Why a strategy document is refused: the line (1-based, 0 for the whole document) and
/// the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct StrategyError {
    pub line: usize,
    pub problem: String,
}

fn refuse<T>(line: usize, problem: impl Into<String>) -> Result<T, StrategyError> {
    Err(StrategyError {
        line,
        problem: problem.into(),
    })
}

/// What a caller hears while waiting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Treatment {
    /// Music on a media server, until the next treatment.
    Music(String),
    /// An announcement on a media server, played once to its end.
    Announcement(String),
    /// Busy tone from a media server.
    Busy(String),
    /// Ringback, sent by the core itself (a 180 to the caller).
    Ringback,
    /// Nothing.
    Silence,
    /// A VoiceXML dialog on a media server collecting up to `digits` digits.
    Collect { digits: u32, uri: String },
}

impl Treatment {
    /// Whether the strategy waits for the treatment to end before going on.
    pub fn blocks(&self) -> bool {
        matches!(self, Treatment::Announcement(_) | Treatment::Collect { .. })
    }

    /// The name events give the treatment.
    pub fn kind(&self) -> &'static str {
        match self {
            Treatment::Music(_) => "music",
            Treatment::Announcement(_) => "announcement",
            Treatment::Busy(_) => "busy",
            Treatment::Ringback => "ringback",
            Treatment::Silence => "silence",
            Treatment::Collect { .. } => "collect-digits",
        }
    }
}

/// Where a strategy sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One of the tenant's DNs.
    Dn(String),
    /// A number, through the dial plan.
    Number(String),
    Reject(u16),
    /// The routing point's default destination.
    Default,
    /// The agent a queue reserved, at its DN.
    Agent {
        agent: String,
        dn: String,
    },
}

/// A change to a call waiting in a queue, as time passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overflow {
    Priority(u32),
    Target(Target),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Open(String),
    Holiday(String),
    Caller { prefix: bool, text: String },
    Dialed { prefix: bool, text: String },
    Data { key: String, value: Option<String> },
    Not(Box<Condition>),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Submit {
    queue: String,
    target: Target,
    priority: u32,
    timeout_ms: Option<u64>,
    /// Ordered by time since submission.
    after: Vec<(u64, Overflow)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Instr {
    Treat(Treatment),
    Collect {
        key: String,
        digits: u32,
        uri: String,
    },
    Set(String, String),
    /// Record the call from its answer.
    Record,
    /// A supervisor at a DN monitors the call from its answer, in a mode (listen, whisper,
    /// barge).
    Monitor {
        dn: String,
        mode: String,
    },
    /// Goes to the target unless the condition holds.
    Unless(Condition, usize),
    Jump(usize),
    Queue(Box<Submit>),
    Wait(u64),
    Route(Route),
}

impl Instr {
    /// Whether the statement takes time, so that a loop through it is not a busy loop.
    fn waits(&self) -> bool {
        match self {
            Instr::Treat(t) => t.blocks(),
            Instr::Collect { .. } | Instr::Queue(_) | Instr::Wait(_) => true,
            _ => false,
        }
    }
}

/// A compiled strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    code: Vec<Instr>,
    /// Line of each instruction, for logs.
    lines: Vec<usize>,
    hours: HashMap<String, Hours>,
    /// Days since 1970-01-01.
    calendars: HashMap<String, Calendar>,
}

/// The names a strategy refers to, which the tenant must have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub queues: Vec<(usize, String)>,
    pub skills: Vec<(usize, String)>,
    pub groups: Vec<(usize, String)>,
    pub agents: Vec<(usize, String)>,
    pub dns: Vec<(usize, String)>,
}

/// What the tenant has, for [`Program::check`].
pub trait Known {
    fn queue(&self, name: &str) -> bool;
    fn skill(&self, name: &str) -> bool;
    fn group(&self, name: &str) -> bool;
    fn agent(&self, id: &str) -> bool;
    fn dn(&self, number: &str) -> bool;
}

/// The first skill, agent group or agent of `target` the tenant does not have, said as a
/// refusal (`unknown skill "x"`).
pub fn unknown_name(target: &Target, known: &dyn Known) -> Option<String> {
    let names = target.names();
    let find = |list: BTreeSet<String>, what: &str, has: &dyn Fn(&str) -> bool| {
        list.into_iter()
            .find(|n| !has(n))
            .map(|n| format!("unknown {what} {n:?}"))
    };
    find(names.skills, "skill", &|n| known.skill(n))
        .or_else(|| find(names.groups, "agent group", &|n| known.group(n)))
        .or_else(|| find(names.agents, "agent", &|n| known.agent(n)))
}

impl Program {
    /// Compiles a strategy document.
    pub fn compile(text: &str) -> Result<Self, StrategyError> {
        Compiler::default().run(text)
    }

    /// Refuses names the tenant does not have.
    pub fn check(&self, known: &dyn Known) -> Result<(), StrategyError> {
        let names = self.names();
        let unknown = |list: &[(usize, String)], what: &str, has: &dyn Fn(&str) -> bool| match list
            .iter()
            .find(|(_, n)| !has(n))
        {
            Some((line, n)) => refuse(*line, format!("unknown {what} {n:?}")),
            None => Ok(()),
        };
        unknown(&names.queues, "queue", &|n| known.queue(n))?;
        unknown(&names.skills, "skill", &|n| known.skill(n))?;
        unknown(&names.groups, "agent group", &|n| known.group(n))?;
        unknown(&names.agents, "agent", &|n| known.agent(n))?;
        unknown(&names.dns, "DN", &|n| known.dn(n))
    }

    /// The queues, skills, groups, agents and DNs the strategy names, with their lines.
    pub fn names(&self) -> Names {
        let mut names = Names::default();
        let target = |line: usize, t: &Target, names: &mut Names| {
            let n = t.names();
            names.skills.extend(n.skills.into_iter().map(|s| (line, s)));
            names.groups.extend(n.groups.into_iter().map(|s| (line, s)));
            names.agents.extend(n.agents.into_iter().map(|s| (line, s)));
        };
        for (instr, &line) in self.code.iter().zip(&self.lines) {
            match instr {
                Instr::Queue(s) => {
                    names.queues.push((line, s.queue.clone()));
                    target(line, &s.target, &mut names);
                    for (_, o) in &s.after {
                        if let Overflow::Target(t) = o {
                            target(line, t, &mut names);
                        }
                    }
                }
                Instr::Route(Route::Dn(dn)) | Instr::Monitor { dn, .. } => {
                    names.dns.push((line, dn.clone()))
                }
                _ => {}
            }
        }
        names
    }

    /// Each queue statement's targets (its first, then its overflows'), with its line and
    /// queue.
    pub fn targets(&self) -> Vec<(usize, &str, Vec<&Target>)> {
        self.code
            .iter()
            .zip(&self.lines)
            .filter_map(|(instr, &line)| match instr {
                Instr::Queue(s) => {
                    let mut targets = vec![&s.target];
                    targets.extend(s.after.iter().filter_map(|(_, o)| match o {
                        Overflow::Target(t) => Some(t),
                        Overflow::Priority(_) => None,
                    }));
                    Some((line, s.queue.as_str(), targets))
                }
                _ => None,
            })
            .collect()
    }

    fn holds(&self, c: &Condition, call: &CallInfo, now: u64) -> bool {
        match c {
            Condition::Open(h) => self.hours.get(h).is_some_and(|h| h.open(now)),
            Condition::Holiday(cal) => self
                .calendars
                .get(cal)
                .is_some_and(|c| c.days.contains(&local_day(now, c.offset_min))),
            Condition::Caller { prefix, text } => compare(&call.caller, *prefix, text),
            Condition::Dialed { prefix, text } => compare(&call.dialed, *prefix, text),
            Condition::Data { key, value } => match (call.data.get(key), value) {
                (Some(v), Some(want)) => v == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
            Condition::Not(c) => !self.holds(c, call, now),
            Condition::And(cs) => cs.iter().all(|c| self.holds(c, call, now)),
            Condition::Or(cs) => cs.iter().any(|c| self.holds(c, call, now)),
        }
    }
}

fn compare(value: &str, prefix: bool, text: &str) -> bool {
    if prefix {
        value.starts_with(text)
    } else {
        value == text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::calendar::{days_from_civil, parse_hours};
    use super::*;

    const DEMO: &str = r#"
        # The demo tenant's support line.
        hours always: mon-sun 00:00-24:00
        hours office: mon-fri 08:00-18:00 utc+01:00
        calendar holidays: 2026-12-25
        if closed always or holiday holidays
          play announcement file:///prompts/closed.wav
          route default
        end
        play music file:///music/hold.wav   # until an agent is found
        queue support target "english >= 3" priority 5 timeout 300s
          after 30s target "group:support"
        route default
    "#;

    /// 2026-11-23 10:00 UTC, a Monday.
    const MONDAY_10: u64 = 1_795_428_000_000;

    fn start(text: &str, now: u64) -> (Session, Vec<Action>) {
        let p = Arc::new(Program::compile(text).expect("valid"));
        let mut s = Session::new(p, CallInfo::default(), now);
        let actions = drain(&mut s);
        (s, actions)
    }

    fn drain(s: &mut Session) -> Vec<Action> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    /// A session saved at each point it rests and resumed from JSON (as another node does
    /// after a takeover) goes on exactly as the one that never stopped.
    #[test]
    fn a_saved_session_resumes_where_it_was() {
        let program = Arc::new(Program::compile(DEMO).expect("valid"));
        let moved = |s: &Session| {
            let saved = s.save().expect("at rest");
            let json = serde_json::to_string(&saved).expect("json");
            let back: Saved = serde_json::from_str(&json).expect("json back");
            assert_eq!(back, saved);
            Session::resume(program.clone(), back).expect("resumes")
        };
        let (mut s, _) = start(DEMO, MONDAY_10);
        let mut r = moved(&s);
        assert_eq!(
            r.in_queue(),
            Some(InQueue {
                queue: "support".into(),
                target: Target::parse("english >= 3").expect("valid"),
                priority: 5,
                since: MONDAY_10,
                routing: false,
            })
        );
        assert_eq!(r.poll_timeout(), s.poll_timeout());
        // Matched, then the agent did not answer: both go back to the queue with its age.
        for session in [&mut s, &mut r] {
            session.handle(
                Event::Matched {
                    agent: "a1001".into(),
                    dn: "1001".into(),
                },
                MONDAY_10 + 1_000,
            );
        }
        assert_eq!(drain(&mut s), drain(&mut r));
        let mut r = moved(&r);
        assert!(r.in_queue().expect("routing").routing);
        for session in [&mut s, &mut r] {
            session.handle(Event::RouteFailed, MONDAY_10 + 2_000);
        }
        assert_eq!(drain(&mut s), drain(&mut r));
        // The overflow step and the timeout come at the same times.
        let mut r = moved(&r);
        for at in [MONDAY_10 + 30_000, MONDAY_10 + 300_000] {
            s.handle_timeout(at);
            r.handle_timeout(at);
            assert_eq!(drain(&mut s), drain(&mut r));
        }
        // Both sent to the default destination, awaiting the outcome.
        assert_eq!(s.save(), r.save());
        assert_eq!(r.in_queue(), None);
        let mut past = start(DEMO, MONDAY_10).0.save().expect("at rest");
        past.pc = 99;
        assert_eq!(
            Session::resume(program, past).err(),
            Some(ResumeError::PastTheEnd(99))
        );
    }

    #[test]
    fn the_calendar_arithmetic_is_right() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2026, 11, 23),
            (MONDAY_10 / 86_400_000) as i64
        );
        let office = parse_hours(1, "mon-fri 08:00-18:00 utc+01:00").expect("valid");
        assert!(office.open(MONDAY_10));
        // Saturday 10:00.
        assert!(!office.open(MONDAY_10 + 5 * 86_400_000));
        // Monday 07:30 local is 06:30 UTC.
        assert!(!office.open(MONDAY_10 - 3 * 3_600_000 - 1_800_000));
        let weekend = parse_hours(1, "sat-sun 00:00-24:00").expect("valid");
        assert!(weekend.open(MONDAY_10 - 3_600_000 * 11));
    }

    #[test]
    fn an_open_call_gets_music_then_the_queue_then_overflows_then_times_out_to_default() {
        let (mut s, actions) = start(DEMO, MONDAY_10);
        let target = Target::parse("english >= 3").expect("valid");
        assert_eq!(
            actions,
            [
                Action::Treat(Treatment::Music("file:///music/hold.wav".into())),
                Action::Submit {
                    queue: "support".into(),
                    target,
                    priority: 5,
                    since: MONDAY_10
                },
            ]
        );
        assert_eq!(s.poll_timeout(), Some(MONDAY_10 + 30_000));
        s.handle_timeout(MONDAY_10 + 30_000);
        assert_eq!(
            drain(&mut s),
            [Action::Overflow {
                queue: "support".into(),
                change: Overflow::Target(Target::parse("group:support").expect("valid"))
            }]
        );
        assert_eq!(s.poll_timeout(), Some(MONDAY_10 + 300_000));
        s.handle_timeout(MONDAY_10 + 300_000);
        assert_eq!(
            drain(&mut s),
            [
                Action::Withdraw {
                    queue: "support".into()
                },
                Action::Route(Route::Default)
            ]
        );
    }

    #[test]
    fn a_closed_branch_plays_its_announcement_then_routes_default() {
        let text = DEMO.replace("closed always", "closed office");
        // Saturday.
        let (mut s, actions) = start(&text, MONDAY_10 + 5 * 86_400_000);
        assert_eq!(
            actions,
            [Action::Treat(Treatment::Announcement(
                "file:///prompts/closed.wav".into()
            ))]
        );
        s.handle(Event::TreatmentEnded { digits: None }, MONDAY_10);
        assert_eq!(drain(&mut s), [Action::Route(Route::Default)]);
        // A holiday closes even within the hours: Christmas 2026 is a Friday.
        let christmas = (days_from_civil(2026, 12, 25) as u64) * 86_400_000 + 10 * 3_600_000;
        let (_, actions) = start(&text, christmas);
        assert!(matches!(
            actions[0],
            Action::Treat(Treatment::Announcement(_))
        ));
        // Open on Monday.
        let (_, actions) = start(&text, MONDAY_10);
        assert!(matches!(actions[0], Action::Treat(Treatment::Music(_))));
        // A calendar's dates are in its own offset: 11:00 UTC on 30 December is already
        // the 31st at UTC+14.
        let eve = "calendar eve: 2026-12-31 utc+14:00\nif holiday eve\n  route reject 486\nend\n";
        let morning = (days_from_civil(2026, 12, 30) as u64) * 86_400_000 + 11 * 3_600_000;
        assert_eq!(start(eve, morning).1, [Action::Route(Route::Reject(486))]);
        assert_eq!(
            start(eve, morning - 2 * 3_600_000).1,
            [Action::Route(Route::Default)]
        );
    }

    #[test]
    fn a_reserved_agent_that_does_not_answer_puts_the_call_back_with_its_age() {
        let (mut s, _) = start(DEMO, MONDAY_10);
        s.handle(
            Event::Matched {
                agent: "a1001".into(),
                dn: "1001".into(),
            },
            MONDAY_10 + 5_000,
        );
        assert_eq!(
            drain(&mut s),
            [Action::Route(Route::Agent {
                agent: "a1001".into(),
                dn: "1001".into()
            })]
        );
        s.handle(Event::RouteFailed, MONDAY_10 + 20_000);
        assert!(matches!(
            &drain(&mut s)[..],
            [Action::Submit { since, .. }] if *since == MONDAY_10
        ));
        s.handle(Event::Abandoned, MONDAY_10 + 25_000);
        assert_eq!(
            drain(&mut s),
            [Action::Withdraw {
                queue: "support".into()
            }]
        );
        assert!(s.is_done());
    }

    #[test]
    fn record_and_monitor_are_said_to_the_call_as_the_strategy_passes_them() {
        let text = "if data vip set\n  record\n  monitor by 1001 in whisper\nend\nroute dn 1001\n";
        let p = Arc::new(Program::compile(text).expect("valid"));
        let vip = CallInfo {
            data: [("vip".to_owned(), "yes".to_owned())].into(),
            ..CallInfo::default()
        };
        let mut s = Session::new(p.clone(), vip, 0);
        assert_eq!(
            drain(&mut s),
            [
                Action::Record,
                Action::Monitor {
                    dn: "1001".into(),
                    mode: "whisper".into()
                },
                Action::Route(Route::Dn("1001".into()))
            ]
        );
        let mut s = Session::new(p, CallInfo::default(), 0);
        assert_eq!(drain(&mut s), [Action::Route(Route::Dn("1001".into()))]);
    }

    #[test]
    fn conditions_on_the_call_and_collected_digits_steer_it() {
        let text = r#"
            if caller starts "+44" and not data vip set
              set region "uk"
            else
              set region "other"
            end
            collect 1 digit into menu from file:///vxml/menu.vxml
            if data menu is "2"
              route dn 1002
            end
            route number +18005550199
        "#;
        let p = Arc::new(Program::compile(text).expect("valid"));
        let call = CallInfo {
            caller: "+442071234567".into(),
            ..CallInfo::default()
        };
        let mut s = Session::new(p.clone(), call, 0);
        assert_eq!(
            drain(&mut s),
            [
                Action::SetData {
                    key: "region".into(),
                    value: "uk".into()
                },
                Action::Collect {
                    digits: 1,
                    uri: "file:///vxml/menu.vxml".into()
                }
            ]
        );
        s.handle(
            Event::TreatmentEnded {
                digits: Some("2".into()),
            },
            1,
        );
        assert_eq!(
            drain(&mut s),
            [
                Action::SetData {
                    key: "menu".into(),
                    value: "2".into()
                },
                Action::Route(Route::Dn("1002".into()))
            ]
        );
        let mut s = Session::new(p, CallInfo::default(), 0);
        assert_eq!(
            drain(&mut s)[0].clone(),
            Action::SetData {
                key: "region".into(),
                value: "other".into()
            }
        );
        s.handle(Event::TreatmentFailed, 1);
        assert_eq!(
            drain(&mut s),
            [Action::Route(Route::Number("+18005550199".into()))]
        );
    }

    #[test]
    fn loops_that_do_not_wait_are_refused_and_loops_that_wait_are_not() {
        let busy = "label top\nset a \"b\"\ngoto top\n";
        let e = Program::compile(busy).expect_err("refused");
        assert!(e.problem.contains("loops"), "{e}");
        let busy_if = "label top\nif caller is \"1\"\n  goto top\nend\nroute default\n";
        assert!(Program::compile(busy_if).is_err());
        let patient = "label top\nqueue support target \"english > 0\" timeout 60s\nplay announcement file:///still.wav\ngoto top\n";
        Program::compile(patient).expect("valid");
    }

    #[test]
    fn bad_documents_are_refused_with_their_line() {
        for (text, line, part) in [
            ("play jazz x", 1, "unknown treatment"),
            ("\nqueue support priority 5", 2, "needs a target"),
            (
                "queue support target \"english >>\"",
                1,
                "target expression",
            ),
            ("if open\nroute default\nend", 1, "ends too soon"),
            ("if caller is \"1\"\nroute default", 1, "without `end`"),
            ("after 30s priority 3", 1, "right after a `queue`"),
            ("hours x: mon-fri 18:00-08:00", 1, "end before"),
            ("calendar c: 2026-02-30", 1, "not a date"),
            ("goto nowhere", 1, "no label"),
            ("route dn alice", 1, "expected `route"),
            ("wait 30 parsecs", 1, "not a duration"),
            ("dance", 1, "unknown statement"),
            ("record everything", 1, "takes nothing"),
            ("monitor 1001 listen", 1, "expected `monitor by DN in"),
            ("monitor by 1001 in spy", 1, "listen, whisper or barge"),
            (
                "if open office\nroute default\nend",
                1,
                "no hours \"office\"",
            ),
        ] {
            let e = Program::compile(text).expect_err("refused");
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.problem.contains(part), "{text}: {e}");
        }
    }

    struct Tenant;

    impl Known for Tenant {
        fn queue(&self, name: &str) -> bool {
            name == "support"
        }
        fn skill(&self, name: &str) -> bool {
            name == "english"
        }
        fn group(&self, name: &str) -> bool {
            name == "support"
        }
        fn agent(&self, _: &str) -> bool {
            false
        }
        fn dn(&self, number: &str) -> bool {
            number == "1001"
        }
    }

    #[test]
    fn a_target_names_only_what_the_tenant_has() {
        let unknown = |t: &str| unknown_name(&Target::parse(t).expect("target"), &Tenant);
        assert_eq!(unknown("english >= 3 | group:support"), None);
        assert_eq!(
            unknown("english >= 3 & french > 1"),
            Some("unknown skill \"french\"".into())
        );
        assert_eq!(
            unknown("group:vip"),
            Some("unknown agent group \"vip\"".into())
        );
        assert_eq!(unknown("agent:a9"), Some("unknown agent \"a9\"".into()));
    }

    #[test]
    fn names_the_tenant_lacks_are_refused() {
        Program::compile(DEMO)
            .expect("valid")
            .check(&Tenant)
            .expect("valid");
        for (text, part) in [
            (
                "queue sales target \"english > 1\"",
                "unknown queue \"sales\"",
            ),
            (
                "queue support target \"french > 1\"",
                "unknown skill \"french\"",
            ),
            (
                "queue support target \"english > 1\"\nafter 5s target \"group:vip\"",
                "unknown agent group \"vip\"",
            ),
            ("route dn 1002", "unknown DN \"1002\""),
            ("monitor by 1002 in listen", "unknown DN \"1002\""),
        ] {
            let e = Program::compile(text)
                .expect("valid")
                .check(&Tenant)
                .expect_err("refused");
            assert!(e.problem.contains(part), "{text}: {e}");
        }
    }
}
