//! A tenant's events as a desktop follows them: its agent-state, call-thread and refused-request
//! streams merged into one sequence in the order they were written, resumable from a cursor
//! (design.md "Events").
//!
//! Entry ids increase across all of a tenant's streams (see [`crate::events`]), so merging by
//! id is exact. A follower first catches up from its cursor by reading the streams, up to the
//! newest entry that existed when it began, then takes new entries as the node's tail hands
//! them out; one that falls behind the tail catches up again from the streams. Every entry
//! comes once, in order; an entry trimmed away before it could be read is an error, never a
//! silent gap.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::events::{Entry, EntryId, EventSink, TOPIC_AGENTSTATE, TOPIC_CALLTHREAD, TOPIC_ERRORS};

/// The streams a feed merges.
pub const FEED_TOPICS: [&str; 3] = [TOPIC_AGENTSTATE, TOPIC_CALLTHREAD, TOPIC_ERRORS];

/// How many entries one read of a stream takes while catching up.
const BATCH: usize = 500;

/// Where a follower is: the last entry it has seen of each merged stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor([EntryId; 3]);

impl Cursor {
    /// The form handed to desktops (opaque to them).
    pub fn encode(&self) -> String {
        let [a, c, e] = self.0;
        format!("1.{a}.{c}.{e}")
    }

    /// A cursor before every entry written from `ms` (UTC milliseconds) on.
    pub fn since(ms: u64) -> Self {
        Cursor([EntryId { ms, seq: 0 }.before(); 3])
    }

    /// This cursor past what a [`FeedError::Trimmed`] said was trimmed from `stream`: just
    /// before its oldest entry held (or at `now_ms` when it holds none).
    pub fn past_trimmed(mut self, stream: &str, oldest: Option<EntryId>, now_ms: u64) -> Self {
        if let Some(i) = FEED_TOPICS.iter().position(|t| *t == stream) {
            self.0[i] = oldest.map_or(EntryId { ms: now_ms, seq: 0 }, EntryId::before);
        }
        self
    }

    /// A cursor [`Cursor::encode`] wrote; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        if parts.next()? != "1" {
            return None;
        }
        let mut ids = [EntryId::default(); 3];
        for id in &mut ids {
            *id = parts.next()?.parse().ok()?;
        }
        parts.next().is_none().then_some(Cursor(ids))
    }
}

/// Why a feed stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Entries after the cursor were trimmed away: the follower must read the current state
    /// again and follow from now.
    #[error("events after this cursor are no longer held in {stream}; the oldest held is {}",
        .oldest.map_or_else(|| "none".to_owned(), |o| o.to_string()))]
    Trimmed {
        stream: &'static str,
        oldest: Option<EntryId>,
    },
    #[error("event store: {0}")]
    Store(#[from] crate::Error),
}

/// What a follower receives: each entry with the cursor that resumes after it.
pub type Item = Result<(Cursor, Arc<Entry>), FeedError>;

/// A follower of a tenant's merged streams, placed: everything written after [`open`]
/// returned (or after its cursor) reaches it.
pub struct Follower {
    sink: EventSink,
    tenant: String,
    live: broadcast::Receiver<Arc<Entry>>,
    pos: Cursor,
    /// The newest entry handed out (or the start point).
    last: EntryId,
}

/// Places a follower at `from` (at the end of the streams when `None`); an error when entries
/// after the cursor were trimmed away.
pub async fn open(
    sink: EventSink,
    tenant: String,
    from: Option<Cursor>,
) -> Result<Follower, FeedError> {
    // Listen first, then look where the streams end: nothing written after that point can
    // be missed by the listener.
    let live = sink.follow(&tenant, &FEED_TOPICS).await?;
    let pos = match from {
        Some(cursor) => {
            check_held(&sink, &tenant, &cursor).await?;
            cursor
        }
        None => Cursor(heads(&sink, &tenant).await?),
    };
    let last = pos.0.into_iter().max().unwrap_or_default();
    Ok(Follower {
        sink,
        tenant,
        live,
        pos,
        last,
    })
}

impl Follower {
    /// Sends each entry to `out` until `out` is closed or an error (sent last) ends it.
    pub async fn run(mut self, out: mpsc::Sender<Item>) {
        if let Err(e) = self.follow(&out).await {
            let _ = out.send(Err(e)).await;
        }
    }

