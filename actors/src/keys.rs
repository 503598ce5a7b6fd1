//! Where switchboard keeps its state in Redis: every key of a tenant is
//! `<prefix>:{<tenant>}:<what>`, the prefix `sb` unless `[stores] key_prefix` says otherwise.
//!
//! The braces are a Redis Cluster hash tag: all of a tenant's keys hash to one slot, so the
//! scripts and transactions that touch several of them (the registrar's expiry sweep, an
//! event and its counter) run on one Redis Cluster node. Deployments that share one Redis, and
//! tests on a Redis Cluster (which has only database 0), keep apart by prefix.
//!
//! Versions before the hash tags wrote `sb:<tenant>:<what>`; [`migrate_legacy`] renames those
//! keys when a node starts with the default prefix. The one exception is GES's request stream,
//! an external contract: GES may still append to `sb:<tenant>:ges-callbacks`, so the callback
//! reader follows that name as well as the new one for one release
//! ([`Keys::legacy_ges_requests`]).

use std::fmt;
use std::sync::Arc;

use redis::aio::ConnectionLike;

/// The prefix of every key unless the configuration names another.
pub const DEFAULT_PREFIX: &str = "sb";

/// The names of a node's keys in Redis. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: Arc<str>,
}

/// A key prefix that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key prefix {prefix:?}: {problem}")]
pub struct BadPrefix {
    pub prefix: String,
    pub problem: &'static str,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({:?})", self.prefix)
    }
}

impl Keys {
    /// Keys under `prefix`: letters, digits, `-`, `_`, `.` and `:`, at most 64 of them (no
    /// braces, which would take the hash tag's place, and nothing a SCAN pattern reads as a
    /// wildcard).
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let bad = |problem| BadPrefix {
            prefix: prefix.to_owned(),
            problem,
        };
        if prefix.is_empty() {
            return Err(bad("empty"));
        }
        if prefix.len() > 64 {
            return Err(bad("longer than 64 characters"));
        }
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(bad("letters, digits, '-', '_', '.' and ':' only"));
        }
        Ok(Self {
            prefix: prefix.into(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What every key of `tenant` starts with: `sb:{demo}:`.
    pub fn tenant(&self, tenant: &str) -> String {
        format!("{}:{{{tenant}}}:", self.prefix)
    }

    fn of(&self, tenant: &str, what: fmt::Arguments<'_>) -> String {
        format!("{}:{{{tenant}}}:{what}", self.prefix)
    }

    /// A tenant's event stream for a topic (`voice-callthread`, `ges-callbacks`, ...).
    pub fn stream(&self, tenant: &str, topic: &str) -> String {
        self.of(tenant, format_args!("{topic}"))
    }

    /// The counter that numbers the events of one event key (a call thread, an agent).
    pub fn counter(&self, tenant: &str, key: &str) -> String {
        self.of(tenant, format_args!("seq:{key}"))
    }

    /// The id of the last entry a tenant's streams were given, for ids that only grow.
    pub fn last_entry(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("last-entry"))
    }

    /// The hash of a tenant's agents (state and DN, by login).
    pub fn agents(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("agents"))
    }

    /// A call's snapshot.
    pub fn call(&self, tenant: &str, call: &str) -> String {
        self.of(tenant, format_args!("call:{call}"))
    }

    /// The hash of a tenant's live calls, naming the node running each.
    pub fn call_nodes(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("call-nodes"))
    }

    /// The hash of a tenant's live calls by the SIP Call-IDs of their legs.
    pub fn sip_calls(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("sipcalls"))
    }

    /// The hash of one address-of-record's bindings.
    pub fn bindings(&self, tenant: &str, aor: &str) -> String {
        format!("{}{aor}", self.bindings_prefix(tenant))
    }

    /// What the keys of every address-of-record's bindings start with.
    pub fn bindings_prefix(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("reg:"))
    }

    /// The sorted set of a tenant's bindings by expiry time.
    pub fn binding_expiry(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("reg-expiry"))
    }

    /// The lease naming the tenant's owner and its fencing number (see [`crate::lease`]).
    pub fn owner(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("owner"))
    }

    /// The counter the tenant's fencing numbers come from.
    pub fn fence(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("fence"))
    }

    /// The hash of the tenant's routing sessions at rest, by call (see [`crate::ors`]).
    pub fn sessions(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("sessions"))
    }

    /// The hash of the tenant's GES callbacks, by id.
    pub fn callbacks(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("callbacks"))
    }

    /// The stream of messages for the tenant's owner, read by the owner alone (see
    /// [`crate::bus`]).
    pub fn owner_inbox(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("inbox"))
    }

    /// Where the owner's inbox entries go that can never be handled.
    pub fn dead_letters(&self, tenant: &str) -> String {
        self.of(tenant, format_args!("dead-letters"))
    }

    /// The stream of messages for one node: its calls' orders, answers to what it asked.
    pub fn node_inbox(&self, node: &str) -> String {
        format!("{}:node:{{{node}}}:inbox", self.prefix)
    }

    /// Present (with a time to live) while the node runs.
    pub fn node_alive(&self, node: &str) -> String {
        format!("{}:node:{{{node}}}:alive", self.prefix)
    }

    /// Where a running node takes SIP (`ip:port`, UDP), for messages of its calls that
    /// reach another node.
    pub fn node_sip(&self, node: &str) -> String {
        format!("{}:node:{{{node}}}:sip", self.prefix)
    }

    /// The node's bans (see [`crate::defence::store`]): `what` is `index` (each banned address
    /// by the end of its ban), `info` (each ban's JSON), `version` (bumped by each change) or
    /// `offences:<ip>`. They share one hash tag, so a script touches them together.
    pub fn bans(&self, what: &str) -> String {
        format!("{}:{{bans}}:{what}", self.prefix)
    }

    /// The stream GES appends callback requests to.
    pub fn ges_requests(&self, tenant: &str) -> String {
        self.stream(tenant, "ges-callbacks")
    }

    /// The name GES's request stream had before the hash tags, followed as well for one
    /// release; `None` under a prefix of one's own, which earlier versions never used.
    pub fn legacy_ges_requests(&self, tenant: &str) -> Option<String> {
        (*self.prefix == *DEFAULT_PREFIX)
            .then(|| format!("{DEFAULT_PREFIX}:{tenant}:ges-callbacks"))
    }

    /// The name a key of an earlier version has now: `sb:demo:agents` is `sb:{demo}:agents`.
    /// `None` for keys that are not an earlier version's (already tagged, no tenant part, or
    /// GES's request stream, which keeps its name).
    pub fn migrated(&self, legacy: &str) -> Option<String> {
        let rest = legacy.strip_prefix(DEFAULT_PREFIX)?.strip_prefix(':')?;
        let (tenant, what) = rest.split_once(':')?;
        // A key this version writes outside any tenant (`sb:node:{n}:alive`,
        // `sb:node:{n}:inbox`) is tagged in its second part: not an earlier version's.
        if tenant.is_empty()
            || tenant.contains(['{', '}'])
            || what.is_empty()
            || what.starts_with('{')
        {
            return None;
        }
        if what == "ges-callbacks" {
            return None;
        }
        Some(self.of(tenant, format_args!("{what}")))
    }
}

