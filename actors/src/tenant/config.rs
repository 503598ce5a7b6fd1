//! A tenant as written in configuration: the contact-center object model of Genesys
//! Configuration Server, trimmed to what switchboard uses. The same structs read the node's TOML
//! file, are what `config export` prints and `config import` reads, and are what the PostgreSQL
//! store loads; [`super::Tenant`] is the checked, indexed snapshot built from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Key-value options, as every configuration object carries them.
pub type Options = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// The SIP domain phones register in (`sip:<dn>@<domain>`).
    pub domain: String,
    /// The digest realm; the domain when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Digest algorithms in the order they are offered. Clients take the first they know.
    #[serde(default = "default_digest")]
    pub digest: Vec<String>,
    /// Whether extensions prove who they are with digest before registering (the default).
    /// `false` suits a trusted network only, as on a SIP Server whose DNs have no
    /// `authenticate-requests`; each DN may say otherwise.
    #[serde(default = "yes")]
    pub authenticate: bool,
    /// After-call work in seconds for agents without their own; 0 means none.
    #[serde(default)]
    pub wrap_up_secs: u32,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<DnConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<NamedConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_groups: Vec<NamedConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub places: Vec<PlaceConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routing_points: Vec<RoutingPointConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<NamedConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<TrunkConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_servers: Vec<MediaServerConfig>,
    /// Tried in order; the first rule whose pattern matches the whole dialed number wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dial_plan: Vec<DialRuleConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strategies: Vec<StrategyConfig>,
    /// The keys that reach this tenant over the provisioning API, stored hashed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyConfig>,
    /// The tenant's IANA time zone (`Europe/Paris`): where its statistics' day starts.
    #[serde(default = "utc", skip_serializing_if = "is_utc")]
    pub time_zone: String,
    /// How the statistics count calls.
    #[serde(default, skip_serializing_if = "StatsConfig::is_default")]
    pub stats: StatsConfig,
}

/// How a tenant's statistics count calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Calls answered within this many seconds of entering their queue count toward the
    /// service level.
    pub service_level_secs: u32,
    /// Callers who hang up within this many seconds of entering their queue are short
    /// abandons, left out of the service level.
    pub short_abandon_secs: u32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            service_level_secs: 20,
            short_abandon_secs: 5,
        }
    }
}

impl StatsConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

pub(super) fn utc() -> String {
    "UTC".to_owned()
}

fn is_utc(zone: &String) -> bool {
    zone == "UTC"
}

impl TenantConfig {
    /// How each queue chooses among its agents (its option `choice`, longest idle by
    /// default), in the configuration's order: what matching reads, in the node and in the
    /// simulator.
    pub fn queue_choices(&self) -> Vec<(String, switchboard_routing::pool::Choice)> {
        self.queues
            .iter()
            .map(|q| {
                let choice = q
                    .options
                    .get("choice")
                    .and_then(|c| switchboard_routing::pool::Choice::parse(c));
                (q.name.clone(), choice.unwrap_or_default())
            })
            .collect()
    }

    /// A tenant with no objects yet and the defaults of every setting.
    pub fn new(name: impl Into<String>, domain: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            domain: domain.into(),
            realm: None,
            digest: default_digest(),
            authenticate: true,
            wrap_up_secs: 0,
            options: Options::new(),
            dns: Vec::new(),
            skills: Vec::new(),
            agent_groups: Vec::new(),
            places: Vec::new(),
            agents: Vec::new(),
            routing_points: Vec::new(),
            queues: Vec::new(),
            trunks: Vec::new(),
            media_servers: Vec::new(),
            dial_plan: Vec::new(),
            strategies: Vec::new(),
            api_keys: Vec::new(),
            time_zone: utc(),
            stats: StatsConfig::default(),
        }
    }
}

/// The kinds of DN (Genesys DN types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnKind {
    /// A phone that registers.
    #[default]
    Extension,
    /// A phone that registers, used by agents logging in at a position.
    AcdPosition,
    VirtualQueue,
    Trunk,
    TrunkGroup,
    MediaServer,
    ServiceNumber,
}

impl DnKind {
    /// DNs that phones register as.
    pub fn registers(self) -> bool {
        matches!(self, DnKind::Extension | DnKind::AcdPosition)
    }
}

