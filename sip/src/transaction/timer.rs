//! The timers of RFC 3261 17 (A to K) and RFC 6026 (L, M), their durations, and the small
//! table a transaction keeps them in.

use std::time::{Duration, Instant};

/// A transaction timer, named as in RFC 3261 Table 4 and RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// INVITE client: retransmit the request (unreliable transports).
    A,
    /// INVITE client: give up waiting for any response.
    B,
    /// INVITE client: wait for final-response retransmissions after sending ACK.
    D,
    /// Non-INVITE client: retransmit the request.
    E,
    /// Non-INVITE client: give up.
    F,
    /// INVITE server: retransmit a final non-2xx response.
    G,
    /// INVITE server: give up waiting for the ACK.
    H,
    /// INVITE server: absorb ACK retransmissions.
    I,
    /// Non-INVITE server: absorb request retransmissions.
    J,
    /// Non-INVITE client: absorb response retransmissions.
    K,
    /// INVITE server (RFC 6026): absorb INVITE retransmissions after a 2xx.
    L,
    /// INVITE client (RFC 6026): accept 2xx retransmissions.
    M,
}

const COUNT: usize = 12;

impl Timer {
    fn index(self) -> usize {
        self as usize
    }

    fn all() -> [Timer; COUNT] {
        use Timer::*;
        [A, B, D, E, F, G, H, I, J, K, L, M]
    }
}

/// T1, T2 and T4 (RFC 3261 17.1.1.1); every other duration derives from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip estimate, 500 ms.
    pub t1: Duration,
    /// Cap on retransmission intervals of non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// How long a message may stay in the network, 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// Timers B, F, H, J, L and M: 64*T1.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on unreliable transports.
    pub fn d(&self) -> Duration {
        Duration::from_secs(32).max(self.timeout())
    }
}

/// When each timer of a transaction is due, if running.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable([Option<Instant>; COUNT]);

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.0[timer.index()] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.0 = [None; COUNT];
    }

    /// The earliest instant any timer is due.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Takes the earliest timer due at or before `now`, stopping it.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let (timer, _) = Timer::all()
            .into_iter()
            .filter_map(|t| self.0[t.index()].map(|at| (t, at)))
            .filter(|&(_, at)| at <= now)
            .min_by_key(|&(_, at)| at)?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_yields_due_timers_in_order() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::F, t0 + Duration::from_secs(32));
        table.set(Timer::E, t0 + Duration::from_millis(500));
        assert_eq!(table.next(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(table.take_expired(t0), None);
        assert_eq!(
            table.take_expired(t0 + Duration::from_secs(40)),
            Some(Timer::E)
        );
        assert_eq!(
            table.take_expired(t0 + Duration::from_secs(40)),
            Some(Timer::F)
        );
        assert_eq!(table.next(), None);
    }

    #[test]
    fn rfc_defaults() {
        let c = TimerConfig::default();
        assert_eq!(c.timeout(), Duration::from_secs(32));
        assert_eq!(c.d(), Duration::from_secs(32));
    }
}
