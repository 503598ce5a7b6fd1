//! The node's configuration: plain structs with defaults, read once from the TOML file (if
//! any), then the environment and flags, and passed down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use switchboard_actors::keys::Keys;
use switchboard_actors::tenant::TenantConfig;
use switchboard_kafka::KafkaConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NodeConfig {
    pub(crate) sip: SipConfig,
    pub(crate) tls: TlsConfig,
    pub(crate) websocket: WebSocketConfig,
    pub(crate) http: HttpConfig,
    pub(crate) metrics: MetricsConfig,
    /// SIP capture to Homer: every message in and out, as HEP v3 over UDP.
    pub(crate) hep: Option<HepConfig>,
    pub(crate) grpc: GrpcConfig,
    pub(crate) stores: StoresConfig,
    pub(crate) registrar: RegistrarConfig,
    pub(crate) calls: CallsConfig,
    pub(crate) cluster: ClusterNodesConfig,
    pub(crate) auth: AuthConfig,
    pub(crate) defence: DefenceSettings,
    pub(crate) events: EventsConfig,
    /// Reporting to Kafka; without it, events go to the JSON-lines file of `[events] file`.
    pub(crate) kafka: Option<KafkaConfig>,
    /// Inline tenants (or PostgreSQL's, with `[stores] postgres`).
    pub(crate) tenants: Vec<TenantConfig>,
    /// Run the built-in demo tenant (domain demo.local, published passwords and API key):
    /// what `serve` does with no configuration at all. Only on loopback addresses unless
    /// `serve --expose-demo` says otherwise.
    pub(crate) demo: bool,
}

impl NodeConfig {
    /// Refuses a demo tenant reachable from other hosts: its passwords and API key are
    /// published, so listening beyond loopback takes `--expose-demo`.
    pub(crate) fn check_demo(&self, exposed: bool) -> anyhow::Result<()> {
        if !self.demo || exposed || !self.tenants.is_empty() || self.stores.postgres.is_some() {
            return Ok(());
        }
        let listeners = [
            ("[sip] listen", self.sip.listen),
            ("[grpc] listen", self.grpc.listen),
            ("[http] callbacks_listen", self.http.callbacks_listen),
        ];
        for (name, addr) in listeners {
            if !addr.ip().is_loopback() {
                anyhow::bail!(
                    "the demo tenant (published passwords and API key) would listen on {addr} ({name}), \
                     beyond this host: configure tenants of your own ([[tenants]] or [stores] postgres), \
                     listen on 127.0.0.1, or pass --expose-demo to serve the demo there anyway"
                );
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SipConfig {
    /// UDP and TCP.
    pub(crate) listen: SocketAddr,
    /// Other names of this node that requests may address it by.
    pub(crate) aliases: Vec<String>,
    pub(crate) max_message_size: usize,
    pub(crate) tcp_idle_timeout_secs: u64,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) max_connections: usize,
    /// Once a message has begun on a TCP connection (or a connection was accepted), the
    /// whole message must arrive within this; else the connection is closed.
    pub(crate) message_timeout_ms: u64,
    /// Requests waiting for the edge beyond which new ones get 503 at once.
    pub(crate) max_backlog: usize,
    /// Messages waiting beyond which new work (calls, registrations) gets 503 at once, the
    /// calls in progress still queueing up to `max_backlog`.
    pub(crate) max_new_backlog: usize,
    /// RFC 3261 T1 in milliseconds (500); every transaction timer follows from it.
    pub(crate) t1_ms: u64,
    /// Kernel buffers of the UDP socket, each way (capped by net.core.rmem_max/wmem_max).
    pub(crate) udp_buffer_size: usize,
    /// The `Server` header of the node's responses and `User-Agent` of its requests (say
    /// "Acme SBC"); none by default, so that no product or version is given away.
    pub(crate) server_header: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            aliases: Vec::new(),
            max_message_size: 16 * 1024,
            tcp_idle_timeout_secs: 600,
            max_connections_per_ip: 64,
            max_connections: 10_000,
            message_timeout_ms: 10_000,
            max_backlog: 20_000,
            max_new_backlog: 2_000,
            t1_ms: 500,
            udp_buffer_size: 4 * 1024 * 1024,
            server_header: None,
        }
    }
}

/// SIP over TLS, on a port of its own: on when a certificate and its key are named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TlsConfig {
    pub(crate) listen: SocketAddr,
    /// The node's certificate chain (PEM), its own first.
    pub(crate) certificate: Option<PathBuf>,
    /// Its private key (PEM).
    pub(crate) key: Option<PathBuf>,
    /// Authorities (PEM) trusted to sign peers' certificates: gateways the node connects to
    /// over TLS, and trunks that must present a client certificate.
    pub(crate) ca: Option<PathBuf>,
    /// A handshake not done within this is given up.
    pub(crate) handshake_timeout_ms: u64,
    /// How often the files are looked at; a change is loaded for the next handshakes.
    pub(crate) reload_check_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5061)),
            certificate: None,
            key: None,
            ca: None,
            handshake_timeout_ms: 5_000,
            reload_check_ms: 2_000,
        }
    }
}

