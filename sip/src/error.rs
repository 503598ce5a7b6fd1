//! Errors of the sip crate: a syntax error in one element, why a whole message was rejected,
//! and the crate's I/O-level error.

use crate::header::Headers;

/// A syntax error in one element (a URI, a Via, a parameter); names what was being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0}")]
pub struct InvalidSyntax(pub &'static str);

/// Why the parser rejected a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("message head is not UTF-8")]
    NotUtf8,
    #[error("no end of the message head")]
    NoHeadEnd,
    #[error("malformed start line")]
    StartLine,
    #[error("unsupported SIP version")]
    Version,
    #[error("malformed Request-URI")]
    RequestUri,
    #[error("malformed header line")]
    HeaderLine,
    #[error("malformed or repeated Content-Length")]
    ContentLength,
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("more than one {0}")]
    Repeated(&'static str),
    #[error("{0}")]
    Invalid(#[from] InvalidSyntax),
    #[error("CSeq method differs from the request method")]
    CSeqMethod,
    #[error("invalid status code")]
    Status,
}

/// A rejected message. When it was a request whose head could be read and that has a Via and a
/// CSeq, `echo` holds the headers an error response must copy (Via, From, To, Call-ID, CSeq),
/// so the sender can be told what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub echo: Option<Box<Headers>>,
}

impl ParseError {
    pub(crate) fn bare(kind: ParseErrorKind) -> Self {
        Self { kind, echo: None }
    }

    /// The status RFC 3261 prescribes for a request rejected this way.
    pub fn status(&self) -> u16 {
        match self.kind {
            ParseErrorKind::Version => 505,
            _ => 400,
        }
    }
}

/// Errors of the transports and of everything else in the crate that is not parsing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("parse: {0}")]
    Parse(#[from] ParseError),
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("too many connections from {0}")]
    ConnectionLimit(std::net::IpAddr),
    #[error("transport closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
