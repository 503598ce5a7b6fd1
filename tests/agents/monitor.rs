//! A supervisor monitoring an agent's call over the voice API, with real SIP peers for the
//! carrier's SBC, the agent's and the supervisor's phones and the media server (NETANN,
//! `conf=`): the refusals, listen, barge-in, the parties talking directly again after, and
//! an agent's next calls monitored from their answer.

use super::*;

pub(super) fn monitor(supervisor: &str, agent: &str, mode: pb::MonitorMode) -> pb::MonitorRequest {
    pb::MonitorRequest {
        supervisor_id: supervisor.into(),
        agent_id: agent.into(),
        mode: mode.into(),
        ..Default::default()
    }
}

pub(super) fn body(r: &switchboard_sip::Request) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Takes events until one of `kind` comes; those taken.
pub(super) async fn until(stream: &mut tokio::sync::mpsc::Receiver<Seen>, kind: &str) -> Vec<Seen> {
    let mut seen = Vec::new();
    loop {
        let next = take(stream, 1).await.remove(0);
        let done = format!("{} {}", next.0, next.1) == kind;
        seen.push(next);
        if done {
            return seen;
        }
    }
}

/// The peers' side of a supervisor coming in to listen: both parties' legs into the
/// conference and their re-INVITEs, the supervisor's phone called (told to answer by itself)
/// and answered, its leg into the conference receive-only, its phone offered the conference
/// send-only.
fn listening(media: &Peer, sbc: &Peer, agent_phone: &Peer, supervisor_phone: &Peer) {
    let joins = answer_invites(media, 2, 6000);
    for join in &joins {
        assert!(
            join.uri.to_string().starts_with("sip:conf="),
            "{}",
            join.uri
        );
    }
    assert!(
        body(&joins[0]).contains("m=audio 4000"),
        "the caller's own session"
    );
    assert!(
        body(&joins[1]).contains("m=audio 5000"),
        "the agent's own session"
    );
    let to_caller = answer_invites(sbc, 1, 4000).remove(0);
    let to_agent = answer_invites(agent_phone, 1, 5000).remove(0);
    assert!(body(&to_caller).contains("m=audio 6000"));
    assert!(body(&to_agent).contains("m=audio 6000"));
    let ring = supervisor_phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the supervisor's phone is called");
    assert!(ring.body.is_empty(), "without an offer");
    assert!(
        ring.headers
            .get(&switchboard_sip::HeaderName::CallInfo)
            .is_some_and(|v| v.contains("answer-after=0")),
        "told to answer by itself"
    );
    supervisor_phone.answer(&ring, 200, Some(&sdp(7000)));
    let hold = supervisor_phone
        .request(Method::Ack, Duration::from_secs(5))
        .expect("ACK");
    assert!(body(&hold).contains("a=inactive"));
    let join = answer_invites(media, 1, 6002).remove(0);
    assert!(body(&join).contains("m=audio 7000"));
    assert!(
        body(&join).contains("a=recvonly"),
        "not heard: {}",
        body(&join)
    );
    let hear = answer_invites(supervisor_phone, 1, 7000).remove(0);
    assert!(body(&hear).contains("m=audio 6002"));
    assert!(body(&hear).contains("a=sendonly"), "it hears only");
}

/// The peers' side of the supervisor leaving: its phone and the three legs into the
/// conference hung up, the parties offered each other's own sessions again.
fn left(media: &Peer, sbc: &Peer, agent_phone: &Peer, supervisor_phone: &Peer) {
    answer_byes(supervisor_phone, 1);
    answer_byes(media, 3);
    let to_caller = answer_invites(sbc, 1, 4000).remove(0);
    let to_agent = answer_invites(agent_phone, 1, 5000).remove(0);
    assert!(
        body(&to_caller).contains("m=audio 5000"),
        "{}",
        body(&to_caller)
    );
    assert!(
        body(&to_agent).contains("m=audio 4000"),
        "{}",
        body(&to_agent)
    );
}

