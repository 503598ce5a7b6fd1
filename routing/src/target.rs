//! Target expressions: which agents a waiting call may go to (design.md "Grammars").
//!
//! ```text
//! expr   := term ('|' term)*
//! term   := factor ('&' factor)*
//! factor := '!' factor | '(' expr ')' | skill OP number | 'group:' name | 'agent:' id
//! OP     := = | != | < | <= | > | >=
//! ```
//!
//! Skill names match case-insensitively; an agent without a skill has level 0. For example
//! `english >= 5 & (billing > 0 | sales > 3)`. A parsed [`Target`] is evaluated against an
//! [`Profile`], and says which skills it needs at a positive level so that matching can start
//! from the agents who have them instead of every agent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A comparison of a skill level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, level: u32, n: u32) -> bool {
        match self {
            Op::Eq => level == n,
            Op::Ne => level != n,
            Op::Lt => level < n,
            Op::Le => level <= n,
            Op::Gt => level > n,
            Op::Ge => level >= n,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A parsed target expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A skill level compared with a number; the skill's name in lowercase.
    Skill {
        skill: String,
        op: Op,
        level: u32,
    },
    Group(String),
    Agent(String),
    Not(Box<Target>),
    And(Vec<Target>),
    Or(Vec<Target>),
}

/// What an agent offers a target: its id, groups and skill levels (skill names in lowercase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub id: String,
    pub groups: BTreeSet<String>,
    pub skills: BTreeMap<String, u32>,
}

impl Profile {
    /// A profile from configuration names, skill names folded to lowercase.
    pub fn new<'a>(
        id: &str,
        groups: impl IntoIterator<Item = &'a str>,
        skills: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            groups: groups.into_iter().map(str::to_owned).collect(),
            skills: skills
                .into_iter()
                .map(|(s, l)| (s.to_lowercase(), l))
                .collect(),
        }
    }

    fn level(&self, skill: &str) -> u32 {
        self.skills.get(skill).copied().unwrap_or(0)
    }
}

/// Why an expression does not parse: what was expected, at which character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target expression, at character {at}: {problem}")]
pub struct TargetError {
    /// 0-based character offset.
    pub at: usize,
    pub problem: String,
}

impl Target {
    /// Parses an expression of the grammar above.
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        let mut p = Parser {
            chars: text.char_indices().collect(),
            pos: 0,
            depth: 0,
        };
        let target = p.expr()?;
        p.skip_space();
        if let Some(&(at, c)) = p.chars.get(p.pos) {
            return Err(TargetError {
                at,
                problem: format!("unexpected {c:?} (expected '&', '|' or the end)"),
            });
        }
        Ok(target)
    }

    /// Whether the agent of `profile` satisfies the target.
    pub fn matches(&self, profile: &Profile) -> bool {
        match self {
            Target::Skill { skill, op, level } => op.holds(profile.level(skill), *level),
            Target::Group(g) => profile.groups.contains(g),
            Target::Agent(a) => profile.id == *a,
            Target::Not(t) => !t.matches(profile),
            Target::And(ts) => ts.iter().all(|t| t.matches(profile)),
            Target::Or(ts) => ts.iter().any(|t| t.matches(profile)),
        }
    }

    /// The skills, groups and agents the expression names, for checking them against the
    /// configuration (a strategy naming an unknown skill is refused when saved).
    pub fn names(&self) -> Names {
        let mut names = Names::default();
        self.collect(&mut names);
        names
    }

    fn collect(&self, names: &mut Names) {
        match self {
            Target::Skill { skill, .. } => {
                names.skills.insert(skill.clone());
            }
            Target::Group(g) => {
                names.groups.insert(g.clone());
            }
            Target::Agent(a) => {
                names.agents.insert(a.clone());
            }
            Target::Not(t) => t.collect(names),
            Target::And(ts) | Target::Or(ts) => ts.iter().for_each(|t| t.collect(names)),
        }
    }

    /// Where matching may start: `Some` list of alternatives, each a condition that every
    /// agent satisfying the expression through that alternative meets, and that an index
    /// can answer (a skill at a positive level, a group, an agent); `None` when some
    /// satisfying agent need meet none of them (`!group:x`, `english < 3`: anyone may do),
    /// and every agent must be looked at.
    pub fn seeds(&self) -> Option<Vec<Seed>> {
        match self {
            // Satisfied only with the skill at a positive level.
            Target::Skill { skill, op, level } => {
                let min = match op {
                    Op::Eq | Op::Ge if *level > 0 => Some(*level),
                    Op::Gt => Some(level + 1),
                    _ => None,
                };
                min.map(|min| {
                    vec![Seed::Skill {
                        skill: skill.clone(),
                        min,
                    }]
                })
            }
            Target::Group(g) => Some(vec![Seed::Group(g.clone())]),
            Target::Agent(a) => Some(vec![Seed::Agent(a.clone())]),
            Target::Not(_) => None,
            // One factor that narrows is enough: the fewest alternatives.
            Target::And(ts) => ts.iter().filter_map(Target::seeds).min_by_key(Vec::len),
            // Every alternative must narrow.
            Target::Or(ts) => {
                let mut all = Vec::new();
                for t in ts {
                    all.extend(t.seeds()?);
                }
                Some(all)
            }
        }
    }
}

