//! The edge's defence against scanners, password guessing and floods (design.md "Failure and
//! bad input"): per-source limits and bans, shared by the transports (which drop a banned
//! source's traffic before parsing it), the edge (which counts what it refuses) and, through
//! Redis, every node ([`sync`]).
//!
//! Only traffic that proves nothing counts. Each out-of-dialog request without credentials
//! from a source that has not authenticated lately takes a token from that source's bucket
//! (Kamailio's `pike` default: 16 at once, 8 a second after), and is dropped when there is
//! none; each failure (credentials refused, a domain the node does not serve, a malformed
//! message, a stray in-dialog request) takes one too and is counted. Too many failures within
//! the window, or too many requests dropped for want of tokens (a flood), ban the source for
//! a while, twice as long for each offence it is remembered for. A request bringing
//! credentials costs no token (if they are wrong, that is a failure), and a source that
//! authenticates is known for a while, its requests free: an office of a hundred phones
//! booting behind one NAT address at once sees a few of its first REGISTERs dropped and
//! retransmitted, never a ban, and a guesser with one valid account still pays for each
//! wrong guess. Configured trunks and media servers, the
//! allowlist and (unless configured otherwise) loopback are never limited or banned.

pub mod store;
pub mod sync;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use switchboard_sip::repeated::Repeated;
use tokio::sync::mpsc;

use crate::tenant::{Directory, in_network};

/// The limits, with defaults a carrier would accept.
#[derive(Debug, Clone)]
pub struct DefenceConfig {
    /// Off: nothing is counted or banned.
    pub enabled: bool,
    /// Tokens a source's bucket gains each second.
    pub rate: f64,
    /// The bucket's size: requests a new source may send at once.
    pub burst: u32,
    /// Failures within `failure_window` that ban a source.
    pub max_failures: u32,
    /// Requests dropped for want of tokens within `failure_window` that ban a source.
    pub max_throttled: u32,
    pub failure_window: Duration,
    /// The first ban; each offence remembered doubles it, up to `max_ban`.
    pub ban: Duration,
    pub max_ban: Duration,
    /// How long a ban counts as an offence for the next one.
    pub offence_memory: Duration,
    /// How long a source that authenticated sends without counting.
    pub known: Duration,
    /// Networks never limited or banned, besides trunks and media servers.
    pub allow: Vec<(IpAddr, u8)>,
    /// Loopback addresses are never limited or banned (local tools, the demo).
    pub exempt_loopback: bool,
    /// Sources followed at once; past it, the idle ones are forgotten first.
    pub max_sources: usize,
}

impl Default for DefenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rate: 8.0,
            burst: 16,
            max_failures: 10,
            max_throttled: 500,
            failure_window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            max_ban: Duration::from_secs(24 * 3600),
            offence_memory: Duration::from_secs(24 * 3600),
            known: Duration::from_secs(3600),
            allow: Vec::new(),
            exempt_loopback: true,
            max_sources: 100_000,
        }
    }
}

/// What a source did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Digest credentials refused (wrong password, unknown user, replayed).
    Credentials,
    /// A REGISTER or INVITE for a domain the node does not serve.
    UnknownDomain,
    /// A message the parser refused.
    Malformed,
    /// A new call from an address that is no trunk, media server or tenant's phone.
    Refused,
    /// An in-dialog request for a call no node has.
    Stray,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Credentials => "credentials",
            Failure::UnknownDomain => "unknown domain",
            Failure::Malformed => "malformed",
            Failure::Refused => "refused",
            Failure::Stray => "stray request",
        }
    }
}

/// Why a source was banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Past its rate of requests that prove nothing.
    Flood,
    /// Too many failures; the last one's kind.
    Failures(Failure),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Flood => f.write_str("flood"),
            Reason::Failures(last) => write!(f, "failures ({})", last.as_str()),
        }
    }
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    /// When it was made, in Unix milliseconds.
    pub at_ms: u64,
    /// Unix milliseconds: bans are shared between nodes, whose clocks agree closely enough.
    pub until_ms: u64,
    pub reason: String,
    /// Which offence of the source's this is (1 for the first).
    pub offence: u32,
    /// The node that banned it.
    pub node: String,
}

/// A ban this node made, for [`sync`] to share.
#[derive(Debug, Clone)]
pub struct NewBan {
    pub ban: Ban,
    /// Its duration as the first (the store doubles it for offences it remembers).
    pub base: Duration,
}

