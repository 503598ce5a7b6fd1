//! The cost of keeping a tenant's real-time statistics: folding one event (a call's queue
//! entry, routing, answer, release; an agent's state change) into the figures of the tenant,
//! its queue, the agent and its groups; and reading every figure once, as a wallboard update
//! does, for 50 queues and 1,000 agents in 20 groups
//! (`cargo bench -p switchboard-benches --bench stats`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use switchboard_actors::stats::engine::{StatsSettings, TenantStats};
use switchboard_proto::events::{AgentState, CallThread, Event, Party, event::Payload};

const QUEUES: usize = 50;
const AGENTS: usize = 1_000;
const GROUPS: usize = 20;
/// 2026-12-05 08:00 UTC.
const T0: u64 = 1_796_457_600_000;

fn stats() -> TenantStats {
    let settings = StatsSettings {
        service_level: Duration::from_secs(20),
        short_abandon: Duration::from_secs(5),
        time_zone: jiff::tz::TimeZone::get("Europe/Paris").expect("zone"),
    };
    TenantStats::new(
        settings,
        (0..QUEUES).map(|q| format!("q{q}")),
        (0..GROUPS).map(|g| format!("g{g}")),
        (0..AGENTS).map(|a| (format!("a{a}"), vec![format!("g{}", a % GROUPS)])),
    )
}

fn call(at: u64, kind: &str, id: &str, queue: &str, dn: Option<&str>) -> Event {
    Event {
        at_ms: at as i64,
        kind: kind.into(),
        payload: Some(Payload::Call(CallThread {
            call_id: id.into(),
            queue: queue.into(),
            parties: dn
                .map(|dn| Party {
                    dn: dn.into(),
                    role: "destination".into(),
                    uri: String::new(),
                    mode: String::new(),
                })
                .into_iter()
                .collect(),
            ..CallThread::default()
        })),
        ..Event::default()
    }
}

fn agent(at: u64, a: usize, state: &str, call: Option<&str>) -> Event {
    Event {
        at_ms: at as i64,
        kind: format!("Agent{state}"),
        payload: Some(Payload::Agent(AgentState {
            agent_id: format!("a{a}"),
            dn: format!("{}", 1000 + a),
            queues: vec![format!("q{}", a % QUEUES)],
            state: state.into(),
            calls: call.map(str::to_owned).into_iter().collect(),
            ..AgentState::default()
        })),
        ..Event::default()
    }
}

/// A day's worth of events: every agent logs in Ready, then calls (one every 100 ms, each
/// to the queue and agent of its number) go through queue, answer, talk, wrap-up.
fn day(calls: usize) -> Vec<Event> {
    let mut events: Vec<Event> = (0..AGENTS).map(|a| agent(T0, a, "Ready", None)).collect();
    for c in 0..calls {
        let at = T0 + 1_000 + c as u64 * 100;
        let (id, a) = (format!("c{c}"), c % AGENTS);
        let (queue, dn) = (format!("q{}", a % QUEUES), format!("{}", 1000 + a));
        events.extend([
            call(at, "Queued", &id, &queue, None),
            call(at + 5_000, "RouteUsed", &id, "", Some(&dn)),
            agent(at + 6_000, a, "Ready", Some(&id)),
            call(at + 6_000, "Established", &id, "", None),
            agent(at + 90_000, a, "AfterCallWork", None),
            call(at + 90_000, "Released", &id, "", None),
            agent(at + 100_000, a, "Ready", None),
        ]);
    }
    events.sort_by_key(|e| e.at_ms);
    events
}

fn bench(c: &mut Criterion) {
    let events = day(10_000);
    let mut group = c.benchmark_group("stats");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("fold a day of events (per event)", |b| {
        b.iter(|| {
            let mut s = stats();
            for e in &events {
                s.apply(black_box(e));
            }
            s
        })
    });
    group.finish();
    let mut s = stats();
    for e in &events {
        s.apply(e);
    }
    let now = T0 + 3_600_000;
    c.bench_function("stats/read every figure (50 queues, 1,000 agents)", |b| {
        b.iter(|| black_box(s.now(black_box(now))))
    });
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
