//! URIs: `sip` and `sips` (RFC 3261 19.1), `tel` (RFC 3966), and any other absolute URI kept
//! as written. Parts are kept in their escaped form, as they came off the wire, so a URI prints
//! back exactly; comparisons that RFC 3261 19.1.4 defines over unescaped values use
//! [`unescape`].

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytestring::ByteString;

use crate::error::InvalidSyntax;
use crate::params::Params;
use crate::scan::{find_byte, find_either, is_escaped_with, is_unreserved, split_at_byte};

const WHAT: InvalidSyntax = InvalidSyntax("URI");

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// An absolute URI of another scheme (`http:`, `urn:`, ...), valid but not understood.
    Other(OtherUri),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escaped as written; it may contain `;` (RFC 4475 semiuri).
    pub user: Option<ByteString>,
    pub password: Option<ByteString>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// The header part after `?`, escaped as written.
    pub headers: Option<ByteString>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: ByteString,
    pub params: Params,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherUri {
    pub scheme: ByteString,
    pub rest: ByteString,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Domain(ByteString),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl Uri {
    /// As [`Params::shrink_to_fit`], for its parameters.
    pub fn shrink_to_fit(&mut self) {
        match self {
            Uri::Sip(u) => u.params.shrink_to_fit(),
            Uri::Tel(t) => t.params.shrink_to_fit(),
            Uri::Other(_) => {}
        }
    }

    /// Parses an absolute URI that makes up all of `s`, a part of `text`.
    pub(crate) fn parse(text: &ByteString, s: &str) -> Result<Self, InvalidSyntax> {
        let (scheme, rest) = split_scheme(s)?;
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_parts(text, rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_parts(text, rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_parts(text, rest).map(Uri::Tel)
        } else {
            let ok = !rest.is_empty()
                && rest
                    .bytes()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, b'<' | b'>' | b'"'));
            if !ok {
                return Err(WHAT);
            }
            Ok(Uri::Other(OtherUri {
                scheme: text.slice_ref(scheme),
                rest: text.slice_ref(rest),
            }))
        }
    }

    /// Parses a URI from a string of its own.
    pub fn parse_str(s: &str) -> Result<Self, InvalidSyntax> {
        let text = ByteString::from(s.to_owned());
        Self::parse(&text, &text)
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme as written for other URIs, canonical for the known ones.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other(o) => &o.scheme,
        }
    }
}

impl SipUri {
    /// A `sip:` URI of a user at a host.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> Self {
        Self {
            secure: false,
            user: user.map(|u| ByteString::from(u.to_owned())),
            password: None,
            host,
            port,
            params: Params::new(),
            headers: None,
        }
    }

    fn parse_parts(text: &ByteString, rest: &str, secure: bool) -> Result<Self, InvalidSyntax> {
        // The user part may hold `;`, `?` and `,` (RFC 4475 intmeth, semiuri), but never an
        // unescaped `@`, so the first `@` ends it.
        let (userinfo, hostpart) = match find_byte(rest, b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (user, password) = match split_at_byte(ui, b':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if !is_valid_user(user) {
                    return Err(WHAT);
                }
                if let Some(p) = password
                    && !is_escaped_with(p, is_password_char)
                {
                    return Err(WHAT);
                }
                (Some(user), password)
            }
        };
        let (hostport, after) = if hostpart.starts_with('[') {
            let close = find_byte(hostpart, b']').ok_or(WHAT)?;
            let end =
                find_either(&hostpart[close..], b';', b'?').map_or(hostpart.len(), |i| close + i);
            hostpart.split_at(end)
        } else {
            hostpart.split_at(find_either(hostpart, b';', b'?').unwrap_or(hostpart.len()))
        };
        let (host, port) = split_host_port(hostport)?;
        let (params, headers) = match find_byte(after, b'?') {
            Some(q) => (&after[..q], Some(&after[q + 1..])),
            None => (after, None),
        };
        if let Some(h) = headers
            && (h.is_empty() || !is_escaped_with(h, is_header_char))
        {
            return Err(WHAT);
        }
        Ok(Self {
            secure,
            user: user.map(|u| text.slice_ref(u)),
            password: password.map(|p| text.slice_ref(p)),
            host: Host::parse(text, host)?,
            port,
            params: Params::parse_uri(text, params)?,
            headers: headers.map(|h| text.slice_ref(h)),
        })
    }

    /// The `transport` parameter, lowercased by the caller's comparison.
    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// The user part with escapes resolved.
    pub fn user_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.user.as_deref().map(unescape)
    }

    /// The user part with escapes resolved, as text (a number dialed, a DN).
    pub fn user_text(&self) -> Option<String> {
        self.user_unescaped()
            .map(|u| String::from_utf8_lossy(&u).into_owned())
    }
}

