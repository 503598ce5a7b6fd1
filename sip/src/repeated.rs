//! Log lines for events that come in floods (a refused connection, a failed authentication):
//! the first is written at once, the ones after are counted and written as one line with
//! their count at most once per interval, so an attack of 73,000 attempts writes a few dozen
//! lines that say how many, not 73,000 that hide everything else.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One kind of repeated event, most often a `static` beside the line it writes. Counting
/// is lock-free.
#[derive(Debug)]
pub struct Repeated {
    every_ms: u64,
    /// When (ms after the process's first count) the next line may be written.
    next_ms: AtomicU64,
    /// Events since the last line.
    pending: AtomicU64,
}

/// What the lines' clock counts from.
static EPOCH: OnceLock<Instant> = OnceLock::new();

impl Repeated {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every_ms: every.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    /// Counts one event; `Some(n)` when a line is due, `n` being the events it stands for
    /// (this one and those counted since the last line). Events after the last line of a
    /// flood are told by the next line of their kind.
    pub fn count(&self) -> Option<u64> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return None;
        }
        Some(self.pending.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_told_then_the_rest_once_per_interval_with_their_count() {
        let repeated = Repeated::new(Duration::from_millis(50));
        assert_eq!(repeated.count(), Some(1));
        for _ in 0..999 {
            assert_eq!(repeated.count(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(repeated.count(), Some(1000), "999 held back and this one");
        assert_eq!(repeated.count(), None);
    }
}