/// SIP over WebSocket (RFC 7118) for browser softphones: `ws` and `wss` each on a port of its
/// own when given (`wss` with `[tls]`'s certificate).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WebSocketConfig {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) secure_listen: Option<SocketAddr>,
    /// The `Origin`s allowed to open one (the pages of the agents' desktop); none: any.
    pub(crate) origins: Vec<String>,
}

/// The edge's defence (see the actors' `defence` module): limits on what sources that have
/// not authenticated may send, and bans for floods and repeated failures. Configured trunks
/// and media servers are never limited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DefenceSettings {
    pub(crate) enabled: bool,
    /// Requests a second a source that has not authenticated may send, after its burst.
    pub(crate) rate: f64,
    /// Requests such a source may send at once (Kamailio's pike: 16 in 2 s).
    pub(crate) burst: u32,
    /// Failures (credentials refused, a domain not served, malformed messages, stray
    /// requests) within `failure_window_secs` that ban a source.
    pub(crate) max_failures: u32,
    pub(crate) failure_window_secs: u64,
    /// Requests dropped for want of tokens within `failure_window_secs` that ban a source
    /// (a flood, past what an office of phones booting behind one address sends).
    pub(crate) max_throttled: u32,
    /// The first ban; each further offence within `offence_memory_secs` doubles it, up to
    /// `max_ban_secs`.
    pub(crate) ban_secs: u64,
    pub(crate) max_ban_secs: u64,
    pub(crate) offence_memory_secs: u64,
    /// How long a source that authenticated sends without counting.
    pub(crate) known_secs: u64,
    /// Networks never limited or banned (CIDR, or one address).
    pub(crate) allow: Vec<String>,
    /// Loopback addresses are never limited or banned unless this is false.
    pub(crate) exempt_loopback: bool,
}

impl Default for DefenceSettings {
    fn default() -> Self {
        let d = switchboard_actors::defence::DefenceConfig::default();
        Self {
            enabled: d.enabled,
            rate: d.rate,
            burst: d.burst,
            max_failures: d.max_failures,
            max_throttled: d.max_throttled,
            failure_window_secs: d.failure_window.as_secs(),
            ban_secs: d.ban.as_secs(),
            max_ban_secs: d.max_ban.as_secs(),
            offence_memory_secs: d.offence_memory.as_secs(),
            known_secs: d.known.as_secs(),
            allow: Vec::new(),
            exempt_loopback: d.exempt_loopback,
        }
    }
}

