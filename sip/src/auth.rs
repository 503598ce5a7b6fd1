//! Digest authentication for servers (RFC 3261 22, RFC 7616, RFC 8760): challenges in the
//! order the caller asks for, `qop=auth`, nonces that carry their own issue time and an HMAC so
//! that any node holding the key can check them without shared state, nonce counts that must
//! grow, and constant-time comparison of responses.
//!
//! Time is passed in as milliseconds since the Unix epoch, so nonces stay valid across a
//! restart (given the same key) and the module does no I/O.

use crate::random::hex;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::header::{Challenge, Credentials, HeaderName, Headers};
use crate::message::{Request, Response};

/// A digest algorithm a tenant may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an algorithm name as it appears in configuration or credentials.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn hash(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }
}

/// The outcome of checking credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials prove the password, for a fresh nonce and a nonce count not seen before.
    Authenticated,
    /// The password is right but the nonce has expired (or came from another key): challenge
    /// again with `stale=true` so the client retries without asking its user.
    Stale,
    /// Anything else: unknown user, wrong password, replayed nonce count, unsupported scheme or
    /// algorithm, malformed credentials. The caller challenges again; the reason is for logs.
    Rejected(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NotDigest,
    Malformed,
    WrongRealm,
    Algorithm,
    Qop,
    UnknownUser,
    WrongPassword,
    Replay,
}

/// Issues and checks nonces: `hex(issued_ms) . hex(random) . hex(hmac)`.
#[derive(Debug, Clone)]
pub struct NonceKey {
    key: [u8; 32],
    lifetime: Duration,
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceState {
    Fresh,
    Expired,
    Forged,
}

impl NonceKey {
    pub fn new(key: [u8; 32], lifetime: Duration) -> Self {
        Self { key, lifetime }
    }

    /// A key of random bytes: nonces do not survive a restart, which clients handle through
    /// `stale=true`.
    pub fn random(lifetime: Duration) -> Self {
        let mut key = [0u8; 32];
        crate::random::fill(&mut key);
        Self::new(key, lifetime)
    }