/// A directory number.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnConfig {
    pub number: String,
    #[serde(default, rename = "type")]
    pub kind: DnKind,
    /// Required when the DN registers and authenticates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Overrides the tenant's digest order for this DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Vec<String>>,
    /// Overrides the tenant's `authenticate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticate: Option<bool>,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// Whether an object's options have its calls recorded (option `record = "true"`: a DN, an
/// agent, a routing point, a queue).
pub fn records(options: &Options) -> bool {
    options.get("record").map(|v| v.trim()) == Some("true")
}

/// Whether an agent's or a queue's options forbid monitoring its calls (option
/// `monitoring = "forbidden"`).
pub fn monitoring_forbidden(options: &Options) -> bool {
    options.get("monitoring").map(|v| v.trim()) == Some("forbidden")
}

/// An object that is a name and options: a skill, an agent group, a virtual queue.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// A place: the DNs an agent works at.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceConfig {
    pub name: String,
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// A person who works as an agent.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The person's identifier (user name).
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The agent login code, unique in the tenant.
    pub login_code: String,
    /// The place the agent usually sits at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// Skill levels by skill name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skills: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Overrides the tenant's after-call work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_up_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

impl AgentConfig {
    /// Whether the agent may monitor others' calls (option `supervisor = "true"`).
    pub fn is_supervisor(&self) -> bool {
        self.options.get("supervisor").map(|v| v.trim()) == Some("true")
    }
    /// What routing matches targets against: the agent's id, groups and skill levels.
    pub fn profile(&self) -> switchboard_routing::target::Profile {
        switchboard_routing::target::Profile::new(
            &self.id,
            self.groups.iter().map(String::as_str),
            self.skills.iter().map(|(s, l)| (s.as_str(), *l)),
        )
    }
}

/// A routing point: holds a call while its strategy routes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingPointConfig {
    pub number: String,
    /// The strategy's name.
    pub strategy: String,
    /// Where the call goes when routing fails or takes too long (a destination, as in the
    /// dial plan).
    pub default_destination: String,
    #[serde(default = "default_routing_timeout")]
    pub timeout_secs: u32,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// A carrier's trunk: admitted by source address, reached at its gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    /// Source addresses calls may come from: `192.0.2.10`, `192.0.2.0/24`, `2001:db8::/32`.
    #[serde(default)]
    pub inbound: Vec<String>,
    /// Where outbound calls go: `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Rewrites of the calling number on outbound calls, tried in order (dial plan grammar:
    /// a pattern on the whole number and a `$1`-style rewrite).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caller_id: Vec<RewriteConfig>,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// A pattern on a whole number and its rewrite.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    pub pattern: String,
    pub rewrite: String,
}

/// A media server (GVP): plays treatments and hosts conferences.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaServerConfig {
    pub name: String,
    /// `host:port`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// A dial plan rule (design.md "Grammars").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DialRuleConfig {
    /// A regular expression matched against the whole dialed number.
    pub pattern: String,
    /// A `$1`-style replacement; empty keeps the number.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rewrite: String,
    /// `extension:1001`, `routing-point:5000`, `trunk:carrier`, `announcement:<RFC 4240 URI>`
    /// or `reject:486`.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// A routing strategy as stored: a versioned document that the routing system interprets.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyConfig {
    pub name: String,
    #[serde(default = "first_version")]
    pub version: u32,
    pub document: String,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// An API key of the tenant: its name and the hash of its secret (`sha256:<hex>`, see
/// [`super::hash_api_key`]); the secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    pub hash: String,
    /// What the key may do: everything the tenant may (`full`, the default), or read its
    /// statistics and wallboard only (`stats`), a key fit for a screen on a wall.
    #[serde(default, skip_serializing_if = "KeyScope::is_full")]
    pub scope: KeyScope,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    #[default]
    Full,
    Stats,
}

impl KeyScope {
    pub fn is_full(&self) -> bool {
        *self == KeyScope::Full
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Full => "full",
            KeyScope::Stats => "stats",
        }
    }

    /// The scope a stored or requested name gives; `None` for any other.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "" | "full" => Some(KeyScope::Full),
            "stats" => Some(KeyScope::Stats),
            _ => None,
        }
    }
}

pub(super) fn default_digest() -> Vec<String> {
    vec!["MD5".into(), "SHA-256".into()]
}

fn yes() -> bool {
    true
}

fn default_routing_timeout() -> u32 {
    300
}

fn first_version() -> u32 {
    1
}