impl DefenceSettings {
    pub(crate) fn to_config(&self) -> anyhow::Result<switchboard_actors::defence::DefenceConfig> {
        use std::time::Duration;
        let allow = self
            .allow
            .iter()
            .map(|net| {
                switchboard_actors::tenant::parse_network(net).ok_or_else(|| {
                    anyhow::anyhow!("[defence] allow: {net:?} is no address or CIDR network")
                })
            })
            .collect::<anyhow::Result<_>>()?;
        if self.enabled && (self.rate <= 0.0 || self.burst == 0 || self.max_failures == 0) {
            anyhow::bail!(
                "[defence] rate, burst and max_failures must be above 0 (or enabled = false)"
            );
        }
        Ok(switchboard_actors::defence::DefenceConfig {
            enabled: self.enabled,
            rate: self.rate,
            burst: self.burst,
            max_failures: self.max_failures,
            max_throttled: self.max_throttled.max(1),
            failure_window: Duration::from_secs(self.failure_window_secs),
            ban: Duration::from_secs(self.ban_secs.max(1)),
            max_ban: Duration::from_secs(self.max_ban_secs.max(self.ban_secs).max(1)),
            offence_memory: Duration::from_secs(self.offence_memory_secs),
            known: Duration::from_secs(self.known_secs),
            allow,
            exempt_loopback: self.exempt_loopback,
            ..switchboard_actors::defence::DefenceConfig::default()
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpConfig {
    /// /livez and /readyz.
    pub(crate) listen: SocketAddr,
    /// The callbacks API for GES (`/callbacks/{id}`).
    pub(crate) callbacks_listen: SocketAddr,
    /// Connections open at once on each HTTP port, all clients together.
    pub(crate) max_connections: usize,
    /// Connections open at once on each HTTP port from one address.
    pub(crate) max_connections_per_source: usize,
    /// Seconds a client has to send a request's head; an idle keep-alive connection is
    /// closed after as long.
    pub(crate) head_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let limits = crate::http::Limits::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9102)),
            callbacks_listen: SocketAddr::from(([127, 0, 0, 1], 9098)),
            max_connections: limits.connections,
            max_connections_per_source: limits.per_source,
            head_timeout_secs: limits.head_timeout.as_secs(),
        }
    }
}

