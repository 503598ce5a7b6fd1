//! A TCP byte stream through the framer, delivered in chunks whose sizes the input chooses:
//! framing must never panic, must consume what it returns, and must tell "read more" from
//! "close the connection" consistently however the bytes are split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_sip::{StreamItem, parse_stream};

const MAX: usize = 4096;

/// Frames the whole of `chunks` as a connection would; returns what it read and whether the
/// connection was closed for broken framing.
fn frame<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<String>, bool) {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match parse_stream(&mut buf, MAX) {
                Ok(Some(item)) => {
                    assert!(buf.len() < before, "an item must consume bytes");
                    items.push(match item {
                        StreamItem::Ping => "ping".to_owned(),
                        StreamItem::Message(Ok(m)) => format!("{m:?}"),
                        StreamItem::Message(Err(e)) => format!("error {e:?}"),
                    });
                }
                Ok(None) => break,
                Err(_) => return (items, true),
            }
        }
    }
    (items, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let whole = frame(std::iter::once(bytes));
    let size = usize::from(split % 64) + 1;
    let chunked = frame(bytes.chunks(size));
    assert_eq!(whole, chunked, "framing depends on how the stream was split");
});
