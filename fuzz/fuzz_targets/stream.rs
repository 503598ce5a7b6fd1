//! A TCP byte stream through the framer, delivered in chunks whose sizes the input chooses:
//! framing must never panic, must consume what it returns, and must tell "read more" from
//! "close the connection" consistently however the bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::{Framer, StreamItem};

const MAX: usize = 1024;

/// Frames the whole of `chunks` as a connection would; returns what it read and whether the
/// connection was closed for broken framing.
fn frame<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, bool) {
    let mut framer = Framer::new(MAX);
    let mut items = Vec::new();
    for chunk in chunks {
        framer.buffer().extend_from_slice(chunk);
        loop {
            let before = framer.buffered();
            match framer.next_item() {
                Ok(Some(item)) => {
                    assert!(framer.buffered() < before, "an item must consume bytes");
                    items.push(match item {
                        StreamItem::Ping => b"ping".to_vec(),
                        StreamItem::Message(Ok(m)) => m.to_bytes().to_vec(),
                        StreamItem::Message(Err(e)) => format!("error {e:?}").into_bytes(),
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
