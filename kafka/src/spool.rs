//! The spool: an append-only log on disk of the events Kafka has not acknowledged yet.
//!
//! Every event is appended here first and sent from here, so that the order the events were
//! emitted in is the order they reach Kafka, whether the broker is up or away for an hour;
//! when the broker is up the spool is only a few milliseconds deep.
//!
//! On disk: a directory of segment files, each named by the offset of its first byte in the
//! whole log (`00000000000000001234.spool`), and a `cursor` file with the offset up to which
//! Kafka acknowledged. A record is `len: u32 LE`, `crc32(body): u32 LE`, then `body`:
//! the topic (one byte), the key's length (`u16 LE`), the key and the payload. Segments are
//! deleted once every record in them is acknowledged.
//!
//! Writes reach the file at once (so the sender reads them back from the page cache) and are
//! synced in batches: a crash of the process may lose the unsynced window, which a later start
//! finds as a damaged tail, reports and cuts off; everything before it is sent.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::{Shared, Topic};

/// Bytes of a record's header: length and checksum.
const HEADER: usize = 8;

/// The largest body a record may have; a length above it is damage, not a record.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

const SUFFIX: &str = ".spool";
const CURSOR: &str = "cursor";

/// An event as the spool holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) topic: Topic,
    pub(crate) key: Vec<u8>,
    pub(crate) payload: Vec<u8>,
}

impl Record {
    /// The record's body as written: topic, key length, key, payload.
    pub(crate) fn encode_into(topic: Topic, key: &[u8], payload: &[u8], out: &mut Vec<u8>) {
        let key_len = key.len().min(u16::MAX as usize);
        let body_len = 3 + key_len + payload.len();
        let start = out.len();
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(topic as u8);
        out.extend_from_slice(&(key_len as u16).to_le_bytes());
        out.extend_from_slice(&key[..key_len]);
        out.extend_from_slice(payload);
        let crc = crc32fast::hash(&out[start + HEADER..]);
        out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Option<Self> {
        let (&topic, rest) = body.split_first()?;
        let topic = Topic::from_byte(topic)?;
        let key_len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let key = rest.get(2..2 + key_len)?.to_vec();
        let payload = rest.get(2 + key_len..)?.to_vec();
        Some(Record {
            topic,
            key,
            payload,
        })
    }
}

fn segment_name(start: u64) -> String {
    format!("{start:020}{SUFFIX}")
}

/// The starts of the segments in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut starts = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(start) = name.strip_suffix(SUFFIX).and_then(|s| s.parse().ok()) {
            starts.push(start);
        }
    }
    starts.sort_unstable();
    Ok(starts)
}

fn read_cursor(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join(CURSOR))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Where a damaged tail was cut off, as the start of a spool reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DamagedTail {
    pub(crate) segment: PathBuf,
    /// The offset in the whole log where the damage begins.
    pub(crate) at: u64,
    pub(crate) bytes_dropped: u64,
}

/// The writing end: owned by the thread that takes the emitted events.
pub(crate) struct Spool {
    dir: PathBuf,
    /// The segments' starts, oldest first; the last one is being written.
    segments: VecDeque<u64>,
    file: File,
    /// The offset where the next record goes.
    end: u64,
    /// Bytes written but not yet handed to the file.
    buffer: Vec<u8>,
    segment_bytes: u64,
    /// The most bytes not yet acknowledged it holds; records past it are refused.
    max_bytes: u64,
    unsynced: bool,
    /// The acknowledged offset last written to the cursor file.
    cursor_saved: u64,
    shared: Arc<Shared>,
}

