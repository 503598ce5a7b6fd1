//! The embedded default without Kafka: every event as one line of JSON (the protobuf JSON
//! mapping) appended to a file, synced in batches.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchboard_proto::event_json;

use crate::{Msg, Shared};

pub(crate) struct JsonLines {
    out: BufWriter<File>,
    shared: Arc<Shared>,
    unsynced: bool,
}

impl JsonLines {
    pub(crate) fn open(path: &Path, shared: Arc<Shared>) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLines {
            out: BufWriter::with_capacity(256 * 1024, file),
            shared,
            unsynced: false,
        })
    }

    pub(crate) fn run(mut self, rx: mpsc::Receiver<Msg>, every: Duration) {
        let mut last_sync = Instant::now();
        loop {
            let wait = every.saturating_sub(last_sync.elapsed());
            match rx.recv_timeout(wait) {
                Ok(Msg::Event(event)) => {
                    self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                    let mut line = event_json(&event).to_string();
                    line.push('\n');
                    match self.out.write_all(line.as_bytes()) {
                        Ok(()) => {
                            self.unsynced = true;
                            self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.shared.lost.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, id = %event.id, "events file: write failed; event lost");
                        }
                    }
                }
                Ok(Msg::Close(done)) => {
                    self.sync();
                    let _ = done.send(());
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_sync.elapsed() >= every {
                self.sync();
                last_sync = Instant::now();
            }
        }
        self.sync();
    }

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
