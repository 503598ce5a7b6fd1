//! Parameters: `;name=value` lists of URIs (`uri-parameter`) and of header values
//! (`generic-param`), kept in their order and spelling, looked up case-insensitively.

use std::fmt;

use bytestring::ByteString;

use crate::error::InvalidSyntax;
use crate::scan::{end_of_quoted, is_escaped_with, is_token, is_unreserved, is_ws, skip_ws};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: ByteString,
    pub value: Option<ByteString>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<Param>);

impl Params {
    /// Gives back the room a parse left over (a list holds four at least), for a value
    /// kept as long as a call.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.0.iter()
    }

    /// The parameter named `name`: `Some(None)` when it is present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The value of the parameter named `name`, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, replacing an existing parameter of that name in place. Names
    /// set are the protocol's own (`received`, `rport`, `branch`): a new one is kept without
    /// a copy.
    pub fn set(&mut self, name: &'static str, value: Option<ByteString>) {
        match self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.0.push(Param {
                name: ByteString::from_static(name),
                value,
            }),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    /// Parses URI parameters: `*( ";" pname [ "=" pvalue ] )`, no whitespace anywhere.
    pub(crate) fn parse_uri(text: &ByteString, s: &str) -> Result<Self, InvalidSyntax> {
        const WHAT: InvalidSyntax = InvalidSyntax("URI parameter");
        let mut params = Vec::new();
        if s.is_empty() {
            return Ok(Self(params));
        }
        let Some(rest) = s.strip_prefix(';') else {
            return Err(WHAT);
        };
        for item in rest.split(';') {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            if name.is_empty() || !is_escaped_with(name, is_paramchar) {
                return Err(WHAT);
            }
            if let Some(v) = value
                && (v.is_empty() || !is_escaped_with(v, is_paramchar))
            {
                return Err(WHAT);
            }
            params.push(Param {
                name: text.slice_ref(name),
                value: value.map(|v| text.slice_ref(v)),
            });
        }
        Ok(Self(params))
    }

    /// Parses header parameters from `s`, a suffix of a header value:
    /// `*( SEMI token [ EQUAL ( token / host / quoted-string ) ] )` with optional whitespace
    /// around `;` and `=`. Everything must be consumed.
    pub(crate) fn parse_header(text: &ByteString, s: &str) -> Result<Self, InvalidSyntax> {
        const WHAT: InvalidSyntax = InvalidSyntax("header parameter");
        let b = s.as_bytes();
        let mut params = Vec::new();
        let mut i = skip_ws(b, 0);
        while i < b.len() {
            if b[i] != b';' {
                return Err(WHAT);
            }
            i = skip_ws(b, i + 1);
            let start = i;
            while i < b.len() && is_token(b[i]) {
                i += 1;
            }
            if i == start {
                return Err(WHAT);
            }
            let name = text.slice_ref(&s[start..i]);
            i = skip_ws(b, i);
            let mut value = None;
            if i < b.len() && b[i] == b'=' {
                i = skip_ws(b, i + 1);
                let vstart = i;
                if i < b.len() && b[i] == b'"' {
                    i = end_of_quoted(b, i).ok_or(WHAT)?;
                } else {
                    while i < b.len() && is_gen_value(b[i]) {
                        i += 1;
                    }
                }
                if i == vstart {
                    return Err(WHAT);
                }
                value = Some(text.slice_ref(&s[vstart..i]));
                i = skip_ws(b, i);
            }
            params.push(Param { name, value });
            if i < b.len() && !is_ws(b[i]) && b[i] != b';' {
                return Err(WHAT);
            }
        }
        Ok(Self(params))
    }
}

impl FromIterator<Param> for Params {
    fn from_iter<T: IntoIterator<Item = Param>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Params {
    /// Writes the parameters as their `Display` prints them, into any writer.
    pub fn write_into<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        for p in &self.0 {
            w.write_str(";")?;
            w.write_str(&p.name)?;
            if let Some(v) = &p.value {
                w.write_str("=")?;
                w.write_str(v)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// `paramchar` of URI parameters: unreserved, `[]/:&+$`, or an escape.
fn is_paramchar(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// Characters of an unquoted `gen-value`: a token or a host, IPv6 references included.
fn is_gen_value(c: u8) -> bool {
    is_token(c) || matches!(c, b':' | b'[' | b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> Result<Params, InvalidSyntax> {
        let text = ByteString::from(s.to_owned());
        Params::parse_header(&text, &text)
    }

    #[test]
    fn header_params_with_whitespace() {
        let p = header(" ;   tag    = 1918181833n ; q = 0.33;lr").expect("valid");
        assert_eq!(p.value("TAG"), Some("1918181833n"));
        assert_eq!(p.value("q"), Some("0.33"));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.to_string(), ";tag=1918181833n;q=0.33;lr");
    }

    #[test]
    fn header_params_quoted_and_ipv6() {
        let p = header(r#";x="a;b\"c";received=[2001:db8::9:255];r=2001:db8::1"#).expect("valid");
        assert_eq!(p.value("x"), Some(r#""a;b\"c""#));
        assert_eq!(p.value("received"), Some("[2001:db8::9:255]"));
        assert_eq!(p.value("r"), Some("2001:db8::1"));
    }

    #[test]
    fn header_params_reject_empty_names() {
        assert!(header(";;;;").is_err());
        assert!(header(";a=").is_err());
        assert!(header("junk").is_err());
        assert!(header(r#";a="unbalanced"#).is_err());
    }

    #[test]
    fn uri_params() {
        let text = ByteString::from_static(";lr;transport=tcp;%6C%72;n%61me=v%61lue%25%34%31");
        let p = Params::parse_uri(&text, &text).expect("valid");
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.value("TRANSPORT"), Some("tcp"));
        assert_eq!(p.to_string(), text.as_ref() as &str);
        assert!(Params::parse_uri(&text, ";a b").is_err());
        assert!(Params::parse_uri(&text, ";;").is_err());
    }

    #[test]
    fn set_replaces_in_place() {
        let mut p = header(";rport;branch=z9hG4bK1").expect("valid");
        p.set("rport", Some(ByteString::from_static("5062")));
        p.set("received", Some(ByteString::from_static("192.0.2.1")));
        assert_eq!(
            p.to_string(),
            ";rport=5062;branch=z9hG4bK1;received=192.0.2.1"
        );
        p.remove("RPORT");
        assert_eq!(p.to_string(), ";branch=z9hG4bK1;received=192.0.2.1");
    }
}
