//! What emitting an event costs the system that emits it: `Reporter::emit` alone (a channel
//! send to the spool's writer thread), and `EventSink::publish` on memory streams without and
//! with a Kafka reporter behind it. The broker here is unreachable, so the events stay in a
//! spool in a temporary directory; the events are built outside the timing, in batches of
//! 1,000, and each batch starts once the writer has taken the one before (a node emits far
//! below the writer's rate; emitting faster than it for long only queues events in memory)
//! (`cargo bench -p switchboard-benches --bench reporting`).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use switchboard_actors::events::EventSink;
use switchboard_benches::events::call_event;
use switchboard_kafka::{KafkaConfig, Reporter};
use switchboard_proto::events::Event;

const BATCH: u64 = 1000;

/// Times `each` over `iters` events, built beforehand in batches, each batch once the
/// writer has caught up.
fn paced(reporter: &Reporter, iters: u64, next: &mut u64, mut each: impl FnMut(Event)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let k = left.min(BATCH);
        let batch: Vec<Event> = (*next..*next + k).map(call_event).collect();
        *next += k;
        while reporter.status().queued > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let start = Instant::now();
        for event in batch {
            each(event);
        }
        total += start.elapsed();
        left -= k;
    }
    total
}

fn emission(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let reporter = runtime.block_on(async {
        Reporter::kafka(KafkaConfig {
            // Nothing listens there.
            brokers: "127.0.0.1:9".into(),
            spool_dir: dir.path().join("spool"),
            spool_max_bytes: 16 << 30,
            ..KafkaConfig::default()
        })
        .expect("reporter")
    });
    let mut group = c.benchmark_group("emit");
    group.throughput(Throughput::Elements(1));
    let mut n = 0;
    group.bench_function("building the event (not part of emission)", |b| {
        b.iter(|| {
            n += 1;
            call_event(n)
        })
    });
    group.bench_function("reporter.emit", |b| {
        b.iter_custom(|iters| paced(&reporter, iters, &mut n, |e| reporter.emit(e)))
    });
    let plain = EventSink::memory();
    let reporting = EventSink::memory().reporting_to(reporter.clone());
    group.bench_function("publish to memory streams", |b| {
        b.iter_custom(|iters| {
            paced(&reporter, iters, &mut n, |e| {
                runtime.block_on(plain.publish(e)).expect("publish");
            })
        })
    });
    group.bench_function("publish to memory streams and Kafka", |b| {
        b.iter_custom(|iters| {
            paced(&reporter, iters, &mut n, |e| {
                runtime.block_on(reporting.publish(e)).expect("publish");
            })
        })
    });
    group.finish();
    runtime.block_on(reporter.close());
}

criterion_group!(benches, emission);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