    async fn follow(&mut self, out: &mpsc::Sender<Item>) -> Result<(), FeedError> {
        let (sink, tenant) = (&self.sink, self.tenant.as_str());
        loop {
            if !catch_up(sink, tenant, &mut self.pos, &mut self.last, out).await? {
                return Ok(());
            }
            loop {
                let received = tokio::select! {
                    received = self.live.recv() => received,
                    // The follower went away while nothing happened.
                    () = out.closed() => return Ok(()),
                };
                match received {
                    Ok(entry) => {
                        if entry.id <= self.last {
                            continue;
                        }
                        let Some(i) = FEED_TOPICS.iter().position(|t| *t == entry.event.topic)
                        else {
                            continue;
                        };
                        self.pos.0[i] = entry.id;
                        self.last = entry.id;
                        if out.send(Ok((self.pos, entry))).await.is_err() {
                            return Ok(());
                        }
                    }
                    // Fallen behind: read what was missed from the streams.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}

/// Fails when entries after the cursor are no longer held.
async fn check_held(sink: &EventSink, tenant: &str, pos: &Cursor) -> Result<(), FeedError> {
    for (i, topic) in FEED_TOPICS.iter().enumerate() {
        if let Err(oldest) = sink.held_after(tenant, topic, pos.0[i]).await? {
            return Err(FeedError::Trimmed {
                stream: topic,
                oldest,
            });
        }
    }
    Ok(())
}

/// The newest entry of each merged stream.
async fn heads(sink: &EventSink, tenant: &str) -> Result<[EntryId; 3], FeedError> {
    let mut ids = [EntryId::default(); 3];
    for (id, topic) in ids.iter_mut().zip(FEED_TOPICS) {
        *id = sink.last_id(tenant, topic).await?;
    }
    Ok(ids)
}

/// Sends, in id order, every entry after `pos` up to the newest that exists now. False when
/// the follower went away.
async fn catch_up(
    sink: &EventSink,
    tenant: &str,
    pos: &mut Cursor,
    last: &mut EntryId,
    out: &mpsc::Sender<Item>,
) -> Result<bool, FeedError> {
    check_held(sink, tenant, pos).await?;
    // Entries up to here exist in every stream already; later ones arrive live.
    let until = heads(sink, tenant)
        .await?
        .into_iter()
        .max()
        .unwrap_or_default();
    loop {
        let mut batch: Vec<(usize, Entry)> = Vec::new();
        // A stream that filled its batch may hold more below another stream's entries:
        // only entries up to the lowest such cut are in order yet.
        let mut cut = until;
        for (i, topic) in FEED_TOPICS.iter().enumerate() {
            if pos.0[i] >= until {
                continue;
            }
            let got = sink.read_after(tenant, topic, pos.0[i], BATCH).await?;
            if got.len() == BATCH
                && let Some(e) = got.last()
            {
                cut = cut.min(e.id);
            }
            batch.extend(got.into_iter().map(|e| (i, e)));
        }
        batch.retain(|(_, e)| e.id <= cut);
        if batch.is_empty() {
            return Ok(true);
        }
        batch.sort_by_key(|(_, e)| e.id);
        for (i, entry) in batch {
            if entry.id <= *last {
                continue;
            }
            pos.0[i] = entry.id;
            *last = entry.id;
            if out.send(Ok((*pos, Arc::new(entry)))).await.is_err() {
                return Ok(false);
            }
        }
        if cut == until {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_proto::events::{AgentState, CallThread, Payload};

    use super::*;
    use crate::events::new_event;

    fn cursor_text() -> String {
        Cursor([
            EntryId { ms: 5, seq: 1 },
            EntryId { ms: 7, seq: 0 },
            EntryId::default(),
        ])
        .encode()
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let text = cursor_text();
        assert_eq!(text, "1.5-1.7-0.0-0");
        assert_eq!(Cursor::decode(&text).map(|c| c.encode()), Some(text));
        for bad in [
            "",
            "1.5-1.7-0",
            "2.5-1.7-0.0-0",
            "1.5-1.7-0.0-0.9-9",
            "1.a-1.7-0.0-0",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }

    async fn publish(sink: &EventSink, topic: &str, n: usize) {
        let payload = if topic == TOPIC_AGENTSTATE {
            Payload::Agent(AgentState::default())
        } else {
            Payload::Call(CallThread::default())
        };
        let event = new_event(
            "demo",
            topic,
            format!("demo:{n}"),
            &n.to_string(),
            payload,
            1,
        );
        sink.publish(event).await.expect("publish");
    }

    async fn next(rx: &mut mpsc::Receiver<Item>) -> (Cursor, String) {
        let item = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("in time")
            .expect("open")
            .expect("no error");
        (item.0, item.1.event.kind.clone())
    }

    #[tokio::test]
    async fn a_follower_resumes_after_its_cursor_in_write_order() {
        let sink = EventSink::memory();
        let (tx, mut rx) = mpsc::channel(16);
        let follower = open(sink.clone(), "demo".into(), None).await.expect("open");
        tokio::spawn(follower.run(tx));
        for (n, topic) in [TOPIC_AGENTSTATE, TOPIC_CALLTHREAD, TOPIC_AGENTSTATE]
            .into_iter()
            .enumerate()
        {
            publish(&sink, topic, n).await;
        }
        let (_, first) = next(&mut rx).await;
        let (cursor, second) = next(&mut rx).await;
        assert_eq!([first, second], ["0", "1"]);
        drop(rx);
        // Written while nobody follows.
        publish(&sink, TOPIC_CALLTHREAD, 3).await;
        let (tx, mut rx) = mpsc::channel(16);
        let follower = open(sink.clone(), "demo".into(), Some(cursor))
            .await
            .expect("open");
        tokio::spawn(follower.run(tx));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            kinds.push(next(&mut rx).await.1);
        }
        publish(&sink, TOPIC_AGENTSTATE, 4).await;
        kinds.push(next(&mut rx).await.1);
        assert_eq!(kinds, ["2", "3", "4"], "no gap, no duplicate, in order");
    }

    #[tokio::test]
    async fn a_cursor_behind_what_is_held_is_an_error() {
        let sink = EventSink::memory();
        for n in 0..crate::events::DEFAULT_STREAM_LENGTH + 1 {
            publish(&sink, TOPIC_CALLTHREAD, n).await;
        }
        let opened = open(sink, "demo".into(), Some(Cursor::default())).await;
        assert!(
            matches!(
                opened,
                Err(FeedError::Trimmed {
                    stream: TOPIC_CALLTHREAD,
                    oldest: Some(_)
                })
            ),
            "{:?}",
            opened.err()
        );
    }
}
