//! Dialogs (RFC 3261 12) as plain state: what an INVITE and its answer establish between two
//! user agents (the Call-ID and both tags, the remote target, the route set, the sequence
//! numbers each way), how a request within the dialog is built (12.2.1.1, loose and strict
//! routing), and how one received is checked (12.2.2). The B2BUA keeps one per leg. No I/O:
//! the caller adds its Via (and Contact on target refreshes), and sends.

use std::fmt::Write as _;

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::InvalidSyntax;
use crate::header::{CSeq, HeaderName, Headers, NameAddr};
use crate::message::{Method, Request, Response};
use crate::uri::Uri;

/// What names a dialog, seen from one end: the Call-ID, this end's tag and the other's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: ByteString,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a request received belongs to, at the end that receives it: its To tag is
    /// ours, its From tag theirs. `None` for a request outside any dialog (no To tag).
    pub fn for_request(request: &Request) -> Option<Self> {
        let to = request.headers.to()?.ok()?;
        let from = request.headers.from()?.ok()?;
        Some(Self {
            call_id: request.headers.call_id()?.clone(),
            local_tag: to.tag()?.to_owned(),
            remote_tag: from.tag().unwrap_or_default().to_owned(),
        })
    }

    /// The dialog a response received belongs to, at the end that sent the request: its From
    /// tag is ours, its To tag theirs. `None` without a To tag (a 100, or a response that
    /// makes no dialog).
    pub fn for_response(response: &Response) -> Option<Self> {
        let to = response.headers.to()?.ok()?;
        let from = response.headers.from()?.ok()?;
        Some(Self {
            call_id: response.headers.call_id()?.clone(),
            local_tag: from.tag()?.to_owned(),
            remote_tag: to.tag()?.to_owned(),
        })
    }
}

/// Early (made by a provisional response with a tag) or confirmed (by a 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// Why a request received within a dialog is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InDialogError {
    /// A CSeq below one already seen (12.2.2): answer 500.
    #[error("CSeq {got} is below {last}, already seen in this dialog")]
    OutOfOrder { got: u32, last: u32 },
    #[error("{0}")]
    Invalid(#[from] InvalidSyntax),
}

/// One end's view of a dialog. Its text is its own, not slices of the messages it was made
/// from, so a dialog that lasts an hour does not keep the datagrams of its setup alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// This end's address with its tag: the From of the requests it sends.
    pub local: NameAddr,
    /// The other end's address with its tag: the To of the requests it sends.
    pub remote: NameAddr,
    /// Where requests go: the other end's Contact, changed by target refreshes.
    pub remote_target: Uri,
    /// The proxies requests pass through, in the order they are visited.
    pub route_set: Vec<NameAddr>,
    /// At the calling end, the Route its INVITE carried (the proxy it reaches the other end
    /// through): where its requests go while the route set is empty, which it is when the
    /// answer did not repeat the Record-Route (RFC 3261 asks that of a UAS; not every phone
    /// does it).
    pub outbound: Vec<NameAddr>,
    local_seq: u32,
    remote_seq: Option<u32>,
}

/// A dialog as text and numbers: what a call's snapshot keeps of it so that another node
/// makes the same dialog again ([`Dialog::from_parts`]) and carries on with it. Serialized
/// (feature `serde`) without its Call-ID and local tag, which the leg holding it names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "camelCase")
)]
pub struct DialogParts {
    #[cfg_attr(feature = "serde", serde(skip))]
    pub call_id: String,
    #[cfg_attr(feature = "serde", serde(skip))]
    pub local_tag: String,
    pub remote_tag: String,
    pub confirmed: bool,
    pub local: String,
    pub remote: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub outbound: Vec<String>,
    /// The CSeq of the last request this end sent.
    pub local_seq: u32,
    /// The CSeq of the last request the other end sent, once it sent one.
    pub remote_seq: Option<u32>,
}

