//! A scenario: the day to simulate. Arrivals per routing point, handle and wrap-up times,
//! callers' patience, the agents on duty, and the seed. Read from TOML by the command line;
//! the files it names (CSV of arrival times, empirical distributions) are read there too and
//! parsed here, so that every error names its line and field.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Why a scenario cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

pub(super) fn refuse<T>(why: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError(why.into()))
}

/// The day to simulate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// The seed of every random draw: the same scenario and seed give the same result.
    pub seed: u64,
    /// The first day simulated, `YYYY-MM-DD` (UTC), for strategies' hours and calendars; a
    /// Monday in January 2026 by default.
    #[serde(default = "default_start")]
    pub start: String,
    /// The length of a reporting interval.
    #[serde(default = "default_interval")]
    pub interval_minutes: u32,
    /// How many intervals calls arrive in; by default as many as the longest curve of
    /// arrivals, or a day.
    #[serde(default)]
    pub intervals: Option<u32>,
    /// The service level's threshold: answered within this many seconds.
    #[serde(default = "default_threshold")]
    pub service_level_secs: f64,
    /// The percentile of the speed of answer reported beside its average.
    #[serde(default = "default_percentile")]
    pub answer_percentile: f64,
    /// How long an agent's phone rings before it answers.
    #[serde(default)]
    pub ring_secs: f64,
    /// How long a blocking treatment (announcement, busy, collect) takes.
    #[serde(default)]
    pub announcement_secs: f64,
    /// After-call work after each call; the tenant's own (`wrap_up_secs` of its
    /// configuration) when the scenario does not say.
    #[serde(default)]
    pub wrap_up_secs: Option<f64>,
    /// The share of calls offered to an agent that ring unanswered (RONA).
    #[serde(default)]
    pub rona_share: f64,
    /// How long an unanswered call rings before it goes back to its queue.
    #[serde(default = "default_rona_timeout")]
    pub rona_timeout_secs: f64,
    /// How long an agent who let a call ring stays not ready.
    #[serde(default = "default_rona_not_ready")]
    pub rona_not_ready_secs: f64,
    pub handle: Distribution,
    /// Callers' patience: how long one waits before hanging up. None: every caller waits.
    #[serde(default)]
    pub patience: Option<Distribution>,
    pub arrivals: Vec<Arrivals>,
    pub agents: Vec<AgentProfile>,
    /// A routing point's strategy other than the tenant's latest, by its number: what a
    /// what-if changes.
    #[serde(default)]
    pub routing: BTreeMap<String, Routing>,
}

/// A strategy for a routing point in place of the tenant's latest version of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Routing {
    /// This version of the routing point's strategy.
    #[serde(default)]
    pub strategy_version: Option<u32>,
    /// This strategy text.
    #[serde(default)]
    pub strategy: Option<String>,
    /// The strategy text in this file (read by the caller into `strategy`).
    #[serde(default)]
    pub strategy_file: Option<String>,
}

fn default_start() -> String {
    "2026-01-05".into()
}
fn default_interval() -> u32 {
    30
}
fn default_threshold() -> f64 {
    20.0
}
fn default_percentile() -> f64 {
    90.0
}
fn default_rona_timeout() -> f64 {
    15.0
}
fn default_rona_not_ready() -> f64 {
    60.0
}

/// A distribution of durations, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Distribution {
    /// `exponential`, `log-normal`, `fixed` or `empirical`.
    pub distribution: String,
    #[serde(default)]
    pub mean_secs: f64,
    /// The standard deviation, for log-normal.
    #[serde(default)]
    pub sd_secs: f64,
    /// For empirical: a file of durations in seconds, one a line (read by the caller into
    /// `values_secs`).
    #[serde(default)]
    pub file: Option<String>,
    /// For empirical: the durations themselves.
    #[serde(default)]
    pub values_secs: Vec<f64>,
}

impl Distribution {
    /// Refuses what cannot be drawn from; `what` names it in the error.
    pub fn check(&self, what: &str) -> Result<(), ScenarioError> {
        match self.distribution.as_str() {
            "exponential" | "fixed" if self.mean_secs > 0.0 && self.mean_secs.is_finite() => Ok(()),
            "log-normal"
                if self.mean_secs > 0.0 && self.sd_secs > 0.0 && self.sd_secs.is_finite() =>
            {
                Ok(())
            }
            "empirical" if !self.values_secs.is_empty() => Ok(()),
            "empirical" => refuse(format!(
                "{what}: an empirical distribution needs `file` or `values-secs`"
            )),
            "exponential" | "fixed" | "log-normal" => refuse(format!(
                "{what}: mean-secs (and sd-secs for log-normal) must be above zero"
            )),
            other => refuse(format!(
                "{what}: unknown distribution {other:?} (exponential, log-normal, fixed, empirical)"
            )),
        }
    }

