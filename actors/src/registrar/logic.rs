//! What a REGISTER means, as pure functions of the request, the tenant, the bindings held and
//! the time (RFC 3261 10.3): who is asking (digest authentication), what they may change, and
//! the bindings afterwards. The actor around it only loads, stores and sends.

use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_sip::auth::{self, Checked, Guard, NonceCounts, NonceKey, Role};
use switchboard_sip::header::Contact;
use switchboard_sip::transport::Transport;
use switchboard_sip::uri::{push_escaped_user, unescape};
use switchboard_sip::{HeaderName, Request, Response, Uri};

use crate::messages::registrar::{Binding, Changes};
use crate::tenant::Tenant;

/// Expiry limits, as a registrar's operator sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Shorter requested expiries get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requested expiries are cut to this.
    pub max_expires: u32,
    /// When neither the contact nor the request says.
    pub default_expires: u32,
    /// Bindings one address of record may hold.
    pub max_contacts: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// What happened to a binding, as the event kinds name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Refreshed,
    Removed(&'static str),
    Expired,
}

impl ChangeKind {
    pub fn event_kind(self) -> &'static str {
        match self {
            ChangeKind::Added => "BindingAdded",
            ChangeKind::Refreshed => "BindingRefreshed",
            ChangeKind::Removed(_) => "BindingRemoved",
            ChangeKind::Expired => "BindingExpired",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            ChangeKind::Removed(reason) => reason,
            ChangeKind::Expired => "expired",
            ChangeKind::Added | ChangeKind::Refreshed => "",
        }
    }
}

/// The outcome of a REGISTER that passed authentication and the checks.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every binding of the address of record afterwards.
    pub after: Vec<Arc<Binding>>,
    pub changes: Changes,
    pub events: Vec<(ChangeKind, Arc<Binding>)>,
}

/// The request and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Register<'a> {
    pub request: &'a Request,
    pub source: SocketAddr,
    pub transport: Transport,
    pub now_ms: u64,
}

/// The DN a REGISTER is for: the user part of a SIP To URI in the tenant's domain.
pub fn target_dn(tenant: &Tenant, request: &Request) -> Result<String, u16> {
    let to = match request.headers.to() {
        Some(Ok(to)) => to,
        _ => return Err(400),
    };
    // RFC 4475 unksm2: a registrar accepts only SIP addresses of record.
    let Uri::Sip(uri) = &to.uri else {
        return Err(400);
    };
    let Some(user) = uri.user.as_deref() else {
        return Err(404);
    };
    if !uri.host.matches(&tenant.host) {
        return Err(404);
    }
    let bytes = unescape(user);
    String::from_utf8(bytes.into_owned()).map_err(|_| 404)
}

/// Authenticates the REGISTER as the DN it is for. `Err` carries the response to send: a
/// challenge (401) or a refusal (403). An unknown DN and a wrong password get the same
/// challenge, after the same work. A DN configured not to authenticate passes as it is; an
/// unknown DN of a tenant that does not authenticate gets 404 (RFC 3261 10.3 step 3).
pub fn authenticate(
    tenant: &Tenant,
    dn: &str,
    register: Register<'_>,
    key: &NonceKey,
    counts: &mut NonceCounts,
    to_tag: &str,
) -> Result<(), (Response, Option<auth::Rejection>)> {
    let request = register.request;
    let extension = tenant.registering(dn);
    match extension {
        Some(e) if !e.authenticate => return Ok(()),
        None if !tenant.authenticate => {
            return Err((
                Response::to_request(&request.headers, 404).with_to_tag(to_tag),
                None,
            ));
        }
        _ => {}
    }
    let guard = Guard {
        role: Role::Registrar,
        realm: &tenant.realm,
        key,
    };
    let now_ms = register.now_ms;
    match guard.check(
        request,
        |user| tenant.account(user),
        &tenant.digest,
        counts,
        now_ms,
    ) {
        Checked::Authenticated(user) if user == dn => Ok(()),
        // Proven to be another DN: it may not touch this one's bindings (RFC 3261 10.3.3).
        Checked::Authenticated(_) => Err((
            Response::to_request(&request.headers, 403).with_to_tag(to_tag),
            None,
        )),
        Checked::Challenge { stale, rejected } => {
            let response = Response::to_request(&request.headers, 401).with_to_tag(to_tag);
            let algorithms = tenant.digest_for(Some(dn));
            Err((
                guard.challenge(response, algorithms, stale, now_ms),
                rejected,
            ))
        }
    }
}