/// What the metrics show.
#[derive(Debug, Default)]
pub struct DefenceFigures {
    /// Bans this node made.
    pub bans: AtomicU64,
    /// Messages and connections of banned sources dropped unanswered.
    pub dropped: AtomicU64,
    /// Failures counted against sources.
    pub failures: AtomicU64,
    /// Requests dropped for want of tokens.
    pub throttled: AtomicU64,
}

/// The shared state of the defence: cheap to consult from any task.
pub struct Defence {
    config: DefenceConfig,
    node: String,
    /// Trunks' and media servers' addresses, as the tenants configure them.
    directory: RwLock<Arc<Directory>>,
    sources: Mutex<HashMap<IpAddr, Source>>,
    bans: RwLock<HashMap<IpAddr, Ban>>,
    /// Whether `bans` may hold anything: the common case reads no lock.
    any_ban: AtomicBool,
    /// Offences remembered here (the store remembers them for the cluster): count, last.
    offences: Mutex<HashMap<IpAddr, (u32, u64)>>,
    shared: Option<mpsc::UnboundedSender<NewBan>>,
    pub figures: DefenceFigures,
}

impl fmt::Debug for Defence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defence")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What is known of one source.
#[derive(Debug, Clone)]
struct Source {
    exempt: bool,
    tokens: f64,
    refilled: Instant,
    failures: u32,
    /// Requests dropped for want of tokens since `first_failure`.
    throttled: u32,
    first_failure: Instant,
    known_until: Option<Instant>,
    seen: Instant,
}

impl Defence {
    /// The defence of node `node`; bans it makes go to `shared` for the other nodes.
    pub fn new(
        config: DefenceConfig,
        node: &str,
        directory: Arc<Directory>,
        shared: Option<mpsc::UnboundedSender<NewBan>>,
    ) -> Self {
        Self {
            config,
            node: node.to_owned(),
            directory: RwLock::new(directory),
            sources: Mutex::new(HashMap::new()),
            bans: RwLock::new(HashMap::new()),
            any_ban: AtomicBool::new(false),
            offences: Mutex::new(HashMap::new()),
            shared,
            figures: DefenceFigures::default(),
        }
    }

    pub fn config(&self) -> &DefenceConfig {
        &self.config
    }

    /// The tenants changed: trunks and media servers may have moved.
    pub fn directory_changed(&self, directory: Arc<Directory>) {
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = directory;
        self.sources().clear();
    }