    /// Reads an empirical distribution's file: a duration in seconds a line (blank lines
    /// and `#` comments skipped).
    pub fn load(&mut self, file: &str, text: &str) -> Result<(), ScenarioError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<f64>() {
                Ok(v) if v >= 0.0 && v.is_finite() => self.values_secs.push(v),
                _ => {
                    return refuse(format!(
                        "{file}: line {}: {line:?} is not a duration in seconds",
                        i + 1
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn draw(&self, rng: &mut super::rng::Rng) -> f64 {
        match self.distribution.as_str() {
            "exponential" => rng.exponential(self.mean_secs),
            "log-normal" => rng.log_normal(self.mean_secs, self.sd_secs),
            "fixed" => self.mean_secs,
            _ => rng.pick(&self.values_secs),
        }
    }
}

/// The calls that reach a routing point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Arrivals {
    pub routing_point: String,
    /// Poisson arrivals at this rate all day.
    #[serde(default)]
    pub per_hour: Option<f64>,
    /// Poisson arrivals, this many expected in each interval (a day's curve).
    #[serde(default)]
    pub per_interval: Option<Vec<f64>>,
    /// A CSV of real arrivals (read by the caller into `times`): `seconds,caller,data`,
    /// seconds from the start, data as `key=value` pairs separated by `;`.
    #[serde(default)]
    pub file: Option<String>,
    /// The caller's number.
    #[serde(default = "default_caller")]
    pub caller: String,
    /// Data attached to each call.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(skip)]
    pub times: Vec<Arrival>,
}

fn default_caller() -> String {
    "+15550100000".into()
}

/// One arrival of a CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub secs: f64,
    pub caller: Option<String>,
    pub data: BTreeMap<String, String>,
}

impl Arrivals {
    /// Reads a CSV of arrivals: `seconds[,caller[,key=value;key=value]]` a line, in time
    /// order; a first line starting `seconds` is a header.
    pub fn load(&mut self, file: &str, text: &str) -> Result<(), ScenarioError> {
        let mut last = 0.0;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (n == 1 && line.starts_with("seconds")) {
                continue;
            }
            let mut fields = line.splitn(3, ',');
            let secs = fields.next().unwrap_or_default().trim();
            let secs = match secs.parse::<f64>() {
                Ok(s) if s >= 0.0 && s.is_finite() => s,
                _ => {
                    return refuse(format!(
                        "{file}: line {n}, field seconds: {secs:?} is not a time in seconds"
                    ));
                }
            };
            if secs < last {
                return refuse(format!(
                    "{file}: line {n}, field seconds: {secs} is before the line above ({last})"
                ));
            }
            last = secs;
            let caller = fields
                .next()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            let mut data = BTreeMap::new();
            for pair in fields.next().unwrap_or_default().split(';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let Some((k, v)) = pair.split_once('=') else {
                    return refuse(format!(
                        "{file}: line {n}, field data: {pair:?} is not key=value"
                    ));
                };
                data.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            self.times.push(Arrival { secs, caller, data });
        }
        if self.times.is_empty() {
            return refuse(format!("{file}: no arrivals"));
        }
        Ok(())
    }
}

/// Agents alike: their skills, groups, shifts and breaks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentProfile {
    pub name: String,
    pub count: u32,
    #[serde(default)]
    pub skills: BTreeMap<String, u32>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// When they work, as `HH:MM` from the start of the run (past 24:00 for later days);
    /// all the run when none is given.
    #[serde(default)]
    pub shifts: Vec<Shift>,
    /// Not-ready breaks, each taken once the agent is free.
    #[serde(default)]
    pub breaks: Vec<Break>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Break {
    pub at: String,
    pub minutes: f64,
}

/// `HH:MM` from the start of the run, in ms.
pub(super) fn offset_ms(what: &str, text: &str) -> Result<u64, ScenarioError> {
    let parsed = text.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?);
        (m < 60).then_some((h * 60 + m) * 60_000)
    });
    parsed.map_or_else(
        || refuse(format!("{what}: {text:?} is not a time HH:MM")),
        Ok,
    )
}

/// `YYYY-MM-DD` as unix ms at midnight UTC.
pub(super) fn day_ms(text: &str) -> Result<u64, ScenarioError> {
    let parts: Vec<_> = text.split('-').collect();
    let [y, m, d] = parts[..] else {
        return refuse(format!("start: {text:?} is not a date YYYY-MM-DD"));
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) else {
        return refuse(format!("start: {text:?} is not a date YYYY-MM-DD"));
    };
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return refuse(format!("start: {text:?} is not a date YYYY-MM-DD"));
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days as u64 * 86_400_000)
}

