//! Header fields: the ordered list a message carries, and typed views of the headers the core
//! reads (Via, From/To, Contact, CSeq, digest credentials, ...). A message keeps every header as
//! text; a typed view is parsed from that text when asked for, except the views the parser
//! made anyway while checking the message (top Via, From, To, Contact), which the headers keep
//! until a header of that name changes.

mod auth;
mod cseq;
mod name;
mod name_addr;
mod via;

pub use auth::{Challenge, Credentials, DigestParams};
pub use cseq::CSeq;
pub use name::HeaderName;
pub use name_addr::{Contact, NameAddr};
pub use via::{BRANCH_COOKIE, Via};

use bytestring::ByteString;

use crate::scan::{parse_delta_seconds, split_commas};

/// Splits a header value at the commas between its values (RFC 3261 7.3.1), ignoring commas
/// in quoted strings and angle brackets.
pub fn split_values(value: &str) -> impl Iterator<Item = &str> {
    split_commas(value).filter(|v| !v.is_empty())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    /// The value with folding replaced by single spaces and surrounding whitespace trimmed.
    pub value: ByteString,
}

/// The headers of a message in their order on the wire.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    list: Vec<Header>,
    /// The views the parser made while checking the message, so that the edge, the registrar
    /// and the calls do not parse them again. Not part of the headers' value: two lists of the
    /// same headers are equal whatever views they keep.
    typed: Option<Box<Typed>>,
}