/// a1003 takes a carrier's call. a1005, a supervisor, is refused what the tenant does not
/// allow (no permission, a forbidden agent, an agent without a call, an unknown agent,
/// whisper on a NETANN media server, another tenant), each an EventError; then listens
/// (both parties re-INVITEd into the conference, its own phone called and offered the
/// conference send-only, its leg into the conference receive-only), barges in (both of its
/// legs offered both ways), and leaves: the parties are offered each other's sessions again
/// and every leg into the conference is hung up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_listens_barges_in_and_leaves_an_agents_call() {
    let url = support::redis_db(43);
    let config = config_with(0, "", |demo| {
        demo.agents[4]
            .options
            .insert("supervisor".into(), "true".into());
        demo.agents[6]
            .options
            .insert("monitoring".into(), "forbidden".into());
        // A media server of its own: the other tests of this binary have theirs.
        demo.media_servers[0].address = "127.0.0.3:5094".into();
    });
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let channel = support::grpc(&server).await;
    let mut agents = Agents::new(channel.clone());
    let mut calls = Calls::new(channel.clone());
    let agent_phone = raw_phone(&server, "1003");
    let supervisor_phone = raw_phone(&server, "1005");
    let _forbidden_phone = raw_phone(&server, "1007");
    let media = Peer::on(
        std::net::UdpSocket::bind("127.0.0.3:5094").expect("the media server's address"),
        &server,
    );
    log_in(&mut agents, &["1003", "1005", "1007"], false).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let sbc = Peer::sbc(&server);
    let (_, ok) = answered_call(&server, &sbc, &agent_phone, "1003", "mon-1");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "mon-1", "ACK", 1, ""));
    let answered = take(&mut stream, 3).await;
    assert_eq!(
        kinds(&answered),
        ["dn OffHook", "call Ringing", "call Established"]
    );
    let call = call_of(&answered[2]).call_id.clone();

    // What the tenant does not allow.
    let mut other_tenant = monitor("a1005", "a1003", pb::MonitorMode::Listen);
    other_tenant.tenant = "acme".into();
    let refusals = [
        (
            monitor("a1003", "a1005", pb::MonitorMode::Listen),
            Code::PermissionDenied,
            "may not monitor",
        ),
        (
            monitor("a1005", "a1007", pb::MonitorMode::Listen),
            Code::PermissionDenied,
            "may not be monitored",
        ),
        (
            monitor("a1005", "a1009", pb::MonitorMode::Listen),
            Code::FailedPrecondition,
            "",
        ),
        (
            monitor("a1005", "nobody", pb::MonitorMode::Listen),
            Code::NotFound,
            "nobody",
        ),
        (
            monitor("a1005", "a1003", pb::MonitorMode::Whisper),
            Code::FailedPrecondition,
            "netann",
        ),
    ];
    for (request, code, says) in refusals {
        let why = refused(calls.monitor(with_key(DEMO_KEY, request)).await, code);
        assert!(why.contains(says), "{why}");
        assert_eq!(kinds(&take(&mut stream, 1).await), ["error EventError"]);
    }
    refused(
        calls.monitor(with_key(DEMO_KEY, other_tenant)).await,
        Code::PermissionDenied,
    );
    assert!(
        media.next(Duration::from_millis(200)).is_none(),
        "nothing asked of the media server"
    );

    // Listen.
    let ack = calls
        .monitor(with_key(
            DEMO_KEY,
            monitor("a1005", "a1003", pb::MonitorMode::Listen),
        ))
        .await
        .expect("monitor")
        .into_inner();
    assert_eq!(ack.call_id, call);
    listening(&media, &sbc, &agent_phone, &supervisor_phone);
    let started = until(&mut stream, "call PartyAdded").await;
    let names = kinds(&started);
    assert!(
        names.contains(&"call MonitoringStarted".to_owned()),
        "{names:?}"
    );
    let added = call_of(started.last().expect("PartyAdded"));
    let supervisor = added
        .parties
        .iter()
        .find(|p| p.role == "supervisor")
        .expect("the supervisor is a party");
    assert_eq!(
        (supervisor.dn.as_str(), supervisor.mode.as_str()),
        ("1005", "listen")
    );

    // Barge-in.
    calls
        .monitor(with_key(
            DEMO_KEY,
            monitor("a1005", "a1003", pb::MonitorMode::Barge),
        ))
        .await
        .expect("barge in");
    let to_ms = answer_invites(&media, 1, 6002).remove(0);
    assert!(body(&to_ms).contains("a=sendrecv"));
    let to_supervisor = answer_invites(&supervisor_phone, 1, 7000).remove(0);
    assert!(body(&to_supervisor).contains("a=sendrecv"));
    let changed = until(&mut stream, "call MonitoringChanged").await;
    assert_eq!(call_of(changed.last().expect("changed")).cause, "barge");

    // The supervisor leaves; the parties talk directly again.
    calls
        .stop_monitoring(with_key(
            DEMO_KEY,
            monitor("a1005", "a1003", pb::MonitorMode::Barge),
        ))
        .await
        .expect("stop");
    left(&media, &sbc, &agent_phone, &supervisor_phone);
    let stopped = until(&mut stream, "call MonitoringStopped").await;
    assert!(kinds(&stopped).contains(&"call PartyDeleted".to_owned()));
    refused(
        calls
            .stop_monitoring(with_key(
                DEMO_KEY,
                monitor("a1005", "a1003", pb::MonitorMode::Listen),
            ))
            .await,
        Code::FailedPrecondition,
    );

    // The call carries on to its end.
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "mon-1", "BYE", 2, ""));
    answer_byes(&agent_phone, 1);
    until(&mut stream, "call Released").await;
    let bye_ok = sbc.final_response(Duration::from_secs(5));
    assert_eq!(bye_ok.map(|r| r.status), Some(200));

    // Each of a1003's calls from the next one on: kept in its state, and its next call is
    // monitored from its answer.
    let mut next_calls = monitor("a1005", "a1003", pb::MonitorMode::Listen);
    next_calls.scope = pb::MonitorScope::NextCalls.into();
    calls
        .monitor(with_key(DEMO_KEY, next_calls.clone()))
        .await
        .expect("next calls");
    let kept = until(&mut stream, "agent AgentMonitoring").await;
    let state = agent_of(kept.last().expect("kept"));
    assert_eq!(
        (state.monitored_by.as_str(), state.monitor_mode.as_str()),
        ("1005", "listen")
    );
    let (_, ok) = answered_call(&server, &sbc, &agent_phone, "1003", "mon-2");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "mon-2", "ACK", 1, ""));
    listening(&media, &sbc, &agent_phone, &supervisor_phone);
    let started = until(&mut stream, "call PartyAdded").await;
    assert!(kinds(&started).contains(&"call MonitoringStarted".to_owned()));

    // Stopped: no longer for the next calls, nor for the call now.
    calls
        .stop_monitoring(with_key(DEMO_KEY, next_calls))
        .await
        .expect("stop next calls");
    left(&media, &sbc, &agent_phone, &supervisor_phone);
    let stopped = until(&mut stream, "call MonitoringStopped").await;
    let unmonitored = stopped
        .iter()
        .find(|s| s.1 == "AgentMonitoring")
        .expect("the agent's state says so");
    assert_eq!(agent_of(unmonitored).monitored_by, "");
    sbc.send(&sbc_in_dialog(&sbc, &server, &ok, "mon-2", "BYE", 2, ""));
    answer_byes(&agent_phone, 1);
    until(&mut stream, "call Released").await;
}

