//! The tenant system: the contact-center configuration of each tenant (DNs with credentials,
//! agents, skills, groups, places, routing points, queues, trunks, media servers, dial plan,
//! strategies) and the checked, indexed snapshot every other system reads. The tenant actor
//! owns the configuration and hands every subscriber an immutable snapshot ([`Directory`]);
//! lookups are plain functions of that snapshot.
//!
//! Configuration comes from the node's TOML file or, without one, the built-in demo tenant.

mod actor;
mod config;
pub mod postgres;
pub mod provision;
pub mod watch;

pub use actor::{TenantActor, TenantMsg};
pub use config::{
    AgentConfig, ApiKeyConfig, DialRuleConfig, DnConfig, DnKind, MediaServerConfig, NamedConfig,
    Options, PlaceConfig, RewriteConfig, RoutingPointConfig, StrategyConfig, TenantConfig,
    TrunkConfig,
};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_routing::dialplan::{Destination, DialPlan, RuleText};
use switchboard_routing::strategy::{Known, Program};
use switchboard_sip::auth::{Account, Algorithm};

/// A configuration that cannot be used, naming the tenant and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("tenant {0:?} is defined twice")]
    DuplicateTenant(String),
    #[error("domain {0:?} belongs to two tenants")]
    DuplicateDomain(String),
    #[error("tenant {tenant}: {field}: {problem}")]
    Invalid {
        tenant: String,
        /// Where in the tenant: `dns[3].number`, `agents[0].skills.english`.
        field: String,
        problem: String,
    },
}

impl ConfigError {
    /// The field at fault, for an API's INVALID_ARGUMENT.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::DuplicateTenant(_) => "name",
            ConfigError::DuplicateDomain(_) => "domain",
            ConfigError::Invalid { field, .. } => field,
        }
    }
}

/// A tenant ready for use: its configuration, checked, with the indexes lookups need.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    /// Lowercase.
    pub domain: String,
    /// The domain as a SIP host, for comparing with the hosts of URIs.
    pub host: switchboard_sip::Host,
    pub realm: String,
    pub digest: Vec<Algorithm>,
    /// Whether REGISTERs for DNs this tenant does not know get a challenge (as every one of an
    /// authenticating tenant does, so that DNs cannot be guessed) or a plain 404.
    pub authenticate: bool,
    /// Every DN by number.
    pub dns: HashMap<String, Dn>,
    /// The dial plan, compiled.
    pub dial_plan: DialPlan,
    /// The trunks, their addresses parsed: admission looks at them for every new call.
    pub trunks: Vec<Trunk>,
    /// The media servers, their addresses parsed.
    pub media_servers: Vec<MediaServer>,
    /// Every version of every strategy, compiled, by name then version.
    pub strategies: HashMap<String, BTreeMap<u32, Arc<Program>>>,
    /// The configuration it was built from.
    pub config: TenantConfig,
    /// The version it was stored at in PostgreSQL; 0 for an embedded configuration.
    pub version: i64,
}

/// A carrier's trunk as calls use it.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    /// The networks calls may come from.
    pub inbound: Vec<(std::net::IpAddr, u8)>,
    /// Where outbound calls go.
    pub gateway: Option<SocketAddr>,
}

impl Trunk {
    /// Whether a call from `ip` comes from this trunk.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.inbound.iter().any(|&net| in_network(ip, net))
    }
}

/// A media server as calls use it.
#[derive(Debug, Clone)]
pub struct MediaServer {
    pub name: String,
    pub address: SocketAddr,
}

/// A DN with what the registrar needs of it.
#[derive(Debug, Clone)]
pub struct Dn {
    pub number: String,
    pub kind: DnKind,
    pub password: String,
    pub digest: Vec<Algorithm>,
    /// Whether a REGISTER for this DN must carry valid credentials.
    pub authenticate: bool,
    /// Simultaneous inbound calls at most (option `max-calls`); `None` is unlimited.
    pub max_calls: Option<u32>,
    /// How long a call rings before it is given up (option `no-answer-timeout`, seconds);
    /// `None` takes the node's default.
    pub no_answer_timeout: Option<u32>,
}

impl Tenant {
    pub fn from_config(c: &TenantConfig) -> Result<Self, ConfigError> {
        let fail = |field: String, problem: String| ConfigError::Invalid {
            tenant: c.name.clone(),
            field,
            problem,
        };
        let algorithms = |field: &str, names: &[String]| -> Result<Vec<Algorithm>, ConfigError> {
            if names.is_empty() {
                return Err(fail(field.into(), "no digest algorithm".into()));
            }
            names
                .iter()
                .map(|n| {
                    Algorithm::from_name(n).ok_or_else(|| {
                        fail(
                            field.into(),
                            format!("unknown digest algorithm {n:?} (MD5 or SHA-256)"),
                        )
                    })
                })
                .collect()
        };
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(fail(
                "name".into(),
                "letters, digits, '-', '_' and '.' only".into(),
            ));
        }
        let Ok(host) = switchboard_sip::Host::parse_str(&c.domain.to_ascii_lowercase()) else {
            return Err(fail(
                "domain".into(),
                format!("{:?} is not a valid SIP host", c.domain),
            ));
        };
        let digest = algorithms("digest", &c.digest)?;

