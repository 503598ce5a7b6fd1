//! What a desktop asks of an answered call.

use super::*;

#[test]
fn a_desktop_holds_and_retrieves_an_answered_call_by_reoffering_both_legs() {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    assert!(
        matches!(
            run.call.control("1001", Control::Hold, run.now),
            Err(ControlError::NotAllowed(_))
        ),
        "not while it rings"
    );
    assert_eq!(
        run.call
            .view()
            .capabilities
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>(),
        [
            "answer",
            "release",
            "attach-user-data",
            "update-user-data",
            "delete-user-data"
        ]
    );
    let answer = run.answer_at_phone();
    assert!(matches!(
        run.call.control("1002", Control::View, run.now),
        Err(ControlError::NotFound(_))
    ));

    let view = run
        .call
        .control("1001", Control::Hold, run.now)
        .expect("hold");
    run.drain();
    assert_eq!(
        view.state.name(),
        "Established",
        "held once both legs agree"
    );
    let to_phone = run.take("192.0.2.9:5062", Method::Invite).remove(1);
    let to_sbc = run.take(SBC, Method::Invite).remove(0);
    for (reinvite, was) in [(&to_phone, OFFER), (&to_sbc, answer.as_str())] {
        let body = std::str::from_utf8(&reinvite.body).expect("sdp");
        assert!(body.contains("a=inactive"), "{body}");
        assert!(
            body.contains(" 1 2 IN IP4"),
            "a newer version of {was}: {body}"
        );
    }
    assert!(
        matches!(
            run.call.control("1001", Control::Hold, run.now),
            Err(ControlError::NotAllowed(_))
        ),
        "one offer at a time"
    );
    run.phone_sends(Message::Response(ok_with(&to_phone, "ph", &answer)));
    run.call.receive(
        Message::Response(ok_with(&to_sbc, "sbc", OFFER)),
        SBC.parse().expect("addr"),
        Transport::Udp,
        run.now,
    );
    run.drain();
    assert_eq!(run.kinds().last(), Some(&"Held"));
    assert_eq!(run.take(SBC, Method::Ack).len(), 1, "each 2xx is ACKed");
    assert_eq!(run.call.view().state.name(), "Held");
    assert!(matches!(
        run.call
            .control("1001", Control::SendDtmf("1".into()), run.now),
        Err(ControlError::NotAllowed(_))
    ));

    run.call
        .control("1001", Control::Retrieve, run.now)
        .expect("retrieve");
    run.drain();
    let to_phone = run.take("192.0.2.9:5062", Method::Invite).remove(2);
    let to_sbc = run.take(SBC, Method::Invite).remove(1);
    assert!(
        std::str::from_utf8(&to_phone.body)
            .expect("sdp")
            .contains("a=sendrecv")
    );
    run.phone_sends(Message::Response(ok_with(&to_phone, "ph", &answer)));
    run.call.receive(
        Message::Response(ok_with(&to_sbc, "sbc", OFFER)),
        SBC.parse().expect("addr"),
        Transport::Udp,
        run.now,
    );
    run.drain();
    assert_eq!(run.kinds().last(), Some(&"Retrieved"));

    // DTMF goes to the party at the other end from the agent, one INFO per digit.
    run.call
        .control("1001", Control::SendDtmf("4#".into()), run.now)
        .expect("dtmf");
    run.drain();
    let infos = run.take(SBC, Method::Info);
    assert_eq!(infos.len(), 2);
    assert_eq!(
        infos[1].body,
        Bytes::from_static(b"Signal=#\r\nDuration=160\r\n")
    );
    assert!(matches!(
        run.call
            .control("1001", Control::SendDtmf("12x".into()), run.now),
        Err(ControlError::Invalid(_))
    ));

    // User data follows the call into its events.
    run.call
        .control(
            "1001",
            Control::AttachUserData(vec![("lang".into(), "fr".into())]),
            run.now,
        )
        .expect("attach");
    run.drain();
    let last = run.events.last().expect("an event");
    assert_eq!(last.kind.name(), "AttachedDataChanged");
    assert_eq!(
        last.call.user_data.get("lang").map(String::as_str),
        Some("fr")
    );
    run.call
        .control("1001", Control::Release, run.now)
        .expect("release");
    run.drain();
    assert_eq!(run.kinds().last(), Some(&"Released"));
    assert_eq!(run.events.last().expect("event").call.cause, "released");
    assert_eq!(run.events.last().expect("event").call.user_data.len(), 1);
}
