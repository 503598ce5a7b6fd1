//! The rules an INVITE dialog's user agent follows beside its transactions, as ezk keeps them
//! in its SIP library (`sip-ua/src/invite/`): the 2xx sent again until its ACK (RFC 3261
//! 13.3.1.4, [`ack`]), reliable provisional responses (RFC 3262, [`prack`]) and session timers
//! (RFC 4028, [`session_timer`]). Each is sans-io like [`crate::transaction`]: time goes in,
//! what to send comes out; a call decides what to do, these know how.

pub mod ack;
pub mod prack;
pub mod session_timer;