        let mut dns = HashMap::new();
        for (i, d) in c.dns.iter().enumerate() {
            let at = |f: &str| format!("dns[{i}].{f}");
            if !switchboard_sip::uri::is_valid_user(&d.number) {
                return Err(fail(
                    at("number"),
                    format!("{:?} is not a valid SIP user part", d.number),
                ));
            }
            let authenticate = d.kind.registers() && d.authenticate.unwrap_or(c.authenticate);
            if authenticate && d.password.is_empty() {
                return Err(fail(
                    at("password"),
                    format!(
                        "DN {:?} authenticates but has no password (set one, or \
                         `authenticate = false` on a trusted network)",
                        d.number
                    ),
                ));
            }
            let count = |name: &str| -> Result<Option<u32>, ConfigError> {
                d.options
                    .get(name)
                    .map(|v| {
                        v.trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| {
                                fail(
                                    at(&format!("options.{name}")),
                                    format!("{v:?} is not a positive whole number"),
                                )
                            })
                    })
                    .transpose()
            };
            let dn = Dn {
                max_calls: count("max-calls")?,
                no_answer_timeout: count("no-answer-timeout")?,
                number: d.number.clone(),
                kind: d.kind,
                password: d.password.clone(),
                digest: match &d.digest {
                    Some(names) => algorithms(&at("digest"), names)?,
                    None => digest.clone(),
                },
                authenticate,
            };
            if dns.insert(d.number.clone(), dn).is_some() {
                return Err(fail(
                    at("number"),
                    format!("DN {:?} is defined twice", d.number),
                ));
            }
        }
        let dial_plan = DialPlan::new(c.dial_plan.iter().map(|r| RuleText {
            pattern: &r.pattern,
            rewrite: &r.rewrite,
            destination: &r.destination,
        }))
        .map_err(|e| fail(format!("dial_plan[{}].{}", e.index, e.field), e.problem))?;
        check_objects(c, &dns).map_err(|(field, problem)| fail(field, problem))?;
        // Checked above: every address parses.
        let trunks = c
            .trunks
            .iter()
            .map(|t| Trunk {
                name: t.name.clone(),
                inbound: t.inbound.iter().filter_map(|n| parse_network(n)).collect(),
                gateway: t.gateway.as_deref().and_then(|g| g.parse().ok()),
            })
            .collect();
        let media_servers = c
            .media_servers
            .iter()
            .filter_map(|m| {
                Some(MediaServer {
                    name: m.name.clone(),
                    address: m.address.parse().ok()?,
                })
            })
            .collect();
        for (i, q) in c.queues.iter().enumerate() {
            let Some(choice) = q.options.get("choice") else {
                continue;
            };
            let field = format!("queues[{i}].options.choice");
            match switchboard_routing::pool::Choice::parse(choice) {
                None => {
                    return Err(fail(
                        field,
                        format!(
                            "{choice:?} is not one of longest-idle, most-skilled, least-occupied, round-robin"
                        ),
                    ));
                }
                Some(switchboard_routing::pool::Choice::RingAll) => {
                    return Err(fail(
                        field,
                        "ring-all (every agent rung at once) is not supported yet".into(),
                    ));
                }
                Some(_) => {}
            }
        }
        let mut strategies: HashMap<String, BTreeMap<u32, Arc<Program>>> = HashMap::new();
        for (i, s) in c.strategies.iter().enumerate() {
            let program = compile_strategy(c, s)
                .map_err(|problem| fail(format!("strategies[{i}].document"), problem))?;
            strategies
                .entry(s.name.clone())
                .or_default()
                .insert(s.version, Arc::new(program));
        }
        Ok(Self {
            name: c.name.clone(),
            domain: c.domain.to_ascii_lowercase(),
            host,
            realm: c.realm.clone().unwrap_or_else(|| c.domain.clone()),
            digest,
            authenticate: c.authenticate,
            dns,
            dial_plan,
            trunks,
            media_servers,
            strategies,
            config: c.clone(),
            version: 0,
        })
    }

    /// The latest version of strategy `name`, compiled, with its version.
    pub fn strategy(&self, name: &str) -> Option<(u32, Arc<Program>)> {
        let (v, p) = self.strategies.get(name)?.last_key_value()?;
        Some((*v, p.clone()))
    }

    /// The routing point `number`, if it is one.
    pub fn routing_point(&self, number: &str) -> Option<&RoutingPointConfig> {
        self.config
            .routing_points
            .iter()
            .find(|r| r.number == number)
    }

    /// The address of record of a DN.
    pub fn aor(&self, dn: &str) -> String {
        format!("sip:{dn}@{}", self.domain)
    }

    /// The DN a phone registers as, if it is one that registers.
    pub fn registering(&self, number: &str) -> Option<&Dn> {
        self.dns.get(number).filter(|d| d.kind.registers())
    }

    /// What a digest user name proves itself with: a DN that registers, with its password
    /// and algorithms.
    pub fn account(&self, user: &str) -> Option<Account<'_>> {
        self.registering(user).map(|d| Account {
            password: &d.password,
            algorithms: &d.digest,
        })
    }

    /// The algorithms a request that names DN `dn` is challenged with, in order: the DN's
    /// own, else the tenant's.
    pub fn digest_for(&self, dn: Option<&str>) -> &[Algorithm] {
        dn.and_then(|d| self.registering(d))
            .map_or(&self.digest, |d| &d.digest)
    }
}

