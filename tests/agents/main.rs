//! Agent desktops over gRPC against a running node, GWS played by a tonic client: an agent's
//! day with a call delivered to its phone, seen in order on the event stream and in the Redis
//! streams; requests the state does not allow, refused with FAILED_PRECONDITION and an
//! EventError and nothing changed; unknown agents, other tenants' keys; a phone that goes
//! away; a restart that keeps agents logged in; a desktop that resumes its stream.

#[path = "../support/mod.rs"]
mod support;

mod calls;
mod monitor;
mod monitor_sipp;
mod next_state;
mod recording;

use std::time::Duration;

use support::desktop::{
    Seen, agent_of, answer_byes, answer_invites, call_of, follow, kinds, quiet, take,
};
use support::peer::{Peer, answered_call, raw_phone, ringing_call, sbc_in_dialog, sdp};
use support::{DEMO_KEY, Server, agent, log_in, login, with_key};
use switchboard_actors::tenant::{ApiKeyConfig, KeyScope, TenantConfig, demo_tenant, hash_api_key};
use switchboard_proto::events::Payload;
use switchboard_proto::voice as pb;
use switchboard_sip::Method;
use tonic::transport::Channel;
use tonic::{Code, Request};

type Agents = pb::agents_client::AgentsClient<Channel>;
type Events = pb::events_client::EventsClient<Channel>;
type Calls = pb::calls_client::CallsClient<Channel>;

const ACME_KEY: &str = "acme-key";

/// The demo tenant with `wrap_up` seconds of after-call work, and a tenant `acme` beside it
/// (the demo's DNs and agents under its own domain and key).
fn config(wrap_up: u32, extra: &str) -> String {
    config_with(wrap_up, extra, |_| {})
}

/// As [`config`], the demo tenant changed by `change` besides.
fn config_with(wrap_up: u32, extra: &str, change: impl FnOnce(&mut TenantConfig)) -> String {
    let mut demo = demo_tenant();
    demo.wrap_up_secs = wrap_up;
    change(&mut demo);
    let mut acme = demo_tenant();
    acme.name = "acme".into();
    acme.domain = "acme.local".into();
    acme.trunks.clear();
    acme.dial_plan
        .retain(|r| !r.destination.starts_with("trunk:"));
    acme.api_keys = vec![ApiKeyConfig {
        name: "acme".into(),
        hash: hash_api_key(ACME_KEY),
        scope: KeyScope::Full,
    }];
    let tenants = support::tenants_toml(&[&demo, &acme]);
    format!("{extra}\n{tenants}")
}

/// A node on the harness's Redis database `db`, run with `config`, and a desktop's clients.
struct Desk {
    server: Server,
    channel: Channel,
    agents: Agents,
    calls: Calls,
}