impl Dialog {
    /// The dialog as text and numbers.
    pub fn parts(&self) -> DialogParts {
        let texts = |v: &[NameAddr]| v.iter().map(NameAddr::to_string).collect();
        DialogParts {
            call_id: self.id.call_id.to_string(),
            local_tag: self.id.local_tag.clone(),
            remote_tag: self.id.remote_tag.clone(),
            confirmed: self.state == DialogState::Confirmed,
            local: self.local.to_string(),
            remote: self.remote.to_string(),
            remote_target: self.remote_target.to_string(),
            route_set: texts(&self.route_set),
            outbound: texts(&self.outbound),
            local_seq: self.local_seq,
            remote_seq: self.remote_seq,
        }
    }

    /// The dialog `parts` describe, as the end that kept them had it.
    pub fn from_parts(parts: &DialogParts) -> Result<Self, InvalidSyntax> {
        let name_addr = |s: &str| NameAddr::parse(&ByteString::from(s.to_owned()));
        let name_addrs = |v: &[String]| {
            v.iter()
                .map(|s| name_addr(s))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            id: DialogId {
                call_id: ByteString::from(parts.call_id.clone()),
                local_tag: parts.local_tag.clone(),
                remote_tag: parts.remote_tag.clone(),
            },
            state: if parts.confirmed {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local: name_addr(&parts.local)?,
            remote: name_addr(&parts.remote)?,
            remote_target: Uri::parse_str(&parts.remote_target)?,
            route_set: name_addrs(&parts.route_set)?,
            outbound: name_addrs(&parts.outbound)?,
            local_seq: parts.local_seq,
            remote_seq: parts.remote_seq,
        })
    }

    /// The dialog at the answering end (12.1.1): `request` is the INVITE received, `response`
    /// the 101-199 or 2xx sent for it, with this end's To tag.
    pub fn as_uas(request: &Request, response: &Response) -> Result<Self, InvalidSyntax> {
        let h = &request.headers;
        let local = response.headers.to().ok_or(InvalidSyntax("To"))??;
        let remote = h.from().ok_or(InvalidSyntax("From"))??;
        let local_tag = local.tag().ok_or(InvalidSyntax("To tag"))?.to_owned();
        Ok(Self::detached(Self {
            id: DialogId {
                call_id: h.call_id().ok_or(InvalidSyntax("Call-ID"))?.clone(),
                local_tag,
                remote_tag: remote.tag().unwrap_or_default().to_owned(),
            },
            state: state_for(response.status),
            remote_target: contact_uri(h)?,
            route_set: record_route(h)?,
            outbound: Vec::new(),
            // 12.1.1: this end's sequence starts afresh; the other's is the INVITE's.
            local_seq: 0,
            remote_seq: Some(h.cseq().ok_or(InvalidSyntax("CSeq"))??.seq),
            local,
            remote,
        }))
    }

    /// The dialog at the calling end (12.1.2): `request` is the INVITE sent, `response` a
    /// 101-199 or 2xx received for it, with the other end's To tag.
    pub fn as_uac(request: &Request, response: &Response) -> Result<Self, InvalidSyntax> {
        let h = &request.headers;
        let local = h.from().ok_or(InvalidSyntax("From"))??;
        let remote = response.headers.to().ok_or(InvalidSyntax("To"))??;
        let mut route_set = record_route(&response.headers)?;
        route_set.reverse();
        Ok(Self::detached(Self {
            id: DialogId {
                call_id: h.call_id().ok_or(InvalidSyntax("Call-ID"))?.clone(),
                local_tag: local.tag().ok_or(InvalidSyntax("From tag"))?.to_owned(),
                remote_tag: remote.tag().ok_or(InvalidSyntax("To tag"))?.to_owned(),
            },
            state: state_for(response.status),
            remote_target: contact_uri(&response.headers)?,
            route_set,
            outbound: routes(h)?,
            local_seq: h.cseq().ok_or(InvalidSyntax("CSeq"))??.seq,
            remote_seq: None,
            local,
            remote,
        }))
    }

    /// The same dialog with text of its own (see the type's documentation).
    fn detached(mut self) -> Self {
        self.id.call_id = ByteString::from(self.id.call_id.to_string());
        self.local = own_name_addr(&self.local);
        self.remote = own_name_addr(&self.remote);
        self.remote_target = own_uri(&self.remote_target);
        self.route_set = self.route_set.iter().map(own_name_addr).collect();
        self.outbound = self.outbound.iter().map(own_name_addr).collect();
        self
    }