/// Typed views of headers, each as the text of its headers now reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Typed {
    pub(crate) top_via: Option<Via>,
    pub(crate) from: Option<NameAddr>,
    pub(crate) to: Option<NameAddr>,
    pub(crate) contacts: Option<Vec<Contact>>,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Headers {}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            list: Vec::with_capacity(n),
            typed: None,
        }
    }

    /// Keeps the views the parser made of these headers' text.
    pub(crate) fn keep_typed(&mut self, typed: Typed) {
        self.typed = Some(Box::new(typed));
    }

    /// A header of this name changed: its kept view no longer reads as its text.
    fn changed(&mut self, name: &HeaderName) {
        let Some(typed) = &mut self.typed else {
            return;
        };
        match name {
            HeaderName::Via => typed.top_via = None,
            HeaderName::From => typed.from = None,
            HeaderName::To => typed.to = None,
            HeaderName::Contact => typed.contacts = None,
            _ => {}
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.list.iter()
    }

    /// Appends a header.
    pub fn push(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.changed(&name);
        self.list.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Puts a header before all others of its name (a new top Via, a Record-Route).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.changed(&name);
        let at = self.list.iter().position(|h| h.name == name).unwrap_or(0);
        self.list.insert(
            at,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces every header of this name by one with `value`, where the first one stood.
    pub fn set(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.changed(&name);
        let value = value.into();
        match self.list.iter().position(|h| h.name == name) {
            Some(at) => {
                self.list[at].value = value;
                let mut i = 0;
                self.list.retain(|h| {
                    let keep = i <= at || h.name != name;
                    i += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.changed(name);
        self.list.retain(|h| &h.name != name);
    }

    /// Replaces the value of the first header of this name only.
    pub fn replace_first(&mut self, name: &HeaderName, value: impl Into<ByteString>) {
        self.changed(name);
        if let Some(h) = self.list.iter_mut().find(|h| &h.name == name) {
            h.value = value.into();
        }
    }

    /// Removes the first header of this name (the top Via of a response being forwarded).
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<ByteString> {
        self.changed(name);
        let at = self.list.iter().position(|h| &h.name == name)?;
        Some(self.list.remove(at).value)
    }

    /// The first header of this name.
    pub fn get(&self, name: &HeaderName) -> Option<&ByteString> {
        self.list.iter().find(|h| &h.name == name).map(|h| &h.value)
    }

    /// Every header of this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a ByteString> {
        self.list
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| &h.value)
    }

    pub fn count(&self, name: &HeaderName) -> usize {
        self.get_all(name).count()
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// Every comma-separated value of every header of this name (RFC 3261 7.3.1), as slices
    /// of the header text.
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = ByteString> + 'a {
        self.get_all(name).flat_map(|text| {
            split_commas(text)
                .filter(|v| !v.is_empty())
                .map(|v| text.slice_ref(v))
        })
    }

    /// A `delta-seconds` header (Expires, Min-Expires): `None` when absent, an error when it
    /// does not parse. Values past 2^32-1 are clamped.
    pub fn delta_seconds(&self, name: &HeaderName) -> Result<Option<u32>, crate::InvalidSyntax> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_delta_seconds(v)
                .map(Some)
                .ok_or(crate::InvalidSyntax("delta-seconds")),
        }
    }

    /// The Via headers, parsed, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via, crate::InvalidSyntax>> + '_ {
        self.values(&HeaderName::Via).map(|v| Via::parse(&v))
    }

    /// The top Via, parsed.
    pub fn top_via(&self) -> Option<Result<Via, crate::InvalidSyntax>> {
        if let Some(via) = self.typed.as_ref().and_then(|t| t.top_via.as_ref()) {
            return Some(Ok(via.clone()));
        }
        self.vias().next()
    }

    pub fn call_id(&self) -> Option<&ByteString> {
        self.get(&HeaderName::CallId)
    }

    pub fn cseq(&self) -> Option<Result<CSeq, crate::InvalidSyntax>> {
        self.get(&HeaderName::CSeq).map(CSeq::parse)
    }

    pub fn from(&self) -> Option<Result<NameAddr, crate::InvalidSyntax>> {
        if let Some(from) = self.typed.as_ref().and_then(|t| t.from.as_ref()) {
            return Some(Ok(from.clone()));
        }
        self.get(&HeaderName::From).map(NameAddr::parse)
    }

    pub fn to(&self) -> Option<Result<NameAddr, crate::InvalidSyntax>> {
        if let Some(to) = self.typed.as_ref().and_then(|t| t.to.as_ref()) {
            return Some(Ok(to.clone()));
        }
        self.get(&HeaderName::To).map(NameAddr::parse)
    }

    /// Whether the To header carries a tag (a request within a dialog, a response a UAS
    /// tagged), read from its parameters without parsing its URI.
    pub fn to_has_tag(&self) -> bool {
        self.get(&HeaderName::To)
            .is_some_and(|to| NameAddr::params_of(to).is_ok_and(|p| p.value("tag").is_some()))
    }

    /// The Contact values, parsed.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact, crate::InvalidSyntax>> + '_ {
        let kept = self.typed.as_ref().and_then(|t| t.contacts.as_deref());
        let parsed = match kept {
            Some(_) => None,
            None => Some(
                self.values(&HeaderName::Contact)
                    .map(|v| Contact::parse(&v)),
            ),
        };
        kept.into_iter()
            .flatten()
            .map(|c| Ok(c.clone()))
            .chain(parsed.into_iter().flatten())
    }

    pub fn max_forwards(&self) -> Option<Result<u8, crate::InvalidSyntax>> {
        self.get(&HeaderName::MaxForwards).map(|v| {
            let n = crate::scan::parse_u64(v).ok_or(crate::InvalidSyntax("Max-Forwards"))?;
            u8::try_from(n).map_err(|_| crate::InvalidSyntax("Max-Forwards"))
        })
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(HeaderName, &'static str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in list {
            h.push(n.clone(), ByteString::from_static(v));
        }
        h
    }

    #[test]
    fn multi_valued_headers_split() {
        let h = headers(&[
            (HeaderName::Contact, "<sip:a@x>;q=0.5, \"B, b\" <sip:b@x>"),
            (HeaderName::Via, "SIP/2.0/UDP a"),
            (HeaderName::Contact, "sip:c@x"),
        ]);
        let v: Vec<_> = h.values(&HeaderName::Contact).collect();
        assert_eq!(v, ["<sip:a@x>;q=0.5", "\"B, b\" <sip:b@x>", "sip:c@x"]);
        assert_eq!(h.count(&HeaderName::Contact), 2);
    }

    #[test]
    fn set_push_front_remove() {
        let mut h = headers(&[
            (HeaderName::Via, "SIP/2.0/UDP a"),
            (HeaderName::Expires, "10"),
            (HeaderName::Via, "SIP/2.0/UDP b"),
            (HeaderName::Expires, "20"),
        ]);
        h.push_front(HeaderName::Via, "SIP/2.0/UDP top");
        h.set(HeaderName::Expires, "30");
        let v: Vec<_> = h.iter().map(|x| x.value.to_string()).collect();
        assert_eq!(
            v,
            ["SIP/2.0/UDP top", "SIP/2.0/UDP a", "30", "SIP/2.0/UDP b"]
        );
        assert_eq!(
            h.remove_first(&HeaderName::Via).as_deref(),
            Some("SIP/2.0/UDP top")
        );
        h.remove(&HeaderName::Via);
        assert_eq!(h.len(), 1);
        assert_eq!(h.delta_seconds(&HeaderName::Expires), Ok(Some(30)));
    }
}
