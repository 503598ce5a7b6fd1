//! One datagram through the parser, then through every typed view the core reads. A message
//! that parses must print to bytes that parse back to the same message (but for
//! Content-Length, which the printer writes as the body's length: `075` becomes `75`), and
//! printing that again must give the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_sip::header::{Credentials, split_values};
use switchboard_sip::{HeaderName, Message, Uri, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = parse_datagram(Bytes::copy_from_slice(data)) else {
        return;
    };
    let headers = message.headers();
    let _ = headers.vias().count();
    let _ = headers.from();
    let _ = headers.to();
    let _ = headers.cseq();
    let _ = headers.contacts().count();
    let _ = headers.max_forwards();
    let _ = headers.delta_seconds(&HeaderName::Expires);
    for value in headers.get_all(&HeaderName::Authorization) {
        let _ = Credentials::parse(value);
    }
    for value in headers.values(&HeaderName::Route) {
        for part in split_values(&value) {
            let _ = Uri::parse_str(part.trim_matches(['<', '>']));
        }
    }

    let printed = message.to_bytes();
    let again = parse_datagram(printed.clone()).unwrap_or_else(|e| {
        panic!(
            "printed message does not parse ({e}):\n{}",
            String::from_utf8_lossy(&printed)
        )
    });
    assert_eq!(again.to_bytes(), printed, "printing is not a fixed point");
    assert_eq!(
        without_length(message.clone()),
        without_length(again),
        "print then parse changed the message:\n{}",
        String::from_utf8_lossy(&printed)
    );
    if let Message::Request(request) = &message {
        let _ = request.uri.to_string();
    }
});

fn without_length(mut message: Message) -> Message {
    match &mut message {
        Message::Request(r) => r.headers.remove(&HeaderName::ContentLength),
        Message::Response(r) => r.headers.remove(&HeaderName::ContentLength),
    }
    message
}
