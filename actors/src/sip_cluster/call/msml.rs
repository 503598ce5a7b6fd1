//! A monitored call's conference on a media server controlled by MSML (RFC 5707, option
//! `control = "msml"`): each member's leg into the server is a plain connection
//! (`sip:msml=<call>@server`), and who hears whom is said in MSML, sent in SIP INFO within
//! the first connection's dialog, one request at a time, each answered by a `<result>` in
//! the INFO's 200. The conference (`conf:<call>`) is created with the first connection; the
//! parties join it both ways; the supervisor joins it hearing only (listen), both ways
//! (barge), or hearing it and heard by the agent alone (whisper: a second join, from the
//! supervisor's connection to the agent's). A change of mode is a change of streams; a
//! refusal from the server ends the monitoring, and the parties talk directly again.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::{HeaderName, Method, Response};

use super::legs::LegId;
use super::txns::Purpose;
use super::{Call, Phase, to_tag};
use crate::messages::sip_cluster::MonitorMode;
use crate::msml::{self, Flow, Request};

/// What the call keeps of its conference on an MSML server.
#[derive(Debug, Default)]
pub(super) struct MsmlConference {
    /// The leg into the server whose dialog carries MSML: the first one answered.
    channel: Option<usize>,
    /// Each member's connection at the server (`conn:<the server's tag>`), by its leg.
    conns: Vec<(usize, String)>,
    created: bool,
    /// Whether the supervisor's whisper path (to the agent) is joined.
    whispering: bool,
    /// How many of the parties (not the supervisor) are joined.
    parties: usize,
    /// Requests still to send, in order.
    queue: VecDeque<Request>,
    /// The request sent and not answered yet.
    in_flight: Option<Request>,
}

impl MonitorMode {
    /// How the supervisor's connection is joined to the conference.
    fn flow(self) -> Flow {
        match self {
            MonitorMode::Listen | MonitorMode::Whisper => Flow::Hears,
            MonitorMode::Barge => Flow::Both,
        }
    }
}

impl Call {
    fn msml_mut(&mut self) -> Option<&mut MsmlConference> {
        self.conference_mut().and_then(|c| c.msml.as_deref_mut())
    }

    /// The conference's MSML name.
    fn conf_id(&self) -> String {
        format!("conf:{}", self.id)
    }

    /// A member's leg `ms` into the server answered `r`: its connection joins the
    /// conference as the member's part says.
    pub(super) fn msml_joined(&mut self, ms: usize, r: &Response, supervisor: bool, now: Instant) {
        let conn = format!("conn:{}", to_tag(r));
        let conf = self.conf_id();
        let flow = match self.monitor() {
            Some(m) if supervisor => m.mode.flow(),
            _ => Flow::Both,
        };
        let Some(state) = self.msml_mut() else {
            return;
        };
        state.channel.get_or_insert(ms);
        state.conns.push((ms, conn.clone()));
        if !state.created {
            state.created = true;
            state.queue.push_back(Request::CreateConference {
                name: conf.trim_start_matches("conf:").to_owned(),
            });
        }
        state.queue.push_back(Request::Join {
            id1: conn,
            id2: conf,
            flow,
        });
        if !supervisor {
            state.parties += 1;
        }
        self.whisper_path();
        self.record_when_joined(now);
        self.msml_next(now);
    }

    /// How many parties are joined to the conference.
    pub(super) fn parties_joined(&self) -> usize {
        self.conference()
            .and_then(|c| c.msml.as_deref())
            .map_or(0, |m| m.parties)
    }

    /// Sends `request` once those before it are answered.
    pub(super) fn msml_request(&mut self, request: Request, now: Instant) {
        if let Some(state) = self.msml_mut() {
            state.queue.push_back(request);
        }
        self.msml_next(now);
    }

    /// The connections of the supervisor and of the agent, once both are known.
    fn supervisor_and_agent(&self) -> Option<(String, String)> {
        let conference = self.conference()?;
        let state = conference.msml.as_deref()?;
        let conn_of = |supervisor: bool| {
            let member = conference
                .members
                .iter()
                .find(|m| m.supervisor == supervisor && m.party != LegId::A)?;
            let ms = member.ms?;
            state
                .conns
                .iter()
                .find(|(leg, _)| *leg == ms)
                .map(|(_, c)| c.clone())
        };
        Some((conn_of(true)?, conn_of(false)?))
    }