    /// Derives the key from a configured secret, so every node of a cluster accepts the
    /// nonces of the others.
    pub fn from_secret(secret: &str, lifetime: Duration) -> Self {
        Self::new(Sha256::digest(secret.as_bytes()).into(), lifetime)
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn issue(&self, now_ms: u64) -> String {
        let mut salt = [0u8; 8];
        crate::random::fill(&mut salt);
        let body = format!("{now_ms:012x}{}", hex(&salt));
        let tag = self.tag(&body);
        format!("{body}{tag}")
    }

    fn tag(&self, body: &str) -> String {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(body.as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }

    fn check(&self, nonce: &str, now_ms: u64) -> NonceState {
        // 12 hex digits of time, 16 of salt, 32 of tag.
        if nonce.len() != 60 || !nonce.is_ascii() {
            return NonceState::Forged;
        }
        let (body, tag) = nonce.split_at(28);
        if !bool::from(self.tag(body).as_bytes().ct_eq(tag.as_bytes())) {
            return NonceState::Forged;
        }
        let Ok(issued) = u64::from_str_radix(&body[..12], 16) else {
            return NonceState::Forged;
        };
        let lifetime = self.lifetime.as_millis() as u64;
        if issued > now_ms + 60_000 || now_ms.saturating_sub(issued) > lifetime {
            NonceState::Expired
        } else {
            NonceState::Fresh
        }
    }

    fn issued_at(nonce: &str) -> u64 {
        nonce
            .get(..12)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .unwrap_or(0)
    }
}

/// The highest nonce count accepted for each live nonce, so that a replayed request (same
/// nonce, same or lower count) is refused. Entries leave when their nonce expires.
#[derive(Debug, Default)]
pub struct NonceCounts {
    highest: HashMap<String, u32>,
    by_issue: VecDeque<(u64, String)>,
}

impl NonceCounts {
    /// Records `nc` for `nonce` if it is higher than any before; false for a replay.
    fn advance(&mut self, nonce: &str, nc: u32, now_ms: u64, lifetime_ms: u64) -> bool {
        while let Some((issued, _)) = self.by_issue.front() {
            if now_ms.saturating_sub(*issued) <= lifetime_ms {
                break;
            }
            if let Some((_, old)) = self.by_issue.pop_front() {
                self.highest.remove(&old);
            }
        }
        match self.highest.get_mut(nonce) {
            Some(seen) if nc <= *seen => false,
            Some(seen) => {
                *seen = nc;
                true
            }
            None => {
                self.highest.insert(nonce.to_owned(), nc);
                self.by_issue
                    .push_back((NonceKey::issued_at(nonce), nonce.to_owned()));
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.highest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }
}

/// Builds the challenges for a realm, one per algorithm in the order given, sharing a nonce.
pub fn challenges(
    key: &NonceKey,
    realm: &str,
    algorithms: &[Algorithm],
    stale: bool,
    now_ms: u64,
) -> Vec<Challenge> {
    let nonce = key.issue(now_ms);
    algorithms
        .iter()
        .map(|a| Challenge {
            realm: realm.to_owned(),
            nonce: nonce.clone(),
            algorithm: a.name(),
            opaque: None,
            stale,
        })
        .collect()
}

/// The digest credentials for `realm` among the `header` fields (Authorization, or
/// Proxy-Authorization) of a request; others, of other schemes or realms, are not ours
/// (RFC 4475 regaut01).
pub fn credentials_for(headers: &Headers, header: &HeaderName, realm: &str) -> Option<Credentials> {
    headers
        .get_all(header)
        .filter_map(|v| Credentials::parse(v).ok())
        .find(|c| c.is_digest() && c.get("realm") == Some(realm))
}

/// What the request being authenticated looks like.
#[derive(Debug, Clone, Copy)]
pub struct DigestRequest<'a> {
    pub method: &'a str,
    pub realm: &'a str,
    /// The algorithms the tenant or DN accepts.
    pub algorithms: &'a [Algorithm],
}

/// Checks `credentials` against `password` (`None` when the user is unknown: the work done is
/// the same, so timing does not tell unknown users from wrong passwords).
pub fn verify(
    credentials: &Credentials,
    request: DigestRequest<'_>,
    password: Option<&str>,
    key: &NonceKey,
    counts: &mut NonceCounts,
    now_ms: u64,
) -> Verdict {
    use Rejection::{Malformed, NotDigest, Qop, Replay, UnknownUser, WrongPassword, WrongRealm};
    if !credentials.is_digest() {
        return Verdict::Rejected(NotDigest);
    }
    let get = |n| credentials.get(n);
    let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) = (
        get("username"),
        get("realm"),
        get("nonce"),
        get("uri"),
        get("response"),
    ) else {
        return Verdict::Rejected(Malformed);
    };
    if realm != request.realm {
        return Verdict::Rejected(WrongRealm);
    }
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(name) => match Algorithm::from_name(name) {
            Some(a) => a,
            None => return Verdict::Rejected(Rejection::Algorithm),
        },
    };
    if !request.algorithms.contains(&algorithm) {
        return Verdict::Rejected(Rejection::Algorithm);
    }
    let (Some("auth"), Some(nc_text), Some(cnonce)) = (get("qop"), get("nc"), get("cnonce")) else {
        return Verdict::Rejected(Qop);
    };
    let Some(nc) = (nc_text.len() == 8)
        .then(|| u32::from_str_radix(nc_text, 16).ok())
        .flatten()
    else {
        return Verdict::Rejected(Malformed);
    };
    // The digest-uri is what the client hashed. SIPp and several phones put the server's
    // address there rather than the Request-URI, so it is not compared with it; replays are
    // stopped by the nonce count instead.
    // The same hashing happens for unknown users, against a password nobody has.
    let secret = password.unwrap_or("\u{0}unknown-user\u{0}");
    let ha1 = algorithm.hash(&[username, realm, secret]);
    let ha2 = algorithm.hash(&[request.method, uri]);
    let expected = algorithm.hash(&[&ha1, nonce, nc_text, cnonce, "auth", &ha2]);
    let matches = bool::from(
        expected
            .as_bytes()
            .ct_eq(response.to_ascii_lowercase().as_bytes()),
    );
    if password.is_none() {
        return Verdict::Rejected(UnknownUser);
    }
    if !matches {
        return Verdict::Rejected(WrongPassword);
    }
    match key.check(nonce, now_ms) {
        NonceState::Fresh => {}
        NonceState::Expired | NonceState::Forged => return Verdict::Stale,
    }
    if !counts.advance(nonce, nc, now_ms, key.lifetime.as_millis() as u64) {
        return Verdict::Rejected(Replay);
    }
    Verdict::Authenticated
}

/// Which side of RFC 3261 22 a server stands on: a registrar (401, WWW-Authenticate, answered
/// in Authorization) or a proxy (407, Proxy-Authenticate, answered in Proxy-Authorization).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Registrar,
    Proxy,
}

impl Role {
    /// The status of a challenge.
    pub fn status(self) -> u16 {
        match self {
            Role::Registrar => 401,
            Role::Proxy => 407,
        }
    }

