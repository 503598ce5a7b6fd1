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

/// A hash map for the tables every request looks into (the streams in memory, the bindings in
/// memory) keyed by text: foldhash, seeded at random per map, rather than std's SipHash, which
/// cost several times the lookup itself on these short keys. Its keys are names the node's
/// configuration allows (tenants, topics, DNs' addresses of record) and the contacts of
/// authenticated phones, not text any source may choose.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A new identifier of an event or a call: a UUID of version 7 (its time first, so that ids
/// sort roughly as they were made), whose random part comes from the pool the SIP tags draw
/// on rather than from a system call each.
pub fn new_id() -> String {
    let random = switchboard_sip::random_bytes::<10>();
    uuid::Builder::from_unix_timestamp_millis(unix_ms(), &random)
        .into_uuid()
        .to_string()
}

/// Milliseconds since the Unix epoch, the time stamps of bindings, nonces and events.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_version_7_time_first_and_distinct() {
        let before = super::unix_ms();
        let ids: Vec<String> = (0..1000).map(|_| super::new_id()).collect();
        let after = super::unix_ms();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            let (secs, nanos) = uuid.get_timestamp().expect("a time").to_unix();
            let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!(
                (before..=after).contains(&ms),
                "{id}: {ms} outside {before}..={after}"
            );
        }
    }
}
