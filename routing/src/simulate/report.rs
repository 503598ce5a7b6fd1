//! What a run reports: per routing point and queue, per interval and for the whole run, the
//! calls offered and what became of them, the service level and the speed of answer; per
//! agent profile, occupancy.

use std::collections::BTreeMap;

use serde::Serialize;

/// A run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub interval_minutes: u32,
    pub service_level_secs: f64,
    pub answer_percentile: f64,
    /// Per routing point, then per queue; each interval in order, then the whole run.
    pub rows: Vec<Row>,
    /// Per agent profile, each interval in order, then the whole run.
    pub profiles: Vec<ProfileRow>,
}

impl Report {
    /// The rows of `name` in `scope` (`routing-point` or `queue`): each interval's, in
    /// order, and the whole run's.
    pub fn of(&self, scope: &str, name: &str) -> (Vec<&Row>, Option<&Row>) {
        let mine = self
            .rows
            .iter()
            .filter(|r| r.scope == scope && r.name == name);
        let (all, intervals): (Vec<&Row>, Vec<&Row>) = mine.partition(|r| r.interval.is_none());
        (intervals, all.first().copied())
    }
}

/// Over several rows (a batch of intervals): answered within the threshold, of the calls
/// answered or abandoned, as a row's own `service_level`.
pub fn service_level(rows: &[&Row]) -> f64 {
    let within: u64 = rows.iter().map(|r| r.answered_in_threshold).sum();
    let decided: u64 = rows.iter().map(|r| r.answered + r.abandoned).sum();
    ratio(within as f64, decided as f64)
}

/// Over several rows: the average wait of the answered calls, seconds.
pub fn speed_of_answer(rows: &[&Row]) -> f64 {
    let waited: f64 = rows
        .iter()
        .map(|r| r.average_speed_of_answer * r.answered as f64)
        .sum();
    ratio(waited, rows.iter().map(|r| r.answered).sum::<u64>() as f64)
}

/// Over several rows: the share of the calls offered that were abandoned.
pub fn abandon_rate(rows: &[&Row]) -> f64 {
    let abandoned: u64 = rows.iter().map(|r| r.abandoned).sum();
    ratio(
        abandoned as f64,
        rows.iter().map(|r| r.offered).sum::<u64>() as f64,
    )
}

/// Batch means: the mean of `figure` over batches of `size` consecutive intervals (a last,
/// shorter batch left out), and the half-width of its 95 % confidence interval, for a long
/// run whose intervals are not independent but whose batches nearly are.
pub fn batch_means(rows: &[&Row], size: usize, figure: impl Fn(&[&Row]) -> f64) -> (f64, f64) {
    let values: Vec<f64> = rows
        .chunks(size.max(1))
        .filter(|c| c.len() == size)
        .map(figure)
        .collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// The calls of a routing point or queue in one interval (by their arrival), or in the
/// whole run (`interval` none). `offered = answered + abandoned + routed_away + unfinished`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// `routing-point` or `queue`.
    pub scope: &'static str,
    pub name: String,
    pub interval: Option<u32>,
    /// `HH:MM` from the run's start, or `all`.
    pub start: String,
    pub offered: u64,
    /// Answered by an agent.
    pub answered: u64,
    /// The caller hung up first.
    pub abandoned: u64,
    /// Routed elsewhere by the strategy (its default, a DN, a number, rejected).
    pub routed_away: u64,
    /// Still waiting when the run ended (no agent left and no patience).
    pub unfinished: u64,
    pub answered_in_threshold: u64,
    /// Answered within the threshold, of the calls answered or abandoned (0 with none).
    pub service_level: f64,
    /// Average wait of the answered calls, seconds.
    pub average_speed_of_answer: f64,
    /// The report's percentile of the answered calls' waits, seconds.
    pub speed_of_answer_percentile: f64,
    /// The longest wait of a call answered or abandoned, seconds.
    pub longest_wait: f64,
    /// Calls whose target or priority an overflow step changed.
    pub overflowed: u64,
}

/// An agent profile's time in one interval, or in the whole run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProfileRow {
    pub profile: String,
    pub interval: Option<u32>,
    pub start: String,
    /// Agent-seconds logged in and not on a break.
    pub staffed_secs: f64,
    /// Of those, on a call (ringing or talking) or in after-call work.
    pub busy_secs: f64,
    /// busy / staffed (0 when none staffed).
    pub occupancy: f64,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Answered,
    Abandoned,
    RoutedAway,
    Unfinished,
}

