//! A simulation's report for people (a table, charts) and for tools (CSV; JSON is the
//! report serialized as it is).

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use switchboard_routing::simulate::{ProfileRow, Report, Row};

/// Each routing point's and queue's intervals and day, then each agent profile's occupancy.
pub(super) fn table(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    let mut name = None;
    for r in &report.rows {
        if name != Some((r.scope, &r.name)) {
            name = Some((r.scope, &r.name));
            let scope = if r.scope == "queue" {
                "Queue"
            } else {
                "Routing point"
            };
            writeln!(
                out,
                "\n{scope} {}  (service level: answered within {} s; ASA and p{} of answered calls)",
                r.name, report.service_level_secs, report.answer_percentile
            )?;
            writeln!(
                out,
                "{:>6} {:>8} {:>8} {:>9} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8}",
                "start",
                "offered",
                "answered",
                "abandoned",
                "away",
                "unfin",
                "SL %",
                "ASA s",
                "p s",
                "longest",
                "overflow"
            )?;
        }
        writeln!(
            out,
            "{:>6} {:>8} {:>8} {:>9} {:>6} {:>6} {:>7.1} {:>8.1} {:>8.1} {:>8.1} {:>8}",
            r.start,
            r.offered,
            r.answered,
            r.abandoned,
            r.routed_away,
            r.unfinished,
            r.service_level * 100.0,
            r.average_speed_of_answer,
            r.speed_of_answer_percentile,
            r.longest_wait,
            r.overflowed
        )?;
    }
    let mut profile = None;
    for p in &report.profiles {
        if profile != Some(&p.profile) {
            profile = Some(&p.profile);
            writeln!(out, "\nAgents {}", p.profile)?;
            writeln!(
                out,
                "{:>6} {:>12} {:>12} {:>11}",
                "start", "staffed h", "busy h", "occupancy %"
            )?;
        }
        writeln!(
            out,
            "{:>6} {:>12.2} {:>12.2} {:>11.1}",
            p.start,
            p.staffed_secs / 3600.0,
            p.busy_secs / 3600.0,
            p.occupancy * 100.0
        )?;
    }
    Ok(())
}

/// One CSV: a line per routing point or queue and interval (kind `calls`), then per agent
/// profile and interval (kind `agents`); the interval is empty on a whole run's line.
pub(super) fn csv(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "kind,scope,name,interval,start,offered,answered,abandoned,routed_away,unfinished,answered_in_threshold,service_level,average_speed_of_answer,speed_of_answer_percentile,longest_wait,overflowed,staffed_secs,busy_secs,occupancy"
    )?;
    let interval = |i: Option<u32>| i.map(|i| i.to_string()).unwrap_or_default();
    for r in &report.rows {
        writeln!(
            out,
            "calls,{},{},{},{},{},{},{},{},{},{},{:.6},{:.3},{:.3},{:.3},{},,,",
            r.scope,
            quoted(&r.name),
            interval(r.interval),
            r.start,
            r.offered,
            r.answered,
            r.abandoned,
            r.routed_away,
            r.unfinished,
            r.answered_in_threshold,
            r.service_level,
            r.average_speed_of_answer,
            r.speed_of_answer_percentile,
            r.longest_wait,
            r.overflowed
        )?;
    }
    for p in &report.profiles {
        writeln!(
            out,
            "agents,profile,{},{},{},,,,,,,,,,,,{:.3},{:.3},{:.6}",
            quoted(&p.profile),
            interval(p.interval),
            p.start,
            p.staffed_secs,
            p.busy_secs,
            p.occupancy
        )?;
    }
    Ok(())
}

