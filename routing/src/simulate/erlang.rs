//! Queueing theory to check the simulator against: Erlang C (M/M/c) and Erlang A (M/M/c+M,
//! callers who give up after an exponential patience).

/// M/M/c: `agents` serving calls arriving at `rate` a second, each handled in `handle`
/// seconds on average.
#[derive(Debug, Clone, Copy)]
pub struct ErlangC {
    pub agents: u32,
    pub rate: f64,
    pub handle: f64,
}

impl ErlangC {
    /// The offered load in Erlangs.
    pub fn load(&self) -> f64 {
        self.rate * self.handle
    }

    /// The probability that a call waits.
    pub fn wait_probability(&self) -> f64 {
        let a = self.load();
        let c = self.agents as f64;
        if a >= c {
            return 1.0;
        }
        // Erlang B by its recursion, then C from B.
        let mut b = 1.0;
        for k in 1..=self.agents {
            b = a * b / (k as f64 + a * b);
        }
        b / (1.0 - (a / c) * (1.0 - b))
    }

    /// The share of calls answered within `secs`.
    pub fn service_level(&self, secs: f64) -> f64 {
        let a = self.load();
        let c = self.agents as f64;
        1.0 - self.wait_probability() * (-(c - a) * secs / self.handle).exp()
    }

    /// The average speed of answer, over all calls, in seconds.
    pub fn average_speed_of_answer(&self) -> f64 {
        let a = self.load();
        self.wait_probability() * self.handle / (self.agents as f64 - a)
    }
}

/// M/M/c+M: as [`ErlangC`], callers giving up after an exponential patience of mean
/// `patience` seconds.
#[derive(Debug, Clone, Copy)]
pub struct ErlangA {
    pub agents: u32,
    pub rate: f64,
    pub handle: f64,
    pub patience: f64,
}

impl ErlangA {
    /// The share of calls abandoned: from the birth-death chain of the number of calls in
    /// the system, cut where its terms no longer count.
    pub fn abandon_rate(&self) -> f64 {
        let (lambda, mu, theta) = (self.rate, 1.0 / self.handle, 1.0 / self.patience);
        let c = self.agents as usize;
        // p[n] relative to p[0], in logs to stay finite.
        let mut log_p = vec![0.0f64];
        for n in 1..100_000 {
            let death = if n <= c {
                n as f64 * mu
            } else {
                c as f64 * mu + (n - c) as f64 * theta
            };
            let next = log_p[n - 1] + (lambda / death).ln();
            log_p.push(next);
            if n > c && next < log_p.iter().cloned().fold(f64::MIN, f64::max) - 50.0 {
                break;
            }
        }
        let top = log_p.iter().cloned().fold(f64::MIN, f64::max);
        let p: Vec<f64> = log_p.iter().map(|l| (l - top).exp()).collect();
        let total: f64 = p.iter().sum();
        // Abandons per second over arrivals per second.
        let abandons: f64 = p
            .iter()
            .enumerate()
            .filter(|(n, _)| *n > c)
            .map(|(n, p)| (n - c) as f64 * theta * p)
            .sum::<f64>()
            / total;
        abandons / lambda
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_matches_the_textbook() {
        // The classic example: 100 calls in 30 minutes, 180 s each, 20 s target, 11 agents.
        let c = ErlangC {
            agents: 11,
            rate: 100.0 / 1800.0,
            handle: 180.0,
        };
        assert!((c.load() - 10.0).abs() < 1e-9);
        assert!((c.wait_probability() - 0.6821).abs() < 1e-3);
        assert!((c.service_level(20.0) - 0.3896).abs() < 1e-3);
        assert!((c.average_speed_of_answer() - 122.8).abs() < 0.5);
    }

    #[test]
    fn erlang_a_without_patience_to_speak_of_abandons_nearly_nothing() {
        let a = ErlangA {
            agents: 10,
            rate: 8.0 / 180.0,
            handle: 180.0,
            patience: 1e9,
        };
        assert!(a.abandon_rate() < 1e-4);
        let impatient = ErlangA {
            patience: 120.0,
            ..a
        };
        let r = impatient.abandon_rate();
        assert!(r > 0.02 && r < 0.2, "{r}");
    }
}
