//! Admission of new calls (design.md "SIP behaviour at the edge"): a carrier's trunk by the
//! address the INVITE came from (its tenant follows; a trunk several tenants share picks the
//! tenant whose dial plan knows the dialed number), a media server by its configured address,
//! and a phone by digest: its INVITE is challenged with 407 and must prove it is a DN of the
//! tenant. Anything else is refused with 403.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use switchboard_sip::auth::{self, DigestRequest, NonceCounts, NonceKey, Rejection, Verdict};
use switchboard_sip::{HeaderName, Host, Request, Response, SipUri, Uri};

use crate::sip_cluster::Origin;
use crate::tenant::{Directory, Tenant};

/// Why a new call was not admitted, with the response that says so.
#[derive(Debug)]
pub struct Refusal {
    pub response: Response,
    /// For the log: what was wrong, when it is worth saying.
    pub why: Option<String>,
}

/// Admits `request`, a dialog-creating INVITE from `source`, or says why not.
pub fn admit(
    request: &Request,
    source: SocketAddr,
    directory: &Directory,
    key: &NonceKey,
    counts: &mut NonceCounts,
    now_ms: u64,
) -> Result<(Arc<Tenant>, Origin), Refusal> {
    let refuse = |status, why: Option<String>| Refusal {
        response: Response::answering(&request.headers, status),
        why,
    };
    if let Some(found) = trunk(request, source.ip(), directory) {
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
        return Err(refuse(
            403,
            Some("not a trunk, media server or tenant".into()),
        ));
    };
    phone(request, tenant, key, counts, now_ms).map(|dn| (tenant.clone(), Origin::Phone(dn)))
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

/// The DN a phone proves it is, with Proxy-Authorization (RFC 3261 22.3).
fn phone(
    request: &Request,
    tenant: &Tenant,
    key: &NonceKey,
    counts: &mut NonceCounts,
    now_ms: u64,
) -> Result<String, Refusal> {
    let challenge = |stale: bool, why: Option<String>| {
        let mut response = Response::answering(&request.headers, 407);
        for c in auth::challenges(key, &tenant.realm, &tenant.digest, stale, now_ms) {
            response = response.with_header(HeaderName::ProxyAuthenticate, c.to_string());
        }
        Refusal { response, why }
    };
    // A DN that does not authenticate (a trusted network) is who its From says.
    let from_user = request.headers.from().and_then(Result::ok).and_then(|f| {
        f.uri
            .as_sip()
            .and_then(|u| u.user.as_ref().map(|u| u.to_string()))
    });
    if let Some(dn) = from_user.as_deref().and_then(|u| tenant.registering(u))
        && !dn.authenticate
    {
        return Ok(dn.number.clone());
    }
    let credentials = auth::credentials_for(
        &request.headers,
        &HeaderName::ProxyAuthorization,
        &tenant.realm,
    );
    let Some(credentials) = credentials else {
        return Err(challenge(false, None));
    };
    let username = credentials.get("username").unwrap_or_default().to_owned();
    let dn = tenant.registering(&username);
    let algorithms = dn.map_or(&tenant.digest, |d| &d.digest);
    let verdict = auth::verify(
        &credentials,
        DigestRequest {
            method: request.method.as_str(),
            realm: &tenant.realm,
            algorithms,
        },
        dn.map(|d| d.password.as_str()),
        key,
        counts,
        now_ms,
    );
    match verdict {
        Verdict::Authenticated => Ok(username),
        Verdict::Stale => Err(challenge(true, None)),
        Verdict::Rejected(why) => Err(challenge(
            false,
            (!matches!(why, Rejection::NotDigest)).then(|| format!("{why:?}")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::{in_network, parse_network};

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
