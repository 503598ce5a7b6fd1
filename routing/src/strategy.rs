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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::target::Target;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Weekly opening hours in a fixed offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hours {
    /// Per weekday (0 is Monday), minute ranges [from, to).
    days: [Vec<(u32, u32)>; 7],
    offset_min: i64,
}

/// Dates (days since 1970-01-01) in a fixed offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Calendar {
    days: Vec<i64>,
    offset_min: i64,
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
                Instr::Route(Route::Dn(dn)) => names.dns.push((line, dn.clone())),
                _ => {}
            }
        }
        names
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

const MINUTE_MS: i64 = 60_000;
const DAY_MIN: i64 = 24 * 60;

/// The day number (since 1970-01-01) at `now` (unix ms) in an offset from UTC.
fn local_day(now: u64, offset_min: i64) -> i64 {
    (now as i64 / MINUTE_MS + offset_min).div_euclid(DAY_MIN)
}

impl Hours {
    fn open(&self, now: u64) -> bool {
        let minutes = now as i64 / MINUTE_MS + self.offset_min;
        let day = minutes.div_euclid(DAY_MIN);
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        let weekday = (day + 3).rem_euclid(7) as usize;
        let minute = minutes.rem_euclid(DAY_MIN) as u32;
        self.days[weekday]
            .iter()
            .any(|&(from, to)| from <= minute && minute < to)
    }
}

/// The day number of a civil date (proleptic Gregorian), after H. Hinnant's algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ----- compiling -----

#[derive(Default)]
struct Compiler {
    code: Vec<Instr>,
    lines: Vec<usize>,
    hours: HashMap<String, Hours>,
    calendars: HashMap<String, Calendar>,
    /// Open `if`s: the index of their test, and of the jump over `else` once seen.
    open: Vec<(usize, Option<usize>, usize)>,
    labels: HashMap<String, usize>,
    gotos: Vec<(usize, String, usize)>,
}

/// The most statements a strategy may hold: a bound on work when it is checked and run.
const MAX_STATEMENTS: usize = 2_000;

