//! Authorization, WWW-Authenticate and their proxy forms (RFC 3261 20.7, 20.44; RFC 7616):
//! `Scheme name=value, name="quoted value", ...`.

use std::fmt;

use bytestring::ByteString;

use crate::error::InvalidSyntax;
use crate::scan::{end_of_quoted, is_token, skip_ws};

/// The `name=value` pairs of a credential or challenge, with quotes removed from values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestParams(Vec<(ByteString, ByteString)>);

impl DigestParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// How many times `name` occurs; a credential naming a parameter twice is malformed.
    fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// Credentials from an Authorization or Proxy-Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub scheme: ByteString,
    pub params: DigestParams,
}

impl Credentials {
    pub fn parse(text: &ByteString) -> Result<Self, InvalidSyntax> {
        let what = InvalidSyntax("credentials");
        let s: &str = text;
        let b = s.as_bytes();
        let mut i = skip_ws(b, 0);
        let start = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(what);
        }
        let scheme = text.slice_ref(&s[start..i]);
        let mut params = Vec::new();
        loop {
            i = skip_ws(b, i);
            if i >= b.len() {
                break;
            }
            let nstart = i;
            while i < b.len() && is_token(b[i]) {
                i += 1;
            }
            if i == nstart {
                return Err(what);
            }
            let name = text.slice_ref(&s[nstart..i]);
            i = skip_ws(b, i);
            if b.get(i) != Some(&b'=') {
                return Err(what);
            }
            i = skip_ws(b, i + 1);
            let value = if b.get(i) == Some(&b'"') {
                let end = end_of_quoted(b, i).ok_or(what)?;
                let inner = &s[i + 1..end - 1];
                i = end;
                if inner.contains('\\') {
                    let mut out = String::with_capacity(inner.len());
                    let mut chars = inner.chars();
                    while let Some(c) = chars.next() {
                        out.push(if c == '\\' {
                            chars.next().unwrap_or('\\')
                        } else {
                            c
                        });
                    }
                    ByteString::from(out)
                } else {
                    text.slice_ref(inner)
                }
            } else {
                let vstart = i;
                while i < b.len() && (is_token(b[i]) || b[i] == b'/' || b[i] == b'=') {
                    i += 1;
                }
                if i == vstart {
                    return Err(what);
                }
                text.slice_ref(&s[vstart..i])
            };
            params.push((name, value));
            i = skip_ws(b, i);
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(what),
            }
        }
        let params = DigestParams(params);
        if [
            "username", "realm", "nonce", "uri", "response", "nc", "cnonce", "qop",
        ]
        .iter()
        .any(|n| params.count(n) > 1)
        {
            return Err(what);
        }
        Ok(Self { scheme, params })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }
}

/// A Digest challenge as a server sends it in WWW-Authenticate or Proxy-Authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    /// `MD5` or `SHA-256`.
    pub algorithm: &'static str,
    pub opaque: Option<String>,
    /// The nonce of the rejected credentials had expired; the client may retry at once.
    pub stale: bool,
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
            self.realm, self.nonce, self.algorithm
        )?;
        if let Some(o) = &self.opaque {
            write!(f, ", opaque=\"{o}\"")?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(s: &str) -> Result<Credentials, InvalidSyntax> {
        Credentials::parse(&ByteString::from(s.to_owned()))
    }

    #[test]
    fn digest_credentials() {
        let c = creds(
            r#"Digest username="1001",realm="demo.local", nonce="abc", uri="sip:demo.local",
 response="0123", algorithm=MD5, cnonce="x\"y", qop=auth, nc=00000001"#
                .replace('\n', "")
                .as_str(),
        )
        .expect("valid");
        assert!(c.is_digest());
        assert_eq!(c.get("USERNAME"), Some("1001"));
        assert_eq!(c.get("uri"), Some("sip:demo.local"));
        assert_eq!(c.get("cnonce"), Some("x\"y"));
        assert_eq!(c.get("qop"), Some("auth"));
        assert_eq!(c.get("nc"), Some("00000001"));
    }

    #[test]
    fn unknown_scheme_parses() {
        let c = creds("NoOneKnowsThisScheme opaque-data=here").expect("valid");
        assert!(!c.is_digest());
        assert_eq!(c.get("opaque-data"), Some("here"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "Digest username",
            "Digest username=\"a",
            "Digest a=b c=d",
            "Digest nonce=\"a\", nonce=\"b\"",
        ] {
            assert!(creds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenge_prints() {
        let c = Challenge {
            realm: "demo.local".into(),
            nonce: "n1".into(),
            algorithm: "SHA-256",
            opaque: None,
            stale: true,
        };
        assert_eq!(
            c.to_string(),
            r#"Digest realm="demo.local", nonce="n1", algorithm=SHA-256, qop="auth", stale=true"#
        );
    }
}
