//! The dial plan (design.md "Grammars"): ordered rules, each a regular expression matched
//! against the whole dialed number, a `$1`-style rewrite and a destination. The first rule that
//! matches wins. All patterns are matched in one pass over the number (a [`RegexSet`]), so a
//! plan of hundreds of rules is not scanned rule by rule.

use regex::{Regex, RegexSet};

/// Where a matched number goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Extension(String),
    RoutingPoint(String),
    Trunk(String),
    Queue(String),
    /// An announcement on a media server: an RFC 4240 URI.
    Announcement(String),
    /// Rejected with this status.
    Reject(u16),
}

impl Destination {
    /// `extension:1001`, `routing-point:5000`, `trunk:carrier`, `queue:support`,
    /// `announcement:<URI>`, `reject:486`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, target) = s.split_once(':').ok_or_else(|| {
            format!(
                "{s:?}: expected kind:target (extension, routing-point, trunk, queue, announcement, reject)"
            )
        })?;
        if target.is_empty() {
            return Err(format!("{s:?}: no target"));
        }
        let target = target.to_owned();
        Ok(match kind {
            "extension" => Destination::Extension(target),
            "routing-point" => Destination::RoutingPoint(target),
            "trunk" => Destination::Trunk(target),
            "queue" => Destination::Queue(target),
            "announcement" => Destination::Announcement(target),
            "reject" => match target.parse::<u16>() {
                Ok(status) if (400..700).contains(&status) => Destination::Reject(status),
                _ => return Err(format!("{s:?}: a rejection is a status from 400 to 699")),
            },
            _ => return Err(format!("{s:?}: unknown kind {kind:?}")),
        })
    }

    fn map_target(&self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            Destination::Extension(t) => Destination::Extension(f(t)),
            Destination::RoutingPoint(t) => Destination::RoutingPoint(f(t)),
            Destination::Trunk(t) => Destination::Trunk(f(t)),
            Destination::Queue(t) => Destination::Queue(f(t)),
            Destination::Announcement(t) => Destination::Announcement(f(t)),
            Destination::Reject(s) => Destination::Reject(*s),
        }
    }
}

/// A rule that cannot be compiled; `field` is `pattern`, `rewrite` or `destination`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index}: {field}: {problem}")]
pub struct RuleError {
    pub index: usize,
    pub field: &'static str,
    pub problem: String,
}

/// A rule as written.
#[derive(Debug, Clone, Copy)]
pub struct RuleText<'a> {
    pub pattern: &'a str,
    pub rewrite: &'a str,
    pub destination: &'a str,
}

#[derive(Debug, Clone)]
struct Rule {
    regex: Regex,
    rewrite: String,
    destination: Destination,
}

/// A compiled dial plan.
#[derive(Debug, Clone)]
pub struct DialPlan {
    set: RegexSet,
    rules: Vec<Rule>,
    /// The same patterns as a lazy DFA, to tell a number that could still grow into a match
    /// (484) from one that never will (404).
    prefixes: regex_automata::hybrid::dfa::DFA,
}

/// The outcome of a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The index of the rule that matched.
    pub rule: usize,
    /// The number after the rule's rewrite.
    pub number: String,
    /// The destination, with `$1`-style references filled from the match.
    pub destination: Destination,
}

/// Patterns larger than this compiled size are refused, so that one rule cannot make a tenant's
/// snapshot huge.
const SIZE_LIMIT: usize = 1 << 20;

impl DialPlan {
    pub fn new<'a>(rules: impl IntoIterator<Item = RuleText<'a>>) -> Result<Self, RuleError> {
        let mut compiled = Vec::new();
        let mut anchored = Vec::new();
        for (index, text) in rules.into_iter().enumerate() {
            // The whole number must match, whatever anchors the pattern has.
            let whole = format!("^(?:{})$", text.pattern);
            let regex = regex::RegexBuilder::new(&whole)
                .size_limit(SIZE_LIMIT)
                .build()
                .map_err(|e| RuleError {
                    index,
                    field: "pattern",
                    problem: format!("{:?} is not a valid pattern: {e}", text.pattern),
                })?;
            let groups = regex.captures_len() - 1;
            for (field, text) in [("rewrite", text.rewrite), ("destination", text.destination)] {
                if let Some(n) = highest_reference(text)
                    && n > groups
                {
                    return Err(RuleError {
                        index,
                        field,
                        problem: format!("{text:?} refers to group {n}; the pattern has {groups}"),
                    });
                }
            }
            let destination =
                Destination::parse(text.destination).map_err(|problem| RuleError {
                    index,
                    field: "destination",
                    problem,
                })?;
            anchored.push(whole);
            compiled.push(Rule {
                regex,
                rewrite: text.rewrite.to_owned(),
                destination,
            });
        }
        let set = regex::RegexSetBuilder::new(&anchored)
            .size_limit(SIZE_LIMIT * 64)
            .build()
            .map_err(|e| RuleError {
                index: compiled.len().saturating_sub(1),
                field: "pattern",
                problem: format!("the dial plan as a whole is too large: {e}"),
            })?;
        let prefixes = regex_automata::hybrid::dfa::DFA::builder()
            .configure(
                regex_automata::hybrid::dfa::Config::new()
                    .cache_capacity(SIZE_LIMIT)
                    .skip_cache_capacity_check(true),
            )
            .build_many(&anchored)
            .map_err(|e| RuleError {
                index: compiled.len().saturating_sub(1),
                field: "pattern",
                problem: format!("the dial plan as a whole is too large: {e}"),
            })?;
        Ok(Self {
            set,
            rules: compiled,
            prefixes,
        })
    }

    /// Whether `dialed` matches no rule yet but some rule would match a longer number that
    /// starts with it: incomplete dialing (RFC 3261 21.4.22, 484) rather than an unknown
    /// number (404).
    pub fn incomplete(&self, dialed: &str) -> bool {
        use regex_automata::Input;
        let dfa = &self.prefixes;
        let mut cache = dfa.create_cache();
        let Ok(mut state) = dfa.start_state_forward(
            &mut cache,
            &Input::new(dialed).anchored(regex_automata::Anchored::Yes),
        ) else {
            return false;
        };
        for &byte in dialed.as_bytes() {
            match dfa.next_state(&mut cache, state, byte) {
                Ok(next) if !next.is_dead() => state = next,
                _ => return false,
            }
        }
        // Not dead after the whole number: one more digit (or more) could still lead to a match.
        !state.is_dead() && self.route(dialed).is_none()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that matches the whole of `dialed`, applied.
    pub fn route(&self, dialed: &str) -> Option<Route> {
        let index = self.set.matches(dialed).iter().next()?;
        let rule = &self.rules[index];
        let captures = rule.regex.captures(dialed)?;
        let expand = |template: &str| {
            let mut out = String::new();
            captures.expand(template, &mut out);
            out
        };
        let number = if rule.rewrite.is_empty() {
            dialed.to_owned()
        } else {
            expand(&rule.rewrite)
        };
        Some(Route {
            rule: index,
            number,
            destination: rule.destination.map_target(expand),
        })
    }
}