impl Compiler {
    fn run(mut self, text: &str) -> Result<Program, StrategyError> {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let text = strip_comment(raw).trim();
            if text.is_empty() {
                continue;
            }
            if self.code.len() >= MAX_STATEMENTS {
                return refuse(line, format!("more than {MAX_STATEMENTS} statements"));
            }
            self.statement(line, text)?;
        }
        if let Some(&(_, _, line)) = self.open.last() {
            return refuse(line, "`if` without `end`");
        }
        for (at, label, line) in std::mem::take(&mut self.gotos) {
            let Some(&to) = self.labels.get(&label) else {
                return refuse(line, format!("no label {label:?}"));
            };
            self.code[at] = Instr::Jump(to);
        }
        for (instr, &line) in self.code.iter().zip(&self.lines) {
            if let Instr::Unless(c, _) = instr {
                self.defined(c, line)?;
            }
        }
        let program = Program {
            code: self.code,
            lines: self.lines,
            hours: self.hours,
            calendars: self.calendars,
        };
        busy_loop(&program)?;
        Ok(program)
    }

    /// Refuses hours and calendars a condition names but the document does not define.
    fn defined(&self, c: &Condition, line: usize) -> Result<(), StrategyError> {
        match c {
            Condition::Open(h) if !self.hours.contains_key(h) => refuse(
                line,
                format!("no hours {h:?} (define them with `hours {h}: ...`)"),
            ),
            Condition::Holiday(cal) if !self.calendars.contains_key(cal) => refuse(
                line,
                format!("no calendar {cal:?} (define it with `calendar {cal}: ...`)"),
            ),
            Condition::Not(c) => self.defined(c, line),
            Condition::And(cs) | Condition::Or(cs) => {
                cs.iter().try_for_each(|c| self.defined(c, line))
            }
            _ => Ok(()),
        }
    }

    fn push(&mut self, line: usize, instr: Instr) {
        self.code.push(instr);
        self.lines.push(line);
    }

    fn statement(&mut self, line: usize, text: &str) -> Result<(), StrategyError> {
        let (word, rest) = split_word(text);
        match word {
            "hours" => {
                let (name, spec) = definition(line, rest)?;
                let hours = parse_hours(line, spec)?;
                if self.hours.insert(name.to_owned(), hours).is_some() {
                    return refuse(line, format!("hours {name:?} defined twice"));
                }
            }
            "calendar" => {
                let (name, spec) = definition(line, rest)?;
                let (spec, offset_min) = with_offset(line, spec)?;
                let days = spec
                    .split(',')
                    .map(|d| parse_date(line, d.trim()))
                    .collect::<Result<Vec<_>, _>>()?;
                let calendar = Calendar { days, offset_min };
                if self.calendars.insert(name.to_owned(), calendar).is_some() {
                    return refuse(line, format!("calendar {name:?} defined twice"));
                }
            }
            "play" => {
                let (kind, uri) = split_word(rest);
                let uri = uri.trim();
                let needs_uri = |t: fn(String) -> Treatment| {
                    if uri.is_empty() || uri.contains(char::is_whitespace) {
                        refuse(line, format!("`play {kind}` takes one media URI"))
                    } else {
                        Ok(t(uri.to_owned()))
                    }
                };
                let treatment = match kind {
                    "music" => needs_uri(Treatment::Music)?,
                    "announcement" => needs_uri(Treatment::Announcement)?,
                    "busy" => needs_uri(Treatment::Busy)?,
                    "ringback" | "silence" if !uri.is_empty() => {
                        return refuse(line, format!("`play {kind}` takes nothing more"));
                    }
                    "ringback" => Treatment::Ringback,
                    "silence" => Treatment::Silence,
                    _ => {
                        return refuse(
                            line,
                            format!(
                                "unknown treatment {kind:?} (music, announcement, busy, ringback, silence)"
                            ),
                        );
                    }
                };
                self.push(line, Instr::Treat(treatment));
            }
            "collect" => {
                // collect N digits into KEY from URI
                let words: Vec<&str> = rest.split_whitespace().collect();
                let [n, "digits" | "digit", "into", key, "from", uri] = words[..] else {
                    return refuse(line, "expected `collect N digits into KEY from URI`");
                };
                let digits = match n.parse::<u32>() {
                    Ok(d @ 1..=64) => d,
                    _ => return refuse(line, format!("{n:?}: from 1 to 64 digits")),
                };
                self.push(
                    line,
                    Instr::Collect {
                        key: key.to_owned(),
                        digits,
                        uri: uri.to_owned(),
                    },
                );
            }
            "set" => {
                let (key, value) = split_word(rest);
                let value = quoted(line, value.trim())?;
                if key.is_empty() {
                    return refuse(line, "expected `set KEY \"VALUE\"`");
                }
                self.push(line, Instr::Set(key.to_owned(), value));
            }
            "if" => {
                let condition = Cond { line, text: rest }.parse()?;
                self.open.push((self.code.len(), None, line));
                self.push(line, Instr::Unless(condition, usize::MAX));
            }
            "else" => {
                let Some(top) = self.open.last_mut() else {
                    return refuse(line, "`else` without `if`");
                };
                if top.1.is_some() || !rest.is_empty() {
                    return refuse(line, "one plain `else` per `if`");
                }
                let test = top.0;
                top.1 = Some(self.code.len());
                self.push(line, Instr::Jump(usize::MAX));
                let here = self.code.len();
                if let Instr::Unless(_, to) = &mut self.code[test] {
                    *to = here;
                }
            }
            "end" => {
                let Some((test, jump, _)) = self.open.pop() else {
                    return refuse(line, "`end` without `if`");
                };
                let here = self.code.len();
                match jump {
                    Some(j) => self.code[j] = Instr::Jump(here),
                    None => {
                        if let Instr::Unless(_, to) = &mut self.code[test] {
                            *to = here;
                        }
                    }
                }
            }
            "queue" => {
                let submit = parse_queue(line, rest)?;
                self.push(line, Instr::Queue(Box::new(submit)));
            }
            "after" => {
                let Some(Instr::Queue(submit)) = self.code.last_mut() else {
                    return refuse(line, "`after` belongs right after a `queue` line");
                };
                let (time, change) = split_word(rest);
                let ms = duration(line, time)?;
                let (what, value) = split_word(change);
                let overflow = match what {
                    "priority" => Overflow::Priority(number(line, value.trim())?),
                    "target" => Overflow::Target(target(line, value.trim())?),
                    _ => {
                        return refuse(
                            line,
                            "expected `after DURATION priority N|target \"EXPR\"`",
                        );
                    }
                };
                if submit.after.last().is_some_and(|(t, _)| *t > ms) {
                    return refuse(line, "`after` lines go in order of time");
                }
                submit.after.push((ms, overflow));
            }
            "wait" => {
                let ms = duration(line, rest.trim())?;
                self.push(line, Instr::Wait(ms));
            }
            "route" => {
                let (kind, value) = split_word(rest);
                let value = value.trim();
                let route = match (kind, value) {
                    ("default", "") => Route::Default,
                    ("dn", v) if is_number(v) => Route::Dn(v.to_owned()),
                    ("number", v) if is_number(v) => Route::Number(v.to_owned()),
                    ("reject", v) => match v.parse::<u16>() {
                        Ok(s @ 400..=699) => Route::Reject(s),
                        _ => return refuse(line, "a rejection is a status from 400 to 699"),
                    },
                    _ => {
                        return refuse(
                            line,
                            "expected `route dn NUMBER`, `route number NUMBER`, `route reject STATUS` or `route default`",
                        );
                    }
                };
                self.push(line, Instr::Route(route));
            }
            "label" => {
                let name = one_word(line, rest, "label NAME")?;
                if self
                    .labels
                    .insert(name.to_owned(), self.code.len())
                    .is_some()
                {
                    return refuse(line, format!("label {name:?} defined twice"));
                }
            }
            "goto" => {
                let name = one_word(line, rest, "goto NAME")?;
                self.gotos.push((self.code.len(), name.to_owned(), line));
                self.push(line, Instr::Jump(usize::MAX));
            }
            _ => return refuse(line, format!("unknown statement {word:?}")),
        }
        Ok(())
    }
}

