//! switchboard's actor systems, one module each, named as in design.md: `sip_proxy` (the SIP
//! edge), `sip_cluster` (calls, each a back-to-back user agent), `call_state` (call threads,
//! their events and snapshots), `agent_state` (agents, their logins and states), `registrar`
//! (bindings and digest authentication), `ors` (routing sessions and GES callbacks), `rq`
//! (virtual queues and the Ready-agent pool) and `tenant` (configuration). The systems talk in
//! the vocabulary of [`messages`], never importing one another; each is started under the
//! node's root [`supervisor`]; each system's store sits beside it ([`store`] says how). Beside
//! them: the event sink they share ([`events`]) and the merged feed desktops follow ([`feed`]).

pub mod agent_state;
pub mod bus;
pub mod call_state;
pub mod defence;
mod error;
pub mod events;
pub mod feed;
pub mod figures;
pub mod keys;
pub mod lease;
pub mod messages;
pub mod msml;
pub mod ors;
#[cfg(test)]
mod probe;
pub mod redis_conn;
mod redis_retry;
pub mod registrar;
pub mod rq;
mod shards;
pub mod sip_cluster;
pub mod sip_proxy;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod tenant;
pub mod wakeups;

pub use error::{Error, Result};

/// Milliseconds since the Unix epoch, the time stamps of bindings, nonces and events.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
