//! A desktop's request for a call on another node, and its answer, as they cross.

use switchboard_proto::bus as pb;

use super::Unreadable;
use crate::messages::sip_cluster::{
    CallState, CallView, Capability, Control, ControlError, Invalid, MonitorMode, Operation,
    RecordAction, Refusal,
};

pub(super) fn control_to_pb(c: &Control) -> pb::call_control::Control {
    use pb::call_control::Control as P;
    let pairs = |data: &[(String, String)]| pb::UserData {
        pairs: data
            .iter()
            .map(|(key, value)| pb::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    };
    match c {
        Control::View => P::View(pb::Empty {}),
        Control::Answer => P::Answer(pb::Empty {}),
        Control::Consulting(call) => P::Consulting(call.clone()),
        Control::Hold => P::Hold(pb::Empty {}),
        Control::Retrieve => P::Retrieve(pb::Empty {}),
        Control::Reconnect => P::Reconnect(pb::Empty {}),
        Control::Release => P::Release(pb::Empty {}),
        Control::AttachUserData(d) => P::AttachUserData(pairs(d)),
        Control::UpdateUserData(d) => P::UpdateUserData(pairs(d)),
        Control::DeleteUserData(keys) => P::DeleteUserData(pb::Keys { keys: keys.clone() }),
        Control::SendDtmf(digits) => P::SendDtmf(digits.clone()),
        Control::DeleteFromConference(party) => P::DeleteFromConference(party.clone()),
        Control::SingleStepTransfer(to) => P::SingleStepTransfer(to.clone()),
        Control::Monitor { supervisor, mode } => P::Monitor(pb::Monitor {
            supervisor: supervisor.clone(),
            mode: mode.name().to_owned(),
        }),
        Control::StopMonitoring => P::StopMonitoring(pb::Empty {}),
        Control::Record(action) => P::Record(action.name().to_owned()),
    }
}

pub(super) fn control_from_pb(c: pb::call_control::Control) -> Control {
    use pb::call_control::Control as P;
    let pairs = |d: pb::UserData| d.pairs.into_iter().map(|p| (p.key, p.value)).collect();
    match c {
        P::View(_) => Control::View,
        P::Answer(_) => Control::Answer,
        P::Consulting(call) => Control::Consulting(call),
        P::Hold(_) => Control::Hold,
        P::Retrieve(_) => Control::Retrieve,
        P::Reconnect(_) => Control::Reconnect,
        P::Release(_) => Control::Release,
        P::AttachUserData(d) => Control::AttachUserData(pairs(d)),
        P::UpdateUserData(d) => Control::UpdateUserData(pairs(d)),
        P::DeleteUserData(k) => Control::DeleteUserData(k.keys),
        P::SendDtmf(digits) => Control::SendDtmf(digits),
        P::DeleteFromConference(party) => Control::DeleteFromConference(party),
        P::SingleStepTransfer(to) => Control::SingleStepTransfer(to),
        // A mode this node does not know is heard as the least intrusive.
        P::Monitor(m) => Control::Monitor {
            supervisor: m.supervisor,
            mode: MonitorMode::parse(&m.mode).unwrap_or(MonitorMode::Listen),
        },
        P::StopMonitoring(_) => Control::StopMonitoring,
        // An action this node does not know changes nothing.
        P::Record(action) => RecordAction::parse(&action).map_or(Control::View, Control::Record),
    }
}

pub(super) fn result_to_pb(r: &Result<CallView, ControlError>) -> pb::ControlResult {
    use pb::control_result::Result as R;
    let result = match r {
        Ok(view) => R::View(pb::CallView {
            call: Some(view.call.clone()),
            state: view.state.name().to_owned(),
            capabilities: view
                .capabilities
                .iter()
                .map(|c| c.name().to_owned())
                .collect(),
        }),
        Err(e) => R::Failure(failure_to_pb(e)),
    };
    pb::ControlResult {
        result: Some(result),
    }
}

pub(super) fn result_from_pb(
    tenant: &str,
    r: pb::ControlResult,
) -> Result<Result<CallView, ControlError>, Unreadable> {
    use pb::control_result::Result as R;
    Ok(
        match r.result.ok_or(Unreadable::Invalid("control result"))? {
            R::View(v) => Ok(CallView {
                call: v.call.ok_or(Unreadable::Invalid("call"))?,
                state: CallState::parse(&v.state).ok_or(Unreadable::Invalid("call state"))?,
                capabilities: v
                    .capabilities
                    .iter()
                    .map(|c| Capability::parse(c).ok_or(Unreadable::Invalid("capability")))
                    .collect::<Result<_, _>>()?,
            }),
            R::Failure(f) => Err(failure_from_pb(tenant, f)?),
        },
    )
}

fn failure_to_pb(e: &ControlError) -> pb::ControlFailure {
    use pb::control_failure::Kind;
    let kind = match e {
        ControlError::NotFound(call) => Kind::NotFound(call.clone()),
        ControlError::NotAllowed(r) => Kind::Refused(refusal_to_pb(r)),
        ControlError::Invalid(i) => Kind::Invalid(pb::Invalid {
            kind: Some(match i {
                Invalid::UserDataKey(k) => pb::invalid::Kind::UserDataKey(k.clone()),
                Invalid::Digits(d) => pb::invalid::Kind::Digits(d.clone()),
                Invalid::NoRoute { dialed, .. } => pb::invalid::Kind::NoRoute(dialed.clone()),
            }),
        }),
        ControlError::Unavailable(why) => Kind::Unavailable(why.clone()),
    };
    pb::ControlFailure { kind: Some(kind) }
}

fn failure_from_pb(tenant: &str, f: pb::ControlFailure) -> Result<ControlError, Unreadable> {
    use pb::control_failure::Kind;
    Ok(
        match f.kind.ok_or(Unreadable::Invalid("control failure"))? {
            Kind::NotFound(call) => ControlError::NotFound(call),
            Kind::Refused(r) => ControlError::NotAllowed(refusal_from_pb(r)?),
            Kind::Invalid(i) => {
                ControlError::Invalid(match i.kind.ok_or(Unreadable::Invalid("invalid"))? {
                    pb::invalid::Kind::UserDataKey(k) => Invalid::UserDataKey(k),
                    pb::invalid::Kind::Digits(d) => Invalid::Digits(d),
                    pb::invalid::Kind::NoRoute(dialed) => Invalid::NoRoute {
                        tenant: tenant.to_owned(),
                        dialed,
                    },
                })
            }
            Kind::Unavailable(why) => ControlError::Unavailable(why),
        },
    )
}

/// The refusals with nothing but their name.
const PLAIN: [(&str, Refusal); 19] = [
    ("NoEarlyDialog", Refusal::NoEarlyDialog),
    ("NotAnswered", Refusal::NotAnswered),
    ("ConsultationNotAnswered", Refusal::ConsultationNotAnswered),
    ("NotConsultingAgent", Refusal::NotConsultingAgent),
    ("ConsultationBusy", Refusal::ConsultationBusy),
    ("NotAnsweringAgent", Refusal::NotAnsweringAgent),
    ("NotTransferringAgent", Refusal::NotTransferringAgent),
    ("OfferInProgress", Refusal::OfferInProgress),
    ("NoMediaServer", Refusal::NoMediaServer),
    ("AlreadyConference", Refusal::AlreadyConference),
    ("CannotTransferNow", Refusal::CannotTransferNow),
    ("NoSession", Refusal::NoSession),
    ("WhisperNeedsMsml", Refusal::WhisperNeedsMsml),
    ("MonitoredAlready", Refusal::MonitoredAlready),
    ("NotMonitored", Refusal::NotMonitored),
    ("QueueNotMonitored", Refusal::QueueNotMonitored),
    ("RecordingNeedsMsml", Refusal::RecordingNeedsMsml),
    ("RecordedAlready", Refusal::RecordedAlready),
    ("NotRecorded", Refusal::NotRecorded),
];

fn refusal_to_pb(r: &Refusal) -> pb::Refused {
    let named = |kind: &str| pb::Refused {
        kind: kind.to_owned(),
        ..Default::default()
    };
    match r {
        Refusal::State(operation, state) => pb::Refused {
            kind: "State".into(),
            operation: operation.name(),
            state: state.name().to_owned(),
            detail: String::new(),
        },
        Refusal::NotInConference(party) => pb::Refused {
            detail: party.clone(),
            ..named("NotInConference")
        },
        Refusal::NotStarted(why) => pb::Refused {
            detail: why.clone(),
            ..named("NotStarted")
        },
        plain => named(
            PLAIN
                .iter()
                .find(|(_, r)| r == plain)
                .map_or("Unknown", |(name, _)| name),
        ),
    }
}

fn refusal_from_pb(r: pb::Refused) -> Result<Refusal, Unreadable> {
    Ok(match r.kind.as_str() {
        "State" => Refusal::State(
            Operation::parse(&r.operation).ok_or(Unreadable::Invalid("operation"))?,
            CallState::parse(&r.state).ok_or(Unreadable::Invalid("call state"))?,
        ),
        "NotInConference" => Refusal::NotInConference(r.detail),
        "NotStarted" => Refusal::NotStarted(r.detail),
        name => PLAIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.clone())
            .ok_or(Unreadable::Invalid("refusal"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Body, Letter, decode, encode};
    use super::*;
    use crate::messages::bus::{Answer, NodeBound};
    use switchboard_proto::events::CallThread;

    fn round_trip(body: Body) {
        let letter = Letter {
            tenant: "demo".into(),
            from: "sbnode2".into(),
            fence: 0,
            ask: 3,
            body,
        };
        assert_eq!(decode(&encode(&letter)), Ok(letter));
    }

    #[test]
    fn every_control_crosses_unchanged() {
        let data = vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ];
        for control in [
            Control::View,
            Control::Answer,
            Control::Consulting("c2".into()),
            Control::Consulting(String::new()),
            Control::Hold,
            Control::Retrieve,
            Control::Reconnect,
            Control::Release,
            Control::AttachUserData(data.clone()),
            Control::UpdateUserData(data),
            Control::DeleteUserData(vec!["a".into()]),
            Control::DeleteUserData(Vec::new()),
            Control::SendDtmf("12#".into()),
            Control::DeleteFromConference("1005".into()),
            Control::Monitor {
                supervisor: "1020".into(),
                mode: MonitorMode::Whisper,
            },
            Control::StopMonitoring,
            Control::Record(RecordAction::Pause),
            Control::SingleStepTransfer("1007".into()),
        ] {
            round_trip(Body::Node(NodeBound::Control {
                call: "c1".into(),
                dn: "1003".into(),
                control,
            }));
        }
    }

    #[test]
    fn every_control_answer_crosses_unchanged() {
        let mut results = vec![
            Ok(CallView {
                call: CallThread {
                    call_id: "c1".into(),
                    thread_id: "c1".into(),
                    ani: "+1555".into(),
                    ..Default::default()
                },
                state: CallState::Held,
                capabilities: vec![Capability::Retrieve, Capability::SendDtmf],
            }),
            Err(ControlError::NotFound("c1".into())),
            Err(Invalid::UserDataKey("k".into()).into()),
            Err(Invalid::Digits("x".into()).into()),
            Err(Invalid::NoRoute {
                tenant: "demo".into(),
                dialed: "000".into(),
            }
            .into()),
            Err(ControlError::Unavailable("gone".into())),
            Err(Refusal::State(Operation::Hold, CallState::Ringing).into()),
            Err(Refusal::NotInConference("1005".into()).into()),
            Err(Refusal::NotStarted("spawn".into()).into()),
        ];
        results.extend(PLAIN.iter().map(|(_, r)| Err(r.clone().into())));
        for result in results {
            round_trip(Body::Answer(Answer::Control(result)));
        }
    }
}
