//! What emitting an event costs the system that emits it: `EventSink::publish` on memory
//! streams alone, and the same with a Kafka reporter behind it (the spool's writer thread
//! takes the event from a channel; the broker here is unreachable, so the events stay in a
//! spool in a temporary directory). The difference is what reporting adds to each event a
//! call emits (`cargo bench -p switchboard-benches --bench reporting`).

use criterion::{Criterion, Throughput, criterion_group};
use switchboard_actors::events::EventSink;
use switchboard_benches::events::call_event;
use switchboard_kafka::{KafkaConfig, Reporter};

fn emission(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let reporter = runtime.block_on(async {
        Reporter::kafka(KafkaConfig {
            // Nothing listens there: the sender keeps trying while the bench runs.
            brokers: "127.0.0.1:9".into(),
            spool_dir: dir.path().join("spool"),
            spool_max_bytes: 8 << 30,
            ..KafkaConfig::default()
        })
        .expect("reporter")
    });
    let mut group = c.benchmark_group("emit");
    group.throughput(Throughput::Elements(1));
    let mut n = 0;
    group.bench_function("building the event alone (the baseline)", |b| {
        b.iter(|| {
            n += 1;
            call_event(n)
        })
    });
    group.bench_function("reporter.emit (channel to the spool writer)", |b| {
        b.iter(|| {
            n += 1;
            reporter.emit(call_event(n));
        })
    });
    let plain = EventSink::memory();
    let reporting = EventSink::memory().reporting_to(reporter.clone());
    group.bench_function("publish to memory streams", |b| {
        b.iter(|| {
            n += 1;
            runtime
                .block_on(plain.publish(call_event(n)))
                .expect("publish")
        })
    });
    group.bench_function("publish to memory streams and Kafka", |b| {
        b.iter(|| {
            n += 1;
            runtime
                .block_on(reporting.publish(call_event(n)))
                .expect("publish")
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
