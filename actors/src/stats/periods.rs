//! What one scope (the tenant, a queue, an agent, an agent group) counted over the two periods
//! a supervisor looks at: the last 15 minutes (the current minute and the 14 before it, kept
//! as one bucket a minute) and today, since midnight in the tenant's time zone.

use std::collections::VecDeque;

use jiff::civil::Date;
use jiff::tz::TimeZone;

/// Minutes in the sliding window.
pub const WINDOW_MINUTES: u64 = 15;
const MINUTE_MS: u64 = 60_000;

/// Counts of one scope over one period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Calls that entered the queue.
    pub offered: u64,
    /// Calls an agent (or the destination they were routed to) answered.
    pub answered: u64,
    /// Of those, answered within the service-level threshold.
    pub answered_in_time: u64,
    /// Callers who hung up while waiting.
    pub abandoned: u64,
    /// Of those, within the short-abandon threshold.
    pub short_abandoned: u64,
    /// Milliseconds from entering the queue to the answer, summed over the answered calls.
    pub answer_ms: u64,
    /// Calls whose handling (talk, hold, after-call work) is over, and its milliseconds.
    pub handled: u64,
    pub handle_ms: u64,
    /// Calls transferred by their agent.
    pub transfers: u64,
    /// Agents' milliseconds busy (on calls or in after-call work) and Ready.
    pub busy_ms: u64,
    pub ready_ms: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.offered += o.offered;
        self.answered += o.answered;
        self.answered_in_time += o.answered_in_time;
        self.abandoned += o.abandoned;
        self.short_abandoned += o.short_abandoned;
        self.answer_ms += o.answer_ms;
        self.handled += o.handled;
        self.handle_ms += o.handle_ms;
        self.transfers += o.transfers;
        self.busy_ms += o.busy_ms;
        self.ready_ms += o.ready_ms;
    }

    /// Answered within the threshold / (answered + abandoned after the short-abandon
    /// threshold); none before any such call.
    pub fn service_level(&self) -> Option<f64> {
        let counted = self.answered + self.abandoned - self.short_abandoned;
        (counted > 0).then(|| self.answered_in_time as f64 / counted as f64)
    }

    /// The average speed of answer.
    pub fn average_answer_ms(&self) -> Option<u64> {
        (self.answered > 0).then(|| self.answer_ms / self.answered)
    }

    /// The average handle time: talk, hold and after-call work.
    pub fn average_handle_ms(&self) -> Option<u64> {
        (self.handled > 0).then(|| self.handle_ms / self.handled)
    }

    /// Busy / (busy + Ready).
    pub fn occupancy(&self) -> Option<f64> {
        let staffed = self.busy_ms + self.ready_ms;
        (staffed > 0).then(|| self.busy_ms as f64 / staffed as f64)
    }
}

/// The start of the window that ends at `now_ms`: the start of the minute 14 minutes
/// before the current one.
pub fn window_start(now_ms: u64) -> u64 {
    (now_ms / MINUTE_MS).saturating_sub(WINDOW_MINUTES - 1) * MINUTE_MS
}

/// The calendar day of `at_ms` in `tz`, and when it began (UTC milliseconds).
pub fn day_of(tz: &TimeZone, at_ms: u64) -> (Date, u64) {
    let Ok(at) = jiff::Timestamp::from_millisecond(at_ms as i64) else {
        return (Date::default(), 0);
    };
    let zoned = at.to_zoned(tz.clone());
    let date = zoned.date();
    let start = zoned
        .start_of_day()
        .map_or(0, |s| s.timestamp().as_millisecond().max(0) as u64);
    (date, start)
}

/// The local day of `at_ms` in `tz`: when it began and when the next one begins (UTC
/// milliseconds).
fn day_bounds(tz: &TimeZone, at_ms: u64) -> (u64, u64) {
    let Ok(at) = jiff::Timestamp::from_millisecond(at_ms as i64) else {
        return (0, u64::MAX);
    };
    let zoned = at.to_zoned(tz.clone());
    let ms = |z: jiff::Zoned| z.timestamp().as_millisecond().max(0) as u64;
    let start = zoned.start_of_day().map_or(0, ms);
    let end = zoned
        .tomorrow()
        .and_then(|t| t.start_of_day())
        .map_or(u64::MAX, ms);
    (start, end)
}

/// A scope's counts by minute over the window, and for today.
#[derive(Debug, Default, Clone)]
pub struct Periods {
    /// (minute since the epoch, its counts), oldest first.
    minutes: VecDeque<(u64, Counts)>,
    /// The day counted (from its start to the next day's, UTC milliseconds, worked out once
    /// a day rather than for each event), and its counts.
    today: Option<(u64, u64, Counts)>,
}

impl Periods {
    /// Adds what `change` counts at `at_ms` (an event's time) to its minute and its day.
    pub fn count(&mut self, tz: &TimeZone, at_ms: u64, change: impl Fn(&mut Counts)) {
        if let Some(counts) = self.minute(at_ms) {
            change(counts);
        }
        if let Some(counts) = self.day(tz, at_ms) {
            change(counts);
        }
    }

