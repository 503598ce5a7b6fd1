//! SIP for switchboard: the message model over `bytes`, parser and printer, URIs and typed
//! header views, sans-io transactions and dialogs, the INVITE rules beside them (2xx until ACK,
//! PRACK, session timers), what Allow and Supported advertise, digest authentication, the bit
//! of SDP a relaying B2BUA reads, and the UDP/TCP transports that carry it all.

pub mod auth;
pub mod dialog;
mod error;
pub mod header;
pub mod invite;
mod message;
mod params;
mod parse;
mod print;
mod random;
pub mod repeated;
mod scan;
pub mod sdp;
pub mod support;
pub mod transaction;
pub mod transport;
pub mod uri;

pub use bytestring::ByteString;
pub use error::{Error, InvalidSyntax, ParseError, ParseErrorKind, Result};
pub use header::{HeaderName, Headers};
pub use message::{Message, Method, Request, Response, reason_phrase};
pub use params::{Param, Params};
pub use parse::{Framer, FramingError, StreamItem, parse_datagram};
pub use random::{hex, random_bytes, token};
pub use uri::{Host, SipUri, Uri, addr_text};
