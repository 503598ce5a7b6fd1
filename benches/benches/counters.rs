//! The metrics' counters on the call path, per call: the SIP messages of one call through
//! the B2BUA (INVITE, 100, 180, 200, ACK, BYE, 200 on the caller's leg and again on the
//! callee's) counted as they are received and sent, by method and status class
//! (`cargo bench -p switchboard-benches --bench counters`). The whole-node comparison, a
//! build with the counters and one without, is `benches/sipp/metrics_cost.sh`; this measures
//! what that comparison cannot resolve under the machine's noise.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use switchboard_sip::transport::counts::MessageCounts;
use switchboard_sip::{Message, parse_datagram};

const HEAD: &str = "Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\n\
                    To: <sip:1001@b>\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n";

/// The messages of one call: on the caller's leg its requests (INVITE, ACK, BYE) arrive and
/// their answers (100, 180, 200, 200) leave; on the callee's leg the same requests leave and
/// the same answers arrive. So each of the seven is received once, parsed, and sent once.
fn one_call() -> (Vec<Message>, Vec<Bytes>) {
    let request =
        |m: &str, seq: u32| format!("{m} sip:1001@b SIP/2.0\r\nCSeq: {seq} {m}\r\n{HEAD}");
    let response =
        |code: &str, m: &str, seq: u32| format!("SIP/2.0 {code}\r\nCSeq: {seq} {m}\r\n{HEAD}");
    let messages = [
        request("INVITE", 1),
        response("100 Trying", "INVITE", 1),
        response("180 Ringing", "INVITE", 1),
        response("200 OK", "INVITE", 1),
        request("ACK", 1),
        request("BYE", 2),
        response("200 OK", "BYE", 2),
    ]
    .map(Bytes::from);
    let received = messages
        .iter()
        .map(|b| parse_datagram(b.clone()).expect("parses"))
        .collect();
    (received, messages.to_vec())
}

fn counters(c: &mut Criterion) {
    let (received, sent) = one_call();
    let counts = MessageCounts::default();
    let mut group = c.benchmark_group("counters");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one call's messages counted", |b| {
        b.iter(|| {
            for m in &received {
                counts.received(black_box(m));
            }
            for bytes in &sent {
                counts.sent(black_box(bytes));
            }
        })
    });
    group.finish();
    black_box(counts.requests());
}

criterion_group!(benches, counters);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
