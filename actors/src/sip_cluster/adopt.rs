//! Calls that live on when their node dies (design.md "Scaling out"). Every call leaves its
//! snapshot in Redis as its dialogs change ([`crate::call_state`]); a node that receives a
//! message of a dialog none of its calls has looks the call up by the message's Call-ID, and
//! when the node running it is dead (its alive key gone), takes it over in one script of the
//! store (of two nodes racing, one wins), makes the call again from the snapshot
//! ([`super::call::Call::restore`]) and hands it the message, as its first node would have.
//! A call that no message brings (both ends silent, only its timers running) is found by the
//! sweep: every second, the owner of each tenant claims the calls of the tenant's dead nodes.
//!
//! A message whose call another live node runs is sent on to that node; one that matches no
//! live call is answered 481 once the look-up says so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytestring::ByteString;
use ractor::ActorRef;
use switchboard_sip::{Message, Method, Response};

use crate::call_state::{Claim, SnapshotStore};
use crate::lease::Ownership;
use crate::messages::sip_cluster::{CallIn, ClusterMsg};

/// How often the sweep looks for calls of dead nodes.
pub(super) const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the look-up of a stray message's call found.
#[derive(Debug)]
pub enum Found {
    /// No live call has the Call-ID.
    Nothing,
    /// The call is this node's: its tenant, id and snapshot.
    Mine {
        tenant: String,
        call: String,
        snapshot: String,
    },
    /// Another node runs it, alive, reached at this address (if it said).
    Elsewhere {
        node: String,
        sip: Option<SocketAddr>,
    },
    /// Taken over from a dead node: its tenant, id and snapshot.
    Won {
        tenant: String,
        call: String,
        snapshot: String,
    },
    /// Redis could not say.
    Unknown(String),
}

/// What the cluster keeps to adopt calls (with Redis only: on a node alone in memory, a call
/// is never anywhere else).
pub(super) struct Adoption {
    pub(super) store: Arc<dyn SnapshotStore>,
    pub(super) ownership: Ownership,
    /// Messages waiting for the look-up their Call-ID started.
    pub(super) waiting: HashMap<ByteString, Vec<CallIn>>,
    /// Whether a sweep is under way.
    pub(super) sweeping: bool,
}

impl Adoption {
    pub(super) fn new(store: Arc<dyn SnapshotStore>, ownership: Ownership) -> Self {
        Self {
            store,
            ownership,
            waiting: HashMap::new(),
            sweeping: false,
        }
    }

    /// Holds `message` until its call is found, starting the look-up unless one for its
    /// Call-ID is under way.
    pub(super) fn look_up(&mut self, message: CallIn, cluster: &ActorRef<ClusterMsg>) {
        let Some(call_id) = message
            .message
            .headers()
            .call_id()
            .map(|c| ByteString::from(c.to_string()))
        else {
            return;
        };
        if let Some(held) = self.waiting.get_mut(&call_id) {
            held.push(message);
            return;
        }
        self.waiting.insert(call_id.clone(), vec![message]);
        let (store, cluster) = (self.store.clone(), cluster.clone());
        tokio::spawn(async move {
            let found = match store.find(&call_id).await {
                Ok(Some((tenant, call))) => claim_if_dead(store.as_ref(), &tenant, &call).await,
                Ok(None) => Found::Nothing,
                Err(e) => Found::Unknown(e.to_string()),
            };
            let _ = cluster.cast(ClusterMsg::Found { call_id, found });
        });
    }

    /// Starts a sweep of the tenants this node owns, unless one is under way; `sip` is
    /// announced for the other nodes on the way.
    pub(super) fn sweep(
        &mut self,
        tenants: Vec<String>,
        sip: Option<SocketAddr>,
        cluster: &ActorRef<ClusterMsg>,
    ) {
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let tenants: Vec<String> = tenants
            .into_iter()
            .filter(|t| self.ownership.owns(t))
            .collect();
        let (store, cluster) = (self.store.clone(), cluster.clone());
        tokio::spawn(async move {
            let won = sweep(store.as_ref(), tenants, sip).await;
            let _ = cluster.cast(ClusterMsg::Swept(won));
        });
    }
}

/// Claims call `call` of `tenant` when the node running it is dead.
async fn claim_if_dead(store: &dyn SnapshotStore, tenant: &str, call: &str) -> Found {
    let stored = match store.read(tenant, call).await {
        Ok(Some(s)) => s,
        Ok(None) => return Found::Nothing,
        Err(e) => return Found::Unknown(e.to_string()),
    };
    if stored.node == store.node() {
        return Found::Mine {
            tenant: tenant.to_owned(),
            call: call.to_owned(),
            snapshot: stored.snapshot,
        };
    }
    match store.alive(&stored.node).await {
        Ok(true) => return elsewhere(store, stored.node).await,
        Ok(false) => {}
        Err(e) => return Found::Unknown(e.to_string()),
    }
    let claim = store
        .claim(tenant, call, &stored.node, stored.generation)
        .await;
    match claim {
        Ok(Claim::Won(snapshot)) => Found::Won {
            tenant: tenant.to_owned(),
            call: call.to_owned(),
            snapshot,
        },
        Ok(Claim::Mine(snapshot)) => Found::Mine {
            tenant: tenant.to_owned(),
            call: call.to_owned(),
            snapshot,
        },
        Ok(Claim::Other(node)) => elsewhere(store, node).await,
        Ok(Claim::Gone) => Found::Nothing,
        Err(e) => Found::Unknown(e.to_string()),
    }
}

async fn elsewhere(store: &dyn SnapshotStore, node: String) -> Found {
    let sip = store.sip_of(&node).await.ok().flatten();
    Found::Elsewhere { node, sip }
}

/// The calls of `tenants` whose nodes are dead, claimed: tenant, call and snapshot of each.
async fn sweep(
    store: &dyn SnapshotStore,
    tenants: Vec<String>,
    sip: Option<SocketAddr>,
) -> Vec<(String, String, String)> {
    if let Some(sip) = sip
        && let Err(e) = store.announce(sip).await
    {
        tracing::debug!(error = %e, "node's SIP address not announced");
    }
    // This node's own alive key missing: Redis lost it (restarted empty, or this node was
    // away). Other nodes' keys may be missing for the same reason: none is judged dead.
    if !store.alive(store.node()).await.unwrap_or(false) {
        return Vec::new();
    }
    let mut won = Vec::new();
    let mut dead: HashMap<String, bool> = HashMap::new();
    for tenant in tenants {
        let calls = match store.calls(&tenant).await {
            Ok(calls) => calls,
            Err(e) => {
                tracing::debug!(%tenant, error = %e, "calls of dead nodes not looked for");
                continue;
            }
        };
        for (call, node) in calls {
            if node == store.node() {
                continue;
            }
            let is_dead = match dead.get(&node) {
                Some(d) => *d,
                None => match store.alive(&node).await {
                    Ok(alive) => *dead.entry(node.clone()).or_insert(!alive),
                    Err(_) => continue,
                },
            };
            if !is_dead {
                continue;
            }
            if let Found::Won {
                tenant,
                call,
                snapshot,
            } = claim_if_dead(store, &tenant, &call).await
            {
                won.push((tenant, call, snapshot));
            }
        }
    }
    won
}

/// The answer to a request whose dialog no live call has (RFC 3261 12.2.2); nothing for an
/// ACK or a response.
pub(super) fn no_such_call(message: &Message) -> Option<Response> {
    match message {
        Message::Request(r) if r.method != Method::Ack => {
            Some(Response::answering(&r.headers, 481))
        }
        _ => None,
    }
}
