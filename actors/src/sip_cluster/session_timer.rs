//! Session timers (RFC 4028) for one leg of a call: how long the session lasts without a
//! refresh, and which end refreshes it. A call keeps one per leg that negotiated it; the end
//! that is not the refresher ends the call when no refresh comes in time, so a carrier's SBC
//! or a phone that disappeared does not hold a call (and an agent) for ever.

use std::time::{Duration, Instant};

use switchboard_sip::{HeaderName, Headers};

/// The option tag of the extension.
pub const TIMER: &str = "timer";

/// A Session-Expires header (RFC 4028 4): the interval, and who refreshes if it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub secs: u32,
    /// `Some(true)` for `refresher=uac`, `Some(false)` for `uas`.
    pub uac_refreshes: Option<bool>,
}

impl SessionExpires {
    /// The header of `headers`: `None` when absent, `Err` when it does not parse.
    pub fn of(headers: &Headers) -> Result<Option<Self>, String> {
        let Some(value) = headers.get(&HeaderName::SessionExpires) else {
            return Ok(None);
        };
        let mut parts = value.split(';');
        let secs = parts
            .next()
            .map(str::trim)
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&s| s > 0)
            .ok_or_else(|| format!("Session-Expires: {value}"))?;
        let mut uac_refreshes = None;
        for param in parts {
            let (name, v) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("refresher") {
                uac_refreshes = match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(true),
                    "uas" => Some(false),
                    _ => return Err(format!("Session-Expires refresher: {v}")),
                };
            }
        }
        Ok(Some(Self {
            secs,
            uac_refreshes,
        }))
    }
}

/// Whether a message says its sender supports (or requires) session timers.
pub fn supports_timer(headers: &Headers) -> bool {
    [HeaderName::Supported, HeaderName::Require]
        .iter()
        .flat_map(|name| headers.values(name))
        .any(|tag| tag.eq_ignore_ascii_case(TIMER))
}

/// The session timer of one leg.
#[derive(Debug)]
pub struct SessionTimer {
    pub interval: Duration,
    /// Whether this side sends the refreshes on the leg.
    pub we_refresh: bool,
    /// When to refresh (if this side refreshes) or when the session has expired (if not);
    /// unset until the leg is established.
    pub due: Option<Instant>,
    /// Whether the other end takes UPDATE, the refresh that needs no offer (else a
    /// re-INVITE offers the leg's last description again).
    pub update: bool,
}

impl SessionTimer {
    pub fn new(interval: Duration, we_refresh: bool, update: bool) -> Self {
        Self {
            interval,
            we_refresh,
            due: None,
            update,
        }
    }

    /// A refresh went through at `now`: the next is due half-way through the interval; the
    /// other end's refresh is awaited until the interval less a margin (RFC 4028 10: a third
    /// of it, at most 32 seconds) is over.
    pub fn refreshed(&mut self, now: Instant) {
        let wait = if self.we_refresh {
            self.interval / 2
        } else {
            self.interval - (self.interval / 3).min(Duration::from_secs(32))
        };
        self.due = Some(now + wait);
    }

    /// The refresher as a response on the leg says it: the transaction's UAC is the other end.
    pub fn in_response(&self) -> String {
        let who = if self.we_refresh { "uas" } else { "uac" };
        format!("{};refresher={who}", self.interval.as_secs())
    }

    /// The refresher as a request sent on the leg says it: this side is the UAC.
    pub fn in_request(&self) -> String {
        let who = if self.we_refresh { "uac" } else { "uas" };
        format!("{};refresher={who}", self.interval.as_secs())
    }
}

/// Adds a leg's session timer to a 2xx it answers with.
pub fn add_to_response(headers: &mut Headers, timer: &SessionTimer) {
    let length = headers.remove_first(&HeaderName::ContentLength);
    headers.push(HeaderName::SessionExpires, timer.in_response());
    if !timer.we_refresh {
        // RFC 4028 9: a 2xx naming the UAC as refresher requires it to be one.
        headers.push(HeaderName::Require, TIMER);
    }
    headers.push(HeaderName::Supported, TIMER);
    if let Some(length) = length {
        headers.push(HeaderName::ContentLength, length);
    }
}

/// Whether a message's Allow lists `method`.
pub fn allows(headers: &Headers, method: &str) -> bool {
    headers
        .values(&HeaderName::Allow)
        .any(|m| m.eq_ignore_ascii_case(method))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(text: &str) -> Headers {
        let mut h = Headers::with_capacity(1);
        h.push(HeaderName::SessionExpires, text.to_owned());
        h
    }

    #[test]
    fn session_expires_parses_its_interval_and_refresher() {
        assert_eq!(
            SessionExpires::of(&headers("1800;refresher=uac")),
            Ok(Some(SessionExpires {
                secs: 1800,
                uac_refreshes: Some(true)
            }))
        );
        assert_eq!(
            SessionExpires::of(&headers("90 ; Refresher = UAS")),
            Ok(Some(SessionExpires {
                secs: 90,
                uac_refreshes: Some(false)
            }))
        );
        assert_eq!(
            SessionExpires::of(&headers("600"))
                .expect("valid")
                .expect("present")
                .uac_refreshes,
            None
        );
        assert!(SessionExpires::of(&headers("soon")).is_err());
        assert!(SessionExpires::of(&headers("0")).is_err());
        assert!(SessionExpires::of(&headers("90;refresher=proxy")).is_err());
        assert_eq!(SessionExpires::of(&Headers::with_capacity(0)), Ok(None));
    }

    #[test]
    fn the_refresher_refreshes_half_way_and_the_other_end_waits_nearly_all_of_it() {
        let now = Instant::now();
        let mut ours = SessionTimer::new(Duration::from_secs(1800), true, true);
        ours.refreshed(now);
        assert_eq!(ours.due, Some(now + Duration::from_secs(900)));
        let mut theirs = SessionTimer::new(Duration::from_secs(1800), false, true);
        theirs.refreshed(now);
        assert_eq!(theirs.due, Some(now + Duration::from_secs(1768)));
        let mut short = SessionTimer::new(Duration::from_secs(90), false, true);
        short.refreshed(now);
        assert_eq!(short.due, Some(now + Duration::from_secs(60)));
        assert_eq!(theirs.in_response(), "1800;refresher=uac");
        assert_eq!(theirs.in_request(), "1800;refresher=uas");
    }
}
