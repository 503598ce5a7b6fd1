//! A supervisor monitoring an agent's call: the call moves onto a conference on the media
//! server, the supervisor's phone is called into it, and the parties talk directly again
//! when the supervisor leaves.

use super::*;
use crate::messages::sip_cluster::{MonitorMode, Refusal};

pub(super) const MS: &str = "127.0.0.3:5090";
const SUPERVISOR: &str = "192.0.2.20:5062";

pub(super) fn session(who: &str, port: u16, direction: &str) -> String {
    format!(
        "v=0\r\no={who} 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na={direction}\r\n"
    )
}

/// `r` from the party at `addr`, with its Contact there.
pub(super) fn from(run: &mut Run, addr: &str, r: Response) {
    let r = r.with_header(HeaderName::Contact, format!("<sip:party@{addr}>"));
    run.call.receive(
        Message::Response(r),
        addr.parse().expect("addr"),
        Transport::Udp,
        run.now,
    );
    run.drain();
}

pub(super) fn body(r: &Request) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn monitor(run: &mut Run, mode: MonitorMode) -> Result<(), ControlError> {
    let control = Control::Monitor {
        supervisor: "1020".into(),
        mode,
    };
    let outcome = run.call.control("1001", control, run.now).map(|_| ());
    run.drain();
    outcome
}

/// An answered call from the SBC to the phone of 1001: (the run, the phone's answer).
fn answered() -> (Run, String) {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    let answer = run.answer_at_phone();
    (run, answer)
}

/// The supervisor's phone at 1020 is found registered at [`SUPERVISOR`].
fn supervisor_located(run: &mut Run) {
    run.located_at("1020", &[SUPERVISOR]);
}

/// The caller's and the agent's phone answer the first re-INVITE each got of the call (the
/// one onto the conference), with their sessions; those re-INVITEs.
pub(super) fn parties_reoffered(run: &mut Run) -> (Request, Request) {
    let to_sbc = run.take(SBC, Method::Invite).remove(0);
    let to_phone = run.take("192.0.2.9:5062", Method::Invite).remove(1);
    from(run, SBC, ok_with(&to_sbc, "sbc", OFFER));
    let phone = session("phone", 5000, "sendrecv");
    from(run, "192.0.2.9:5062", ok_with(&to_phone, "ph", &phone));
    (to_sbc, to_phone)
}

/// The media server answers the parties' legs into it (tags `ms0`, `ms1`...).
pub(super) fn answer_joins(run: &mut Run, joins: &[Request]) {
    for (i, join) in joins.iter().enumerate() {
        let answer = session("ms", 6000 + i as u16, "sendrecv");
        from(run, MS, ok_with(join, &format!("ms{i}"), &answer));
    }
}

/// The demo with its media server controlled by MSML and the tenant `options` besides.
pub(super) fn msml_tenant_with(options: &[(&str, &str)]) -> Arc<Tenant> {
    let mut c = crate::tenant::demo_tenant();
    c.media_servers[0]
        .options
        .insert("control".into(), "msml".into());
    for (k, v) in options {
        c.options.insert((*k).into(), (*v).into());
    }
    super::compiled(c)
}