/// Checks names, numbers and references between the objects of a tenant; `Err` names the
/// field and the problem.
fn check_objects(c: &TenantConfig, dns: &HashMap<String, Dn>) -> Result<(), (String, String)> {
    /// The keys of a list of objects, each present and none twice.
    fn unique<'a>(
        list: &str,
        key: &str,
        keys: impl Iterator<Item = &'a String>,
    ) -> Result<HashSet<&'a str>, (String, String)> {
        let mut seen = HashSet::new();
        for (i, k) in keys.enumerate() {
            if k.is_empty() {
                return Err((format!("{list}[{i}].{key}"), "empty".into()));
            }
            if !seen.insert(k.as_str()) {
                return Err((
                    format!("{list}[{i}].{key}"),
                    format!("{k:?} is defined twice"),
                ));
            }
        }
        Ok(seen)
    }
    let skills = unique("skills", "name", c.skills.iter().map(|s| &s.name))?;
    let groups = unique(
        "agent_groups",
        "name",
        c.agent_groups.iter().map(|g| &g.name),
    )?;
    let places = unique("places", "name", c.places.iter().map(|p| &p.name))?;
    let queues = unique("queues", "name", c.queues.iter().map(|q| &q.name))?;
    let trunks = unique("trunks", "name", c.trunks.iter().map(|t| &t.name))?;
    unique(
        "media_servers",
        "name",
        c.media_servers.iter().map(|m| &m.name),
    )?;
    unique("agents", "id", c.agents.iter().map(|a| &a.id))?;
    unique(
        "agents",
        "login_code",
        c.agents.iter().map(|a| &a.login_code),
    )?;
    unique("api_keys", "name", c.api_keys.iter().map(|k| &k.name))?;
    for (i, k) in c.api_keys.iter().enumerate() {
        let hex = k.hash.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((
                format!("api_keys[{i}].hash"),
                "not `sha256:` and 64 hex digits (the hash of the key, never the key)".into(),
            ));
        }
    }
    let mut versions = HashSet::new();
    for (i, s) in c.strategies.iter().enumerate() {
        if s.name.is_empty() || !versions.insert((s.name.as_str(), s.version)) {
            return Err((
                format!("strategies[{i}]"),
                format!(
                    "strategy {:?} version {} is empty or defined twice",
                    s.name, s.version
                ),
            ));
        }
    }
    let strategies: HashSet<&str> = c.strategies.iter().map(|s| s.name.as_str()).collect();
    const DAY: u32 = 86_400;
    if c.wrap_up_secs > DAY {
        return Err(("wrap_up_secs".into(), "at most a day (86400)".into()));
    }
    for (i, s) in c.strategies.iter().enumerate() {
        if s.version == 0 || s.version > 1_000_000 {
            return Err((
                format!("strategies[{i}].version"),
                "from 1 to 1000000".into(),
            ));
        }
    }

    for (i, p) in c.places.iter().enumerate() {
        for (j, dn) in p.dns.iter().enumerate() {
            if !dns.contains_key(dn) {
                return Err((
                    format!("places[{i}].dns[{j}]"),
                    format!("unknown DN {dn:?}"),
                ));
            }
        }
    }
    for (i, a) in c.agents.iter().enumerate() {
        if a.wrap_up_secs.is_some_and(|w| w > DAY) {
            return Err((
                format!("agents[{i}].wrap_up_secs"),
                "at most a day (86400)".into(),
            ));
        }
        if let Some(place) = &a.place
            && !places.contains(place.as_str())
        {
            return Err((
                format!("agents[{i}].place"),
                format!("unknown place {place:?}"),
            ));
        }
        for skill in a.skills.keys() {
            if !skills.contains(skill.as_str()) {
                return Err((
                    format!("agents[{i}].skills.{skill}"),
                    format!("unknown skill {skill:?}"),
                ));
            }
        }
        for (j, group) in a.groups.iter().enumerate() {
            if !groups.contains(group.as_str()) {
                return Err((
                    format!("agents[{i}].groups[{j}]"),
                    format!("unknown agent group {group:?}"),
                ));
            }
        }
    }
    let mut numbers: HashSet<&str> = dns.keys().map(String::as_str).collect();
    for (i, r) in c.routing_points.iter().enumerate() {
        if !switchboard_sip::uri::is_valid_user(&r.number) || !numbers.insert(r.number.as_str()) {
            return Err((
                format!("routing_points[{i}].number"),
                format!("{:?} is not a valid number or is already a DN", r.number),
            ));
        }
        if r.timeout_secs > DAY {
            return Err((
                format!("routing_points[{i}].timeout_secs"),
                "at most a day (86400)".into(),
            ));
        }
        if !strategies.contains(r.strategy.as_str()) {
            return Err((
                format!("routing_points[{i}].strategy"),
                format!("unknown strategy {:?}", r.strategy),
            ));
        }
    }
    let routing_points: HashSet<&str> =
        c.routing_points.iter().map(|r| r.number.as_str()).collect();
    // The grammar is the dial plan's; here, whether the target exists.
    let destination = |d: &str| -> Result<(), String> {
        let known = match Destination::parse(d)? {
            // `extension:$1`: the number the rule rewrote to, looked up when a call comes.
            Destination::Extension(t) => {
                t.starts_with('$') || dns.get(&t).is_some_and(|dn| dn.kind.registers())
            }
            Destination::RoutingPoint(t) => routing_points.contains(t.as_str()),
            Destination::Trunk(t) => trunks.contains(t.as_str()),
            Destination::Queue(t) => queues.contains(t.as_str()),
            Destination::Announcement(t) => matches!(
                switchboard_sip::Uri::parse_str(&t),
                Ok(switchboard_sip::Uri::Sip(_))
            ),
            Destination::Reject(_) => true,
        };
        if known {
            Ok(())
        } else {
            Err(format!("{d:?}: no such destination"))
        }
    };
    for (i, r) in c.routing_points.iter().enumerate() {
        destination(&r.default_destination)
            .map_err(|p| (format!("routing_points[{i}].default_destination"), p))?;
    }
    for (i, rule) in c.dial_plan.iter().enumerate() {
        if rule.pattern.is_empty() {
            return Err((format!("dial_plan[{i}].pattern"), "empty".into()));
        }
        destination(&rule.destination).map_err(|p| (format!("dial_plan[{i}].destination"), p))?;
    }
    for (i, t) in c.trunks.iter().enumerate() {
        let rules = t.caller_id.iter().map(|r| RuleText {
            pattern: &r.pattern,
            rewrite: &r.rewrite,
            destination: "reject:404",
        });
        if let Err(e) = DialPlan::new(rules) {
            return Err((
                format!("trunks[{i}].caller_id[{}].{}", e.index, e.field),
                e.problem,
            ));
        }
    }
    for (i, t) in c.trunks.iter().enumerate() {
        for (j, source) in t.inbound.iter().enumerate() {
            if parse_network(source).is_none() {
                return Err((
                    format!("trunks[{i}].inbound[{j}]"),
                    format!("{source:?} is not an address or address/prefix"),
                ));
            }
        }
        if let Some(gateway) = &t.gateway
            && gateway.parse::<SocketAddr>().is_err()
        {
            return Err((
                format!("trunks[{i}].gateway"),
                format!("{gateway:?} is not host:port"),
            ));
        }
    }
    for (i, m) in c.media_servers.iter().enumerate() {
        if m.address.parse::<SocketAddr>().is_err() {
            return Err((
                format!("media_servers[{i}].address"),
                format!("{:?} is not host:port", m.address),
            ));
        }
    }
    Ok(())
}