/// `peer` answers `request` 200 with tag `tag`, its Contact, and `body` of `content_type`.
pub(super) fn answer_with(
    peer: &Peer,
    request: &switchboard_sip::Request,
    tag: &str,
    content_type: &str,
    body: &str,
) {
    let contact = format!("<sip:ms@{}>", peer.socket.local_addr().expect("addr"));
    let mut r = switchboard_sip::Response::to_request(&request.headers, 200)
        .with_to_tag(tag)
        .with_header(switchboard_sip::HeaderName::Contact, contact);
    if !body.is_empty() {
        r = r.with_header(switchboard_sip::HeaderName::ContentType, content_type);
        r.body = bytes::Bytes::from(body.to_owned());
    }
    peer.send_bytes(&r.to_bytes());
}

/// The media server answers the next `n` INVITEs, each as a connection of its own (tags
/// `ms<first>`, `ms<first+1>`...), with a session on port 6000 and up.
pub(super) fn connections(media: &Peer, first: usize, n: usize) -> Vec<switchboard_sip::Request> {
    (first..first + n)
        .map(|i| {
            let invite = media
                .request(Method::Invite, Duration::from_secs(5))
                .expect("an INVITE");
            answer_with(
                media,
                &invite,
                &format!("ms{i}"),
                "application/sdp",
                &sdp(6000 + i as u16),
            );
            invite
        })
        .collect()
}

/// The media server answers the next `n` MSML requests with a result of 200; their bodies.
pub(super) fn msml(media: &Peer, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let info = media
                .request(Method::Info, Duration::from_secs(5))
                .expect("an MSML INFO");
            let result = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<msml version=\"1.1\"><result response=\"200\"/></msml>\n";
            answer_with(media, &info, "", "application/msml+xml", result);
            body(&info)
        })
        .collect()
}

/// A node on Redis database `db` whose media server, at 127.0.0.3:`port`, is controlled by
/// MSML, and whose a1005 is a supervisor.
pub(super) fn msml_node(db: u8, port: u16) -> Server {
    let url = support::redis_db(db);
    let config = config_with(0, "", |demo| {
        demo.agents[4]
            .options
            .insert("supervisor".into(), "true".into());
        demo.media_servers[0].address = format!("127.0.0.3:{port}");
        demo.media_servers[0]
            .options
            .insert("control".into(), "msml".into());
    });
    Server::start_with_config(Some(&config), &["--redis", &url])
}

