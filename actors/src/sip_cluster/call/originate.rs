//! A call whose parties the core places itself, third-party call control (RFC 3725): for a
//! desktop's MakeCall (and a GES callback) the agent's phone is called first, told to answer
//! by itself, and invited without an offer; its offer in the 2xx is answered on hold and
//! passed to the callee, whose answer then reaches the phone in a re-INVITE. A single-step
//! transfer puts an answered party through anew the same way, with the session it had. Once
//! the callee answers the call is an ordinary one ([`super::Mode::Direct`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::dialog::{Dialog, DialogState};
use switchboard_sip::sdp::{self, Direction};
use switchboard_sip::support::ALLOW_IN_DIALOG as ALLOW;
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Headers, Method, Request, Response, Uri};

use super::legs::{Leg, LegId, Progress};
use super::timers::Timer;
use super::txns::Purpose;
use super::{Call, Local, Mode, Output, Phase, Setting, seq_of};
use crate::messages::call_state::CallEventKind;
use crate::messages::registrar::Binding;
use crate::messages::sip_cluster::Origin;
use crate::sip_cluster::{ClusterConfig, DnCalls};
use crate::tenant::Tenant;

/// What a call placed for a desktop still needs.
#[derive(Debug)]
pub(super) struct Originate {
    /// The number to dial once the agent's phone answers.
    pub(super) dial: String,
    /// What the callee is offered: the phone's offer, from its 2xx; or the session of the
    /// party a single-step transfer puts through.
    pub(super) offer: Option<Bytes>,
}

impl Call {
    /// Starts a call the core places for the agent at `dn` (make call): the agent's phone is
    /// called first, told to answer by itself, then `dial` once it has. Third-party call
    /// control (RFC 3725): the phone is invited without an offer; its offer in the 2xx is
    /// answered on hold and passed to the callee, whose answer then reaches the phone in a
    /// re-INVITE.
    #[expect(clippy::too_many_arguments, reason = "the call's whole setting")]
    pub fn originate(
        id: Arc<str>,
        tenant: Arc<Tenant>,
        dn: &str,
        dial: &str,
        user_data: BTreeMap<String, String>,
        thread: Option<String>,
        local: Local,
        config: Arc<ClusterConfig>,
        dn_calls: DnCalls,
        now: Instant,
    ) -> Self {
        let call_id = local.call_id(0);
        let aor = tenant.aor(dn);
        let ring = tenant
            .registering(dn)
            .and_then(|d| d.no_answer_timeout)
            .map_or(config.no_answer, |s| Duration::from_secs(s.into()));
        let mut a = Leg::new(
            call_id,
            switchboard_sip::token::<8>(),
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Transport::Udp,
        );
        a.target = aor.clone();
        let joined = thread.filter(|t| **t != *id).map(String::into_boxed_str);
        let setting = Setting {
            id,
            tenant,
            local,
            config,
            dn_calls,
        };
        let origin = Origin::Phone(dn.to_owned());
        let mut call = Self::new(
            setting,
            origin,
            a,
            dn.to_owned(),
            dial.to_owned(),
            aor.clone(),
            now,
        );
        call.thread.joined = joined;
        call.user_data = user_data;
        call.mode = Mode::Originating(Box::new(Originate {
            dial: dial.to_owned(),
            offer: None,
        }));
        call.timers.set(Timer::NoAnswer, now + ring);
        tracing::debug!(tenant = %call.tenant.name, call_id = %call.id, dn, dial, "making a call");
        call.event(CallEventKind::Dialing, "", 0);
        call.out.push_back(Output::Locate {
            tenant: call.tenant.name.clone(),
            aor,
        });
        call
    }

    /// Whether the agent's phone of a call placed for a desktop has yet to answer.
    pub(super) fn calling_phone(&self) -> bool {
        self.originating().is_some()
            && self
                .legs
                .a
                .dialog
                .as_ref()
                .is_none_or(|d| d.state != DialogState::Confirmed)
    }

    /// Calls the agent's phone of a call placed for a desktop, at its first contact.
    pub(super) fn call_phone(&mut self, bindings: Vec<Binding>, now: Instant) {
        let Some(b) = bindings.into_iter().next() else {
            self.end(CallEventKind::Released, "not-registered", 480, None, now);
            return;
        };
        let (Ok(uri), Some(originate)) = (Uri::parse_str(&b.contact), self.originating()) else {
            self.end(CallEventKind::Released, "not-registered", 480, None, now);
            return;
        };
        let dial = originate.dial.clone();
        let transport = Transport::from_via_name(&b.transport).unwrap_or(Transport::Udp);
        self.legs.a.peer = b.source;
        self.legs.a.transport = transport;
        let (invite, branch) = self.auto_answer_invite(&self.legs.a, uri, &dial);
        self.legs.a.invite = Some(Box::new(invite.clone()));
        self.send_request(LegId::A, invite, branch, Purpose::Invite, now);
    }

