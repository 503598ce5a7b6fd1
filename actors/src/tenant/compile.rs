//! The tenant compiler: a tenant's configuration checked (names, numbers, references between
//! its objects, each error naming the field at fault) and indexed into a [`Tenant`], its dial
//! plan and strategies compiled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_routing::dialplan::{Destination, DialPlan, RuleText};
use switchboard_routing::strategy::{Known, Program};
use switchboard_sip::auth::Algorithm;
use switchboard_sip::transport::Transport;

use super::model::{ConfigError, Dn, MediaControl, MediaServer, Tenant, Trunk, parse_network};
use super::{StrategyConfig, TenantConfig};

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
                record: super::records(&d.options),
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
                transport: t
                    .options
                    .get("transport")
                    .and_then(|v| Transport::from_via_name(v.trim()))
                    .unwrap_or(Transport::Udp),
                client_certificate: t.options.get("client-certificate").map(|v| v.trim())
                    == Some("required"),
            })
            .collect();
        let mut media_servers = Vec::with_capacity(c.media_servers.len());
        for (i, m) in c.media_servers.iter().enumerate() {
            let control = match m.options.get("control").map(|v| v.trim()) {
                None => MediaControl::Netann,
                Some(v) => MediaControl::parse(v).ok_or_else(|| {
                    fail(
                        format!("media_servers[{i}].options.control"),
                        format!("{v:?} is not netann or msml"),
                    )
                })?,
            };
            // Checked with the other objects: every address parses.
            if let Ok(address) = m.address.parse() {
                media_servers.push(MediaServer {
                    name: m.name.clone(),
                    address,
                    control,
                });
            }
        }
        if let Some(v) = c.options.get("next-state")
            && !["after-wrap-up", "after-call"].contains(&v.trim())
        {
            return Err(fail(
                "options.next-state".into(),
                format!("{v:?} is not after-wrap-up or after-call"),
            ));
        }
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
}

/// The values of the option `monitoring` of agents and queues.
const MONITORING: [&str; 2] = ["allowed", "forbidden"];

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
    if jiff::tz::TimeZone::get(&c.time_zone).is_err() {
        return Err((
            "time_zone".into(),
            format!(
                "{:?} is no IANA time zone (such as UTC, Europe/Paris, America/New_York)",
                c.time_zone
            ),
        ));
    }
    if c.stats.service_level_secs > DAY {
        return Err((
            "stats.service_level_secs".into(),
            "at most a day (86400)".into(),
        ));
    }
    if c.stats.short_abandon_secs > DAY {
        return Err((
            "stats.short_abandon_secs".into(),
            "at most a day (86400)".into(),
        ));
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
    let choice =
        |field: String, options: &super::Options, name: &str, values: [&str; 2]| match options
            .get(name)
            .map(|v| v.trim())
        {
            Some(v) if !values.contains(&v) => Err((
                format!("{field}.options.{name}"),
                format!("{v:?} is not {} or {}", values[0], values[1]),
            )),
            _ => Ok(()),
        };
    let yes_no = ["true", "false"];
    for (i, d) in c.dns.iter().enumerate() {
        choice(format!("dns[{i}]"), &d.options, "record", yes_no)?;
    }
    for (i, r) in c.routing_points.iter().enumerate() {
        choice(format!("routing_points[{i}]"), &r.options, "record", yes_no)?;
    }
    for (i, q) in c.queues.iter().enumerate() {
        choice(format!("queues[{i}]"), &q.options, "monitoring", MONITORING)?;
        choice(format!("queues[{i}]"), &q.options, "record", yes_no)?;
    }
    if let Some(v) = c.options.get("recording")
        && !["per-call", "per-stream"].contains(&v.trim())
    {
        return Err((
            "options.recording".into(),
            format!("{v:?} is not per-call or per-stream"),
        ));
    }
    if let Some(v) = c.options.get("recording-failure")
        && !["continue", "release"].contains(&v.trim())
    {
        return Err((
            "options.recording-failure".into(),
            format!("{v:?} is not continue or release"),
        ));
    }
    for (i, a) in c.agents.iter().enumerate() {
        choice(format!("agents[{i}]"), &a.options, "monitoring", MONITORING)?;
        choice(format!("agents[{i}]"), &a.options, "record", yes_no)?;
        choice(
            format!("agents[{i}]"),
            &a.options,
            "supervisor",
            ["true", "false"],
        )?;
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
        if let Some(v) = t.options.get("transport")
            && Transport::from_via_name(v.trim()).is_none()
        {
            return Err((
                format!("trunks[{i}].options.transport"),
                format!("{v:?} is not udp, tcp or tls"),
            ));
        }
        if let Some(v) = t.options.get("client-certificate")
            && !matches!(v.trim(), "required" | "no")
        {
            return Err((
                format!("trunks[{i}].options.client-certificate"),
                format!("{v:?} is not \"required\" or \"no\""),
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
