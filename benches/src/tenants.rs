//! A large tenant for the configuration benchmarks: 10,000 agents, 20,000 DNs (an extension
//! and an ACD position per agent), 500 dial plan rules, 50 skills, 100 groups and places for
//! every agent.

use std::collections::BTreeMap;

use switchboard_actors::tenant::{
    AgentConfig, DialRuleConfig, DnConfig, DnKind, NamedConfig, Options, PlaceConfig,
    StrategyConfig, TenantConfig, TrunkConfig, demo_tenant,
};

pub const AGENTS: usize = 10_000;

/// Tenants as a file of `[[tenants]]`, as `switchboard config export` prints them and a
/// node's configuration takes them.
pub fn as_toml(tenants: &[&TenantConfig]) -> Result<String, toml::ser::Error> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        tenants: &'a [&'a TenantConfig],
    }
    toml::to_string(&File { tenants })
}
pub const RULES: usize = 500;

pub fn large_tenant() -> TenantConfig {
    let named = |name: String| NamedConfig {
        name,
        options: Options::new(),
    };
    let dn = |number: String, kind: DnKind| DnConfig {
        password: format!("pw{number}"),
        number,
        kind,
        digest: None,
        authenticate: None,
        options: Options::new(),
    };
    let mut c = demo_tenant();
    c.name = "large".into();
    c.domain = "large.example".into();
    c.api_keys[0].hash = switchboard_actors::tenant::hash_api_key("large-key");
    c.dns = (0..AGENTS)
        .flat_map(|i| {
            [
                dn(format!("{}", 100_000 + i), DnKind::Extension),
                dn(format!("{}", 200_000 + i), DnKind::AcdPosition),
            ]
        })
        .collect();
    c.skills = (0..50).map(|i| named(format!("skill{i}"))).collect();
    c.agent_groups = (0..100).map(|i| named(format!("group{i}"))).collect();
    c.places = (0..AGENTS)
        .map(|i| PlaceConfig {
            name: format!("place{i}"),
            dns: vec![format!("{}", 100_000 + i), format!("{}", 200_000 + i)],
            options: Options::new(),
        })
        .collect();
    c.agents = (0..AGENTS)
        .map(|i| AgentConfig {
            id: format!("agent{i}"),
            name: format!("Agent {i}"),
            login_code: format!("{}", 500_000 + i),
            place: Some(format!("place{i}")),
            skills: BTreeMap::from([
                (format!("skill{}", i % 50), (i % 10) as u32 + 1),
                (format!("skill{}", (i + 7) % 50), 5),
            ]),
            groups: vec![format!("group{}", i % 100)],
            wrap_up_secs: None,
            options: Options::new(),
        })
        .collect();
    c.trunks = vec![TrunkConfig {
        name: "carrier".into(),
        inbound: vec!["192.0.2.0/24".into()],
        gateway: Some("192.0.2.1:5060".into()),
        caller_id: Vec::new(),
        options: Options::new(),
    }];
    c.strategies = vec![StrategyConfig {
        name: "support".into(),
        version: 1,
        document: String::new(),
        options: Options::new(),
    }];
    // 499 service numbers to routing point 5000, then the extensions: the last rules are the
    // ones most numbers reach.
    c.dial_plan = (0..RULES - 1)
        .map(|i| DialRuleConfig {
            pattern: format!(r"^\+1800555{i:04}$"),
            rewrite: String::new(),
            destination: "routing-point:5000".into(),
            options: Options::new(),
        })
        .chain(std::iter::once(DialRuleConfig {
            pattern: r"^(1\d{5})$".into(),
            rewrite: "$1".into(),
            destination: "extension:$1".into(),
            options: Options::new(),
        }))
        .collect();
    c.routing_points[0].default_destination = "extension:100000".into();
    c
}