    /// A later response on the dialog at the calling end: a 2xx confirms an early dialog and
    /// its route set and target are those of the 2xx (12.1.2, 13.2.2.4); a 2xx to a re-INVITE
    /// or UPDATE refreshes the target.
    pub fn update_from_response(&mut self, response: &Response) -> Result<(), InvalidSyntax> {
        if !(200..300).contains(&response.status) {
            return Ok(());
        }
        if self.state == DialogState::Early {
            let mut route_set = record_route(&response.headers)?;
            route_set.reverse();
            self.route_set = route_set.iter().map(own_name_addr).collect();
            self.state = DialogState::Confirmed;
        }
        if response.headers.contains(&HeaderName::Contact) {
            self.remote_target = own_uri(&contact_uri(&response.headers)?);
        }
        Ok(())
    }

    /// The sequence number of the last request this end sent in the dialog.
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// A new request within the dialog (12.2.1.1), with the next CSeq: Request-URI and Route
    /// from the route set and the remote target, From, To and Call-ID of the dialog,
    /// Max-Forwards 70 and an empty body. The caller adds its Via, a Contact on target
    /// refreshes, and a body.
    pub fn request(&mut self, method: Method) -> Request {
        self.local_seq += 1;
        self.build(method, self.local_seq)
    }

    /// The ACK of a 2xx to the INVITE of CSeq `invite_seq` (13.2.2.4): a request of its own,
    /// with the INVITE's sequence number.
    pub fn ack(&self, invite_seq: u32) -> Request {
        self.build(Method::Ack, invite_seq)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        let (uri, routes) = match self.route_set.first() {
            // No route set: to the target, through the proxy the INVITE went through if any.
            None => (self.remote_target.clone(), self.outbound.clone()),
            Some(first) if first.uri.as_sip().is_some_and(|u| u.params.contains("lr")) => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            // Strict routing (RFC 2543 proxies): the first route is the Request-URI, and the
            // target goes last.
            Some(first) => {
                let mut uri = first.uri.clone();
                if let Uri::Sip(sip) = &mut uri {
                    sip.headers = None;
                }
                let mut routes: Vec<NameAddr> = self.route_set[1..].to_vec();
                routes.push(NameAddr::new(self.remote_target.clone()));
                (uri, routes)
            }
        };
        let mut headers = Headers::with_capacity(8 + routes.len());
        for route in &routes {
            headers.push(HeaderName::Route, route.to_string());
        }
        headers.push(HeaderName::MaxForwards, ByteString::from_static("70"));
        headers.push(HeaderName::From, self.local.to_string());
        headers.push(HeaderName::To, self.remote.to_string());
        headers.push(HeaderName::CallId, self.id.call_id.clone());
        headers.push(HeaderName::CSeq, CSeq::new(seq, method.clone()).to_string());
        headers.push(HeaderName::ContentLength, ByteString::from_static("0"));
        Request {
            method,
            uri,
            headers,
            body: Bytes::new(),
        }
    }

    /// Checks a request received within the dialog (12.2.2): its CSeq must not go back (ACK
    /// and CANCEL carry their INVITE's and are not counted); a target refresh (re-INVITE,
    /// UPDATE) with a Contact moves the remote target.
    pub fn receive(&mut self, request: &Request) -> Result<(), InDialogError> {
        let seq = request.headers.cseq().ok_or(InvalidSyntax("CSeq"))??.seq;
        if !matches!(request.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq
                && seq < last
            {
                return Err(InDialogError::OutOfOrder { got: seq, last });
            }
            self.remote_seq = Some(seq);
        }
        if is_target_refresh(&request.method) && request.headers.contains(&HeaderName::Contact) {
            self.remote_target = own_uri(&contact_uri(&request.headers)?);
        }
        Ok(())
    }
}

/// A response that makes a dialog at the answering end (a 101-199 or 2xx to an INVITE,
/// RFC 3261 12.1.1): the headers of 8.2.6.2, this end's To tag, the request's Record-Route
/// (so that the caller learns the route set) and this end's Contact.
pub fn establishing(request: &Request, status: u16, local_tag: &str, contact: &str) -> Response {
    let mut response = Response::to_request(&request.headers, status).with_to_tag(local_tag);
    for route in request.headers.get_all(&HeaderName::RecordRoute) {
        response = response.with_header(HeaderName::RecordRoute, route.clone());
    }
    response.with_header(HeaderName::Contact, ByteString::from(contact))
}

