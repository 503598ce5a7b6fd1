//! `switchboard simulate` as a planner runs it: the example day on the demo tenant's support
//! line (its report's arithmetic), the same scenario and seed in two processes (the same
//! bytes), agents' shifts and breaks, `--compare` finding the better of two strategies, and
//! each kind of bad input refused with nothing run; the tenant from `config export`'s file
//! and from PostgreSQL, with the version of a strategy a scenario names.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn switchboard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.env_remove("SWITCHBOARD_POSTGRES");
    c
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/simulate/support-day.toml")
}

fn simulate(args: &[&str]) -> Output {
    switchboard()
        .arg("simulate")
        .args(args)
        .output()
        .expect("switchboard runs")
}

/// Runs a simulation that must succeed; its standard output.
fn report(args: &[&str]) -> String {
    let out = simulate(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs a simulation that must be refused: its error, having printed no report.
fn refused(args: &[&str]) -> String {
    let out = simulate(args);
    assert!(
        !out.status.success(),
        "ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "a report was printed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&report(args)).expect("JSON")
}

/// The example day on the demo's `support` strategy: every interval's calls add up
/// (answered, abandoned, routed away and unfinished make the offered), the whole run's are
/// the intervals' sums, the overflow after 30 s is taken, and the agents' time stays within
/// their shifts.
#[test]
fn the_demo_support_line_reports_calls_that_add_up() {
    let example = example();
    let report = json(&[example.to_str().expect("path"), "--format", "json"]);
    let rows = report["rows"].as_array().expect("rows");
    let of = |r: &serde_json::Value, k: &str| r[k].as_u64().expect(k);
    let point: Vec<_> = rows
        .iter()
        .filter(|r| r["scope"] == "routing-point" && r["name"] == "5000")
        .collect();
    let (all, intervals) = point.split_last().expect("rows");
    assert!(all["interval"].is_null());
    assert!(intervals.len() >= 15, "{}", intervals.len());
    for r in intervals.iter().chain([all]) {
        assert_eq!(
            of(r, "offered"),
            of(r, "answered") + of(r, "abandoned") + of(r, "routed_away") + of(r, "unfinished"),
            "{r}"
        );
        // Calls arrive from 08:00 (interval 16 of the day) to 18:00.
        if let Some(i) = r["interval"].as_u64() {
            assert!((16..36).contains(&i), "{r}");
        }
    }
    for k in ["offered", "answered", "abandoned", "overflowed"] {
        let sum: u64 = intervals.iter().map(|r| of(r, k)).sum();
        assert_eq!(sum, of(all, k), "{k}");
    }
    assert!(of(all, "offered") > 900, "{all}");
    assert!(
        of(all, "overflowed") > 0,
        "the overflow to the support group is taken"
    );
    assert!(
        of(all, "abandoned") > 0,
        "callers of 150 s patience give up in the peaks"
    );
    // The queue's own rows count the same calls.
    let queue = rows
        .iter()
        .find(|r| r["scope"] == "queue" && r["name"] == "support" && r["interval"].is_null())
        .expect("the support queue");
    assert_eq!(of(queue, "offered"), of(all, "offered"));
    // The experts work 08:00 to 16:30 (intervals 16 to 32, and 33 for a call in hand at
    // the end), less their breaks.
    let experts: Vec<_> = report["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .filter(|p| p["profile"] == "experts" && !p["interval"].is_null())
        .collect();
    assert!(
        experts
            .iter()
            .all(|p| (16..=33).contains(&p["interval"].as_u64().expect("interval")))
    );
    let staffed: f64 = experts
        .iter()
        .map(|p| p["staffed_secs"].as_f64().expect("staffed"))
        .sum();
    // 8 agents, 8.5 hours, 45 minutes of breaks each (taken once free, so a little later).
    assert!(
        (staffed - 8.0 * (8.5 - 0.75) * 3600.0).abs() < 8.0 * 600.0,
        "{staffed}"
    );
}

/// The same scenario and seed in two processes give the same bytes, as JSON and as CSV; a
/// different seed gives other figures.
#[test]
fn the_same_scenario_and_seed_give_the_same_bytes_in_two_processes() {
    let example = example();
    let path = example.to_str().expect("path");
    for format in ["json", "csv", "table"] {
        let first = report(&[path, "--format", format]);
        let second = report(&[path, "--format", format]);
        assert_eq!(first, second, "{format}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(&example).expect("example");
    let other = dir.path().join("other-seed.toml");
    std::fs::write(&other, text.replace("seed = 42", "seed = 43")).expect("write");
    assert_ne!(
        report(&[path, "--format", "csv"]),
        report(&[other.to_str().expect("path"), "--format", "csv"])
    );
}

/// A scenario in `dir` on the demo tenant: `body` after the common part (calls of 180 s on
/// average, unless `body` says otherwise).
fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let handle = if body.contains("handle =") {
        ""
    } else {
        "handle = { distribution = \"exponential\", mean-secs = 180 }\n"
    };
    std::fs::write(
        &path,
        format!("seed = 7\ninterval-minutes = 30\n{handle}{body}"),
    )
    .expect("write");
    path
}

/// One agent on a shift of 01:00 to 03:00 with a break at 02:00: staffed only then, less
/// the break, and no call answered outside it. Its calls last 60 or 120 s, from a file.
#[test]
fn agents_leave_and_return_on_time_for_their_shifts_and_breaks() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("handle.txt"), "# seconds\n60\n120\n").expect("write");
    let path = scenario(
        dir.path(),
        "shift.toml",
        r#"intervals = 8
handle = { distribution = "empirical", file = "handle.txt" }

[[arrivals]]
routing-point = "5000"
per-hour = 6

[[agents]]
name = "late"
count = 1
skills = { english = 5 }
groups = ["support"]
shifts = [{ start = "01:00", end = "03:00" }]
breaks = [{ at = "02:00", minutes = 20 }]

[routing."5000"]
strategy = 'queue support target "english >= 1"'
"#,
    );
    let report = json(&[path.to_str().expect("path"), "--format", "json"]);
    let staffed: Vec<(u64, f64)> = report["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .filter(|p| !p["interval"].is_null())
        .map(|p| {
            (
                p["interval"].as_u64().expect("interval"),
                p["staffed_secs"].as_f64().expect("staffed"),
            )
        })
        .collect();
    let busy: f64 = report["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .filter(|p| p["interval"].is_null())
        .map(|p| p["busy_secs"].as_f64().expect("busy"))
        .sum();
    let all = report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["scope"] == "routing-point" && r["interval"].is_null())
        .expect("the run");
    let answered = all["answered"].as_f64().expect("answered");
    assert!(
        busy >= 60.0 * answered && busy <= 120.0 * answered,
        "{busy} s busy for {answered} calls of 60 or 120 s"
    );
    let intervals: Vec<u64> = staffed.iter().map(|(i, _)| *i).collect();
    assert_eq!(intervals, [2, 3, 4, 5], "01:00 to 03:00");
    // A break taken at 02:00 when free, else when the call in hand ends: 20 minutes out
    // of the 02:00 to 03:00 hour, and the whole of 01:00 to 02:00 staffed.
    assert_eq!(staffed[0].1 + staffed[1].1, 3600.0, "{staffed:?}");
    let second_hour = staffed[2].1 + staffed[3].1;
    assert!(second_hour <= 2400.0 && second_hour > 1800.0, "{staffed:?}");
    // Calls that came before 01:00 waited for the shift: those of 00:00 to 00:30 half an
    // hour at least.
    let rows = report["rows"].as_array().expect("rows");
    let early = rows
        .iter()
        .find(|r| r["scope"] == "routing-point" && r["interval"] == 0)
        .expect("calls from 00:00");
    assert!(early["answered"].as_u64() > Some(0), "{early}");
    assert!(
        early["average_speed_of_answer"].as_f64().expect("ASA") >= 1800.0,
        "{early}"
    );
}

/// Overflow after 30 s to the whole support group against none: `--compare` runs both on the
/// first's seed and names the one with overflow better.
#[test]
fn compare_finds_the_strategy_with_overflow_better() {
    let dir = tempfile::tempdir().expect("temp dir");
    let common = r#"intervals = 8
patience = { distribution = "exponential", mean-secs = 120 }

[[arrivals]]
routing-point = "5000"
per-hour = 60

[[agents]]
name = "experts"
count = 2
skills = { english = 5 }
groups = ["support"]

[[agents]]
name = "generalists"
count = 3
skills = { english = 1 }
groups = ["support"]
"#;
    let without = scenario(
        dir.path(),
        "experts-only.toml",
        &format!(
            "{common}\n[routing.\"5000\"]\nstrategy = 'queue support target \"english >= 3\"'\n"
        ),
    );
    let with = scenario(
        dir.path(),
        "overflow.toml",
        &format!(
            "{common}\n[routing.\"5000\"]\nstrategy = \"\"\"\nqueue support target \"english >= 3\"\n  after 30s target \"group:support\"\n\"\"\"\n"
        ),
    );
    let charts = dir.path().join("charts");
    let table = report(&[
        without.to_str().expect("path"),
        "--compare",
        with.to_str().expect("path"),
        "--charts",
        charts.to_str().expect("path"),
    ]);
    assert!(
        table.contains("Routing point 5000, the whole run"),
        "{table}"
    );
    assert!(table.contains("better: overflow"), "{table}");
    // Both runs met the same callers.
    let offered = table
        .lines()
        .find(|l| l.starts_with("offered"))
        .expect("offered");
    let counts: Vec<&str> = offered.split_whitespace().collect();
    assert_eq!(counts[1], counts[2], "{offered}");
    let svg = std::fs::read_to_string(charts.join("service-level.svg")).expect("chart");
    assert!(svg.contains("stroke-dasharray"), "the second run dashed");
    assert!(svg.contains("5000 service level (overflow)"));
}

/// Each bad input names what is wrong, and nothing runs.
#[test]
fn bad_scenarios_are_refused_naming_the_line_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agents =
        "[[agents]]\nname = \"a\"\ncount = 2\nskills = { english = 5 }\ngroups = [\"support\"]\n";
    let arrivals = |rp: &str, rate: &str| {
        format!("[[arrivals]]\nrouting-point = \"{rp}\"\nper-hour = {rate}\n\n{agents}")
    };
    let cases = [
        ("rp.toml", arrivals("6000", "10"), "no routing point \"6000\""),
        ("zero.toml", arrivals("5000", "0"), "per-hour 0 must be above zero"),
        ("negative.toml", arrivals("5000", "-5"), "per-hour -5 must be above zero"),
        (
            "skill.toml",
            format!(
                "{}\n[[agents]]\nname = \"b\"\ncount = 1\nskills = {{ klingon = 3 }}\n",
                arrivals("5000", "10")
            ),
            "agents \"b\": the tenant has no skill \"klingon\"",
        ),
        (
            "group.toml",
            format!(
                "{}\n[[agents]]\nname = \"c\"\ncount = 1\ngroups = [\"night\"]\n",
                arrivals("5000", "10")
            ),
            "agents \"c\": the tenant has no agent group \"night\"",
        ),
        (
            "never.toml",
            "[[arrivals]]\nrouting-point = \"5000\"\nper-hour = 10\n\n[[agents]]\nname = \"sales\"\ncount = 3\nskills = { sales = 5 }\n".to_owned(),
            "routing point 5000: line 10: no agent of the scenario can serve queue \"support\"",
        ),
        (
            "csv.toml",
            format!("[[arrivals]]\nrouting-point = \"5000\"\nfile = \"day.csv\"\n\n{agents}"),
            "day.csv: line 3, field seconds: \"8am\" is not a time in seconds",
        ),
        (
            "empirical.toml",
            format!(
                "handle = {{ distribution = \"empirical\", file = \"bad-handle.txt\" }}\n{}",
                arrivals("5000", "10")
            ),
            "bad-handle.txt: line 2: \"2m\" is not a duration in seconds",
        ),
        (
            "queue.toml",
            format!(
                "{}\n[routing.\"5000\"]\nstrategy = 'queue nightshift target \"english >= 1\"'\n",
                arrivals("5000", "10")
            ),
            "unknown queue \"nightshift\"",
        ),
    ];
    std::fs::write(
        dir.path().join("day.csv"),
        "seconds,caller\n10,+1555\n8am,+1556\n",
    )
    .expect("csv");
    std::fs::write(dir.path().join("bad-handle.txt"), "60\n2m\n").expect("file");
    for (name, body, says) in cases {
        let path = scenario(dir.path(), name, &body);
        let why = refused(&[path.to_str().expect("path")]);
        assert!(why.contains(says), "{name}: {why}");
    }
}

/// The demo tenant exported to a file with a second version of its `support` strategy (no
/// overflow, anyone with English): the latest version runs unless the scenario names
/// another; and the same tenant imported into PostgreSQL gives the same report, byte for
/// byte.
#[test]
fn the_tenant_comes_from_a_file_or_postgresql_with_the_strategy_version_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (status, exported, err) = support::switchboard(&["config", "export", "--with-secrets"]);
    assert!(status.success(), "{err}");
    let tenants = dir.path().join("tenants.toml");
    let version_2 = "[[tenants.strategies]]\nname = \"support\"\nversion = 2\ndocument = 'queue support target \"english >= 1\"'\n";
    std::fs::write(&tenants, format!("{exported}\n{version_2}")).expect("write");
    let example = example();
    let latest = report(&[
        example.to_str().expect("path"),
        "--tenant-file",
        tenants.to_str().expect("path"),
        "--format",
        "csv",
    ]);
    let overflowed = |csv: &str| -> u64 {
        let line = csv
            .lines()
            .find(|l| l.starts_with("calls,routing-point,5000,,all,"))
            .expect("the run's line");
        line.split(',')
            .nth(15)
            .expect("overflowed")
            .parse()
            .expect("a count")
    };
    assert_eq!(overflowed(&latest), 0, "version 2 has no overflow");

    let text = std::fs::read_to_string(&example).expect("example");
    let pinned = dir.path().join("version-1.toml");
    std::fs::write(
        &pinned,
        format!("{text}\n[routing.\"5000\"]\nstrategy-version = 1\n"),
    )
    .expect("write");
    let first = report(&[
        pinned.to_str().expect("path"),
        "--tenant-file",
        tenants.to_str().expect("path"),
        "--format",
        "csv",
    ]);
    assert!(overflowed(&first) > 0, "version 1 overflows after 30 s");
    assert_eq!(
        first,
        report(&[example.to_str().expect("path"), "--format", "csv"]),
        "version 1 is the demo's strategy"
    );
    let absent = dir.path().join("version-9.toml");
    std::fs::write(
        &absent,
        format!("{text}\n[routing.\"5000\"]\nstrategy-version = 9\n"),
    )
    .expect("write");
    let why = refused(&[
        absent.to_str().expect("path"),
        "--tenant-file",
        tenants.to_str().expect("path"),
    ]);
    assert!(
        why.contains("strategy \"support\" has no version 9"),
        "{why}"
    );

    let url = support::postgres_db("sb_simulate");
    let (status, _, err) = support::switchboard(&[
        "config",
        "import",
        tenants.to_str().expect("path"),
        "--postgres",
        &url,
    ]);
    assert!(status.success(), "{err}");
    let from_postgres = report(&[
        example.to_str().expect("path"),
        "--postgres",
        &url,
        "--tenant",
        "demo",
        "--format",
        "csv",
    ]);
    assert_eq!(from_postgres, latest);
}

/// Agents' phones that let a share of calls ring unanswered (RONA): each such call waits
/// again with its age and is answered later, so the same callers wait longer, and none is
/// lost.
#[test]
fn calls_that_ring_unanswered_wait_again_and_are_answered_later() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |share: f64| {
        let path = scenario(
            dir.path(),
            &format!("rona-{share}.toml"),
            &format!(
                r#"intervals = 8
rona-share = {share}
rona-timeout-secs = 15

[[arrivals]]
routing-point = "5000"
per-hour = 60

[[agents]]
name = "support"
count = 4
skills = {{ english = 5 }}
groups = ["support"]

[routing."5000"]
strategy = 'queue support target "english >= 1"'
"#
            ),
        );
        let report = json(&[path.to_str().expect("path"), "--format", "json"]);
        report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["scope"] == "routing-point" && r["interval"].is_null())
            .cloned()
            .expect("the run")
    };
    let (answered, rona) = (run(0.0), run(0.3));
    assert_eq!(rona["offered"], answered["offered"], "the same callers");
    assert_eq!(rona["answered"], rona["offered"], "{rona}");
    let asa = |r: &serde_json::Value| r["average_speed_of_answer"].as_f64().expect("ASA");
    assert!(
        asa(&rona) > asa(&answered) + 4.5,
        "{} s against {} s",
        asa(&rona),
        asa(&answered)
    );
}