impl TelUri {
    fn parse_parts(text: &ByteString, rest: &str) -> Result<Self, InvalidSyntax> {
        let (number, params) = rest.split_at(find_byte(rest, b';').unwrap_or(rest.len()));
        let digits = number.strip_prefix('+').unwrap_or(number);
        let ok = !digits.is_empty()
            && digits.bytes().all(|c| {
                c.is_ascii_hexdigit() || matches!(c, b'*' | b'#' | b'-' | b'.' | b'(' | b')')
            });
        if !ok {
            return Err(WHAT);
        }
        Ok(Self {
            number: text.slice_ref(number),
            params: Params::parse_uri(text, params)?,
        })
    }
}

impl Host {
    pub(crate) fn parse(text: &ByteString, s: &str) -> Result<Self, InvalidSyntax> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(WHAT)?;
            return parse_ipv6(inner).map(Host::Ipv6).ok_or(WHAT);
        }
        if s.is_empty() {
            return Err(WHAT);
        }
        if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            return s.parse().map(Host::Ipv4).map_err(|_| WHAT);
        }
        let ok = s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            && !s.starts_with(['.', '-']);
        if !ok {
            return Err(WHAT);
        }
        Ok(Host::Domain(text.slice_ref(s)))
    }

    /// Parses a host of its own: a domain, an IPv4 address, or an IPv6 address with or without
    /// brackets (a Via `received` parameter may carry either, RFC 5118 4.5).
    pub fn parse_str(s: &str) -> Result<Self, InvalidSyntax> {
        if !s.starts_with('[')
            && s.contains(':')
            && let Some(v6) = parse_ipv6(s)
        {
            return Ok(Host::Ipv6(v6));
        }
        let text = ByteString::from(s.to_owned());
        Self::parse(&text, &text)
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Domain(_) => None,
        }
    }

    /// Compares hosts as RFC 3261 19.1.4 does: domains case-insensitively.
    pub fn matches(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

/// Parses an IPv6 address, tolerating the `:::` that the RFC 3261 grammar allowed by mistake
/// before an embedded IPv4 address (RFC 5118 4.3).
fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    s.parse().ok().or_else(|| {
        if s.contains(":::") && !s.contains("::::") {
            s.replacen(":::", "::", 1).parse().ok()
        } else {
            None
        }
    })
}

fn split_scheme(s: &str) -> Result<(&str, &str), InvalidSyntax> {
    let (scheme, rest) = split_at_byte(s, b':').ok_or(WHAT)?;
    let b = scheme.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if ok { Ok((scheme, rest)) } else { Err(WHAT) }
}

/// Splits `host[:port]`, where host may be an IPv6 reference in brackets.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), InvalidSyntax> {
    let (host, port) = if s.starts_with('[') {
        let close = find_byte(s, b']').ok_or(WHAT)?;
        let (h, p) = s.split_at(close + 1);
        (h, (!p.is_empty()).then_some(p))
    } else {
        match split_at_byte(s, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            let digits = p.strip_prefix(':').unwrap_or(p);
            if p.len() == digits.len() && s.starts_with('[') {
                return Err(WHAT);
            }
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(WHAT);
            }
            Some(digits.parse().map_err(|_| WHAT)?)
        }
    };
    Ok((host, port))
}

