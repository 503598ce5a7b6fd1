//! CSeq (RFC 3261 20.16): a sequence number below 2^31 and a method.

use std::fmt;

use bytestring::ByteString;

use crate::error::InvalidSyntax;
use crate::message::Method;
use crate::scan::{is_ws, parse_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn new(seq: u32, method: Method) -> Self {
        Self { seq, method }
    }

    pub fn parse(text: &ByteString) -> Result<Self, InvalidSyntax> {
        let what = InvalidSyntax("CSeq");
        let s = text.trim_matches(|c: char| c == ' ' || c == '\t');
        let split = s.find([' ', '\t']).ok_or(what)?;
        let seq = parse_u64(&s[..split]).ok_or(what)?;
        if seq >= 1 << 31 {
            return Err(what);
        }
        let method = s[split..].trim_start_matches(|c: char| is_ws(c as u8));
        Ok(Self {
            seq: seq as u32,
            method: Method::parse(text, method).ok_or(what)?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cseq(s: &str) -> Result<CSeq, InvalidSyntax> {
        CSeq::parse(&ByteString::from(s.to_owned()))
    }

    #[test]
    fn parse_and_print() {
        let c = cseq("0009 INVITE").expect("valid");
        assert_eq!(c, CSeq::new(9, Method::Invite));
        assert_eq!(c.to_string(), "9 INVITE");
        let c = cseq("139122385 !interesting-Method0123456789_*+`.%indeed'~").expect("valid");
        assert_eq!(
            c.method.as_str(),
            "!interesting-Method0123456789_*+`.%indeed'~"
        );
        assert_eq!(cseq("2147483647 ACK").expect("valid").seq, 2_147_483_647);
    }

    #[test]
    fn rejects() {
        for bad in [
            "36893488147419103232 REGISTER",
            "2147483648 INVITE",
            "INVITE",
            "-1 INVITE",
            "1 INV ITE",
            "1",
        ] {
            assert!(cseq(bad).is_err(), "{bad}");
        }
    }
}
