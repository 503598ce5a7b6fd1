//! The face of the registrar: the REGISTER the edge hands it and the router that hands it
//! straight to its shard, and the bindings it keeps, which calls and agent state read through
//! [`BindingStore`] (see [`crate::registrar`]).

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_proto::events::Binding as BindingEvent;
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Request, Response};

use crate::Error;
use crate::shards::Shards;
use crate::store::StoreFuture;
use crate::tenant::Tenant;

/// A REGISTER for the registrar, from the proxy.
#[derive(Debug)]
pub struct RegisterRequest {
    pub tenant: Arc<Tenant>,
    pub request: Request,
    pub source: SocketAddr,
    pub transport: Transport,
}

/// Where the response to a REGISTER goes: called once, by the shard that handled it, so the
/// answer reaches its transaction without a further hop.
pub type Reply = Box<dyn FnOnce(Response) + Send>;

/// A REGISTER for the shard of its address of record, with where its answer goes.
pub struct RegisterJob(pub RegisterRequest, pub Reply);

/// Hands a REGISTER straight to the shard that owns its address of record, without a stop at
/// the front actor: the same phone always lands on the same shard, which holds its nonce
/// counts. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    shards: Shards<RegisterJob>,
}

impl Router {
    pub(crate) fn new(shards: Shards<RegisterJob>) -> Self {
        Self { shards }
    }

    /// Fails when the shard has stopped; the reply is then never called.
    pub fn register(&self, register: RegisterRequest, reply: Reply) -> Result<(), Error> {
        // Shard by the To header's text, tags and parameters aside.
        let to = register
            .request
            .headers
            .get(&HeaderName::To)
            .map(|to| to.split(';').next().unwrap_or_default());
        let shard = self.shards.pick((&register.tenant.name, to));
        self.shards
            .cast_to(shard, RegisterJob(register, reply))
            .map_err(|_| Error::Stopped("registrar shard"))
    }
}

/// One binding of an address of record to a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub aor: String,
    pub dn: String,
    /// The contact URI as registered.
    pub contact: String,
    /// The contact's header parameters other than `expires` (`;q=0.5;+sip.instance=...`).
    pub params: String,
    /// The contact URI in the form bindings are compared by (RFC 3261 19.1.4).
    pub key: String,
    pub q: Option<u16>,
    pub expires_at_ms: u64,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from: the way back to a phone behind NAT.
    pub source: SocketAddr,
    pub transport: String,
    pub user_agent: Option<String>,
}

impl Binding {
    /// Whole seconds left at `now_ms`, rounded up.
    pub fn remaining(&self, now_ms: u64) -> u32 {
        (self.expires_at_ms.saturating_sub(now_ms).div_ceil(1000)).min(u64::from(u32::MAX)) as u32
    }

    /// The binding as an event payload.
    pub fn into_event(self, now_ms: u64, reason: &str) -> BindingEvent {
        BindingEvent {
            expires: if reason.is_empty() {
                self.remaining(now_ms)
            } else {
                0
            },
            aor: self.aor,
            dn: self.dn,
            contact: self.contact,
            q: self.q.map_or(0, u32::from),
            source: switchboard_sip::addr_text(self.source),
            transport: self.transport,
            user_agent: self.user_agent.unwrap_or_default(),
            call_id: self.call_id,
            cseq: self.cseq,
            expires_at_ms: self.expires_at_ms as i64,
            reason: reason.to_owned(),
        }
    }
}

/// The writes a REGISTER makes to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub upserts: Vec<Arc<Binding>>,
    /// Keys of bindings to delete.
    pub removals: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

/// Bindings by tenant and address of record, as the registrar keeps them (in memory or in
/// Redis, see [`crate::registrar`]) and calls and agent state read them. Each call is atomic on
/// its own; the registrar sees to it that one address of record is changed by one task at a
/// time on a node.
pub trait BindingStore: Send + Sync + 'static {
    /// Every binding of an address of record, expired ones included. Bindings are handed out
    /// shared with the store where it keeps them in memory, so that a REGISTER copies none.
    fn load<'a>(&'a self, tenant: &'a str, aor: &'a str) -> StoreFuture<'a, Vec<Arc<Binding>>>;

    /// Writes a REGISTER's changes at once (the store keeps the bindings it is given).
    fn save<'a>(&'a self, tenant: &'a str, aor: &'a str, changes: Changes) -> StoreFuture<'a, ()>;

    /// Removes up to `limit` bindings of a tenant that expired at or before `now_ms` and
    /// returns them; a binding is returned by one caller only, even with several nodes.
    fn take_expired<'a>(
        &'a self,
        tenant: &'a str,
        now_ms: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Arc<Binding>>>;

    /// Every binding of a tenant; for inspection and tests.
    fn all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Binding>>;
}

/// The bindings of `aor` not expired yet, highest q first: the contacts to ring.
pub fn live(mut bindings: Vec<Binding>, now_ms: u64) -> Vec<Binding> {
    bindings.retain(|b| b.expires_at_ms > now_ms);
    bindings.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
    bindings
}