/// Whether `s` is a valid user part: `1*( unreserved / escaped / user-unreserved )`.
pub fn is_valid_user(s: &str) -> bool {
    !s.is_empty() && is_escaped_with(s, is_user_char)
}

/// user = 1*( unreserved / escaped / user-unreserved )
fn is_user_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',')
}

/// hname / hvalue characters, and the `=` and `&` between them.
fn is_header_char(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
        )
}

/// Resolves `%HH` escapes; malformed escapes are kept as written.
pub fn unescape(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Appends `bytes` to `out` escaped canonically: unreserved and user-unreserved characters as
/// they are, everything else as an upper-case `%HH`. Two user parts that differ only in
/// escaping give the same text.
pub fn push_escaped_user(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in bytes {
        if is_user_char(c) && c != b'%' {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(c >> 4)] as char);
            out.push(HEX[usize::from(c & 0xf)] as char);
        }
    }
}

impl Uri {
    /// Writes the URI as its `Display` prints it, into any writer: a `String` takes it without
    /// a formatter's indirection per part (see [`Uri::to_text`]).
    pub fn write_into<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.write_into(w),
            Uri::Tel(t) => {
                w.write_str("tel:")?;
                w.write_str(&t.number)?;
                t.params.write_into(w)
            }
            Uri::Other(o) => {
                w.write_str(&o.scheme)?;
                w.write_str(":")?;
                w.write_str(&o.rest)
            }
        }
    }

    /// The URI as its `Display` prints it, made by [`Uri::write_into`].
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(64);
        let _ = self.write_into(&mut text);
        text
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

impl SipUri {
    /// As [`Uri::write_into`].
    pub fn write_into<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        w.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            w.write_str(user)?;
            if let Some(p) = &self.password {
                w.write_str(":")?;
                w.write_str(p)?;
            }
            w.write_str("@")?;
        }
        self.host.write_with_port(w, self.port)?;
        self.params.write_into(w)?;
        if let Some(h) = &self.headers {
            w.write_str("?")?;
            w.write_str(h)?;
        }
        Ok(())
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