/// Refuses a program that can go round without waiting: from each instruction, following
/// every way on except through instructions that wait, no instruction is met twice.
fn busy_loop(p: &Program) -> Result<(), StrategyError> {
    let n = p.code.len();
    let next = |i: usize| -> Vec<usize> {
        match &p.code[i] {
            Instr::Jump(to) => vec![*to],
            Instr::Unless(_, to) => vec![i + 1, *to],
            Instr::Route(_) => vec![],
            i_ if i_.waits() => vec![],
            _ => vec![i + 1],
        }
    };
    // 0 unseen, 1 on the path, 2 done.
    let mut mark = vec![0u8; n];
    for start in 0..n {
        if mark[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, next(start), 0usize)];
        mark[start] = 1;
        while let Some((at, outs, k)) = stack.last_mut() {
            let Some(&to) = outs.get(*k) else {
                mark[*at] = 2;
                stack.pop();
                continue;
            };
            *k += 1;
            if to >= n {
                continue;
            }
            match mark[to] {
                0 => {
                    mark[to] = 1;
                    let outs = next(to);
                    stack.push((to, outs, 0));
                }
                1 => {
                    return refuse(
                        p.lines[to],
                        "the strategy loops here without waiting (a loop needs a queue, a wait, an announcement or a collect)",
                    );
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn strip_comment(line: &str) -> &str {
    // A '#' inside quotes is text.
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    }
}

fn one_word<'a>(line: usize, text: &'a str, form: &str) -> Result<&'a str, StrategyError> {
    let (word, rest) = split_word(text);
    if word.is_empty() || !rest.trim().is_empty() {
        return refuse(line, format!("expected `{form}`"));
    }
    Ok(word)
}

fn definition(line: usize, rest: &str) -> Result<(&str, &str), StrategyError> {
    match rest.split_once(':') {
        Some((name, spec)) if !name.trim().is_empty() && !name.trim().contains(' ') => {
            Ok((name.trim(), spec.trim()))
        }
        _ => refuse(line, "expected `NAME: ...`"),
    }
}

fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or(text);
    !digits.is_empty()
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
}

fn quoted(line: usize, text: &str) -> Result<String, StrategyError> {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('"') => Ok(inner.to_owned()),
        _ => refuse(line, format!("expected a \"quoted\" text, found {text:?}")),
    }
}

fn number(line: usize, text: &str) -> Result<u32, StrategyError> {
    text.parse()
        .or_else(|_| refuse(line, format!("{text:?} is not a number")))
}

fn target(line: usize, text: &str) -> Result<Target, StrategyError> {
    let inner = quoted(line, text)?;
    Target::parse(&inner).or_else(|e| refuse(line, e.to_string()))
}

