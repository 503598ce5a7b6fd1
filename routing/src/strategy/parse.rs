//! The grammar of strategies (see the module's documentation): the compiler that turns a
//! document into a [`Program`], statement by statement, with the conditions of `if` and the
//! checks that refuse a document that would loop without waiting.

use std::collections::HashMap;

use super::calendar::{Calendar, Hours, parse_date, parse_hours, with_offset};
use super::{Condition, Instr, Overflow, Program, Route, StrategyError, Submit, Treatment, refuse};
use crate::target::Target;

#[derive(Default)]
pub(super) struct Compiler {
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
    pub(super) fn run(mut self, text: &str) -> Result<Program, StrategyError> {
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
            "record" => {
                if !rest.is_empty() {
                    return refuse(line, "`record` takes nothing after it");
                }
                self.push(line, Instr::Record);
            }
            "monitor" => {
                // monitor by DN in MODE
                let words: Vec<&str> = rest.split_whitespace().collect();
                let ["by", dn, "in", mode] = words[..] else {
                    return refuse(line, "expected `monitor by DN in listen|whisper|barge`");
                };
                if !["listen", "whisper", "barge"].contains(&mode) {
                    return refuse(line, format!("{mode:?}: listen, whisper or barge"));
                }
                self.push(
                    line,
                    Instr::Monitor {
                        dn: dn.to_owned(),
                        mode: mode.to_owned(),
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

pub(super) fn split_word(text: &str) -> (&str, &str) {
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