/// Renames the keys an earlier version wrote (`sb:<tenant>:...`) to their hash-tagged names,
/// when this node uses the default prefix; returns how many it renamed. A key whose new name
/// is taken already (a node of this version wrote it first) is left as it is and logged.
/// Nodes starting together may both try: a key the other renamed first is skipped.
pub async fn migrate_legacy<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
) -> redis::RedisResult<usize> {
    if keys.prefix() != DEFAULT_PREFIX {
        return Ok(0);
    }
    let mut legacy: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{DEFAULT_PREFIX}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        legacy.extend(batch.into_iter().filter(|k| keys.migrated(k).is_some()));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut renamed = 0;
    for key in legacy {
        let Some(to) = keys.migrated(&key) else {
            continue;
        };
        let done: redis::RedisResult<bool> = redis::cmd("RENAMENX")
            .arg(&key)
            .arg(&to)
            .query_async(conn)
            .await;
        match done {
            Ok(true) => renamed += 1,
            Ok(false) => tracing::warn!(%key, %to,
                "key of an earlier version not renamed: its new name is taken; left as it is"),
            // Another node renamed it first.
            Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if renamed > 0 {
        tracing::info!(
            keys = renamed,
            "keys of an earlier version renamed to their hash-tagged names"
        );
    }
    Ok(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_tenant_carries_its_hash_tag() {
        let k = Keys::default();
        assert_eq!(k.agents("demo"), "sb:{demo}:agents");
        assert_eq!(
            k.stream("demo", "voice-agentstate"),
            "sb:{demo}:voice-agentstate"
        );
        assert_eq!(k.counter("demo", "demo:abc"), "sb:{demo}:seq:demo:abc");
        assert_eq!(k.call("demo", "c1"), "sb:{demo}:call:c1");
        assert_eq!(
            k.bindings("demo", "sip:1001@demo.local"),
            "sb:{demo}:reg:sip:1001@demo.local"
        );
        assert_eq!(k.binding_expiry("demo"), "sb:{demo}:reg-expiry");
        assert_eq!(k.last_entry("demo"), "sb:{demo}:last-entry");
        let t = Keys::new("test-7").expect("a prefix");
        assert_eq!(t.ges_requests("acme"), "test-7:{acme}:ges-callbacks");
    }

    #[test]
    fn bad_prefixes_say_why() {
        assert_eq!(Keys::new("").expect_err("empty").problem, "empty");
        assert!(Keys::new("a{b}").is_err());
        assert!(Keys::new("a*").is_err());
        assert!(Keys::new(&"x".repeat(65)).is_err());
        assert!(Keys::new("prod:eu-1").is_ok());
    }

    #[test]
    fn an_earlier_versions_keys_map_to_their_tagged_names_except_ges_input() {
        let k = Keys::default();
        assert_eq!(
            k.migrated("sb:demo:agents").as_deref(),
            Some("sb:{demo}:agents")
        );
        assert_eq!(
            k.migrated("sb:demo:reg:sip:1001@demo.local").as_deref(),
            Some("sb:{demo}:reg:sip:1001@demo.local")
        );
        assert_eq!(k.migrated("sb:{demo}:agents"), None);
        assert_eq!(k.migrated("sb:demo:ges-callbacks"), None);
        assert_eq!(k.migrated("sbx:demo:agents"), None);
        assert_eq!(k.migrated("sb:demo"), None);
        // Nodes' keys are this version's own: a node starting must not rename a running
        // node's alive key away.
        for own in [
            k.node_alive("sb1a2b3c"),
            k.node_inbox("sb1a2b3c"),
            k.node_sip("sb1a2b3c"),
        ] {
            assert_eq!(k.migrated(&own), None, "{own}");
        }
        assert_eq!(
            k.legacy_ges_requests("demo").as_deref(),
            Some("sb:demo:ges-callbacks")
        );
        assert_eq!(
            Keys::new("other")
                .expect("a prefix")
                .legacy_ges_requests("demo"),
            None
        );
    }
}
