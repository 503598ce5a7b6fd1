//! Admission of new calls (design.md "SIP behaviour at the edge"): a carrier's trunk by the
//! address the INVITE came from (its tenant follows; a trunk several tenants share picks the
//! tenant whose dial plan knows the dialed number), a media server by its configured address,
//! and a phone by digest: its INVITE is challenged with 407 and must prove it is a DN of the
//! tenant. A call for a domain no tenant has is challenged alike (and can never pass), so
//! the answers do not tell the node's domains from others.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use switchboard_sip::auth::{Algorithm, Checked, Guard, NonceCounts, NonceKey, Rejection, Role};
use switchboard_sip::transport::Transport;
use switchboard_sip::{Host, Request, Response, SipUri, Uri};

use crate::defence::Failure;
use crate::messages::sip_cluster::Origin;
use crate::tenant::{Directory, Tenant};

/// Why a new call was not admitted, with the response that says so.
#[derive(Debug)]
pub struct Refusal {
    /// Boxed: a refusal is the rare way out of admission, and the small one of its results.
    pub response: Box<Response>,
    /// For the log: what was wrong, when it is worth saying.
    pub why: Option<Box<str>>,
    /// What it counts as against its source (a first challenge counts as nothing).
    pub failure: Option<Failure>,
}

/// The algorithms a domain the node does not serve is challenged with: a tenant's default.
const UNSERVED_DIGEST: [Algorithm; 2] = [Algorithm::Md5, Algorithm::Sha256];

/// The answer to a request (REGISTER as `Role::Registrar`, INVITE as `Role::Proxy`) for
/// `domain`, which no tenant has: the challenge a tenant's unknown user gets, after the same
/// work, and again for whatever credentials come back. Counted as a failure.
pub fn unserved(
    request: &Request,
    role: Role,
    domain: &str,
    key: &NonceKey,
    counts: &mut NonceCounts,
    now_ms: u64,
) -> Refusal {
    let guard = Guard {
        role,
        realm: domain,
        key,
    };
    let checked = guard.check(request, |_| None, &UNSERVED_DIGEST, counts, now_ms);
    let stale = matches!(checked, Checked::Challenge { stale: true, .. });
    let response = Response::answering(&request.headers, role.status());
    Refusal {
        response: Box::new(guard.challenge(response, &UNSERVED_DIGEST, stale, now_ms)),
        why: Some(format!("domain {domain:?} is not served here").into()),
        failure: Some(Failure::UnknownDomain),
    }
}

/// The domain a request names: its From's for an INVITE, its To's for a REGISTER, else its
/// Request-URI's host.
pub fn named_domain(request: &Request) -> String {
    let header = match request.method {
        switchboard_sip::Method::Register => request.headers.to(),
        _ => request.headers.from(),
    };
    let from_header = header
        .and_then(Result::ok)
        .and_then(|n| n.uri.as_sip().map(|u| u.host.to_string()));
    from_header
        .or_else(|| request.uri.as_sip().map(|u| u.host.to_string()))
        .unwrap_or_default()
}

/// Admits `request`, a dialog-creating INVITE from `source`, or says why not.
pub fn admit(
    request: &Request,
    source: SocketAddr,
    transport: Transport,
    directory: &Directory,
    key: &NonceKey,
    counts: &mut NonceCounts,
    now_ms: u64,
) -> Result<(Arc<Tenant>, Origin), Refusal> {
    let refuse = |status, why: Option<String>| Refusal {
        response: Box::new(Response::answering(&request.headers, status)),
        why: why.map(String::into_boxed_str),
        failure: None,
    };
    if let Some(found) = trunk(request, source.ip(), directory) {
        if transport != Transport::Tls && requires_client_certificate(directory, source.ip()) {
            return Err(refuse(
                403,
                Some("the trunk takes calls over TLS with a client certificate only".into()),
            ));
        }
        return found.ok_or_else(|| {
            refuse(
                404,
                Some("no tenant sharing this trunk knows the number".into()),
            )
        });
    }
    for tenant in directory.tenants() {
        if let Some(m) = tenant
            .media_servers
            .iter()
            .find(|m| m.address.ip() == source.ip())
        {
            return Ok((tenant.clone(), Origin::MediaServer(m.name.clone())));
        }
    }
    let Some(tenant) = phone_tenant(request, directory) else {
        let domain = named_domain(request);
        return Err(unserved(request, Role::Proxy, &domain, key, counts, now_ms));
    };
    phone(request, tenant, key, counts, now_ms).map(|dn| (tenant.clone(), Origin::Phone(dn)))
}

/// Whether `ip` is a trunk's that must present a client certificate (over TLS, whose
/// handshake checks it).
pub fn requires_client_certificate(directory: &Directory, ip: IpAddr) -> bool {
    directory
        .tenants()
        .flat_map(|t| t.trunks.iter())
        .any(|t| t.client_certificate && t.admits(ip))
}

/// The trunk `ip` belongs to: `None` when it is no trunk's; `Some(None)` when it is a trunk
/// shared by tenants none of which routes the number.
#[allow(clippy::option_option)]
fn trunk(
    request: &Request,
    ip: IpAddr,
    directory: &Directory,
) -> Option<Option<(Arc<Tenant>, Origin)>> {
    let mut found: Vec<(&Arc<Tenant>, &str)> = Vec::new();
    for tenant in directory.tenants() {
        if let Some(t) = tenant.trunks.iter().find(|t| t.admits(ip)) {
            found.push((tenant, &t.name));
        }
    }
    match found.as_slice() {
        [] => None,
        [(tenant, name)] => Some(Some(((*tenant).clone(), Origin::Trunk((*name).to_owned())))),
        shared => {
            let dialed = request
                .uri
                .as_sip()
                .and_then(SipUri::user_text)
                .unwrap_or_default();
            Some(
                shared
                    .iter()
                    .find(|(tenant, _)| tenant.dial_plan.route(&dialed).is_some())
                    .map(|(tenant, name)| ((*tenant).clone(), Origin::Trunk((*name).to_owned()))),
            )
        }
    }
}