/// Requests that change the remote target of their dialog (RFC 3261 12.2, RFC 3311).
pub fn is_target_refresh(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Update)
}

fn state_for(status: u16) -> DialogState {
    if (200..300).contains(&status) {
        DialogState::Confirmed
    } else {
        DialogState::Early
    }
}

/// The URI of the (first) Contact: where the other end takes requests.
fn contact_uri(h: &Headers) -> Result<Uri, InvalidSyntax> {
    let contact = h.contacts().next().ok_or(InvalidSyntax("Contact"))??;
    contact
        .addr()
        .map(|a| a.uri.clone())
        .ok_or(InvalidSyntax("Contact"))
}

/// A copy of `n` whose text is its own: printed and parsed again (it printed from a parse, so
/// it parses).
fn own_name_addr(n: &NameAddr) -> NameAddr {
    let mut text = printed(n);
    text.shrink_to_fit();
    let mut own = NameAddr::parse(&ByteString::from(text)).unwrap_or_else(|_| n.clone());
    own.shrink_to_fit();
    own
}

/// `value` as text, printed into a buffer sized once for an address.
fn printed(value: &impl std::fmt::Display) -> String {
    let mut text = String::with_capacity(96);
    let _ = write!(text, "{value}");
    text
}

fn own_uri(u: &Uri) -> Uri {
    let mut own = Uri::parse_str(&printed(u)).unwrap_or_else(|_| u.clone());
    own.shrink_to_fit();
    own
}

/// Every Record-Route value, in the order of the message.
fn record_route(h: &Headers) -> Result<Vec<NameAddr>, InvalidSyntax> {
    h.values(&HeaderName::RecordRoute)
        .map(|v| NameAddr::parse(&v))
        .collect()
}