/// Applies the contacts of an authenticated REGISTER to the bindings held (RFC 3261 10.3
/// steps 6 to 8). `Err` carries the error response.
pub fn plan(
    tenant: &Tenant,
    dn: &str,
    register: Register<'_>,
    current: Vec<Arc<Binding>>,
    policy: &Policy,
    to_tag: &str,
) -> Result<Plan, Response> {
    let request = register.request;
    let now = register.now_ms;
    let fail = |status: u16| Response::to_request(&request.headers, status).with_to_tag(to_tag);
    let call_id = request
        .headers
        .call_id()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let cseq = match request.headers.cseq() {
        Some(Ok(c)) => c.seq,
        _ => return Err(fail(400)),
    };
    let header_expires = request
        .headers
        .delta_seconds(&HeaderName::Expires)
        .map_err(|_| fail(400))?;
    let contacts: Vec<Contact> = request
        .headers
        .contacts()
        .collect::<Result<_, _>>()
        .map_err(|_| fail(400))?;

    let mut changes = Changes::default();
    let mut events = Vec::new();
    // Bindings past their time are gone, whether or not the sweeper has taken them yet. Those
    // this request touches are reported expired here (the sweeper will not find them after
    // this write); the others are left to the sweeper, which reports them once.
    let (mut after, mut stale): (Vec<Arc<Binding>>, Vec<Arc<Binding>>) =
        current.into_iter().partition(|b| b.expires_at_ms > now);
    // A binding of the same Call-ID may only change with a higher CSeq; the same CSeq is a
    // retransmission that got past the transaction layer, and changes nothing.
    let out_of_order = |b: &Binding| b.call_id == call_id && cseq < b.cseq;
    let retransmission = |b: &Binding| b.call_id == call_id && cseq == b.cseq;

    if contacts.iter().any(|c| matches!(c, Contact::Star)) {
        if contacts.len() != 1 || header_expires != Some(0) {
            return Err(fail(400));
        }
        if after.iter().any(|b| out_of_order(b)) {
            return Err(fail(500));
        }
        for b in stale.drain(..) {
            changes.removals.push(b.key.clone());
            events.push((ChangeKind::Expired, b));
        }
        for b in after.drain(..) {
            changes.removals.push(b.key.clone());
            events.push((ChangeKind::Removed("wildcard"), b));
        }
        return Ok(Plan {
            after,
            changes,
            events,
        });
    }

    for contact in &contacts {
        let Contact::Addr(addr) = contact else {
            continue;
        };
        let requested = contact
            .expires()
            .or(header_expires)
            .unwrap_or(policy.default_expires);
        if requested != 0 && requested < policy.min_expires {
            return Err(
                fail(423).with_header(HeaderName::MinExpires, policy.min_expires.to_string())
            );
        }
        let expires = requested.min(policy.max_expires);
        let key = contact_key(&addr.uri);
        if let Some(i) = stale.iter().position(|b| b.key == key) {
            let b = stale.swap_remove(i);
            changes.removals.push(b.key.clone());
            events.push((ChangeKind::Expired, b));
        }
        let existing = after.iter().position(|b| b.key == key);
        if let Some(i) = existing {
            if out_of_order(&after[i]) {
                return Err(fail(500));
            }
            if retransmission(&after[i]) {
                continue;
            }
        }
        if expires == 0 {
            if let Some(i) = existing {
                let b = after.remove(i);
                changes.upserts.retain(|u| u.key != b.key);
                changes.removals.push(b.key.clone());
                events.push((ChangeKind::Removed("unregistered"), b));
            }
            continue;
        }
        let mut params = addr.params.clone();
        params.remove("expires");
        // Shared by the plan's lists, the store and the event: a REGISTER copies no binding.
        let binding = Arc::new(Binding {
            aor: tenant.aor(dn),
            dn: dn.to_owned(),
            contact: addr.uri.to_text(),
            params: params.to_string(),
            key: key.clone(),
            q: contact.q(),
            expires_at_ms: now + u64::from(expires) * 1000,
            call_id: call_id.clone(),
            cseq,
            source: register.source,
            transport: register.transport.to_string(),
            user_agent: request
                .headers
                .get(&HeaderName::UserAgent)
                .map(|u| u.to_string()),
        });
        let kind = match existing {
            Some(i) => {
                after[i] = binding.clone();
                ChangeKind::Refreshed
            }
            None => {
                after.push(binding.clone());
                ChangeKind::Added
            }
        };
        changes.removals.retain(|k| *k != key);
        changes.upserts.retain(|u| u.key != key);
        changes.upserts.push(binding.clone());
        events.push((kind, binding));
    }
    if after.len() > policy.max_contacts {
        return Err(fail(403));
    }
    Ok(Plan {
        after,
        changes,
        events,
    })
}

