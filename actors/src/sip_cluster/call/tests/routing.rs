//! A call at a routing point, its routing session played by the test: the orders `ors` would
//! give (music, a queue, the agent reserved) and what the call tells it back.

use switchboard_routing::strategy::{Route, Treatment};

use super::*;
use crate::messages::ors::{Order, Report};
use crate::sip_cluster::call::ToOrs;

const MEDIA: &str = "127.0.0.3:5090";
const PHONE: &str = "192.0.2.9:5062";
const MUSIC: &str = "file:///music/hold.wav";
const MEDIA_SDP: &str = "v=0\r\no=gvp 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
const PHONE_SDP: &str = "v=0\r\no=phone 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

impl Run {
    /// The INVITEs sent to the media server so far whose request URI starts `prefix`
    /// (`sip:conf=`, `sip:msml=`): the legs into a conference.
    fn conference_legs(&mut self, prefix: &str) -> Vec<Request> {
        self.take(MEDIA, Method::Invite)
            .into_iter()
            .filter(|i| i.uri.to_string().starts_with(prefix))
            .collect()
    }

    /// A message from the party at `from`.
    fn from(&mut self, from: &str, message: Message) {
        let from = from.parse().expect("addr");
        self.call.receive(message, from, Transport::Udp, self.now);
        self.drain();
    }

    fn order(&mut self, order: Order) {
        self.call.routing(order, self.now);
        self.drain();
    }

    /// What the call told its routing session since the last look.
    fn reports(&mut self) -> Vec<Report> {
        std::mem::take(&mut self.routing)
            .into_iter()
            .filter_map(|r| match r {
                ToOrs::Report(report) => Some(report),
                ToOrs::Request(_) => None,
            })
            .collect()
    }
}

/// An SBC call to the demo's +18005550100 (routing point 5000), hearing music from the
/// tenant's media server, which answered the caller.
fn call_on_music() -> Run {
    call_on_music_of(tenant(&[]))
}

