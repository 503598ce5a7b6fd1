//! Calls to the demo tenant's routing point 5000 against a running node: the strategy's music
//! from a media server (the first one, which refuses, skipped for the next), the queue, an
//! agent who does not answer (RONA: not ready, the call waits again on its music), the next
//! agent answering and taking the caller from the media server (RFC 3725); a caller who
//! hangs up while queued (Abandoned); a routing point's timeout (the default destination); a
//! media server that never answers; and the demo as `switchboard serve` runs it, with SIPp
//! for the carrier, the media server and the agent's phone.

#[path = "../support/mod.rs"]
mod support;

mod stats;

use std::net::SocketAddr;
use std::time::Duration;

use support::peer::{Peer, raw_phone, sbc_in_dialog, sbc_invite, sdp};
use support::sipp::{
    Running, answering_phone, register, sbc_calls, scenario, serving, sipp_errors, wait,
};
use support::{DEMO_KEY, Server, agent, call_events, log_in, with_key};
use switchboard_actors::tenant::{MediaServerConfig, Options, TenantConfig, demo_tenant};
use switchboard_proto::voice as pb;
use switchboard_sip::{Message, Method, Request, Response};

type Agents = pb::agents_client::AgentsClient<tonic::transport::Channel>;

/// The demo tenant, its media servers (`ms0`, `ms1`, ...) at `media`, changed by `change`.
fn config(media: &[SocketAddr], change: impl FnOnce(&mut TenantConfig)) -> String {
    let mut demo = demo_tenant();
    demo.media_servers = media
        .iter()
        .enumerate()
        .map(|(i, a)| MediaServerConfig {
            name: format!("ms{i}"),
            address: a.to_string(),
            options: Options::new(),
        })
        .collect();
    change(&mut demo);
    support::tenants_toml(&[&demo])
}

