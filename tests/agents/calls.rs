//! The calls of an agent's DN controlled from its desktop: what the call's state does not
//! allow, make call, single-step and attended transfers (from the desktop and the phone), remote
//! answer, alternate and reconnect, a SIPp phone held and retrieved.

use super::*;

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
