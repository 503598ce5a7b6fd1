//! Errors of the actor systems and their stores.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored data does not decode: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("sip: {0}")]
    Sip(#[from] switchboard_sip::Error),
    #[error("actor failed to start: {0}")]
    Spawn(#[from] ractor::SpawnErr),
    #[error("tenant configuration: {0}")]
    Config(#[from] crate::tenant::ConfigError),
    #[error("{0} has stopped")]
    Stopped(&'static str),
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("configuration schema migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// A write only a tenant's owner may make, by a node that does not own the tenant (any
    /// more).
    #[error("this node is not the owner of tenant {0} (its lease is another node's)")]
    NotOwner(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
