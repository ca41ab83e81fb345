//! Defences against SIP scanners: a per-source request rate limit and the lock-out of
//! addresses that keep failing digest authentication.
//!
//! Both are plain structs driven with an explicit `now`, owned by exactly one task (the UDP
//! receive loop owns the rate limiter, the SIP core owns the lock-out), so no locks are needed
//! and tests run in simulated time.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Whether `ip` is in one of the trusted networks (exempt from rate limits on every transport).
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// A token bucket: `rate` tokens a second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: burst as f64,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-source-address rate limit. Trusted networks (the carrier's SBC) are exempt.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u32,
    burst: u32,
    trusted: Vec<IpNet>,
    buckets: HashMap<IpAddr, TokenBucket>,
    /// Bounds memory under a spoofed-source flood; when full, idle buckets are swept.
    max_sources: usize,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32, trusted: Vec<IpNet>) -> Self {
        RateLimiter {
            rate,
            burst,
            trusted,
            buckets: HashMap::new(),
            max_sources: 100_000,
        }
    }

    /// Whether a request from `ip` may be processed now.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if is_trusted(&self.trusted, ip) {
            return true;
        }
        if self.buckets.len() >= self.max_sources && !self.buckets.contains_key(&ip) {
            self.sweep(now);
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(burst, now))
            .take(rate, burst, now)
    }

    /// Forgets sources whose bucket has refilled: they are indistinguishable from new ones.
    pub fn sweep(&mut self, now: Instant) {
        let full = Duration::from_secs_f64(self.burst as f64 / self.rate.max(1) as f64);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < full);
    }

    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Locks out an address after `max_failures` failed authentications in a row.
///
/// Failures older than the lock-out period are forgotten, a success resets the count, and
/// while locked every REGISTER from the address is refused without a challenge, so a scanner
/// learns nothing and cannot keep guessing.
#[derive(Debug)]
pub struct AuthLockout {
    max_failures: u32,
    lockout: Duration,
    entries: HashMap<IpAddr, Failures>,
}

impl AuthLockout {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        AuthLockout {
            max_failures,
            lockout,
            entries: HashMap::new(),
        }
    }

    pub fn is_locked(&self, ip: IpAddr, now: Instant) -> bool {
        matches!(self.entries.get(&ip), Some(Failures { locked_until: Some(t), .. }) if *t > now)
    }

    /// Records a failure; returns true when this failure locks the address out.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        let lockout = self.lockout;
        let e = self.entries.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if now.saturating_duration_since(e.last) > lockout
            || e.locked_until.is_some_and(|t| t <= now)
        {
            e.count = 0;
            e.locked_until = None;
        }
        e.count += 1;
        e.last = now;
        if e.count >= self.max_failures && e.locked_until.is_none() {
            e.locked_until = Some(now + lockout);
            return true;
        }
        false
    }

    pub fn record_success(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }

    /// Drops entries that no longer matter.
    pub fn sweep(&mut self, now: Instant) {
        let lockout = self.lockout;
        self.entries.retain(|_, e| match e.locked_until {
            Some(t) => t > now,
            None => now.saturating_duration_since(e.last) <= lockout,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, vec![]);
        let a = ip("198.51.100.1");
        assert_eq!((0..8).filter(|_| rl.allow(a, t0)).count(), 5);
        // 0.5 s later five more tokens have arrived.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..8).filter(|_| rl.allow(a, t1)).count(), 5);
        // Another source is not affected.
        assert!(rl.allow(ip("198.51.100.2"), t1));
    }

    #[test]
    fn trusted_sources_are_exempt_and_sweep_forgets() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(1, 1, vec!["10.0.0.0/8".parse().unwrap()]);
        assert!((0..1000).all(|_| rl.allow(ip("10.1.2.3"), t0)));
        assert!(rl.allow(ip("192.0.2.1"), t0));
        assert!(!rl.allow(ip("192.0.2.1"), t0));
        assert_eq!(rl.tracked_sources(), 1);
        rl.sweep(t0 + Duration::from_secs(5));
        assert_eq!(rl.tracked_sources(), 0);
    }

    #[test]
    fn lockout_after_n_failures_expires_after_m() {
        let t0 = Instant::now();
        let mut lo = AuthLockout::new(3, Duration::from_secs(600));
        let a = ip("203.0.113.9");
        assert!(!lo.record_failure(a, t0));
        assert!(!lo.record_failure(a, t0));
        assert!(!lo.is_locked(a, t0));
        assert!(lo.record_failure(a, t0));
        assert!(lo.is_locked(a, t0 + Duration::from_secs(599)));
        assert!(!lo.is_locked(ip("203.0.113.10"), t0));
        assert!(!lo.is_locked(a, t0 + Duration::from_secs(601)));
        // After expiry the count starts again.
        assert!(!lo.record_failure(a, t0 + Duration::from_secs(602)));
    }

    #[test]
    fn success_resets_and_old_failures_are_forgotten() {
        let t0 = Instant::now();
        let mut lo = AuthLockout::new(2, Duration::from_secs(60));
        let a = ip("203.0.113.9");
        lo.record_failure(a, t0);
        lo.record_success(a);
        assert!(!lo.record_failure(a, t0));
        assert!(!lo.record_failure(a, t0 + Duration::from_secs(120)));
        lo.sweep(t0 + Duration::from_secs(500));
        assert!(lo.entries.is_empty());
    }
}
