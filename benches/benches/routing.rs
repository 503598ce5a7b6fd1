//! One match decision of the routing crate: 10,000 Ready agents over 200 skills (three skills
//! each, levels 1 to 10), and a call's target chosen among 500 of the shapes queues use
//! (`skillA >= n & (skillB > 0 | skillC > m)`): the agent the longest Ready who satisfies it
//! (`cargo bench -p switchboard-benches --bench routing`).

use criterion::{Criterion, Throughput, criterion_group};
use std::hint::black_box;
use switchboard_routing::pool::{Choice, Pool};
use switchboard_routing::target::{Profile, Target};

const AGENTS: u32 = 10_000;
const SKILLS: u32 = 200;
const TARGETS: u32 = 500;

fn pool() -> Pool {
    let mut pool = Pool::default();
    for i in 0..AGENTS {
        let skill = |k: u32| format!("skill{}", (i * 7 + k * 61) % SKILLS);
        let skills = [
            (skill(0), i % 10 + 1),
            (skill(1), (i / 10) % 10 + 1),
            (skill(2), (i / 100) % 10 + 1),
        ];
        let profile = Profile::new(
            &format!("agent{i}"),
            [format!("group{}", i % 100).as_str()],
            skills.iter().map(|(s, l)| (s.as_str(), *l)),
        );
        pool.insert(profile, u64::from(i * 13 % AGENTS));
    }
    pool
}

fn targets() -> Vec<Target> {
    (0..TARGETS)
        .map(|t| {
            let text = format!(
                "skill{} >= {} & (skill{} > 0 | skill{} > {})",
                t % SKILLS,
                t % 8 + 1,
                (t * 3 + 1) % SKILLS,
                (t * 7 + 2) % SKILLS,
                t % 5
            );
            Target::parse(&text).expect("valid")
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    let pool = pool();
    let targets = targets();
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(u64::from(TARGETS)));
    group.bench_function("choose_500_targets_10000_agents", |b| {
        b.iter(|| {
            targets
                .iter()
                .filter(|t| pool.choose(black_box(t), Choice::LongestIdle).is_some())
                .count()
        })
    });
    group.finish();
}

/// Each decision timed on its own, for the tail: p50, p99 and the slowest, on stderr.
fn percentiles() {
    let pool = pool();
    let targets = targets();
    let mut times: Vec<u128> = Vec::with_capacity(targets.len() * 40);
    for _ in 0..40 {
        for t in &targets {
            let start = std::time::Instant::now();
            black_box(pool.choose(black_box(t), Choice::LongestIdle));
            times.push(start.elapsed().as_nanos());
        }
    }
    times.sort_unstable();
    let at =
        |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)] as f64 / 1000.0;
    eprintln!(
        "routing/choose, one decision over {AGENTS} agents ({} timed): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

criterion_group!(benches, routing);

fn main() {
    benches();
    percentiles();
    Criterion::default().configure_from_args().final_summary();
}
