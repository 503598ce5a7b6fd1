//! Recording calls on a media server controlled by MSML, with real SIP peers for the SBC,
//! the agent's phone and the media server: from the desktop with pause and resume, and by a
//! DN's configuration from the call's answer; each step the MSML the media server receives.

use super::monitor::{body, connections, msml, until};
use super::*;

fn on(agent: &str, call: &str) -> pb::CallRequest {
    pb::CallRequest {
        agent_id: agent.into(),
        call_id: call.into(),
        ..Default::default()
    }
}

/// a1003's call is recorded from the desktop: the call moves onto a conference (two
/// connections joined in MSML), the conference is recorded to the tenant's URI, paused,
/// resumed and stopped, and the parties talk directly again. A call to DN 1007, whose
/// configuration records its calls, is recorded from its answer; so is a call to the support
/// line, whose strategy says `record`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_recorded_from_the_desktop_and_by_configuration() {
    let url = support::redis_db(45);
    let config = config_with(0, "", |demo| {
        demo.media_servers[0].address = "127.0.0.3:5098".into();
        demo.media_servers[0]
            .options
            .insert("control".into(), "msml".into());
        demo.options.insert(
            "recording-uri".into(),
            "file:///rec/{tenant}/{call}.wav".into(),
        );
        demo.dns[6].options.insert("record".into(), "true".into());
        // The support line's strategy records, and routes to DN 1009.
        demo.strategies[0].document = "record\nroute dn 1009\n".into();
    });
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let mut calls = Calls::new(channel.clone());
    let agent_phone = raw_phone(&server, "1003");
    let recorded_phone = raw_phone(&server, "1007");
    let routed_phone = raw_phone(&server, "1009");
    let media = Peer::on(
        std::net::UdpSocket::bind("127.0.0.3:5098").expect("the media server's address"),
        &server,
    );
    log_in(&mut agents, &["1003"], false).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let sbc = Peer::sbc(&server);
    let (_, ok) = answered_call(&server, &sbc, &agent_phone, "1003", "rec-1");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rec-1", "ACK", 1, ""));
    let answered = until(&mut stream, "call Established").await;
    let call = call_of(answered.last().expect("established"))
        .call_id
        .clone();

    // Pause before any recording: refused.
    refused(
        calls
            .pause_recording(with_key(DEMO_KEY, on("a1003", &call)))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(kinds(&take(&mut stream, 1).await), ["error EventError"]);

    calls
        .start_recording(with_key(DEMO_KEY, on("a1003", &call)))
        .await
        .expect("start");
    connections(&media, 0, 2);
    let made = msml(&media, 4);
    assert!(made[0].contains(&format!("<createconference name=\"{call}\"")));
    assert!(made[1].contains("<join id1=\"conn:ms0\""));
    assert!(made[2].contains("<join id1=\"conn:ms1\""));
    let uri = format!("file:///rec/demo/{call}.wav");
    assert!(
        made[3].contains(&format!(
            "<dialogstart target=\"conf:{call}\" type=\"application/moml+xml\" name=\"record\">\n    <record dest=\"{uri}\""
        )),
        "{}",
        made[3]
    );
    answer_invites(&sbc, 1, 4000);
    answer_invites(&agent_phone, 1, 5000);
    let started = until(&mut stream, "call RecordingStarted").await;
    let started = call_of(started.last().expect("started"));
    assert_eq!(started.recording_uri, uri);
    assert_eq!(started.recording_id, format!("conf:{call}/dialog:record"));

    calls
        .pause_recording(with_key(DEMO_KEY, on("a1003", &call)))
        .await
        .expect("pause");
    let pause = msml(&media, 1).remove(0);
    assert!(pause.contains(&format!(
        "<send target=\"conf:{call}/dialog:record\" event=\"pause\""
    )));
    until(&mut stream, "call RecordingPaused").await;
    calls
        .resume_recording(with_key(DEMO_KEY, on("a1003", &call)))
        .await
        .expect("resume");
    assert!(msml(&media, 1)[0].contains("event=\"resume\""));
    until(&mut stream, "call RecordingResumed").await;
    calls
        .stop_recording(with_key(DEMO_KEY, on("a1003", &call)))
        .await
        .expect("stop");
    assert!(msml(&media, 1)[0].contains(&format!("<dialogend id=\"conf:{call}/dialog:record\"/>")));
    until(&mut stream, "call RecordingStopped").await;
    answer_byes(&media, 2);
    let to_caller = answer_invites(&sbc, 1, 4000).remove(0);
    assert!(
        body(&to_caller).contains("m=audio 5000"),
        "talking directly again"
    );
    answer_invites(&agent_phone, 1, 5000);
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rec-1", "BYE", 2, ""));
    answer_byes(&agent_phone, 1);
    until(&mut stream, "call Released").await;
    let bye_ok = sbc.final_response(Duration::from_secs(5));
    assert_eq!(bye_ok.map(|r| r.status), Some(200));

    // DN 1007 records its calls: from the answer on, without asking.
    let (_, ok) = answered_call(&server, &sbc, &recorded_phone, "1007", "rec-2");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rec-2", "ACK", 1, ""));
    connections(&media, 2, 2);
    let made = msml(&media, 4);
    assert!(made[3].contains("<dialogstart"), "{}", made[3]);
    answer_invites(&sbc, 1, 4000);
    answer_invites(&recorded_phone, 1, 5000);
    until(&mut stream, "call RecordingStarted").await;
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rec-2", "BYE", 2, ""));
    answer_byes(&recorded_phone, 1);
    answer_byes(&media, 2);
    let ended = until(&mut stream, "call Released").await;
    let stopped = ended
        .iter()
        .find(|s| s.1 == "RecordingStopped")
        .expect("the recording is reported over with the call");
    assert_eq!(call_of(stopped).cause, "call-ended");
    let bye_ok = sbc.final_response(Duration::from_secs(5));
    assert_eq!(bye_ok.map(|r| r.status), Some(200));

    // The support line's strategy records: from the answer of the DN it routes to.
    let (_, ok) = answered_call(&server, &sbc, &routed_phone, "+18005550100", "rec-3");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rec-3", "ACK", 1, ""));
    connections(&media, 4, 2);
    let made = msml(&media, 4);
    let call = call_of(
        until(&mut stream, "call Established")
            .await
            .last()
            .expect("established"),
    )
    .call_id
    .clone();
    assert!(made[0].contains(&format!("<createconference name=\"{call}\"")));
    assert!(made[1].contains("<join id1=\"conn:ms4\""));
    assert!(made[2].contains("<join id1=\"conn:ms5\""));
    assert!(
        made[3].contains(&format!("<record dest=\"file:///rec/demo/{call}.wav\"")),
        "{}",
        made[3]
    );
    answer_invites(&sbc, 1, 4000);
    answer_invites(&routed_phone, 1, 5000);
    until(&mut stream, "call RecordingStarted").await;
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "rec-3", "BYE", 2, ""));
    answer_byes(&routed_phone, 1);
    answer_byes(&media, 2);
    until(&mut stream, "call Released").await;
}
