//! The tenant snapshot of a large contact center (10,000 agents, 20,000 DNs, 500 dial plan
//! rules): how long building it takes (checking every reference and compiling the dial plan),
//! and lookups of a DN by number and of a dialed number in the dial plan
//! (`cargo bench -p switchboard-benches --bench tenant`). Loading the same tenant from
//! PostgreSQL is measured by the `configload` binary.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_actors::tenant::Tenant;
use switchboard_benches::tenants::large_tenant;

fn tenant(c: &mut Criterion) {
    let config = large_tenant();
    let mut group = c.benchmark_group("tenant");
    group.sample_size(10);
    group.bench_function("snapshot", |b| {
        b.iter(|| Tenant::from_config(black_box(&config)).expect("valid"))
    });
    group.finish();

    let snapshot = Tenant::from_config(&config).expect("valid");
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    group.bench_function("dn", |b| {
        b.iter(|| snapshot.dns.get(black_box("107777")).map(|dn| dn.kind))
    });
    group.bench_function("dial_plan_first_rule", |b| {
        b.iter(|| snapshot.dial_plan.route(black_box("+18005550000")))
    });
    group.bench_function("dial_plan_last_rule", |b| {
        b.iter(|| snapshot.dial_plan.route(black_box("104321")))
    });
    group.bench_function("dial_plan_no_match", |b| {
        b.iter(|| snapshot.dial_plan.route(black_box("+4930123456")))
    });
    group.finish();
}

criterion_group!(benches, tenant);
criterion_main!(benches);