#[test]
fn a_supervisor_listens_then_barges_in_then_leaves_and_the_parties_talk_directly_again() {
    let (mut run, _) = answered();
    assert_eq!(
        monitor(&mut run, MonitorMode::Whisper),
        Err(ControlError::NotAllowed(Refusal::WhisperNeedsMsml)),
        "the demo's media server is netann"
    );
    assert_eq!(
        run.call
            .control("1001", Control::StopMonitoring, run.now)
            .map(|_| ()),
        Err(ControlError::NotAllowed(Refusal::NotMonitored))
    );
    monitor(&mut run, MonitorMode::Listen).expect("monitor");

    // Each party gets a leg into the conference, offered its own session.
    let joins = run.take(MS, Method::Invite);
    assert_eq!(joins.len(), 2);
    for join in &joins {
        assert!(
            join.uri
                .to_string()
                .starts_with("sip:conf=call-1@127.0.0.3"),
            "{}",
            join.uri
        );
    }
    assert!(body(&joins[0]).contains("m=audio 4000"), "the caller's own");
    assert!(body(&joins[1]).contains("m=audio 5000"), "the agent's own");
    answer_joins(&mut run, &joins);
    // Each party is offered its conference leg's session.
    let (to_sbc, to_phone) = parties_reoffered(&mut run);
    assert!(body(&to_sbc).contains("m=audio 6000"), "{}", body(&to_sbc));
    assert!(body(&to_phone).contains("m=audio 6001"));

    // The supervisor's phone is called without an offer and told to answer by itself.
    supervisor_located(&mut run);
    let ring = run.take(SUPERVISOR, Method::Invite).remove(0);
    assert!(ring.body.is_empty());
    assert!(
        ring.headers
            .get(&HeaderName::CallInfo)
            .is_some_and(|v| v.contains("answer-after=0"))
    );
    from(
        &mut run,
        SUPERVISOR,
        ok_with(&ring, "sup", &session("sup", 7000, "sendrecv")),
    );
    let ack = run.take(SUPERVISOR, Method::Ack).remove(0);
    assert!(body(&ack).contains("a=inactive"), "on hold until it is in");
    // Its leg into the conference offers its session receive-only: it is not heard.
    let join = run.take(MS, Method::Invite).remove(2);
    assert!(body(&join).contains("m=audio 7000"));
    assert!(body(&join).contains("a=recvonly"), "{}", body(&join));
    from(
        &mut run,
        MS,
        ok_with(&join, "ms2", &session("ms", 6002, "sendonly")),
    );
    let hear = run.take(SUPERVISOR, Method::Invite).remove(1);
    assert!(body(&hear).contains("m=audio 6002"));
    assert!(body(&hear).contains("a=sendonly"), "it hears only");
    from(
        &mut run,
        SUPERVISOR,
        ok_with(&hear, "sup", &session("sup", 7000, "recvonly")),
    );
    let added = run.events.last().expect("an event");
    assert_eq!(added.kind.name(), "PartyAdded");
    let parties: Vec<_> = added
        .call
        .parties
        .iter()
        .map(|p| (p.dn.as_str(), p.role.as_str(), p.mode.as_str()))
        .collect();
    assert_eq!(
        parties,
        [
            ("+15551234", "origination", ""),
            ("1001", "destination", ""),
            ("1020", "supervisor", "listen")
        ]
    );
    assert!(run.kinds().contains(&"MonitoringStarted"));

    // Barge-in: both of the supervisor's legs are offered both ways.
    assert_eq!(
        monitor(&mut run, MonitorMode::Listen),
        Ok(()),
        "the same mode again changes nothing"
    );
    monitor(&mut run, MonitorMode::Barge).expect("barge in");
    let to_ms = run.take(MS, Method::Invite).remove(3);
    let to_sup = run.take(SUPERVISOR, Method::Invite).remove(2);
    assert!(body(&to_ms).contains("a=sendrecv"), "{}", body(&to_ms));
    assert!(body(&to_sup).contains("a=sendrecv"));
    assert_eq!(run.events.last().expect("event").call.cause, "barge");
    from(
        &mut run,
        MS,
        ok_with(&to_ms, "ms2", &session("ms", 6002, "sendrecv")),
    );
    from(
        &mut run,
        SUPERVISOR,
        ok_with(&to_sup, "sup", &session("sup", 7000, "sendrecv")),
    );
    let view = run
        .call
        .control("1001", Control::View, run.now)
        .expect("view");
    assert_eq!(view.state.name(), "Established");

    // The supervisor leaves: its phone and every leg into the conference are hung up, and
    // the parties are offered each other's own sessions.
    run.call
        .control("1001", Control::StopMonitoring, run.now)
        .expect("stop");
    run.drain();
    assert_eq!(run.take(SUPERVISOR, Method::Bye).len(), 1);
    assert_eq!(run.take(MS, Method::Bye).len(), 3);
    let to_sbc = run.take(SBC, Method::Invite).remove(1);
    let to_phone = run.take("192.0.2.9:5062", Method::Invite).remove(2);
    assert!(body(&to_sbc).contains("m=audio 5000"), "{}", body(&to_sbc));
    assert!(
        body(&to_phone).contains("m=audio 4000"),
        "{}",
        body(&to_phone)
    );
    let kinds = run.kinds();
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["PartyDeleted", "MonitoringStopped"]
    );
    let parties = &run.events.last().expect("event").call.parties;
    assert_eq!(parties.len(), 2, "{parties:?}");
    assert_eq!(parties[1].role, "destination");
}

