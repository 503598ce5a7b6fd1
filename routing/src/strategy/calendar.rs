//! The calendar of strategies: weekly opening hours and dates (holidays) in a fixed offset
//! from UTC, as `hours` and `calendar` statements write them, and whether a moment falls in
//! them. The civil calendar is proleptic Gregorian; time is unix milliseconds.

use super::parse::split_word;
use super::{StrategyError, refuse};

/// Weekly opening hours in a fixed offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hours {
    /// Per weekday (0 is Monday), minute ranges [from, to).
    pub(super) days: [Vec<(u32, u32)>; 7],
    pub(super) offset_min: i64,
}

/// Dates (days since 1970-01-01) in a fixed offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Calendar {
    pub(super) days: Vec<i64>,
    pub(super) offset_min: i64,
}

/// A compiled strategy.
const MINUTE_MS: i64 = 60_000;
const DAY_MIN: i64 = 24 * 60;

/// The day number (since 1970-01-01) at `now` (unix ms) in an offset from UTC.
pub(super) fn local_day(now: u64, offset_min: i64) -> i64 {
    (now as i64 / MINUTE_MS + offset_min).div_euclid(DAY_MIN)
}

impl Hours {
    pub(super) fn open(&self, now: u64) -> bool {
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
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn parse_date(line: usize, text: &str) -> Result<i64, StrategyError> {
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
pub(super) fn with_offset(line: usize, spec: &str) -> Result<(&str, i64), StrategyError> {
    let spec = spec.trim();
    match spec.rfind("utc") {
        Some(i) => Ok((spec[..i].trim(), parse_offset(line, spec[i + 3..].trim())?)),
        None => Ok((spec, 0)),
    }
}

pub(super) fn parse_hours(line: usize, spec: &str) -> Result<Hours, StrategyError> {
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
