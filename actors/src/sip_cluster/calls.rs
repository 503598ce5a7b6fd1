//! The node's table of calls: each call by its number on the node (which the Call-IDs the
//! call makes carry, and which picks its shard), by the id events and desktops give it, and by
//! the SIP Call-ID its first leg arrived with (a REFER's Replaces may name that dialog).

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;

use super::shard::CallHandle;
use crate::messages::sip_cluster::{CallRef, own_key};

struct Entry {
    call: CallHandle,
    id: Arc<str>,
    /// The Call-ID its first leg arrived with; empty for a call the core placed.
    call_id: ByteString,
}

pub(super) struct Calls {
    /// The prefix of the Call-IDs this node makes.
    node: Arc<str>,
    by_key: HashMap<u64, Entry>,
    by_id: HashMap<Arc<str>, u64>,
    by_call_id: HashMap<ByteString, u64>,
}

impl Calls {
    pub(super) fn new(node: Arc<str>) -> Self {
        Self {
            node,
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            by_call_id: HashMap::new(),
        }
    }

    pub(super) fn insert(&mut self, id: Arc<str>, call_id: ByteString, call: CallHandle) {
        let key = call.key;
        self.by_id.insert(id.clone(), key);
        if !call_id.is_empty() {
            self.by_call_id.insert(call_id.clone(), key);
        }
        self.by_key.insert(key, Entry { call, id, call_id });
    }

    /// Call `key` left its shard: it is forgotten. False if the table did not have it.
    pub(super) fn ended(&mut self, key: u64) -> bool {
        let Some(entry) = self.by_key.remove(&key) else {
            return false;
        };
        self.by_id.remove(&entry.id);
        if self.by_call_id.get(&entry.call_id) == Some(&key) {
            self.by_call_id.remove(&entry.call_id);
        }
        true
    }

    /// The call with this id (as its events give it).
    pub(super) fn by_id(&self, id: &str) -> Option<&CallHandle> {
        let key = *self.by_id.get(id)?;
        Some(&self.by_key.get(&key)?.call)
    }

    /// The call `call` names.
    pub(super) fn lookup(&self, call: &CallRef) -> Option<&CallHandle> {
        let key = match call {
            CallRef::Id(id) => return self.by_id(id),
            CallRef::SipCallId(call_id) => match own_key(&self.node, call_id) {
                Some(key) => key,
                None => *self.by_call_id.get(call_id.as_str())?,
            },
        };
        Some(&self.by_key.get(&key)?.call)
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every call, to end them with the node.
    pub(super) fn handles(&self) -> impl Iterator<Item = &CallHandle> {
        self.by_key.values().map(|e| &e.call)
    }
}
