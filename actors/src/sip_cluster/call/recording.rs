//! Recording a call on its media server, for compliance: asked by a desktop (start, pause,
//! resume, stop), or by the tenant's configuration for a DN as the call is answered. Media
//! never passes through the core, so the call moves onto a conference on a media server
//! controlled by MSML (as monitoring does), and the server records the conference, both
//! parties mixed, to the URI the tenant configures (option `recording-uri`, `{tenant}` and
//! `{call}` replaced): an MSML `dialogstart` with a `record`, paused and resumed by `send`,
//! stopped by `dialogend`. A recording the server refuses is reported (RecordingFailed) and
//! counted; the tenant says whether the call goes on unrecorded (option `recording-failure`
//! = `continue`, the default) or is released (`release`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Call, Mode, Phase};
use crate::messages::call_state::CallEventKind;
use crate::messages::sip_cluster::{CallState, ControlError, Operation, RecordAction, Refusal};
use crate::msml::Request;
use crate::tenant::MediaControl;

/// Recordings the media servers refused or that failed, for the metrics.
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Recordings that failed in this process.
pub fn failed() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// Where a recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Asked; the server has not said yet.
    Starting,
    On,
    Paused,
    Stopping,
}

/// The call's recording.
#[derive(Debug)]
pub(super) struct Recording {
    pub(super) stage: Stage,
    /// The file the server writes.
    pub(super) uri: String,
    /// Whether the MSML `record` is sent (once both parties are joined).
    pub(super) sent: bool,
}

impl Call {
    /// The recording's MSML dialog: `conf:<call>/dialog:record`.
    pub(super) fn recording_id(&self) -> String {
        format!("conf:{}/dialog:record", self.id)
    }

    /// The call's recording, if any.
    pub(super) fn recording(&self) -> Option<&Recording> {
        self.conference().and_then(|c| c.recording.as_ref())
    }

    /// A desktop's (or the configuration's) recording request.
    pub(super) fn record(
        &mut self,
        action: RecordAction,
        now: Instant,
    ) -> Result<(), ControlError> {
        let stage = self.recording().map(|r| r.stage);
        let request = match (action, stage) {
            (RecordAction::Start, None) => return self.start_recording(now),
            (RecordAction::Start, Some(_)) => return Err(Refusal::RecordedAlready.into()),
            (_, None | Some(Stage::Starting | Stage::Stopping)) => {
                return Err(Refusal::NotRecorded.into());
            }
            (RecordAction::Pause, Some(Stage::On)) => ("pause", Stage::On),
            (RecordAction::Resume, Some(Stage::Paused)) => ("resume", Stage::Paused),
            (RecordAction::Pause | RecordAction::Resume, Some(_)) => return Ok(()),
            (RecordAction::Stop, Some(_)) => {
                self.set_stage(Stage::Stopping);
                let dialog = self.recording_id();
                self.msml_request(Request::DialogEnd { dialog }, now);
                return Ok(());
            }
        };
        let dialog = self.recording_id();
        self.msml_request(
            Request::Send {
                dialog,
                event: request.0.to_owned(),
            },
            now,
        );
        Ok(())
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(r) = self.conference_mut().and_then(|c| c.recording.as_mut()) {
            r.stage = stage;
        }
    }