    /// An INVITE without an offer to the phone on `leg` at `uri`, from `from_user`, telling
    /// it to answer by itself (the desktop asked for the call; the hints phones know); its
    /// branch.
    pub(super) fn auto_answer_invite(
        &self,
        leg: &Leg,
        uri: Uri,
        from_user: &str,
    ) -> (Request, String) {
        let (via, branch) = self.local.via(leg.transport);
        let me = self.local.contact(leg.transport);
        let core = self.local.addr(leg.transport);
        let mut headers = Headers::with_capacity(12);
        headers.push(HeaderName::Via, via);
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(
            HeaderName::From,
            format!("<sip:{from_user}@{}>;tag={}", self.tenant.domain, leg.tag),
        );
        headers.push(HeaderName::To, format!("<{}>", leg.target));
        headers.push(HeaderName::CallId, leg.call_id.clone());
        headers.push(HeaderName::CSeq, "1 INVITE");
        headers.push(HeaderName::Contact, me);
        headers.push(HeaderName::Allow, ALLOW);
        headers.push(HeaderName::CallInfo, format!("<sip:{core}>;answer-after=0"));
        headers.push(
            HeaderName::AlertInfo,
            format!("<sip:{core}>;info=alert-autoanswer"),
        );
        headers.push(HeaderName::ContentLength, "0");
        let invite = Request {
            method: Method::Invite,
            uri,
            headers,
            body: Bytes::new(),
        };
        (invite, branch)
    }

    /// The agent's phone answered (or not) a call placed for its desktop.
    pub(super) fn phone_response(&mut self, r: Response, now: Instant) {
        if r.status < 200 {
            return;
        }
        if self.phase == Phase::Ending {
            if (200..300).contains(&r.status) {
                // Too late: the call ended meanwhile.
                if let Some(invite) = self.legs.a.invite.as_deref()
                    && let Ok(d) = Dialog::as_uac(invite, &r)
                {
                    self.legs.a.dialog = Some(d);
                }
                self.send_ack(
                    LegId::A,
                    seq_of(&r.headers),
                    Bytes::new(),
                    &Headers::default(),
                    now,
                );
                self.bye(LegId::A, now);
            }
            return;
        }
        if r.status >= 300 {
            let cause = if r.status == 486 {
                "busy"
            } else {
                "not-answered"
            };
            tracing::info!(tenant = %self.tenant.name, call_id = %self.id, status = r.status,
                "the agent's phone did not take the call");
            self.legs.a.progress = Progress::Failed(r.status);
            self.end(
                CallEventKind::Released,
                cause,
                r.status,
                Some(LegId::A),
                now,
            );
            return;
        }
        if self.legs.a.progress == Progress::Answered {
            return;
        }
        if let Some(invite) = self.legs.a.invite.as_deref()
            && let Ok(d) = Dialog::as_uac(invite, &r)
        {
            self.legs.a.dialog = Some(d);
        }
        self.legs.a.progress = Progress::Answered;
        self.legs.a.invite = None;
        self.timers.stop(Timer::NoAnswer);
        // Its offer is answered on hold until the callee answers, then offered the callee.
        let hold = sdp::redirected(&r.body, Direction::Inactive);
        let Some(hold) = hold else {
            self.send_ack(
                LegId::A,
                seq_of(&r.headers),
                Bytes::new(),
                &Headers::default(),
                now,
            );
            self.end(CallEventKind::Released, "bad-sdp", 488, None, now);
            return;
        };
        let mut from = Headers::default();
        from.push(HeaderName::ContentType, "application/sdp");
        // (send_ack keeps it as the description sent on the leg.)
        self.send_ack(LegId::A, seq_of(&r.headers), Bytes::from(hold), &from, now);
        if let Some(originate) = self.originating_mut() {
            originate.offer = Some(Bytes::copy_from_slice(&r.body));
        }
        self.route(now);
    }

    /// A call placed for a desktop: the callee answered with `answer`; the agent's phone is
    /// offered it.
    fn connect_phone(&mut self, answer: &Bytes, now: Instant) {
        // As one session changing from the hold answer the phone has.
        let previous = self.legs.a.sdp.clone();
        let body = match previous {
            Some(p) => sdp::reoffered(&p, answer, Direction::SendRecv),
            None => sdp::redirected(answer, Direction::SendRecv),
        };
        if let Some(body) = body {
            self.offer(LegId::A, body, now);
        }
    }

    /// The callee answered on B leg `i` (its INVITE of CSeq `seq`): it is ACKed (its offer
    /// was the one kept here), and leg A is offered its `answer`. The call is an ordinary one
    /// from here.
    pub(super) fn callee_answered(&mut self, i: usize, seq: u32, answer: &Bytes, now: Instant) {
        let offer = self
            .originating()
            .and_then(|o| o.offer.clone())
            .unwrap_or_default();
        self.send_ack(LegId::B(i), seq, Bytes::new(), &Headers::default(), now);
        self.legs.b[i].sent_sdp(&offer);
        self.connect_phone(answer, now);
        self.mode = Mode::Direct;
        self.established(i, now);
    }
}