/// Agents wrap up as the tenant says (its `wrap_up_secs`) unless the scenario says otherwise:
/// calls of exactly 60 s keep an agent busy 120 s each with the tenant's 60 s of after-call
/// work, 60 s with the scenario's `wrap-up-secs = 0`.
#[test]
fn agents_wrap_up_as_the_tenant_says_unless_the_scenario_says_otherwise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (status, exported, err) = support::switchboard(&["config", "export", "--with-secrets"]);
    assert!(status.success(), "{err}");
    let tenants = dir.path().join("tenants.toml");
    assert!(exported.contains("wrap_up_secs = 0\n"), "{exported}");
    std::fs::write(
        &tenants,
        exported.replacen("wrap_up_secs = 0\n", "wrap_up_secs = 60\n", 1),
    )
    .expect("write");
    let busy_per_call = |wrap_up: &str| {
        let path = scenario(
            dir.path(),
            &format!("wrap{}.toml", wrap_up.len()),
            &format!(
                r#"handle = {{ distribution = "fixed", mean-secs = 60 }}
intervals = 4
{wrap_up}
[[arrivals]]
routing-point = "5000"
per-hour = 20

[[agents]]
name = "support"
count = 10
skills = {{ english = 5 }}
groups = ["support"]
"#
            ),
        );
        let report = json(&[
            path.to_str().expect("path"),
            "--tenant-file",
            tenants.to_str().expect("path"),
            "--format",
            "json",
        ]);
        let all = report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["scope"] == "routing-point" && r["interval"].is_null())
            .cloned()
            .expect("the run");
        let busy = report["profiles"]
            .as_array()
            .expect("profiles")
            .iter()
            .find(|p| p["interval"].is_null())
            .and_then(|p| p["busy_secs"].as_f64())
            .expect("busy");
        busy / all["answered"].as_f64().expect("answered")
    };
    let tenant = busy_per_call("");
    let scenario = busy_per_call("wrap-up-secs = 0");
    // Calls still in after-call work at the run's end count only up to it.
    assert!((110.0..=120.0).contains(&tenant), "{tenant}");
    assert!((55.0..=60.0).contains(&scenario), "{scenario}");
}