impl Host {
    /// Writes the host as its `Display` prints it (IPv6 in brackets), into any writer. An
    /// IPv4 address is written octet by octet: what std's `Display` for `Ipv4Addr` writes, at
    /// a fraction of its cost (it formats into a buffer for padding first), for the addresses
    /// every Via, received parameter and binding carries.
    pub fn write_into<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self {
            Host::Domain(d) => w.write_str(d),
            Host::Ipv4(a) => {
                let mut digits = itoa::Buffer::new();
                for (i, octet) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        w.write_str(".")?;
                    }
                    w.write_str(digits.format(octet))?;
                }
                Ok(())
            }
            Host::Ipv6(a) => write!(w, "[{a}]"),
        }
    }

    /// Writes `host[:port]`, as URIs, Vias and addresses carry it.
    pub fn write_with_port<W: fmt::Write>(&self, w: &mut W, port: Option<u16>) -> fmt::Result {
        self.write_into(w)?;
        if let Some(port) = port {
            w.write_str(":")?;
            w.write_str(itoa::Buffer::new().format(port))?;
        }
        Ok(())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// A socket address as `Display` writes it (`1.2.3.4:5060`, `[::1]:5060`), an IPv4 address
/// written as [`Host`] writes it.
pub fn addr_text(addr: std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(v4) => {
            let mut text = String::with_capacity(21);
            let _ = Host::Ipv4(*v4.ip()).write_with_port(&mut text, Some(v4.port()));
            text
        }
        v6 => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_hosts_write_what_std_writes() {
        for ip in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [255, 255, 255, 255],
            [10, 9, 100, 99],
            [1, 20, 200, 0],
        ] {
            let ip = Ipv4Addr::from(ip);
            assert_eq!(Host::Ipv4(ip).to_string(), ip.to_string());
            assert_eq!(
                Uri::Sip(sip(&format!("sip:u@{ip}:5060"))).to_text(),
                format!("sip:u@{ip}:5060")
            );
            let addr = std::net::SocketAddr::from((ip, 5060));
            assert_eq!(addr_text(addr), addr.to_string());
        }
        let v6: std::net::SocketAddr = "[::1]:5060".parse().expect("addr");
        assert_eq!(addr_text(v6), "[::1]:5060");
    }

    fn sip(s: &str) -> SipUri {
        match Uri::parse_str(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn plain_sip_uri() {
        let u = sip("sip:alice:secret@Example.COM:5070;transport=tcp;lr?subject=hi&x=y");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::Domain("Example.COM".into()));
        assert!(u.host.matches(&Host::Domain("example.com".into())));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.headers.as_deref(), Some("subject=hi&x=y"));
        assert_eq!(
            u.to_string(),
            "sip:alice:secret@Example.COM:5070;transport=tcp;lr?subject=hi&x=y"
        );
    }

    #[test]
    fn semicolon_in_user_part() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert!(u.params.is_empty());
        assert_eq!(
            u.user_unescaped().as_deref(),
            Some(&b"user;par=u@example.net"[..])
        );
    }

    #[test]
    fn unusual_user_and_password() {
        let s = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = sip(s);
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn escapes_and_nul() {
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user_unescaped().as_deref(), Some(&b"null-\0-null"[..]));
        let escaped = |bytes: &[u8]| {
            let mut out = String::new();
            push_escaped_user(&mut out, bytes);
            out
        };
        assert_eq!(escaped(b"null-\0-null"), "null-%00-null");
        assert_eq!(escaped(&unescape("%75se%72")), "user");
        assert!(Uri::parse_str("sip:bad%zz@example.com").is_err());
    }

    #[test]
    fn ipv6_references() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().expect("ip")));
        assert_eq!(u.port, Some(5070));
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10:5070".parse().expect("ip")));
        assert_eq!(u.port, None);
        let u = sip("sip:user@[2001:db8:::192.0.2.1]");
        assert_eq!(
            u.host,
            Host::Ipv6("2001:db8::192.0.2.1".parse().expect("ip"))
        );
        let u = sip("sip:ted@[::ffff:192.0.2.2]");
        assert_eq!(u.to_string(), "sip:ted@[::ffff:192.0.2.2]");
        assert!(Uri::parse_str("sip:2001:db8::10").is_err());
        assert!(Uri::parse_str("sip:[2001:db8::10").is_err());
        assert!(Uri::parse_str("sip:[2001:db8::10]5070").is_err());
    }

    #[test]
    fn host_forms() {
        assert_eq!(
            sip("sip:192.0.2.1:5060").host,
            Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert!(Uri::parse_str("sip:192.0.2.300").is_err());
        assert!(Uri::parse_str("sip:user@").is_err());
        assert!(Uri::parse_str("sip:user@host name").is_err());
        assert!(Uri::parse_str("sip:user@host:").is_err());
        assert!(Uri::parse_str("sip:user@host:99999").is_err());
        assert_eq!(
            Host::parse_str("2001:db8::9:255").expect("v6"),
            Host::Ipv6("2001:db8::9:255".parse().expect("ip"))
        );
        assert_eq!(
            Host::parse_str("[2001:db8::9:255]").expect("v6"),
            Host::Ipv6("2001:db8::9:255".parse().expect("ip"))
        );
    }

    #[test]
    fn tel_and_other_schemes() {
        match Uri::parse_str("tel:+1-201-555-0123;phone-context=example.com") {
            Ok(Uri::Tel(t)) => {
                assert_eq!(t.number, "+1-201-555-0123");
                assert_eq!(t.params.value("phone-context"), Some("example.com"));
            }
            other => panic!("{other:?}"),
        }
        for s in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "isbn:2983792873",
            "http://www.example.com",
        ] {
            let u = Uri::parse_str(s).expect(s);
            assert!(matches!(u, Uri::Other(_)));
            assert_eq!(u.to_string(), s);
        }
        assert!(Uri::parse_str("<sip:user@example.com>").is_err());
        assert!(Uri::parse_str("tel:").is_err());
        assert!(Uri::parse_str("noscheme").is_err());
    }
}