    /// Adds the time from `from_ms` to `to_ms` an agent spent busy or Ready, split over the
    /// minutes it spans (those still in the window of `to_ms`) and the part of it in the day
    /// of `to_ms`.
    pub fn time(&mut self, tz: &TimeZone, from_ms: u64, to_ms: u64, busy: bool) {
        if to_ms <= from_ms {
            return;
        }
        let add = |c: &mut Counts, ms: u64| {
            if busy {
                c.busy_ms += ms;
            } else {
                c.ready_ms += ms;
            }
        };
        let mut start = from_ms.max(window_start(to_ms));
        while start < to_ms {
            let end = ((start / MINUTE_MS + 1) * MINUTE_MS).min(to_ms);
            if let Some(counts) = self.minute(start) {
                add(counts, end - start);
            }
            start = end;
        }
        if self.day(tz, to_ms).is_some()
            && let Some((midnight, _, counts)) = self.today.as_mut()
        {
            let in_day = to_ms - from_ms.max(*midnight);
            add(counts, in_day);
        }
    }

    /// The counts of the window that ends at `now_ms`.
    pub fn window(&self, now_ms: u64) -> Counts {
        let first = window_start(now_ms) / MINUTE_MS;
        let mut total = Counts::default();
        for (_, c) in self.minutes.iter().filter(|(m, _)| *m >= first) {
            total.add(c);
        }
        total
    }

    /// Today's counts: those of the day counted if `now_ms` is in it, none otherwise (a day
    /// with nothing counted yet).
    pub fn today(&self, now_ms: u64) -> Counts {
        match &self.today {
            Some((start, end, counts)) if (*start..*end).contains(&now_ms) => *counts,
            _ => Counts::default(),
        }
    }

    /// The bucket of `at_ms`'s minute, made if need be; none for a minute already out of
    /// every window to come.
    fn minute(&mut self, at_ms: u64) -> Option<&mut Counts> {
        let minute = at_ms / MINUTE_MS;
        let newest = self.minutes.back().map_or(0, |(m, _)| *m);
        if minute + WINDOW_MINUTES <= newest {
            return None;
        }
        if minute > newest || self.minutes.is_empty() {
            self.minutes.push_back((minute, Counts::default()));
            let first = minute.saturating_sub(WINDOW_MINUTES - 1);
            while self.minutes.front().is_some_and(|(m, _)| *m < first) {
                self.minutes.pop_front();
            }
            return self.minutes.back_mut().map(|(_, c)| c);
        }
        // An event a little late for its minute: its bucket, made in its place if missing.
        let at = self.minutes.partition_point(|(m, _)| *m < minute);
        if self.minutes.get(at).is_none_or(|(m, _)| *m != minute) {
            self.minutes.insert(at, (minute, Counts::default()));
        }
        self.minutes.get_mut(at).map(|(_, c)| c)
    }

    /// Today's counts for an event at `at_ms`: a new day starts them afresh; an event of a
    /// day before counts for no day any more.
    fn day(&mut self, tz: &TimeZone, at_ms: u64) -> Option<&mut Counts> {
        match &self.today {
            Some((start, end, _)) if (*start..*end).contains(&at_ms) => {}
            Some((start, _, _)) if at_ms < *start => return None,
            _ => {
                let (start, end) = day_bounds(tz, at_ms);
                self.today = Some((start, end, Counts::default()));
            }
        }
        self.today.as_mut().map(|(_, _, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn the_window_keeps_fifteen_minutes_and_the_day_restarts_at_local_midnight() {
        let tz = TimeZone::get("America/New_York").expect("zone");
        // 2026-12-04 23:50 in New York is 2026-12-05 04:50 UTC.
        let t0: u64 = 1_796_446_200_000;
        let (date, midnight) = day_of(&tz, t0);
        assert_eq!(date.to_string(), "2026-12-04");
        assert_eq!(t0 - midnight, (23 * 60 + 50) * MIN);
        let mut p = Periods::default();
        p.count(&tz, t0, |c| c.offered += 1);
        p.count(&tz, t0 + 5 * MIN, |c| c.offered += 1);
        assert_eq!(p.window(t0 + 5 * MIN).offered, 2);
        assert_eq!(p.today(t0 + 5 * MIN).offered, 2);
        // Past local midnight: today starts again, the window still holds both.
        p.count(&tz, t0 + 11 * MIN, |c| c.offered += 1);
        assert_eq!(p.today(t0 + 11 * MIN).offered, 1);
        assert_eq!(p.window(t0 + 11 * MIN).offered, 3);
        // Fifteen minutes after the first, it is out of the window.
        assert_eq!(p.window(t0 + 15 * MIN).offered, 2);
        assert_eq!(p.window(t0 + 40 * MIN).offered, 0);
    }

    #[test]
    fn agent_time_is_split_over_minutes_and_cut_at_midnight() {
        let tz = TimeZone::UTC;
        let midnight: u64 = 1_796_428_800_000; // 2026-12-05 00:00 UTC
        let mut p = Periods::default();
        // Busy from 23:50 to 00:10: ten minutes count today, all twenty in the window.
        p.time(&tz, midnight - 10 * MIN, midnight + 10 * MIN, true);
        p.time(&tz, midnight + 10 * MIN, midnight + 12 * MIN, false);
        let now = midnight + 12 * MIN;
        assert_eq!(p.today(now).busy_ms, 10 * MIN);
        assert_eq!(p.today(now).ready_ms, 2 * MIN);
        // The window starts at 23:58.
        assert_eq!(p.window(now).busy_ms, 12 * MIN);
        assert_eq!(p.window(now).occupancy(), Some(12.0 / 14.0));
    }

    #[test]
    fn service_level_leaves_out_short_abandons() {
        let c = Counts {
            answered: 3,
            answered_in_time: 2,
            abandoned: 2,
            short_abandoned: 1,
            ..Counts::default()
        };
        assert_eq!(c.service_level(), Some(0.5));
        assert_eq!(Counts::default().service_level(), None);
    }
}