#[test]
fn a_media_server_that_refuses_the_conference_leaves_the_call_as_it_was() {
    let (mut run, _) = answered();
    monitor(&mut run, MonitorMode::Listen).expect("monitor");
    let joins = run.take(MS, Method::Invite);
    from(
        &mut run,
        MS,
        ok_with(&joins[0], "ms0", &session("ms", 6000, "sendrecv")),
    );
    let refused = Response::to_request(&joins[1].headers, 503).with_to_tag("ms1");
    from(&mut run, MS, refused);
    let kinds = run.kinds();
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["MonitoringFailed", "MonitoringStopped"]
    );
    assert_eq!(run.events[run.events.len() - 2].call.cause, "media-server");
    // The leg that was in is hung up; the parties are offered each other again.
    assert_eq!(run.take(MS, Method::Bye).len(), 1);
    let to_phone = run.take("192.0.2.9:5062", Method::Invite);
    assert!(body(to_phone.last().expect("re-INVITE")).contains("m=audio 4000"));
    assert!(
        run.call
            .control("1001", Control::Hold, run.now)
            .is_err_and(|e| { e == ControlError::NotAllowed(Refusal::OfferInProgress) }),
        "the parties' offers are under way"
    );
    // Not monitored any more: a new monitoring may start once the offers are answered.
    assert_eq!(
        run.call
            .control("1001", Control::StopMonitoring, run.now)
            .map(|_| ()),
        Err(ControlError::NotAllowed(Refusal::NotMonitored))
    );
}

#[test]
fn a_call_monitored_while_it_rings_moves_onto_the_conference_once_answered() {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    monitor(&mut run, MonitorMode::Listen).expect("kept until answered");
    assert!(
        run.take(MS, Method::Invite).is_empty(),
        "not while it rings"
    );
    assert!(!run.kinds().contains(&"MonitoringStarted"));
    run.answer_at_phone();
    let joins = run.take(MS, Method::Invite);
    assert_eq!(joins.len(), 2, "once answered and ACKed");
    assert_eq!(run.kinds().last(), Some(&"MonitoringStarted"));
}

/// The demo with its media server controlled by MSML.
pub(super) fn msml_tenant() -> Arc<Tenant> {
    msml_tenant_with(&[])
}

/// Answers every MSML INFO sent to the media server so far and not yet answered, with
/// `response`; the bodies answered, in order.
pub(super) fn answer_msml(run: &mut Run, answered: &mut usize, response: u16) -> Vec<String> {
    answer_some_msml(run, answered, response, usize::MAX)
}

/// As [`answer_msml`], at most `n` of them.
pub(super) fn answer_some_msml(
    run: &mut Run,
    answered: &mut usize,
    response: u16,
    n: usize,
) -> Vec<String> {
    let mut bodies = Vec::new();
    while bodies.len() < n {
        let infos = run.take(MS, Method::Info);
        let Some(info) = infos.get(*answered).cloned() else {
            return bodies;
        };
        *answered += 1;
        assert_eq!(
            info.headers.get(&HeaderName::ContentType).map(|v| &**v),
            Some("application/msml+xml")
        );
        let result = format!(
            "<?xml version=\"1.0\"?><msml version=\"1.1\"><result response=\"{response}\"/></msml>"
        );
        let mut ok =
            ok_with(&info, "", "").with_header(HeaderName::ContentType, "application/msml+xml");
        ok.body = Bytes::from(result);
        from(run, MS, ok);
        bodies.push(body(&info));
    }
    bodies
}