/// An agent's call on a node: a1003 and a1005 logged in with their phones, the tenant's
/// events followed, and a carrier's call (SIP Call-ID `sip_call`) answered by a1003.
struct Scene {
    calls: Calls,
    agent_phone: Peer,
    supervisor_phone: Peer,
    stream: tokio::sync::mpsc::Receiver<Seen>,
    sbc: Peer,
    /// The SBC's 200, for its requests in the dialog.
    _ok: switchboard_sip::Response,
    call: String,
}

async fn scene(server: &Server, sip_call: &str) -> Scene {
    let channel = support::grpc(server).await;
    let mut agents = Agents::new(channel.clone());
    let agent_phone = raw_phone(server, "1003");
    let supervisor_phone = raw_phone(server, "1005");
    log_in(&mut agents, &["1003", "1005"], false).await;
    let mut stream = follow(channel.clone(), DEMO_KEY, "", "").await;
    let sbc = Peer::sbc(server);
    let (_, ok) = answered_call(server, &sbc, &agent_phone, "1003", sip_call);
    sbc.send(&sbc_in_dialog(&sbc, server, &ok, sip_call, "ACK", 1, ""));
    let answered = until(&mut stream, "call Established").await;
    let call = call_of(answered.last().expect("established"))
        .call_id
        .clone();
    Scene {
        calls: Calls::new(channel),
        agent_phone,
        supervisor_phone,
        stream,
        sbc,
        _ok: ok,
        call,
    }
}

/// On a media server controlled by MSML, a1005 whispers to a1003: each party's leg is a
/// connection joined to the conference in MSML, the supervisor's joined hearing the
/// conference and heard by the agent's connection alone; the media server receives exactly
/// those requests, one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_msml_media_server_a_supervisor_whispers_to_the_agent_alone() {
    let server = msml_node(44, 5096);
    let media = Peer::on(
        std::net::UdpSocket::bind("127.0.0.3:5096").expect("the media server's address"),
        &server,
    );
    let Scene {
        mut calls,
        agent_phone,
        supervisor_phone,
        mut stream,
        sbc,
        call,
        ..
    } = scene(&server, "msml-1").await;

    calls
        .monitor(with_key(
            DEMO_KEY,
            monitor("a1005", "a1003", pb::MonitorMode::Whisper),
        ))
        .await
        .expect("whisper");
    let parties = connections(&media, 0, 2);
    assert!(
        parties[0]
            .uri
            .to_string()
            .starts_with(&format!("sip:msml={call}@")),
        "{}",
        parties[0].uri
    );
    let conference = msml(&media, 3);
    let conf = format!("conf:{call}");
    assert!(conference[0].contains(&format!("<createconference name=\"{call}\"")));
    assert!(conference[1].contains(&format!("<join id1=\"conn:ms0\" id2=\"{conf}\"/>")));
    assert!(conference[2].contains(&format!("<join id1=\"conn:ms1\" id2=\"{conf}\"/>")));
    answer_invites(&sbc, 1, 4000);
    answer_invites(&agent_phone, 1, 5000);
    let ring = supervisor_phone
        .request(Method::Invite, Duration::from_secs(5))
        .expect("the supervisor's phone is called");
    supervisor_phone.answer(&ring, 200, Some(&sdp(7000)));
    connections(&media, 2, 1);
    let whisper = msml(&media, 2);
    assert!(
        whisper[0].contains(&format!(
            "<join id1=\"conn:ms2\" id2=\"{conf}\">\n    <stream media=\"audio\" dir=\"to-id1\"/>"
        )),
        "the supervisor hears the conference: {}",
        whisper[0]
    );
    assert!(
        whisper[1].contains(
            "<join id1=\"conn:ms2\" id2=\"conn:ms1\">\n    <stream media=\"audio\" dir=\"from-id1\"/>"
        ),
        "and the agent alone hears the supervisor: {}",
        whisper[1]
    );
    answer_invites(&supervisor_phone, 1, 7000);
    let started = until(&mut stream, "call PartyAdded").await;
    let added = call_of(started.last().expect("PartyAdded"));
    assert!(
        added
            .parties
            .iter()
            .any(|p| p.role == "supervisor" && p.mode == "whisper"),
        "{:?}",
        added.parties
    );
    assert!(
        media.next(Duration::from_millis(300)).is_none(),
        "nothing more asked of the media server"
    );

    calls
        .stop_monitoring(with_key(
            DEMO_KEY,
            monitor("a1005", "a1003", pb::MonitorMode::Whisper),
        ))
        .await
        .expect("stop");
    answer_byes(&supervisor_phone, 1);
    answer_byes(&media, 3);
    answer_invites(&sbc, 1, 4000);
    answer_invites(&agent_phone, 1, 5000);
    until(&mut stream, "call MonitoringStopped").await;
}
