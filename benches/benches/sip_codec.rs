//! Parse and print of the messages the core handles most: an INVITE from an SBC with SDP, a
//! REGISTER from a phone with credentials, and a 200 answering an INVITE. Each is measured as
//! the wire sees it (bytes in, bytes out) and, for parsing, with the typed views the proxy and
//! registrar read on every request (top Via, From, To, CSeq, Call-ID, Contact).
//!
//! Throughput is reported in messages per second on one core (`cargo bench -p
//! switchboard-benches --bench sip_codec`).

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_sip::{Message, parse_datagram};

const INVITE: &str = "INVITE sip:+4930123456@switchboard.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---77ba3d4a1e2f;rport\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:192.0.2.10;lr;ftag=as5e9f2c1d>\r\n\
From: \"Alice Caller\" <sip:+4989111222@carrier.example.net;user=phone>;tag=as5e9f2c1d\r\n\
To: <sip:+4930123456@switchboard.example.com;user=phone>\r\n\
Call-ID: 3c26b8b4-2f5e4c1a@192.0.2.10\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:+4989111222@192.0.2.10:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE, PRACK\r\n\
Supported: replaces, timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: Carrier-SBC/4.2\r\n\
P-Asserted-Identity: <sip:+4989111222@carrier.example.net;user=phone>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 247\r\n\
\r\n\
v=0\r\n\
o=sbc 1651 1651 IN IP4 192.0.2.10\r\n\
s=call\r\n\
c=IN IP4 192.0.2.20\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const REGISTER: &str = "REGISTER sip:switchboard.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.20.31:5060;branch=z9hG4bK1822357716;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Agent 1001\" <sip:1001@switchboard.example.com>;tag=1480307571\r\n\
To: \"Agent 1001\" <sip:1001@switchboard.example.com>\r\n\
Call-ID: 1164919337-5060-1@10.1.20.31\r\n\
CSeq: 3 REGISTER\r\n\
Contact: <sip:1001@10.1.20.31:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000b82a1b2c3>\"\r\n\
Authorization: Digest username=\"1001\", realm=\"switchboard.example.com\", \
nonce=\"0000019a8f3c2e7b5f0d6c1e9a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b\", \
uri=\"sip:switchboard.example.com\", response=\"6629fae49393a05397450978507c4ef1\", \
algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, INFO, MESSAGE, UPDATE\r\n\
Supported: replaces, path, gruu, outbound\r\n\
User-Agent: Desk Phone 5.9.1\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\
\r\n";

const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---77ba3d4a1e2f;rport=5060;received=192.0.2.10\r\n\
Record-Route: <sip:192.0.2.10;lr;ftag=as5e9f2c1d>\r\n\
From: \"Alice Caller\" <sip:+4989111222@carrier.example.net;user=phone>;tag=as5e9f2c1d\r\n\
To: <sip:+4930123456@switchboard.example.com;user=phone>;tag=sb-9f1c2d3e\r\n\
Call-ID: 3c26b8b4-2f5e4c1a@192.0.2.10\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:1001@10.1.20.31:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Require: timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 160\r\n\
\r\n\
v=0\r\n\
o=phone 8000 8000 IN IP4 10.1.20.31\r\n\
s=call\r\n\
c=IN IP4 10.1.20.31\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

/// Reads what the proxy and the registrar read from every message.
fn typed_views(message: &Message) -> usize {
    let headers = message.headers();
    let mut seen = 0;
    seen += usize::from(matches!(headers.top_via(), Some(Ok(_))));
    seen += usize::from(matches!(headers.from(), Some(Ok(_))));
    seen += usize::from(matches!(headers.to(), Some(Ok(_))));
    seen += usize::from(matches!(headers.cseq(), Some(Ok(_))));
    seen += usize::from(headers.call_id().is_some());
    seen += headers.contacts().filter(Result::is_ok).count();
    seen
}

fn codec(c: &mut Criterion) {
    for (name, text) in [("invite", INVITE), ("register", REGISTER), ("200", OK)] {
        let wire = Bytes::from_static(text.as_bytes());
        let parsed = parse_datagram(wire.clone()).expect("benchmark message parses");
        assert!(
            typed_views(&parsed) >= 6,
            "{name}: typed views must all parse"
        );

        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        group.bench_function("parse", |b| {
            b.iter(|| parse_datagram(black_box(wire.clone())))
        });
        group.bench_function("parse+views", |b| {
            b.iter(|| {
                let message = parse_datagram(black_box(wire.clone())).expect("parses");
                typed_views(&message)
            })
        });
        let mut out = BytesMut::with_capacity(2048);
        group.bench_function("print", |b| {
            b.iter(|| {
                out.clear();
                black_box(&parsed).write_to(&mut out);
                out.len()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