impl Spool {
    /// Opens the spool in `dir` (made if missing), cutting off a damaged tail; returns it with
    /// what was cut.
    pub(crate) fn open(
        dir: &Path,
        segment_bytes: u64,
        max_bytes: u64,
        shared: Arc<Shared>,
    ) -> io::Result<(Self, Option<DamagedTail>)> {
        fs::create_dir_all(dir)?;
        let cursor = read_cursor(dir);
        let mut starts: VecDeque<u64> = segments(dir)?.into();
        let mut damage = None;
        let (file, end) = match starts.back().copied() {
            None => {
                let start = cursor.unwrap_or(0);
                starts.push_back(start);
                (create_segment(dir, start)?, start)
            }
            Some(last) => {
                let path = dir.join(segment_name(last));
                let (good, len) = scan(&path)?;
                if good < len {
                    damage = Some(DamagedTail {
                        segment: path.clone(),
                        at: last + good,
                        bytes_dropped: len - good,
                    });
                }
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                file.set_len(good)?;
                file.sync_all()?;
                let mut file = file;
                file.seek(SeekFrom::End(0))?;
                (file, last + good)
            }
        };
        let first = starts.front().copied().unwrap_or(end);
        // The cursor may be missing (a crash before it was first saved), or ahead of the end
        // (records acknowledged from the page cache, then lost unsynced).
        let acked = cursor.unwrap_or(first).clamp(first, end);
        shared.written.store(end, Ordering::Release);
        shared.acked.store(acked, Ordering::Release);
        Ok((
            Spool {
                dir: dir.to_owned(),
                segments: starts,
                file,
                end,
                buffer: Vec::with_capacity(64 * 1024),
                segment_bytes: segment_bytes.max(1024),
                max_bytes,
                unsynced: false,
                cursor_saved: acked,
                shared,
            },
            damage,
        ))
    }

    /// Bytes written and not yet acknowledged, counting those still in the buffer.
    pub(crate) fn pending(&self) -> u64 {
        self.end + self.buffer.len() as u64 - self.shared.acked.load(Ordering::Acquire)
    }

    /// Appends a record (to the buffer; [`Spool::write`] hands it to the file). `false` when
    /// the spool has no room for it.
    pub(crate) fn append(&mut self, topic: Topic, key: &[u8], payload: &[u8]) -> io::Result<bool> {
        let size = (HEADER + 3 + key.len() + payload.len()) as u64;
        if self.pending() + size > self.max_bytes || size as usize > MAX_BODY {
            return Ok(false);
        }
        let current = self.segments.back().copied().unwrap_or(self.end);
        let in_segment = self.end + self.buffer.len() as u64 - current;
        if in_segment > 0 && in_segment + size > self.segment_bytes {
            self.rotate()?;
        }
        Record::encode_into(topic, key, payload, &mut self.buffer);
        Ok(true)
    }

    /// Hands the buffered records to the file, where the sender can read them.
    pub(crate) fn write(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buffer)?;
        self.end += self.buffer.len() as u64;
        self.buffer.clear();
        self.unsynced = true;
        self.shared.written.store(self.end, Ordering::Release);
        self.shared.wake_sender();
        Ok(())
    }

    /// Makes what was written durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.write()?;
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Starts a new segment at the current end, the old one synced first.
    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        self.file = create_segment(&self.dir, self.end)?;
        self.segments.push_back(self.end);
        sync_dir(&self.dir);
        Ok(())
    }

    /// Deletes the segments Kafka acknowledged entirely and saves the cursor.
    pub(crate) fn tidy(&mut self) -> io::Result<()> {
        let acked = self.shared.acked.load(Ordering::Acquire);
        while self.segments.len() > 1 && self.segments[1] <= acked {
            if let Some(start) = self.segments.pop_front() {
                fs::remove_file(self.dir.join(segment_name(start)))?;
            }
        }
        if acked != self.cursor_saved {
            let tmp = self.dir.join("cursor.tmp");
            fs::write(&tmp, format!("{acked}\n"))?;
            fs::rename(&tmp, self.dir.join(CURSOR))?;
            self.cursor_saved = acked;
        }
        Ok(())
    }

    /// Bytes the spool's files hold on disk.
    #[cfg(test)]
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.end - self.segments.front().copied().unwrap_or(self.end)
    }
}

fn create_segment(dir: &Path, start: u64) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(dir.join(segment_name(start)))
}

