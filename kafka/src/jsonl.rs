//! The embedded default without Kafka: every event as one line of JSON (the protobuf JSON
//! mapping) appended to a file, synced in batches. A file moved away or deleted (by logrotate,
//! say) is followed by a new one at the same path within one sync interval, without a signal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use switchboard_proto::EventJson;
use switchboard_proto::events::Event;

use crate::{Destination, Shared};

pub(crate) struct JsonLines {
    path: PathBuf,
    out: BufWriter<File>,
    /// The line being written, kept for the next.
    line: Vec<u8>,
    unsynced: bool,
    /// A new file could not be made at the path after a rotation (said once).
    reopen_failed: bool,
}

impl JsonLines {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(JsonLines {
            path: path.to_owned(),
            out: BufWriter::with_capacity(256 * 1024, append_to(path)?),
            line: Vec::with_capacity(1024),
            unsynced: false,
            reopen_failed: false,
        })
    }

    /// When the path no longer names the file written (moved away or deleted), the lines
    /// still buffered and all later ones go to a new file there; the old one keeps what
    /// reached it, synced. Should no file be creatable there, writing goes on to the old one.
    fn follow_rotation(&mut self) {
        let written = self.out.get_ref().metadata();
        let named = std::fs::metadata(&self.path);
        if let (Ok(a), Ok(b)) = (&written, &named)
            && (a.dev(), a.ino()) == (b.dev(), b.ino())
        {
            return;
        }
        match append_to(&self.path) {
            Ok(file) => {
                let old = std::mem::replace(self.out.get_mut(), file);
                if let Err(e) = old.sync_data() {
                    tracing::error!(error = %e, "events file: sync of the rotated file failed");
                }
                self.reopen_failed = false;
                tracing::info!(path = %self.path.display(),
                    "events file moved away (rotated): events go to a new file at the path");
            }
            Err(e) if !self.reopen_failed => {
                self.reopen_failed = true;
                tracing::error!(path = %self.path.display(), error = %e,
                    "events file moved away and no new one can be made: events go on to the old one");
            }
            Err(_) => {}
        }
    }
}

fn append_to(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Destination for JsonLines {
    fn take(&mut self, event: &Event, shared: &Shared) {
        self.line.clear();
        EventJson(event).write_to(&mut self.line);
        self.line.push(b'\n');
        let written = self.out.write_all(&self.line);
        match written {
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
        self.follow_rotation();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            tenant: "demo".into(),
            topic: "voice-agentstate".into(),
            key: "demo:a1001".into(),
            kind: "AgentReady".into(),
            ..Default::default()
        }
    }

    fn ids(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                v["id"].as_str().expect("id").to_owned()
            })
            .collect()
    }

    #[test]
    fn a_file_moved_away_is_followed_by_a_new_one_and_no_line_is_lost() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("events.jsonl");
        let shared = Shared::default();
        let mut file = JsonLines::open(&path).expect("open");
        file.take(&event("e1"), &shared);
        file.sync();
        std::fs::rename(&path, dir.path().join("events.jsonl.1")).expect("rotate");
        file.take(&event("e2"), &shared);
        file.sync();
        file.take(&event("e3"), &shared);
        file.sync();
        assert_eq!(ids(&dir.path().join("events.jsonl.1")), ["e1"]);
        assert_eq!(ids(&path), ["e2", "e3"]);

        // Deleted outright: a new file again.
        std::fs::remove_file(&path).expect("delete");
        file.take(&event("e4"), &shared);
        file.sync();
        assert_eq!(ids(&path), ["e4"]);
        assert_eq!(shared.delivered.load(Ordering::Relaxed), 4);
    }
}
