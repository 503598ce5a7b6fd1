//! Which call takes the messages of each SIP Call-ID: the edge's own index, kept from what the
//! cluster tells it ([`CallRoute`]) and the calls it asked the cluster to start, so that a
//! message of a call in progress goes straight to the call's shard, with no stop at the
//! cluster. A call's own Call-IDs carry its number on the node; a caller's Call-ID, and a leg
//! handed from one call to another, are looked up.

use std::collections::HashMap;
use std::sync::Arc;

use crate::messages::sip_cluster::{CallIn, CallInbox, own_key};
use crate::messages::sip_proxy::CallRoute;
use bytestring::ByteString;

struct Route {
    call: CallInbox<CallIn>,
    /// The Call-IDs it is found by: its first leg's, if it arrived; an adopted call's legs'.
    call_ids: Vec<ByteString>,
}

pub(super) struct Routes {
    /// The prefix of the Call-IDs this node's calls make.
    node: Arc<str>,
    by_key: HashMap<u64, Route>,
    /// Calls by the Call-ID their first leg arrived with.
    by_call_id: HashMap<ByteString, u64>,
    /// Legs handed to another call than the one their Call-ID names.
    moved: HashMap<ByteString, u64>,
}

impl Routes {
    pub(super) fn new(node: Arc<str>) -> Self {
        Self {
            node,
            by_key: HashMap::new(),
            by_call_id: HashMap::new(),
            moved: HashMap::new(),
        }
    }

    /// The call a message with this Call-ID belongs to, and its number.
    pub(super) fn find(&self, call_id: &str) -> Option<(u64, &CallInbox<CallIn>)> {
        let key = self
            .moved
            .get(call_id)
            .copied()
            .or_else(|| own_key(&self.node, call_id))
            .or_else(|| self.by_call_id.get(call_id).copied())?;
        self.by_key.get(&key).map(|r| (key, &r.call))
    }

    /// Call `key` started for a request that arrived with `call_id`.
    pub(super) fn started(&mut self, key: u64, call_id: ByteString, call: CallInbox<CallIn>) {
        self.by_call_id.insert(call_id.clone(), key);
        self.by_key.insert(
            key,
            Route {
                call,
                call_ids: vec![call_id],
            },
        );
    }

    /// What the cluster tells of its calls; a message handed back by a call that was over
    /// is the edge's again, and returned.
    pub(super) fn apply(&mut self, route: CallRoute) -> Option<CallIn> {
        match route {
            CallRoute::Placed { key, call } => {
                self.by_key.insert(
                    key,
                    Route {
                        call,
                        call_ids: Vec::new(),
                    },
                );
            }
            CallRoute::Adopted {
                key,
                call_ids,
                call,
            } => {
                for id in &call_ids {
                    self.by_call_id.insert(id.clone(), key);
                }
                self.by_key.insert(key, Route { call, call_ids });
            }
            CallRoute::Moved { call_id, key } => {
                self.moved.insert(call_id, key);
            }
            CallRoute::Ended(keys) => {
                for key in keys {
                    self.ended(key);
                }
            }
            CallRoute::Returned { key, message } => {
                self.ended(key);
                return Some(message);
            }
        }
        None
    }

    /// Call `key` is over (or its actor is gone): its messages are the edge's again.
    pub(super) fn ended(&mut self, key: u64) {
        if let Some(route) = self.by_key.remove(&key) {
            for call_id in route.call_ids {
                if self.by_call_id.get(&call_id) == Some(&key) {
                    self.by_call_id.remove(&call_id);
                }
            }
        }
        self.moved.retain(|_, k| *k != key);
    }
}
