//! Calls put through as dialed: forking, busy, no answer, max-calls, and reliable early
//! media to a caller that requires it.

use super::*;

#[test]
fn a_busy_phone_makes_the_caller_hear_busy() {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
    assert_eq!(
        invite.body,
        Bytes::from_static(OFFER.as_bytes()),
        "the offer is relayed"
    );
    run.respond(&invite, 486, "ph");
    assert_eq!(run.finals_to_sbc(), [486]);
    assert_eq!(run.kinds(), ["DestinationBusy", "Released"]);
    assert_eq!(run.events[1].call.cause, "busy");
}

#[test]
fn every_phone_of_the_dn_rings_and_the_first_answer_wins() {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062", "192.0.2.10:5062"]);
    let first = run.take("192.0.2.9:5062", Method::Invite).remove(0);
    let second = run.take("192.0.2.10:5062", Method::Invite).remove(0);
    assert_ne!(first.headers.call_id(), second.headers.call_id());
    // The second phone rings; the first answers.
    let r = Response::to_request(&second.headers, 180)
        .with_to_tag("two")
        .with_header(HeaderName::Contact, "<sip:1001@192.0.2.10:5062>");
    run.call.receive(
        Message::Response(r),
        "192.0.2.10:5062".parse().expect("addr"),
        Transport::Udp,
        run.now,
    );
    run.drain();
    run.respond(&first, 200, "one");
    assert_eq!(run.finals_to_sbc(), [200]);
    assert_eq!(
        run.take("192.0.2.10:5062", Method::Cancel).len(),
        1,
        "the other phone is CANCELed"
    );
    assert_eq!(run.kinds(), ["Ringing", "Established"]);
}

#[test]
fn no_answer_within_the_dns_timeout_gives_480() {
    let mut run = Run::start(
        tenant(&[("no-answer-timeout", "5")]),
        DnCalls::default(),
        "1001",
    );
    run.located(&["192.0.2.9:5062"]);
    let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
    run.respond(&invite, 180, "ph");
    run.advance(Duration::from_secs(4));
    assert!(run.finals_to_sbc().is_empty());
    run.advance(Duration::from_secs(2));
    assert_eq!(run.finals_to_sbc(), [480]);
    assert_eq!(run.take("192.0.2.9:5062", Method::Cancel).len(), 1);
    assert_eq!(run.kinds(), ["Ringing", "Released"]);
    assert_eq!(run.events[1].call.cause, "no-answer");
}

#[test]
fn a_dn_at_its_max_calls_is_busy_and_the_place_comes_back() {
    let dn_calls = DnCalls::default();
    let tenant = tenant(&[("max-calls", "1")]);
    let mut first = Run::start(tenant.clone(), dn_calls.clone(), "1001");
    first.located(&["192.0.2.9:5062"]);
    assert_eq!(dn_calls.count("demo", "1001"), 1);
    let second = Run::start(tenant.clone(), dn_calls.clone(), "1001");
    assert_eq!(second.finals_to_sbc(), [486]);
    assert_eq!(second.kinds(), ["DestinationBusy", "Released"]);
    assert_eq!(second.events[0].call.cause, "max-calls");
    // The first call ends: the DN takes calls again.
    let invite = first.take("192.0.2.9:5062", Method::Invite).remove(0);
    first.respond(&invite, 603, "ph");
    assert_eq!(first.finals_to_sbc(), [603]);
    assert_eq!(dn_calls.count("demo", "1001"), 0);
    let third = Run::start(tenant, dn_calls.clone(), "1001");
    assert!(third.finals_to_sbc().is_empty(), "rings");
}

#[test]
fn early_media_to_a_caller_requiring_100rel_is_reliable_and_the_answer_waits_for_prack() {
    let (mut run, invite) = reliable_call();
    let early = run.to_sbc(183);
    assert_eq!(early.len(), 1);
    assert_eq!(
        early[0]
            .headers
            .get(&HeaderName::RSeq)
            .map(|v| v.to_string()),
        Some("1".into())
    );
    assert!(
        early[0]
            .headers
            .values(&HeaderName::Require)
            .any(|t| t == "100rel")
    );
    assert!(!early[0].body.is_empty(), "early media");
    // Not PRACKed: it goes again after T1.
    run.advance(Duration::from_millis(600));
    assert_eq!(run.to_sbc(183).len(), 2);
    // The phone answers: the caller hears nothing of it before its PRACK.
    run.respond(&invite, 200, "ph");
    assert!(run.to_sbc(200).is_empty(), "the answer waits for the PRACK");
    run.prack(1);
    let oks = run.to_sbc(200);
    assert_eq!(oks.len(), 2, "the PRACK's 200, then the INVITE's");
    assert_eq!(
        oks[1].headers.cseq().and_then(Result::ok).map(|c| c.method),
        Some(Method::Invite)
    );
    assert_eq!(run.kinds(), ["Ringing", "Established"]);
    // A PRACK for nothing sent is 481.
    run.prack(7);
    assert_eq!(run.to_sbc(481).len(), 1);
}

#[test]
fn a_caller_that_never_pracks_gets_500_and_the_phone_stops_ringing() {
    let (mut run, _) = reliable_call();
    for _ in 0..40 {
        run.advance(Duration::from_secs(1));
    }
    assert_eq!(run.finals_to_sbc().first(), Some(&500));
    assert!(!run.take("192.0.2.9:5062", Method::Cancel).is_empty());
    let last = run.events.last().expect("events");
    assert_eq!(last.call.cause, "no-prack");
}
