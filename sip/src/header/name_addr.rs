//! `name-addr` and `addr-spec` with header parameters: From, To, Contact, Route, Record-Route.

use std::fmt;

use bytestring::ByteString;

use crate::error::InvalidSyntax;
use crate::params::Params;
use crate::scan::{end_of_quoted, find_byte, is_token, is_ws, parse_delta_seconds, skip_ws};
use crate::uri::Uri;

/// `[display-name] <uri>;params`, or a bare `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as written: a quoted string with its quotes, or tokens.
    pub display: Option<ByteString>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    /// As [`Params::shrink_to_fit`], for its parameters and its URI's.
    pub fn shrink_to_fit(&mut self) {
        self.uri.shrink_to_fit();
        self.params.shrink_to_fit();
    }

    pub fn new(uri: Uri) -> Self {
        Self {
            display: None,
            uri,
            params: Params::new(),
        }
    }

    /// Parses one value (a multi-valued header split at its commas first).
    pub fn parse(text: &ByteString) -> Result<Self, InvalidSyntax> {
        let (display, uri, params) = split(text)?;
        Ok(Self {
            display,
            uri: Uri::parse(text, uri)?,
            params: Params::parse_header(text, params)?,
        })
    }

    /// The header parameters of one value, its URI left unparsed: what a check of a From or
    /// To tag needs, at a fraction of [`NameAddr::parse`]'s cost.
    pub fn params_of(text: &ByteString) -> Result<Params, InvalidSyntax> {
        let (_, _, params) = split(text)?;
        Params::parse_header(text, params)
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

/// A name-addr value's display name, the text of its URI, and the text of its header
/// parameters.
fn split(text: &ByteString) -> Result<(Option<ByteString>, &str, &str), InvalidSyntax> {
    let what = InvalidSyntax("name-addr");
    let s: &str = text;
    let b = s.as_bytes();
    let i = skip_ws(b, 0);
    let (display, open) = match b.get(i) {
        None => return Err(what),
        Some(b'<') => (None, i),
        Some(b'"') => {
            let end = end_of_quoted(b, i).ok_or(what)?;
            (Some(text.slice_ref(&s[i..end])), skip_ws(b, end))
        }
        Some(_) => {
            // Tokens and whitespace up to a `<` make a display name; anything else is a bare
            // addr-spec, whose URI ends where the header parameters begin.
            let mut j = i;
            while j < b.len() && (is_token(b[j]) || is_ws(b[j])) {
                j += 1;
            }
            if b.get(j) == Some(&b'<') && j > i {
                (Some(text.slice_ref(s[i..j].trim_end())), j)
            } else {
                let end = find_byte(&s[i..], b';').map_or(s.len(), |k| i + k);
                let uri = s[i..end].trim_end();
                // RFC 3261 20: outside brackets a URI cannot hold `,`, `?` or `;`.
                if uri.contains(['?', ',', ' ', '\t']) {
                    return Err(what);
                }
                return Ok((None, uri, &s[end..]));
            }
        }
    };
    if b.get(open) != Some(&b'<') {
        return Err(what);
    }
    let close = open + find_byte(&s[open..], b'>').ok_or(what)?;
    Ok((display, &s[open + 1..close], &s[close + 1..]))
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str(d)?;
            f.write_str(" ")?;
        }
        f.write_str("<")?;
        fmt::Display::fmt(&self.uri, f)?;
        f.write_str(">")?;
        fmt::Display::fmt(&self.params, f)
    }
}

/// A Contact value: `*` (remove every binding), or an address with `expires` and `q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Star,
    Addr(NameAddr),
}

impl Contact {
    pub fn parse(text: &ByteString) -> Result<Self, InvalidSyntax> {
        if text.trim() == "*" {
            return Ok(Contact::Star);
        }
        let addr = NameAddr::parse(text)?;
        if let Some(e) = addr.params.get("expires")
            && e.and_then(parse_delta_seconds).is_none()
        {
            return Err(InvalidSyntax("Contact expires"));
        }
        if addr.params.contains("q") && contact_q(&addr).is_none() {
            return Err(InvalidSyntax("Contact q"));
        }
        Ok(Contact::Addr(addr))
    }

    pub fn addr(&self) -> Option<&NameAddr> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }

    /// The `expires` parameter, clamped to 2^32-1.
    pub fn expires(&self) -> Option<u32> {
        self.addr()?
            .params
            .value("expires")
            .and_then(parse_delta_seconds)
    }

    /// The `q` parameter in thousandths (1000 is q=1), if present.
    pub fn q(&self) -> Option<u16> {
        contact_q(self.addr()?)
    }
}

/// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
fn contact_q(addr: &NameAddr) -> Option<u16> {
    let v = addr.params.value("q")?;
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Star => f.write_str("*"),
            Contact::Addr(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;

    fn na(s: &str) -> Result<NameAddr, InvalidSyntax> {
        NameAddr::parse(&ByteString::from(s.to_owned()))
    }

    fn contact(s: &str) -> Result<Contact, InvalidSyntax> {
        Contact::parse(&ByteString::from(s.to_owned()))
    }

    #[test]
    fn params_of_finds_the_header_parameters_as_parse_does() {
        let tag = |s: &str| {
            NameAddr::params_of(&ByteString::from(s.to_owned()))
                .map(|p| p.value("tag").map(str::to_owned))
        };
        for (value, expected) in [
            ("<sip:1001@demo.local>;tag=abc", Some("abc")),
            ("\"A <b>;tag=no\" <sip:1001@demo.local>", None),
            ("\"A <b>\" <sip:1001@demo.local> ; TAG = x1", Some("x1")),
            ("Bob <sip:bob@h;tag=uri-param>", None),
            ("sip:1001@demo.local;tag=bare", Some("bare")),
            ("sip:1001@demo.local", None),
        ] {
            assert_eq!(tag(value), Ok(expected.map(str::to_owned)), "{value}");
            assert_eq!(
                na(value).map(|n| n.tag().map(str::to_owned)),
                Ok(expected.map(str::to_owned)),
                "{value}"
            );
        }
        for bad in ["", "<sip:a@b", "sip:a@b;", "<sip:a@b>x"] {
            assert!(tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forms() {
        let a = na("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8")
            .expect("valid");
        assert_eq!(a.display.as_deref(), Some(r#""J Rosenberg \\\"""#));
        assert_eq!(a.tag(), Some("98asjd8"));
        let a = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").expect("valid");
        assert_eq!(a.display, None);
        assert_eq!(a.tag(), Some("1918181833n"));
        let a = na("caller<sip:caller@example.com>;tag=323").expect("valid");
        assert_eq!(a.display.as_deref(), Some("caller"));
        let a = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>").expect("valid");
        assert_eq!(a.display.as_deref(), Some("token1~` token2'+_ token3*%!.-"));
        let a = na("sip:+19725552222@gw1.example.net;unknownparam").expect("valid");
        assert!(a.params.contains("unknownparam"));
        assert!(a.uri.as_sip().expect("sip").params.is_empty());
        let a = na("<sip:+19725552222@gw1.example.net;unknownparam>").expect("valid");
        assert!(a.params.is_empty());
        assert!(a.uri.as_sip().expect("sip").params.contains("unknownparam"));
    }

    #[test]
    fn print() {
        let a = na("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").expect("valid");
        assert_eq!(
            a.to_string(),
            "A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe"
        );
        let a = na("sip:j.user@example.com").expect("valid");
        assert_eq!(a.to_string(), "<sip:j.user@example.com>");
        assert_eq!(na(&a.to_string()).expect("reparse"), a);
    }

    #[test]
    fn rejects() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:user@example.com",
            "",
        ] {
            assert!(na(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escaped_headers_kept_inside_brackets() {
        let a = na("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").expect("valid");
        let u = a.uri.as_sip().expect("sip");
        assert_eq!(
            u.headers.as_deref(),
            Some("Route=%3Csip:sip.example.com%3E")
        );
        assert_eq!(u.host, Host::Domain("example.com".into()));
    }

    #[test]
    fn contact_star_expires_q() {
        assert_eq!(contact(" * "), Ok(Contact::Star));
        let c = contact("<sip:a@b>;expires=60;q=0.7").expect("valid");
        assert_eq!(c.expires(), Some(60));
        assert_eq!(c.q(), Some(700));
        let c = contact("<sip:user@host129.example.com> ;expires=280297596632815").expect("valid");
        assert_eq!(c.expires(), Some(u32::MAX));
        assert_eq!(contact("<sip:a@b>;q=1").expect("valid").q(), Some(1000));
        assert_eq!(contact("<sip:a@b>;q=0.05").expect("valid").q(), Some(50));
        assert!(contact("<sip:a@b>;q=1.5").is_err());
        assert!(contact("<sip:a@b>;q=0.1234").is_err());
        assert!(contact("<sip:a@b>;expires=soon").is_err());
    }
}
