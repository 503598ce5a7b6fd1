//! Recording a call on an MSML media server: started, paused, resumed and stopped by a
//! desktop, each said to the server in MSML; refused as the configuration says.

use super::monitor::{
    MS, answer_joins, answer_msml, answer_some_msml, body, elements, msml_tenant, msml_tenant_with,
    parties_reoffered,
};
use super::*;
use crate::messages::sip_cluster::{RecordAction, Refusal};

fn record(run: &mut Run, action: RecordAction) -> Result<(), ControlError> {
    let outcome = run
        .call
        .control("1001", Control::Record(action), run.now)
        .map(|_| ());
    run.drain();
    outcome
}

/// An answered call on `tenant`, recorded from the desktop: the parties' connections are
/// answered, and the MSML up to the record answered 200; those MSML bodies.
fn recorded(tenant: Arc<Tenant>, answered: &mut usize) -> (Run, Vec<String>) {
    let mut run = Run::start(tenant, DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    run.answer_at_phone();
    record(&mut run, RecordAction::Start).expect("start");
    let joins = run.take(MS, Method::Invite);
    assert_eq!(joins.len(), 2, "the call moves onto a conference");
    answer_joins(&mut run, &joins);
    parties_reoffered(&mut run);
    let bodies = answer_msml(&mut run, answered, 200);
    (run, bodies)
}

#[test]
fn a_desktop_starts_pauses_resumes_and_stops_a_recording_each_said_in_msml() {
    let mut answered = 0;
    let (mut run, bodies) = recorded(msml_tenant(), &mut answered);
    let start = elements(&bodies);
    assert_eq!(
        start[start.len() - 3..],
        [
            "<dialogstart target=\"conf:call-1\" type=\"application/moml+xml\" name=\"record\">",
            "<record dest=\"file:///var/spool/switchboard/recordings/demo/call-1.wav\" format=\"audio/wav\" maxtime=\"4h\"/>",
            "</dialogstart>",
        ],
        "recorded once both parties are joined: {start:?}"
    );
    let started = run.events.last().expect("an event");
    assert_eq!(started.kind.name(), "RecordingStarted");
    assert_eq!(started.call.recording_id, "conf:call-1/dialog:record");
    assert_eq!(
        started.call.recording_uri,
        "file:///var/spool/switchboard/recordings/demo/call-1.wav"
    );
    assert_eq!(
        record(&mut run, RecordAction::Start),
        Err(ControlError::NotAllowed(Refusal::RecordedAlready))
    );

    record(&mut run, RecordAction::Pause).expect("pause");
    let pause = answer_msml(&mut run, &mut answered, 200);
    assert_eq!(
        elements(&pause),
        ["<send target=\"conf:call-1/dialog:record\" event=\"pause\" namelist=\"\"/>"]
    );
    assert_eq!(run.kinds().last(), Some(&"RecordingPaused"));
    record(&mut run, RecordAction::Resume).expect("resume");
    let resume = answer_msml(&mut run, &mut answered, 200);
    assert!(elements(&resume)[0].contains("event=\"resume\""));
    assert_eq!(run.kinds().last(), Some(&"RecordingResumed"));

    record(&mut run, RecordAction::Stop).expect("stop");
    let stop = answer_msml(&mut run, &mut answered, 200);
    assert_eq!(
        elements(&stop),
        ["<dialogend id=\"conf:call-1/dialog:record\"/>"]
    );
    assert_eq!(run.kinds().last(), Some(&"RecordingStopped"));
    // Nothing needs the conference: the parties talk directly again.
    assert_eq!(run.take(MS, Method::Bye).len(), 2);
    let to_phone = run.take("192.0.2.9:5062", Method::Invite);
    assert!(body(to_phone.last().expect("re-INVITE")).contains("m=audio 4000"));
    assert_eq!(
        record(&mut run, RecordAction::Pause),
        Err(ControlError::NotAllowed(Refusal::NotRecorded))
    );
}

#[test]
fn a_netann_media_server_cannot_record() {
    let mut run = Run::start(tenant(&[]), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    run.answer_at_phone();
    assert_eq!(
        record(&mut run, RecordAction::Start),
        Err(ControlError::NotAllowed(Refusal::RecordingNeedsMsml))
    );
    assert!(run.take(MS, Method::Invite).is_empty());
}

#[test]
fn a_refused_recording_leaves_the_call_unrecorded_or_released_as_the_tenant_says() {
    let mut answered = 0;
    let mut run = Run::start(msml_tenant(), DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    run.answer_at_phone();
    record(&mut run, RecordAction::Start).expect("start");
    let joins = run.take(MS, Method::Invite);
    answer_joins(&mut run, &joins);
    // The conference is made; the record itself is refused.
    let made = answer_some_msml(&mut run, &mut answered, 200, 3);
    assert_eq!(made.len(), 3);
    let before = super::super::recordings_failed();
    let refused = answer_msml(&mut run, &mut answered, 500);
    assert_eq!(refused.len(), 1);
    assert!(super::super::recordings_failed() > before, "counted");
    let failed = run
        .events
        .iter()
        .rev()
        .find(|e| e.kind.name() == "RecordingFailed")
        .expect("RecordingFailed");
    assert_eq!(failed.call.cause, "media-server");
    assert_ne!(run.kinds().last(), Some(&"Released"), "goes on unrecorded");
    assert_eq!(run.take(MS, Method::Bye).len(), 2, "off the conference");

    // A tenant that will not have calls unrecorded releases it.
    let strict = msml_tenant_with(&[("recording-failure", "release")]);
    let mut answered = 0;
    let mut run = Run::start(strict, DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    run.answer_at_phone();
    record(&mut run, RecordAction::Start).expect("start");
    let joins = run.take(MS, Method::Invite);
    answer_joins(&mut run, &joins);
    answer_some_msml(&mut run, &mut answered, 200, 3);
    answer_msml(&mut run, &mut answered, 500);
    let last = run.events.last().expect("event");
    assert_eq!(
        (last.kind.name(), last.call.cause.as_str()),
        ("Released", "recording-failed")
    );
}

#[test]
fn per_stream_each_party_is_recorded_in_a_file_of_its_own() {
    let tenant = msml_tenant_with(&[("recording", "per-stream")]);
    let mut answered = 0;
    let mut run = Run::start(tenant, DnCalls::default(), "1001");
    run.located(&["192.0.2.9:5062"]);
    run.answer_at_phone();
    record(&mut run, RecordAction::Start).expect("start");
    let joins = run.take(MS, Method::Invite);
    answer_joins(&mut run, &joins);
    let made = answer_some_msml(&mut run, &mut answered, 200, 4);
    let records = elements(&made[3..]);
    assert_eq!(
        records,
        [
            "<dialogstart target=\"conn:ms0\" type=\"application/moml+xml\" name=\"record-caller\">",
            "<record dest=\"file:///var/spool/switchboard/recordings/demo/call-1-caller.wav\" format=\"audio/wav\" maxtime=\"4h\"/>",
            "</dialogstart>",
        ]
    );
    assert!(
        !run.kinds().contains(&"RecordingStarted"),
        "not until both files are"
    );
    let agent = answer_msml(&mut run, &mut answered, 200);
    assert!(elements(&agent)[0].contains("target=\"conn:ms1\""));
    assert!(elements(&agent)[0].contains("name=\"record-agent\""));
    let started = run.events.last().expect("event");
    assert_eq!(started.kind.name(), "RecordingStarted");
    assert_eq!(
        started.call.recording_id,
        "conn:ms0/dialog:record-caller,conn:ms1/dialog:record-agent"
    );
    record(&mut run, RecordAction::Pause).expect("pause");
    let pause = answer_msml(&mut run, &mut answered, 200);
    assert_eq!(pause.len(), 2, "each file paused");
    assert_eq!(run.kinds().last(), Some(&"RecordingPaused"));
    assert_eq!(
        run.kinds()
            .iter()
            .filter(|k| **k == "RecordingPaused")
            .count(),
        1,
        "reported once"
    );
}
