//! switchboard's actor systems, one module each, named as in design.md: `sip_proxy` (the SIP
//! edge), `sip_cluster` (calls, each a back-to-back user agent), `call_state` (call threads,
//! their events and snapshots), `agent_state` (agents, their logins and states), `registrar`
//! (bindings and digest authentication) and `tenant` (configuration), with the event sink
//! they share and the merged feed desktops follow. Each system's store sits beside it.

pub mod agent_state;
pub mod call_state;
pub mod callbacks;
mod error;
pub mod events;
pub mod feed;
pub mod ors;
#[cfg(test)]
mod probe;
mod redis_retry;
pub mod registrar;
pub mod rq;
mod shards;
pub mod sip_cluster;
pub mod sip_proxy;
pub mod tenant;
pub mod wakeups;

pub use error::{Error, Result};

/// Milliseconds since the Unix epoch, the time stamps of bindings, nonces and events.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