/// `192.0.2.10`, `192.0.2.0/24`, `2001:db8::/32`: the address and the prefix length.
pub fn parse_network(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (
            ip.parse::<std::net::IpAddr>().ok()?,
            len.parse::<u8>().ok()?,
        ),
        None => {
            let ip = s.parse::<std::net::IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Whether `ip` is in the network `net` (an address and a prefix length).
pub fn in_network(ip: std::net::IpAddr, (net, len): (std::net::IpAddr, u8)) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Compiles a strategy's document and checks that the queues, skills, groups, agents and
/// DNs it names are the tenant's: a strategy is refused when saved, not when a call runs it.
pub fn compile_strategy(c: &TenantConfig, s: &StrategyConfig) -> Result<Program, String> {
    Program::compile(&s.document)
        .and_then(|program| program.check(c).map(|()| program))
        .map_err(|e| format!("strategy {:?} version {}, {e}", s.name, s.version))
}

impl Known for TenantConfig {
    fn queue(&self, name: &str) -> bool {
        self.queues.iter().any(|q| q.name == name)
    }
    fn skill(&self, name: &str) -> bool {
        self.skills
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(name))
    }
    fn group(&self, name: &str) -> bool {
        self.agent_groups.iter().any(|g| g.name == name)
    }
    fn agent(&self, id: &str) -> bool {
        self.agents.iter().any(|a| a.id == id)
    }
    fn dn(&self, number: &str) -> bool {
        self.dns.iter().any(|d| d.number == number)
    }
}

/// The demo tenant's strategy for routing point 5000 (design.md "The demo tenant"): open
/// around the clock (the closed branch is there to be tried with other hours), music, the
/// queue `support` for English speakers of level 3 or more, any agent of the group after
/// 30 seconds, and the default destination after 300.
pub const DEMO_STRATEGY: &str = r#"# Routing point 5000: the support line.
hours always: mon-sun 00:00-24:00

if closed always
  play announcement file:///prompts/closed.wav
  route default
end
set line "support"
play music file:///music/hold.wav
queue support target "english >= 3" priority 5 timeout 300s
  after 30s target "group:support"
route default
"#;

/// The demo tenant of design.md ("The demo tenant"): domain and realm `demo.local`, DNs 1001
/// to 1020 with passwords `demo<dn>`, agents `a1001` to `a1020` at those DNs with skills, the
/// trunk `carrier`, the media server `gvp`, routing point 5000 and its dial plan.
///
/// It challenges with MD5 only: design.md has it offer MD5 first and SHA-256 second, but
/// Debian's baresip 1.0.0 (libre before 2.0) gives up on a 401 that holds any challenge other
/// than MD5, whatever the order, and a demo must work with the softphones people try first.
/// Configured tenants offer both unless they say otherwise.
pub fn demo_tenant() -> TenantConfig {
    let named = |name: &str| NamedConfig {
        name: name.into(),
        options: Options::new(),
    };
    let numbers = 1001..=1020;
    TenantConfig {
        name: "demo".into(),
        domain: "demo.local".into(),
        realm: None,
        digest: vec!["MD5".into()],
        authenticate: true,
        wrap_up_secs: 0,
        options: Options::new(),
        dns: numbers
            .clone()
            .map(|dn| DnConfig {
                number: dn.to_string(),
                kind: DnKind::Extension,
                password: format!("demo{dn}"),
                digest: None,
                authenticate: None,
                options: Options::new(),
            })
            .collect(),
        skills: ["english", "billing", "sales"].map(named).to_vec(),
        agent_groups: vec![named("support")],
        places: numbers
            .clone()
            .map(|dn| PlaceConfig {
                name: format!("place{dn}"),
                dns: vec![dn.to_string()],
                options: Options::new(),
            })
            .collect(),
        agents: numbers
            .map(|dn| {
                let mut skills = BTreeMap::from([("english".to_owned(), (dn - 1000 - 1) % 10 + 1)]);
                skills.insert(if dn % 2 == 1 { "billing" } else { "sales" }.into(), 5);
                AgentConfig {
                    id: format!("a{dn}"),
                    name: String::new(),
                    login_code: dn.to_string(),
                    place: Some(format!("place{dn}")),
                    skills,
                    groups: vec!["support".into()],
                    wrap_up_secs: None,
                    options: Options::new(),
                }
            })
            .collect(),
        routing_points: vec![RoutingPointConfig {
            number: "5000".into(),
            strategy: "support".into(),
            default_destination: "extension:1001".into(),
            timeout_secs: 300,
            options: Options::new(),
        }],
        queues: vec![named("support")],
        trunks: vec![TrunkConfig {
            name: "carrier".into(),
            inbound: vec!["127.0.0.2".into()],
            gateway: Some("127.0.0.2:5070".into()),
            caller_id: Vec::new(),
            options: Options::new(),
        }],
        media_servers: vec![MediaServerConfig {
            name: "gvp".into(),
            address: "127.0.0.3:5090".into(),
            options: Options::new(),
        }],
        dial_plan: vec![
            DialRuleConfig {
                pattern: r"^\+18005550100$".into(),
                rewrite: String::new(),
                destination: "routing-point:5000".into(),
                options: Options::new(),
            },
            DialRuleConfig {
                pattern: r"^(1\d{3})$".into(),
                rewrite: "$1".into(),
                destination: "extension:$1".into(),
                options: Options::new(),
            },
            DialRuleConfig {
                pattern: r"^9(\d+)$".into(),
                rewrite: "$1".into(),
                destination: "trunk:carrier".into(),
                options: Options::new(),
            },
        ],
        strategies: vec![StrategyConfig {
            name: "support".into(),
            version: 1,
            document: DEMO_STRATEGY.into(),
            options: Options::new(),
        }],
        api_keys: vec![ApiKeyConfig {
            name: "demo".into(),
            hash: hash_api_key("demo-key"),
        }],
    }
}

/// How an API key is stored and looked up: `sha256:` and the hex SHA-256 of the key. Keys are
/// long random strings, so a fast hash does; the key itself is never kept.
pub fn hash_api_key(key: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        switchboard_sip::hex(&sha2::Sha256::digest(key.as_bytes()))
    )
}

