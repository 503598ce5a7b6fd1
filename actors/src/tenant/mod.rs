//! The tenant system: the contact-center configuration of each tenant (DNs with credentials,
//! agents, skills, groups, places, routing points, queues, trunks, media servers, dial plan,
//! strategies) and the checked, indexed snapshot every other system reads. The tenant actor
//! owns the configuration and hands every subscriber an immutable snapshot ([`Directory`]);
//! lookups are plain functions of that snapshot.
//!
//! Configuration comes from the node's TOML file or, without one, the built-in demo tenant.

mod actor;
mod compile;
mod config;
mod demo;
mod model;
pub mod postgres;
pub mod provision;
pub mod watch;

pub use actor::{TenantActor, TenantMsg};
pub use config::{
    AgentConfig, ApiKeyConfig, DialRuleConfig, DnConfig, DnKind, KeyScope, MediaServerConfig,
    NamedConfig, Options, PlaceConfig, RewriteConfig, RoutingPointConfig, StatsConfig,
    StrategyConfig, TenantConfig, TrunkConfig, monitoring_forbidden, records,
};

pub use compile::compile_strategy;
pub use demo::{DEMO_STRATEGY, demo_tenant};
pub use model::{
    ConfigError, Directory, Dn, MediaControl, MediaServer, Tenant, Trunk, hash_api_key, in_network,
    parse_network,
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use switchboard_routing::dialplan::Destination;
    use switchboard_sip::auth::Algorithm;

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
    fn a_time_zone_must_be_an_iana_name_and_thresholds_at_most_a_day() {
        let mut c = demo_tenant();
        c.time_zone = "Mars/Olympus".into();
        let (field, problem) = invalid(c);
        assert_eq!(field, "time_zone");
        assert!(problem.contains("Mars/Olympus"), "{problem}");
        let mut c = demo_tenant();
        c.time_zone = "America/New_York".into();
        c.stats.service_level_secs = 86_401;
        assert_eq!(invalid(c).0, "stats.service_level_secs");
        // Read from TOML, with its defaults.
        let toml = "name = \"t\"\ndomain = \"t.example\"\ntime_zone = \"Asia/Kolkata\"\n\
                    [stats]\nservice_level_secs = 30\n";
        let c: TenantConfig = toml::from_str(toml).expect("tenant");
        assert_eq!(
            (
                c.time_zone.as_str(),
                c.stats.service_level_secs,
                c.stats.short_abandon_secs
            ),
            ("Asia/Kolkata", 30, 5)
        );
        assert!(Directory::new(&[c]).is_ok());
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
            dir.by_api_key("demo-key").map(|(t, _)| t.name.as_str()),
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
    fn media_server_control_and_next_state_are_options_checked_by_name() {
        let t = Tenant::from_config(&demo_tenant()).expect("valid");
        assert_eq!(t.media_servers[0].control, MediaControl::Netann);
        assert!(t.next_state_after_wrap_up());
        let mut c = demo_tenant();
        c.media_servers[0]
            .options
            .insert("control".into(), "msml".into());
        c.options.insert("next-state".into(), "after-call".into());
        let t = Tenant::from_config(&c).expect("valid");
        assert_eq!(t.media_servers[0].control, MediaControl::Msml);
        assert!(!t.next_state_after_wrap_up());
        let mut c = demo_tenant();
        c.media_servers[0]
            .options
            .insert("control".into(), "mscml".into());
        assert_eq!(
            invalid(c),
            (
                "media_servers[0].options.control".into(),
                "\"mscml\" is not netann or msml".into()
            )
        );
        let mut c = demo_tenant();
        c.options.insert("next-state".into(), "never".into());
        assert_eq!(invalid(c).0, "options.next-state");
    }

    #[test]
    fn the_demo_survives_toml_both_ways() {
        let text = toml::to_string(&demo_tenant()).expect("prints");
        let back: TenantConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, demo_tenant());
    }
}
