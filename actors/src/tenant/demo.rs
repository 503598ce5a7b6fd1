//! The demo tenant every newcomer and end-to-end test shares (design.md "The demo tenant").

use std::collections::BTreeMap;

use super::*;

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
                    // The last agent supervises: it may monitor the others' calls.
                    options: Options::from_iter(
                        (dn == 1020).then(|| ("supervisor".to_owned(), "true".to_owned())),
                    ),
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
        api_keys: vec![
            ApiKeyConfig {
                name: "demo".into(),
                hash: hash_api_key("demo-key"),
                scope: KeyScope::Full,
            },
            // Reads statistics only: the wallboard's.
            ApiKeyConfig {
                name: "wallboard".into(),
                hash: hash_api_key("demo-wallboard-key"),
                scope: KeyScope::Stats,
            },
        ],
        time_zone: "UTC".into(),
        stats: StatsConfig::default(),
    }
}
