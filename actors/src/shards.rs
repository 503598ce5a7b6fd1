//! A fixed set of actors of one kind, each key always handled by the same one: changes to one
//! key (an address of record, a call thread) happen in order while other keys proceed side by
//! side on the other shards.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ractor::ActorRef;

/// Cheap to clone.
pub(crate) struct Shards<M>(Arc<[ActorRef<M>]>);

impl<M> Clone for Shards<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M> std::fmt::Debug for Shards<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("len", &self.0.len())
            .finish()
    }
}

impl<M> Shards<M> {
    /// At least one shard.
    pub(crate) fn new(shards: Vec<ActorRef<M>>) -> Self {
        assert!(!shards.is_empty(), "at least one shard");
        Self(shards.into())
    }

    /// The shard that handles `key`.
    pub(crate) fn pick(&self, key: impl Hash) -> &ActorRef<M> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.0[(h.finish() % self.0.len() as u64) as usize]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &ActorRef<M>> {
        self.0.iter()
    }
}