fn quoted(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The whole run of each routing point and queue in two scenarios, side by side, and which
/// did better: the higher service level, then fewer abandoned.
pub(super) fn comparison(
    out: &mut impl Write,
    names: &[String; 2],
    a: &Report,
    b: &Report,
) -> std::io::Result<()> {
    let day = |r: &Report| -> Vec<Row> {
        r.rows
            .iter()
            .filter(|r| r.interval.is_none())
            .cloned()
            .collect()
    };
    let (rows_a, rows_b) = (day(a), day(b));
    for ra in &rows_a {
        let Some(rb) = rows_b
            .iter()
            .find(|r| r.scope == ra.scope && r.name == ra.name)
        else {
            continue;
        };
        let scope = if ra.scope == "queue" {
            "Queue"
        } else {
            "Routing point"
        };
        writeln!(out, "\n{scope} {}, the whole run", ra.name)?;
        writeln!(
            out,
            "{:<22} {:>14} {:>14} {:>10}",
            "", names[0], names[1], "difference"
        )?;
        let lines: [(&str, f64, f64, usize); 7] = [
            ("offered", ra.offered as f64, rb.offered as f64, 0),
            ("answered", ra.answered as f64, rb.answered as f64, 0),
            ("abandoned", ra.abandoned as f64, rb.abandoned as f64, 0),
            (
                "service level %",
                ra.service_level * 100.0,
                rb.service_level * 100.0,
                1,
            ),
            (
                "ASA s",
                ra.average_speed_of_answer,
                rb.average_speed_of_answer,
                1,
            ),
            ("longest wait s", ra.longest_wait, rb.longest_wait, 1),
            ("overflowed", ra.overflowed as f64, rb.overflowed as f64, 0),
        ];
        for (what, x, y, digits) in lines {
            writeln!(
                out,
                "{what:<22} {x:>14.digits$} {y:>14.digits$} {:>+10.digits$}",
                y - x
            )?;
        }
        let better = match better(ra, rb) {
            Some(0) => names[0].as_str(),
            Some(_) => names[1].as_str(),
            None => "neither",
        };
        writeln!(out, "better: {better}")?;
    }
    Ok(())
}

/// Which of two runs did better: the higher service level, then fewer abandoned; none when
/// they are alike.
fn better(a: &Row, b: &Row) -> Option<usize> {
    if (a.service_level - b.service_level).abs() > 1e-9 {
        return Some(if a.service_level > b.service_level {
            0
        } else {
            1
        });
    }
    match a.abandoned.cmp(&b.abandoned) {
        std::cmp::Ordering::Less => Some(0),
        std::cmp::Ordering::Greater => Some(1),
        std::cmp::Ordering::Equal => None,
    }
}

/// Writes `service-level.svg`, `waiting.svg` and `occupancy.svg` into `dir`; with a second
/// run, its lines dashed beside the first's.
pub(super) fn charts(
    dir: &Path,
    report: &Report,
    other: Option<(&[String; 2], &Report)>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let runs: Vec<(&Report, String)> = match other {
        Some((names, b)) => vec![(report, names[0].clone()), (b, names[1].clone())],
        None => vec![(report, String::new())],
    };
    let label = |run: &str, what: &str| {
        if run.is_empty() {
            what.to_owned()
        } else {
            format!("{what} ({run})")
        }
    };
    let points = |r: &Report| -> Vec<Row> {
        r.rows
            .iter()
            .filter(|r| r.scope == "routing-point" && r.interval.is_some())
            .cloned()
            .collect()
    };
    let mut sl = Vec::new();
    let mut waits = Vec::new();
    let mut occupancy = Vec::new();
    for (dash, (r, run)) in runs.iter().enumerate() {
        let rows = points(r);
        let mut names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        names.dedup();
        for name in names {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.name == name).collect();
            let series = |f: &dyn Fn(&Row) -> f64| {
                mine.iter()
                    .map(|r| (r.interval.unwrap_or_default(), f(r)))
                    .collect::<Vec<_>>()
            };
            sl.push(Series {
                label: label(run, &format!("{name} service level")),
                values: series(&|r| r.service_level * 100.0),
                dashed: dash > 0,
            });
            waits.push(Series {
                label: label(run, &format!("{name} ASA")),
                values: series(&|r| r.average_speed_of_answer),
                dashed: dash > 0,
            });
            waits.push(Series {
                label: label(run, &format!("{name} p{}", report.answer_percentile)),
                values: series(&|r| r.speed_of_answer_percentile),
                dashed: dash > 0,
            });
        }
        let profiles: Vec<&ProfileRow> =
            r.profiles.iter().filter(|p| p.interval.is_some()).collect();
        let mut names: Vec<&str> = profiles.iter().map(|p| p.profile.as_str()).collect();
        names.dedup();
        for name in names {
            occupancy.push(Series {
                label: label(run, &format!("{name} occupancy")),
                values: profiles
                    .iter()
                    .filter(|p| p.profile == name)
                    .map(|p| (p.interval.unwrap_or_default(), p.occupancy * 100.0))
                    .collect(),
                dashed: dash > 0,
            });
        }
    }
    let minutes = report.interval_minutes;
    let charts = [
        (
            "service-level.svg",
            "Service level per interval",
            "%",
            Some(100.0),
            sl,
        ),
        (
            "waiting.svg",
            "Speed of answer per interval",
            "seconds",
            None,
            waits,
        ),
        (
            "occupancy.svg",
            "Occupancy per interval",
            "%",
            Some(100.0),
            occupancy,
        ),
    ];
    for (file, title, unit, top, series) in charts {
        let path = dir.join(file);
        std::fs::write(&path, line_chart(title, unit, top, minutes, &series))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

struct Series {
    label: String,
    /// (interval, value), in order.
    values: Vec<(u32, f64)>,
    dashed: bool,
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// A line chart of `series` over the intervals, in SVG.
fn line_chart(
    title: &str,
    unit: &str,
    top: Option<f64>,
    interval_minutes: u32,
    series: &[Series],
) -> String {
    let (w, h, left, right, upper, lower) = (900.0, 420.0, 60.0, 20.0, 40.0, 90.0);
    let intervals = series.iter().flat_map(|s| s.values.iter().map(|(i, _)| *i));
    let first = intervals.clone().min().unwrap_or(0);
    let last = intervals.max().unwrap_or(0).max(first + 1);
    let highest = series
        .iter()
        .flat_map(|s| s.values.iter().map(|(_, v)| *v))
        .fold(0.0f64, f64::max);
    let top = top.unwrap_or_else(|| nice(highest.max(1.0)));
    let x = |i: u32| left + (w - left - right) * f64::from(i - first) / f64::from(last - first);
    let y = |v: f64| upper + (h - upper - lower) * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"24\" font-size=\"16\">{}</text>\n",
        escape(title)
    );
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            w - right,
            left - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
        h / 2.0,
        h / 2.0,
        escape(unit)
    );
    let step = ((last - first) / 12).max(1) as usize;
    for i in (first..=last).step_by(step) {
        let minutes = i * interval_minutes;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:02}:{:02}</text>",
            x(i),
            h - lower + 18.0,
            minutes / 60,
            minutes % 60
        );
    }
    for (k, s) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v)))
            .collect();
        let dash = if s.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
            points.join(" ")
        );
        let ly = h - lower + 38.0 + 16.0 * (k / 3) as f64;
        let lx = left + 270.0 * (k % 3) as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round number at or above `v`, for an axis.
fn nice(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