/// The tenant a phone's call belongs to: the domain of its From, else of the Request-URI.
fn phone_tenant<'a>(request: &Request, directory: &'a Directory) -> Option<&'a Arc<Tenant>> {
    let from = request.headers.from().and_then(Result::ok);
    [from.map(|f| f.uri), Some(request.uri.clone())]
        .into_iter()
        .flatten()
        .find_map(|uri| match uri {
            Uri::Sip(u) => match &u.host {
                Host::Domain(d) => directory.by_domain(d).cloned(),
                _ => None,
            },
            _ => None,
        })
        .and_then(|t| directory.by_name(&t.name))
}

/// The DN a phone proves it is, with Proxy-Authorization (RFC 3261 22.3). It is challenged
/// with the algorithms of the DN its From names, in that DN's order, as the registrar
/// challenges its REGISTER.
fn phone(
    request: &Request,
    tenant: &Tenant,
    key: &NonceKey,
    counts: &mut NonceCounts,
    now_ms: u64,
) -> Result<String, Refusal> {
    // A DN that does not authenticate (a trusted network) is who its From says.
    let from_user = request.headers.from().and_then(Result::ok).and_then(|f| {
        f.uri
            .as_sip()
            .and_then(|u| u.user.as_ref().map(|u| u.to_string()))
    });
    let claimed = from_user.as_deref().and_then(|u| tenant.registering(u));
    if let Some(dn) = claimed
        && !dn.authenticate
    {
        return Ok(dn.number.clone());
    }
    let guard = Guard {
        role: Role::Proxy,
        realm: &tenant.realm,
        key,
    };
    match guard.check(
        request,
        |user| tenant.account(user),
        &tenant.digest,
        counts,
        now_ms,
    ) {
        Checked::Authenticated(user) => Ok(user),
        Checked::Challenge { stale, rejected } => {
            let response = Response::answering(&request.headers, 407);
            let algorithms = tenant.digest_for(from_user.as_deref());
            Err(Refusal {
                response: Box::new(guard.challenge(response, algorithms, stale, now_ms)),
                why: rejected
                    .filter(|why| *why != Rejection::NotDigest)
                    .map(|why| format!("{why:?}").into()),
                failure: rejected.map(|_| Failure::Credentials),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_sip::{HeaderName, Message, parse_datagram};

    use super::*;
    use crate::tenant::{demo_tenant, in_network, parse_network};

    /// The algorithms of a response's Proxy-Authenticate challenges, in order.
    fn algorithms(r: &Response) -> Vec<String> {
        r.headers
            .get_all(&HeaderName::ProxyAuthenticate)
            .map(|h| {
                let c = switchboard_sip::header::Credentials::parse(h).expect("parses");
                c.get("algorithm").unwrap_or_default().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_phone_is_challenged_in_the_order_of_the_dn_its_from_names() {
        let mut c = demo_tenant();
        c.digest = vec!["MD5".into(), "SHA-256".into()];
        c.dns[0].digest = Some(vec!["SHA-256".into(), "MD5".into()]);
        let directory = Directory::new(&[c]).expect("valid");
        let key = NonceKey::from_secret("test", Duration::from_secs(60));
        let invite = |from: &str| {
            let text = format!(
                "INVITE sip:1003@demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{from}@demo.local>;tag=1\r\nTo: <sip:1003@demo.local>\r\n\
                 Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            match parse_datagram(text.into()) {
                Ok(Message::Request(r)) => r,
                other => panic!("{other:?}"),
            }
        };
        let source = "127.0.0.1:5062".parse().expect("addr");
        let mut counts = NonceCounts::default();
        let mut challenge = |from: &str| {
            let refusal = admit(
                &invite(from),
                source,
                Transport::Udp,
                &directory,
                &key,
                &mut counts,
                1,
            )
            .expect_err("challenged");
            assert_eq!(refusal.response.status, 407);
            algorithms(&refusal.response)
        };
        assert_eq!(challenge("1001"), ["SHA-256", "MD5"], "the DN's own order");
        assert_eq!(challenge("1002"), ["MD5", "SHA-256"], "the tenant's");
        assert_eq!(
            challenge("9999"),
            ["MD5", "SHA-256"],
            "no such DN: the tenant's"
        );
    }

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let net = |s: &str| parse_network(s).expect("network");
        assert!(in_network(ip("127.0.0.2"), net("127.0.0.2")));
        assert!(!in_network(ip("127.0.0.3"), net("127.0.0.2")));
        assert!(in_network(ip("192.0.2.77"), net("192.0.2.0/24")));
        assert!(!in_network(ip("192.0.3.1"), net("192.0.2.0/24")));
        assert!(in_network(ip("10.1.2.3"), net("0.0.0.0/0")));
        assert!(in_network(ip("2001:db8::1"), net("2001:db8::/32")));
        assert!(!in_network(ip("2001:db9::1"), net("2001:db8::/32")));
        assert!(!in_network(ip("192.0.2.1"), net("2001:db8::/32")));
    }
}