    fn start_recording(&mut self, now: Instant) -> Result<(), ControlError> {
        let msml = self
            .tenant
            .media_servers
            .first()
            .is_some_and(|m| m.control == MediaControl::Msml);
        if !msml {
            return Err(Refusal::RecordingNeedsMsml.into());
        }
        if self.conference().is_some_and(|c| c.own.is_none()) {
            return Err(Refusal::AlreadyConference.into());
        }
        if self.conference().is_none() {
            let state = self.state();
            let answering = state == CallState::Established && !self.settled();
            if matches!(state, CallState::Dialing | CallState::Ringing) || answering {
                // Recorded as soon as the call allows.
                self.pending_record = true;
                return Ok(());
            }
            if state != CallState::Established {
                return Err(Refusal::State(Operation::Record, state).into());
            }
            self.onto_conference(now)?;
        }
        let uri = self
            .tenant
            .config
            .options
            .get("recording-uri")
            .map(|u| u.trim())
            .unwrap_or("file:///var/spool/switchboard/recordings/{tenant}/{call}.wav")
            .replace("{tenant}", &self.tenant.name)
            .replace("{call}", &self.id);
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id, %uri, "recording");
        if let Some(c) = self.conference_mut() {
            c.recording = Some(Recording {
                stage: Stage::Starting,
                uri,
                sent: false,
            });
        }
        self.record_when_joined(now);
        Ok(())
    }

    /// Starts the recording asked before the call was answered, once it is.
    pub(super) fn record_when_answered(&mut self, now: Instant) {
        if self.phase == Phase::Ending {
            self.pending_record = false;
            return;
        }
        if !self.settled() {
            return;
        }
        self.pending_record = false;
        if let Err(e) = self.start_recording(now) {
            tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, error = %e,
                "the call cannot be recorded");
            self.recording_failed("refused", 0, now);
        }
    }

    /// Whether the call is answered, put through to its party (no longer at its routing
    /// point, nor being placed), and no offer is under way on it: what may move it onto a
    /// conference.
    pub(super) fn settled(&self) -> bool {
        self.phase == Phase::Established
            && matches!(self.mode, Mode::Direct)
            && !self.offer_in_progress()
    }

    /// Sends the MSML `record` once both parties are joined to the conference.
    pub(super) fn record_when_joined(&mut self, now: Instant) {
        let ready = self.parties_joined() >= 2
            && self
                .recording()
                .is_some_and(|r| r.stage == Stage::Starting && !r.sent);
        if !ready {
            return;
        }
        let Some(uri) = self.recording().map(|r| r.uri.clone()) else {
            return;
        };
        if let Some(r) = self.conference_mut().and_then(|c| c.recording.as_mut()) {
            r.sent = true;
        }
        let request = Request::Record {
            target: format!("conf:{}", self.id),
            name: "record".into(),
            dest: uri,
        };
        self.msml_request(request, now);
    }

    /// The server carried out a recording request.
    pub(super) fn recording_done(&mut self, request: &Request, now: Instant) {
        let (stage, kind) = match request {
            Request::Record { .. } => (Stage::On, CallEventKind::RecordingStarted),
            Request::Send { event, .. } if event == "pause" => {
                (Stage::Paused, CallEventKind::RecordingPaused)
            }
            Request::Send { .. } => (Stage::On, CallEventKind::RecordingResumed),
            Request::DialogEnd { .. } => {
                self.event(CallEventKind::RecordingStopped, "", 0);
                if let Some(c) = self.conference_mut() {
                    c.recording = None;
                }
                if self.monitor().is_none() {
                    self.back_to_direct(now);
                }
                return;
            }
            _ => return,
        };
        self.set_stage(stage);
        self.event(kind, "", 0);
    }

    /// The recording failed (`cause`, the server's status): reported and counted; the call
    /// goes on unrecorded, or is released, as the tenant says.
    pub(super) fn recording_failed(&mut self, cause: &str, status: u16, now: Instant) {
        FAILED.fetch_add(1, Ordering::Relaxed);
        self.event(CallEventKind::RecordingFailed, cause, status);
        if let Some(c) = self.conference_mut() {
            c.recording = None;
        }
        let release = self
            .tenant
            .config
            .options
            .get("recording-failure")
            .map(|v| v.trim())
            == Some("release");
        if release && self.phase == Phase::Established {
            tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, cause,
                "the call could not be recorded: released, as the tenant says");
            self.end(
                CallEventKind::Released,
                "recording-failed",
                status,
                None,
                now,
            );
            return;
        }
        tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, cause,
            "the call could not be recorded: it goes on unrecorded");
        if self.monitor().is_none() {
            self.back_to_direct(now);
        }
    }
}
