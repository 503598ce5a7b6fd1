//! Via (RFC 3261 20.42), with the `received` and `rport` parameters of RFC 3581.

use std::fmt;
use std::net::IpAddr;

use bytestring::ByteString;

use crate::error::InvalidSyntax;
use crate::params::Params;
use crate::scan::{find_byte, is_token, is_ws, skip_ws};
use crate::uri::Host;

const WHAT: InvalidSyntax = InvalidSyntax("Via");

/// The magic cookie that marks an RFC 3261 branch.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/<transport> <host>[:<port>];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport as written (`UDP`, `TCP`, `TLS`, ...).
    pub transport: ByteString,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn new(transport: &'static str, host: Host, port: Option<u16>, branch: &str) -> Self {
        let mut params = Params::new();
        params.set("branch", Some(ByteString::from(branch.to_owned())));
        Self {
            transport: ByteString::from_static(transport),
            host,
            port,
            params,
        }
    }

    /// Parses one Via value (the header text split at its commas).
    pub fn parse(text: &ByteString) -> Result<Self, InvalidSyntax> {
        let s: &str = text;
        let b = s.as_bytes();
        let mut i = 0;
        let part = |i: &mut usize, slash_before: bool| -> Result<&str, InvalidSyntax> {
            *i = skip_ws(b, *i);
            if slash_before {
                if b.get(*i) != Some(&b'/') {
                    return Err(WHAT);
                }
                *i = skip_ws(b, *i + 1);
            }
            let start = *i;
            while *i < b.len() && is_token(b[*i]) {
                *i += 1;
            }
            if *i == start {
                return Err(WHAT);
            }
            Ok(&s[start..*i])
        };
        let name = part(&mut i, false)?;
        let _version = part(&mut i, true)?;
        let transport = part(&mut i, true)?;
        if !name.eq_ignore_ascii_case("SIP") {
            return Err(WHAT);
        }
        if !b.get(i).is_some_and(|&c| is_ws(c)) {
            return Err(WHAT);
        }
        i = skip_ws(b, i);
        let host_start = i;
        if b.get(i) == Some(&b'[') {
            i += find_byte(&s[i..], b']').ok_or(WHAT)? + 1;
        } else {
            while i < b.len() && !is_ws(b[i]) && b[i] != b';' && b[i] != b':' {
                i += 1;
            }
        }
        let host_end = i;
        // sent-by = host [ COLON port ] where COLON may have whitespace around it.
        let mut j = skip_ws(b, i);
        let mut port = None;
        if b.get(j) == Some(&b':') {
            j = skip_ws(b, j + 1);
            let pstart = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let digits = &s[pstart..j];
            if digits.is_empty() {
                return Err(WHAT);
            }
            port = Some(digits.parse().map_err(|_| WHAT)?);
            i = j;
        }
        let host = Host::parse(text, &s[host_start..host_end])?;
        let params = Params::parse_header(text, &s[i..])?;
        Ok(Self {
            transport: text.slice_ref(transport),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// Whether the branch carries the RFC 3261 magic cookie, so transactions match on it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(BRANCH_COOKIE))
    }

    /// The `received` parameter as an address, if present and valid.
    pub fn received(&self) -> Option<IpAddr> {
        Host::parse_str(self.params.value("received")?).ok()?.ip()
    }

    /// `Some(None)` for a bare `rport` (the client asks for it), `Some(Some(port))` when filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    pub fn transport_is(&self, name: &str) -> bool {
        self.transport.eq_ignore_ascii_case(name)
    }

    /// Notes where a request really came from (RFC 3261 18.2.1, RFC 3581 4): `received` when
    /// the source differs from the sent-by host, and the source port in a requested `rport`.
    /// Returns whether it added anything.
    pub fn stamp_source(&mut self, source: std::net::SocketAddr) -> bool {
        let rport_requested = self.params.contains("rport");
        let elsewhere = self.host.ip() != Some(source.ip());
        if rport_requested || elsewhere {
            // Printed on the stack, then copied once to its exact size.
            let mut ip = StackText::default();
            let _ = Host::from(source.ip()).write_into(&mut ip);
            self.params
                .set("received", Some(ByteString::from(ip.as_str())));
        }
        if rport_requested {
            let port = itoa::Buffer::new().format(source.port()).to_owned();
            self.params.set("rport", Some(port.into()));
        }
        rport_requested || elsewhere
    }

    /// Writes the Via as its `Display` prints it, into any writer (as [`Uri::write_into`]).
    ///
    /// [`Uri::write_into`]: crate::uri::Uri::write_into
    pub fn write_into<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        w.write_str("SIP/2.0/")?;
        w.write_str(&self.transport)?;
        w.write_str(" ")?;
        self.host.write_with_port(w, self.port)?;
        self.params.write_into(w)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// A short text printed on the stack (an address): [`fmt::Write`] without an allocation.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &str) -> Result<Via, InvalidSyntax> {
        Via::parse(&ByteString::from(s.to_owned()))
    }

    #[test]
    fn parse_and_print() {
        let v = via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw;rport").expect("valid");
        assert!(v.transport_is("udp"));
        assert_eq!(v.host, Host::Ipv4([192, 0, 2, 1].into()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bKkdjuw"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw;rport"
        );
    }

    #[test]
    fn whitespace_everywhere() {
        let v = via("SIP  /   2.0  /UDP    192.0.2.2;branch=390skdjuw").expect("valid");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = via("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8")
            .expect("valid");
        assert!(v.transport_is("TCP"));
        assert_eq!(v.host, Host::Domain("spindle.example.com".into()));
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        let v = via("SIP/2.0/UDP host : 5070").expect("valid");
        assert_eq!(v.port, Some(5070));
    }

    #[test]
    fn ipv6_sent_by_and_received() {
        let v = via("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111").expect("valid");
        assert_eq!(v.port, Some(6050));
        let v = via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
            .expect("valid");
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().expect("ip")));
        let v = via("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKa")
            .expect("valid");
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().expect("ip")));
    }

    #[test]
    fn rejects() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 192.0.2.1",
            "HTTP/1.1/TCP host",
            "SIP/2.0/UDP host:port",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(via(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stamps_received_and_rport() {
        let mut v = via("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport").expect("valid");
        v.stamp_source("203.0.113.7:40000".parse().expect("addr"));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=40000;received=203.0.113.7"
        );
        let mut v = via("SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK1").expect("valid");
        v.stamp_source("203.0.113.7:5060".parse().expect("addr"));
        assert!(!v.params.contains("received"));
        // A long IPv6 address, read back as the address it stamped.
        let far = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:5060";
        let mut v = via("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport").expect("valid");
        v.stamp_source(far.parse().expect("addr"));
        let far: std::net::SocketAddr = far.parse().expect("addr");
        assert_eq!(v.received(), Some(far.ip()));
        assert_eq!(v.params.value("rport"), Some("5060"));
    }
}