/// An immutable snapshot of every tenant, by name and by domain.
#[derive(Debug, Default)]
pub struct Directory {
    by_name: HashMap<String, Arc<Tenant>>,
    by_domain: HashMap<String, Arc<Tenant>>,
    /// Tenants by the hashes of their API keys.
    by_key: HashMap<String, Arc<Tenant>>,
}

impl Directory {
    pub fn new(configs: &[TenantConfig]) -> Result<Self, ConfigError> {
        let tenants = configs
            .iter()
            .map(|c| Tenant::from_config(c).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_tenants(tenants)
    }

    /// A directory of tenants already checked, shared with the directory they come from.
    pub fn from_tenants(
        tenants: impl IntoIterator<Item = Arc<Tenant>>,
    ) -> Result<Self, ConfigError> {
        let mut dir = Self::default();
        for tenant in tenants {
            if dir.by_name.contains_key(&tenant.name) {
                return Err(ConfigError::DuplicateTenant(tenant.name.clone()));
            }
            if dir.by_domain.contains_key(&tenant.domain) {
                return Err(ConfigError::DuplicateDomain(tenant.domain.clone()));
            }
            for key in &tenant.config.api_keys {
                if dir
                    .by_key
                    .insert(key.hash.clone(), tenant.clone())
                    .is_some()
                {
                    return Err(ConfigError::Invalid {
                        tenant: tenant.name.clone(),
                        field: "api_keys".into(),
                        problem: format!("key {:?} is another tenant's key too", key.name),
                    });
                }
            }
            dir.by_domain.insert(tenant.domain.clone(), tenant.clone());
            dir.by_name.insert(tenant.name.clone(), tenant);
        }
        Ok(dir)
    }

    pub fn by_domain(&self, domain: &str) -> Option<&Arc<Tenant>> {
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_domain.get(&domain.to_ascii_lowercase())
        } else {
            self.by_domain.get(domain)
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_name.get(name)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_name.values()
    }

    /// The tenant an API key reaches, if any.
    pub fn by_api_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.by_key.get(&hash_api_key(key))
    }