/// `30s`, `5m`, `1h`, or plain seconds; in ms.
fn duration(line: usize, text: &str) -> Result<u64, StrategyError> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = match digits.parse() {
        Ok(n) => n,
        Err(_) => return refuse(line, format!("{text:?} is not a duration (30s, 5m, 1h)")),
    };
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return refuse(line, format!("{text:?} is not a duration (30s, 5m, 1h)")),
    };
    if secs > 7 * 24 * 3600 {
        return refuse(line, format!("{text:?}: a week at most"));
    }
    Ok(secs * 1000)
}

fn parse_queue(line: usize, rest: &str) -> Result<Submit, StrategyError> {
    let (queue, mut rest) = split_word(rest);
    if queue.is_empty() {
        return refuse(line, "expected `queue QUEUE target \"EXPRESSION\" ...`");
    }
    let mut submit = Submit {
        queue: queue.to_owned(),
        target: Target::Or(Vec::new()),
        priority: 0,
        timeout_ms: None,
        after: Vec::new(),
    };
    let mut has_target = false;
    loop {
        let (word, after) = split_word(rest);
        match word {
            "" => break,
            "target" => {
                let after = after.trim_start();
                let end = after
                    .strip_prefix('"')
                    .and_then(|a| a.find('"'))
                    .map(|i| i + 2)
                    .unwrap_or(after.len());
                submit.target = target(line, &after[..end])?;
                has_target = true;
                rest = &after[end..];
            }
            "priority" => {
                let (n, after) = split_word(after);
                submit.priority = number(line, n)?;
                rest = after;
            }
            "timeout" => {
                let (t, after) = split_word(after);
                submit.timeout_ms = Some(duration(line, t)?);
                rest = after;
            }
            _ => {
                return refuse(
                    line,
                    format!("unexpected {word:?} (target, priority, timeout)"),
                );
            }
        }
    }
    if !has_target {
        return refuse(line, "a queue needs a target");
    }
    Ok(submit)
}