    /// Whether traffic from `ip` is let in at all: false while it is banned. Drops are
    /// counted.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let banned = self.banned(ip);
        if banned {
            self.figures.dropped.fetch_add(1, Ordering::Relaxed);
        }
        !banned
    }

    fn banned(&self, ip: IpAddr) -> bool {
        self.any_ban.load(Ordering::Relaxed)
            && self
                .bans
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&ip)
                .is_some_and(|b| b.until_ms > crate::unix_ms())
    }

    /// An out-of-dialog request from `ip`, bringing `credentials` or not: whether it is let
    /// through. Without credentials, a source that has not authenticated lately pays a token
    /// for it; with none left the request is dropped, and a source that keeps flooding is
    /// banned.
    pub fn request(&self, ip: IpAddr, credentials: bool, now: Instant) -> bool {
        if !self.config.enabled {
            return true;
        }
        // Read before the ban reached the transport: dropped, and not counted again.
        if !self.admits(ip) {
            return false;
        }
        if credentials {
            return true;
        }
        let mut sources = self.sources();
        let source = self.source(&mut sources, ip, now);
        if source.exempt || source.known_until.is_some_and(|k| k > now) {
            return true;
        }
        if take_token(source, &self.config, now) {
            return true;
        }
        self.figures.throttled.fetch_add(1, Ordering::Relaxed);
        restart_window(source, &self.config, now);
        source.throttled += 1;
        let flooding = source.throttled >= self.config.max_throttled;
        drop(sources);
        if flooding {
            self.ban(ip, Reason::Flood);
        }
        false
    }

    /// A failure of `ip`'s: counted, and paid for with a token (known sources included). At
    /// the limit the source is banned.
    pub fn failed(&self, ip: IpAddr, failure: Failure, now: Instant) {
        // Told at most once per 10 s for each kind, with the count: an attack makes a few
        // lines, not one per guess.
        static FAILED: [Repeated; 5] = [const { Repeated::new(Duration::from_secs(10)) }; 5];
        if let Some(count) = FAILED[failure as usize].count() {
            tracing::warn!(%ip, failure = failure.as_str(), count,
                "SIP sources' failures (this one and those of its kind since the last line)");
        }
        if !self.config.enabled {
            return;
        }
        if self.banned(ip) {
            return;
        }
        let mut sources = self.sources();
        let source = self.source(&mut sources, ip, now);
        if source.exempt {
            return;
        }
        self.figures.failures.fetch_add(1, Ordering::Relaxed);
        restart_window(source, &self.config, now);
        source.failures += 1;
        if !take_token(source, &self.config, now) {
            source.throttled += 1;
        }
        let reason = if source.failures >= self.config.max_failures {
            Some(Reason::Failures(failure))
        } else if source.throttled >= self.config.max_throttled {
            Some(Reason::Flood)
        } else {
            None
        };
        drop(sources);
        if let Some(reason) = reason {
            self.ban(ip, reason);
        }
    }

    /// A request within a dialog no call has, from `ip`: a failure when the source has not
    /// authenticated lately (a phone's BYE retransmitted after its call ended is not one).
    pub fn stray(&self, ip: IpAddr, now: Instant) {
        let known = self
            .sources()
            .get(&ip)
            .is_some_and(|s| s.known_until.is_some_and(|k| k > now));
        if !known {
            self.failed(ip, Failure::Stray, now);
        }
    }

    /// `ip` proved a phone's credentials (or registered as a DN that needs none): its
    /// requests cost nothing for a while.
    pub fn authenticated(&self, ip: IpAddr, now: Instant) {
        if !self.config.enabled {
            return;
        }
        let known = now + self.config.known;
        let mut sources = self.sources();
        self.source(&mut sources, ip, now).known_until = Some(known);
    }

    /// Bans `ip` here at once, and has it shared.
    fn ban(&self, ip: IpAddr, reason: Reason) {
        let now_ms = crate::unix_ms();
        let offence = {
            let mut offences = self.offences.lock().unwrap_or_else(|p| p.into_inner());
            let memory = self.config.offence_memory.as_millis() as u64;
            let entry = offences.entry(ip).or_insert((0, now_ms));
            if now_ms.saturating_sub(entry.1) > memory {
                entry.0 = 0;
            }
            entry.0 += 1;
            entry.1 = now_ms;
            entry.0
        };
        let duration = self.ban_time(offence);
        let ban = Ban {
            ip,
            at_ms: now_ms,
            until_ms: now_ms + duration.as_millis() as u64,
            reason: reason.to_string(),
            offence,
            node: self.node.clone(),
        };
        tracing::warn!(%ip, reason = %ban.reason, secs = duration.as_secs(), offence,
            "source banned: its traffic is dropped unanswered");
        self.figures.bans.fetch_add(1, Ordering::Relaxed);
        self.install(ban.clone());
        if let Some(shared) = &self.shared {
            let _ = shared.send(NewBan {
                ban,
                base: self.config.ban,
            });
        }
    }

    /// The duration of a source's `offence`th ban.
    pub fn ban_time(&self, offence: u32) -> Duration {
        let doubled = self.config.ban.saturating_mul(
            1u32.checked_shl(offence.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        doubled.min(self.config.max_ban)
    }

    /// Puts a ban in force here (one of this node's, or another's through the store). The
    /// source's counts start afresh when it ends.
    pub fn install(&self, ban: Ban) {
        self.sources().remove(&ban.ip);
        let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
        let longer = bans.get(&ban.ip).is_none_or(|b| b.until_ms < ban.until_ms);
        if longer {
            bans.insert(ban.ip, ban);
        }
        self.any_ban.store(true, Ordering::Relaxed);
    }

    /// Lifts the ban of `ip` here; whether there was one.
    pub fn lift(&self, ip: IpAddr) -> bool {
        let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
        let lifted = bans.remove(&ip).is_some();
        self.any_ban.store(!bans.is_empty(), Ordering::Relaxed);
        lifted
    }

    /// Makes the bans in force those of `bans` (the store's list), keeping this node's own
    /// that the store may not have yet (made after `since_ms`).
    pub fn replace(&self, bans: Vec<Ban>, since_ms: u64) {
        let mut held = self.bans.write().unwrap_or_else(|p| p.into_inner());
        let now_ms = crate::unix_ms();
        held.retain(|_, b| b.until_ms > now_ms && b.node == self.node && b.at_ms >= since_ms);
        for ban in bans {
            if ban.until_ms > now_ms {
                held.insert(ban.ip, ban);
            }
        }
        self.any_ban.store(!held.is_empty(), Ordering::Relaxed);
    }

    /// The bans in force here, soonest to end first.
    pub fn bans(&self) -> Vec<Ban> {
        let now_ms = crate::unix_ms();
        let mut bans: Vec<Ban> = self
            .bans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|b| b.until_ms > now_ms)
            .cloned()
            .collect();
        bans.sort_by_key(|b| (b.until_ms, b.ip));
        bans
    }

    /// Forgets what has lapsed: ended bans, sources idle past every window.
    pub fn sweep(&self, now: Instant) {
        let now_ms = crate::unix_ms();
        {
            let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
            bans.retain(|_, b| b.until_ms > now_ms);
            self.any_ban.store(!bans.is_empty(), Ordering::Relaxed);
        }
        let idle = self.config.failure_window.max(Duration::from_secs(
            (f64::from(self.config.burst) / self.config.rate.max(0.001)).ceil() as u64,
        ));
        self.sources().retain(|_, s| {
            now.duration_since(s.seen) < idle || s.known_until.is_some_and(|k| k > now)
        });
        let memory = self.config.offence_memory.as_millis() as u64;
        self.offences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, last)| now_ms.saturating_sub(*last) <= memory);
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Source>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of `ip`, made when new (sources idle longest forgotten when there are too
    /// many).
    fn source<'a>(
        &self,
        sources: &'a mut HashMap<IpAddr, Source>,
        ip: IpAddr,
        now: Instant,
    ) -> &'a mut Source {
        if !sources.contains_key(&ip) && sources.len() >= self.config.max_sources {
            let cutoff = now.checked_sub(Duration::from_secs(2)).unwrap_or(now);
            sources.retain(|_, s| s.seen > cutoff);
            if sources.len() >= self.config.max_sources {
                sources.clear();
            }
        }
        let exempt = || self.exempt(ip);
        let source = sources.entry(ip).or_insert_with(|| Source {
            exempt: exempt(),
            tokens: f64::from(self.config.burst),
            throttled: 0,
            refilled: now,
            failures: 0,
            first_failure: now,
            known_until: None,
            seen: now,
        });
        source.seen = now;
        source
    }

    /// Trunks, media servers, the allowlist and loopback.
    fn exempt(&self, ip: IpAddr) -> bool {
        if self.config.exempt_loopback && ip.is_loopback() {
            return true;
        }
        if self.config.allow.iter().any(|&net| in_network(ip, net)) {
            return true;
        }
        let directory = self.directory.read().unwrap_or_else(|p| p.into_inner());
        directory.tenants().any(|t| {
            t.trunks.iter().any(|trunk| trunk.admits(ip))
                || t.media_servers.iter().any(|m| m.address.ip() == ip)
        })
    }
}