/// The element names and attributes of MSML bodies, one line each, in order: what a test
/// compares (the XML declaration and indentation left out).
pub(super) fn elements(bodies: &[String]) -> Vec<String> {
    bodies
        .iter()
        .flat_map(|b| {
            b.lines()
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.starts_with("<?xml") && !l.starts_with("<msml") && l != "</msml>")
        .collect()
}

#[test]
fn on_an_msml_media_server_a_supervisor_whispers_then_barges_in_each_said_in_msml() {
    let mut run = Run::start(msml_tenant(), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    run.answer_at_phone();
    monitor(&mut run, MonitorMode::Whisper).expect("whisper on MSML");
    let joins = run.take(MS, Method::Invite);
    assert_eq!(joins.len(), 2);
    assert!(
        joins[0].uri.to_string().starts_with("sip:msml=call-1@"),
        "a plain connection: {}",
        joins[0].uri
    );
    let mut answered = 0;
    answer_joins(&mut run, &joins);
    let conference = answer_msml(&mut run, &mut answered, 200);
    assert_eq!(
        elements(&conference),
        [
            "<createconference name=\"call-1\" deletewhen=\"nomedia\">",
            "<audiomix/>",
            "</createconference>",
            "<join id1=\"conn:ms0\" id2=\"conf:call-1\"/>",
            "<join id1=\"conn:ms1\" id2=\"conf:call-1\"/>",
        ]
    );
    assert_eq!(conference.len(), 3, "one request per INFO, one at a time");
    parties_reoffered(&mut run);

    // The supervisor's phone and its connection.
    supervisor_located(&mut run);
    let ring = run.take(SUPERVISOR, Method::Invite).remove(0);
    from(
        &mut run,
        SUPERVISOR,
        ok_with(&ring, "sup", &session("sup", 7000, "sendrecv")),
    );
    let join = run.take(MS, Method::Invite).remove(2);
    assert!(
        body(&join).contains("a=sendrecv"),
        "MSML says who hears whom"
    );
    from(
        &mut run,
        MS,
        ok_with(&join, "ms2", &session("ms", 6002, "sendrecv")),
    );
    let whisper = answer_msml(&mut run, &mut answered, 200);
    assert_eq!(
        elements(&whisper),
        [
            "<join id1=\"conn:ms2\" id2=\"conf:call-1\">",
            "<stream media=\"audio\" dir=\"to-id1\"/>",
            "</join>",
            "<join id1=\"conn:ms2\" id2=\"conn:ms1\">",
            "<stream media=\"audio\" dir=\"from-id1\"/>",
            "</join>",
        ],
        "it hears the conference; the agent alone hears it"
    );

    // Barge-in: its streams with the conference both ways, its path to the agent gone.
    monitor(&mut run, MonitorMode::Barge).expect("barge in");
    let barge = answer_msml(&mut run, &mut answered, 200);
    assert_eq!(
        elements(&barge),
        [
            "<modifystream id1=\"conn:ms2\" id2=\"conf:call-1\">",
            "<stream media=\"audio\"/>",
            "</modifystream>",
            "<unjoin id1=\"conn:ms2\" id2=\"conn:ms1\"/>",
        ]
    );
    assert_eq!(
        run.events.last().expect("event").kind.name(),
        "MonitoringChanged"
    );

    // The server refuses the next change: the monitoring ends, the parties talk directly.
    monitor(&mut run, MonitorMode::Listen).expect("listen");
    let refused = answer_msml(&mut run, &mut answered, 404);
    assert_eq!(refused.len(), 1);
    let kinds = run.kinds();
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["MonitoringFailed", "PartyDeleted", "MonitoringStopped"]
    );
    assert_eq!(run.take(MS, Method::Bye).len(), 3);
    assert_eq!(run.take(SUPERVISOR, Method::Bye).len(), 1);
}

#[test]
fn a_media_server_that_hangs_up_mid_call_leaves_the_parties_talking_directly() {
    let (mut run, _) = answered();
    monitor(&mut run, MonitorMode::Barge).expect("monitor");
    let joins = run.take(MS, Method::Invite);
    answer_joins(&mut run, &joins);
    parties_reoffered(&mut run);
    // The media server hangs up the caller's leg into the conference.
    let leg = &run.call.legs.b[1];
    let bye = format!(
        "BYE sip:switchboard@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {MS};branch=z9hG4bKmsbye\r\n\
         Max-Forwards: 70\r\nFrom: <sip:conf=call-1@127.0.0.3>;tag=ms0\r\n\
         To: <sip:switchboard@demo.local>;tag={}\r\nCall-ID: {}\r\nCSeq: 5 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        leg.tag, leg.call_id
    );
    run.call.receive(
        message(&bye),
        MS.parse().expect("addr"),
        Transport::Udp,
        run.now,
    );
    run.drain();
    let kinds = run.kinds();
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["MonitoringFailed", "MonitoringStopped"]
    );
    assert_eq!(run.take(MS, Method::Bye).len(), 1, "its other leg hung up");
    let to_sbc = run.take(SBC, Method::Invite);
    let to_phone = run.take("192.0.2.9:5062", Method::Invite);
    assert!(body(to_sbc.last().expect("re-INVITE")).contains("m=audio 5000"));
    assert!(body(to_phone.last().expect("re-INVITE")).contains("m=audio 4000"));
    assert_eq!(
        run.call
            .control("1001", Control::View, run.now)
            .map(|v| v.state.name()),
        Ok("Established"),
        "the call carries on"
    );
}

#[test]
fn the_supervisors_desktop_may_only_see_the_call_and_leave_it() {
    let (mut run, _) = answered();
    monitor(&mut run, MonitorMode::Barge).expect("monitor");
    let joins = run.take(MS, Method::Invite);
    answer_joins(&mut run, &joins);
    supervisor_located(&mut run);
    let ring = run.take(SUPERVISOR, Method::Invite).remove(0);
    from(
        &mut run,
        SUPERVISOR,
        ok_with(&ring, "sup", &session("sup", 7000, "sendrecv")),
    );
    assert!(run.call.control("1020", Control::View, run.now).is_ok());
    assert!(
        matches!(
            run.call.control("1020", Control::Hold, run.now),
            Err(ControlError::NotFound(_))
        ),
        "not the supervisor's to hold"
    );
    run.call
        .control("1020", Control::Release, run.now)
        .expect("leaves");
    run.drain();
    assert_eq!(run.kinds().last(), Some(&"MonitoringStopped"));
    assert_eq!(
        run.call.view().state.name(),
        "Established",
        "the call goes on"
    );
}