impl HttpConfig {
    pub(crate) fn limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            connections: self.max_connections.max(1),
            per_source: self.max_connections_per_source.max(1),
            head_timeout: std::time::Duration::from_secs(self.head_timeout_secs.max(1)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HepConfig {
    /// The collector (Homer's heplify-server, or any HEP listener): `host:port` as an address.
    pub(crate) collector: SocketAddr,
    /// The capture agent id the collector shows for this node.
    #[serde(default = "default_agent_id")]
    pub(crate) agent_id: u32,
    /// The collector's password, if it asks for one.
    #[serde(default)]
    pub(crate) password: Option<String>,
}

fn default_agent_id() -> u32 {
    2001
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    /// Tenants given series of their own (the first, in name order); the others are summed
    /// under `tenant="other"`, so that a platform of many tenants keeps its series bounded.
    pub(crate) max_tenants: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { max_tenants: 100 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GrpcConfig {
    /// The provisioning API, with gRPC health and reflection.
    pub(crate) listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9101)),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StoresConfig {
    /// `redis://host:port/db`; without it, bindings and events stay in memory.
    pub(crate) redis: Option<String>,
    /// `postgres://user@host:port/db`: tenants come from PostgreSQL instead of this file.
    pub(crate) postgres: Option<String>,
    /// What every Redis key starts with (`sb`): deployments sharing one Redis, or one Redis
    /// Cluster (which has no database numbers), keep apart by it.
    #[serde(deserialize_with = "key_prefix")]
    pub(crate) key_prefix: Keys,
}

fn key_prefix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
    let prefix = String::deserialize(d)?;
    Keys::new(&prefix).map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CallsConfig {
    /// How long an extension rings before the caller gets 480, for DNs without their own
    /// `no-answer-timeout` option.
    pub(crate) no_answer_secs: u64,
    /// How often each leg of an established call is probed with an in-dialog OPTIONS, so a
    /// phone that vanished ends its call; 0 turns probing off.
    pub(crate) probe_secs: u64,
    /// The session interval offered to phones and granted to trunks that ask for none
    /// (RFC 4028 session timers): a leg whose refresher lets it pass without a refresh ends
    /// the call.
    pub(crate) session_expires_secs: u64,
    /// The shortest session interval accepted (Min-SE); a trunk asking for less gets 422.
    pub(crate) min_se_secs: u64,
    /// Call events written at once (one per shard, each call thread always on the same one).
    pub(crate) state_shards: usize,
    /// Calls in progress the node runs at most; a new one past them gets 503 with
    /// Retry-After.
    pub(crate) max_calls: usize,
    /// Calls that ended but still answer retransmissions (for 64*T1, 32 s by default) the node
    /// keeps at most; a new call past them gets 503 too. They bound the sustained rate of short
    /// calls (50,000 / 32 s: about 1,500 a second) and the memory a flood of rejected calls
    /// can take (about 13 KiB each).
    pub(crate) max_ending: usize,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            no_answer_secs: 30,
            probe_secs: 60,
            session_expires_secs: 1800,
            min_se_secs: 90,
            state_shards: 8,
            max_calls: 10_000,
            max_ending: 50_000,
        }
    }
}

/// Scaling out (design.md): a proxy in front of remote cluster nodes, or a cluster node behind
/// proxies. Both empty (the default): one node runs its calls itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ClusterNodesConfig {
    /// The cluster nodes this node forwards its calls to (their SIP address, port 5080 by
    /// convention); it then runs none itself.
    pub(crate) nodes: Vec<SocketAddr>,
    /// How often each node is probed with OPTIONS; three missed in a row take it out of the
    /// choice until it answers again.
    pub(crate) probe_ms: u64,
    /// The proxies whose admission of a call this node takes (their SIP address).
    pub(crate) proxies: Vec<SocketAddr>,
    /// With Redis, each tenant's routing runs on one node, its owner, which holds a lease of
    /// this many milliseconds: a dead owner's tenants wait this long for another node.
    pub(crate) lease_ms: u64,
    /// How often a node renews its leases and looks for free ones (a clean stop's are taken
    /// within this).
    pub(crate) lease_claim_ms: u64,
    /// A cluster node stopped (SIGTERM) answers its proxies' probes with 503, so that they
    /// send it no new calls, and lets its calls end on their own for up to this long before
    /// it ends those left. A node alone ends its calls at once.
    pub(crate) drain_secs: u64,
    /// How long a proxy waits for a cluster node to say it has a new call (100 Trying)
    /// before it cancels the call there and tries the next node.
    pub(crate) forward_timeout_ms: u64,
}