/// The Route a request carries.
fn routes(h: &Headers) -> Result<Vec<NameAddr>, InvalidSyntax> {
    h.values(&HeaderName::Route)
        .map(|v| NameAddr::parse(&v))
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Message, parse_datagram};

    const INVITE: &str = "INVITE sip:1001@demo.local SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp1\r\n\
        Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKsbc\r\n\
        Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
        Record-Route: <sip:127.0.0.9;lr>, <sip:sbc.example;lr>\r\n\
        Max-Forwards: 69\r\nFrom: \"Caller\" <sip:+4930555@carrier.example>;tag=c1\r\n\
        To: <sip:1001@demo.local>\r\nCall-ID: call-1@sbc\r\nCSeq: 7 INVITE\r\n\
        Contact: <sip:+4930555@127.0.0.2:5060;transport=udp>\r\nContent-Length: 0\r\n\r\n";

    fn request(text: &str) -> Request {
        match parse_datagram(Bytes::copy_from_slice(text.as_bytes())) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    /// The 200 the answering end sends, with its tag and Contact.
    fn answer(invite: &Request) -> Response {
        establishing(invite, 200, "a9", "<sip:1001@192.0.2.50:5062>")
    }

    fn header<'a>(r: &'a Request, name: &'a HeaderName) -> Vec<&'a str> {
        r.headers.get_all(name).map(|v| &**v).collect()
    }

    #[test]
    fn the_answering_end_sends_back_through_the_record_route_in_order() {
        let invite = request(INVITE);
        let mut dialog = Dialog::as_uas(&invite, &answer(&invite)).expect("dialog");
        assert_eq!(dialog.state, DialogState::Confirmed);
        assert_eq!(
            dialog.id,
            DialogId {
                call_id: "call-1@sbc".into(),
                local_tag: "a9".into(),
                remote_tag: "c1".into(),
            }
        );
        let bye = dialog.request(Method::Bye);
        assert_eq!(
            bye.uri.to_string(),
            "sip:+4930555@127.0.0.2:5060;transport=udp"
        );
        assert_eq!(
            header(&bye, &HeaderName::Route),
            [
                "<sip:127.0.0.1:5060;lr>",
                "<sip:127.0.0.9;lr>",
                "<sip:sbc.example;lr>"
            ]
        );
        assert_eq!(
            header(&bye, &HeaderName::From),
            ["<sip:1001@demo.local>;tag=a9"]
        );
        assert_eq!(
            header(&bye, &HeaderName::To),
            ["\"Caller\" <sip:+4930555@carrier.example>;tag=c1"]
        );
        assert_eq!(header(&bye, &HeaderName::CSeq), ["1 BYE"]);
        assert_eq!(header(&bye, &HeaderName::CallId), ["call-1@sbc"]);
        // The caller's BYE belongs to this dialog.
        let theirs = request(
            "BYE sip:1001@192.0.2.50:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKb\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+4930555@carrier.example>;tag=c1\r\n\
             To: <sip:1001@demo.local>;tag=a9\r\nCall-ID: call-1@sbc\r\nCSeq: 8 BYE\r\n\
             Content-Length: 0\r\n\r\n",
        );
        assert_eq!(DialogId::for_request(&theirs), Some(dialog.id.clone()));
        dialog.receive(&theirs).expect("in order");
    }

    #[test]
    fn the_calling_end_reverses_the_record_route_and_counts_on_from_its_invite() {
        let invite = request(INVITE);
        let response = answer(&invite);
        let mut dialog = Dialog::as_uac(&invite, &response).expect("dialog");
        assert_eq!(DialogId::for_response(&response), Some(dialog.id.clone()));
        assert_eq!(dialog.id.local_tag, "c1");
        let ack = dialog.ack(7);
        assert_eq!(header(&ack, &HeaderName::CSeq), ["7 ACK"]);
        assert_eq!(ack.uri.to_string(), "sip:1001@192.0.2.50:5062");
        let bye = dialog.request(Method::Bye);
        assert_eq!(header(&bye, &HeaderName::CSeq), ["8 BYE"]);
        assert_eq!(
            header(&bye, &HeaderName::Route),
            [
                "<sip:sbc.example;lr>",
                "<sip:127.0.0.9;lr>",
                "<sip:127.0.0.1:5060;lr>"
            ]
        );
        assert_eq!(
            header(&bye, &HeaderName::To),
            ["<sip:1001@demo.local>;tag=a9"]
        );
    }

    #[test]
    fn a_strict_router_takes_the_request_uri_and_the_target_goes_last() {
        let invite = request(
            &INVITE
                .replace(
                    "Record-Route: <sip:127.0.0.9;lr>, <sip:sbc.example;lr>\r\n",
                    "",
                )
                .replace("<sip:127.0.0.1:5060;lr>", "<sip:old-proxy.example>"),
        );
        let mut dialog = Dialog::as_uas(&invite, &answer(&invite)).expect("dialog");
        let bye = dialog.request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:old-proxy.example");
        assert_eq!(
            header(&bye, &HeaderName::Route),
            ["<sip:+4930555@127.0.0.2:5060;transport=udp>"]
        );
    }

    #[test]
    fn requests_received_must_not_go_back_and_refreshes_move_the_target() {
        let invite = request(INVITE);
        let mut dialog = Dialog::as_uas(&invite, &answer(&invite)).expect("dialog");
        let in_dialog = |method: &str, seq: u32, contact: &str| {
            request(&format!(
                "{method} sip:1001@192.0.2.50:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK{seq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:+4930555@carrier.example>;tag=c1\r\n\
                 To: <sip:1001@demo.local>;tag=a9\r\nCall-ID: call-1@sbc\r\nCSeq: {seq} {method}\r\n\
                 {contact}Content-Length: 0\r\n\r\n"
            ))
        };
        // A re-INVITE from a new address (a phone that moved) is where requests go next.
        dialog
            .receive(&in_dialog(
                "INVITE",
                9,
                "Contact: <sip:+4930555@127.0.0.2:5080>\r\n",
            ))
            .expect("refresh");
        assert_eq!(
            dialog.request(Method::Bye).uri.to_string(),
            "sip:+4930555@127.0.0.2:5080"
        );
        // Its ACK carries the INVITE's number; a BYE from before it does not count.
        dialog.receive(&in_dialog("ACK", 9, "")).expect("ack");
        assert_eq!(
            dialog.receive(&in_dialog("BYE", 8, "")),
            Err(InDialogError::OutOfOrder { got: 8, last: 9 })
        );
        // INFO is no target refresh.
        dialog
            .receive(&in_dialog(
                "INFO",
                10,
                "Contact: <sip:elsewhere.example>\r\n",
            ))
            .expect("info");
        assert_eq!(
            dialog.remote_target.to_string(),
            "sip:+4930555@127.0.0.2:5080"
        );
    }

    #[test]
    fn an_early_dialog_takes_the_route_and_target_of_its_2xx() {
        let invite = request(INVITE);
        let ringing = establishing(&invite, 180, "a9", "<sip:1001@192.0.2.50:5062>");
        let mut dialog = Dialog::as_uac(&invite, &ringing).expect("early");
        assert_eq!(dialog.state, DialogState::Early);
        let ok = Response::to_request(&invite.headers, 200)
            .with_to_tag("a9")
            .with_header(HeaderName::RecordRoute, "<sip:edge.example;lr>")
            .with_header(HeaderName::Contact, "<sip:1001@192.0.2.51:5062>");
        dialog.update_from_response(&ok).expect("confirmed");
        assert_eq!(dialog.state, DialogState::Confirmed);
        let bye = dialog.request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:1001@192.0.2.51:5062");
        assert_eq!(header(&bye, &HeaderName::Route), ["<sip:edge.example;lr>"]);
    }

    #[test]
    fn without_a_record_route_in_the_answer_requests_go_through_the_invites_own_route() {
        let flow = "<sip:127.0.0.1:5060;lr;sb-flow=192.0.2.50:5062>";
        let invite = request(&format!(
            "INVITE sip:1001@192.0.2.50:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKn1\r\n\
             Route: {flow}\r\nMax-Forwards: 70\r\nFrom: <sip:+4930555@demo.local>;tag=n1\r\n\
             To: <sip:1001@demo.local>\r\nCall-ID: call-2@node\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n"
        ));
        // The phone's 200 repeats no Record-Route: the route set is empty, as RFC 3261 says,
        // but the ACK and the BYE still go through the proxy, on the phone's flow.
        let mut dialog = Dialog::as_uac(&invite, &answer(&invite)).expect("dialog");
        assert!(dialog.route_set.is_empty());
        for request in [dialog.ack(1), dialog.request(Method::Bye)] {
            assert_eq!(request.uri.to_string(), "sip:1001@192.0.2.50:5062");
            assert_eq!(header(&request, &HeaderName::Route), [flow]);
        }
        // An answer that repeats it: the route set is the Record-Route, the same proxy.
        let ok = Response::to_request(&invite.headers, 200)
            .with_to_tag("a9")
            .with_header(HeaderName::RecordRoute, flow)
            .with_header(HeaderName::Contact, "<sip:1001@192.0.2.50:5062>");
        let mut dialog = Dialog::as_uac(&invite, &ok).expect("dialog");
        assert_eq!(
            header(&dialog.request(Method::Bye), &HeaderName::Route),
            [flow]
        );
    }

    #[test]
    fn a_dialog_made_again_from_its_parts_carries_on_where_it_was() {
        let invite = request(INVITE);
        let mut dialog = Dialog::as_uas(&invite, &answer(&invite)).expect("dialog");
        dialog.request(Method::Options);
        let parts = dialog.parts();
        assert_eq!((parts.local_seq, parts.remote_seq), (1, Some(7)));
        let mut again = Dialog::from_parts(&parts).expect("made again");
        assert_eq!(again, dialog);
        // Its next request is the one the original would have sent.
        assert_eq!(
            again.request(Method::Bye).to_bytes(),
            dialog.request(Method::Bye).to_bytes()
        );
        // Text that does not parse is refused, not guessed at.
        let broken = DialogParts {
            remote_target: "not a uri".into(),
            ..parts
        };
        assert!(Dialog::from_parts(&broken).is_err());
    }

    #[test]
    fn a_request_outside_a_dialog_has_no_dialog_id() {
        assert_eq!(DialogId::for_request(&request(INVITE)), None);
        let invite = request(INVITE);
        let trying = Response::to_request(&invite.headers, 100);
        assert_eq!(DialogId::for_response(&trying), None);
        assert!(Dialog::as_uas(&invite, &trying).is_err());
    }
}
