//! The node's table of calls: each call's actor by the call's number on the node (which the
//! Call-IDs the call makes carry), by the id events and desktops give it, by the SIP Call-ID
//! its first leg arrived with (a REFER's Replaces may name that dialog), and by actor, to
//! forget it when it stops.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use ractor::{ActorId, ActorRef};

use super::actor::CallMsg;
use crate::messages::sip_cluster::{CallRef, own_key};

struct Entry {
    actor: ActorRef<CallMsg>,
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
    by_actor: HashMap<ActorId, u64>,
}

impl Calls {
    pub(super) fn new(node: Arc<str>) -> Self {
        Self {
            node,
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            by_call_id: HashMap::new(),
            by_actor: HashMap::new(),
        }
    }

    pub(super) fn insert(
        &mut self,
        key: u64,
        id: Arc<str>,
        call_id: ByteString,
        actor: ActorRef<CallMsg>,
    ) {
        self.by_actor.insert(actor.get_id(), key);
        self.by_id.insert(id.clone(), key);
        if !call_id.is_empty() {
            self.by_call_id.insert(call_id.clone(), key);
        }
        self.by_key.insert(key, Entry { actor, id, call_id });
    }

    /// A call actor stopped: its call is forgotten; its number, if it was one of the table's.
    pub(super) fn ended(&mut self, actor: ActorId) -> Option<u64> {
        let key = self.by_actor.remove(&actor)?;
        if let Some(entry) = self.by_key.remove(&key) {
            self.by_id.remove(&entry.id);
            if self.by_call_id.get(&entry.call_id) == Some(&key) {
                self.by_call_id.remove(&entry.call_id);
            }
        }
        Some(key)
    }

    /// The call with this id (as its events give it), and its number.
    pub(super) fn by_id(&self, id: &str) -> Option<(u64, &ActorRef<CallMsg>)> {
        let key = *self.by_id.get(id)?;
        Some((key, &self.by_key.get(&key)?.actor))
    }

    /// The call `call` names, and its number.
    pub(super) fn lookup(&self, call: &CallRef) -> Option<(u64, &ActorRef<CallMsg>)> {
        let key = match call {
            CallRef::Id(id) => return self.by_id(id),
            CallRef::SipCallId(call_id) => match own_key(&self.node, call_id) {
                Some(key) => key,
                None => *self.by_call_id.get(call_id.as_str())?,
            },
        };
        Some((key, &self.by_key.get(&key)?.actor))
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every call actor, to stop them with the node.
    pub(super) fn actors(&self) -> impl Iterator<Item = &ActorRef<CallMsg>> {
        self.by_key.values().map(|e| &e.actor)
    }
}
