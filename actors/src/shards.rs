//! A fixed set of actors of one kind, each key always handled by the same one: changes to one
//! key (an address of record, a call thread) happen in order while other keys proceed side by
//! side on the other shards.
//!
//! Each shard is named, so that a shard the root supervisor started again (see
//! [`crate::supervisor`]) is found by its name: a message the old one can no longer take goes
//! to the new one.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use ractor::{ActorRef, Message, MessagingErr};

/// Cheap to clone.
pub(crate) struct Shards<M> {
    refs: Arc<[ActorRef<M>]>,
    /// The shards' names, in the same order.
    names: Arc<[String]>,
}

impl<M> Clone for Shards<M> {
    fn clone(&self) -> Self {
        Self {
            refs: self.refs.clone(),
            names: self.names.clone(),
        }
    }
}

impl<M> std::fmt::Debug for Shards<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("len", &self.refs.len())
            .finish()
    }
}

impl<M: Message> Shards<M> {
    /// At least one shard, each with its name.
    pub(crate) fn new(shards: Vec<(String, ActorRef<M>)>) -> Self {
        assert!(!shards.is_empty(), "at least one shard");
        let (names, refs): (Vec<_>, Vec<_>) = shards.into_iter().unzip();
        Self {
            refs: refs.into(),
            names: names.into(),
        }
    }

    /// The name of shard `i` of the set `set` (see [`set_name`]).
    pub(crate) fn name(set: &str, i: usize) -> String {
        format!("{set}/{i}")
    }

    /// The number of the shard that handles `key`.
    pub(crate) fn pick(&self, key: impl Hash) -> usize {
        pick(key, self.refs.len())
    }

    /// Sends `message` to the shard that handles `key`.
    pub(crate) fn cast(&self, key: impl Hash, message: M) -> Result<(), MessagingErr<M>> {
        self.cast_to(self.pick(key), message)
    }

    /// Sends `message` to shard `i`; to the shard started again under its name when the first
    /// one has stopped.
    pub(crate) fn cast_to(&self, i: usize, message: M) -> Result<(), MessagingErr<M>> {
        match self.refs[i].cast(message) {
            Err(MessagingErr::SendErr(message)) => {
                match ractor::registry::where_is(self.names[i].clone()) {
                    Some(cell) => cell.send_message(message),
                    None => Err(MessagingErr::SendErr(message)),
                }
            }
            sent => sent,
        }
    }

    pub(crate) fn stop(&self) {
        for (shard, name) in self.refs.iter().zip(self.names.iter()) {
            shard.stop(None);
            if let Some(again) = ractor::registry::where_is(name.clone()) {
                again.stop(None);
            }
        }
    }
}

/// Which of `n` parts `key` belongs to, by a fixed hash rather than a table's seeded one: the
/// same key always lands in the same part (a shard, a lock of a sharded table).
pub(crate) fn pick(key: impl Hash, n: usize) -> usize {
    (foldhash::fast::FixedState::default().hash_one(key) % n as u64) as usize
}

/// A number for a shard set's names, unique in the process (tests start several nodes).
pub(crate) fn set_name(kind: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{kind}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