impl Default for ClusterNodesConfig {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            probe_ms: 300,
            proxies: Vec::new(),
            lease_ms: 3000,
            lease_claim_ms: 500,
            drain_secs: 30,
            forward_timeout_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RegistrarConfig {
    pub(crate) min_expires: u32,
    pub(crate) max_expires: u32,
    pub(crate) default_expires: u32,
    pub(crate) max_contacts: usize,
    /// REGISTERs processed at once.
    pub(crate) shards: usize,
    pub(crate) sweep_interval_ms: u64,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        let policy = switchboard_actors::registrar::Policy::default();
        Self {
            min_expires: policy.min_expires,
            max_expires: policy.max_expires,
            default_expires: policy.default_expires,
            max_contacts: policy.max_contacts,
            shards: 16,
            sweep_interval_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthConfig {
    /// Shared by the nodes of a cluster so each accepts the others' nonces; random when absent
    /// (nonces then do not outlive a restart, which clients recover from at once).
    pub(crate) nonce_secret: Option<String>,
    pub(crate) nonce_lifetime_secs: u64,
    /// The administrator key of the provisioning API (creates tenants, reaches every one);
    /// without it only tenants' API keys work. `SWITCHBOARD_ADMIN_KEY` overrides it.
    pub(crate) admin_key: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            nonce_secret: None,
            nonce_lifetime_secs: 300,
            admin_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct EventsConfig {
    /// Entries each Redis stream keeps (approximately).
    pub(crate) stream_length: usize,
    /// Without Kafka, every event is appended to this JSON-lines file; empty turns it off.
    pub(crate) file: PathBuf,
    /// How often the file is synced to disk.
    pub(crate) sync_ms: u64,
    /// How long an entry that an internal reader (a node reading GES's callback requests)
    /// took and never acknowledged waits before another node claims it: the reader died.
    pub(crate) claim_idle_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            stream_length: switchboard_actors::events::DEFAULT_STREAM_LENGTH,
            file: PathBuf::from("switchboard-events.jsonl"),
            sync_ms: 50,
            claim_idle_ms: 30_000,
        }
    }
}

/// A file of tenants, as `config export` prints it and `config import` reads it: the
/// `[[tenants]]` tables of a node file (a whole node file imports too; its other sections are
/// not read).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub(crate) struct TenantsFile {
    #[serde(default)]
    pub(crate) tenants: Vec<TenantConfig>,
}

impl NodeConfig {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid configuration in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let c: NodeConfig = toml::from_str(
            r#"
            [sip]
            listen = "127.0.0.1:5070"
            [stores]
            redis = "redis://127.0.0.1:6390"
            [registrar]
            max_expires = 600
            [kafka]
            brokers = "10.0.0.5:9092,10.0.0.6:9092"
            format = "protobuf"
            security_protocol = "sasl_ssl"
            sasl_mechanism = "SCRAM-SHA-256"
            sasl_username = "switchboard"
            sasl_password = "secret"
            ssl_ca = "/etc/ssl/kafka-ca.pem"
            [[tenants]]
            name = "acme"
            domain = "acme.example"
            digest = ["SHA-256", "MD5"]
            [[tenants.dns]]
            number = "2001"
            password = "secret"
            "#,
        )
        .expect("valid");
        assert_eq!(c.sip.listen.port(), 5070);
        assert_eq!(c.registrar.max_expires, 600);
        assert_eq!(c.registrar.min_expires, 60);
        let kafka = c.kafka.expect("kafka");
        assert_eq!(kafka.format, switchboard_kafka::Format::Protobuf);
        assert_eq!(kafka.spool_high_water, 0.8);
        assert_eq!(c.tenants[0].dns[0].number, "2001");
    }

    #[test]
    fn the_example_file_is_a_valid_node() {
        let text = include_str!("../examples/node.toml");
        let c: NodeConfig = toml::from_str(text).expect("examples/node.toml parses");
        let directory =
            switchboard_actors::tenant::Directory::new(&c.tenants).expect("its tenants are valid");
        let acme = directory.by_name("acme").expect("acme");
        assert!(acme.authenticate);
        assert_eq!(acme.dns.len(), 2);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<NodeConfig>("[sip]\nlisten_port = 5060\n").expect_err("typo");
        assert!(e.to_string().contains("listen_port"), "{e}");
    }

    #[test]
    fn the_key_prefix_is_sb_unless_set_and_a_bad_one_says_why() {
        let c: NodeConfig = toml::from_str("").expect("empty");
        assert_eq!(c.stores.key_prefix.agents("demo"), "sb:{demo}:agents");
        let c: NodeConfig = toml::from_str("[stores]\nkey_prefix = \"eu1\"\n").expect("valid");
        assert_eq!(c.stores.key_prefix.agents("demo"), "eu1:{demo}:agents");
        let e = toml::from_str::<NodeConfig>("[stores]\nkey_prefix = \"a{b}\"\n").expect_err("bad");
        assert!(e.to_string().contains("key prefix \"a{b}\""), "{e}");
    }
}