async fn desk(db: u8, config: &str) -> Desk {
    let url = support::redis_db(db);
    let server = Server::start_with_config(Some(config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    Desk {
        agents: Agents::new(channel.clone()),
        calls: Calls::new(channel.clone()),
        server,
        channel,
    }
}

/// One event of the stream, as (which change, kind, cursor).
fn stream_kinds(conn: &mut redis::Connection, stream: &str) -> Vec<String> {
    support::stream_entries(conn, stream)
        .into_iter()
        .map(|f| f["kind"].clone())
        .collect()
}
async fn state(agents: &mut Agents, key: &str, id: &str) -> String {
    let status = agents
        .get_agent(with_key(key, agent(id, "")))
        .await
        .expect("get agent")
        .into_inner();
    status.state.expect("a state").state
}

/// An agent's day over gRPC, GWS played by a tonic client: a1003 logs in and goes Ready, a
/// carrier's call reaches its phone and is answered; a1003 holds it, retrieves it, attaches
/// data, consults a1005 and completes the transfer to it; a1005, who sees the data, consults
/// a1007 and makes a conference of the three (through the media server), then lets a1007 go
/// and releases the call; each agent's wrap-up runs out; everyone logs out. The tenant's event stream holds exactly
/// the merged sequence written out below, and the Redis streams their parts in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_day_reaches_the_stream_and_redis_in_order() {
    let url = support::redis_db(17);
    let config = config_with(2, "", |demo| {
        // a1007's own wrap-up: shorter than the tenant's.
        demo.agents[6].wrap_up_secs = Some(1);
    });
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let mut calls = Calls::new(channel.clone());
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let first = raw_phone(&server, "1003");
    let second = raw_phone(&server, "1005");
    let third = raw_phone(&server, "1007");
    let media = Peer::on(
        std::net::UdpSocket::bind("127.0.0.3:5090").expect("the media server's address"),
        &server,
    );
    let mut expected: Vec<&str> = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    // Takes the next events and checks them against what the day expects so far.
    macro_rules! expect {
        ($($kind:expr),+ $(,)?) => {{
            let kinds_now = [$($kind),+];
            let got = take(&mut stream, kinds_now.len()).await;
            assert_eq!(kinds(&got), kinds_now, "after {:?}", kinds(&seen));
            expected.extend(kinds_now);
            seen.extend(got);
            seen[seen.len() - kinds_now.len()..].to_vec()
        }};
    }

    // Login with the agent's login code at its own place, then Ready.
    agents
        .login(with_key(
            DEMO_KEY,
            pb::LoginRequest {
                login_code: "1003".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("login");
    agents
        .ready(with_key(DEMO_KEY, agent("a1003", "r1")))
        .await
        .expect("ready");
    log_in(&mut agents, &["1005", "1007"], true).await;
    let logins = expect!(
        "agent AgentLogin",
        "agent AgentReady",
        "agent AgentLogin",
        "agent AgentReady",
        "agent AgentLogin",
        "agent AgentReady",
    );
    assert_eq!(agent_of(&logins[0]).dn, "1003");

    // A call from the carrier to a1003's DN, answered by its phone.
    let sbc = Peer::sbc(&server);
    let (_, ok) = answered_call(&server, &sbc, &first, "1003", "day-1");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "day-1", "ACK", 1, ""));
    let delivered = expect!("dn OffHook", "call Ringing", "call Established");
    let call = call_of(&delivered[1]).call_id.clone();
    let thread = call_of(&delivered[1]).thread_id.clone();
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].call_id, call);
    assert_eq!(listed[0].state, "Established");
    assert!(
        listed[0].capabilities.iter().any(|c| c == "hold"),
        "{listed:?}"
    );
    let on = |agent: &str, call: &str| pb::CallRequest {
        agent_id: agent.into(),
        call_id: call.into(),
        ..Default::default()
    };

    // Hold and retrieve from the desktop: both legs are offered their session again.
    calls
        .hold(with_key(DEMO_KEY, on("a1003", &call)))
        .await
        .expect("hold");
    for (peer, port) in [(&first, 5000), (&sbc, 4000)] {
        let reinvite = answer_invites(peer, 1, port).remove(0);
        assert!(String::from_utf8_lossy(&reinvite.body).contains("a=inactive"));
    }
    expect!("call Held");
    calls
        .retrieve(with_key(DEMO_KEY, on("a1003", &call)))
        .await
        .expect("retrieve");
    for (peer, port) in [(&first, 5000), (&sbc, 4000)] {
        let reinvite = answer_invites(peer, 1, port).remove(0);
        assert!(String::from_utf8_lossy(&reinvite.body).contains("a=sendrecv"));
    }
    expect!("call Retrieved");
    calls
        .attach_user_data(with_key(
            DEMO_KEY,
            pb::UserDataRequest {
                agent_id: "a1003".into(),
                call_id: call.clone(),
                user_data: [("case".to_owned(), "4711".to_owned())].into(),
                ..Default::default()
            },
        ))
        .await
        .expect("attach");
    let attached = expect!("call AttachedDataChanged");
    assert_eq!(call_of(&attached[0]).user_data["case"], "4711");

    // a1003 consults a1005: the call is held, a1003's phone calls 1005.
    let consult = calls
        .initiate_transfer(with_key(
            DEMO_KEY,
            pb::TransferRequest {
                agent_id: "a1003".into(),
                call_id: call.clone(),
                destination: "1005".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("initiate transfer")
        .into_inner()
        .call_id;
    answer_invites(&sbc, 1, 4000);
    let line2 = hold_then_consult(&first, 5002);
    let consulting = expect!("call Dialing", "call Held");
    first.answer(&line2, 200, Some(&sdp(5002)));
    let rung = second
        .request(Method::Invite, Duration::from_secs(5))
        .expect("a1005's phone rings");
    second.answer(&rung, 180, None);
    second.answer(&rung, 200, Some(&sdp(6000)));
    answer_invites(&first, 1, 5002);
    expect!("dn OffHook", "call Ringing", "call Established");
    assert_eq!(call_of(&consulting[0]).call_id, consult);
    assert_eq!(call_of(&consulting[0]).thread_id, thread, "one call thread");
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 2, "{listed:?}");
    for c in &listed {
        for capability in ["complete-transfer", "alternate", "reconnect"] {
            assert!(c.capabilities.iter().any(|k| k == capability), "{c:?}");
        }
    }

    // The transfer completes: the caller and a1005 are connected, a1003 leaves both calls.
    calls
        .complete_transfer(with_key(
            DEMO_KEY,
            pb::ConsultRequest {
                agent_id: "a1003".into(),
                call_id: call.clone(),
                consult_call_id: consult.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("complete transfer");
    let to_caller = answer_invites(&sbc, 1, 4000).remove(0);
    assert!(String::from_utf8_lossy(&to_caller.body).contains("m=audio 6000"));
    let to_second = answer_invites(&second, 1, 6000).remove(0);
    assert!(String::from_utf8_lossy(&to_second.body).contains("m=audio 4000"));
    answer_byes(&first, 2);
    let transferred = expect!(
        "call PartyChanged",
        // Emulated after-call work is reported before the release.
        "agent AgentNotReady",
        "dn OnHook",
        "call Released",
    );
    assert!(
        call_of(&transferred[0])
            .parties
            .iter()
            .any(|p| p.dn == "1005")
    );
    let acw = agent_of(&transferred[1]);
    assert_eq!(
        (acw.agent_id.as_str(), acw.work_mode.as_str()),
        ("a1003", "AfterCallWork")
    );
    assert_eq!(call_of(&transferred[3]).cause, "transferred");
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1005", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].call_id, call);
    assert_eq!(
        listed[0].user_data.get("case").map(String::as_str),
        Some("4711"),
        "the data followed the call to the second agent"
    );
    // a1003's wrap-up runs out.
    let wrapped = expect!("agent AgentReady");
    assert_eq!(agent_of(&wrapped[0]).agent_id, "a1003");

    // a1005 consults a1007 and makes a conference of the three.
    let consult = calls
        .initiate_transfer(with_key(
            DEMO_KEY,
            pb::TransferRequest {
                agent_id: "a1005".into(),
                call_id: call.clone(),
                destination: "1007".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("initiate transfer")
        .into_inner()
        .call_id;
    answer_invites(&sbc, 1, 4000);
    let line2 = hold_then_consult(&second, 6002);
    expect!("call Dialing", "call Held");
    second.answer(&line2, 200, Some(&sdp(6002)));
    let rung = third
        .request(Method::Invite, Duration::from_secs(5))
        .expect("a1007's phone rings");
    third.answer(&rung, 180, None);
    third.answer(&rung, 200, Some(&sdp(7000)));
    answer_invites(&second, 1, 6002);
    expect!("dn OffHook", "call Ringing", "call Established");
    calls
        .complete_conference(with_key(
            DEMO_KEY,
            pb::ConsultRequest {
                agent_id: "a1005".into(),
                call_id: call.clone(),
                consult_call_id: consult.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("complete conference");
    let joins = answer_invites(&media, 3, 8000);
    for join in &joins {
        assert!(
            join.uri
                .to_string()
                .starts_with(&format!("sip:conf={call}@")),
            "{}",
            join.uri
        );
    }
    answer_byes(&second, 1);
    for (peer, port) in [(&sbc, 4000), (&second, 6000), (&third, 7000)] {
        let reinvite = answer_invites(peer, 1, port).remove(0);
        assert!(String::from_utf8_lossy(&reinvite.body).contains("m=audio 8000"));
    }
    let conferenced = expect!("call PartyAdded", "call Released");
    let parties: Vec<&str> = call_of(&conferenced[0])
        .parties
        .iter()
        .map(|p| p.dn.as_str())
        .collect();
    assert_eq!(parties, ["+15550001111", "1005", "1007"]);
    assert_eq!(call_of(&conferenced[1]).cause, "conferenced");

    // a1005 lets a1007 go: a1007 leaves the conference and wraps up (its own 1 s).
    calls
        .delete_from_conference(with_key(
            DEMO_KEY,
            pb::PartyRequest {
                agent_id: "a1005".into(),
                call_id: call.clone(),
                dn: "1007".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete from conference");
    answer_byes(&third, 1);
    answer_byes(&media, 1);
    let deleted = expect!(
        "agent AgentNotReady",
        "dn OnHook",
        "call PartyDeleted",
        "agent AgentReady",
    );
    assert_eq!(agent_of(&deleted[0]).agent_id, "a1007");
    assert_eq!(agent_of(&deleted[3]).agent_id, "a1007");

    // a1005 releases the call: the caller, a1005 and their conference legs hang up.
    calls
        .release(with_key(DEMO_KEY, on("a1005", &call)))
        .await
        .expect("release");
    answer_byes(&sbc, 1);
    answer_byes(&second, 1);
    answer_byes(&media, 2);
    let released = expect!("agent AgentNotReady", "dn OnHook", "call Released");
    assert_eq!(agent_of(&released[0]).agent_id, "a1005");
    assert_eq!(call_of(&released[2]).user_data["case"], "4711");
    let wrapped = expect!("agent AgentReady");
    assert_eq!(agent_of(&wrapped[0]).agent_id, "a1005");
    for id in ["a1003", "a1005", "a1007"] {
        agents
            .logout(with_key(DEMO_KEY, agent(id, "")))
            .await
            .expect("logout");
    }
    expect!(
        "agent AgentLogout",
        "agent AgentLogout",
        "agent AgentLogout"
    );
    quiet(&mut stream).await;

    // Each Redis stream holds its own part of the sequence, in the same order.
    let mut conn = support::redis(&url);
    let part = |prefixes: &[&str]| -> Vec<String> {
        expected
            .iter()
            .filter(|k| prefixes.iter().any(|p| k.starts_with(p)))
            .map(|k| {
                k.split_once(' ')
                    .map(|(_, kind)| kind.to_owned())
                    .unwrap_or_default()
            })
            .collect()
    };
    assert_eq!(
        stream_kinds(&mut conn, "sb:{demo}:voice-agentstate"),
        part(&["agent ", "dn "])
    );
    assert_eq!(
        stream_kinds(&mut conn, "sb:{demo}:voice-callthread"),
        part(&["call "])
    );
    let stored: Option<String> = redis::cmd("HGET")
        .arg("sb:{demo}:agents")
        .arg("a1003")
        .query(&mut conn)
        .expect("hget");
    assert_eq!(stored, None, "a logged-out agent keeps no state");
    let counter: Option<String> = redis::cmd("GET")
        .arg(format!("sb:{{demo}}:seq:demo:{thread}"))
        .query(&mut conn)
        .expect("get");
    assert_eq!(
        counter, None,
        "the thread's numbering is forgotten with its last call"
    );
}
/// Asserts `result` failed with `code`, and returns its message.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> String {
    match result {
        Err(status) if status.code() == code => status.message().to_owned(),
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_state_does_not_allow_are_refused_and_reported_with_nothing_changed() {
    let url = support::redis_db(18);
    let server = Server::start_with_config(Some(&config(0, "")), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;

    // Ready while logged out.
    let why = refused(
        agents
            .ready(with_key(DEMO_KEY, agent("a1005", "early")))
            .await,
        Code::FailedPrecondition,
    );
    assert!(why.contains("not logged in"), "{why}");
    let seen = take(&mut stream, 1).await;
    assert_eq!(kinds(&seen), ["error EventError"]);
    let Some(pb::stream_event::Change::Error(e)) = &seen[0].3.change else {
        unreachable!("checked above");
    };
    let Some(Payload::Error(e)) = &e.payload else {
        panic!("error payload");
    };
    assert_eq!(
        (
            e.operation.as_str(),
            e.reference_id.as_str(),
            e.agent_id.as_str(),
            e.code.as_str()
        ),
        ("Ready", "early", "a1005", "FAILED_PRECONDITION")
    );
    assert_eq!(state(&mut agents, DEMO_KEY, "a1005").await, "LoggedOut");

    // A DN another agent holds.
    agents
        .login(with_key(DEMO_KEY, login("a1005", "1005")))
        .await
        .expect("login");
    let why = refused(
        agents
            .login(with_key(DEMO_KEY, login("a1007", "1005")))
            .await,
        Code::FailedPrecondition,
    );
    assert!(why.contains("in use by agent a1005"), "{why}");
    assert_eq!(state(&mut agents, DEMO_KEY, "a1007").await, "LoggedOut");
    // Logged in already, here or on another DN.
    refused(
        agents
            .login(with_key(DEMO_KEY, login("a1005", "1009")))
            .await,
        Code::FailedPrecondition,
    );
    // Ready while the DN's phone is not registered: out of service, not silently available.
    let why = refused(
        agents.ready(with_key(DEMO_KEY, agent("a1005", "r"))).await,
        Code::FailedPrecondition,
    );
    assert!(why.contains("out of service"), "{why}");
    assert_eq!(
        kinds(&take(&mut stream, 4).await),
        [
            "agent AgentLogin",
            "error EventError",
            "error EventError",
            "error EventError"
        ]
    );
    assert_eq!(state(&mut agents, DEMO_KEY, "a1005").await, "NotReady");

    // Unknown agents, DNs and queues.
    refused(
        agents.ready(with_key(DEMO_KEY, agent("nobody", "x"))).await,
        Code::NotFound,
    );
    refused(
        agents
            .get_agent(with_key(DEMO_KEY, agent("nobody", "")))
            .await,
        Code::NotFound,
    );
    refused(
        agents
            .login(with_key(DEMO_KEY, login("a1011", "4711")))
            .await,
        Code::InvalidArgument,
    );
    refused(
        agents
            .login(with_key(
                DEMO_KEY,
                pb::LoginRequest {
                    queues: vec!["nowhere".into()],
                    ..login("a1011", "1011")
                },
            ))
            .await,
        Code::InvalidArgument,
    );

    // Another tenant's key reaches its own tenant only: naming demo is refused, and its
    // own agent a1005 is not demo's.
    refused(
        agents
            .ready(with_key(
                ACME_KEY,
                pb::AgentRequest {
                    tenant: "demo".into(),
                    ..agent("a1005", "x")
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    refused(
        Events::new(channel.clone())
            .subscribe(with_key(
                ACME_KEY,
                pb::SubscribeRequest {
                    tenant: "demo".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(state(&mut agents, ACME_KEY, "a1005").await, "LoggedOut");
    agents
        .login(with_key(ACME_KEY, login("a1005", "1005")))
        .await
        .expect("acme's a1005 logs in on acme's DN 1005");
    assert_eq!(state(&mut agents, DEMO_KEY, "a1005").await, "NotReady");
    refused(
        agents.ready(Request::new(agent("a1005", "x"))).await,
        Code::Unauthenticated,
    );
    // Demo's stream saw none of it but its own refusals (unknown agent, DN, queue).
    assert_eq!(
        kinds(&take(&mut stream, 3).await),
        ["error EventError", "error EventError", "error EventError"]
    );
    quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_goes_away_puts_its_agent_out_of_service_and_a_restart_keeps_logins() {
    let url = support::redis_db(19);
    let config = config(0, "[registrar]\nsweep_interval_ms = 100\n");
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let phone = support::Udp::new(server.sip);
    assert_eq!(
        support::register_with(&phone, "1013", "demo1013", "reg-1013"),
        200
    );
    agents
        .login(with_key(DEMO_KEY, login("a1013", "1013")))
        .await
        .expect("login");
    agents
        .ready(with_key(DEMO_KEY, agent("a1013", "")))
        .await
        .expect("ready");
    let mut mine = follow(channel.clone(), DEMO_KEY, "a1013", "").await;

    // The phone unregisters: out of service, no longer offered calls.
    assert_eq!(
        support::register_for(&phone, "1013", "demo1013", "reg-1013", 3, Some(0)),
        200
    );
    assert_eq!(kinds(&take(&mut mine, 1).await), ["dn DNOutOfService"]);
    let status = agents
        .get_agent(with_key(DEMO_KEY, agent("a1013", "")))
        .await
        .expect("status")
        .into_inner();
    assert!(!status.available);
    assert!(!status.state.expect("state").in_service);

    assert_eq!(
        support::register_for(&phone, "1013", "demo1013", "reg-1013", 5, None),
        200
    );
    assert_eq!(kinds(&take(&mut mine, 1).await), ["dn DNBackInService"]);

    // A restart on the same Redis: still logged in, still Ready, the DN still taken.
    let server = server.restart(Some(&config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let status = agents
        .get_agent(with_key(DEMO_KEY, agent("a1013", "")))
        .await
        .expect("status")
        .into_inner();
    assert!(status.available, "{status:?}");
    assert_eq!(status.state.expect("state").dn, "1013");
    refused(
        agents
            .login(with_key(DEMO_KEY, login("a1015", "1013")))
            .await,
        Code::FailedPrecondition,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_resumes_its_stream_without_gaps_or_duplicates_and_a_trimmed_cursor_is_an_error()
{
    let url = support::redis_db(20);
    let config = config(0, "[events]\nstream_length = 10\n");
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let phone = support::Udp::new(server.sip);
    assert_eq!(
        support::register_with(&phone, "1017", "demo1017", "reg-1017"),
        200
    );
    let mut stream = follow(channel.clone(), DEMO_KEY, "a1017", "").await;
    agents
        .login(with_key(DEMO_KEY, login("a1017", "1017")))
        .await
        .expect("login");
    let toggle = async |agents: &mut Agents, n: usize| {
        for i in 0..n {
            if i % 2 == 0 {
                agents.ready(with_key(DEMO_KEY, agent("a1017", ""))).await
            } else {
                agents
                    .not_ready(with_key(
                        DEMO_KEY,
                        pb::NotReadyRequest {
                            agent_id: "a1017".into(),
                            reason: "break".into(),
                            ..Default::default()
                        },
                    ))
                    .await
            }
            .expect("toggle");
        }
    };
    toggle(&mut agents, 4).await;
    let seen = take(&mut stream, 3).await;
    drop(stream);
    // More happens while the desktop is away.
    toggle(&mut agents, 2).await;
    let cursor = seen[2].2.clone();
    let mut resumed = follow(channel.clone(), DEMO_KEY, "a1017", &cursor).await;
    let rest = take(&mut resumed, 4).await;
    assert_eq!(
        kinds(&rest),
        [
            "agent AgentReady",
            "agent AgentNotReady",
            "agent AgentReady",
            "agent AgentNotReady"
        ],
        "the events after the cursor, each once"
    );
    toggle(&mut agents, 1).await;
    assert_eq!(kinds(&take(&mut resumed, 1).await), ["agent AgentReady"]);
    quiet(&mut resumed).await;
    drop(resumed);

    // The stream keeps about 10 entries: once hundreds more went by, the first cursor is
    // behind what is held, and says so.
    let first = seen[0].2.clone();
    toggle(&mut agents, 300).await;
    let mut events = Events::new(channel.clone());
    let why = refused(
        events
            .subscribe(with_key(
                DEMO_KEY,
                pb::SubscribeRequest {
                    cursor: first,
                    ..Default::default()
                },
            ))
            .await,
        Code::OutOfRange,
    );
    assert!(why.contains("oldest held"), "no silent gap: {why}");
    refused(
        events
            .subscribe(with_key(
                DEMO_KEY,
                pb::SubscribeRequest {
                    cursor: "garbage".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
}

/// The agent's phone gets, on consulting, the hold of its call (a re-INVITE) and the
/// consultation call (a new INVITE) in either order: the hold is answered at once, the new
/// call returned unanswered, so that the test answers it once the hold is reported.
fn hold_then_consult(phone: &Peer, port: u16) -> switchboard_sip::Request {
    let invites: Vec<_> = (0..2)
        .map(|_| {
            phone
                .request(Method::Invite, Duration::from_secs(5))
                .expect("an INVITE")
        })
        .collect();
    assert_eq!(
        invites.iter().filter(|r| is_reinvite(r)).count(),
        1,
        "the hold of the call and the new consultation call"
    );
    let (held, new): (Vec<_>, Vec<_>) = invites.into_iter().partition(is_reinvite);
    phone.answer(&held[0], 200, Some(&sdp(port)));
    new.into_iter().next().expect("the consultation call")
}

fn is_reinvite(r: &switchboard_sip::Request) -> bool {
    r.headers
        .to()
        .and_then(Result::ok)
        .is_some_and(|t| t.tag().is_some())
}

/// A call from the carrier answered by `phone` at `dn`; the phone's INVITE and the SBC's 200.
fn delivered(
    server: &Server,
    sbc: &Peer,
    phone: &Peer,
    dn: &str,
    call_id: &str,
) -> (switchboard_sip::Request, switchboard_sip::Response) {
    let (invite, ok) = answered_call(server, sbc, phone, dn, call_id);
    sbc.send(&sbc_in_dialog(sbc, server, &ok, call_id, "ACK", 1, ""));
    (invite, ok)
}
