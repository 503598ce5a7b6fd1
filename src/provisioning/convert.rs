//! The API's messages to and from the configuration's structs. Absent or empty fields take
//! the defaults the TOML form gives them.

use switchboard_actors::tenant::{
    AgentConfig, DialRuleConfig, DnConfig, DnKind, MediaServerConfig, NamedConfig, Options,
    PlaceConfig, RewriteConfig, RoutingPointConfig, StrategyConfig, TenantConfig, TrunkConfig,
};
use switchboard_proto::provisioning as pb;

type Map = std::collections::HashMap<String, String>;

fn options(map: Map) -> Options {
    map.into_iter().collect()
}

fn map(options: &Options) -> Map {
    options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A message of the API and the configuration struct it stands for.
pub(crate) trait Message: Sized {
    type Config;
    fn into_config(self) -> Self::Config;
    fn from_config(c: &Self::Config) -> Self;
}

impl Message for pb::Dn {
    type Config = DnConfig;
    fn into_config(self) -> DnConfig {
        DnConfig {
            kind: dn_kind(self.r#type()),
            number: self.number,
            password: self.password,
            digest: (!self.digest.is_empty()).then_some(self.digest),
            authenticate: self.authenticate,
            options: options(self.options),
        }
    }
    fn from_config(d: &DnConfig) -> Self {
        let mut dn = pb::Dn {
            number: d.number.clone(),
            password: d.password.clone(),
            digest: d.digest.clone().unwrap_or_default(),
            authenticate: d.authenticate,
            options: map(&d.options),
            ..Default::default()
        };
        dn.set_type(dn_type(d.kind));
        dn
    }
}

fn dn_kind(t: pb::DnType) -> DnKind {
    match t {
        pb::DnType::Unspecified | pb::DnType::Extension => DnKind::Extension,
        pb::DnType::AcdPosition => DnKind::AcdPosition,
        pb::DnType::VirtualQueue => DnKind::VirtualQueue,
        pb::DnType::Trunk => DnKind::Trunk,
        pb::DnType::TrunkGroup => DnKind::TrunkGroup,
        pb::DnType::MediaServer => DnKind::MediaServer,
        pb::DnType::ServiceNumber => DnKind::ServiceNumber,
    }
}

fn dn_type(k: DnKind) -> pb::DnType {
    match k {
        DnKind::Extension => pb::DnType::Extension,
        DnKind::AcdPosition => pb::DnType::AcdPosition,
        DnKind::VirtualQueue => pb::DnType::VirtualQueue,
        DnKind::Trunk => pb::DnType::Trunk,
        DnKind::TrunkGroup => pb::DnType::TrunkGroup,
        DnKind::MediaServer => pb::DnType::MediaServer,
        DnKind::ServiceNumber => pb::DnType::ServiceNumber,
    }
}

/// Skills, agent groups and queues: a name and options.
macro_rules! named {
    ($($message:ty),*) => {$(
        impl Message for $message {
            type Config = NamedConfig;
            fn into_config(self) -> NamedConfig {
                NamedConfig { name: self.name, options: options(self.options) }
            }
            fn from_config(n: &NamedConfig) -> Self {
                Self { name: n.name.clone(), options: map(&n.options) }
            }
        }
    )*};
}
named!(pb::Skill, pb::AgentGroup, pb::Queue);

impl Message for pb::Place {
    type Config = PlaceConfig;
    fn into_config(self) -> PlaceConfig {
        PlaceConfig {
            name: self.name,
            dns: self.dns,
            options: options(self.options),
        }
    }
    fn from_config(p: &PlaceConfig) -> Self {
        Self {
            name: p.name.clone(),
            dns: p.dns.clone(),
            options: map(&p.options),
        }
    }
}

impl Message for pb::Agent {
    type Config = AgentConfig;
    fn into_config(self) -> AgentConfig {
        AgentConfig {
            id: self.id,
            name: self.name,
            login_code: self.login_code,
            place: non_empty(self.place),
            skills: self.skills.into_iter().collect(),
            groups: self.groups,
            wrap_up_secs: self.wrap_up_secs,
            options: options(self.options),
        }
    }
    fn from_config(a: &AgentConfig) -> Self {
        Self {
            id: a.id.clone(),
            name: a.name.clone(),
            login_code: a.login_code.clone(),
            place: a.place.clone().unwrap_or_default(),
            skills: a.skills.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            groups: a.groups.clone(),
            wrap_up_secs: a.wrap_up_secs,
            options: map(&a.options),
        }
    }
}

impl Message for pb::RoutingPoint {
    type Config = RoutingPointConfig;
    fn into_config(self) -> RoutingPointConfig {
        RoutingPointConfig {
            number: self.number,
            strategy: self.strategy,
            default_destination: self.default_destination,
            timeout_secs: self.timeout_secs.unwrap_or(300),
            options: options(self.options),
        }
    }
    fn from_config(r: &RoutingPointConfig) -> Self {
        Self {
            number: r.number.clone(),
            strategy: r.strategy.clone(),
            default_destination: r.default_destination.clone(),
            timeout_secs: Some(r.timeout_secs),
            options: map(&r.options),
        }
    }
}

impl Message for pb::Trunk {
    type Config = TrunkConfig;
    fn into_config(self) -> TrunkConfig {
        TrunkConfig {
            name: self.name,
            inbound: self.inbound,
            gateway: non_empty(self.gateway),
            caller_id: self
                .caller_id
                .into_iter()
                .map(|r| RewriteConfig {
                    pattern: r.pattern,
                    rewrite: r.rewrite,
                })
                .collect(),
            options: options(self.options),
        }
    }
    fn from_config(t: &TrunkConfig) -> Self {
        Self {
            name: t.name.clone(),
            inbound: t.inbound.clone(),
            gateway: t.gateway.clone().unwrap_or_default(),
            caller_id: t
                .caller_id
                .iter()
                .map(|r| pb::Rewrite {
                    pattern: r.pattern.clone(),
                    rewrite: r.rewrite.clone(),
                })
                .collect(),
            options: map(&t.options),
        }
    }
}

impl Message for pb::MediaServer {
    type Config = MediaServerConfig;
    fn into_config(self) -> MediaServerConfig {
        MediaServerConfig {
            name: self.name,
            address: self.address,
            options: options(self.options),
        }
    }
    fn from_config(m: &MediaServerConfig) -> Self {
        Self {
            name: m.name.clone(),
            address: m.address.clone(),
            options: map(&m.options),
        }
    }
}

impl Message for pb::DialPlanRule {
    type Config = DialRuleConfig;
    fn into_config(self) -> DialRuleConfig {
        DialRuleConfig {
            pattern: self.pattern,
            rewrite: self.rewrite,
            destination: self.destination,
            options: options(self.options),
        }
    }
    /// Without its index, which the caller knows.
    fn from_config(r: &DialRuleConfig) -> Self {
        Self {
            index: 0,
            pattern: r.pattern.clone(),
            rewrite: r.rewrite.clone(),
            destination: r.destination.clone(),
            options: map(&r.options),
        }
    }
}

impl Message for pb::Strategy {
    type Config = StrategyConfig;
    fn into_config(self) -> StrategyConfig {
        StrategyConfig {
            name: self.name,
            version: self.version,
            document: self.document,
            options: options(self.options),
        }
    }
    fn from_config(s: &StrategyConfig) -> Self {
        Self {
            name: s.name.clone(),
            version: s.version,
            document: s.document.clone(),
            options: map(&s.options),
        }
    }
}

/// A tenant's own settings (its object lists stay empty).
impl Message for pb::Tenant {
    type Config = TenantConfig;
    fn into_config(self) -> TenantConfig {
        let defaults = TenantConfig::new(self.name, self.domain);
        TenantConfig {
            realm: non_empty(self.realm),
            digest: if self.digest.is_empty() {
                defaults.digest.clone()
            } else {
                self.digest
            },
            authenticate: self.authenticate.unwrap_or(true),
            wrap_up_secs: self.wrap_up_secs,
            options: options(self.options),
            time_zone: non_empty(self.time_zone).unwrap_or_else(|| defaults.time_zone.clone()),
            stats: switchboard_actors::tenant::StatsConfig {
                service_level_secs: self
                    .service_level_secs
                    .unwrap_or(defaults.stats.service_level_secs),
                short_abandon_secs: self
                    .short_abandon_secs
                    .unwrap_or(defaults.stats.short_abandon_secs),
            },
            ..defaults
        }
    }
    /// Without its version, which the caller knows.
    fn from_config(c: &TenantConfig) -> Self {
        Self {
            name: c.name.clone(),
            domain: c.domain.clone(),
            realm: c.realm.clone().unwrap_or_default(),
            digest: c.digest.clone(),
            authenticate: Some(c.authenticate),
            wrap_up_secs: c.wrap_up_secs,
            options: map(&c.options),
            version: 0,
            time_zone: c.time_zone.clone(),
            service_level_secs: Some(c.stats.service_level_secs),
            short_abandon_secs: Some(c.stats.short_abandon_secs),
        }
    }
}
