//! The simulator checked against queueing theory: M/M/c traffic (Poisson arrivals,
//! exponential handle times of mean 180 s, one skill, callers who wait forever, no wrap-up)
//! against Erlang C, and with exponential patience against Erlang A. Each run's figures are
//! printed with a 95% confidence interval from batch means (batches of a day's intervals),
//! so a failure says how far off it was.

use std::sync::Arc;

use switchboard_routing::simulate::erlang::{ErlangA, ErlangC};
use switchboard_routing::simulate::{
    Report, Row, Scenario, Tenant, abandon_rate, batch_means, run, service_level, speed_of_answer,
};
use switchboard_routing::strategy::Program;

/// A tenant whose routing point 5000 queues every call for an English speaker.
fn tenant() -> Tenant {
    let program = Program::compile("queue support target \"english >= 1\"\n").expect("valid");
    Tenant {
        routing_points: [("5000".to_owned(), Arc::new(program))].into(),
        queues: vec![("support".into(), Default::default())],
        skills: ["english".to_owned()].into(),
        groups: Default::default(),
    }
}

/// `agents` agents at `occupancy`, 180 s calls, over `hours`, with `patience` if any.
fn scenario(seed: u64, agents: u32, occupancy: f64, hours: u32, patience: Option<f64>) -> Scenario {
    let per_hour = agents as f64 * occupancy * 3600.0 / 180.0;
    let mut s = serde_json::json!({
        "seed": seed,
        "interval-minutes": 60,
        "intervals": hours,
        "service-level-secs": 20.0,
        "handle": { "distribution": "exponential", "mean-secs": 180.0 },
        "arrivals": [{ "routing-point": "5000", "per-hour": per_hour }],
        "agents": [{ "name": "english", "count": agents, "skills": { "english": 3 } }],
    });
    if let Some(p) = patience {
        s["patience"] = serde_json::json!({ "distribution": "exponential", "mean-secs": p });
    }
    serde_json::from_value(s).expect("a scenario")
}

/// The routing point's rows: each interval's, and the run's.
fn rows(report: &Report) -> (Vec<&Row>, &Row) {
    let (intervals, all) = report.of("routing-point", "5000");
    (intervals, all.expect("the run's row"))
}

/// Runs M/M/c and compares with Erlang C: service level within 2 points, ASA within 5%.
fn against_erlang_c(seed: u64, agents: u32, occupancy: f64, hours: u32) {
    let report = run(&tenant(), &scenario(seed, agents, occupancy, hours, None)).expect("runs");
    let (intervals, all) = rows(&report);
    let theory = ErlangC {
        agents,
        rate: agents as f64 * occupancy / 180.0,
        handle: 180.0,
    };
    let (sl, sl_ci) = batch_means(&intervals, 24, service_level);
    let (asa, asa_ci) = batch_means(&intervals, 24, speed_of_answer);
    let (sl_theory, asa_theory) = (theory.service_level(20.0), theory.average_speed_of_answer());
    eprintln!(
        "{agents} agents at {occupancy}, seed {seed}: {} calls; service level {:.4} (days {sl:.4} ±{sl_ci:.4}) against Erlang C {sl_theory:.4}; ASA {:.2} s (days {asa:.2} ±{asa_ci:.2}) against {asa_theory:.2} s",
        all.offered, all.service_level, all.average_speed_of_answer
    );
    assert_eq!(all.offered, all.answered + all.unfinished);
    assert!(all.unfinished < 100, "{all:?}");
    assert!(
        (all.service_level - sl_theory).abs() <= 0.02,
        "service level {} against Erlang C {sl_theory}",
        all.service_level
    );
    assert!(
        (all.average_speed_of_answer - asa_theory).abs() <= 0.05 * asa_theory,
        "ASA {} against Erlang C {asa_theory}",
        all.average_speed_of_answer
    );
}

#[test]
fn ten_agents_at_80_percent_match_erlang_c() {
    // 160 calls an hour for 200 days: about 770,000 calls.
    against_erlang_c(20_261_205, 10, 0.8, 24 * 200);
}

#[test]
fn fifty_agents_at_90_percent_match_erlang_c() {
    // 900 calls an hour for 200 days: about 4.3 million calls, for an ASA known within 4%.
    against_erlang_c(90_050, 50, 0.9, 24 * 200);
}

#[test]
fn ten_agents_at_80_percent_with_patience_match_erlang_a() {
    let seed = 120;
    let report = run(&tenant(), &scenario(seed, 10, 0.8, 24 * 52, Some(120.0))).expect("runs");
    let (intervals, all) = rows(&report);
    let theory = ErlangA {
        agents: 10,
        rate: 8.0 / 180.0,
        handle: 180.0,
        patience: 120.0,
    }
    .abandon_rate();
    let (rate, ci) = batch_means(&intervals, 24, abandon_rate);
    let simulated = all.abandoned as f64 / all.offered as f64;
    eprintln!(
        "10 agents at 0.8, patience 120 s, seed {seed}: {} calls; abandoned {simulated:.4} (days {rate:.4} ±{ci:.4}) against Erlang A {theory:.4}",
        all.offered
    );
    assert_eq!(all.offered, all.answered + all.abandoned + all.unfinished);
    assert!(
        (simulated - theory).abs() <= 0.02,
        "abandoned {simulated} against Erlang A {theory}"
    );
}