/// The SBC's call `call_id` to the support line: the media server plays to it, the caller
/// is answered and ACKs. The answer the SBC got.
fn caller_on_music(server: &Server, sbc: &Peer, playing: &Peer, call_id: &str) -> Response {
    sbc.send(&sbc_invite(
        sbc.port(),
        server,
        "+18005550100",
        call_id,
        &sdp(4000),
    ));
    let music = invite_within(playing, "the media server is asked", server);
    playing.answer(&music, 200, Some(&sdp(6000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("answered");
    sbc.send(&sbc_in_dialog(sbc, server, &ok, call_id, "ACK", 1, ""));
    ok
}

/// A media server's socket, bound before the server starts (its configuration names it).
fn unbound_peer() -> std::net::UdpSocket {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind")
}

/// The figures of the demo tenant's queue `queue`, over gRPC.
/// The queue's statistics once `until` holds of them, or as they are after 5 s.
async fn stats_within(
    server: &Server,
    queue: &str,
    until: impl Fn(&pb::QueueStats) -> bool,
) -> pb::QueueStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = queue_stats(server, queue).await.expect("stats");
        if until(&stats) || std::time::Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn queue_stats(server: &Server, queue: &str) -> Result<pb::QueueStats, tonic::Status> {
    let mut queues = pb::queues_client::QueuesClient::new(support::grpc(server).await);
    let list = queues
        .get_queue_stats(with_key(
            DEMO_KEY,
            pb::QueueStatsRequest {
                queue: queue.into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert_eq!(list.queues.len(), 1, "{list:?}");
    Ok(list.queues[0].clone())
}

async fn ready(agents: &mut Agents, dn: &str) {
    agents
        .ready(with_key(DEMO_KEY, agent(&format!("a{dn}"), "")))
        .await
        .expect("ready");
}

/// The demo tenant's call events in Redis database `url`, as (kind, payload).
fn events(url: &str) -> Vec<(String, serde_json::Value)> {
    let mut conn = support::redis(url);
    call_events(&mut conn)
}

/// The call events once `until` holds of their kinds (they reach Redis a little after what
/// the phones see), or as they are after 5 s.
async fn events_until(
    url: &str,
    until: impl Fn(&[&str]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = events(url);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        if until(&kinds) || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn invite_within(peer: &Peer, what: &str, server: &Server) -> Request {
    peer.request(Method::Invite, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{what}\n{}", server.log_text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_call_hears_music_survives_rona_and_reaches_the_next_agent() {
    let url = support::redis_db(29);
    let (refusing, playing) = (unbound_peer(), unbound_peer());
    let addrs = [
        refusing.local_addr().expect("a"),
        playing.local_addr().expect("a"),
    ];
    let demo_config = config(&addrs, |demo| {
        // a1004 rings for 2 seconds before RONA.
        if let Some(d) = demo.dns.iter_mut().find(|d| d.number == "1004") {
            d.options.insert("no-answer-timeout".into(), "2".into());
        }
    });
    let server = Server::start_with_config(Some(&demo_config), &["--redis", &url]);
    let refusing = Peer::on(refusing, &server);
    let playing = Peer::on(playing, &server);
    let mut agents = Agents::new(support::grpc(&server).await);
    let (p1003, p1004) = (raw_phone(&server, "1003"), raw_phone(&server, "1004"));
    log_in(&mut agents, &["1003", "1004"], false).await;

    // The caller reaches the routing point: music, from the second media server.
    let sbc = Peer::sbc(&server);
    let call_id = "rp-music";
    sbc.send(&sbc_invite(
        sbc.port(),
        &server,
        "+18005550100",
        call_id,
        &sdp(4000),
    ));
    let first = invite_within(&refusing, "the first media server is asked", &server);
    assert!(
        first.uri.to_string().starts_with("sip:annc@")
            && first
                .uri
                .to_string()
                .contains(";play=file:///music/hold.wav;repeat=forever"),
        "{}",
        first.uri
    );
    refusing.answer(&first, 503, None);
    let music = invite_within(&playing, "the next media server is asked", &server);
    assert_eq!(music.body, first.body, "the caller's offer");
    playing.answer(&music, 200, Some(&sdp(6000)));
    let ok = sbc
        .final_response(Duration::from_secs(5))
        .expect("the caller is answered");
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 6000"));
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, call_id, "ACK", 1, ""));
    playing
        .request(Method::Ack, Duration::from_secs(5))
        .expect("the media server's answer is acknowledged");

    // The wallboard: one call waiting, nobody Ready, no estimate before a call is served.
    let stats = queue_stats(&server, "support").await.expect("stats");
    assert_eq!(
        (stats.waiting, stats.ready, stats.busy, stats.ewt_ms),
        (1, 0, 0, None),
        "{stats:?}"
    );
    let missing = queue_stats(&server, "nonesuch")
        .await
        .expect_err("no such queue");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // a1004 is Ready and rung (without an offer), and does not answer: RONA.
    ready(&mut agents, "1004").await;
    let rung = invite_within(&p1004, "a1004 is rung", &server);
    assert!(rung.body.is_empty(), "the agent is asked for an offer");
    p1004.answer(&rung, 180, None);
    let cancel = p1004
        .request(Method::Cancel, Duration::from_secs(6))
        .expect("the ringing stops after the ring time");
    p1004.answer(&cancel, 200, None);
    p1004.answer(&rung, 487, None);
    // The call stops the ringing, then tells routing, which makes the agent not ready: a few
    // messages behind the CANCEL the phone saw.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let state = loop {
        let state = agents
            .get_agent(with_key(
                DEMO_KEY,
                pb::AgentRequest {
                    agent_id: "a1004".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("state")
            .into_inner()
            .state
            .expect("a state");
        if state.state != "Ready" || std::time::Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (state.state.as_str(), state.reason.as_str()),
        ("NotReady", "RONA")
    );

    // a1003 is Ready and answers: the caller is moved from the music to it.
    ready(&mut agents, "1003").await;
    let invite = invite_within(&p1003, "a1003 is rung", &server);
    assert!(invite.body.is_empty());
    p1003.answer(&invite, 180, None);
    p1003.answer(&invite, 200, Some(&sdp(5003)));
    let reinvite = sbc
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the caller is offered the agent's media");
    assert!(String::from_utf8_lossy(&reinvite.body).contains("m=audio 5003"));
    sbc.answer(&reinvite, 200, Some(&sdp(4000)));
    let ack = p1003
        .request(Method::Ack, Duration::from_secs(5))
        .expect("the agent gets the caller's answer");
    assert!(String::from_utf8_lossy(&ack.body).contains("m=audio 4000"));
    let bye = playing
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the music ends");
    playing.answer(&bye, 200, None);
    // The agent turns busy once the call tells agent state it is established, a message
    // behind what the phones see.
    let stats = stats_within(&server, "support", |s| s.busy == 1).await;
    assert_eq!((stats.waiting, stats.busy), (0, 1), "{stats:?}");
    assert!(stats.ewt_ms.is_some(), "a call was served: {stats:?}");

    // The caller hangs up.
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, call_id, "BYE", 2, ""));
    let bye = p1003
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the agent's phone is hung up");
    p1003.answer(&bye, 200, None);

    let events = events_until(&url, |kinds| kinds.last() == Some(&"Released")).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    let expected = [
        "RouteRequest",
        "AttachedDataChanged",
        "Queued",
        "TreatmentApplied",
        "Ringing",
        "Queued",
        "Ringing",
        "TreatmentEnd",
        "RouteUsed",
        "Established",
        "Released",
    ];
    assert_eq!(kinds, expected, "{events:#?}");
    let payload = |i: usize| &events[i].1;
    assert_eq!(payload(0)["routingPoint"], "5000");
    assert_eq!(payload(2)["queue"], "support");
    assert_eq!(payload(3)["treatment"], "music");
    assert_eq!(payload(5)["cause"], "rona");
    assert_eq!(payload(1)["userData"]["line"], "support");
    let parties = &payload(9)["parties"];
    assert_eq!(parties[1]["dn"], "1003", "{parties}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_is_abandoned_and_a_timeout_takes_the_default() {
    let url = support::redis_db(30);
    let playing = unbound_peer();
    let addr = playing.local_addr().expect("addr");
    let config_text = config(&[addr], |demo| demo.routing_points[0].timeout_secs = 3);
    let server = Server::start_with_config(Some(&config_text), &["--redis", &url]);
    let playing = Peer::on(playing, &server);
    let p1001 = raw_phone(&server, "1001");
    let sbc = Peer::sbc(&server);

    // Abandoned while the music plays.
    let ok = caller_on_music(&server, &sbc, &playing, "rp-gone");
    // The caller listens a while before giving up.
    std::thread::sleep(Duration::from_millis(300));
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rp-gone", "BYE", 2, ""));
    let bye = playing
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the music ends");
    playing.answer(&bye, 200, None);

    // No agent within the routing point's 3 seconds: its default, extension 1001, which
    // takes the caller from the music as an agent would.
    sbc.send(&sbc_invite(
        sbc.port(),
        &server,
        "+18005550100",
        "rp-late",
        &sdp(4000),
    ));
    let music = invite_within(&playing, "the media server is asked", &server);
    playing.answer(&music, 200, Some(&sdp(6000)));
    let ok = loop {
        match sbc.next(Duration::from_secs(5)).expect("answered") {
            Message::Response(r) if r.status == 200 => break r,
            _ => {}
        }
    };
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rp-late", "ACK", 1, ""));
    let invite = p1001
        .request(Method::Invite, Duration::from_secs(6))
        .expect("the default destination rings");
    p1001.answer(&invite, 180, None);
    p1001.answer(&invite, 200, Some(&sdp(5001)));
    let reinvite = sbc
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the caller is offered 1001's media");
    sbc.answer(&reinvite, 200, Some(&sdp(4000)));
    p1001
        .request(Method::Ack, Duration::from_secs(5))
        .expect("acknowledged");

    let events = events_until(&url, |kinds| {
        kinds.contains(&"Abandoned") && kinds.last() == Some(&"Established")
    })
    .await;
    let (_, abandoned) = events
        .iter()
        .find(|(kind, _)| kind == "Abandoned")
        .expect("an Abandoned event");
    assert_eq!(abandoned["routingPoint"], "5000");
    assert_eq!(abandoned["queue"], "support");
    let waited: u64 = abandoned["durationMs"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("the time waited");
    assert!(waited >= 300, "waited {waited} ms");
    // The second call's events.
    let late: Vec<&str> = events
        .iter()
        .filter(|(_, p)| p["callId"] != abandoned["callId"])
        .map(|(kind, _)| kind.as_str())
        .collect();
    assert!(
        late.windows(2).any(|w| w == ["Diverted", "Ringing"]),
        "{late:?}"
    );
    assert_eq!(late.last(), Some(&"Established"), "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_server_that_never_answers_is_skipped_for_the_next() {
    let url = support::redis_db(32);
    let (silent, playing) = (unbound_peer(), unbound_peer());
    let addrs = [
        silent.local_addr().expect("a"),
        playing.local_addr().expect("a"),
    ];
    let server = Server::start_with_config(Some(&config(&addrs, |_| {})), &["--redis", &url]);
    let silent = Peer::on(silent, &server);
    let playing = Peer::on(playing, &server);
    let sbc = Peer::sbc(&server);
    sbc.send(&sbc_invite(
        sbc.port(),
        &server,
        "+18005550100",
        "rp-silent",
        &sdp(4000),
    ));
    let asked = invite_within(&silent, "the first media server is asked", &server);
    let started = std::time::Instant::now();
    // It never answers: after its 4 seconds, the next server plays the music.
    let music = playing
        .request(Method::Invite, Duration::from_secs(8))
        .unwrap_or_else(|| panic!("the next media server is asked\n{}", server.log_text()));
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "asked after {:?}",
        started.elapsed()
    );
    assert_eq!(music.body, asked.body, "the caller's offer");
    playing.answer(&music, 200, Some(&sdp(6000)));
    let ok = loop {
        match sbc.next(Duration::from_secs(5)).expect("answered") {
            Message::Response(r) if r.status == 200 => break r,
            _ => {}
        }
    };
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 6000"));
    sbc.send(&sbc_in_dialog(
        &sbc,
        &server,
        &ok,
        "rp-silent",
        "ACK",
        1,
        "",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kinds: Vec<String> = events(&url).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "RouteRequest",
            "AttachedDataChanged",
            "Queued",
            "TreatmentApplied"
        ],
        "the call waits on the music; nothing failed"
    );
}

/// `switchboard serve` on its embedded demo tenant routes a SIPp call through the demo
/// strategy: the carrier's SBC (SIPp from 127.0.0.2) calls the service number, the demo
/// media server (SIPp at 127.0.0.3:5090) plays the music, and a1003 (a SIPp phone), made
/// Ready while the caller listens, takes the call. `/metrics` counts it all as it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_routes_a_sipp_call_through_its_strategy() {
    let url = support::redis_db(23);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--redis", &url]);
    let mut sipps = Running(Vec::new());
    sipps.0.push(serving(
        dir.path(),
        "media_server.xml",
        "gvp",
        "127.0.0.3",
        5090,
    ));
    let guesser = support::Udp::on("127.0.0.9", server.sip);
    let refused = support::register_with(&guesser, "1003", "wrong", "guess");
    assert_eq!(refused, 401);
    let phone_port = support::free_port();
    register(&server, dir.path(), "1003", phone_port);
    let mut phone = answering_phone(dir.path(), "1003", "127.0.0.1", phone_port);
    let mut agents = Agents::new(support::grpc(&server).await);
    log_in(&mut agents, &["1003"], false).await;

    let calls = dir.path().join("calls.csv");
    std::fs::write(&calls, "SEQUENTIAL\n+18005550100;+15551230000;\n").expect("calls");
    let sbc_xml = scenario("sbc_queue.xml");
    let mut sbc = sbc_calls(dir.path(), &server, &sbc_xml, &calls, 1, 10.0, 30);
    // The caller hears the music a moment before the agent is Ready.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let metric = |series: &str| support::metric(&server, series).unwrap_or(-1.0);
    assert_eq!(metric(r#"switchboard_calls{state="in_progress"}"#), 1.0);
    assert_eq!(
        metric(r#"switchboard_queue_waiting{tenant="demo",queue="support"}"#),
        1.0
    );
    assert!(metric("switchboard_sip_transactions") >= 1.0);
    assert_eq!(
        metric(r#"switchboard_agents{tenant="demo",state="NotReady"}"#),
        1.0
    );
    ready(&mut agents, "1003").await;
    let status = tokio::task::spawn_blocking(move || wait(&mut sbc, Duration::from_secs(30)))
        .await
        .expect("wait");
    assert!(
        status.success(),
        "the SBC's call: {status}\n{}\n{}",
        sipp_errors(dir.path()),
        server.log_text()
    );
    assert!(wait(&mut phone, Duration::from_secs(5)).success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let events = events(&url);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "RouteRequest",
            "AttachedDataChanged",
            "Queued",
            "TreatmentApplied",
            "Ringing",
            "TreatmentEnd",
            "RouteUsed",
            "Established",
            "Released"
        ],
        "{events:#?}"
    );
    let payload = |kind: &str| &events.iter().find(|(k, _)| k == kind).expect(kind).1;
    assert_eq!(payload("RouteRequest")["routingPoint"], "5000");
    assert_eq!(
        payload("AttachedDataChanged")["userData"]["line"],
        "support"
    );
    assert_eq!(payload("TreatmentApplied")["treatment"], "music");
    let queued = payload("Queued");
    assert_eq!(
        (&queued["queue"], &queued["target"], &queued["priority"]),
        (
            &serde_json::json!("support"),
            &serde_json::json!("english >= 3"),
            &serde_json::json!(5)
        )
    );
    assert_eq!(payload("RouteUsed")["parties"][1]["dn"], "1003");

    // What the metrics say of it all.
    let figure = |series: &str| support::metric(&server, series).unwrap_or(-1.0);
    let requests = |way: &str, method: &str| {
        figure(&format!(
            r#"switchboard_sip_requests_total{{direction="{way}",method="{method}"}}"#
        ))
    };
    let responses = |way: &str, class: &str| {
        figure(&format!(
            r#"switchboard_sip_responses_total{{direction="{way}",class="{class}"}}"#
        ))
    };
    // The guess and SIPp's REGISTER, each challenged once: four REGISTERs, three 401s.
    assert_eq!(requests("in", "REGISTER"), 4.0);
    assert_eq!(responses("out", "4xx"), 3.0);
    // The SBC's INVITE; the core's to the media server, to the agent, and the caller's
    // re-INVITE offering the agent.
    assert_eq!(requests("in", "INVITE"), 1.0);
    assert_eq!(requests("out", "INVITE"), 3.0);
    // 200s to SIPp's REGISTER, the SBC's INVITE, its BYE; the media server's, the agent's and
    // the SBC's to the core's INVITEs, the media server's and the agent's to its BYEs.
    assert_eq!(responses("out", "2xx"), 3.0);
    assert_eq!(responses("in", "2xx"), 5.0);
    assert_eq!(
        figure(r#"switchboard_registrations_total{tenant="demo",outcome="accepted"}"#),
        1.0
    );
    assert_eq!(
        figure(r#"switchboard_registrations_total{tenant="demo",outcome="refused"}"#),
        1.0
    );
    assert_eq!(figure(r#"switchboard_calls{state="in_progress"}"#), 0.0);
    assert_eq!(
        figure(r#"switchboard_queue_waiting{tenant="demo",queue="support"}"#),
        0.0
    );
    let agents_in = |state: &str| {
        figure(&format!(
            r#"switchboard_agents{{tenant="demo",state="{state}"}}"#
        ))
        .max(0.0)
    };
    assert_eq!(agents_in("AfterCallWork") + agents_in("Ready"), 1.0);
    assert_eq!(figure("switchboard_routing_decision_seconds_count"), 1.0);
    // Answered within the demo's 20 s: today's service level is whole.
    let today = |series: &str| {
        figure(&format!(
            r#"switchboard_queue_{series}{{tenant="demo",queue="support"}}"#
        ))
    };
    assert!(
        support::eventually(Duration::from_secs(5), || today("answered") == 1.0),
        "{}",
        support::http_get(server.http, "/metrics").unwrap_or_default()
    );
    assert_eq!(
        (today("offered"), today("abandoned"), today("service_level")),
        (1.0, 0.0, 1.0)
    );
    assert_eq!(
        figure(r#"switchboard_routing_decision_seconds_bucket{le="+Inf"}"#),
        1.0
    );
}

/// A GES callback request's answer from the callbacks API: the status line and the JSON body.
fn callback(
    server: &Server,
    method: &str,
    id: &str,
    key: Option<&str>,
) -> (u16, serde_json::Value) {
    let auth = key.map_or_else(String::new, |k| format!("Authorization: Bearer {k}\r\n"));
    let text = support::http_request(server.callbacks, method, &format!("/callbacks/{id}"), &auth)
        .expect("the callbacks API answers");
    let status = text[9..12].parse().expect("status");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).expect("JSON"))
}

/// Polls callback `id` until it is in `state` with every field of `with`; its status.
async fn callback_in(server: &Server, id: &str, state: &str, with: &[&str]) -> serde_json::Value {
    for _ in 0..50 {
        let (code, body) = callback(server, "GET", id, Some(DEMO_KEY));
        if code == 200 && body["state"] == state && with.iter().all(|f| !body[f].is_null()) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "callback {id} not {state}: {:?}\n{}",
        callback(server, "GET", id, Some(DEMO_KEY)),
        server.log_text()
    );
}

/// GES appends callback requests to the tenant's stream: each waits in its virtual queue
/// (reported, with its place, by `GET /callbacks/{id}`; cancelled by `DELETE`); once an
/// agent is Ready, the agent's phone is called, then the customer through the carrier's
/// trunk, and the outcome is on the call stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ges_callback_calls_the_agent_then_the_customer() {
    let url = support::redis_db(33);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--redis", &url]);
    let mut sipps = Running(Vec::new());
    // The customer, reached through the demo trunk's gateway.
    sipps
        .0
        .push(answering_phone(dir.path(), "customer", "127.0.0.2", 5070));
    let phone_port = support::free_port();
    register(&server, dir.path(), "1003", phone_port);
    sipps
        .0
        .push(answering_phone(dir.path(), "1003", "127.0.0.1", phone_port));
    let mut agents = Agents::new(support::grpc(&server).await);
    log_in(&mut agents, &["1003"], false).await;

    let mut conn = support::redis(&url);
    // cb-2 comes from a GES that still writes the stream's name before the hash tags, which
    // is read as well for one release.
    for (id, target, stream) in [
        ("cb-1", "english >= 3", "sb:{demo}:ges-callbacks"),
        ("cb-2", "english >= 3", "sb:demo:ges-callbacks"),
        ("cb-3", "french >= 3", "sb:{demo}:ges-callbacks"),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(&[
                ("id", id),
                ("customer", "915551230000"),
                ("queue", "support"),
                ("target", target),
                ("priority", "5"),
                ("userData", r#"{"GCB_reason": "billing question"}"#),
            ])
            .query(&mut conn)
            .expect("xadd");
    }
    // A target naming a skill the tenant does not have is refused, with the reason.
    let refused = callback_in(&server, "cb-3", "failed", &[]).await;
    assert_eq!(refused["reason"], r#"unknown skill "french""#, "{refused}");
    let first = callback_in(&server, "cb-1", "queued", &[]).await;
    assert_eq!(first["position"], 1, "{first}");
    assert_eq!(
        callback_in(&server, "cb-2", "queued", &[]).await["position"],
        2
    );
    let (code, cancelled) = callback(&server, "DELETE", "cb-2", Some(DEMO_KEY));
    assert_eq!(
        (code, &cancelled["state"]),
        (200, &serde_json::json!("cancelled"))
    );
    assert_eq!(callback(&server, "GET", "nonesuch", Some(DEMO_KEY)).0, 404);
    assert_eq!(callback(&server, "GET", "cb-1", None).0, 401);

    // a1003 is Ready: its phone is called, then the customer.
    ready(&mut agents, "1003").await;
    let dialing = callback_in(&server, "cb-1", "dialing", &["callId"]).await;
    assert_eq!(dialing["agent"], "a1003", "{dialing}");
    let call_id = dialing["callId"]
        .as_str()
        .expect("the call placed")
        .to_owned();
    let mut established = false;
    for _ in 0..50 {
        established = events(&url)
            .iter()
            .any(|(kind, p)| kind == "Established" && p["callId"] == call_id.as_str());
        if established {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = events(&url);
    assert!(established, "the customer answered: {events:#?}");
    let of = |id: &str| -> Vec<&str> {
        events
            .iter()
            .filter(|(k, p)| k.starts_with("Callback") && p["userData"]["GCB_id"] == id)
            .map(|(k, _)| k.as_str())
            .collect()
    };
    assert_eq!(of("cb-1"), ["CallbackQueued", "CallbackDialed"]);
    assert_eq!(of("cb-2"), ["CallbackQueued", "CallbackCancelled"]);
    assert_eq!(of("cb-3"), ["CallbackFailed"]);
    let (_, dialed) = events
        .iter()
        .find(|(k, _)| k == "CallbackDialed")
        .expect("dialed");
    assert_eq!(
        support::parties(dialed),
        [("origination", "1003"), ("destination", "915551230000")]
    );
    let (_, call) = events
        .iter()
        .find(|(k, p)| k == "Established" && p["callId"] == call_id.as_str())
        .expect("established");
    // The agent's phone placed it, to the customer.
    assert_eq!(
        support::parties(call),
        [("origination", "1003"), ("destination", "15551230000")],
        "{call}"
    );
    assert_eq!(call["userData"]["GCB_id"], "cb-1");
    assert_eq!(call["userData"]["GCB_reason"], "billing question");
}

/// A node that read a callback request and died before acknowledging it leaves the request
/// pending in the group; another node claims it (XAUTOCLAIM) once it has been idle long
/// enough, and queues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_request_left_by_a_reader_that_died_is_claimed() {
    let url = support::redis_db(37);
    let mut conn = support::redis(&url);
    let stream = "sb:{demo}:ges-callbacks";
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", stream, "switchboard", "0", "MKSTREAM"])
        .query(&mut conn)
        .expect("group");
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(&[
            ("id", "cb-orphan"),
            ("customer", "915551230000"),
            ("queue", "support"),
            ("target", "english >= 3"),
            ("priority", "5"),
        ])
        .query(&mut conn)
        .expect("xadd");
    // The node that died: it read the request and never acknowledged it.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP",
            "switchboard",
            "node-that-died",
            "COUNT",
            "10",
            "STREAMS",
            stream,
            ">",
        ])
        .query(&mut conn)
        .expect("read");

    let server =
        Server::start_with_config(Some("[events]\nclaim_idle_ms = 500\n"), &["--redis", &url]);
    let taken = callback_in(&server, "cb-orphan", "queued", &[]).await;
    assert_eq!(taken["position"], 1, "{taken}");
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(&[stream, "switchboard"])
        .query(&mut conn)
        .expect("pending");
    assert_eq!(pending.0, 0, "claimed and acknowledged");
    assert!(server.log_text().contains("taken over"));
}

/// A node alone stopped with SIGTERM ends what nobody can carry on: the caller waiting on
/// music and the media server each get a BYE, both parties of an established call a BYE, and
/// each call its `Released` with cause `shutdown`, before the node exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_alone_stopped_with_sigterm_ends_its_calls_on_every_leg() {
    let url = support::redis_db(58);
    let playing = unbound_peer();
    let addr = playing.local_addr().expect("addr");
    let mut server = Server::start_with_config(Some(&config(&[addr], |_| {})), &["--redis", &url]);
    let playing = Peer::on(playing, &server);
    let p1001 = raw_phone(&server, "1001");
    let sbc = Peer::sbc(&server);

    // A caller on music, no agent Ready.
    caller_on_music(&server, &sbc, &playing, "waits");
    // A call to 1001, answered.
    let (_, talks) = support::peer::answered_call(&server, &sbc, &p1001, "1001", "talks");
    sbc.send(&sbc_in_dialog(&sbc, &server, &talks, "talks", "ACK", 1, ""));
    let mut conn = support::redis(&url);
    assert!(support::eventually(Duration::from_secs(5), || {
        let kinds: Vec<String> = call_events(&mut conn).into_iter().map(|(k, _)| k).collect();
        kinds.contains(&"Queued".to_owned()) && kinds.contains(&"Established".to_owned())
    }));

    let stopped = std::process::Command::new("kill")
        .arg(server.pid().to_string())
        .status()
        .expect("kill");
    assert!(stopped.success());
    let mut ended = Vec::new();
    for _ in 0..2 {
        let bye = sbc
            .request(Method::Bye, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("the caller hears the end\n{}", server.log_text()));
        sbc.answer(&bye, 200, None);
        ended.push(bye.headers.call_id().expect("Call-ID").to_string());
    }
    ended.sort();
    assert_eq!(ended, ["talks", "waits"]);
    for (peer, what) in [
        (&playing, "the music ends"),
        (&p1001, "the agent's phone hangs up"),
    ] {
        let bye = peer
            .request(Method::Bye, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{what}\n{}", server.log_text()));
        peer.answer(&bye, 200, None);
    }
    server.terminate();
    // Each call closed once, saying why.
    let events = call_events(&mut conn);
    let closing: Vec<(&str, &str)> = events
        .iter()
        .filter(|(k, _)| k == "Released" || k == "Abandoned")
        .map(|(k, p)| (k.as_str(), p["cause"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        closing,
        [("Released", "shutdown"), ("Released", "shutdown")],
        "{events:#?}"
    );
}

/// A node alone restarted (killed, and started again on its SIP port, with Redis) while a
/// caller waits in a queue on music: the new node adopts the call from the snapshot the dead
/// one left, the caller stays on the media server, and the next agent Ready is put through
/// to it, the call's age kept from before the restart; then it ends as any call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_in_a_queue_lives_on_when_its_node_restarts() {
    let url = support::redis_db(62);
    let playing = unbound_peer();
    let addr = playing.local_addr().expect("addr");
    let demo_config = config(&[addr], |_| {});
    let args = ["--redis", url.as_str()];
    let server = Server::start_with_config(Some(&demo_config), &args);
    let playing = Peer::on(playing, &server);
    let p1003 = raw_phone(&server, "1003");
    log_in(
        &mut Agents::new(support::grpc(&server).await),
        &["1003"],
        false,
    )
    .await;
    let sbc = Peer::sbc(&server);
    let began = std::time::Instant::now();
    let ok = caller_on_music(&server, &sbc, &playing, "outlives");
    playing
        .request(Method::Ack, Duration::from_secs(5))
        .expect("the media server's answer is acknowledged");
    // Both written, and with them the snapshot of the caller answered on music (the order
    // to queue may come before the media server answers; the node is killed right after).
    events_until(&url, |kinds| {
        kinds.contains(&"Queued") && kinds.contains(&"TreatmentApplied")
    })
    .await;

    let server = server.restart(Some(&demo_config), &args);
    let before_restart = began.elapsed();
    assert!(
        support::eventually(Duration::from_secs(15), || server
            .log_text()
            .contains("call adopted")),
        "the call is adopted\n{}",
        server.log_text()
    );

    // The caller waited on: the agent made Ready is rung for it, and takes it over from
    // the music (the caller's dialog and the media server's, as the dead node left them).
    let mut agents = Agents::new(support::grpc(&server).await);
    ready(&mut agents, "1003").await;
    let invite = invite_within(&p1003, "a1003 is rung for the adopted call", &server);
    p1003.answer(&invite, 200, Some(&sdp(5003)));
    let reinvite = sbc
        .request(Method::Invite, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the caller is offered the agent\n{}", server.log_text()));
    assert!(String::from_utf8_lossy(&reinvite.body).contains("m=audio 5003"));
    sbc.answer(&reinvite, 200, Some(&sdp(4000)));
    p1003
        .request(Method::Ack, Duration::from_secs(5))
        .expect("the agent gets the caller's answer");
    let bye = playing
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the music ends once the agent has the caller");
    playing.answer(&bye, 200, None);

    // The caller hangs up: the agent's phone hears it.
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "outlives", "BYE", 2, ""));
    let answered = sbc
        .final_response(Duration::from_secs(5))
        .expect("the caller's BYE is answered");
    assert_eq!(answered.status, 200);
    let bye = p1003
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the agent's phone is hung up");
    p1003.answer(&bye, 200, None);

    let events = events_until(&url, |kinds| kinds.last() == Some(&"Released")).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "Released").count(),
        1,
        "{kinds:?}"
    );
    let (_, used) = events
        .iter()
        .find(|(k, _)| k == "RouteUsed")
        .unwrap_or_else(|| panic!("RouteUsed: {kinds:?}"));
    let waited: u128 = used["durationMs"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("the call's age");
    assert!(
        waited >= before_restart.as_millis(),
        "the call's age is kept: {waited} ms, {before_restart:?} before the restart"
    );
}