fn parse_date(line: usize, text: &str) -> Result<i64, StrategyError> {
    let parts: Vec<&str> = text.split('-').collect();
    let bad = || refuse(line, format!("{text:?} is not a date (YYYY-MM-DD)"));
    let [y, m, d] = parts[..] else {
        return bad();
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return bad();
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m)
        || d == 0
        || d > month_days[m as usize - 1]
        || !(1970..=9999).contains(&y)
    {
        return bad();
    }
    Ok(days_from_civil(y, m, d))
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A definition's text without its trailing `utc±HH:MM`, and that offset in minutes (0
/// when there is none).
fn with_offset(line: usize, spec: &str) -> Result<(&str, i64), StrategyError> {
    let spec = spec.trim();
    match spec.rfind("utc") {
        Some(i) => Ok((spec[..i].trim(), parse_offset(line, spec[i + 3..].trim())?)),
        None => Ok((spec, 0)),
    }
}

fn parse_hours(line: usize, spec: &str) -> Result<Hours, StrategyError> {
    let (spec, offset_min) = with_offset(line, spec)?;
    let mut hours = Hours {
        days: Default::default(),
        offset_min,
    };
    for part in spec.split(',') {
        let (days, times) = split_word(part.trim());
        let (from_day, to_day) = days.split_once('-').unwrap_or((days, days));
        let day = |d: &str| {
            WEEKDAYS
                .iter()
                .position(|w| *w == d)
                .ok_or_else(|| StrategyError {
                    line,
                    problem: format!("{d:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"),
                })
        };
        let (first, last) = (day(from_day)?, day(to_day)?);
        let Some((from, to)) = times.trim().split_once('-') else {
            return refuse(line, format!("{part:?}: expected DAYS HH:MM-HH:MM"));
        };
        let (from, to) = (clock(line, from)?, clock(line, to)?);
        if from >= to {
            return refuse(line, format!("{part:?}: the hours end before they begin"));
        }
        let mut d = first;
        loop {
            hours.days[d].push((from, to));
            if d == last {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(hours)
}

fn clock(line: usize, text: &str) -> Result<u32, StrategyError> {
    let bad = || refuse(line, format!("{text:?} is not a time (HH:MM)"));
    let Some((h, m)) = text.trim().split_once(':') else {
        return bad();
    };
    match (h.parse::<u32>(), m.parse::<u32>()) {
        (Ok(24), Ok(0)) => Ok(DAY_MIN as u32),
        (Ok(h @ 0..=23), Ok(m @ 0..=59)) if m < 60 => Ok(h * 60 + m),
        _ => bad(),
    }
}

fn parse_offset(line: usize, text: &str) -> Result<i64, StrategyError> {
    if text.is_empty() {
        return Ok(0);
    }
    let (sign, rest) = match text.split_at(1) {
        ("+", r) => (1, r),
        ("-", r) => (-1, r),
        _ => return refuse(line, format!("{text:?}: expected utc+HH:MM or utc-HH:MM")),
    };
    let minutes = clock(line, rest)?;
    if minutes > 14 * 60 {
        return refuse(line, format!("{text:?}: an offset of 14 hours at most"));
    }
    Ok(sign * i64::from(minutes))
}

/// A condition's words, parsed with `and` binding tighter than `or`.
struct Cond<'a> {
    line: usize,
    text: &'a str,
}

impl Cond<'_> {
    fn parse(self) -> Result<Condition, StrategyError> {
        let words = tokens(self.line, self.text)?;
        let mut at = 0;
        let c = self.or(&words, &mut at)?;
        if at != words.len() {
            return refuse(
                self.line,
                format!("unexpected {:?} in the condition", words[at]),
            );
        }
        Ok(c)
    }

    fn or(&self, w: &[String], at: &mut usize) -> Result<Condition, StrategyError> {
        let mut all = vec![self.and(w, at)?];
        while w.get(*at).is_some_and(|t| t == "or") {
            *at += 1;
            all.push(self.and(w, at)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Condition::Or(all)
        })
    }

    fn and(&self, w: &[String], at: &mut usize) -> Result<Condition, StrategyError> {
        let mut all = vec![self.one(w, at)?];
        while w.get(*at).is_some_and(|t| t == "and") {
            *at += 1;
            all.push(self.one(w, at)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Condition::And(all)
        })
    }

    fn one(&self, w: &[String], at: &mut usize) -> Result<Condition, StrategyError> {
        let line = self.line;
        let mut take = || {
            let t = w.get(*at).cloned();
            *at += 1;
            t.ok_or_else(|| StrategyError {
                line,
                problem: "the condition ends too soon".into(),
            })
        };
        let word = take()?;
        let text_of = |t: String| quoted(line, &t);
        Ok(match word.as_str() {
            "not" => Condition::Not(Box::new(self.one(w, at)?)),
            "open" => Condition::Open(take()?),
            "closed" => Condition::Not(Box::new(Condition::Open(take()?))),
            "holiday" => Condition::Holiday(take()?),
            "caller" | "dialed" => {
                let prefix = match take()?.as_str() {
                    "is" => false,
                    "starts" => true,
                    other => {
                        return refuse(line, format!("expected is or starts, found {other:?}"));
                    }
                };
                let text = text_of(take()?)?;
                if word == "caller" {
                    Condition::Caller { prefix, text }
                } else {
                    Condition::Dialed { prefix, text }
                }
            }
            "data" => {
                let key = take()?;
                match take()?.as_str() {
                    "set" => Condition::Data { key, value: None },
                    "is" => Condition::Data {
                        key,
                        value: Some(text_of(take()?)?),
                    },
                    other => return refuse(line, format!("expected is or set, found {other:?}")),
                }
            }
            other => {
                return refuse(
                    line,
                    format!(
                        "unknown condition {other:?} (open, closed, holiday, caller, dialed, data, not)"
                    ),
                );
            }
        })
    }
}

/// Words, with quoted texts kept whole (quotes included).
fn tokens(line: usize, text: &str) -> Result<Vec<String>, StrategyError> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('"') {
            let Some(end) = inner.find('"') else {
                return refuse(line, "a quote is not closed");
            };
            out.push(rest[..end + 2].to_owned());
            rest = inner[end + 1..].trim_start();
        } else {
            let (word, after) = split_word(rest);
            out.push(word.to_owned());
            rest = after.trim_start();
        }
    }
    Ok(out)
}

// ----- running -----

/// The call a session routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
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
        ] {
            let e = Program::compile(text)
                .expect("valid")
                .check(&Tenant)
                .expect_err("refused");
            assert!(e.problem.contains(part), "{text}: {e}");
        }
    }
}
