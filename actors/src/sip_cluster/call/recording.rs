//! Recording a call on its media server, for compliance: asked by a desktop (start, pause,
//! resume, stop), a strategy, or the tenant's configuration as the call is answered. Media
//! never passes through the core, so the call moves onto a conference on a media server
//! controlled by MSML (as monitoring does), and the server records to the URI the tenant
//! configures (option `recording-uri`, `{tenant}`, `{call}` and `{stream}` replaced): the
//! conference, both parties mixed, in one file (option `recording = "per-call"`, the
//! default), or each party's connection in a file of its own (`"per-stream"`, streams
//! `caller` and `agent`). Each file is an MSML `dialogstart` with a `record`, paused and
//! resumed by `send`, stopped by `dialogend`; a step is reported once every file has taken
//! it. A recording the server refuses is reported (RecordingFailed) and
//! counted; the tenant says whether the call goes on unrecorded (option `recording-failure`
//! = `continue`, the default) or is released (`release`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Call, Mode, Phase};
use crate::messages::call_state::CallEventKind;
use crate::messages::sip_cluster::{ControlError, Operation, RecordAction, Refusal};
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
    /// Each file the server writes: its MSML dialog, and its URI (once both parties are
    /// joined and the files are asked for).
    pub(super) files: Vec<(String, String)>,
    /// Answers still awaited for the step under way.
    awaited: usize,
}

impl Recording {
    /// The recording's ids (its MSML dialogs) and URIs, comma-separated when per stream.
    pub(super) fn ids_and_uris(&self) -> (String, String) {
        let join = |f: fn(&(String, String)) -> &str| {
            self.files.iter().map(f).collect::<Vec<_>>().join(",")
        };
        (join(|f| &f.0), join(|f| &f.1))
    }
}

impl Call {
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
            (RecordAction::Pause, Some(Stage::On)) => Some("pause"),
            (RecordAction::Resume, Some(Stage::Paused)) => Some("resume"),
            (RecordAction::Pause | RecordAction::Resume, Some(_)) => return Ok(()),
            (RecordAction::Stop, Some(_)) => None,
        };
        let dialogs: Vec<String> = self
            .recording()
            .map(|r| r.files.iter().map(|f| f.0.clone()).collect())
            .unwrap_or_default();
        if request.is_none() {
            self.set_stage(Stage::Stopping);
        }
        self.await_answers(dialogs.len());
        for dialog in dialogs {
            let msml = match request {
                Some(event) => Request::Send {
                    dialog,
                    event: event.to_owned(),
                },
                None => Request::DialogEnd { dialog },
            };
            self.msml_request(msml, now);
        }
        Ok(())
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(r) = self.conference_mut().and_then(|c| c.recording.as_mut()) {
            r.stage = stage;
        }
    }

    fn await_answers(&mut self, n: usize) {
        if let Some(r) = self.conference_mut().and_then(|c| c.recording.as_mut()) {
            r.awaited = n;
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
        if !self.on_conference(Operation::Record, now)? {
            // Recorded as soon as the call allows.
            self.pending_record = true;
            return Ok(());
        }
        tracing::info!(tenant = %self.tenant.name, call_id = %self.id, "recording");
        if let Some(c) = self.conference_mut() {
            c.recording = Some(Recording {
                stage: Stage::Starting,
                files: Vec::new(),
                awaited: 0,
            });
        }
        self.record_when_joined(now);
        Ok(())
    }

    /// The URI of the file of `stream` (`caller`, `agent`, or `call` for both mixed).
    fn recording_uri(&self, stream: &str) -> String {
        let default = if stream == "call" {
            "file:///var/spool/switchboard/recordings/{tenant}/{call}.wav"
        } else {
            "file:///var/spool/switchboard/recordings/{tenant}/{call}-{stream}.wav"
        };
        let options = &self.tenant.config.options;
        options
            .get("recording-uri")
            .map_or(default, |u| u.trim())
            .replace("{tenant}", &self.tenant.name)
            .replace("{call}", &self.id)
            .replace("{stream}", stream)
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

    /// Asks for the recording's files once both parties are joined to the conference:
    /// the conference's, or each party's connection's.
    pub(super) fn record_when_joined(&mut self, now: Instant) {
        let ready = self.parties_joined() >= 2
            && self
                .recording()
                .is_some_and(|r| r.stage == Stage::Starting && r.files.is_empty());
        if !ready {
            return;
        }
        let per_stream = self
            .tenant
            .config
            .options
            .get("recording")
            .map(|v| v.trim())
            == Some("per-stream");
        let targets = if per_stream {
            let (caller, agent) = self.party_connections();
            vec![("caller", caller), ("agent", agent)]
        } else {
            vec![("call", format!("conf:{}", self.id))]
        };
        let mut requests = Vec::with_capacity(targets.len());
        let mut files = Vec::with_capacity(targets.len());
        for (stream, target) in targets {
            let name = match stream {
                "call" => "record".to_owned(),
                stream => format!("record-{stream}"),
            };
            let dest = self.recording_uri(stream);
            files.push((format!("{target}/dialog:{name}"), dest.clone()));
            requests.push(Request::Record { dest, name, target });
        }
        if let Some(r) = self.conference_mut().and_then(|c| c.recording.as_mut()) {
            r.awaited = requests.len();
            r.files = files;
        }
        for request in requests {
            self.msml_request(request, now);
        }
    }

    /// The server carried out a recording request; the step is reported once every file
    /// has taken it.
    pub(super) fn recording_done(&mut self, request: &Request, now: Instant) {
        let Some(r) = self.conference_mut().and_then(|c| c.recording.as_mut()) else {
            return;
        };
        r.awaited = r.awaited.saturating_sub(1);
        if r.awaited > 0 {
            return;
        }
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