    /// The version a tenant is held at; `None` when it is not held.
    pub fn version(&self, name: &str) -> Option<i64> {
        self.by_name.get(name).map(|t| t.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first actions of the demo strategy for a call at `now` (unix ms), with the
    /// strategy's hours replaced by `hours`.
    fn demo_start(hours: &str, now: u64) -> Vec<switchboard_routing::strategy::Action> {
        use switchboard_routing::strategy::{CallInfo, Session};
        let mut config = demo_tenant();
        config.strategies[0].document =
            DEMO_STRATEGY.replace("hours always: mon-sun 00:00-24:00", hours);
        let tenant = Tenant::from_config(&config).expect("the demo strategy compiles");
        let (_, program) = tenant.strategy("support").expect("the demo strategy");
        let call = CallInfo {
            caller: "+15551230000".into(),
            dialed: "+18005550100".into(),
            data: BTreeMap::new(),
        };
        let mut session = Session::new(program, call, now);
        std::iter::from_fn(|| session.poll_action()).collect()
    }

    #[test]
    fn a_queue_choice_must_be_one_routing_knows() {
        let with = |choice: &str| {
            let mut c = demo_tenant();
            c.queues[0].options.insert("choice".into(), choice.into());
            c
        };
        assert!(Tenant::from_config(&with("most-skilled")).is_ok());
        let (field, problem) = invalid(with("fastest"));
        assert_eq!(field, "queues[0].options.choice");
        assert!(problem.contains("least-occupied"), "{problem}");
        let (_, problem) = invalid(with("ring-all"));
        assert!(problem.contains("not supported"), "{problem}");
    }

    #[test]
    fn the_demo_strategy_is_open_around_the_clock_and_closed_outside_its_hours() {
        use switchboard_routing::strategy::{Action, Treatment};
        // Sunday 29 November 2026, 03:00 UTC.
        let sunday_night = 1_795_921_200_000;
        let open = demo_start("hours always: mon-sun 00:00-24:00", sunday_night);
        assert_eq!(
            open[..2],
            [
                Action::SetData {
                    key: "line".into(),
                    value: "support".into()
                },
                Action::Treat(Treatment::Music("file:///music/hold.wav".into()))
            ]
        );
        let closed = demo_start("hours always: mon-fri 08:00-18:00", sunday_night);
        assert_eq!(
            closed,
            [Action::Treat(Treatment::Announcement(
                "file:///prompts/closed.wav".into()
            ))]
        );
    }

    fn invalid(c: TenantConfig) -> (String, String) {
        match Directory::new(&[c]) {
            Err(ConfigError::Invalid { field, problem, .. }) => (field, problem),
            other => panic!("expected an invalid configuration, got {other:?}"),
        }
    }

    #[test]
    fn dn_call_options_are_checked() {
        let mut c = demo_tenant();
        c.dns[0].options.insert("max-calls".into(), "2".into());
        c.dns[0]
            .options
            .insert("no-answer-timeout".into(), "15".into());
        let dir = Directory::new(std::slice::from_ref(&c)).expect("valid");
        let dn = &dir.by_name("demo").expect("demo").dns["1001"];
        assert_eq!((dn.max_calls, dn.no_answer_timeout), (Some(2), Some(15)));
        c.dns[1].options.insert("max-calls".into(), "many".into());
        let (field, problem) = invalid(c);
        assert_eq!(field, "dns[1].options.max-calls");
        assert!(problem.contains("many"), "{problem}");
    }

    #[test]
    fn demo_tenant_matches_the_design() {
        let dir = Directory::new(&[demo_tenant()]).expect("valid");
        let t = dir.by_domain("DEMO.local").expect("demo");
        assert_eq!(t.realm, "demo.local");
        assert_eq!(t.digest, [Algorithm::Md5]);
        assert_eq!(t.dns.len(), 20);
        assert_eq!(t.dns["1007"].password, "demo1007");
        assert_eq!(t.aor("1001"), "sip:1001@demo.local");
        let a1007 = &t.config.agents[6];
        assert_eq!(
            (a1007.id.as_str(), a1007.login_code.as_str()),
            ("a1007", "1007")
        );
        assert_eq!(a1007.skills["english"], 7);
        assert_eq!(a1007.skills["billing"], 5);
        assert!(t.config.agents[1].skills.contains_key("sales"));
        assert_eq!(t.config.routing_points[0].number, "5000");
        assert_eq!(t.config.trunks[0].inbound, ["127.0.0.2"]);
    }

    #[test]
    fn bad_dns_are_explained_by_field() {
        let mut c = demo_tenant();
        c.digest = vec!["SHA-512".into()];
        let (field, problem) = invalid(c);
        assert_eq!(field, "digest");
        assert!(problem.contains("SHA-512"), "{problem}");
        let e = Directory::new(&[demo_tenant(), demo_tenant()]).expect_err("twice");
        assert!(matches!(e, ConfigError::DuplicateTenant(_)));

        let mut c = demo_tenant();
        c.dns[1].number = "1001".into();
        assert_eq!(invalid(c).0, "dns[1].number");
        let mut c = demo_tenant();
        c.dns[0].number = "10 01".into();
        assert_eq!(invalid(c).0, "dns[0].number");
        let mut c = demo_tenant();
        c.dns[3].password.clear();
        let (field, problem) = invalid(c);
        assert_eq!(field, "dns[3].password");
        assert!(problem.contains("\"1004\" authenticates"), "{problem}");
        // A DN that does not register needs no password.
        let mut c = demo_tenant();
        c.dns[3].password.clear();
        c.dns[3].kind = DnKind::ServiceNumber;
        c.places.remove(3);
        c.agents[3].place = None;
        assert!(Directory::new(&[c]).is_ok());
    }

    #[test]
    fn references_between_objects_must_resolve() {
        type Change = fn(&mut TenantConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.places[0].dns[0] = "4711".into(), "places[0].dns[0]"),
            (
                |c| c.agents[2].place = Some("nowhere".into()),
                "agents[2].place",
            ),
            (
                |c| {
                    c.agents[0].skills.insert("french".into(), 3);
                },
                "agents[0].skills.french",
            ),
            (
                |c| c.agents[4].groups.push("sales-team".into()),
                "agents[4].groups[1]",
            ),
            (
                |c| c.agents[5].login_code = "1001".into(),
                "agents[5].login_code",
            ),
            (
                |c| c.routing_points[0].strategy = "gone".into(),
                "routing_points[0].strategy",
            ),
            (
                |c| c.routing_points[0].number = "1001".into(),
                "routing_points[0].number",
            ),
            (
                |c| c.routing_points[0].default_destination = "extension:4711".into(),
                "routing_points[0].default_destination",
            ),
            (
                |c| c.dial_plan[2].destination = "trunk:other".into(),
                "dial_plan[2].destination",
            ),
            (
                |c| c.dial_plan[0].destination = "5000".into(),
                "dial_plan[0].destination",
            ),
            (
                |c| c.dial_plan[0].destination = "reject:200".into(),
                "dial_plan[0].destination",
            ),
            (
                |c| c.trunks[0].inbound.push("10.0.0.0/33".into()),
                "trunks[0].inbound[1]",
            ),
            (
                |c| c.trunks[0].gateway = Some("carrier.example".into()),
                "trunks[0].gateway",
            ),
            (
                |c| c.dial_plan[1].pattern = "^(1\\d{3}$".into(),
                "dial_plan[1].pattern",
            ),
            (
                |c| c.dial_plan[2].rewrite = "$2".into(),
                "dial_plan[2].rewrite",
            ),
            (
                |c| {
                    c.trunks[0].caller_id.push(RewriteConfig {
                        pattern: "[".into(),
                        rewrite: String::new(),
                    })
                },
                "trunks[0].caller_id[0].pattern",
            ),
            (
                |c| c.media_servers[0].address = "gvp".into(),
                "media_servers[0].address",
            ),
            (|c| c.skills.push(c.skills[0].clone()), "skills[3].name"),
        ];
        for (change, field) in cases {
            let mut c = demo_tenant();
            change(&mut c);
            assert_eq!(invalid(c).0, field);
        }
    }

    #[test]
    fn the_snapshot_routes_dialed_numbers_by_the_dial_plan() {
        let dir = Directory::new(&[demo_tenant()]).expect("valid");
        let t = dir.by_name("demo").expect("demo");
        let route = t.dial_plan.route("1012").expect("extension");
        assert_eq!(route.destination, Destination::Extension("1012".into()));
        let route = t.dial_plan.route("+18005550100").expect("service number");
        assert_eq!(route.destination, Destination::RoutingPoint("5000".into()));
        let route = t.dial_plan.route("90049301234").expect("outside line");
        assert_eq!(
            (route.number.as_str(), route.destination),
            ("0049301234", Destination::Trunk("carrier".into()))
        );
        assert!(t.dial_plan.route("555").is_none());
    }

    #[test]
    fn a_new_directory_shares_the_tenants_it_is_given() {
        let first = Directory::new(&[demo_tenant()]).expect("valid");
        let demo = first.by_name("demo").expect("demo").clone();
        let mut other = demo_tenant();
        other.name = "other".into();
        other.domain = "other.local".into();
        other.api_keys.clear();
        let other = Arc::new(Tenant::from_config(&other).expect("valid"));
        let next = Directory::from_tenants([demo.clone(), other.clone()]).expect("valid");
        assert!(Arc::ptr_eq(next.by_name("demo").expect("demo"), &demo));
        assert!(Arc::ptr_eq(
            next.by_domain("other.local").expect("other"),
            &other
        ));
        let e = Directory::from_tenants([demo.clone(), demo]).expect_err("twice");
        assert_eq!(e, ConfigError::DuplicateTenant("demo".into()));
    }

    #[test]
    fn api_keys_are_found_by_their_hash_and_belong_to_one_tenant() {
        let dir = Directory::new(&[demo_tenant()]).expect("valid");
        assert_eq!(
            dir.by_api_key("demo-key").map(|t| t.name.as_str()),
            Some("demo")
        );
        assert!(dir.by_api_key("demo-key ").is_none());
        assert!(dir.by_api_key("").is_none());
        assert!(demo_tenant().api_keys[0].hash.starts_with("sha256:"));

        let mut c = demo_tenant();
        c.api_keys[0].hash = "demo-key".into();
        assert_eq!(invalid(c).0, "api_keys[0].hash");
        let mut other = demo_tenant();
        other.name = "other".into();
        other.domain = "other.local".into();
        let e = Directory::new(&[demo_tenant(), other]).expect_err("one key, two tenants");
        assert_eq!(e.field(), "api_keys");
    }

    #[test]
    fn per_dn_digest_order() {
        let mut c = demo_tenant();
        c.digest = vec!["MD5".into(), "SHA-256".into()];
        c.dns[0].digest = Some(vec!["SHA-256".into()]);
        let dir = Directory::new(&[c]).expect("valid");
        let t = dir.by_name("demo").expect("demo");
        assert_eq!(t.dns["1001"].digest, [Algorithm::Sha256]);
        assert_eq!(t.dns["1002"].digest, [Algorithm::Md5, Algorithm::Sha256]);
    }

    #[test]
    fn authentication_may_be_turned_off_per_tenant_and_per_dn() {
        let mut c = demo_tenant();
        c.authenticate = false;
        c.dns[0].password.clear();
        c.dns[1].authenticate = Some(true);
        let dir = Directory::new(&[c]).expect("a DN without password need not authenticate");
        let t = dir.by_name("demo").expect("demo");
        assert!(!t.dns["1001"].authenticate);
        assert!(t.dns["1002"].authenticate);
        assert!(!t.dns["1003"].authenticate);
    }

    #[test]
    fn the_demo_survives_toml_both_ways() {
        let text = toml::to_string(&demo_tenant()).expect("prints");
        let back: TenantConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, demo_tenant());
    }
}