/// Starts the source's counts afresh when its window has passed.
fn restart_window(source: &mut Source, config: &DefenceConfig, now: Instant) {
    if now.duration_since(source.first_failure) > config.failure_window {
        source.failures = 0;
        source.throttled = 0;
        source.first_failure = now;
    }
}

/// Takes a token from `source`'s bucket, refilled for the time since; whether there was one.
fn take_token(source: &mut Source, config: &DefenceConfig, now: Instant) -> bool {
    let elapsed = now.duration_since(source.refilled).as_secs_f64();
    source.tokens = (source.tokens + elapsed * config.rate).min(f64::from(config.burst));
    source.refilled = now;
    if source.tokens >= 1.0 {
        source.tokens -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::demo_tenant;

    fn defence(config: DefenceConfig) -> Defence {
        let directory = Arc::new(Directory::new(&[demo_tenant()]).expect("demo"));
        Defence::new(config, "n1", directory, None)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_source_past_its_burst_is_dropped_and_banned_if_it_keeps_on() {
        let d = defence(DefenceConfig::default());
        let now = Instant::now();
        let scanner = ip("192.0.2.7");
        for _ in 0..16 {
            assert!(d.request(scanner, false, now));
        }
        assert!(!d.request(scanner, false, now), "the 17th at once");
        assert!(d.admits(scanner), "dropped, not banned yet");
        assert!(d.request(scanner, true, now), "credentials cost no token");
        for _ in 1..500 {
            assert!(!d.request(scanner, false, now));
        }
        assert!(!d.admits(scanner), "500 dropped: banned");
        assert!(d.admits(ip("192.0.2.8")), "another source");
        assert_eq!(d.bans()[0].reason, "flood");
        // The bucket refills at its rate.
        let other = ip("192.0.2.9");
        for _ in 0..16 {
            assert!(d.request(other, false, now));
        }
        assert!(d.request(other, false, now + Duration::from_millis(130)));
    }

    #[test]
    fn failures_ban_at_the_limit_and_repeat_offenders_longer() {
        let d = defence(DefenceConfig {
            max_failures: 3,
            ..DefenceConfig::default()
        });
        let now = Instant::now();
        let guesser = ip("198.51.100.1");
        d.failed(guesser, Failure::Credentials, now);
        d.failed(guesser, Failure::Credentials, now);
        assert!(d.admits(guesser));
        d.failed(guesser, Failure::Credentials, now);
        assert!(!d.admits(guesser));
        let first = d.bans()[0].clone();
        assert_eq!(
            (first.reason.as_str(), first.offence),
            ("failures (credentials)", 1)
        );
        assert!(d.lift(guesser));
        assert!(d.admits(guesser));
        for _ in 0..3 {
            d.failed(guesser, Failure::Credentials, now);
        }
        let second = d.bans()[0].clone();
        assert_eq!(second.offence, 2);
        assert_eq!(d.ban_time(1), Duration::from_secs(300));
        assert_eq!(d.ban_time(2), Duration::from_secs(600));
        assert_eq!(d.ban_time(40), Duration::from_secs(24 * 3600));
    }

    #[test]
    fn a_source_that_authenticated_pays_for_failures_only() {
        let d = defence(DefenceConfig::default());
        let now = Instant::now();
        let office = ip("203.0.113.5");
        assert!(d.request(office, false, now));
        d.authenticated(office, now);
        for _ in 0..1000 {
            assert!(
                d.request(office, false, now),
                "a hundred phones behind one NAT"
            );
        }
        for _ in 0..9 {
            d.failed(office, Failure::Credentials, now);
        }
        assert!(d.admits(office));
        d.failed(office, Failure::Credentials, now);
        assert!(!d.admits(office), "wrong guesses still count");
    }

    #[test]
    fn trunks_the_allowlist_and_loopback_are_exempt_unless_loopback_is_counted() {
        let d = defence(DefenceConfig {
            allow: vec![(ip("10.0.0.0"), 8)],
            ..DefenceConfig::default()
        });
        let now = Instant::now();
        // The demo tenant's trunk is 127.0.0.2; 10.1.2.3 is in the allowlist.
        for source in ["127.0.0.1", "10.1.2.3"] {
            for _ in 0..100 {
                assert!(d.request(ip(source), false, now), "{source}");
                d.failed(ip(source), Failure::Malformed, now);
            }
            assert!(d.admits(ip(source)));
        }
        let counted = defence(DefenceConfig {
            exempt_loopback: false,
            ..DefenceConfig::default()
        });
        let trunk = counted
            .directory
            .read()
            .expect("directory")
            .tenants()
            .flat_map(|t| t.trunks.iter())
            .map(|t| t.inbound[0].0)
            .next()
            .expect("the demo has a trunk");
        for _ in 0..100 {
            assert!(
                counted.request(trunk, false, now),
                "a trunk is never limited"
            );
        }
        for _ in 0..16 {
            assert!(counted.request(ip("127.0.0.9"), false, now));
        }
        assert!(!counted.request(ip("127.0.0.9"), false, now));
    }

    #[test]
    fn the_stores_list_replaces_others_bans_and_keeps_fresh_own_ones() {
        let d = defence(DefenceConfig::default());
        let now_ms = crate::unix_ms();
        let ban = |ip_: &str, node: &str| Ban {
            ip: ip(ip_),
            at_ms: now_ms,
            until_ms: now_ms + 60_000,
            reason: "flood".into(),
            offence: 1,
            node: node.into(),
        };
        d.install(ban("192.0.2.1", "n2"));
        d.install(ban("192.0.2.2", "n1"));
        d.replace(vec![ban("192.0.2.3", "n2")], now_ms);
        let held: Vec<IpAddr> = d.bans().iter().map(|b| b.ip).collect();
        assert!(held.contains(&ip("192.0.2.3")));
        assert!(held.contains(&ip("192.0.2.2")), "own, not stored yet");
        assert!(!held.contains(&ip("192.0.2.1")), "lifted elsewhere");
    }
}