impl Scenario {
    /// Refuses rates, durations and shares that make no sense, before anything runs.
    pub fn check(&self) -> Result<(), ScenarioError> {
        day_ms(&self.start)?;
        if self.interval_minutes == 0 {
            return refuse("interval-minutes: must be above zero");
        }
        if self.intervals == Some(0) {
            return refuse("intervals: must be above zero");
        }
        if self.arrivals.is_empty() {
            return refuse("arrivals: no routing point receives calls");
        }
        if self.agents.is_empty() {
            return refuse("agents: no agents");
        }
        let durations = [
            ("service-level-secs", self.service_level_secs),
            ("ring-secs", self.ring_secs),
            ("announcement-secs", self.announcement_secs),
            ("wrap-up-secs", self.wrap_up_secs.unwrap_or(0.0)),
            ("rona-timeout-secs", self.rona_timeout_secs),
            ("rona-not-ready-secs", self.rona_not_ready_secs),
        ];
        for (name, value) in durations {
            if !(value >= 0.0 && value.is_finite()) {
                return refuse(format!("{name}: {value} is not a duration"));
            }
        }
        if !(0.0..=1.0).contains(&self.rona_share) {
            return refuse(format!(
                "rona-share: {} is not a share from 0 to 1",
                self.rona_share
            ));
        }
        if !(self.answer_percentile > 0.0 && self.answer_percentile <= 100.0) {
            return refuse("answer-percentile: from above 0 to 100");
        }
        self.handle.check("handle")?;
        if let Some(p) = &self.patience {
            p.check("patience")?;
        }
        for (i, a) in self.arrivals.iter().enumerate() {
            let what = format!("arrivals[{i}] ({})", a.routing_point);
            let given = [
                a.per_hour.is_some(),
                a.per_interval.is_some(),
                a.file.is_some() || !a.times.is_empty(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return refuse(format!(
                    "{what}: give exactly one of per-hour, per-interval and file"
                ));
            }
            if let Some(r) = a.per_hour
                && !(r > 0.0 && r.is_finite())
            {
                return refuse(format!("{what}: per-hour {r} must be above zero"));
            }
            if let Some(curve) = &a.per_interval {
                if curve.is_empty() || curve.iter().all(|r| *r == 0.0) {
                    return refuse(format!("{what}: per-interval has no calls"));
                }
                if let Some((n, r)) = curve
                    .iter()
                    .enumerate()
                    .find(|(_, r)| !(**r >= 0.0 && r.is_finite()))
                {
                    return refuse(format!(
                        "{what}: per-interval[{n}] {r} must be zero or more"
                    ));
                }
            }
        }
        for p in &self.agents {
            let what = format!("agents {:?}", p.name);
            if p.count == 0 {
                return refuse(format!("{what}: count must be above zero"));
            }
            for s in &p.shifts {
                let (start, end) = (
                    offset_ms(&format!("{what}: shift start"), &s.start)?,
                    offset_ms(&format!("{what}: shift end"), &s.end)?,
                );
                if end <= start {
                    return refuse(format!(
                        "{what}: shift {}-{} ends before it starts",
                        s.start, s.end
                    ));
                }
            }
            for b in &p.breaks {
                offset_ms(&format!("{what}: break at"), &b.at)?;
                if !(b.minutes > 0.0 && b.minutes.is_finite()) {
                    return refuse(format!(
                        "{what}: break at {}: minutes must be above zero",
                        b.at
                    ));
                }
            }
        }
        Ok(())
    }

    /// How many intervals calls arrive in.
    pub fn interval_count(&self) -> u32 {
        self.intervals.unwrap_or_else(|| {
            let curve = self
                .arrivals
                .iter()
                .filter_map(|a| a.per_interval.as_ref().map(Vec::len))
                .max();
            let from_file = self
                .arrivals
                .iter()
                .filter_map(|a| a.times.last())
                .map(|t| (t.secs / (self.interval_minutes as f64 * 60.0)) as u32 + 1)
                .max();
            match (curve, from_file) {
                (None, None) => 24 * 60 / self.interval_minutes.max(1),
                (c, f) => (c.unwrap_or(0) as u32).max(f.unwrap_or(0)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_of_day() {
        assert_eq!(day_ms("1970-01-01"), Ok(0));
        assert_eq!(day_ms("2026-01-05"), Ok(1_767_571_200_000));
        assert!(day_ms("2026-13-01").is_err());
        assert_eq!(offset_ms("x", "08:30"), Ok(30_600_000));
        assert_eq!(offset_ms("x", "30:00"), Ok(108_000_000));
        assert!(offset_ms("x", "8h").is_err());
    }

    #[test]
    fn a_malformed_csv_is_refused_naming_its_line_and_field() {
        let mut a = Arrivals {
            routing_point: "5000".into(),
            per_hour: None,
            per_interval: None,
            file: Some("day.csv".into()),
            caller: default_caller(),
            data: BTreeMap::new(),
            times: Vec::new(),
        };
        let e = a.load(
            "day.csv",
            "seconds,caller,data\n1.5,+1555,vip=yes\nsoon,+1\n",
        );
        assert_eq!(
            e.expect_err("refused").0,
            "day.csv: line 3, field seconds: \"soon\" is not a time in seconds"
        );
        let e = a.load("day.csv", "10\n12,,vip\n");
        assert_eq!(
            e.expect_err("refused").0,
            "day.csv: line 2, field data: \"vip\" is not key=value"
        );
        let e = a.load("day.csv", "10\n5\n");
        assert!(
            e.expect_err("refused")
                .0
                .contains("line 2, field seconds: 5 is before")
        );
    }
}
