//! What the call reports: its events (to `call_state`, which numbers and stores them, and to
//! agent state through the DNs they concern) and its snapshot, what another node needs to
//! carry the call on.

use switchboard_proto::events::{CallThread, Party};

use super::legs::LegId;
use super::{Call, Output, Phase};
use crate::messages::call_state::{CallEvent, CallEventKind};
use crate::messages::sip_cluster::Origin;

impl Call {
    pub(super) fn event(&mut self, kind: CallEventKind, cause: &str, status: u16) {
        self.event_leaving(kind, cause, status, Vec::new());
    }

    /// As [`Call::event`], with the DNs that are no longer parties.
    pub(super) fn event_leaving(
        &mut self,
        kind: CallEventKind,
        cause: &str,
        status: u16,
        left: Vec<String>,
    ) {
        let mut call = self.call_thread(cause);
        call.status = u32::from(status);
        let (mut index, mut unindex) = (Vec::new(), Vec::new());
        let snapshot = if kind.ends_call() {
            unindex = std::mem::take(&mut self.indexed)
                .iter()
                .map(|c| c.to_string())
                .collect();
            None
        } else {
            let snapshot = self.snapshot(kind);
            for leg in &snapshot.legs {
                if !self.indexed.iter().any(|c| **c == *leg.call_id) {
                    self.indexed.push(leg.call_id.as_str().into());
                    index.push(leg.call_id.clone());
                }
            }
            Some(serde_json::to_string(&snapshot).unwrap_or_default())
        };
        let mut dns = Vec::new();
        if let Origin::Phone(dn) = &self.origin {
            dns.push(dn.clone());
        }
        // The DN rung counts once it is alerted (from Ringing), or to hear that it is over.
        if self.callee.dn
            && self.phase != Phase::Routing
            && let Some(dn) = &self.callee.name
        {
            dns.push(dn.clone());
        }
        if let Some(conference) = self.conference() {
            for m in conference.members.iter().filter(|m| m.internal) {
                if !dns.contains(&m.dn) {
                    dns.push(m.dn.clone());
                }
            }
        }
        self.out.push_back(Output::Event(Box::new(CallEvent {
            tenant: self.tenant.name.clone(),
            kind,
            call,
            at_ms: crate::unix_ms(),
            snapshot,
            index,
            unindex,
            dns,
            left,
            former_thread: self.thread.former.take().map(String::from),
        })));
    }

    /// The call as events report it.
    pub(super) fn call_thread(&self, cause: &str) -> CallThread {
        let mut parties = vec![Party {
            dn: match &self.origin {
                Origin::Phone(dn) => dn.clone(),
                _ => self.ani.clone(),
            },
            role: "origination".into(),
            uri: self.caller_uri.clone(),
            mode: String::new(),
        }];
        if let Some(conference) = self.conference() {
            let monitor = conference.monitor.as_ref();
            for m in conference.members.iter().filter(|m| m.party != LegId::A) {
                let (role, mode) = match monitor {
                    Some(monitor) if m.supervisor => ("supervisor", monitor.mode.name()),
                    Some(_) => ("destination", ""),
                    None => ("conference", ""),
                };
                parties.push(Party {
                    dn: m.dn.clone(),
                    role: role.into(),
                    uri: self.legs.get(m.party).target.clone(),
                    mode: mode.into(),
                });
            }
        } else if let Some(dest) = &self.callee.name {
            parties.push(Party {
                dn: dest.clone(),
                role: "destination".into(),
                uri: self
                    .legs
                    .winner
                    .map(|i| self.legs.b[i].target.clone())
                    .unwrap_or_default(),
                mode: String::new(),
            });
        }
        let mut thread = CallThread {
            call_id: self.id.to_string(),
            thread_id: self.thread_id().to_owned(),
            parties,
            ani: self.ani.clone(),
            dnis: self.dnis.clone(),
            origin: self.origin.describe(),
            cause: cause.to_owned(),
            status: 0,
            duration_ms: self.started.elapsed().as_millis() as i64,
            user_data: self
                .user_data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..CallThread::default()
        };
        self.routing_fields(&mut thread);
        if let Some(r) = self.recording() {
            (thread.recording_id, thread.recording_uri) = r.ids_and_uris();
        }
        thread
    }
}