    fn challenge_header(self) -> HeaderName {
        match self {
            Role::Registrar => HeaderName::WwwAuthenticate,
            Role::Proxy => HeaderName::ProxyAuthenticate,
        }
    }

    fn credentials_header(self) -> HeaderName {
        match self {
            Role::Registrar => HeaderName::Authorization,
            Role::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// What a user proves itself with: its password, and the algorithms it may use, in the order
/// it is challenged with.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    pub password: &'a str,
    pub algorithms: &'a [Algorithm],
}

/// What a request's credentials come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The request proves it is this user.
    Authenticated(String),
    /// It is to be challenged: it brought no credentials for the realm (`rejected` none), its
    /// nonce is `stale`, or its credentials were refused (`rejected` says why, for the log).
    Challenge {
        stale: bool,
        rejected: Option<Rejection>,
    },
}

/// One server's digest exchange in one realm: the challenge a request gets, and the check of
/// the credentials it brings back. The registrar and the edge's admission of phones' calls
/// both go through it, so they challenge and check alike.
#[derive(Debug, Clone, Copy)]
pub struct Guard<'a> {
    pub role: Role,
    pub realm: &'a str,
    pub key: &'a NonceKey,
}

impl Guard<'_> {
    /// Checks the credentials of `request` for this realm. `account` finds the user they
    /// name; an unknown user is checked against the `default` algorithms with the same work,
    /// so timing does not tell it from a wrong password.
    pub fn check<'b>(
        &self,
        request: &Request,
        account: impl Fn(&str) -> Option<Account<'b>>,
        default: &[Algorithm],
        counts: &mut NonceCounts,
        now_ms: u64,
    ) -> Checked {
        let header = self.role.credentials_header();
        let Some(credentials) = credentials_for(&request.headers, &header, self.realm) else {
            return Checked::Challenge {
                stale: false,
                rejected: None,
            };
        };
        let username = credentials.get("username").unwrap_or_default();
        let found = account(username);
        let verdict = verify(
            &credentials,
            DigestRequest {
                method: request.method.as_str(),
                realm: self.realm,
                algorithms: found.map_or(default, |a| a.algorithms),
            },
            found.map(|a| a.password),
            self.key,
            counts,
            now_ms,
        );
        match verdict {
            Verdict::Authenticated => Checked::Authenticated(username.to_owned()),
            Verdict::Stale => Checked::Challenge {
                stale: true,
                rejected: None,
            },
            Verdict::Rejected(why) => Checked::Challenge {
                stale: false,
                rejected: Some(why),
            },
        }
    }

    /// `response` (of the challenge's status) with a challenge per algorithm, in the order
    /// given, sharing one fresh nonce.
    pub fn challenge(
        &self,
        mut response: Response,
        algorithms: &[Algorithm],
        stale: bool,
        now_ms: u64,
    ) -> Response {
        let header = self.role.challenge_header();
        for c in challenges(self.key, self.realm, algorithms, stale, now_ms) {
            response = response.with_header(header.clone(), c.to_string());
        }
        response
    }
}

/// A client's side of a digest exchange, for load clients and tests: computes the
/// `response` for one request.
#[derive(Debug, Clone, Copy)]
pub struct ClientDigest<'a> {
    pub algorithm: Algorithm,
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
}

impl ClientDigest<'_> {
    pub fn response(&self, method: &str, uri: &str, nonce: &str, nc: u32, cnonce: &str) -> String {
        let ha1 = self
            .algorithm
            .hash(&[self.username, self.realm, self.password]);
        let ha2 = self.algorithm.hash(&[method, uri]);
        self.algorithm
            .hash(&[&ha1, nonce, &format!("{nc:08x}"), cnonce, "auth", &ha2])
    }
}

#[cfg(test)]
mod tests {
    use bytestring::ByteString;

    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const REALM: &str = "demo.local";
    const BOTH: &[Algorithm] = &[Algorithm::Md5, Algorithm::Sha256];

    fn key() -> NonceKey {
        NonceKey::from_secret("test", Duration::from_secs(300))
    }

