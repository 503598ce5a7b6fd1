//! The embedded default without Kafka: every event as one line of JSON (the protobuf JSON
//! mapping) appended to a file, synced in batches.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use switchboard_proto::event_json;
use switchboard_proto::events::Event;

use crate::{Destination, Shared};

pub(crate) struct JsonLines {
    out: BufWriter<File>,
    unsynced: bool,
}

impl JsonLines {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLines {
            out: BufWriter::with_capacity(256 * 1024, file),
            unsynced: false,
        })
    }
}

impl Destination for JsonLines {
    fn take(&mut self, event: &Event, shared: &Shared) {
        let mut line = event_json(event).to_string();
        line.push('\n');
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => {
                self.unsynced = true;
                shared.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "events file: write failed");
                shared.lose("the events file could not be written", event);
            }
        }
    }

    /// Lines reach the file through its buffer, and at each sync.
    fn write(&mut self, _shared: &Shared) {}

    fn sync(&mut self) {
        if !self.unsynced {
            return;
        }
        let result = self
            .out
            .flush()
            .and_then(|()| self.out.get_ref().sync_data());
        match result {
            Ok(()) => self.unsynced = false,
            Err(e) => tracing::error!(error = %e, "events file: sync failed"),
        }
    }
}
