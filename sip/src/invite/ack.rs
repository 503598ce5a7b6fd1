//! A 2xx to an INVITE sent by a UAS core and retransmitted by it, not by the transaction, until
//! the ACK arrives (RFC 3261 13.3.1.4): at T1, doubling up to T2; when no ACK has come by
//! 64*T1 the dialog is to be ended. Over a reliable transport the 2xx is not sent again, but
//! the ACK is still awaited.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::transaction::TimerConfig;

/// A 2xx that waits for its ACK.
#[derive(Debug)]
pub struct AwaitingAck {
    /// The CSeq number of the INVITE it answers, which the ACK carries.
    pub seq: u32,
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// What is due for a 2xx awaiting its ACK.
#[derive(Debug, PartialEq, Eq)]
pub enum AckDue {
    /// Send the 2xx again (over an unreliable transport).
    Resend(Bytes),
    /// No ACK came in time: the dialog ends.
    GiveUp,
}

impl AwaitingAck {
    /// The 2xx `bytes`, answering the INVITE of CSeq `seq`, sent at `now`.
    pub fn new(seq: u32, bytes: Bytes, timers: TimerConfig, now: Instant) -> Self {
        Self {
            seq,
            bytes,
            next: now + timers.t1,
            interval: timers.t1,
            give_up: now + timers.timeout(),
        }
    }

    /// When [`AwaitingAck::poll`] next has something to do.
    pub fn due(&self) -> Instant {
        self.next.min(self.give_up)
    }

    /// What is due at `now`, if anything; a resend schedules the next one.
    pub fn poll(&mut self, now: Instant, timers: TimerConfig) -> Option<AckDue> {
        if self.give_up <= now {
            return Some(AckDue::GiveUp);
        }
        if self.next > now {
            return None;
        }
        self.interval = (self.interval * 2).min(timers.t2);
        self.next = now + self.interval;
        Some(AckDue::Resend(self.bytes.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2xx_goes_again_at_t1_doubling_to_t2_until_64_t1() {
        let timers = TimerConfig::default();
        let start = Instant::now();
        let mut waiting = AwaitingAck::new(1, Bytes::from_static(b"200"), timers, start);
        let mut resent = Vec::new();
        let (outcome, now) = loop {
            let now = waiting.due();
            match waiting.poll(now, timers) {
                Some(AckDue::Resend(_)) => resent.push(now - start),
                Some(AckDue::GiveUp) => break (now - start, now),
                None => panic!("due and nothing to do"),
            }
        };
        let secs: Vec<f64> = resent.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(
            &secs[..5],
            [0.5, 1.5, 3.5, 7.5, 11.5],
            "T1, doubling, capped at T2"
        );
        assert_eq!(outcome, Duration::from_secs(32));
        assert!(
            waiting
                .poll(now, timers)
                .is_some_and(|d| d == AckDue::GiveUp)
        );
        assert_eq!(waiting.seq, 1);
    }
}