#[derive(Debug, Default)]
struct Calls {
    offered: u64,
    answered: u64,
    abandoned: u64,
    routed_away: u64,
    unfinished: u64,
    in_threshold: u64,
    wait_sum_ms: u64,
    answered_waits: Vec<u64>,
    longest_ms: u64,
    overflowed: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Time {
    staffed_ms: u64,
    busy_ms: u64,
}

/// A run's counts as it goes.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// (scope, name, interval or none for the run) to counts; scope 0 routing points, 1
    /// queues, so that routing points come first.
    calls: BTreeMap<(u8, String, Option<u32>), Calls>,
    /// (profile index, interval) to time.
    time: BTreeMap<(usize, Option<u32>), Time>,
}

impl Tally {
    /// A call that arrived in `interval` at `routing_point` (last waiting in `queue`)
    /// ended after waiting `wait_ms`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call(
        &mut self,
        routing_point: &str,
        queue: Option<&str>,
        interval: u32,
        end: End,
        wait_ms: u64,
        threshold_ms: u64,
        overflowed: bool,
    ) {
        let mut keys = vec![
            (0, routing_point.to_owned(), Some(interval)),
            (0, routing_point.to_owned(), None),
        ];
        if let Some(q) = queue {
            keys.push((1, q.to_owned(), Some(interval)));
            keys.push((1, q.to_owned(), None));
        }
        for key in keys {
            let c = self.calls.entry(key).or_default();
            c.offered += 1;
            c.overflowed += u64::from(overflowed);
            match end {
                End::Answered => {
                    c.answered += 1;
                    c.wait_sum_ms += wait_ms;
                    c.answered_waits.push(wait_ms);
                    c.in_threshold += u64::from(wait_ms <= threshold_ms);
                    c.longest_ms = c.longest_ms.max(wait_ms);
                }
                End::Abandoned => {
                    c.abandoned += 1;
                    c.longest_ms = c.longest_ms.max(wait_ms);
                }
                End::RoutedAway => c.routed_away += 1,
                End::Unfinished => c.unfinished += 1,
            }
        }
    }

    /// An agent of `profile` spent `ms` of `interval` staffed, busy or not.
    pub(super) fn time(&mut self, profile: usize, interval: u32, ms: u64, busy: bool) {
        for key in [(profile, Some(interval)), (profile, None)] {
            let t = self.time.entry(key).or_default();
            t.staffed_ms += ms;
            if busy {
                t.busy_ms += ms;
            }
        }
    }

    pub(super) fn report(
        self,
        interval_minutes: u32,
        service_level_secs: f64,
        answer_percentile: f64,
        profiles: &[String],
    ) -> Report {
        let start = |interval: Option<u32>| match interval {
            Some(i) => {
                let minutes = i * interval_minutes;
                format!("{:02}:{:02}", minutes / 60, minutes % 60)
            }
            None => "all".to_owned(),
        };
        // Each name's intervals in order, then its whole run.
        let order = |i: &Option<u32>| i.map_or(u64::MAX, u64::from);
        let mut calls: Vec<_> = self.calls.into_iter().collect();
        calls.sort_by(|a, b| (a.0.0, &a.0.1, order(&a.0.2)).cmp(&(b.0.0, &b.0.1, order(&b.0.2))));
        let rows = calls
            .into_iter()
            .map(|((scope, name, interval), mut c)| {
                c.answered_waits.sort_unstable();
                let percentile = if c.answered_waits.is_empty() {
                    0.0
                } else {
                    let rank =
                        (answer_percentile / 100.0 * c.answered_waits.len() as f64).ceil() as usize;
                    c.answered_waits[rank.clamp(1, c.answered_waits.len()) - 1] as f64 / 1000.0
                };
                let decided = c.answered + c.abandoned;
                Row {
                    scope: if scope == 0 { "routing-point" } else { "queue" },
                    name,
                    interval,
                    start: start(interval),
                    offered: c.offered,
                    answered: c.answered,
                    abandoned: c.abandoned,
                    routed_away: c.routed_away,
                    unfinished: c.unfinished,
                    answered_in_threshold: c.in_threshold,
                    service_level: ratio(c.in_threshold as f64, decided as f64),
                    average_speed_of_answer: ratio(
                        c.wait_sum_ms as f64 / 1000.0,
                        c.answered as f64,
                    ),
                    speed_of_answer_percentile: percentile,
                    longest_wait: c.longest_ms as f64 / 1000.0,
                    overflowed: c.overflowed,
                }
            })
            .collect();
        let mut time: Vec<_> = self.time.into_iter().collect();
        time.sort_by_key(|((p, i), _)| (*p, order(i)));
        let profiles = time
            .into_iter()
            .map(|((p, interval), t)| ProfileRow {
                profile: profiles[p].clone(),
                interval,
                start: start(interval),
                staffed_secs: t.staffed_ms as f64 / 1000.0,
                busy_secs: t.busy_ms as f64 / 1000.0,
                occupancy: ratio(t.busy_ms as f64, t.staffed_ms as f64),
            })
            .collect();
        Report {
            interval_minutes,
            service_level_secs,
            answer_percentile,
            rows,
            profiles,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}
