//! The configuration store against a real PostgreSQL (the harness's private cluster; each test
//! in a database of its own): what is imported is what is loaded, object for object and in
//! order; a re-import raises the version; an invalid tenant writes nothing; a strategy the
//! validator refuses is never saved; writers of one tenant queue and none is lost.

mod support;

use std::sync::Arc;
use switchboard_actors::Error;
use switchboard_actors::tenant::postgres::ConfigStore;

use switchboard_actors::tenant::provision::{DNS, ProvisionError};
use switchboard_actors::tenant::{
    DnConfig, StrategyConfig, TenantConfig, demo_tenant, hash_api_key,
};

fn run<F: Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(body)
}

/// A tenant that uses every kind of object and option.
fn rich_tenant() -> TenantConfig {
    let mut c = demo_tenant();
    c.name = "acme".into();
    c.domain = "acme.example".into();
    c.realm = Some("acme".into());
    c.digest = vec!["SHA-256".into(), "MD5".into()];
    c.wrap_up_secs = 30;
    c.api_keys[0].hash = hash_api_key("acme-key");
    c.options.insert("timezone".into(), "Europe/Berlin".into());
    c.time_zone = "Europe/Berlin".into();
    c.stats.service_level_secs = 30;
    c.stats.short_abandon_secs = 8;
    c.api_keys[1].hash = hash_api_key("acme-wallboard-key");
    c.dns[0].digest = Some(vec!["MD5".into()]);
    c.dns[1].authenticate = Some(false);
    c.dns[2].options.insert("desk".into(), "2F".into());
    c.agents[0].wrap_up_secs = Some(10);
    c.agents[0].name = "Jane Doe".into();
    c.trunks[0]
        .caller_id
        .push(switchboard_actors::tenant::RewriteConfig {
            pattern: r"^(\d+)$".into(),
            rewrite: "+49$1".into(),
        });
    c.strategies
        .push(switchboard_actors::tenant::StrategyConfig {
            name: "support".into(),
            version: 2,
            document: "# second version\nroute dn 1002\n".into(),
            options: Default::default(),
        });
    c
}

#[test]
fn what_is_imported_is_what_is_loaded() {
    let url = support::postgres_db("sb_config_roundtrip");
    run(async {
        let mut store = ConfigStore::connect(&url)
            .await
            .expect("connect and migrate");
        let acme = rich_tenant();
        assert_eq!(store.import(&demo_tenant()).await.expect("demo"), 1);
        assert_eq!(store.import(&acme).await.expect("acme"), 1);

        let loaded = store
            .load("acme")
            .await
            .expect("load")
            .expect("acme is there");
        assert_eq!(loaded.config, acme);
        assert_eq!(loaded.version, 1);
        let all = store.load_all().await.expect("all");
        let names: Vec<_> = all.iter().map(|v| v.config.name.as_str()).collect();
        assert_eq!(names, ["acme", "demo"]);
        assert_eq!(all[1].config, demo_tenant());

        // A change is a new version of the whole tenant.
        let mut changed = acme.clone();
        changed.dns.truncate(5);
        changed.places.truncate(5);
        changed.agents.truncate(5);
        changed.dial_plan.remove(1);
        assert_eq!(store.import(&changed).await.expect("re-import"), 2);
        let loaded = store.load("acme").await.expect("load").expect("acme");
        assert_eq!((loaded.config, loaded.version), (changed, 2));

        // Connecting again finds the schema in place.
        let mut again = ConfigStore::connect(&url).await.expect("reconnect");
        assert!(again.delete("acme").await.expect("delete"));
        assert!(again.load("acme").await.expect("load").is_none());
        assert!(!again.delete("acme").await.expect("delete twice"));
    });
}