/// The highest `$n` or `${n}` a template refers to.
fn highest_reference(template: &str) -> Option<usize> {
    let bytes = template.as_bytes();
    let mut highest = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let rest = &template[i + 1..];
            let digits: String = rest
                .trim_start_matches('{')
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                highest = highest.max(Some(n));
            }
        }
        i += 1;
    }
    highest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rules: &[(&str, &str, &str)]) -> Result<DialPlan, RuleError> {
        DialPlan::new(
            rules
                .iter()
                .map(|&(pattern, rewrite, destination)| RuleText {
                    pattern,
                    rewrite,
                    destination,
                }),
        )
    }

    fn demo() -> DialPlan {
        plan(&[
            (r"^\+18005550100$", "", "routing-point:5000"),
            (r"^(1\d{3})$", "$1", "extension:$1"),
            (r"^9(\d+)$", "$1", "trunk:carrier"),
        ])
        .expect("valid")
    }

    #[test]
    fn incomplete_numbers_are_told_from_unknown_ones() {
        let p = demo();
        for partial in ["1", "10", "100", "+1800555", "9"] {
            assert!(
                p.incomplete(partial),
                "{partial} could still grow into a match"
            );
        }
        for unknown in ["2", "20001", "10011", "+2", "x"] {
            assert!(!p.incomplete(unknown), "{unknown} never matches");
        }
        assert!(!p.incomplete("1001"), "a match is not incomplete");
    }

    #[test]
    fn the_first_matching_rule_wins_and_rewrites() {
        let p = demo();
        let r = p.route("+18005550100").expect("service number");
        assert_eq!(r.destination, Destination::RoutingPoint("5000".into()));
        assert_eq!(r.number, "+18005550100");
        let r = p.route("1007").expect("extension");
        assert_eq!(
            (r.rule, r.destination),
            (1, Destination::Extension("1007".into()))
        );
        let r = p.route("9004930123456").expect("outside");
        assert_eq!(r.number, "004930123456");
        assert_eq!(r.destination, Destination::Trunk("carrier".into()));
        // Whole numbers only.
        assert!(p.route("10071").is_none());
        assert!(p.route("x1007").is_none());
        // Order decides between rules that both match.
        let p = plan(&[("1.*", "", "reject:403"), ("1001", "", "extension:1001")]).expect("valid");
        assert_eq!(p.route("1001").expect("match").rule, 0);
    }

    #[test]
    fn patterns_are_anchored_even_without_anchors() {
        let p = plan(&[("(\\d{4})", "$1", "extension:$1")]).expect("valid");
        assert!(p.route("1234").is_some());
        assert!(p.route("12345").is_none());
    }

    #[test]
    fn bad_rules_name_their_field() {
        let e = plan(&[
            ("1001", "", "extension:1001"),
            ("(unclosed", "", "reject:404"),
        ])
        .expect_err("bad pattern");
        assert_eq!((e.index, e.field), (1, "pattern"));
        let e = plan(&[("(1)(2)", "$3", "reject:404")]).expect_err("bad reference");
        assert_eq!((e.index, e.field), (0, "rewrite"));
        let e = plan(&[("(1)", "", "extension:${2}")]).expect_err("bad reference");
        assert_eq!(e.field, "destination");
        for bad in ["5000", "reject:200", "reject:x", "voicemail:1", "trunk:"] {
            let e = plan(&[("1", "", bad)]).expect_err(bad);
            assert_eq!(e.field, "destination", "{bad}");
        }
        let e = plan(&[("a{1000}{1000}", "", "reject:404")]).expect_err("huge");
        assert_eq!(e.field, "pattern");
    }

    #[test]
    fn five_hundred_rules_match_in_one_pass() {
        let rules: Vec<(String, String, String)> = (0..500)
            .map(|i| {
                (
                    format!("^{}(\\d{{4}})$", 7000 + i),
                    "$1".to_owned(),
                    format!("extension:{}", 1000 + i),
                )
            })
            .collect();
        let p = DialPlan::new(rules.iter().map(|(p, r, d)| RuleText {
            pattern: p,
            rewrite: r,
            destination: d,
        }))
        .expect("valid");
        let r = p.route("74991234").expect("last rule");
        assert_eq!((r.rule, r.number.as_str()), (499, "1234"));
        assert!(p.route("69991234").is_none());
    }
}
