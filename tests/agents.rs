//! Agent desktops over gRPC against a running node, GWS played by a tonic client: an agent's
//! day with a call delivered to its phone, seen in order on the event stream and in the Redis
//! streams; requests the state does not allow, refused with FAILED_PRECONDITION and an
//! EventError and nothing changed; unknown agents, other tenants' keys; a phone that goes
//! away; a restart that keeps agents logged in; a desktop that resumes its stream.

mod support;

use std::time::Duration;

use serde::Serialize;
use support::peer::{Peer, answered_call, raw_phone, ringing_call, sbc_in_dialog, sdp};
use support::{DEMO_KEY, Server, agent, log_in, login, with_key};
use switchboard_actors::tenant::{ApiKeyConfig, TenantConfig, demo_tenant, hash_api_key};
use switchboard_proto::events::Payload;
use switchboard_proto::voice as pb;
use switchboard_sip::Method;
use tokio::sync::mpsc;
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
    }];
    #[derive(Serialize)]
    struct File {
        tenants: Vec<TenantConfig>,
    }
    let tenants = toml::to_string(&File {
        tenants: vec![demo, acme],
    })
    .expect("toml");
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
type Seen = (&'static str, String, String, pb::StreamEvent);

/// Follows the tenant's (or an agent's) stream in the background.
async fn follow(channel: Channel, key: &str, agent: &str, cursor: &str) -> mpsc::Receiver<Seen> {
    let mut events = Events::new(channel);
    let mut stream = events
        .subscribe(with_key(
            key,
            pb::SubscribeRequest {
                agent_id: agent.into(),
                cursor: cursor.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("subscribed")
        .into_inner();
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let e = match stream.message().await {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(status) => {
                    eprintln!("event stream ended: {status:?}");
                    return;
                }
            };
            let (which, event) = match &e.change {
                Some(pb::stream_event::Change::AgentStateChanged(ev)) => ("agent", ev),
                Some(pb::stream_event::Change::DnStateChanged(ev)) => ("dn", ev),
                Some(pb::stream_event::Change::CallStateChanged(ev)) => ("call", ev),
                Some(pb::stream_event::Change::Error(ev)) => ("error", ev),
                None => continue,
            };
            let kind = event.kind.clone();
            if tx.send((which, kind, e.cursor.clone(), e)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The next `n` events within a few seconds each.
async fn take(rx: &mut mpsc::Receiver<Seen>, n: usize) -> Vec<Seen> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(8), rx.recv()).await {
            Ok(Some(seen)) => got.push(seen),
            _ => panic!(
                "{} of {n} events came: {:?}",
                got.len(),
                got.iter().map(|s| s.1.as_str()).collect::<Vec<_>>()
            ),
        }
    }
    got
}

/// Nothing more arrives for a moment.
async fn quiet(rx: &mut mpsc::Receiver<Seen>) {
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("unexpected event {} {}", extra.0, extra.1);
    }
}

fn kinds(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(|s| format!("{} {}", s.0, s.1)).collect()
}

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

/// The change a stream event carries, and its call or agent payload.
fn payload(seen: &Seen) -> &Payload {
    let event = match &seen.3.change {
        Some(
            pb::stream_event::Change::AgentStateChanged(e)
            | pb::stream_event::Change::DnStateChanged(e)
            | pb::stream_event::Change::CallStateChanged(e)
            | pb::stream_event::Change::Error(e),
        ) => e,
        None => panic!("an event"),
    };
    event.payload.as_ref().expect("a payload")
}

fn call_of(seen: &Seen) -> &switchboard_proto::events::CallThread {
    match payload(seen) {
        Payload::Call(c) => c,
        other => panic!("a call event, not {other:?}"),
    }
}

fn agent_of(seen: &Seen) -> &switchboard_proto::events::AgentState {
    match payload(seen) {
        Payload::Agent(a) => a,
        other => panic!("an agent event, not {other:?}"),
    }
}

/// `peer` answers the next `n` BYEs.
fn answer_byes(peer: &Peer, n: usize) {
    for _ in 0..n {
        let bye = peer
            .request(Method::Bye, Duration::from_secs(5))
            .expect("a BYE");
        peer.answer(&bye, 200, None);
    }
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
        stream_kinds(&mut conn, "sb:demo:voice-agentstate"),
        part(&["agent ", "dn "])
    );
    assert_eq!(
        stream_kinds(&mut conn, "sb:demo:voice-callthread"),
        part(&["call "])
    );
    let stored: Option<String> = redis::cmd("HGET")
        .arg("sb:demo:agents")
        .arg("a1003")
        .query(&mut conn)
        .expect("hget");
    assert_eq!(stored, None, "a logged-out agent keeps no state");
    let counter: Option<String> = redis::cmd("GET")
        .arg(format!("sb:demo:seq:demo:{thread}"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_requests_the_call_does_not_allow_are_refused_and_reported() {
    let Desk {
        server,
        channel,
        mut agents,
        mut calls,
        ..
    } = desk(21, &config(0, "")).await;
    let phone = raw_phone(&server, "1007");
    log_in(&mut agents, &["1007", "1009"], false).await;
    agents
        .ready(with_key(DEMO_KEY, agent("a1007", "")))
        .await
        .expect("ready");
    let mut stream = follow(channel.clone(), DEMO_KEY, "a1007", "").await;
    let sbc = Peer::sbc(&server);
    ringing_call(&server, &sbc, &phone, "1007", "ringing-1");
    assert_eq!(
        kinds(&take(&mut stream, 2).await),
        ["dn OffHook", "call Ringing"]
    );
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1007", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].state, "Ringing");
    assert!(!listed[0].capabilities.iter().any(|c| c == "hold"));
    let call = listed[0].call_id.clone();
    let on = |agent: &str, call: &str| pb::CallRequest {
        agent_id: agent.into(),
        call_id: call.into(),
        reference_id: "ref".into(),
        ..Default::default()
    };

    // A ringing call cannot be held or retrieved: refused, reported, the call untouched.
    let why = refused(
        calls.hold(with_key(DEMO_KEY, on("a1007", &call))).await,
        Code::FailedPrecondition,
    );
    assert!(why.contains("ringing"), "{why}");
    refused(
        calls.retrieve(with_key(DEMO_KEY, on("a1007", &call))).await,
        Code::FailedPrecondition,
    );
    let errors = take(&mut stream, 2).await;
    assert_eq!(kinds(&errors), ["error EventError", "error EventError"]);
    let Some(pb::stream_event::Change::Error(e)) = &errors[0].3.change else {
        unreachable!("checked above");
    };
    let Some(Payload::Error(e)) = &e.payload else {
        panic!("error payload");
    };
    assert_eq!(
        (e.operation.as_str(), e.call_id.as_str(), e.code.as_str()),
        ("Hold", call.as_str(), "FAILED_PRECONDITION")
    );
    assert!(
        phone
            .request(Method::Invite, Duration::from_millis(300))
            .is_none(),
        "no re-INVITE"
    );

    // A call that is not there, or not this agent's, or asked for by an agent logged out.
    refused(
        calls
            .hold(with_key(DEMO_KEY, on("a1007", "no-such-call")))
            .await,
        Code::NotFound,
    );
    refused(
        calls.release(with_key(DEMO_KEY, on("a1009", &call))).await,
        Code::NotFound,
    );
    refused(
        calls.release(with_key(DEMO_KEY, on("a1011", &call))).await,
        Code::FailedPrecondition,
    );
    refused(
        calls.release(with_key(ACME_KEY, on("a1007", &call))).await,
        Code::FailedPrecondition,
    );
    refused(
        calls
            .send_dtmf(with_key(
                DEMO_KEY,
                pb::DtmfRequest {
                    agent_id: "a1007".into(),
                    call_id: call.clone(),
                    digits: "1".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::FailedPrecondition,
    );

    // Released from the desktop while it rings: the phone stops ringing, the caller hears so.
    calls
        .release(with_key(DEMO_KEY, on("a1007", &call)))
        .await
        .expect("release");
    let cancel = phone
        .request(Method::Cancel, Duration::from_secs(5))
        .expect("the phone's ringing is cancelled");
    phone.answer(&cancel, 200, None);
    let caller = sbc
        .final_response(Duration::from_secs(5))
        .expect("the caller hears");
    assert_eq!(caller.status, 487);
    let rest = take(&mut stream, 4).await;
    assert_eq!(
        kinds(&rest),
        [
            "error EventError",
            "error EventError",
            "dn OnHook",
            "call Released"
        ],
        "its own refusals (the unknown call, the DTMF), not the other agents', then the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_call_has_the_agents_phone_answer_by_itself_then_rings_the_destination() {
    let Desk {
        server,
        channel,
        mut agents,
        mut calls,
        ..
    } = desk(22, &config(0, "")).await;
    let agent_phone = raw_phone(&server, "1003");
    let callee = raw_phone(&server, "1005");
    agents
        .login(with_key(DEMO_KEY, login("a1003", "1003")))
        .await
        .expect("login");
    let mut stream = follow(channel.clone(), DEMO_KEY, "a1003", "").await;

    let made = calls
        .make_call(with_key(
            DEMO_KEY,
            pb::MakeCallRequest {
                agent_id: "a1003".into(),
                destination: "1005".into(),
                user_data: [("campaign".to_owned(), "spring".to_owned())].into(),
                reference_id: "mc".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("make call")
        .into_inner();
    assert!(!made.call_id.is_empty());

    // The agent's phone first, without an offer, told to answer by itself.
    let invite = agent_phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the agent's phone is called");
    assert!(invite.body.is_empty(), "third-party control: no offer");
    let text = String::from_utf8_lossy(&invite.to_bytes()).into_owned();
    assert!(text.contains("answer-after=0"), "{text}");
    assert!(text.contains("info=alert-autoanswer"), "{text}");
    agent_phone.answer(&invite, 200, Some(&sdp(5000)));
    let ack = agent_phone
        .request(Method::Ack, Duration::from_secs(5))
        .expect("its offer answered");
    assert!(String::from_utf8_lossy(&ack.body).contains("a=inactive"));

    // Then the destination, offered the agent's phone's session.
    let rung = callee
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the destination rings");
    assert!(String::from_utf8_lossy(&rung.body).contains("m=audio 5000"));
    callee.answer(&rung, 180, None);
    callee.answer(&rung, 200, Some(&sdp(6000)));
    callee
        .request(Method::Ack, Duration::from_secs(5))
        .expect("the destination's answer is ACKed");
    // The agent's phone gets the destination's session.
    let connect = agent_phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("a re-INVITE with the destination's session");
    assert!(String::from_utf8_lossy(&connect.body).contains("m=audio 6000"));
    agent_phone.answer(&connect, 200, Some(&sdp(5000)));

    let seen = take(&mut stream, 4).await;
    assert_eq!(
        kinds(&seen),
        [
            "dn OffHook",
            "call Dialing",
            "call Ringing",
            "call Established"
        ]
    );
    let Some(pb::stream_event::Change::CallStateChanged(dialing)) = &seen[1].3.change else {
        unreachable!("checked above");
    };
    let Some(Payload::Call(dialing)) = &dialing.payload else {
        panic!("call payload");
    };
    assert_eq!(dialing.call_id, made.call_id);
    assert_eq!(
        dialing.user_data.get("campaign").map(String::as_str),
        Some("spring")
    );

    // Bad input: no destination, a number the dial plan does not know, an agent logged out.
    let mut bad = pb::MakeCallRequest {
        agent_id: "a1003".into(),
        ..Default::default()
    };
    refused(
        calls.make_call(with_key(DEMO_KEY, bad.clone())).await,
        Code::InvalidArgument,
    );
    bad.destination = "77".into();
    refused(
        calls.make_call(with_key(DEMO_KEY, bad.clone())).await,
        Code::InvalidArgument,
    );
    bad.agent_id = "a1011".into();
    bad.destination = "1005".into();
    refused(
        calls.make_call(with_key(DEMO_KEY, bad)).await,
        Code::FailedPrecondition,
    );

    calls
        .release(with_key(
            DEMO_KEY,
            pb::CallRequest {
                agent_id: "a1003".into(),
                call_id: made.call_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("release");
    for phone in [&agent_phone, &callee] {
        let bye = phone
            .request(Method::Bye, Duration::from_secs(5))
            .expect("both hung up");
        phone.answer(&bye, 200, None);
    }
    assert_eq!(
        kinds(&take(&mut stream, 4).await),
        [
            "error EventError",
            "error EventError",
            "dn OnHook",
            "call Released"
        ]
    );
}

/// The next `n` INVITEs `peer` receives, each answered `200` with a session on `port`; the
/// re-INVITEs (with a To tag) and the new INVITEs apart.
fn answer_invites(peer: &Peer, n: usize, port: u16) -> Vec<switchboard_sip::Request> {
    (0..n)
        .map(|_| {
            let invite = peer
                .request(Method::Invite, Duration::from_secs(5))
                .expect("an INVITE");
            peer.answer(&invite, 200, Some(&sdp(port)));
            invite
        })
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_step_transfers_from_the_desktop_and_blind_refers_from_the_phone() {
    let Desk {
        server,
        channel,
        mut agents,
        mut calls,
        ..
    } = desk(24, &config(0, "")).await;
    let first = raw_phone(&server, "1003");
    let second = raw_phone(&server, "1005");
    log_in(&mut agents, &["1003", "1005"], false).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let sbc = Peer::sbc(&server);

    // From the desktop: a1003 leaves at once, the caller is put through to 1005.
    delivered(&server, &sbc, &first, "1003", "single-1");
    let start = take(&mut stream, 3).await;
    let call = call_of(&start[1]).call_id.clone();
    refused(
        calls
            .single_step_transfer(with_key(
                DEMO_KEY,
                pb::TransferRequest {
                    agent_id: "a1003".into(),
                    call_id: call.clone(),
                    destination: "77".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    calls
        .single_step_transfer(with_key(
            DEMO_KEY,
            pb::TransferRequest {
                agent_id: "a1003".into(),
                call_id: call.clone(),
                destination: "1005".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("single-step transfer");
    answer_byes(&first, 1);
    let rung = second
        .request(Method::Invite, Duration::from_secs(5))
        .expect("1005 rings");
    assert!(
        String::from_utf8_lossy(&rung.body).contains("m=audio 4000"),
        "offered the caller's session"
    );
    second.answer(&rung, 180, None);
    second.answer(&rung, 200, Some(&sdp(6000)));
    let to_caller = answer_invites(&sbc, 1, 4000).remove(0);
    assert!(String::from_utf8_lossy(&to_caller.body).contains("m=audio 6000"));
    assert_eq!(
        kinds(&take(&mut stream, 6).await),
        [
            "error EventError",
            // The agent's change is written before the call's that brought it about.
            "dn OnHook",
            "call PartyChanged",
            "dn OffHook",
            "call Ringing",
            "call Established"
        ]
    );

    // From the phone: 1005 sends a blind REFER to 1003.
    let refer = second.in_dialog(&rung, "REFER", 20, "Refer-To: <sip:1003@demo.local>\r\n");
    second.send(&refer);
    let accepted = second
        .final_response(Duration::from_secs(5))
        .expect("the REFER is answered");
    assert_eq!(accepted.status, 202);
    let notify = second
        .request(Method::Notify, Duration::from_secs(5))
        .expect("a NOTIFY of the transfer");
    assert!(String::from_utf8_lossy(&notify.body).starts_with("SIP/2.0 200"));
    second.answer(&notify, 200, None);
    answer_byes(&second, 1);
    let rung = first
        .request(Method::Invite, Duration::from_secs(5))
        .expect("1003 rings");
    first.answer(&rung, 180, None);
    first.answer(&rung, 200, Some(&sdp(5000)));
    let to_caller = answer_invites(&sbc, 1, 4000).remove(0);
    assert!(String::from_utf8_lossy(&to_caller.body).contains("m=audio 5000"));
    let transferred = take(&mut stream, 5).await;
    assert_eq!(
        kinds(&transferred),
        [
            "dn OnHook",
            "call PartyChanged",
            "dn OffHook",
            "call Ringing",
            "call Established"
        ]
    );
    assert_eq!(
        call_of(&transferred[4]).call_id,
        call,
        "the same call throughout"
    );

    // A REFER to a number nobody knows is refused and changes nothing.
    let refer = first.in_dialog(&rung, "REFER", 30, "Refer-To: <sip:77@demo.local>\r\n");
    first.send(&refer);
    assert_eq!(
        first
            .final_response(Duration::from_secs(5))
            .expect("answered")
            .status,
        404
    );
    quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attended_refer_from_the_phone_hands_the_caller_to_the_consulted_agent() {
    let Desk {
        server,
        channel,
        mut agents,
        mut calls,
        ..
    } = desk(25, &config(0, "")).await;
    let first = raw_phone(&server, "1003");
    let second = raw_phone(&server, "1005");
    log_in(&mut agents, &["1003", "1005"], false).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let sbc = Peer::sbc(&server);
    let (main_invite, _) = delivered(&server, &sbc, &first, "1003", "attended-1");
    let start = take(&mut stream, 3).await;
    let call = call_of(&start[1]).call_id.clone();

    // The agent's phone consults 1005 on a second line.
    let consult = calls
        .make_call(with_key(
            DEMO_KEY,
            pb::MakeCallRequest {
                agent_id: "a1003".into(),
                destination: "1005".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("make call")
        .into_inner()
        .call_id;
    let line2 = answer_invites(&first, 1, 5002).remove(0);
    let rung = second
        .request(Method::Invite, Duration::from_secs(5))
        .expect("1005 rings");
    second.answer(&rung, 200, Some(&sdp(6000)));
    answer_invites(&first, 1, 5002);
    assert_eq!(
        kinds(&take(&mut stream, 3).await),
        ["call Dialing", "dn OffHook", "call Established"]
    );

    // REFER on the first line, replacing the second: the caller and 1005 are connected.
    let line2_call_id = line2.headers.call_id().expect("Call-ID").to_string();
    let core_tag = line2
        .headers
        .from()
        .and_then(Result::ok)
        .and_then(|f| f.tag().map(str::to_owned))
        .expect("the core's tag");
    let refer_to = format!(
        "Refer-To: <sip:1005@demo.local?Replaces={line2_call_id}%3Bto-tag%3D{core_tag}%3Bfrom-tag%3Dpeer>\r\n"
    );
    first.send(&first.in_dialog(&main_invite, "REFER", 20, &refer_to));
    assert_eq!(
        first
            .final_response(Duration::from_secs(5))
            .expect("the REFER is answered")
            .status,
        202
    );
    let notify = first
        .request(Method::Notify, Duration::from_secs(5))
        .expect("a NOTIFY");
    first.answer(&notify, 200, None);
    let to_caller = answer_invites(&sbc, 1, 4000).remove(0);
    assert!(String::from_utf8_lossy(&to_caller.body).contains("m=audio 6000"));
    let to_second = answer_invites(&second, 1, 6000).remove(0);
    assert!(String::from_utf8_lossy(&to_second.body).contains("m=audio 4000"));
    answer_byes(&first, 2);
    let done = take(&mut stream, 3).await;
    assert_eq!(
        kinds(&done),
        ["call PartyChanged", "dn OnHook", "call Released"]
    );
    assert_eq!(call_of(&done[0]).call_id, call);
    assert_eq!(call_of(&done[2]).call_id, consult);
    assert_eq!(call_of(&done[2]).cause, "transferred");
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1005", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].call_id, call);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_is_answered_from_the_desktop_and_a_transfer_needs_its_consultation() {
    let Desk {
        server,
        channel,
        mut agents,
        mut calls,
        ..
    } = desk(26, &config(0, "")).await;
    let phone = raw_phone(&server, "1009");
    log_in(&mut agents, &["1009"], false).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "a1009", "").await;
    let sbc = Peer::sbc(&server);
    let invite = ringing_call(&server, &sbc, &phone, "1009", "answer-1");
    let ringing = take(&mut stream, 2).await;
    assert_eq!(kinds(&ringing), ["dn OffHook", "call Ringing"]);
    let call = call_of(&ringing[1]).call_id.clone();
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1009", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert!(
        listed[0].capabilities.iter().any(|c| c == "answer"),
        "{listed:?}"
    );

    // Answer from the desktop: the phone is asked to, in its early dialog.
    calls
        .answer(with_key(
            DEMO_KEY,
            pb::CallRequest {
                agent_id: "a1009".into(),
                call_id: call.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("answer");
    let talk = phone
        .request(Method::Notify, Duration::from_secs(5))
        .expect("a NOTIFY asking the phone to answer");
    assert_eq!(
        talk.headers
            .get(&switchboard_sip::HeaderName::Event)
            .map(|e| &**e),
        Some("talk")
    );
    phone.answer(&talk, 200, None);
    phone.answer(&invite, 200, Some(&sdp(5000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("the caller is answered");
    assert_eq!(ok.status, 200);
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "answer-1", "ACK", 1, ""));
    assert_eq!(kinds(&take(&mut stream, 1).await), ["call Established"]);
    // Answered already: not again.
    refused(
        calls
            .answer(with_key(
                DEMO_KEY,
                pb::CallRequest {
                    agent_id: "a1009".into(),
                    call_id: call.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::FailedPrecondition,
    );

    // Completing a transfer needs a consultation call that is there.
    let consult = |id: &str| pb::ConsultRequest {
        agent_id: "a1009".into(),
        call_id: call.clone(),
        consult_call_id: id.into(),
        ..Default::default()
    };
    let why = refused(
        calls
            .complete_transfer(with_key(DEMO_KEY, consult("")))
            .await,
        Code::FailedPrecondition,
    );
    assert!(why.contains("no consultation call"), "{why}");
    refused(
        calls
            .complete_transfer(with_key(DEMO_KEY, consult("no-such-call")))
            .await,
        Code::NotFound,
    );
    refused(
        calls
            .complete_conference(with_key(DEMO_KEY, consult("no-such-call")))
            .await,
        Code::NotFound,
    );
    assert_eq!(
        kinds(&take(&mut stream, 4).await),
        [
            "error EventError",
            "error EventError",
            "error EventError",
            "error EventError"
        ]
    );
    // The call is untouched: still established with the agent, and released normally.
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1009", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert_eq!(listed[0].state, "Established");
    calls
        .release(with_key(
            DEMO_KEY,
            pb::CallRequest {
                agent_id: "a1009".into(),
                call_id: call.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("release");
    answer_byes(&phone, 1);
    answer_byes(&sbc, 1);
    assert_eq!(
        kinds(&take(&mut stream, 2).await),
        ["dn OnHook", "call Released"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_alternates_between_the_held_call_and_its_consultation_then_reconnects() {
    let Desk {
        server,
        channel,
        mut agents,
        mut calls,
        ..
    } = desk(27, &config(0, "")).await;
    let first = raw_phone(&server, "1003");
    let second = raw_phone(&server, "1005");
    log_in(&mut agents, &["1003", "1005"], false).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let sbc = Peer::sbc(&server);
    delivered(&server, &sbc, &first, "1003", "alternate-1");
    let start = take(&mut stream, 3).await;
    let call = call_of(&start[1]).call_id.clone();
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
        .expect("initiate")
        .into_inner()
        .call_id;
    answer_invites(&sbc, 1, 4000);
    let line2 = hold_then_consult(&first, 5002);
    let mut consulting = take(&mut stream, 2).await;
    first.answer(&line2, 200, Some(&sdp(5002)));
    let rung = second
        .request(Method::Invite, Duration::from_secs(5))
        .expect("1005 rings");
    second.answer(&rung, 200, Some(&sdp(6000)));
    answer_invites(&first, 1, 5002);
    consulting.extend(take(&mut stream, 2).await);
    assert_eq!(
        kinds(&consulting),
        [
            "call Dialing",
            "call Held",
            "dn OffHook",
            "call Established"
        ]
    );
    let request = || pb::ConsultRequest {
        agent_id: "a1003".into(),
        call_id: call.clone(),
        consult_call_id: consult.clone(),
        ..Default::default()
    };

    // Alternate: the consultation is held, the caller retrieved.
    calls
        .alternate_call(with_key(DEMO_KEY, request()))
        .await
        .expect("alternate");
    for reinvite in answer_invites(&second, 1, 6000) {
        assert!(String::from_utf8_lossy(&reinvite.body).contains("a=inactive"));
    }
    let on_first: Vec<_> = (0..2)
        .map(|_| {
            first
                .request(Method::Invite, Duration::from_secs(5))
                .expect("a re-INVITE on each line")
        })
        .collect();
    assert!(String::from_utf8_lossy(&on_first[0].body).contains("a=inactive"));
    assert!(String::from_utf8_lossy(&on_first[1].body).contains("a=sendrecv"));
    first.answer(&on_first[0], 200, Some(&sdp(5002)));
    let held = take(&mut stream, 1).await;
    first.answer(&on_first[1], 200, Some(&sdp(5002)));
    answer_invites(&sbc, 1, 4000);
    let mut alternated = held;
    alternated.extend(take(&mut stream, 1).await);
    assert_eq!(kinds(&alternated), ["call Held", "call Retrieved"]);
    assert_eq!(call_of(&alternated[0]).call_id, consult);
    assert_eq!(call_of(&alternated[1]).call_id, call);

    // Reconnect: the consultation call is released; the caller stays with the agent.
    calls
        .reconnect_call(with_key(DEMO_KEY, request()))
        .await
        .expect("reconnect");
    answer_byes(&first, 1);
    answer_byes(&second, 1);
    let reconnected = take(&mut stream, 2).await;
    assert_eq!(kinds(&reconnected), ["dn OnHook", "call Released"]);
    assert_eq!(call_of(&reconnected[1]).call_id, consult);
    let listed = calls
        .list_calls(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "Established");
    assert!(
        !listed[0]
            .capabilities
            .iter()
            .any(|c| c == "complete-transfer"),
        "no consultation any more: {listed:?}"
    );
    quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sipp_phone_takes_a_call_the_desktop_holds_retrieves_and_releases() {
    let url = support::redis_db(28);
    let server = Server::start_with_config(Some(&config(0, "")), &["--redis", &url]);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = support::free_port();
    support::sipp::register(&server, dir.path(), "1011", port);
    let mut sipp = support::sipp::answering_phone(dir.path(), "1011", "127.0.0.1", port);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let mut calls = Calls::new(channel.clone());
    agents
        .login(with_key(DEMO_KEY, login("a1011", "1011")))
        .await
        .expect("login");
    agents
        .ready(with_key(DEMO_KEY, agent("a1011", "")))
        .await
        .expect("ready");
    let mut stream = follow(channel.clone(), DEMO_KEY, "a1011", "").await;
    let sbc = Peer::sbc(&server);
    sbc.send(&support::peer::sbc_invite(
        sbc.port(),
        &server,
        "1011",
        "sipp-1",
        &sdp(4000),
    ));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("SIPp answers");
    assert_eq!(ok.status, 200);
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "sipp-1", "ACK", 1, ""));
    let answered = take(&mut stream, 3).await;
    assert_eq!(
        kinds(&answered),
        ["dn OffHook", "call Ringing", "call Established"]
    );
    let call = call_of(&answered[1]).call_id.clone();
    let on = || pb::CallRequest {
        agent_id: "a1011".into(),
        call_id: call.clone(),
        ..Default::default()
    };
    calls.hold(with_key(DEMO_KEY, on())).await.expect("hold");
    answer_invites(&sbc, 1, 4000);
    assert_eq!(kinds(&take(&mut stream, 1).await), ["call Held"]);
    calls
        .retrieve(with_key(DEMO_KEY, on()))
        .await
        .expect("retrieve");
    answer_invites(&sbc, 1, 4000);
    assert_eq!(kinds(&take(&mut stream, 1).await), ["call Retrieved"]);
    calls
        .release(with_key(DEMO_KEY, on()))
        .await
        .expect("release");
    answer_byes(&sbc, 1);
    assert_eq!(
        kinds(&take(&mut stream, 2).await),
        ["dn OnHook", "call Released"]
    );
    let status = support::sipp::wait(&mut sipp, Duration::from_secs(10));
    assert!(
        status.success(),
        "SIPp took the re-INVITEs and the BYE: {status}\n{}",
        support::sipp::sipp_errors(dir.path())
    );
}
