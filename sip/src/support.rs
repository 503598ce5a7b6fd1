//! What switchboard's SIP implements, as the headers that advertise it say so: the methods of
//! Allow and the option tags of Supported (checked against Require and Proxy-Require).

use crate::invite::{prack, session_timer};

/// The methods in one list: a call's dialogs take them all, and the edge REGISTER besides.
macro_rules! methods {
    ($($register:literal)?) => {
        concat!(
            "INVITE, ACK, CANCEL, BYE, OPTIONS, ",
            $($register, ", ",)?
            "UPDATE, INFO, PRACK, REFER"
        )
    };
}

/// The methods a call takes within its dialogs, for Allow there.
pub const ALLOW_IN_DIALOG: &str = methods!();

/// The methods the edge serves (a call's, and REGISTER), for Allow in its own answers.
pub const ALLOW: &str = methods!("REGISTER");

/// The option tags switchboard supports: session timers (RFC 4028) and reliable provisional
/// responses (RFC 3262).
pub const SUPPORTED: &[&str] = &[session_timer::TAG, prack::TAG];

/// Whether `tag` (of Require or Proxy-Require) names an extension switchboard supports.
pub fn supports(tag: &str) -> bool {
    SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_allows_what_a_dialog_does_and_register() {
        assert_eq!(
            ALLOW,
            "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER"
        );
        assert_eq!(ALLOW.replace("REGISTER, ", ""), ALLOW_IN_DIALOG);
        assert!(supports("Timer") && supports("100rel") && !supports("precondition"));
    }
}
