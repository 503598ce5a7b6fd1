//! The snapshot a call leaves in Redis: enough to make each of its dialogs again as it is.

use switchboard_sip::dialog::Dialog;

use super::super::CallEventKind;
use super::super::snapshot::CallSnapshot;
use super::*;

#[test]
fn a_calls_snapshot_makes_its_dialogs_again_as_they_are() {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    run.answer_at_phone();
    // The caller's numbering moves on after the call's own.
    run.sbc_request("OPTIONS", 7, "");
    assert_eq!(run.kinds(), ["Established"]);
    // As the Established event carried it, and as it is now.
    let at_answer: CallSnapshot =
        serde_json::from_str(run.events[0].snapshot.as_deref().expect("a snapshot"))
            .expect("the snapshot reads back");
    assert_eq!(at_answer.state, "Established");
    let now = run.call.snapshot(CallEventKind::Established);
    let text = serde_json::to_string(&now).expect("JSON");
    let read: CallSnapshot = serde_json::from_str(&text).expect("reads back");
    assert_eq!(read, now);

    let roles: Vec<&str> = read.legs.iter().map(|l| l.role.as_str()).collect();
    assert_eq!(roles, ["caller", "callee"]);
    let live = [
        run.call
            .legs
            .a
            .dialog
            .as_ref()
            .expect("the caller's dialog"),
        run.call.legs.b[0]
            .dialog
            .as_ref()
            .expect("the callee's dialog"),
    ];
    for (leg, live) in read.legs.iter().zip(live) {
        let parts = leg.dialog_parts().expect("a dialog");
        assert_eq!(&Dialog::from_parts(&parts).expect("made again"), live);
        assert_eq!(
            leg.sdp.as_deref().map(str::is_empty),
            Some(false),
            "{leg:?}"
        );
    }
    assert_eq!(
        read.legs[0].dialog.as_ref().map(|d| d.remote_seq),
        Some(Some(7))
    );
    assert_eq!(
        read.legs[1].dialog.as_ref().map(|d| d.remote_tag.as_str()),
        Some("ph")
    );
    assert_eq!(
        (read.tenant.as_str(), read.node.as_str()),
        ("demo", "sbtest")
    );
}
