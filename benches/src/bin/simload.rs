//! The simulator's benchmarks (release build):
//!
//! - `day`: a day of 100,000 calls over 500 agents of five profiles with skills, two
//!   routing points whose strategies overflow, and callers who abandon; wall time and
//!   simulated calls a second.
//! - `erlang [SEED] [HOURS]`: 200 agents at 95% occupancy, M/M/c (3,800 calls an hour; 1,200
//!   hours by default, 4.5 million calls), against Erlang C: service level and average speed
//!   of answer, with 95% confidence intervals from batch means (a day a batch).
//!
//!   cargo run --release -p switchboard-benches --bin simload -- day
//!   cargo run --release -p switchboard-benches --bin simload -- erlang

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use switchboard_routing::simulate::erlang::ErlangC;
use switchboard_routing::simulate::{
    Row, Scenario, Tenant, batch_means, run, service_level, speed_of_answer,
};
use switchboard_routing::strategy::Program;

fn program(text: &str) -> Arc<Program> {
    Arc::new(Program::compile(text).expect("a valid strategy"))
}

fn tenant() -> Tenant {
    Tenant {
        routing_points: [
            (
                "5000".to_owned(),
                program(
                    "play music file:///music/hold.wav\nqueue support target \"english >= 3\" priority 5 timeout 600s\n  after 30s target \"group:support\"\n  after 90s priority 9\nroute default\n",
                ),
            ),
            (
                "5001".to_owned(),
                program(
                    "queue billing target \"billing >= 4\" priority 5\n  after 20s target \"billing >= 1\"\n",
                ),
            ),
        ]
        .into(),
        queues: vec![
            ("support".into(), Default::default()),
            ("billing".into(), Default::default()),
        ],
        skills: ["english", "billing", "sales"].map(str::to_owned).into(),
        groups: ["support"].map(str::to_owned).into(),
    }
}

fn day() -> Scenario {
    let text = r#"
seed = 1
interval-minutes = 30
intervals = 20
wrap-up-secs = 10
ring-secs = 2
rona-share = 0.01
handle = { distribution = "log-normal", mean-secs = 150, sd-secs = 90 }
patience = { distribution = "exponential", mean-secs = 120 }

[[arrivals]]
routing-point = "5000"
per-hour = 6500

[[arrivals]]
routing-point = "5001"
per-hour = 3500

[[agents]]
name = "english-experts"
count = 120
skills = { english = 5 }
groups = ["support"]

[[agents]]
name = "english"
count = 150
skills = { english = 3, sales = 2 }
groups = ["support"]

[[agents]]
name = "juniors"
count = 60
skills = { english = 1 }
groups = ["support"]

[[agents]]
name = "billing-experts"
count = 80
skills = { billing = 5, english = 2 }
groups = ["support"]

[[agents]]
name = "billing"
count = 90
skills = { billing = 2 }
shifts = [{ start = "00:00", end = "06:00" }, { start = "06:30", end = "10:00" }]
breaks = [{ at = "02:00", minutes = 15 }]
"#;
    toml::from_str(text).expect("a scenario")
}

/// `hours` of M/M/c at 200 agents and 95%, from `seed`.
fn erlang(seed: u64, hours: u32) -> Scenario {
    let text = format!(
        r#"
seed = {seed}
interval-minutes = 60
intervals = {hours}
handle = {{ distribution = "exponential", mean-secs = 180 }}

[[arrivals]]
routing-point = "5001"
per-hour = 3800

[[agents]]
name = "billing"
count = 200
skills = {{ billing = 5 }}
"#
    );
    toml::from_str(&text).expect("a scenario")
}

fn main() -> anyhow::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "day".into());
    let mut out = std::io::stdout().lock();
    let tenant = tenant();
    match which.as_str() {
        "day" => {
            let scenario = day();
            let started = Instant::now();
            let report = run(&tenant, &scenario)?;
            let wall = started.elapsed().as_secs_f64();
            let calls: u64 = whole_run(&report.rows)
                .filter(|r| r.scope == "routing-point")
                .map(|r| r.offered)
                .sum();
            writeln!(
                out,
                "a day of {calls} calls over 500 agents: {wall:.2} s, {:.0} calls/s",
                calls as f64 / wall
            )?;
            for r in whole_run(&report.rows) {
                writeln!(
                    out,
                    "  {} {}: answered {}, abandoned {}, routed away {}, SL {:.1}%, ASA {:.1} s, overflowed {}",
                    r.scope,
                    r.name,
                    r.answered,
                    r.abandoned,
                    r.routed_away,
                    r.service_level * 100.0,
                    r.average_speed_of_answer,
                    r.overflowed
                )?;
            }
        }
        "erlang" => {
            let arg = |n: usize, default: u64| {
                std::env::args()
                    .nth(n)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(default)
            };
            let scenario = erlang(arg(2, 95), arg(3, 1200) as u32);
            let started = Instant::now();
            let report = run(&tenant, &scenario)?;
            let wall = started.elapsed().as_secs_f64();
            let (rows, all) = report.of("routing-point", "5001");
            let all = all.context("the run's row")?;
            let theory = ErlangC {
                agents: 200,
                rate: 3800.0 / 3600.0,
                handle: 180.0,
            };
            // A day a batch.
            let (sl, sl_ci) = batch_means(&rows, 24, service_level);
            let (asa, asa_ci) = batch_means(&rows, 24, speed_of_answer);
            writeln!(
                out,
                "200 agents at 95%: {} calls in {wall:.2} s\n  service level {:.4} (days {sl:.4} ±{sl_ci:.4}), Erlang C {:.4}\n  ASA {:.2} s (days {asa:.2} ±{asa_ci:.2}), Erlang C {:.2} s",
                all.offered,
                all.service_level,
                theory.service_level(20.0),
                all.average_speed_of_answer,
                theory.average_speed_of_answer()
            )?;
        }
        other => anyhow::bail!("{other}: `day` or `erlang`"),
    }
    Ok(())
}

/// The whole run's rows.
fn whole_run(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter().filter(|r| r.interval.is_none())
}
