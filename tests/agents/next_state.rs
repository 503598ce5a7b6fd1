//! The agent's next state: a Logout or NotReady asked during a call is kept, shown on the
//! desktop's events, replaced by a later one or cancelled by Ready, and taken when the call
//! ends, or when its after-call work ends.

use super::*;

/// What the agent's event says it will become: (next state, its reason).
fn next_of(seen: &Seen) -> (String, String) {
    let a = agent_of(seen);
    (a.next_state.clone(), a.next_reason.clone())
}

fn not_ready(id: &str, reason: &str) -> pb::NotReadyRequest {
    pb::NotReadyRequest {
        agent_id: id.into(),
        reason: reason.into(),
        work_mode: pb::WorkMode::AuxWork.into(),
        ..Default::default()
    }
}

/// a1003 (no after-call work) takes a call; during it the desktop asks Logout, then NotReady
/// (which replaces it), then Ready (which cancels it), then Logout again: each is an
/// AgentNextState, the agent stays Ready on its call. The caller hangs up: OnHook, then the
/// Logout, and the DN is free for another agent. a1005 (one second of after-call work) asks
/// NotReady during its call: after the call comes its after-call work, then the NotReady.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_or_not_ready_asked_during_a_call_is_taken_at_its_end_and_ready_cancels_it() {
    let url = support::redis_db(42);
    let config = config_with(0, "", |demo| {
        demo.agents[4].wrap_up_secs = Some(1);
    });
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let first = raw_phone(&server, "1003");
    let second = raw_phone(&server, "1005");
    log_in(&mut agents, &["1003", "1005"], true).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let sbc = Peer::sbc(&server);

    let (_, ok) = answered_call(&server, &sbc, &first, "1003", "next-1");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "next-1", "ACK", 1, ""));
    let got = take(&mut stream, 3).await;
    assert_eq!(
        kinds(&got),
        ["dn OffHook", "call Ringing", "call Established"]
    );

    agents
        .logout(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("a Logout during a call is kept, not refused");
    let kept = take(&mut stream, 1).await;
    assert_eq!(kinds(&kept), ["agent AgentNextState"]);
    assert_eq!(next_of(&kept[0]), ("Logout".into(), String::new()));
    assert_eq!(agent_of(&kept[0]).state, "Ready", "still Ready on its call");
    assert_eq!(state(&mut agents, DEMO_KEY, "a1003").await, "Ready");

    agents
        .not_ready(with_key(DEMO_KEY, not_ready("a1003", "lunch")))
        .await
        .expect("not ready");
    let replaced = take(&mut stream, 1).await;
    assert_eq!(kinds(&replaced), ["agent AgentNextState"]);
    assert_eq!(next_of(&replaced[0]), ("NotReady".into(), "lunch".into()));
    assert_eq!(agent_of(&replaced[0]).next_work_mode, "AuxWork");

    agents
        .ready(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("ready");
    let cancelled = take(&mut stream, 2).await;
    assert_eq!(
        kinds(&cancelled),
        ["agent AgentNextState", "agent AgentReady"]
    );
    assert_eq!(next_of(&cancelled[0]), (String::new(), String::new()));

    agents
        .logout(with_key(DEMO_KEY, agent("a1003", "")))
        .await
        .expect("logout kept");
    assert_eq!(kinds(&take(&mut stream, 1).await), ["agent AgentNextState"]);
    // Another agent cannot take the DN while a1003 is still on it.
    refused(
        agents
            .login(with_key(DEMO_KEY, login("a1009", "1003")))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(kinds(&take(&mut stream, 1).await), ["error EventError"]);

    // The caller hangs up: the call's end takes the Logout.
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "next-1", "BYE", 2, ""));
    answer_byes(&first, 1);
    let bye_ok = sbc.final_response(Duration::from_secs(5));
    assert_eq!(bye_ok.map(|r| r.status), Some(200));
    let ended = take(&mut stream, 3).await;
    assert_eq!(
        kinds(&ended),
        ["dn OnHook", "agent AgentLogout", "call Released"]
    );
    assert_eq!(next_of(&ended[1]), (String::new(), String::new()));
    assert_eq!(state(&mut agents, DEMO_KEY, "a1003").await, "LoggedOut");
    agents
        .login(with_key(DEMO_KEY, login("a1009", "1003")))
        .await
        .expect("the DN is free once a1003 is logged out");
    assert_eq!(kinds(&take(&mut stream, 1).await), ["agent AgentLogin"]);

    // a1005 has after-call work: its NotReady waits for the end of it.
    let (_, ok) = answered_call(&server, &sbc, &second, "1005", "next-2");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "next-2", "ACK", 1, ""));
    assert_eq!(
        kinds(&take(&mut stream, 3).await),
        ["dn OffHook", "call Ringing", "call Established"]
    );
    agents
        .not_ready(with_key(DEMO_KEY, not_ready("a1005", "break")))
        .await
        .expect("kept");
    assert_eq!(kinds(&take(&mut stream, 1).await), ["agent AgentNextState"]);
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "next-2", "BYE", 2, ""));
    answer_byes(&second, 1);
    let ended = take(&mut stream, 4).await;
    assert_eq!(
        kinds(&ended),
        [
            "agent AgentNotReady",
            "dn OnHook",
            "call Released",
            "agent AgentNotReady"
        ]
    );
    let wrap = agent_of(&ended[0]);
    assert_eq!(
        (wrap.state.as_str(), wrap.next_state.as_str()),
        ("AfterCallWork", "NotReady"),
        "after-call work first, the NotReady still kept"
    );
    let taken = agent_of(&ended[3]);
    assert_eq!(
        (
            taken.state.as_str(),
            taken.reason.as_str(),
            taken.work_mode.as_str(),
            taken.next_state.as_str()
        ),
        ("NotReady", "break", "AuxWork", "")
    );
    quiet(&mut stream).await;
}