#[test]
fn an_invalid_tenant_writes_nothing() {
    let url = support::postgres_db("sb_config_invalid");
    run(async {
        let mut store = ConfigStore::connect(&url).await.expect("connect");
        store.import(&demo_tenant()).await.expect("demo");
        let mut broken = demo_tenant();
        broken.dns.truncate(3);
        broken.agents[7].skills.insert("french".into(), 2);
        let e = store.import(&broken).await.expect_err("refused");
        let Error::Config(e) = e else {
            panic!("a configuration error, got {e}");
        };
        assert_eq!(e.field(), "places[3].dns[0]");
        let kept = store.load("demo").await.expect("load").expect("demo");
        assert_eq!((kept.config, kept.version), (demo_tenant(), 1));
    });
}

/// A site's own rule beside the strategy language's checks (which every save runs): here,
/// one that refuses any document holding `goto`.
fn no_goto(s: &StrategyConfig) -> Result<(), String> {
    match s.document.find("goto") {
        Some(at) => Err(format!(
            "line {}: goto is not a step",
            s.document[..at].lines().count()
        )),
        None => Ok(()),
    }
}

#[test]
fn a_strategy_the_validator_refuses_is_not_saved() {
    let url = support::postgres_db("sb_config_validator");
    run(async {
        let mut store = ConfigStore::connect(&url).await.expect("connect");
        store.set_strategy_validator(Arc::new(no_goto));
        store.import(&demo_tenant()).await.expect("demo");

        // A new version through the provisioning path.
        let bad = StrategyConfig {
            name: "support".into(),
            version: 0,
            document: "label top\nwait 5s\ngoto top\n".into(),
            options: Default::default(),
        };
        let e = store
            .save_strategy("demo", None, bad.clone(), false)
            .await
            .expect_err("refused");
        let ProvisionError::Invalid { field, problem } = e else {
            panic!("invalid, got {e:?}");
        };
        assert_eq!(field, "strategy.document");
        assert!(problem.contains("goto is not a step"), "{problem}");
        let kept = store.load("demo").await.expect("load").expect("demo");
        assert_eq!((kept.config, kept.version), (demo_tenant(), 1));

        // A whole tenant imported with one.
        let mut tenant = demo_tenant();
        tenant.strategies.push(StrategyConfig { version: 2, ..bad });
        let e = store.import(&tenant).await.expect_err("refused");
        let Error::Config(e) = e else {
            panic!("a configuration error, got {e}");
        };
        assert_eq!(e.field(), "strategies[1].document");
        assert_eq!(
            store
                .load("demo")
                .await
                .expect("load")
                .expect("demo")
                .version,
            1
        );

        // What it accepts is saved as the next version.
        let good = StrategyConfig {
            name: "support".into(),
            version: 0,
            document: "play music file:///hold.wav\nqueue support target \"english > 0\"\n".into(),
            options: Default::default(),
        };
        let saved = store
            .save_strategy("demo", None, good, false)
            .await
            .expect("saved");
        assert_eq!(saved.version, 2);
        let versions: Vec<u32> = saved.config.strategies.iter().map(|s| s.version).collect();
        assert_eq!(versions, [1, 2]);
    });
}

#[test]
fn writers_of_one_tenant_queue_and_none_is_lost() {
    let url = support::postgres_db("sb_config_writers");
    run(async {
        let mut first = ConfigStore::connect(&url).await.expect("connect");
        first.import(&demo_tenant()).await.expect("demo");
        // Two connections (two nodes) adding DNs at the same time.
        let mut tasks = Vec::new();
        for writer in 0..2 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut store = ConfigStore::connect(&url).await.expect("connect");
                for i in 0..10 {
                    let dn = DnConfig {
                        number: format!("3{writer}{i:02}"),
                        kind: Default::default(),
                        password: "pw".into(),
                        digest: None,
                        authenticate: None,
                        options: Default::default(),
                    };
                    store.create("demo", None, &DNS, dn).await.expect("created");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
        let loaded = first.load("demo").await.expect("load").expect("demo");
        assert_eq!(loaded.version, 21);
        assert_eq!(loaded.config.dns.len(), 40);
    });
}
