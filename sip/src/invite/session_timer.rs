//! Session timers (RFC 4028) for one dialog: how long the session lasts without a refresh, and
//! which end refreshes it, as negotiated from an INVITE ([`SessionTimer::for_caller`]) or its
//! 2xx ([`SessionTimer::from_answer`]). The end that is not the refresher ends the session when
//! no refresh comes in time, so a carrier's SBC or a phone that disappeared does not hold a
//! call (and an agent) for ever.

use std::time::{Duration, Instant};

use crate::{HeaderName, Headers};

/// The option tag of the extension.
pub const TAG: &str = "timer";

/// Why a caller's session timer is refused, with the status that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 422 Session Interval Too Small, with the minimum in Min-SE.
    #[error("session interval under {}s", .0.as_secs())]
    TooSmall(Duration),
    /// 400: a header that does not parse.
    #[error("{0}")]
    Malformed(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::TooSmall(_) => 422,
            Refusal::Malformed(_) => 400,
        }
    }
}

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
        .any(|tag| tag.eq_ignore_ascii_case(TAG))
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

    /// The timer of a dialog a UAS takes from an INVITE's `headers` (RFC 4028 9): none when
    /// the caller neither supports timers nor asks for one; `interval` when it supports them
    /// but asks for none. An interval under `min_se` is refused (422) from a caller that
    /// supports the extension; one that does not (a proxy put the header in) is given the
    /// minimum instead. The caller refreshes unless it says otherwise or cannot.
    pub fn for_caller(
        headers: &Headers,
        interval: Duration,
        min_se: Duration,
    ) -> Result<Option<Self>, Refusal> {
        let supported = supports_timer(headers);
        let update = allows(headers, "UPDATE");
        let Some(asked) = SessionExpires::of(headers).map_err(Refusal::Malformed)? else {
            return Ok(supported.then(|| Self::new(interval, false, update)));
        };
        let mut interval = Duration::from_secs(asked.secs.into());
        if interval < min_se {
            if supported {
                return Err(Refusal::TooSmall(min_se));
            }
            interval = min_se;
        }
        let caller_refreshes = supported && asked.uac_refreshes.unwrap_or(true);
        Ok(Some(Self::new(interval, !caller_refreshes, update)))
    }

    /// The timer of a dialog a UAC takes from the 2xx `headers` answering its INVITE, if the
    /// callee took the offer of one (RFC 4028 7.2).
    pub fn from_answer(headers: &Headers) -> Option<Self> {
        let se = SessionExpires::of(headers).ok()??;
        Some(Self::new(
            Duration::from_secs(se.secs.into()),
            se.uac_refreshes == Some(true),
            allows(headers, "UPDATE"),
        ))
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
        headers.push(HeaderName::Require, TAG);
    }
    headers.push(HeaderName::Supported, TAG);
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

    #[test]
    fn a_caller_gets_its_interval_unless_under_the_minimum() {
        let (interval, min) = (Duration::from_secs(1800), Duration::from_secs(90));
        let mut h = headers("30");
        h.push(HeaderName::Supported, TAG);
        assert_eq!(
            SessionTimer::for_caller(&h, interval, min).map(|_| ()),
            Err(Refusal::TooSmall(min))
        );
        assert_eq!(
            Refusal::TooSmall(min).to_string(),
            "session interval under 90s"
        );
        let t = SessionTimer::for_caller(&headers("30"), interval, min)
            .expect("a caller without timers is given the minimum")
            .expect("a timer");
        assert_eq!((t.interval, t.we_refresh), (min, true));
        let mut asks_none = Headers::with_capacity(1);
        asks_none.push(HeaderName::Supported, TAG);
        let t = SessionTimer::for_caller(&asks_none, interval, min)
            .expect("fine")
            .expect("a timer");
        assert_eq!((t.interval, t.we_refresh), (interval, false));
        assert!(matches!(
            SessionTimer::for_caller(&headers("soon"), interval, min),
            Err(Refusal::Malformed(_))
        ));
        assert!(
            SessionTimer::for_caller(&Headers::with_capacity(0), interval, min)
                .expect("fine")
                .is_none()
        );
        let answer = SessionTimer::from_answer(&headers("100;refresher=uac")).expect("taken");
        assert!(answer.we_refresh, "the UAC is this side");
    }
}