/// A condition an index answers: where to look for agents that may satisfy a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// Agents with `skill` at `min` or above.
    Skill {
        skill: String,
        min: u32,
    },
    Group(String),
    Agent(String),
}

/// The names an expression uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub skills: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub agents: BTreeSet<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Skill { skill, op, level } => write!(f, "{skill} {} {level}", op.text()),
            Target::Group(g) => write!(f, "group:{g}"),
            Target::Agent(a) => write!(f, "agent:{a}"),
            Target::Not(t) => match **t {
                Target::And(_) | Target::Or(_) => write!(f, "!({t})"),
                _ => write!(f, "!{t}"),
            },
            Target::And(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" & ")?;
                    }
                    match t {
                        Target::Or(_) => write!(f, "({t})")?,
                        _ => write!(f, "{t}")?,
                    }
                }
                Ok(())
            }
            Target::Or(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
        }
    }
}

/// How deep parentheses and negations may nest: a bound on the recursion, so that hostile
/// input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    chars: Vec<(usize, char)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn skip_space(&mut self) {
        while self
            .chars
            .get(self.pos)
            .is_some_and(|(_, c)| c.is_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    /// The character offset of the current position (the end when past the last).
    fn at(&self) -> usize {
        self.chars.get(self.pos).map_or_else(
            || self.chars.last().map_or(0, |&(i, c)| i + c.len_utf8()),
            |&(i, _)| i,
        )
    }

    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, TargetError> {
        Err(TargetError {
            at: self.at(),
            problem: problem.into(),
        })
    }

    fn nest(&mut self) -> Result<(), TargetError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail(format!("nested deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Target, TargetError> {
        let mut terms = vec![self.term()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            terms.push(self.term()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Target::Or(terms)
        })
    }

    fn term(&mut self) -> Result<Target, TargetError> {
        let mut factors = vec![self.factor()?];
        while self.peek() == Some('&') {
            self.pos += 1;
            factors.push(self.factor()?);
        }
        Ok(if factors.len() == 1 {
            factors.remove(0)
        } else {
            Target::And(factors)
        })
    }

    fn factor(&mut self) -> Result<Target, TargetError> {
        match self.peek() {
            Some('!') => {
                self.pos += 1;
                self.nest()?;
                let inner = self.factor()?;
                self.depth -= 1;
                Ok(Target::Not(Box::new(inner)))
            }
            Some('(') => {
                self.pos += 1;
                self.nest()?;
                let inner = self.expr()?;
                self.depth -= 1;
                if self.peek() != Some(')') {
                    return self.fail("expected ')'");
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(c) if is_name(c) => {
                let start = self.pos;
                let name = self.name();
                if self.chars.get(self.pos).is_some_and(|&(_, c)| c == ':') {
                    self.pos += 1;
                    let value = self.name();
                    if value.is_empty() {
                        return self.fail(format!("expected a name after '{name}:'"));
                    }
                    return match name.to_ascii_lowercase().as_str() {
                        "group" => Ok(Target::Group(value)),
                        "agent" => Ok(Target::Agent(value)),
                        _ => {
                            self.pos = start;
                            self.fail(format!("'{name}:' is neither 'group:' nor 'agent:'"))
                        }
                    };
                }
                let op = self.op()?;
                let level = self.number()?;
                Ok(Target::Skill {
                    skill: name.to_lowercase(),
                    op,
                    level,
                })
            }
            Some(c) => self.fail(format!(
                "unexpected {c:?} (expected a skill, 'group:', 'agent:', '!' or '(')"
            )),
            None => self.fail("the expression ends too soon"),
        }
    }

    fn name(&mut self) -> String {
        self.skip_space();
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(|&(_, c)| is_name(c)) {
            self.pos += 1;
        }
        self.chars[start..self.pos]
            .iter()
            .map(|&(_, c)| c)
            .collect()
    }

    fn op(&mut self) -> Result<Op, TargetError> {
        let c = self.peek();
        let next = self.chars.get(self.pos + 1).map(|&(_, c)| c);
        let (op, len) = match (c, next) {
            (Some('!'), Some('=')) => (Op::Ne, 2),
            (Some('<'), Some('=')) => (Op::Le, 2),
            (Some('>'), Some('=')) => (Op::Ge, 2),
            (Some('='), Some('=')) => (Op::Eq, 2),
            (Some('='), _) => (Op::Eq, 1),
            (Some('<'), _) => (Op::Lt, 1),
            (Some('>'), _) => (Op::Gt, 1),
            _ => return self.fail("expected a comparison: = != < <= > >="),
        };
        self.pos += len;
        Ok(op)
    }

    fn number(&mut self) -> Result<u32, TargetError> {
        self.skip_space();
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|&(_, c)| c.is_ascii_digit())
        {
            self.pos += 1;
        }
        let digits: String = self.chars[start..self.pos]
            .iter()
            .map(|&(_, c)| c)
            .collect();
        if digits.is_empty() {
            return self.fail("expected a skill level (a whole number)");
        }
        digits.parse().or_else(|_| {
            self.pos = start;
            self.fail("skill level too large")
        })
    }
}

/// Characters of skill, group and agent names.
fn is_name(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(skills: &[(&str, u32)], groups: &[&str]) -> Profile {
        Profile::new("a1", groups.iter().copied(), skills.iter().copied())
    }

    #[test]
    fn the_example_of_the_design_matches_as_written() {
        let t = Target::parse("english >= 5 & (billing > 0 | sales > 3)").expect("parses");
        assert!(t.matches(&agent(&[("English", 5), ("billing", 1)], &[])));
        assert!(t.matches(&agent(&[("english", 9), ("sales", 4)], &[])));
        assert!(!t.matches(&agent(&[("english", 9), ("sales", 3)], &[])));
        assert!(!t.matches(&agent(&[("english", 4), ("billing", 9)], &[])));
        assert_eq!(t.to_string(), "english >= 5 & (billing > 0 | sales > 3)");
        assert_eq!(Target::parse(&t.to_string()), Ok(t));
    }

    #[test]
    fn precedence_negation_groups_agents_and_missing_skills() {
        // '&' binds tighter than '|'.
        let t = Target::parse("a > 0 | b > 0 & c > 0").expect("parses");
        assert!(t.matches(&agent(&[("a", 1)], &[])));
        assert!(!t.matches(&agent(&[("b", 1)], &[])));
        let t = Target::parse("!group:night & SALES = 0 & !(agent:a2)").expect("parses");
        assert!(t.matches(&agent(&[], &["day"])), "no skill is level 0");
        assert!(!t.matches(&agent(&[], &["night"])));
        assert!(!t.matches(&agent(&[("sales", 2)], &[])));
        let t = Target::parse("agent:a1 | group:vip").expect("parses");
        assert!(t.matches(&agent(&[], &[])));
        for (text, yes) in [
            ("x != 2", true),
            ("x <= 0", true),
            ("x < 0", false),
            ("x == 0", true),
        ] {
            assert_eq!(
                Target::parse(text).expect(text).matches(&agent(&[], &[])),
                yes,
                "{text}"
            );
        }
    }

    #[test]
    fn bad_expressions_say_where() {
        for (text, at) in [
            ("", 0),
            ("english >= ", 11),
            ("english 5", 8),
            ("english >= 5 &", 14),
            ("(english > 1", 12),
            ("english > 1)", 11),
            ("team:blue", 0),
            ("group:", 6),
            ("english > 99999999999", 10),
            ("english > 1 ~ x > 2", 12),
        ] {
            let e = Target::parse(text).expect_err(text);
            assert_eq!(e.at, at, "{text:?}: {e}");
        }
        let deep = format!("{}a > 1{}", "(".repeat(100), ")".repeat(100));
        assert!(Target::parse(&deep).is_err(), "nesting is bounded");
    }

    #[test]
    fn names_for_checking_against_the_configuration() {
        let t = Target::parse("English > 1 & (group:support | agent:a7) & !billing = 2")
            .expect("parses");
        let names = t.names();
        assert_eq!(
            names.skills.into_iter().collect::<Vec<_>>(),
            ["billing", "english"]
        );
        assert_eq!(names.groups.into_iter().collect::<Vec<_>>(), ["support"]);
        assert_eq!(names.agents.into_iter().collect::<Vec<_>>(), ["a7"]);
    }

    #[test]
    fn seeds_narrow_where_every_match_must_pass() {
        let seeds = |text: &str| Target::parse(text).expect(text).seeds();
        assert_eq!(
            seeds("english >= 5 & (billing > 0 | sales > 3)"),
            Some(vec![Seed::Skill {
                skill: "english".into(),
                min: 5
            }])
        );
        assert_eq!(
            seeds("billing > 0 | sales > 3"),
            Some(vec![
                Seed::Skill {
                    skill: "billing".into(),
                    min: 1
                },
                Seed::Skill {
                    skill: "sales".into(),
                    min: 4
                }
            ])
        );
        assert_eq!(
            seeds("group:vip & english < 3"),
            Some(vec![Seed::Group("vip".into())])
        );
        // Anyone may satisfy these: no narrowing.
        assert_eq!(seeds("english < 3"), None);
        assert_eq!(seeds("!group:night"), None);
        assert_eq!(seeds("english >= 0"), None);
        assert_eq!(seeds("billing > 0 | english < 3"), None);
    }
}
