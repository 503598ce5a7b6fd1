//! The provisioning API over gRPC against a running node: a tenant built object by object
//! with the administrator key and then the tenant's own key, each change live on the node
//! (the registrar accepts a DN the moment it is created), bad input refused by field with
//! nothing written, keys that reach their own tenant only, a node without PostgreSQL that
//! serves reads and refuses writes, PostgreSQL going away and coming back, and the gRPC health
//! and reflection services generic tools rely on.

mod support;

use std::collections::HashMap;

use support::{Server, Udp, register_with, with_key};
use switchboard_proto::provisioning as pb;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

type Client = pb::provisioning_client::ProvisioningClient<Channel>;

const ADMIN: &str = "test-admin-key";

async fn client(server: &Server) -> Client {
    Client::new(support::grpc(server).await)
}

fn started_on_postgres(db: &str) -> (Server, String) {
    let url = support::postgres_db(db);
    let server = Server::start(&["--postgres", &url, "--admin-key", ADMIN]);
    (server, url)
}

/// Creates tenant `name` in domain `domain` (MD5 challenges, as the test phone answers);
/// its API key.
async fn create_tenant(api: &mut Client, name: &str, domain: &str) -> String {
    let created = api
        .create_tenant(with_key(
            ADMIN,
            pb::CreateTenantRequest {
                tenant: Some(pb::Tenant {
                    name: name.into(),
                    domain: domain.into(),
                    digest: vec!["MD5".into()],
                    wrap_up_secs: 10,
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("tenant created")
        .into_inner();
    let tenant = created.tenant.expect("tenant");
    assert_eq!((tenant.name.as_str(), tenant.version), (name, 1));
    assert!(created.api_key.starts_with("sbk_"), "{}", created.api_key);
    created.api_key
}

fn extension(number: &str, password: &str) -> pb::Dn {
    pb::Dn {
        number: number.into(),
        password: password.into(),
        r#type: pb::DnType::Extension.into(),
        ..Default::default()
    }
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, says: &[&str]) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    for words in says {
        assert!(
            status.message().contains(words),
            "{words:?} not in {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_provisioned_over_grpc_is_live_on_the_node() {
    let (server, url) = started_on_postgres("sb_grpc_provision");
    let mut api = client(&server).await;
    let key = create_tenant(&mut api, "acme", "demo.local").await;
    let phone = Udp::new(server.sip);
    let tenant = String::new(); // the key's own tenant

    // A DN created over the API registers at once: the write returns when the node has it.
    api.create_dn(with_key(
        &key,
        pb::CreateDnRequest {
            tenant: tenant.clone(),
            dn: Some(extension("2001", "first")),
        },
    ))
    .await
    .expect("DN created");
    assert_eq!(register_with(&phone, "2001", "first", "prov-1"), 200);

    // A new password applies to the next REGISTER.
    api.update_dn(with_key(
        &key,
        pb::UpdateDnRequest {
            tenant: tenant.clone(),
            id: "2001".into(),
            dn: Some(extension("", "second")),
        },
    ))
    .await
    .expect("DN updated");
    assert_eq!(register_with(&phone, "2001", "first", "prov-2"), 401);
    assert_eq!(register_with(&phone, "2001", "second", "prov-3"), 200);

    // The rest of a small contact center, each object read back from the node's snapshot.
    for number in ["2002", "2003"] {
        api.create_dn(with_key(
            &key,
            pb::CreateDnRequest {
                tenant: tenant.clone(),
                dn: Some(extension(number, "pw")),
            },
        ))
        .await
        .expect("DN created");
    }
    for skill in ["english", "billing"] {
        api.create_skill(with_key(
            &key,
            pb::CreateSkillRequest {
                tenant: tenant.clone(),
                skill: Some(pb::Skill {
                    name: skill.into(),
                    options: HashMap::new(),
                }),
            },
        ))
        .await
        .expect("skill created");
    }
    api.create_agent_group(with_key(
        &key,
        pb::CreateAgentGroupRequest {
            tenant: tenant.clone(),
            agent_group: Some(pb::AgentGroup {
                name: "support".into(),
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("group created");
    api.create_place(with_key(
        &key,
        pb::CreatePlaceRequest {
            tenant: tenant.clone(),
            place: Some(pb::Place {
                name: "desk-1".into(),
                dns: vec!["2001".into()],
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("place created");
    let agent = pb::Agent {
        id: "alice".into(),
        name: "Alice".into(),
        login_code: "7001".into(),
        place: "desk-1".into(),
        skills: HashMap::from([("english".into(), 8), ("billing".into(), 3)]),
        groups: vec!["support".into()],
        wrap_up_secs: Some(30),
        options: HashMap::from([("team".into(), "north".into())]),
    };
    api.create_agent(with_key(
        &key,
        pb::CreateAgentRequest {
            tenant: tenant.clone(),
            agent: Some(agent.clone()),
        },
    ))
    .await
    .expect("agent created");
    let read = api
        .get_agent(with_key(
            &key,
            pb::GetRequest {
                tenant: tenant.clone(),
                id: "alice".into(),
            },
        ))
        .await
        .expect("agent read")
        .into_inner();
    assert_eq!(read, agent);
    // A place agents sit at changes in place.
    let place = api
        .update_place(with_key(
            &key,
            pb::UpdatePlaceRequest {
                tenant: tenant.clone(),
                id: "desk-1".into(),
                place: Some(pb::Place {
                    name: "desk-1".into(),
                    dns: vec!["2001".into(), "2002".into()],
                    options: HashMap::new(),
                }),
            },
        ))
        .await
        .expect("place updated")
        .into_inner();
    assert_eq!(place.dns, ["2001", "2002"]);

    api.create_trunk(with_key(
        &key,
        pb::CreateTrunkRequest {
            tenant: tenant.clone(),
            trunk: Some(pb::Trunk {
                name: "carrier".into(),
                inbound: vec!["192.0.2.0/24".into()],
                gateway: "192.0.2.10:5060".into(),
                caller_id: vec![pb::Rewrite {
                    pattern: r"^(\d{4})$".into(),
                    rewrite: "+4930555$1".into(),
                }],
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("trunk created");
    api.create_media_server(with_key(
        &key,
        pb::CreateMediaServerRequest {
            tenant: tenant.clone(),
            media_server: Some(pb::MediaServer {
                name: "gvp".into(),
                address: "192.0.2.20:5090".into(),
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("media server created");
    api.create_queue(with_key(
        &key,
        pb::CreateQueueRequest {
            tenant: tenant.clone(),
            queue: Some(pb::Queue {
                name: "support".into(),
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("queue created");
    let strategy = api
        .create_strategy(with_key(
            &key,
            pb::CreateStrategyRequest {
                tenant: tenant.clone(),
                strategy: Some(pb::Strategy {
                    name: "support".into(),
                    document: "play music file:///hold.wav\nqueue support target \"english > 0\"\n"
                        .into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("strategy created")
        .into_inner();
    assert_eq!(strategy.version, 1);
    let strategy = api
        .update_strategy(with_key(
            &key,
            pb::UpdateStrategyRequest {
                tenant: tenant.clone(),
                id: "support".into(),
                strategy: Some(pb::Strategy {
                    document: "queue support target \"english > 0\"\n  after 30s target \"group:support\"\n".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("strategy version 2")
        .into_inner();
    assert_eq!(strategy.version, 2);
    api.create_routing_point(with_key(
        &key,
        pb::CreateRoutingPointRequest {
            tenant: tenant.clone(),
            routing_point: Some(pb::RoutingPoint {
                number: "5000".into(),
                strategy: "support".into(),
                default_destination: "extension:2001".into(),
                timeout_secs: Some(60),
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("routing point created");
    for (pattern, destination, index) in [
        (r"^(2\d{3})$", "extension:$1", None),
        (r"^9(\d+)$", "trunk:carrier", None),
        (r"^\+18005550100$", "routing-point:5000", Some(0)),
    ] {
        api.create_dial_plan_rule(with_key(
            &key,
            pb::CreateDialPlanRuleRequest {
                tenant: tenant.clone(),
                rule: Some(pb::DialPlanRule {
                    pattern: pattern.into(),
                    destination: destination.into(),
                    rewrite: if destination == "trunk:carrier" {
                        "$1".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                }),
                index,
            },
        ))
        .await
        .expect("rule created");
    }
    let rules = api
        .list_dial_plan_rules(with_key(
            &key,
            pb::ListRequest {
                tenant: tenant.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("rules")
        .into_inner()
        .rules;
    let order: Vec<(u32, &str)> = rules
        .iter()
        .map(|r| (r.index, r.destination.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (0, "routing-point:5000"),
            (1, "extension:$1"),
            (2, "trunk:carrier")
        ]
    );

    // Paged lists: two pages of DNs, in number order.
    let first = api
        .list_dns(with_key(
            &key,
            pb::ListRequest {
                tenant: tenant.clone(),
                page_size: 2,
                page_token: String::new(),
            },
        ))
        .await
        .expect("page 1")
        .into_inner();
    let numbers: Vec<&str> = first.dns.iter().map(|d| d.number.as_str()).collect();
    assert_eq!(numbers, ["2001", "2002"]);
    assert!(!first.next_page_token.is_empty());
    let second = api
        .list_dns(with_key(
            &key,
            pb::ListRequest {
                tenant: tenant.clone(),
                page_size: 2,
                page_token: first.next_page_token,
            },
        ))
        .await
        .expect("page 2")
        .into_inner();
    let numbers: Vec<&str> = second.dns.iter().map(|d| d.number.as_str()).collect();
    assert_eq!(numbers, ["2003"]);
    assert!(second.next_page_token.is_empty());

    // Deleting: a DN goes, and with it the phone's right to register.
    api.delete_dn(with_key(
        &key,
        pb::DeleteRequest {
            tenant: tenant.clone(),
            id: "2003".into(),
        },
    ))
    .await
    .expect("DN deleted");
    assert_eq!(register_with(&phone, "2003", "pw", "prov-4"), 401);

    // Everything went to PostgreSQL: the export holds it, as a TOML tenant.
    let (status, exported, err) =
        support::switchboard(&["config", "export", "--tenant", "acme", "--postgres", &url]);
    assert!(status.success(), "{err}");
    for words in [
        "login_code = \"7001\"",
        "gateway = \"192.0.2.10:5060\"",
        "after 30s target",
        "routing-point:5000",
        "sha256:",
    ] {
        assert!(exported.contains(words), "{words:?} not in\n{exported}");
    }
    let tenant_now = api
        .get_tenant(with_key(&key, pb::GetTenantRequest::default()))
        .await
        .expect("tenant")
        .into_inner();
    // One version per committed change: the tenant (1), 3 DNs and an update (5), 2 skills, a
    // group, a place, an agent, the place's update, a trunk, a media server, a queue (14), 2
    // strategy versions, a routing point, 3 rules (20) and a delete.
    assert_eq!(tenant_now.version, 21);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_by_field_and_writes_nothing() {
    let (server, _url) = started_on_postgres("sb_grpc_bad_input");
    let mut api = client(&server).await;
    let key = create_tenant(&mut api, "acme", "acme.example").await;
    api.create_dn(with_key(
        &key,
        pb::CreateDnRequest {
            tenant: "acme".into(),
            dn: Some(extension("2001", "pw")),
        },
    ))
    .await
    .expect("DN created");
    let reader = api.clone();
    let version = || {
        let mut api = reader.clone();
        let key = key.clone();
        async move {
            api.get_tenant(with_key(&key, pb::GetTenantRequest::default()))
                .await
                .expect("tenant")
                .into_inner()
                .version
        }
    };
    let before = version().await;

    // A number already taken, by a DN or as a routing point's.
    let twice = api
        .create_dn(with_key(
            &key,
            pb::CreateDnRequest {
                tenant: String::new(),
                dn: Some(extension("2001", "other")),
            },
        ))
        .await;
    assert_status(twice, Code::AlreadyExists, &["DN \"2001\""]);
    let clash = api
        .create_routing_point(with_key(
            &key,
            pb::CreateRoutingPointRequest {
                tenant: String::new(),
                routing_point: Some(pb::RoutingPoint {
                    number: "2001".into(),
                    strategy: "none".into(),
                    default_destination: "reject:486".into(),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_status(clash, Code::InvalidArgument, &["routing_point.number"]);
    // An unknown reference.
    let unknown_skill = api
        .create_agent(with_key(
            &key,
            pb::CreateAgentRequest {
                tenant: String::new(),
                agent: Some(pb::Agent {
                    id: "bob".into(),
                    login_code: "7002".into(),
                    skills: HashMap::from([("french".into(), 3)]),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_status(
        unknown_skill,
        Code::InvalidArgument,
        &["agent.skills.french", "unknown skill"],
    );
    // An invalid pattern and a destination that does not exist.
    let pattern = api
        .create_dial_plan_rule(with_key(
            &key,
            pb::CreateDialPlanRuleRequest {
                tenant: String::new(),
                rule: Some(pb::DialPlanRule {
                    pattern: "^(2\\d{3}$".into(),
                    destination: "extension:2001".into(),
                    ..Default::default()
                }),
                index: None,
            },
        ))
        .await;
    assert_status(pattern, Code::InvalidArgument, &["rule.pattern"]);
    let nowhere = api
        .create_dial_plan_rule(with_key(
            &key,
            pb::CreateDialPlanRuleRequest {
                tenant: String::new(),
                rule: Some(pb::DialPlanRule {
                    pattern: "^9(\\d+)$".into(),
                    destination: "trunk:nobody".into(),
                    ..Default::default()
                }),
                index: None,
            },
        ))
        .await;
    assert_status(nowhere, Code::InvalidArgument, &["rule.destination"]);
    // Bad addresses.
    let gateway = api
        .create_trunk(with_key(
            &key,
            pb::CreateTrunkRequest {
                tenant: String::new(),
                trunk: Some(pb::Trunk {
                    name: "carrier".into(),
                    inbound: vec!["192.0.2.0/24".into(), "10.0.0.0/33".into()],
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_status(gateway, Code::InvalidArgument, &["trunk.inbound[1]"]);
    let media = api
        .create_media_server(with_key(
            &key,
            pb::CreateMediaServerRequest {
                tenant: String::new(),
                media_server: Some(pb::MediaServer {
                    name: "gvp".into(),
                    address: "gvp.example".into(),
                    options: HashMap::new(),
                }),
            },
        ))
        .await;
    assert_status(media, Code::InvalidArgument, &["media_server.address"]);
    // Strategies that loop without waiting, or name a queue or skill the tenant lacks.
    api.create_queue(with_key(
        &key,
        pb::CreateQueueRequest {
            tenant: String::new(),
            queue: Some(pb::Queue {
                name: "support".into(),
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("queue created");
    let before = before + 1;
    for (document, says) in [
        (
            "label top\nset tried \"yes\"\ngoto top\n",
            "line 2: the strategy loops here without waiting",
        ),
        (
            "queue sales target \"english > 0\"\n",
            "line 1: unknown queue \"sales\"",
        ),
        (
            "\nqueue support target \"french > 0\"\n",
            "line 2: unknown skill \"french\"",
        ),
    ] {
        let refused = api
            .create_strategy(with_key(
                &key,
                pb::CreateStrategyRequest {
                    tenant: String::new(),
                    strategy: Some(pb::Strategy {
                        name: "bad".into(),
                        document: document.into(),
                        ..Default::default()
                    }),
                },
            ))
            .await;
        assert_status(refused, Code::InvalidArgument, &["strategy.document", says]);
    }
    // A tenant setting.
    let digest = api
        .update_tenant(with_key(
            &key,
            pb::UpdateTenantRequest {
                tenant: Some(pb::Tenant {
                    domain: "acme.example".into(),
                    digest: vec!["SHA-512".into()],
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_status(digest, Code::InvalidArgument, &["tenant.digest", "SHA-512"]);
    // A key cannot change in an update.
    let renamed = api
        .update_dn(with_key(
            &key,
            pb::UpdateDnRequest {
                tenant: String::new(),
                id: "2001".into(),
                dn: Some(extension("2009", "pw")),
            },
        ))
        .await;
    assert_status(renamed, Code::InvalidArgument, &["dn.number"]);
    // Deleting what others use is refused, naming them.
    api.create_place(with_key(
        &key,
        pb::CreatePlaceRequest {
            tenant: String::new(),
            place: Some(pb::Place {
                name: "desk".into(),
                dns: vec!["2001".into()],
                options: HashMap::new(),
            }),
        },
    ))
    .await
    .expect("place");
    let before = before + 1;
    let in_use = api
        .delete_dn(with_key(
            &key,
            pb::DeleteRequest {
                tenant: String::new(),
                id: "2001".into(),
            },
        ))
        .await;
    assert_status(in_use, Code::FailedPrecondition, &["places[0] (\"desk\")"]);
    let missing = api
        .get_dn(with_key(
            &key,
            pb::GetRequest {
                tenant: String::new(),
                id: "2999".into(),
            },
        ))
        .await;
    assert_status(missing, Code::NotFound, &["2999"]);

    // None of the refused writes was committed, even in part.
    assert_eq!(version().await, before);
    let dns = api
        .list_dns(with_key(&key, pb::ListRequest::default()))
        .await
        .expect("dns")
        .into_inner()
        .dns;
    assert_eq!(dns, [extension("2001", "pw")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_key_reaches_its_own_tenant_only() {
    let (server, _url) = started_on_postgres("sb_grpc_tenants");
    let mut api = client(&server).await;
    let key_a = create_tenant(&mut api, "alpha", "alpha.example").await;
    let key_b = create_tenant(&mut api, "beta", "beta.example").await;
    api.create_dn(with_key(
        &key_b,
        pb::CreateDnRequest {
            tenant: "beta".into(),
            dn: Some(extension("3001", "beta-secret")),
        },
    ))
    .await
    .expect("beta's DN");

    // A's key on B's objects: refused, and nothing of B's comes back.
    let read = api
        .get_dn(with_key(
            &key_a,
            pb::GetRequest {
                tenant: "beta".into(),
                id: "3001".into(),
            },
        ))
        .await;
    assert_status(read, Code::PermissionDenied, &["\"alpha\" only"]);
    let listed = api
        .list_dns(with_key(
            &key_a,
            pb::ListRequest {
                tenant: "beta".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_status(listed, Code::PermissionDenied, &[]);
    let write = api
        .delete_dn(with_key(
            &key_a,
            pb::DeleteRequest {
                tenant: "beta".into(),
                id: "3001".into(),
            },
        ))
        .await;
    assert_status(write, Code::PermissionDenied, &[]);
    // A's own view has no trace of B.
    let own = api
        .get_dn(with_key(
            &key_a,
            pb::GetRequest {
                tenant: String::new(),
                id: "3001".into(),
            },
        ))
        .await;
    assert_status(own, Code::NotFound, &[]);
    let tenants = api
        .list_tenants(with_key(&key_a, pb::ListRequest::default()))
        .await
        .expect("own tenants")
        .into_inner()
        .tenants;
    let names: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["alpha"]);
    // Tenants are the administrator's.
    let create = api
        .create_tenant(with_key(
            &key_a,
            pb::CreateTenantRequest {
                tenant: Some(pb::Tenant {
                    name: "gamma".into(),
                    domain: "gamma.example".into(),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_status(create, Code::PermissionDenied, &["administrator"]);
    // The administrator cannot take a name or a domain twice either.
    for (name, domain, code, says) in [
        (
            "alpha",
            "other.example",
            Code::AlreadyExists,
            "tenant \"alpha\"",
        ),
        (
            "gamma",
            "beta.example",
            Code::InvalidArgument,
            "tenant.domain",
        ),
        (
            "gam ma",
            "gamma.example",
            Code::InvalidArgument,
            "tenant.name",
        ),
    ] {
        let taken = api
            .create_tenant(with_key(
                ADMIN,
                pb::CreateTenantRequest {
                    tenant: Some(pb::Tenant {
                        name: name.into(),
                        domain: domain.into(),
                        ..Default::default()
                    }),
                },
            ))
            .await;
        assert_status(taken, code, &[says]);
    }
    let delete = api
        .delete_tenant(with_key(
            &key_a,
            pb::DeleteTenantRequest {
                tenant: "beta".into(),
            },
        ))
        .await;
    assert_status(delete, Code::PermissionDenied, &[]);
    // No key, or one that is not a key.
    let anonymous = api
        .get_tenant(Request::new(pb::GetTenantRequest {
            tenant: "beta".into(),
        }))
        .await;
    assert_status(anonymous, Code::Unauthenticated, &["authorization"]);
    let forged = api
        .get_tenant(with_key(
            "sbk_00000000",
            pb::GetTenantRequest {
                tenant: "beta".into(),
            },
        ))
        .await;
    assert_status(forged, Code::Unauthenticated, &[]);
    // The scheme is case-insensitive.
    let mut lower = Request::new(pb::GetTenantRequest::default());
    lower.metadata_mut().insert(
        "authorization",
        format!("bearer {key_a}").parse().expect("ascii"),
    );
    let own = api.get_tenant(lower).await.expect("lowercase scheme");
    assert_eq!(own.into_inner().name, "alpha");

    // A second key for B works; deleted, it stops working.
    let extra = api
        .create_api_key(with_key(
            &key_b,
            pb::CreateApiKeyRequest {
                tenant: String::new(),
                api_key: Some(pb::ApiKey {
                    name: "desk-app".into(),
                    scope: String::new(),
                }),
            },
        ))
        .await
        .expect("key created")
        .into_inner();
    let dn = api
        .get_dn(with_key(
            &extra.secret,
            pb::GetRequest {
                tenant: String::new(),
                id: "3001".into(),
            },
        ))
        .await
        .expect("the new key reads beta")
        .into_inner();
    assert_eq!(dn.password, "beta-secret");
    api.delete_api_key(with_key(
        &key_b,
        pb::DeleteRequest {
            tenant: String::new(),
            id: "desk-app".into(),
        },
    ))
    .await
    .expect("key deleted");
    let revoked = api
        .get_tenant(with_key(&extra.secret, pb::GetTenantRequest::default()))
        .await;
    assert_status(revoked, Code::Unauthenticated, &[]);

    // A key that reads statistics only (a wallboard's) reaches nothing else; a scope that
    // is neither is refused.
    let create = |name: &str, scope: &str| {
        with_key(
            &key_b,
            pb::CreateApiKeyRequest {
                tenant: String::new(),
                api_key: Some(pb::ApiKey {
                    name: name.into(),
                    scope: scope.into(),
                }),
            },
        )
    };
    let wall = api
        .create_api_key(create("wall", "stats"))
        .await
        .expect("a stats key")
        .into_inner();
    assert_eq!(wall.api_key.expect("key").scope, "stats");
    let refused = api
        .get_tenant(with_key(&wall.secret, pb::GetTenantRequest::default()))
        .await;
    assert_status(refused, Code::PermissionDenied, &["statistics only"]);
    let wrong = api.create_api_key(create("boss", "admin")).await;
    assert_status(wrong, Code::InvalidArgument, &["scope"]);
    let listed = api
        .list_api_keys(with_key(&key_b, pb::ListRequest::default()))
        .await
        .expect("keys")
        .into_inner();
    let scopes: Vec<(&str, &str)> = listed
        .api_keys
        .iter()
        .map(|k| (k.name.as_str(), k.scope.as_str()))
        .collect();
    assert_eq!(scopes, [("default", "full"), ("wall", "stats")]);

    // The administrator reaches both, and deletes one.
    api.delete_tenant(with_key(
        ADMIN,
        pb::DeleteTenantRequest {
            tenant: "beta".into(),
        },
    ))
    .await
    .expect("beta deleted");
    let gone = api
        .get_tenant(with_key(&key_b, pb::GetTenantRequest::default()))
        .await;
    assert_status(gone, Code::Unauthenticated, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_configuration_is_read_only() {
    let server = Server::start(&["--admin-key", ADMIN]);
    let mut api = client(&server).await;
    // The demo tenant's key reads it.
    let dn = api
        .get_dn(with_key(
            "demo-key",
            pb::GetRequest {
                tenant: "demo".into(),
                id: "1001".into(),
            },
        ))
        .await
        .expect("demo DN")
        .into_inner();
    assert_eq!(dn.password, "demo1001");
    let agents = api
        .list_agents(with_key(
            "demo-key",
            pb::ListRequest {
                page_size: 5,
                ..Default::default()
            },
        ))
        .await
        .expect("agents")
        .into_inner();
    assert_eq!(agents.agents.len(), 5);
    assert_eq!(agents.agents[0].id, "a1001");
    // Writes say what they need.
    let write = api
        .create_dn(with_key(
            "demo-key",
            pb::CreateDnRequest {
                tenant: String::new(),
                dn: Some(extension("1099", "pw")),
            },
        ))
        .await;
    assert_status(write, Code::FailedPrecondition, &["PostgreSQL"]);
    let tenant = api
        .create_tenant(with_key(
            ADMIN,
            pb::CreateTenantRequest {
                tenant: Some(pb::Tenant {
                    name: "acme".into(),
                    domain: "acme.example".into(),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_status(tenant, Code::FailedPrecondition, &["PostgreSQL"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_wait_out_a_postgresql_outage_as_unavailable() {
    let url = support::postgres_db("sb_grpc_outage");
    let relay = support::Relay::start(support::postgres_addr(&url));
    let server = Server::start(&[
        "--postgres",
        &support::via(&url, relay.addr),
        "--admin-key",
        ADMIN,
    ]);
    let mut api = client(&server).await;
    let key = create_tenant(&mut api, "acme", "demo.local").await;
    let writer = api.clone();
    let create = |number: &'static str| {
        let mut api = writer.clone();
        let key = key.clone();
        async move {
            api.create_dn(with_key(
                &key,
                pb::CreateDnRequest {
                    tenant: String::new(),
                    dn: Some(extension(number, "pw")),
                },
            ))
            .await
        }
    };
    create("2001").await.expect("DN created");

    relay.cut();
    assert_status(create("2002").await, Code::Unavailable, &["postgresql"]);
    // Reads still come from the node's snapshot.
    let dn = api
        .get_dn(with_key(
            &key,
            pb::GetRequest {
                tenant: String::new(),
                id: "2001".into(),
            },
        ))
        .await
        .expect("read during the outage");
    assert_eq!(dn.into_inner().number, "2001");

    // Back: the next write goes through without anyone restarting anything.
    relay.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match create("2002").await {
            Ok(_) => break,
            Err(s) if s.code() == Code::Unavailable => {
                assert!(std::time::Instant::now() < deadline, "{s:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    let phone = Udp::new(server.sip);
    let status = tokio::task::spawn_blocking(move || register_with(&phone, "2002", "pw", "out-1"))
        .await
        .expect("register");
    assert_eq!(status, 200, "{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_grpc_tools_find_health_and_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let server = Server::start(&[]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC reachable");
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "switchboard.provisioning.v1.Provisioning"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }

    // Reflection, both versions: the services listed, and the API's file served.
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let ask = |request: MessageRequest| {
            tokio_stream_once(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            })
        };
        let mut answers = reflection
            .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
            .await
            .expect("reflection v1")
            .into_inner();
        let answer: ServerReflectionResponse = answers.message().await.expect("ok").expect("one");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("{answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"switchboard.provisioning.v1.Provisioning".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
        let mut answers = reflection
            .server_reflection_info(ask(MessageRequest::FileContainingSymbol(
                "switchboard.provisioning.v1.Provisioning".into(),
            )))
            .await
            .expect("reflection v1")
            .into_inner();
        let answer = answers.message().await.expect("ok").expect("one");
        assert!(
            matches!(
                answer.message_response,
                Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
            ),
            "{answer:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(channel);
        let mut answers = reflection
            .server_reflection_info(tokio_stream_once(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let answer = answers.message().await.expect("ok").expect("one");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("{answer:?}");
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "switchboard.provisioning.v1.Provisioning")
        );
    }
}

/// A request stream of one message.
fn tokio_stream_once<T: Send + 'static>(
    message: T,
) -> impl tonic::codegen::tokio_stream::Stream<Item = T> + Send + 'static {
    tonic::codegen::tokio_stream::iter([message])
}