/// Makes a new file's name durable (best effort: not every file system syncs directories).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The length of the well-formed records at the start of a segment, and the file's length.
fn scan(path: &Path) -> io::Result<(u64, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut good = 0u64;
    let mut body = Vec::new();
    loop {
        match read_record(&mut reader, &mut body) {
            Ok(Some(size)) => good += size,
            Ok(None) | Err(_) => return Ok((good, len)),
        }
    }
}

/// Reads one record's body into `body`; its size on disk, or none at the end of the file.
/// A short or damaged record is an error.
fn read_record(reader: &mut impl Read, body: &mut Vec<u8>) -> io::Result<Option<u64>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = reader.read(&mut header[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(damaged("a record's header is cut short"))
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_BODY {
        return Err(damaged("a record's length is out of range"));
    }
    body.resize(len, 0);
    reader
        .read_exact(body)
        .map_err(|_| damaged("a record's body is cut short"))?;
    if crc32fast::hash(body) != crc {
        return Err(damaged("a record's checksum does not match"));
    }
    Ok(Some((HEADER + len) as u64))
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The reading end: the sender's, following the writer.
pub(crate) struct Reader {
    dir: PathBuf,
    shared: Arc<Shared>,
    /// The offset of the next record.
    pos: u64,
    file: Option<BufReader<File>>,
    body: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(dir: &Path, shared: Arc<Shared>) -> Self {
        Reader {
            dir: dir.to_owned(),
            shared,
            pos: 0,
            file: None,
            body: Vec::new(),
        }
    }

    /// Reads on from `pos`, which must be the start of a record.
    pub(crate) fn seek(&mut self, pos: u64) -> io::Result<()> {
        let start = segments(&self.dir)?
            .into_iter()
            .rev()
            .find(|s| *s <= pos)
            .ok_or_else(|| damaged("no spool segment holds the cursor"))?;
        let mut file = File::open(self.dir.join(segment_name(start)))?;
        file.seek(SeekFrom::Start(pos - start))?;
        self.file = Some(BufReader::with_capacity(1 << 20, file));
        self.pos = pos;
        Ok(())
    }

    /// The next record and the offset just past it; none when the reader is at the end of
    /// what was written.
    pub(crate) fn next(&mut self) -> io::Result<Option<(u64, Record)>> {
        if self.pos >= self.shared.written.load(Ordering::Acquire) {
            return Ok(None);
        }
        if self.file.is_none() {
            self.seek(self.pos)?;
        }
        let size = match self.file.as_mut().map(|f| read_record(f, &mut self.body)) {
            Some(Ok(Some(size))) => size,
            // The end of a segment that was left for the next one, which starts here.
            Some(Ok(None)) => {
                let file = File::open(self.dir.join(segment_name(self.pos)))?;
                self.file = Some(BufReader::with_capacity(1 << 20, file));
                return self.next();
            }
            Some(Err(e)) => return Err(e),
            None => return Ok(None),
        };
        let record = Record::decode(&self.body).ok_or_else(|| damaged("a record is malformed"))?;
        self.pos += size;
        Ok(Some((self.pos, record)))
    }

    /// Skips past a damaged record to the next segment; the offset skipped to, if any.
    pub(crate) fn skip_segment(&mut self) -> io::Result<Option<u64>> {
        let next = segments(&self.dir)?.into_iter().find(|s| *s > self.pos);
        if let Some(next) = next {
            self.seek(next)?;
        }
        Ok(next)
    }

    pub(crate) fn position(&self) -> u64 {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    fn fill(spool: &mut Spool, n: usize) {
        for i in 0..n {
            let key = format!("demo:a{}", i % 3);
            let payload = format!("{{\"n\":{i}}}");
            assert!(
                spool
                    .append(Topic::AgentState, key.as_bytes(), payload.as_bytes())
                    .expect("append")
            );
        }
        spool.sync().expect("sync");
    }

    fn read_all(reader: &mut Reader) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((_, r)) = reader.next().expect("read") {
            out.push(String::from_utf8(r.payload).expect("utf-8"));
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = shared();
        let (mut spool, damage) = Spool::open(dir.path(), 1024, u64::MAX, s.clone()).expect("open");
        assert_eq!(damage, None);
        fill(&mut spool, 200);
        assert!(segments(dir.path()).expect("list").len() > 3, "rotated");
        let mut reader = Reader::new(dir.path(), s.clone());
        let got = read_all(&mut reader);
        assert_eq!(got.len(), 200);
        assert_eq!(got[0], "{\"n\":0}");
        assert_eq!(got[199], "{\"n\":199}");
        // Acknowledged segments go; the cursor survives a reopen.
        s.acked.store(reader.position(), Ordering::Release);
        spool.tidy().expect("tidy");
        assert_eq!(segments(dir.path()).expect("list").len(), 1);
        assert!(spool.disk_bytes() < 1024);
        drop(spool);
        let s2 = shared();
        let (_spool, damage) = Spool::open(dir.path(), 1024, u64::MAX, s2.clone()).expect("reopen");
        assert_eq!(damage, None);
        assert_eq!(s2.acked.load(Ordering::Acquire), reader.position());
        let mut reader = Reader::new(dir.path(), s2.clone());
        reader.seek(s2.acked.load(Ordering::Acquire)).expect("seek");
        assert!(read_all(&mut reader).is_empty());
    }

    #[test]
    fn a_truncated_tail_is_cut_off_and_reported_and_the_rest_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20, u64::MAX, shared()).expect("open");
        fill(&mut spool, 10);
        drop(spool);
        let path = dir.path().join(segment_name(0));
        let len = fs::metadata(&path).expect("meta").len();
        // A crash mid-write: the last record is cut in its body.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(len - 3).expect("truncate");
        drop(file);
        let s = shared();
        let (mut spool, damage) =
            Spool::open(dir.path(), 1 << 20, u64::MAX, s.clone()).expect("reopen");
        let damage = damage.expect("damage reported");
        assert_eq!(damage.at + damage.bytes_dropped, len - 3);
        assert!(damage.bytes_dropped > 0);
        let mut reader = Reader::new(dir.path(), s.clone());
        reader.seek(0).expect("seek");
        let got = read_all(&mut reader);
        assert_eq!(got.len(), 9, "every record before the damage");
        assert_eq!(got[8], "{\"n\":8}");
        // Writing goes on after the cut, readable in order.
        fill(&mut spool, 1);
        assert_eq!(read_all(&mut reader), ["{\"n\":0}"]);
    }

    #[test]
    fn garbage_at_the_tail_is_detected_by_its_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20, u64::MAX, shared()).expect("open");
        fill(&mut spool, 5);
        drop(spool);
        let path = dir.path().join(segment_name(0));
        let good = fs::metadata(&path).expect("meta").len();
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        // A whole header that promises a body, and a body of the wrong bytes.
        file.write_all(&[4, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9])
            .expect("write");
        drop(file);
        let (_spool, damage) =
            Spool::open(dir.path(), 1 << 20, u64::MAX, shared()).expect("reopen");
        let damage = damage.expect("damage reported");
        assert_eq!((damage.at, damage.bytes_dropped), (good, 12));
        assert_eq!(fs::metadata(&path).expect("meta").len(), good);
    }

    #[test]
    fn a_full_spool_refuses_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = shared();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20, 1000, s.clone()).expect("open");
        let mut taken = 0;
        for _ in 0..100 {
            if spool
                .append(Topic::CallThread, b"demo:t1", &[0u8; 100])
                .expect("append")
            {
                taken += 1;
            }
        }
        assert_eq!(taken, 1000 / (8 + 3 + 7 + 100));
        spool.write().expect("write");
        // Acknowledged bytes make room again.
        s.acked.store(spool.end, Ordering::Release);
        assert!(
            spool
                .append(Topic::CallThread, b"demo:t1", &[0u8; 100])
                .expect("append")
        );
    }
}
