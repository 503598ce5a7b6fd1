//! The match decisions of the routing crate, with 10,000 Ready agents over 200 skills (three
//! skills each, levels 1 to 10) and 500 waiting calls whose targets have the shapes queues use
//! (`skillA >= n & (skillB > 0 | skillC > m)`), at mixed priorities: a call arrives (the
//! agent the longest Ready who satisfies its target), and an agent becomes Ready (the first
//! of the 500 calls in order, priority then age, that it satisfies)
//! (`cargo bench -p switchboard-benches --bench routing`).

use criterion::{Criterion, Throughput, criterion_group};
use std::hint::black_box;
use switchboard_routing::pool::{Choice, Pool};
use switchboard_routing::queue::{Queue, Waiting};
use switchboard_routing::target::{Profile, Target};

const AGENTS: u32 = 10_000;
const SKILLS: u32 = 200;
const TARGETS: u32 = 500;

fn profiles() -> Vec<Profile> {
    (0..AGENTS)
        .map(|i| {
            let skill = |k: u32| format!("skill{}", (i * 7 + k * 61) % SKILLS);
            let skills = [
                (skill(0), i % 10 + 1),
                (skill(1), (i / 10) % 10 + 1),
                (skill(2), (i / 100) % 10 + 1),
            ];
            Profile::new(
                &format!("agent{i}"),
                [format!("group{}", i % 100).as_str()],
                skills.iter().map(|(s, l)| (s.as_str(), *l)),
            )
        })
        .collect()
}

/// The 500 calls waiting, one per target, at priorities 0 to 9.
fn queue() -> Queue {
    let mut queue = Queue::default();
    for (i, target) in targets().into_iter().enumerate() {
        queue.push(Waiting {
            call: format!("call{i}"),
            target,
            priority: (i % 10) as u32,
            since: i as u64,
        });
    }
    queue
}

fn pool() -> Pool {
    let mut pool = Pool::default();
    for (i, profile) in (0..AGENTS).zip(profiles()) {
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
    let queue = queue();
    let profiles = profiles();
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("first_of_500_calls_for_1000_agents", |b| {
        b.iter(|| {
            profiles[..1_000]
                .iter()
                .filter(|p| queue.first_for(black_box(p)).is_some())
                .count()
        })
    });
    group.finish();
}

/// Each decision timed on its own, for the tail: p50, p99 and the slowest, and the decisions
/// a second at the mean, on stderr.
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
    report("a call arrives: the agent, of 10,000", times);
    let queue = queue();
    let mut times: Vec<u128> = Vec::with_capacity(AGENTS as usize);
    for p in profiles() {
        let start = std::time::Instant::now();
        black_box(queue.first_for(black_box(&p)));
        times.push(start.elapsed().as_nanos());
    }
    report("an agent is Ready: the call, of 500", times);
}

fn report(what: &str, mut times: Vec<u128>) {
    times.sort_unstable();
    let at =
        |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)] as f64 / 1000.0;
    let mean = times.iter().sum::<u128>() as f64 / times.len() as f64;
    eprintln!(
        "routing, {what} ({} decisions timed): p50 {:.1} us, p99 {:.1} us, max {:.1} us, {:.0} decisions/s",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        1e9 / mean
    );
}

criterion_group!(benches, routing);

fn main() {
    benches();
    percentiles();
    Criterion::default().configure_from_args().final_summary();
}