    fn request() -> DigestRequest<'static> {
        DigestRequest {
            method: "REGISTER",
            realm: REALM,
            algorithms: BOTH,
        }
    }

    fn creds(alg: Algorithm, nonce: &str, nc: u32, password: &str) -> Credentials {
        let response = ClientDigest {
            algorithm: alg,
            username: "1001",
            realm: REALM,
            password,
        }
        .response("REGISTER", "sip:demo.local", nonce, nc, "c0ffee");
        let text = format!(
            r#"Digest username="1001", realm="{REALM}", nonce="{nonce}", uri="sip:demo.local", response="{response}", algorithm={}, qop=auth, nc={nc:08x}, cnonce="c0ffee""#,
            alg.name()
        );
        Credentials::parse(&ByteString::from(text)).expect("valid credentials")
    }

    fn check(
        c: &Credentials,
        password: Option<&str>,
        counts: &mut NonceCounts,
        now: u64,
    ) -> Verdict {
        verify(c, request(), password, &key(), counts, now)
    }

    #[test]
    fn challenges_follow_the_configured_order() {
        let c = challenges(
            &key(),
            REALM,
            &[Algorithm::Md5, Algorithm::Sha256],
            false,
            NOW,
        );
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].algorithm, c[1].algorithm), ("MD5", "SHA-256"));
        assert_eq!(c[0].nonce, c[1].nonce);
        let c = challenges(&key(), REALM, &[Algorithm::Sha256], false, NOW);
        assert_eq!(c[0].algorithm, "SHA-256");
    }

    #[test]
    fn a_guard_challenges_in_the_order_given_and_checks_the_account_named() {
        let key = key();
        let guard = Guard {
            role: Role::Proxy,
            realm: REALM,
            key: &key,
        };
        let ask = |extra: &str| {
            let text = format!(
                "INVITE sip:1002@demo.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKg\r\n\
                 From: <sip:1001@demo.local>;tag=1\r\nTo: <sip:1002@demo.local>\r\nCall-ID: g\r\n\
                 CSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
            );
            match crate::parse_datagram(text.into()) {
                Ok(crate::Message::Request(r)) => r,
                other => panic!("{other:?}"),
            }
        };
        let accounts = |user: &str| {
            (user == "1001").then_some(Account {
                password: "secret",
                algorithms: &[Algorithm::Sha256],
            })
        };
        let mut counts = NonceCounts::default();
        let bare = ask("");
        assert_eq!(
            guard.check(&bare, accounts, BOTH, &mut counts, NOW),
            Checked::Challenge {
                stale: false,
                rejected: None
            }
        );
        let challenge = guard.challenge(
            Response::to_request(&bare.headers, Role::Proxy.status()),
            &[Algorithm::Sha256, Algorithm::Md5],
            false,
            NOW,
        );
        let offered: Vec<_> = challenge
            .headers
            .get_all(&HeaderName::ProxyAuthenticate)
            .map(|h| Credentials::parse(h).expect("parses"))
            .collect();
        assert_eq!(offered.len(), 2);
        assert_eq!(offered[0].get("algorithm"), Some("SHA-256"));
        let nonce = offered[0].get("nonce").unwrap_or_default();
        let answer = |password: &str, algorithm: Algorithm| {
            let digest = ClientDigest {
                algorithm,
                username: "1001",
                realm: REALM,
                password,
            };
            let response = digest.response("INVITE", "sip:1002@demo.local", nonce, 1, "c");
            ask(&format!(
                "Proxy-Authorization: Digest username=\"1001\", realm=\"{REALM}\", nonce=\"{nonce}\", \
                 uri=\"sip:1002@demo.local\", response=\"{response}\", algorithm={}, qop=auth, \
                 nc=00000001, cnonce=\"c\"\r\n",
                algorithm.name()
            ))
        };
        assert_eq!(
            guard.check(
                &answer("secret", Algorithm::Md5),
                accounts,
                BOTH,
                &mut counts,
                NOW
            ),
            Checked::Challenge {
                stale: false,
                rejected: Some(Rejection::Algorithm)
            },
            "the account's algorithms, not the default"
        );
        assert_eq!(
            guard.check(
                &answer("secret", Algorithm::Sha256),
                accounts,
                BOTH,
                &mut counts,
                NOW
            ),
            Checked::Authenticated("1001".into())
        );
    }

    #[test]
    fn both_algorithms_authenticate() {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let nonce = key().issue(NOW);
            let mut counts = NonceCounts::default();
            let c = creds(alg, &nonce, 1, "demo1001");
            assert_eq!(
                check(&c, Some("demo1001"), &mut counts, NOW + 1_000),
                Verdict::Authenticated
            );
        }
    }

    #[test]
    fn nonce_counts_must_grow() {
        let nonce = key().issue(NOW);
        let mut counts = NonceCounts::default();
        let first = creds(Algorithm::Md5, &nonce, 1, "demo1001");
        assert_eq!(
            check(&first, Some("demo1001"), &mut counts, NOW),
            Verdict::Authenticated
        );
        assert_eq!(
            check(&first, Some("demo1001"), &mut counts, NOW),
            Verdict::Rejected(Rejection::Replay)
        );
        let second = creds(Algorithm::Md5, &nonce, 2, "demo1001");
        assert_eq!(
            check(&second, Some("demo1001"), &mut counts, NOW),
            Verdict::Authenticated
        );
        // Counts of expired nonces are forgotten.
        let later = NOW + 301_000;
        let fresh = key().issue(later);
        check(
            &creds(Algorithm::Md5, &fresh, 1, "demo1001"),
            Some("demo1001"),
            &mut counts,
            later,
        );
        assert_eq!(counts.len(), 1);
    }

    #[test]
    fn expired_nonce_with_right_password_is_stale() {
        let nonce = key().issue(NOW);
        let c = creds(Algorithm::Sha256, &nonce, 1, "demo1001");
        let mut counts = NonceCounts::default();
        assert_eq!(
            check(&c, Some("demo1001"), &mut counts, NOW + 301_000),
            Verdict::Stale
        );
        // A nonce of another key (a restart without a configured secret) is stale too.
        let other = NonceKey::random(Duration::from_secs(300)).issue(NOW);
        let c = creds(Algorithm::Md5, &other, 1, "demo1001");
        assert_eq!(
            check(&c, Some("demo1001"), &mut counts, NOW),
            Verdict::Stale
        );
        // But an expired nonce with a wrong password is a plain rejection.
        let c = creds(Algorithm::Md5, &nonce, 1, "guess");
        assert_eq!(
            check(&c, Some("demo1001"), &mut counts, NOW + 301_000),
            Verdict::Rejected(Rejection::WrongPassword)
        );
    }

    #[test]
    fn rejections() {
        let nonce = key().issue(NOW);
        let mut counts = NonceCounts::default();
        let c = creds(Algorithm::Md5, &nonce, 1, "guess");
        assert_eq!(
            check(&c, Some("demo1001"), &mut counts, NOW),
            Verdict::Rejected(Rejection::WrongPassword)
        );
        assert_eq!(
            check(&c, None, &mut counts, NOW),
            Verdict::Rejected(Rejection::UnknownUser)
        );
        let only_sha = DigestRequest {
            algorithms: &[Algorithm::Sha256],
            ..request()
        };
        let c = creds(Algorithm::Md5, &nonce, 1, "demo1001");
        assert_eq!(
            verify(&c, only_sha, Some("demo1001"), &key(), &mut counts, NOW),
            Verdict::Rejected(Rejection::Algorithm)
        );
        let no_qop = Credentials::parse(&ByteString::from(format!(
            r#"Digest username="1001", realm="{REALM}", nonce="{nonce}", uri="sip:demo.local", response="00""#
        )))
        .expect("valid");
        assert_eq!(
            check(&no_qop, Some("demo1001"), &mut counts, NOW),
            Verdict::Rejected(Rejection::Qop)
        );
        let other = Credentials::parse(&ByteString::from_static(
            "NoOneKnowsThisScheme opaque-data=here",
        ))
        .expect("valid");
        assert_eq!(
            check(&other, Some("demo1001"), &mut counts, NOW),
            Verdict::Rejected(Rejection::NotDigest)
        );
    }

    #[test]
    fn tampered_nonce_is_not_fresh() {
        let nonce = key().issue(NOW);
        // Moving the issue time forward breaks the HMAC.
        let forged = format!("{:012x}{}", NOW + 200_000, &nonce[12..]);
        assert_eq!(key().check(&forged, NOW + 400_000), NonceState::Forged);
        assert_eq!(key().check(&nonce, NOW + 1), NonceState::Fresh);
        assert_eq!(key().check("short", NOW), NonceState::Forged);
    }

    #[test]
    fn rfc_7616_md5_example() {
        // RFC 2617 3.5's example (qop=auth, MD5), which RFC 7616 keeps.
        let r = ClientDigest {
            algorithm: Algorithm::Md5,
            username: "Mufasa",
            realm: "testrealm@host.com",
            password: "Circle Of Life",
        }
        .response(
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            1,
            "0a4f113b",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }
}
