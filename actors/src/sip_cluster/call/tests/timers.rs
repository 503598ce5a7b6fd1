//! Session timers (RFC 4028) on both legs of a call.

use switchboard_sip::invite::session_timer;

use super::*;

#[test]
fn a_caller_that_stops_refreshing_its_session_has_the_call_ended() {
    let mut run = timed_call(
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        &[],
    );
    let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
    assert_eq!(
        invite
            .headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("120".into()),
        "the phone is offered the caller's interval"
    );
    let ok = run.last_final_to_sbc();
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("120;refresher=uac".into())
    );
    assert!(session_timer::supports_timer(&ok.headers));
    assert!(
        ok.headers
            .values(&HeaderName::Require)
            .any(|t| t == "timer")
    );
    // A refresh by UPDATE at 50 s is answered here, with the interval, and not passed on.
    run.advance(Duration::from_secs(50));
    run.sbc_request("UPDATE", 2, "");
    let refreshed = run.last_final_to_sbc();
    assert_eq!(refreshed.status, 200);
    assert_eq!(
        refreshed
            .headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("120;refresher=uac".into())
    );
    assert!(run.take("192.0.2.9:5062", Method::Update).is_empty());
    // 120 s less 32 after the refresh the session has expired: not before.
    run.advance(Duration::from_secs(87));
    assert!(
        run.take("192.0.2.9:5062", Method::Bye).is_empty(),
        "ended early"
    );
    run.advance(Duration::from_secs(2));
    assert_eq!(run.take("192.0.2.9:5062", Method::Bye).len(), 1);
    assert_eq!(run.take(SBC, Method::Bye).len(), 1);
    let last = run.events.last().expect("events");
    assert_eq!(last.kind.name(), "Released");
    assert_eq!(last.call.cause, "session-expired");
}

#[test]
fn a_session_interval_under_the_minimum_gets_422_from_a_caller_that_can_do_better() {
    let invite = sbc_invite_with("1001", "Supported: timer\r\nSession-Expires: 30\r\n");
    let run = Run::start_with(tenant(&[]), DnCalls::default(), invite);
    let r = run.last_final_to_sbc();
    assert_eq!(r.status, 422);
    assert_eq!(
        r.headers.get(&HeaderName::MinSe).map(|v| v.to_string()),
        Some("90".into())
    );
    // A caller that does not support timers (a proxy put the header in) gets the minimum.
    let invite = sbc_invite_with("1001", "Session-Expires: 30\r\n");
    let mut run = Run::start_with(tenant(&[]), DnCalls::default(), invite);
    run.located(&["192.0.2.9:5062"]);
    let invite = run.take("192.0.2.9:5062", Method::Invite).remove(0);
    assert_eq!(
        invite
            .headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("90".into())
    );
}

#[test]
fn a_callee_that_makes_the_core_refresh_gets_updates_and_one_left_unanswered_ends_the_call() {
    let mut run = timed_call(
        "",
        &[
            (HeaderName::SessionExpires, "100;refresher=uac"),
            (HeaderName::Allow, "INVITE, ACK, BYE, CANCEL, UPDATE"),
        ],
    );
    run.advance(Duration::from_secs(49));
    assert!(run.take("192.0.2.9:5062", Method::Update).is_empty());
    run.advance(Duration::from_secs(2));
    let update = run.take("192.0.2.9:5062", Method::Update);
    assert_eq!(update.len(), 1, "refreshed half-way");
    assert_eq!(
        update[0]
            .headers
            .get(&HeaderName::SessionExpires)
            .map(|v| v.to_string()),
        Some("100;refresher=uac".into())
    );
    let ok = Response::to_request(&update[0].headers, 200)
        .with_header(HeaderName::SessionExpires, "100;refresher=uac");
    run.phone_sends(Message::Response(ok));
    // The next refresh is never answered: the call ends on both legs.
    run.sent.clear();
    run.advance(Duration::from_secs(51));
    assert_eq!(run.take("192.0.2.9:5062", Method::Update).len(), 1);
    for _ in 0..40 {
        run.advance(Duration::from_secs(1));
    }
    assert!(
        !run.take(SBC, Method::Bye).is_empty(),
        "the caller is hung up"
    );
    let last = run.events.last().expect("events");
    assert_eq!(
        (last.kind.name(), last.call.cause.as_str()),
        ("Released", "unreachable")
    );
}
