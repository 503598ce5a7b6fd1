//! Real-time statistics (issue 22) of calls through the demo queue, as supervisors read them
//! over gRPC with a key that reads statistics only: exactly what the events say, on every
//! node.

use std::collections::HashMap;
use std::time::Duration;

use super::support::browser::Browser;
use super::support::peer::{Peer, raw_phone, sbc_in_dialog, sdp};
use super::support::{self, DEMO_KEY, Server, agent, log_in, with_key};
use super::{Agents, caller_on_music, config, invite_within, ready, unbound_peer};
use switchboard_proto::voice as pb;
use switchboard_sip::{Method, Response};

/// Agent `dn` made Ready takes the caller waiting on music: its phone rings and answers, the
/// caller is offered the agent, the music ends.
async fn agent_takes_the_caller(
    server: &Server,
    agents: &mut Agents,
    dn: &str,
    phone: &Peer,
    sbc: &Peer,
    playing: &Peer,
) {
    ready(agents, dn).await;
    let invite = invite_within(phone, "the agent is rung", server);
    phone.answer(&invite, 200, Some(&sdp(5003)));
    let reinvite = sbc
        .request(Method::Invite, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the caller is offered the agent\n{}", server.log_text()));
    sbc.answer(&reinvite, 200, Some(&sdp(4000)));
    phone
        .request(Method::Ack, Duration::from_secs(5))
        .expect("the agent gets the caller's answer");
    let bye = playing
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the music ends");
    playing.answer(&bye, 200, None);
    // Not Ready for the next caller.
    agents
        .not_ready(with_key(
            DEMO_KEY,
            pb::NotReadyRequest {
                agent_id: format!("a{dn}"),
                ..Default::default()
            },
        ))
        .await
        .expect("not ready");
}

/// The caller `call_id` (answered with `ok`) hangs up; `phone`, the party it talks to, hears
/// it.
fn caller_hangs_up(server: &Server, sbc: &Peer, ok: &Response, call_id: &str, phone: &Peer) {
    sbc.send(&sbc_in_dialog(sbc, server, ok, call_id, "BYE", 2, ""));
    let bye = phone
        .request(Method::Bye, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the other party hears the end\n{}", server.log_text()));
    phone.answer(&bye, 200, None);
    let done = sbc
        .final_response(Duration::from_secs(5))
        .expect("the caller's BYE is answered");
    assert_eq!(done.status, 200);
}

/// The demo tenant's statistics from `server`, read with the wallboard's key (statistics
/// only).
async fn stats_of(server: &Server) -> pb::TenantStats {
    pb::stats_client::StatsClient::new(support::grpc(server).await)
        .get_stats(with_key("demo-wallboard-key", pb::StatsRequest::default()))
        .await
        .expect("statistics")
        .into_inner()
}

/// What two nodes must agree on: every count, and the agents' states (not the time, which
/// runs).
fn counted(s: &pb::TenantStats) -> String {
    let mut s = s.clone();
    s.at_ms = 0;
    s.longest_wait_ms = 0;
    for a in &mut s.agents {
        a.time_in_state_ms = 0;
        if let Some(p) = a.figures.as_mut() {
            for f in [p.last_15_minutes.as_mut(), p.today.as_mut()]
                .into_iter()
                .flatten()
            {
                f.occupancy = None;
            }
        }
    }
    for p in std::iter::once(s.figures.as_mut())
        .chain(s.queues.iter_mut().map(|q| q.figures.as_mut()))
        .chain(s.groups.iter_mut().map(|g| g.figures.as_mut()))
        .flatten()
    {
        for f in [p.last_15_minutes.as_mut(), p.today.as_mut()]
            .into_iter()
            .flatten()
        {
            f.occupancy = None;
        }
    }
    for q in &mut s.queues {
        q.longest_wait_ms = 0;
    }
    format!("{s:?}")
}

/// Five calls to the support queue of a node with a second node beside it (service level 2 s,
/// short abandons within 1 s): answered at once, answered after 2.4 s, abandoned after a
/// moment, abandoned after 1.5 s, answered at once and transferred. The statistics give
/// exactly the counts, service level and averages computed from the events' own times, on
/// both nodes; after the owner is killed and the other takes over, the node started in its
/// place serves the same figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_calls_as_computed_by_hand_on_every_node() {
    let store = support::store::Store::db(50);
    let playing = unbound_peer();
    let addr = playing.local_addr().expect("addr");
    let tenants = config(&[addr], |demo| {
        demo.stats.service_level_secs = 2;
        demo.stats.short_abandon_secs = 1;
    });
    let text = format!(
        "{}[cluster]\nlease_ms = 1500\nlease_claim_ms = 100\n{tenants}",
        store.config()
    );
    let owns =
        |s: &Server| support::metric(s, r#"switchboard_tenant_owned{tenant="demo"}"#) == Some(1.0);
    let a = Server::start_with_config(Some(&text), &["--redis", store.url()]);
    assert!(
        support::eventually(Duration::from_secs(10), || owns(&a)),
        "{}",
        a.log_text()
    );
    let b = Server::start_with_config(Some(&text), &["--redis", store.url()]);
    let playing = Peer::on(playing, &a);
    let (p1001, p1003, p1004) = (
        raw_phone(&a, "1001"),
        raw_phone(&a, "1003"),
        raw_phone(&a, "1004"),
    );
    let mut agents = Agents::new(support::grpc(&a).await);
    log_in(&mut agents, &["1003", "1004"], false).await;
    let sbc = Peer::sbc(&a);
    let on_music = |call_id: &str| {
        let ok = caller_on_music(&a, &sbc, &playing, call_id);
        playing
            .request(Method::Ack, Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "{call_id}: the music's answer is acknowledged\n{}",
                    a.log_text()
                )
            });
        ok
    };

    // Answered at once, talks a moment.
    let ok = on_music("fast");
    agent_takes_the_caller(&a, &mut agents, "1003", &p1003, &sbc, &playing).await;
    std::thread::sleep(Duration::from_millis(300));
    caller_hangs_up(&a, &sbc, &ok, "fast", &p1003);
    // Answered after the service level's 2 s.
    let ok = on_music("late");
    std::thread::sleep(Duration::from_millis(2_400));
    agent_takes_the_caller(&a, &mut agents, "1004", &p1004, &sbc, &playing).await;
    caller_hangs_up(&a, &sbc, &ok, "late", &p1004);
    // Abandoned within the short-abandon threshold, and after it.
    for (call_id, waits) in [("short", 0), ("gave-up", 1_500)] {
        let ok = on_music(call_id);
        std::thread::sleep(Duration::from_millis(waits));
        caller_hangs_up(&a, &sbc, &ok, call_id, &playing);
    }
    // Answered at once, then sent on to 1001 from the desktop.
    let ok = on_music("moved");
    agent_takes_the_caller(&a, &mut agents, "1003", &p1003, &sbc, &playing).await;
    std::thread::sleep(Duration::from_millis(200));
    let mut calls = pb::calls_client::CallsClient::new(support::grpc(&a).await);
    let call = calls
        .list_calls(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("the agent's calls")
        .into_inner()
        .calls
        .remove(0)
        .call_id;
    calls
        .single_step_transfer(with_key(
            DEMO_KEY,
            pb::TransferRequest {
                agent_id: "a1003".into(),
                call_id: call,
                destination: "1001".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("single-step transfer");
    let bye = p1003
        .request(Method::Bye, Duration::from_secs(5))
        .expect("the agent leaves");
    p1003.answer(&bye, 200, None);
    let rung = invite_within(&p1001, "1001 rings", &a);
    p1001.answer(&rung, 200, Some(&sdp(5001)));
    let reinvite = sbc
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the caller is offered 1001");
    sbc.answer(&reinvite, 200, Some(&sdp(4000)));
    caller_hangs_up(&a, &sbc, &ok, "moved", &p1001);

    // The figures by hand, from the events' times.
    let entries = || {
        let mut conn = store.conn();
        support::stream_entries(&mut *conn, &store.key("voice-callthread"))
    };
    assert!(
        support::eventually(Duration::from_secs(5), || entries()
            .iter()
            .filter(|e| e["kind"] == "Released")
            .count()
            == 3),
        "every call over"
    );
    let mut at: HashMap<(String, String), u64> = HashMap::new();
    for e in entries() {
        let payload: serde_json::Value = serde_json::from_str(&e["payload"]).expect("JSON");
        let call = payload["callId"].as_str().expect("call").to_owned();
        at.entry((call, e["kind"].clone()))
            .or_insert(e["at"].parse().expect("at"));
    }
    let calls: Vec<String> = {
        let mut ids: Vec<String> = at
            .keys()
            .filter(|(_, k)| k == "Queued")
            .map(|(c, _)| c.clone())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(calls.len(), 5, "{at:?}");
    let time = |call: &str, kind: &str| at.get(&(call.to_owned(), kind.to_owned())).copied();
    let (mut speeds, mut handles, mut in_time, mut late_abandons, mut short) =
        (Vec::new(), Vec::new(), 0, 0, 0);
    for c in &calls {
        let queued = time(c, "Queued").expect("queued");
        if let Some(answered) = time(c, "Established") {
            speeds.push(answered - queued);
            in_time += u64::from(answered - queued <= 2_000);
            let over = time(c, "PartyChanged")
                .or(time(c, "Released"))
                .expect("over");
            handles.push(over - answered);
        } else if let Some(gone) = time(c, "Abandoned") {
            if gone - queued <= 1_000 {
                short += 1;
            } else {
                late_abandons += 1;
            }
        }
    }
    // As scripted, unless the machine is so slow that an answer at once took 2 s.
    assert_eq!((speeds.len(), short + late_abandons), (3, 2));
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    let expected = pb::Figures {
        offered: 5,
        answered: 3,
        answered_in_time: in_time,
        abandoned: 2,
        short_abandoned: short,
        transfers: 1,
        handled: 3,
        service_level: Some(in_time as f64 / (3 + late_abandons) as f64),
        average_speed_of_answer_ms: Some(sum(&speeds) / 3),
        average_handle_ms: Some(sum(&handles) / 3),
        occupancy: None,
    };
    let figures_of = |s: &pb::TenantStats| {
        let support = s
            .queues
            .iter()
            .find(|q| q.queue == "support")
            .expect("queue");
        let mut today = support.figures.expect("figures").today.expect("today");
        today.occupancy = None;
        today
    };
    // Over gRPC as over HTTP: no key, another tenant, a queue the tenant lacks.
    let mut api = pb::stats_client::StatsClient::new(support::grpc(&a).await);
    let refused =
        |r: Result<tonic::Response<pb::TenantStats>, tonic::Status>| r.expect_err("refused").code();
    let bare = api.get_stats(pb::StatsRequest::default()).await;
    assert_eq!(refused(bare), tonic::Code::Unauthenticated);
    let other = pb::StatsRequest {
        tenant: "acme".into(),
        ..Default::default()
    };
    let other = api.get_stats(with_key("demo-wallboard-key", other)).await;
    assert_eq!(refused(other), tonic::Code::PermissionDenied);
    let lacking = pb::StatsRequest {
        queue: "nonesuch".into(),
        ..Default::default()
    };
    let lacking = api.get_stats(with_key(DEMO_KEY, lacking)).await;
    assert_eq!(refused(lacking), tonic::Code::NotFound);

    let on_a = stats_of(&a).await;
    assert_eq!(figures_of(&on_a), expected, "{on_a:#?}");
    assert_eq!(
        (on_a.time_zone.as_str(), on_a.service_level_secs),
        ("UTC", 2)
    );
    let a1003 = on_a
        .agents
        .iter()
        .find(|x| x.agent_id == "a1003")
        .expect("a1003");
    assert_eq!(
        a1003
            .figures
            .as_ref()
            .and_then(|f| f.today)
            .map(|t| (t.answered, t.transfers)),
        Some((2, 1))
    );
    // The other node folded the same streams.
    let settled = async |node: &Server, like: &pb::TenantStats| {
        for _ in 0..50 {
            if counted(&stats_of(node).await) == counted(like) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(
        settled(&b, &on_a).await,
        "{:#?}\n{on_a:#?}",
        stats_of(&b).await
    );

    // The owner killed: b takes the tenant over; a node started in a's place agrees with it.
    let mut a = a;
    a.kill();
    assert!(
        support::eventually(Duration::from_secs(10), || owns(&b)),
        "{}",
        b.log_text()
    );
    let on_b = stats_of(&b).await;
    assert_eq!(figures_of(&on_b), expected);
    let again = Server::start_with_config(Some(&text), &["--redis", store.url()]);
    assert!(
        settled(&again, &on_b).await,
        "{:#?}\n{on_b:#?}",
        stats_of(&again).await
    );
}

/// The wallboard as a supervisor meets it, in headless Chromium: refused without a key, with
/// a key for another tenant or for a queue the tenant lacks; signed in with the wallboard's
/// key, it shows an agent logging in, a caller waiting, the call answered, live. A screenshot
/// of it is saved in the test's directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallboard_shows_queues_and_agents_live_in_a_browser() {
    let playing = unbound_peer();
    let addr = playing.local_addr().expect("addr");
    let server = Server::start_with_config(Some(&config(&[addr], |_| {})), &[]);
    let playing = Peer::on(playing, &server);

    // Bad keys and bad requests are refused, saying nothing of the figures.
    let ask = |path: &str, key: &str| {
        let auth = if key.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {key}\r\n")
        };
        let text = support::http_request(server.http, "GET", path, &auth).expect("http");
        (text[9..12].parse::<u16>().expect("status"), text)
    };
    for (path, key, status) in [
        ("/wallboard/stats", "", 401),
        ("/wallboard/stats", "not-a-key", 401),
        ("/wallboard/stats?tenant=acme", "demo-wallboard-key", 403),
        ("/wallboard/stats?queue=nonesuch", "demo-wallboard-key", 404),
        ("/wallboard/events", "", 401),
    ] {
        let (got, text) = ask(path, key);
        assert_eq!(got, status, "{path} with {key:?}: {text}");
        assert!(!text.contains("waiting"), "{text}");
    }
    let (ok, text) = ask("/wallboard/stats?queue=support", "demo-wallboard-key");
    assert_eq!(ok, 200, "{text}");
    assert!(text.contains(r#""queue":"support""#), "{text}");
    // A link signs a screen in as the form does; a bad key gets the form again.
    let (to_board, text) = ask("/wallboard/login?key=demo-wallboard-key", "");
    assert_eq!(to_board, 303, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("set-cookie: sb_wallboard=demo-wallboard-key; path=/wallboard; httponly"),
        "{text}"
    );
    let (bad, text) = ask("/wallboard/login?key=nope", "");
    assert_eq!(bad, 401, "{text}");
    assert!(text.contains("<form"), "{text}");

    // Signed in with the wallboard's key.
    let page = format!("http://{}/wallboard", server.http);
    let mut browser = Browser::open(&page, &["--window-size=1280,720".to_owned()]);
    let wait = |browser: &mut Browser, what: &str, expression: &str| {
        if let Err(last) = browser.wait_for(expression, Duration::from_secs(10)) {
            let board = browser.evaluate("document.body.innerText");
            panic!("{what}: {last}\n{board}\n{}", server.log_text());
        }
    };
    wait(
        &mut browser,
        "the login form",
        "document.querySelector('input[name=key]') !== null",
    );
    browser.evaluate(
        "document.querySelector('input[name=key]').value = 'demo-wallboard-key'; \
         document.querySelector('form').submit(); true",
    );
    let cell = |row: &str, field: &str| {
        format!("document.querySelector('{row} td[data-field=\"{field}\"]')")
    };
    let queue = r#"#queues tr[data-queue="support"]"#;
    let agent = r#"#agents tr[data-agent="a1003"]"#;
    wait(
        &mut browser,
        "the board",
        &format!("{}?.textContent === '0'", cell(queue, "waiting")),
    );

    // An agent logs in: shown NotReady.
    let p1003 = raw_phone(&server, "1003");
    let mut agents = Agents::new(support::grpc(&server).await);
    log_in(&mut agents, &["1003"], false).await;
    wait(
        &mut browser,
        "the agent logged in",
        &format!("{}?.dataset.state === 'NotReady'", cell(agent, "state")),
    );
    // A caller waits on music: one waiting.
    let sbc = Peer::sbc(&server);
    let ok = caller_on_music(&server, &sbc, &playing, "board");
    playing
        .request(Method::Ack, Duration::from_secs(5))
        .expect("the music's answer is acknowledged");
    wait(
        &mut browser,
        "the caller waiting",
        &format!("{}?.textContent === '1'", cell(queue, "waiting")),
    );
    // The agent takes it: answered, the agent on the call.
    agent_takes_the_caller(&server, &mut agents, "1003", &p1003, &sbc, &playing).await;
    wait(
        &mut browser,
        "the call answered",
        &format!(
            "{}?.textContent === '1' && {}?.textContent === '0' && {}?.dataset.state === 'OnCall'",
            cell(queue, "answered"),
            cell(queue, "waiting"),
            cell(agent, "state")
        ),
    );
    wait(
        &mut browser,
        "a whole service level",
        &format!("{}?.textContent === '100 %'", cell(queue, "serviceLevel")),
    );
    let shot = browser.screenshot();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG image");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("wallboard.png"), &shot).expect("screenshot saved");
    if let Ok(to) = std::env::var("SWITCHBOARD_WALLBOARD_SHOT") {
        std::fs::write(to, &shot).expect("screenshot copied");
    }
    caller_hangs_up(&server, &sbc, &ok, "board", &p1003);
    wait(
        &mut browser,
        "the call over",
        &format!("{}?.dataset.state === 'NotReady'", cell(agent, "state")),
    );
}