/// As [`call_on_music`], with the tenant `tenant`.
fn call_on_music_of(tenant: Arc<Tenant>) -> Run {
    let mut run = Run::start(tenant, DnCalls::default(), "+18005550100");
    assert_eq!(run.kinds(), ["RouteRequest"]);
    let request = match run.routing.remove(0) {
        ToOrs::Request(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(request.routing_point, "5000");
    assert_eq!(request.strategy, "support");
    run.order(Order::Treat(Treatment::Music(MUSIC.into())));
    let invite = run.take(MEDIA, Method::Invite).remove(0);
    assert_eq!(
        invite.uri.to_string(),
        format!("sip:annc@{MEDIA};play={MUSIC};repeat=forever")
    );
    assert_eq!(
        invite.body,
        Bytes::from_static(OFFER.as_bytes()),
        "the caller's offer"
    );
    let answer = ok_with(&invite, "ms", MEDIA_SDP)
        .with_header(HeaderName::Contact, format!("<sip:annc@{MEDIA}>"));
    run.from(MEDIA, Message::Response(answer));
    let answered = run.last_final_to_sbc();
    assert_eq!(answered.status, 200);
    assert_eq!(answered.body, Bytes::from_static(MEDIA_SDP.as_bytes()));
    run.sbc_request("ACK", 1, "");
    assert_eq!(run.kinds(), ["RouteRequest", "TreatmentApplied"]);
    run
}

/// The queue's agent a1001 is routed to; its phone, found at [`PHONE`], is invited: that INVITE.
fn route_to_agent(run: &mut Run) -> Request {
    run.order(Order::Route(Route::Agent {
        agent: "a1001".into(),
        dn: "1001".into(),
    }));
    run.located(&[PHONE]);
    run.take(PHONE, Method::Invite).remove(0)
}

/// The agent's phone answers `invite` with its session.
fn phone_answers(run: &mut Run, invite: &Request) {
    let answer = ok_with(invite, "ph", PHONE_SDP)
        .with_header(HeaderName::Contact, format!("<sip:1001@{PHONE}>"));
    run.from(PHONE, Message::Response(answer));
}

/// [`call_on_music`] queued and matched to agent a1001, whose phone is invited.
fn agent_rung() -> (Run, Request) {
    let mut run = call_on_music();
    run.order(Order::Queued {
        queue: "support".into(),
        target: "english >= 3".into(),
        priority: 5,
    });
    let queued = run.events.last().expect("an event");
    assert_eq!(queued.kind.name(), "Queued");
    assert_eq!(
        (queued.call.queue.as_str(), queued.call.priority),
        ("support", 5)
    );
    let invite = route_to_agent(&mut run);
    assert!(
        invite.body.is_empty(),
        "the agent is invited without an offer (RFC 3725)"
    );
    (run, invite)
}

#[test]
fn the_agent_takes_the_caller_from_the_music_which_ends_once_it_has() {
    let (mut run, invite) = agent_rung();
    let answer = ok_with(&invite, "ph", PHONE_SDP)
        .with_header(HeaderName::Contact, format!("<sip:1001@{PHONE}>"));
    run.from(PHONE, Message::Response(answer));
    // The caller is offered the agent's session; the music plays on meanwhile.
    let reinvite = run.take(SBC, Method::Invite).remove(0);
    assert!(String::from_utf8_lossy(&reinvite.body).contains("m=audio 5000"));
    assert!(run.take(MEDIA, Method::Bye).is_empty());
    assert!(
        run.take(PHONE, Method::Ack).is_empty(),
        "the ACK waits for the answer"
    );
    run.from(SBC, Message::Response(ok_with(&reinvite, "sbc", OFFER)));
    let ack = run.take(PHONE, Method::Ack).remove(0);
    assert_eq!(
        ack.body,
        Bytes::from_static(OFFER.as_bytes()),
        "the caller's answer"
    );
    assert_eq!(run.take(MEDIA, Method::Bye).len(), 1, "the music ends");
    assert_eq!(
        run.kinds()[3..],
        ["TreatmentEnd", "RouteUsed", "Established"]
    );
    assert_eq!(run.reports(), [Report::Routed]);
    assert_eq!(run.call.view().state.name(), "Established");
}

#[test]
fn an_agent_who_lets_it_ring_is_rona_and_the_caller_keeps_the_music() {
    let (mut run, invite) = agent_rung();
    let ringing = Response::to_request(&invite.headers, 180)
        .with_to_tag("ph")
        .with_header(HeaderName::Contact, format!("<sip:1001@{PHONE}>"));
    run.from(PHONE, Message::Response(ringing));
    run.advance(Duration::from_secs(29));
    assert!(run.take(PHONE, Method::Cancel).is_empty(), "rings its 30 s");
    run.advance(Duration::from_secs(2));
    assert_eq!(run.take(PHONE, Method::Cancel).len(), 1);
    let requeued = run.events.last().expect("an event");
    assert_eq!(
        (requeued.kind.name(), requeued.call.cause.as_str()),
        ("Queued", "rona")
    );
    assert_eq!(requeued.left, ["1001"], "the agent's DN is a party no more");
    assert_eq!(
        run.reports(),
        [Report::RouteFailed {
            rona: Some("a1001".into())
        }]
    );
    assert!(run.take(MEDIA, Method::Bye).is_empty(), "still on music");
}

#[test]
fn a_media_server_that_does_not_answer_in_4s_leaves_the_treatment_not_applied() {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "+18005550100");
    run.order(Order::Treat(Treatment::Music(MUSIC.into())));
    let invite = run.take(MEDIA, Method::Invite).remove(0);
    run.from(
        MEDIA,
        Message::Response(Response::to_request(&invite.headers, 100)),
    );
    run.advance(Duration::from_secs(3));
    assert!(run.reports().is_empty());
    run.advance(Duration::from_secs(2));
    assert_eq!(
        run.kinds().last(),
        Some(&"TreatmentNotApplied"),
        "the demo has one media server, and no other to try"
    );
    assert_eq!(run.reports(), [Report::TreatmentFailed]);
    assert!(run.finals_to_sbc().is_empty(), "the caller still waits");
}

#[test]
fn a_caller_who_hangs_up_while_queued_abandons_and_the_session_is_told() {
    let mut run = call_on_music();
    run.sbc_request("BYE", 2, "");
    let abandoned = run.events.last().expect("an event");
    assert_eq!(abandoned.kind.name(), "Abandoned");
    assert_eq!(
        abandoned.call.routing_point, "5000",
        "the end names where it waited"
    );
    assert_eq!(run.reports(), [Report::Gone]);
    assert_eq!(run.take(MEDIA, Method::Bye).len(), 1, "the music ends");
}

#[test]
fn at_the_routing_points_timeout_the_default_destination_takes_the_call() {
    let tenant = tenant(&[]);
    let timeout = tenant
        .routing_point("5000")
        .map(|rp| rp.timeout_secs)
        .expect("routing point 5000");
    let mut run = Run::start(tenant.clone(), DnCalls::default(), "+18005550100");
    let before = Duration::from_secs(u64::from(timeout) - 1);
    run.advance(before);
    assert!(run.reports().is_empty());
    run.advance(Duration::from_secs(2));
    // Not answered yet: the call leaves for the default destination as dialed.
    assert_eq!(run.reports(), [Report::Gone]);
    assert!(run.kinds().contains(&"Diverted"));
    assert!(
        run.finals_to_sbc().is_empty(),
        "the default destination is rung"
    );
}

/// A strategy's `record` and `monitor` take effect from the agent's answer: the demo's
/// NETANN media server cannot record (RecordingFailed, the call goes on), and the supervisor
/// at 1020 listens once the caller is through to the agent.
#[test]
fn a_strategys_record_and_monitor_start_with_the_agents_answer() {
    let mut run = call_on_music();
    run.order(Order::Record);
    run.order(Order::Monitor {
        dn: "1020".into(),
        mode: crate::messages::sip_cluster::MonitorMode::Listen,
    });
    let invite = route_to_agent(&mut run);
    assert!(
        !run.kinds().contains(&"MonitoringStarted"),
        "not while it rings"
    );
    phone_answers(&mut run, &invite);
    let reinvite = run.take(SBC, Method::Invite).remove(0);
    run.from(SBC, Message::Response(ok_with(&reinvite, "sbc", OFFER)));
    let kinds = run.kinds();
    let established = kinds
        .iter()
        .position(|k| *k == "Established")
        .expect("answered");
    assert_eq!(
        kinds[established + 1..],
        ["RecordingFailed", "MonitoringStarted"],
        "{kinds:?}"
    );
    let conference = run.conference_legs("sip:conf=");
    assert_eq!(conference.len(), 2, "both parties into the conference");
}

/// A call that came through a queue whose option forbids monitoring cannot be monitored,
/// by a desktop or a strategy, once routed to its agent.
#[test]
fn a_call_of_a_queue_that_forbids_monitoring_is_not_monitored() {
    let mut c = crate::tenant::demo_tenant();
    c.queues[0]
        .options
        .insert("monitoring".into(), "forbidden".into());
    let mut run = call_on_music_of(super::compiled(c));
    run.order(Order::Queued {
        queue: "support".into(),
        target: "english >= 3".into(),
        priority: 5,
    });
    let invite = route_to_agent(&mut run);
    phone_answers(&mut run, &invite);
    let reinvite = run.take(SBC, Method::Invite).remove(0);
    run.from(SBC, Message::Response(ok_with(&reinvite, "sbc", OFFER)));
    assert_eq!(run.call.view().state.name(), "Established");
    let monitor = Control::Monitor {
        supervisor: "1020".into(),
        mode: crate::messages::sip_cluster::MonitorMode::Listen,
    };
    assert_eq!(
        run.call.control("1001", monitor, run.now).map(|_| ()),
        Err(ControlError::NotAllowed(
            crate::messages::sip_cluster::Refusal::QueueNotMonitored
        ))
    );
}

/// A strategy's `record` on a media server controlled by MSML: once the agent answers, the
/// call moves onto a conference there and is recorded.
#[test]
fn a_strategys_record_on_an_msml_media_server_records_from_the_agents_answer() {
    let tenant = super::monitor::msml_tenant();
    let mut run = Run::start(tenant, DnCalls::default(), "+18005550100");
    run.routing.clear();
    run.order(Order::Record);
    let invite = route_to_agent(&mut run);
    phone_answers(&mut run, &invite);
    let ok = run.last_final_to_sbc();
    assert_eq!(
        ok.status, 200,
        "the caller is answered with the agent's session"
    );
    run.sbc_request("ACK", 1, "");
    let joins = run.conference_legs("sip:msml=");
    assert_eq!(joins.len(), 2, "both parties onto the conference");
    super::monitor::answer_joins(&mut run, &joins);
    let mut answered = 0;
    let made = super::monitor::answer_msml(&mut run, &mut answered, 200);
    assert!(
        made.last().expect("MSML").contains("<dialogstart"),
        "{made:?}"
    );
    assert_eq!(run.kinds().last(), Some(&"RecordingStarted"));
}

/// A strategy's `record` then a route to a DN (not an agent): recorded from the DN's answer.
#[test]
fn a_strategys_record_then_a_route_to_a_dn_records_from_its_answer() {
    let tenant = super::monitor::msml_tenant();
    let mut run = Run::start(tenant, DnCalls::default(), "+18005550100");
    run.routing.clear();
    run.order(Order::Record);
    run.order(Order::Route(Route::Dn("1001".into())));
    run.located(&[PHONE]);
    let invite = run.take(PHONE, Method::Invite).remove(0);
    phone_answers(&mut run, &invite);
    run.sbc_request("ACK", 1, "");
    let joins = run.conference_legs("sip:msml=");
    assert_eq!(
        joins.len(),
        2,
        "both parties onto the conference: {:?}",
        run.kinds()
    );
}
