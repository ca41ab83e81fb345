//! Lock-out against password guessing: after `max_failures` failed logins within `window`,
//! a login, or an address, is refused for `lock_for`, whatever is typed. The state is kept
//! in the database (a restart or another node does not reset it); this is the rule.

use chrono::{DateTime, Utc};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max_failures: u32,
    pub window: Duration,
    pub lock_for: Duration,
}

/// Failures counted for one key (`login:…` or `addr:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    /// The first failure of the current window.
    pub since: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Failures {
    /// Whether the key is locked at `now`.
    pub fn locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// The state after one more failure at `now`. A window that has run out, or a lock
    /// that has, starts the count again; reaching the limit locks.
    pub fn after_failure(prev: Option<&Failures>, now: DateTime<Utc>, limit: Limit) -> Failures {
        let window = chrono::Duration::from_std(limit.window).unwrap_or(chrono::Duration::MAX);
        let fresh = match prev {
            None => true,
            Some(p) => {
                p.locked_until.is_some_and(|t| now >= t)
                    || (p.locked_until.is_none() && now - p.since > window)
            }
        };
        let (count, since) = match prev {
            Some(p) if !fresh => (p.count.saturating_add(1), p.since),
            _ => (1, now),
        };
        let locked_until = if count >= limit.max_failures {
            Some(now + chrono::Duration::from_std(limit.lock_for).unwrap_or(chrono::Duration::MAX))
        } else {
            None
        };
        Failures {
            count,
            since,
            locked_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        max_failures: 3,
        window: Duration::from_secs(600),
        lock_for: Duration::from_secs(900),
    };

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn the_limit_within_the_window_locks_for_the_lock_time() {
        let a = Failures::after_failure(None, at(0), LIMIT);
        let b = Failures::after_failure(Some(&a), at(10), LIMIT);
        assert!(!b.locked(at(10)));
        let c = Failures::after_failure(Some(&b), at(20), LIMIT);
        assert!(c.locked(at(20)));
        assert!(c.locked(at(919)));
        assert!(!c.locked(at(920)));
        // After the lock a failure counts from one again.
        let d = Failures::after_failure(Some(&c), at(921), LIMIT);
        assert_eq!((d.count, d.locked_until), (1, None));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let mut f = Failures::after_failure(None, at(0), LIMIT);
        for s in [400, 800, 1200, 1600] {
            f = Failures::after_failure(Some(&f), at(s), LIMIT);
            assert!(!f.locked(at(s)), "at {s}: {f:?}");
        }
    }
}