    /// The connections of the caller and of the agent (empty until known).
    pub(super) fn party_connections(&self) -> (String, String) {
        let Some(conference) = self.conference() else {
            return Default::default();
        };
        let conn_of = |party: bool| {
            let member = conference
                .members
                .iter()
                .find(|m| !m.supervisor && (m.party == LegId::A) == party)?;
            let ms = member.ms?;
            conference
                .msml
                .as_deref()?
                .conns
                .iter()
                .find(|(leg, _)| *leg == ms)
                .map(|(_, c)| c.clone())
        };
        (
            conn_of(true).unwrap_or_default(),
            conn_of(false).unwrap_or_default(),
        )
    }

    /// Joins (or unjoins) the supervisor's connection to the agent's, heard by the agent
    /// alone, as whisper needs and the other modes do not.
    fn whisper_path(&mut self) {
        let whisper = self
            .monitor()
            .is_some_and(|m| m.mode == MonitorMode::Whisper);
        let Some((supervisor, agent)) = self.supervisor_and_agent() else {
            return;
        };
        let Some(state) = self.msml_mut() else {
            return;
        };
        if whisper && !state.whispering {
            state.whispering = true;
            state.queue.push_back(Request::Join {
                id1: supervisor,
                id2: agent,
                flow: Flow::Heard,
            });
        } else if !whisper && state.whispering {
            state.whispering = false;
            state.queue.push_back(Request::Unjoin {
                id1: supervisor,
                id2: agent,
            });
        }
    }

    /// The supervisor's new mode, said to the server: its streams with the conference, and
    /// its path to the agent.
    pub(super) fn msml_mode(&mut self, mode: MonitorMode, now: Instant) {
        let conf = self.conf_id();
        if let Some((supervisor, _)) = self.supervisor_and_agent()
            && let Some(state) = self.msml_mut()
        {
            state.queue.push_back(Request::ModifyStream {
                id1: supervisor,
                id2: conf,
                flow: mode.flow(),
            });
        }
        self.whisper_path();
        self.msml_next(now);
    }

    /// Sends the next MSML request, unless one is in flight.
    fn msml_next(&mut self, now: Instant) {
        let Some(state) = self.msml_mut() else {
            return;
        };
        if state.in_flight.is_some() {
            return;
        }
        let (Some(channel), Some(request)) = (state.channel, state.queue.pop_front()) else {
            return;
        };
        let body = Bytes::from(request.to_xml());
        state.in_flight = Some(request);
        self.send_in_dialog(
            LegId::B(channel),
            Method::Info,
            &[],
            Some((msml::CONTENT_TYPE, body)),
            Purpose::Msml,
            now,
        );
    }

    /// The server answered an MSML request: the next goes, or a refusal of a recording
    /// fails the recording, and of anything else ends the monitoring and the recording, and
    /// the parties talk directly again.
    pub(super) fn msml_answered(&mut self, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        let Some(request) = self.msml_mut().and_then(|s| s.in_flight.take()) else {
            return;
        };
        let recording = matches!(
            request,
            Request::Record { .. } | Request::Send { .. } | Request::DialogEnd { .. }
        );
        let refusal = match msml::parse_answer(&String::from_utf8_lossy(&r.body)) {
            _ if r.status >= 300 => Some(format!("INFO answered {}", r.status)),
            Ok(answer) if answer.ok() => None,
            Ok(answer) => Some(format!("{} {}", answer.response, answer.description)),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = refusal {
            tracing::warn!(tenant = %self.tenant.name, call_id = %self.id, %why,
                request = ?request, "the media server refused MSML");
            if self.phase != Phase::Established {
                return;
            }
            if recording {
                self.recording_failed("media-server", r.status, now);
                self.msml_next(now);
            } else {
                self.conference_failed(r.status, now);
            }
            return;
        }
        if recording {
            self.recording_done(&request, now);
        }
        self.msml_next(now);
    }

    /// An INFO from the server within a connection's dialog: an MSML event, answered and
    /// logged (a monitored call needs none of them).
    pub(super) fn msml_event(&mut self, body: &[u8]) {
        match msml::parse_event(&String::from_utf8_lossy(body)) {
            Ok(event) => tracing::debug!(tenant = %self.tenant.name, call_id = %self.id,
                name = %event.name, id = %event.id, "MSML event"),
            Err(e) => tracing::info!(tenant = %self.tenant.name, call_id = %self.id,
                error = %e, "an MSML event that cannot be read"),
        }
    }

    /// Whether `leg` is one of the call's connections into an MSML server.
    pub(super) fn msml_leg(&self, leg: LegId) -> bool {
        let LegId::B(i) = leg else {
            return false;
        };
        self.conference()
            .is_some_and(|c| c.msml.is_some() && c.members.iter().any(|m| m.ms == Some(i)))
    }
}

/// Whether `headers` say the body is MSML.
pub(super) fn is_msml(headers: &switchboard_sip::Headers) -> bool {
    headers
        .get(&HeaderName::ContentType)
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(msml::CONTENT_TYPE))
}
