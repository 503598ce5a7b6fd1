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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use ractor::ActorRef;
use switchboard_sip::{Message, Method, Response};

use crate::lease::Ownership;
use crate::messages::call_state::{Claim, SnapshotStore};
use crate::messages::sip_cluster::{CallIn, ClusterMsg, Found};

/// How often the sweep looks for calls of dead nodes.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How often the node notes that it runs (see [`Liveness`]).
const BEAT: Duration = Duration::from_millis(250);

/// A gap between two beats past which the node may have been taken for dead: well under
/// the alive key's time to live (3 s), far above any pause of a running process.
const STALE: Duration = Duration::from_secs(2);

/// How long the alive key is said for when the node wakes (as the bus says it).
const ALIVE_TTL: Duration = Duration::from_secs(3);

/// Whether the node has been running all along. A node stopped (SIGSTOP, a VM frozen) past
/// its alive key's life may find on waking that other nodes adopted its calls; until it has
/// settled which are still its own, none of its calls sends anything: a call that finds the
/// node [`Liveness::blocked`] parks, and goes on (or stops without a word) once settled.
#[derive(Debug)]
pub(super) struct Liveness {
    epoch: Instant,
    /// Milliseconds from `epoch` at the last beat.
    beat: AtomicU64,
    /// Set on waking from a gap, until the node has settled its calls.
    suspect: AtomicBool,
    parked: Mutex<Vec<super::shard::CallHandle>>,
}

impl Liveness {
    /// Starts beating; a gap between beats sends the cluster [`ClusterMsg::Verify`].
    pub(super) fn start(cluster: ActorRef<ClusterMsg>) -> Arc<Self> {
        let liveness = Arc::new(Self {
            epoch: Instant::now(),
            beat: AtomicU64::new(0),
            suspect: AtomicBool::new(false),
            parked: Mutex::default(),
        });
        let beating = liveness.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BEAT);
            loop {
                tick.tick().await;
                if beating.gap(Instant::now()) > STALE {
                    // Suspect first: a call running before the next line must find it so.
                    beating.suspect.store(true, Ordering::SeqCst);
                    tracing::warn!(
                        gap_ms = beating.gap(Instant::now()).as_millis() as u64,
                        "this node was away: its calls wait until it knows which are still its own"
                    );
                    if cluster.cast(ClusterMsg::Verify).is_err() {
                        return;
                    }
                }
                beating
                    .beat
                    .store(beating.ms(Instant::now()), Ordering::SeqCst);
            }
        });
        liveness
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn gap(&self, now: Instant) -> Duration {
        Duration::from_millis(
            self.ms(now)
                .saturating_sub(self.beat.load(Ordering::SeqCst)),
        )
    }

    /// Whether a call must hold what it would send (the node may have been taken for dead).
    pub(super) fn blocked(&self, now: Instant) -> bool {
        self.suspect.load(Ordering::SeqCst) || self.gap(now) > STALE
    }

    /// Wakes `call` once the node has settled its calls.
    pub(super) fn park(&self, call: super::shard::CallHandle) {
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    /// The node has settled its calls: those parked go on.
    pub(super) fn settled(&self) -> Vec<super::shard::CallHandle> {
        self.suspect.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.parked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Which of this node's calls (by id) other nodes adopted while it was away: after saying
/// again that it runs, each call the store names as its own is settled again (so that a
/// claim begun meanwhile fails); those it names as another node's are that node's.
pub(super) async fn adopted_while_away(
    store: &dyn SnapshotStore,
    tenants: Vec<String>,
) -> crate::Result<Vec<String>> {
    store.say_alive(ALIVE_TTL).await?;
    let mut gone = Vec::new();
    for tenant in tenants {
        for (call, node) in store.calls(&tenant).await? {
            if node == store.node() {
                if !store.confirm(&tenant, &call).await? {
                    gone.push(call);
                }
            } else {
                gone.push(call);
            }
        }
    }
    Ok(gone)
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
    /// Set as the node stops and hands its calls over: it takes none back, and adopts none.
    pub(super) leaving: bool,
}

impl Adoption {
    pub(super) fn new(store: Arc<dyn SnapshotStore>, ownership: Ownership) -> Self {
        Self {
            store,
            ownership,
            waiting: HashMap::new(),
            sweeping: false,
            leaving: false,
        }
    }

    /// Holds `message` until its call is found among those of `tenants`, starting the
    /// look-up unless one for its Call-ID is under way.
    pub(super) fn look_up(
        &mut self,
        message: CallIn,
        tenants: Vec<String>,
        cluster: &ActorRef<ClusterMsg>,
    ) {
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
            let found = match store.find(&tenants, &call_id).await {
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
        if self.sweeping || self.leaving {
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

/// The calls of `tenants` whose nodes are dead, claimed: tenant, call and snapshot of each;
/// an error when Redis could not say (logged: those calls are not recovered meanwhile).
async fn sweep(
    store: &dyn SnapshotStore,
    tenants: Vec<String>,
    sip: Option<SocketAddr>,
) -> Result<Vec<(String, String, String)>, ()> {
    if let Some(sip) = sip
        && let Err(e) = store.announce(sip).await
    {
        tracing::debug!(error = %e, "node's SIP address not announced");
    }
    // This node's own alive key missing: Redis lost it (restarted empty, or this node was
    // away). Other nodes' keys may be missing for the same reason: none is judged dead.
    match store.alive(store.node()).await {
        Ok(true) => {}
        Ok(false) => return Ok(Vec::new()),
        Err(e) => {
            tracing::warn!(error = %e,
                "calls of dead nodes not looked for: Redis is unreachable, they cannot be recovered meanwhile");
            return Err(());
        }
    }
    let mut won = Vec::new();
    let mut dead: HashMap<String, bool> = HashMap::new();
    for tenant in tenants {
        let calls = match store.calls(&tenant).await {
            Ok(calls) => calls,
            Err(e) => {
                tracing::warn!(%tenant, error = %e,
                    "calls of dead nodes not looked for: Redis could not say");
                return Err(());
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
    Ok(won)
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