/// The 200 to a REGISTER: every current binding with the seconds it has left.
pub fn ok_response(
    request: &Request,
    after: &[Arc<Binding>],
    now_ms: u64,
    to_tag: &str,
) -> Response {
    let mut response = Response::to_request(&request.headers, 200).with_to_tag(to_tag);
    for b in after {
        let mut contact = String::with_capacity(b.contact.len() + b.params.len() + 20);
        contact.push('<');
        contact.push_str(&b.contact);
        contact.push('>');
        contact.push_str(&b.params);
        contact.push_str(";expires=");
        contact.push_str(itoa::Buffer::new().format(b.remaining(now_ms)));
        response = response.with_header(HeaderName::Contact, contact);
    }
    response
}

/// The form contact URIs are compared in (RFC 3261 19.1.4, simplified): scheme, user with
/// escapes resolved, host in lower case, port and transport as given. Other parameters do not
/// make two contacts different.
pub fn contact_key(uri: &Uri) -> String {
    match uri {
        Uri::Sip(u) => {
            let mut key = String::with_capacity(64);
            key.push_str(if u.secure { "sips:" } else { "sip:" });
            if let Some(user) = u.user_unescaped() {
                push_escaped_user(&mut key, &user);
                key.push('@');
            }
            let host = key.len();
            let _ = u.host.write_with_port(&mut key, u.port);
            key[host..].make_ascii_lowercase();
            if let Some(t) = u.transport() {
                key.push_str(";transport=");
                let at = key.len();
                key.push_str(t);
                key[at..].make_ascii_lowercase();
            }
            key
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use switchboard_sip::auth::{Algorithm, ClientDigest};
    use switchboard_sip::{Message, parse_datagram};

    use super::*;
    use crate::tenant::{Directory, demo_tenant};

    const NOW: u64 = 1_800_000_000_000;

    /// The demo tenant, offering both algorithms.
    fn tenant() -> std::sync::Arc<Tenant> {
        let mut config = demo_tenant();
        config.digest = vec!["MD5".into(), "SHA-256".into()];
        Directory::new(&[config])
            .expect("demo")
            .by_name("demo")
            .cloned()
            .expect("demo")
    }

    fn register(dn: &str, call_id: &str, cseq: u32, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{cseq}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{dn}@demo.local>\r\nFrom: <sip:{dn}@demo.local>;tag=1\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn input(request: &Request, now_ms: u64) -> Register<'_> {
        Register {
            request,
            source: "127.0.0.1:5062".parse().expect("addr"),
            transport: Transport::Udp,
            now_ms,
        }
    }

    fn run(request: &Request, current: &[Arc<Binding>], now: u64) -> Result<Plan, Response> {
        plan(
            &tenant(),
            "1001",
            input(request, now),
            current.to_vec(),
            &Policy::default(),
            "t",
        )
    }

    fn contacts_of(response: &Response) -> Vec<String> {
        response
            .headers
            .get_all(&HeaderName::Contact)
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn add_refresh_remove() {
        let r = register(
            "1001",
            "c1",
            1,
            "Contact: <sip:1001@127.0.0.1:5062>;expires=600\r\n",
        );
        let p = run(&r, &[], NOW).expect("ok");
        assert_eq!(p.after.len(), 1);
        assert_eq!(p.events[0].0, ChangeKind::Added);
        assert_eq!(p.after[0].expires_at_ms, NOW + 600_000);
        let ok = ok_response(&r, &p.after, NOW, "t");
        assert_eq!(contacts_of(&ok), ["<sip:1001@127.0.0.1:5062>;expires=600"]);

        let r2 = register(
            "1001",
            "c1",
            2,
            "Contact: <sip:1001@127.0.0.1:5062>\r\nExpires: 300\r\n",
        );
        let p2 = run(&r2, &p.after, NOW + 10_000).expect("ok");
        assert_eq!(p2.events[0].0, ChangeKind::Refreshed);
        assert_eq!(p2.after[0].expires_at_ms, NOW + 310_000);

        let r3 = register(
            "1001",
            "c1",
            3,
            "Contact: <sip:1001@127.0.0.1:5062>;expires=0\r\n",
        );
        let p3 = run(&r3, &p2.after, NOW + 20_000).expect("ok");
        assert!(p3.after.is_empty());
        assert_eq!(p3.events[0].0, ChangeKind::Removed("unregistered"));
        assert_eq!(p3.changes.removals, [p2.after[0].key.clone()]);
    }

    #[test]
    fn several_contacts_with_q_and_wildcard_removal() {
        let r = register(
            "1001",
            "c1",
            1,
            "Contact: <sip:a@10.0.0.1>;q=0.5, <sip:b@10.0.0.2>;q=1\r\nContact: sip:c@10.0.0.3\r\n",
        );
        let p = run(&r, &[], NOW).expect("ok");
        assert_eq!(p.after.len(), 3);
        assert_eq!(p.after[0].q, Some(500));
        let ok = ok_response(&r, &p.after, NOW, "t");
        assert_eq!(contacts_of(&ok)[0], "<sip:a@10.0.0.1>;q=0.5;expires=3600");
        // A query lists them and changes nothing.
        let q = register("1001", "c1", 2, "");
        let pq = run(&q, &p.after, NOW).expect("ok");
        assert!(pq.changes.is_empty());
        assert_eq!(pq.after.len(), 3);
        // `*` needs Expires: 0 and no other contact.
        let bad = register("1001", "c1", 3, "Contact: *\r\n");
        assert_eq!(run(&bad, &p.after, NOW).expect_err("400").status, 400);
        let star = register("1001", "c1", 3, "Contact: *\r\nExpires: 0\r\n");
        let ps = run(&star, &p.after, NOW).expect("ok");
        assert!(ps.after.is_empty());
        assert_eq!(ps.changes.removals.len(), 3);
    }

    #[test]
    fn expiry_limits() {
        let short = register("1001", "c1", 1, "Contact: <sip:a@10.0.0.1>;expires=30\r\n");
        let e = run(&short, &[], NOW).expect_err("423");
        assert_eq!(e.status, 423);
        assert_eq!(
            e.headers.get(&HeaderName::MinExpires).map(|v| &**v),
            Some("60")
        );
        let long = register(
            "1001",
            "c1",
            1,
            "Contact: <sip:a@10.0.0.1>;expires=999999\r\n",
        );
        assert_eq!(
            run(&long, &[], NOW).expect("ok").after[0].expires_at_ms,
            NOW + 3_600_000
        );
        let huge = register(
            "1001",
            "c1",
            1,
            "Contact: <sip:a@10.0.0.1>\r\nExpires: 99999999999999\r\n",
        );
        assert_eq!(
            run(&huge, &[], NOW).expect("ok").after[0].expires_at_ms,
            NOW + 3_600_000
        );
    }

    #[test]
    fn cseq_order_and_retransmission() {
        let r = register("1001", "c1", 5, "Contact: <sip:a@10.0.0.1>\r\n");
        let p = run(&r, &[], NOW).expect("ok");
        let again = run(&r, &p.after, NOW + 1).expect("retransmission is harmless");
        assert!(again.changes.is_empty());
        let older = register("1001", "c1", 4, "Contact: <sip:a@10.0.0.1>\r\n");
        assert_eq!(run(&older, &p.after, NOW).expect_err("500").status, 500);
        // Another Call-ID (a phone that restarted) may lower the CSeq.
        let restarted = register("1001", "c2", 1, "Contact: <sip:a@10.0.0.1>\r\n");
        assert_eq!(
            run(&restarted, &p.after, NOW).expect("ok").events[0].0,
            ChangeKind::Refreshed
        );
    }

    #[test]
    fn expired_bindings_leave_with_an_event() {
        let r = register("1001", "c1", 1, "Contact: <sip:a@10.0.0.1>;expires=60\r\n");
        let p = run(&r, &[], NOW).expect("ok");
        // Untouched, an expired binding is left for the sweeper to report.
        let q = register("1001", "c1", 2, "Contact: <sip:b@10.0.0.2>;expires=60\r\n");
        let p2 = run(&q, &p.after, NOW + 61_000).expect("ok");
        assert_eq!(p2.after.len(), 1);
        let kinds: Vec<_> = p2.events.iter().map(|e| e.0).collect();
        assert_eq!(kinds, [ChangeKind::Added]);
        assert!(p2.changes.removals.is_empty());
        // Registered again, it is reported expired first, then added.
        let again = register("1001", "c1", 3, "Contact: <sip:a@10.0.0.1>;expires=60\r\n");
        let p3 = run(&again, &p.after, NOW + 61_000).expect("ok");
        let kinds: Vec<_> = p3.events.iter().map(|e| e.0).collect();
        assert_eq!(kinds, [ChangeKind::Expired, ChangeKind::Added]);
    }

    #[test]
    fn too_many_contacts() {
        let list: Vec<String> = (0..11).map(|i| format!("<sip:x{i}@10.0.0.1>")).collect();
        let r = register(
            "1001",
            "c1",
            1,
            &format!("Contact: {}\r\n", list.join(", ")),
        );
        assert_eq!(run(&r, &[], NOW).expect_err("403").status, 403);
    }

    #[test]
    fn contact_keys_ignore_escapes_and_host_case() {
        let a = Uri::parse_str("sip:%75ser@EXAMPLE.com;lr").expect("uri");
        let b = Uri::parse_str("sip:user@example.com").expect("uri");
        assert_eq!(contact_key(&a), contact_key(&b));
        let c = Uri::parse_str("sip:user@example.com;transport=TCP").expect("uri");
        assert_ne!(contact_key(&b), contact_key(&c));
        // The keys are stored (in Redis, across restarts): their form does not change.
        let key = |s| contact_key(&Uri::parse_str(s).expect("uri"));
        assert_eq!(key("sip:%75ser@EXAMPLE.com;lr"), "sip:user@example.com");
        assert_eq!(
            key("sips:a%20b@[::1]:5061;transport=TLS;x=y"),
            "sips:a%20b@[::1]:5061;transport=tls"
        );
        assert_eq!(key("sip:U@10.0.0.1:5070"), "sip:U@10.0.0.1:5070");
        assert_eq!(key("tel:+15551234"), "tel:+15551234");
    }

    #[test]
    fn target_dn_checks_scheme_and_domain() {
        let t = tenant();
        assert_eq!(
            target_dn(&t, &register("1001", "c", 1, "")),
            Ok("1001".into())
        );
        let mut r = register("1001", "c", 1, "");
        r.headers.set(HeaderName::To, "<sip:1001@other.example>");
        assert_eq!(target_dn(&t, &r), Err(404));
        r.headers.set(HeaderName::To, "<isbn:2983792873>");
        assert_eq!(target_dn(&t, &r), Err(400));
    }

    fn authorize(request: &mut Request, challenge: &Response, user: &str, password: &str, nc: u32) {
        let header = challenge
            .headers
            .get(&HeaderName::WwwAuthenticate)
            .expect("challenge");
        let nonce = header
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("nonce");
        let digest = ClientDigest {
            algorithm: Algorithm::Md5,
            username: user,
            realm: "demo.local",
            password,
        };
        let response = digest.response("REGISTER", "sip:demo.local", nonce, nc, "abc");
        request.headers.push(
            HeaderName::Authorization,
            format!(
                "Digest username=\"{user}\", realm=\"demo.local\", nonce=\"{nonce}\", uri=\"sip:demo.local\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc:08x}, cnonce=\"abc\""
            ),
        );
    }

    #[test]
    fn authentication() {
        let t = tenant();
        let key = NonceKey::from_secret("k", Duration::from_secs(300));
        let mut counts = NonceCounts::default();
        let mut r = register("1001", "c1", 1, "Contact: <sip:a@10.0.0.1>\r\n");
        let (challenge, _) = authenticate(&t, "1001", input(&r, NOW), &key, &mut counts, "t")
            .expect_err("challenge");
        assert_eq!(challenge.status, 401);
        let algorithms: Vec<_> = challenge
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|h| {
                h.split("algorithm=")
                    .nth(1)
                    .and_then(|a| a.split(',').next())
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(algorithms, ["MD5", "SHA-256"]);
        authorize(&mut r, &challenge, "1001", "demo1001", 1);
        assert!(authenticate(&t, "1001", input(&r, NOW), &key, &mut counts, "t").is_ok());
        // The same request again is a replay.
        let (again, why) =
            authenticate(&t, "1001", input(&r, NOW), &key, &mut counts, "t").expect_err("replay");
        assert_eq!((again.status, why), (401, Some(auth::Rejection::Replay)));

        // A wrong password and an unknown user look the same from outside.
        let mut wrong = register("1001", "c1", 2, "");
        authorize(&mut wrong, &challenge, "1001", "nope", 1);
        let (w, _) =
            authenticate(&t, "1001", input(&wrong, NOW), &key, &mut counts, "t").expect_err("401");
        let mut unknown = register("1999", "c1", 2, "");
        authorize(&mut unknown, &challenge, "1999", "nope", 1);
        let (u, _) = authenticate(&t, "1999", input(&unknown, NOW), &key, &mut counts, "t")
            .expect_err("401");
        assert_eq!(w.status, u.status);
        assert_eq!(w.reason, u.reason);
        let shape = |r: &Response| {
            r.headers
                .iter()
                .map(|h| h.name.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(&w), shape(&u));

        // Authenticated as 1001 but registering 1002: forbidden.
        let mut other = register("1002", "c1", 3, "");
        authorize(&mut other, &challenge, "1001", "demo1001", 5);
        let (f, _) =
            authenticate(&t, "1002", input(&other, NOW), &key, &mut counts, "t").expect_err("403");
        assert_eq!(f.status, 403);
    }

    #[test]
    fn a_dn_that_does_not_authenticate_registers_without_credentials() {
        let mut config = crate::tenant::demo_tenant();
        config.authenticate = false;
        config.dns[1].authenticate = Some(true);
        let t = Tenant::from_config(&config).expect("valid");
        let key = NonceKey::from_secret("k", Duration::from_secs(300));
        let mut counts = NonceCounts::default();
        let open = register("1001", "c1", 1, "Contact: <sip:a@10.0.0.1>\r\n");
        assert!(authenticate(&t, "1001", input(&open, NOW), &key, &mut counts, "t").is_ok());
        let guarded = register("1002", "c2", 1, "Contact: <sip:b@10.0.0.1>\r\n");
        let (challenge, _) = authenticate(&t, "1002", input(&guarded, NOW), &key, &mut counts, "t")
            .expect_err("1002 still authenticates");
        assert_eq!(challenge.status, 401);
        let unknown = register("1999", "c3", 1, "Contact: <sip:c@10.0.0.1>\r\n");
        let (missing, _) = authenticate(&t, "1999", input(&unknown, NOW), &key, &mut counts, "t")
            .expect_err("unknown");
        assert_eq!(missing.status, 404);
    }
}
