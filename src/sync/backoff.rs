//! Timing policy: exponential backoff with jitter per failing upstream, and the jittered polling
//! period.
//!
//! Owns the arithmetic only (pure functions of a failure count and a random fraction), so it is
//! tested exactly; callers own the clocks. Jitter spreads many mirrors' polls so a publisher's
//! host is not hit by all of them in the same second, and spreads retries after a shared outage.

use std::time::Duration;

use rand_core::RngCore as _;

/// Exponential backoff: `base`, `2 × base`, `4 × base`… up to `max`, each delay drawn uniformly
/// from its upper half (so retries never bunch at zero, yet still spread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failed rounds (≥ 1), for a random `fraction` in
    /// [0, 1).
    pub fn delay(&self, failures: u32, fraction: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let full = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(self.base.min(self.max));
        full.mul_f64(0.5 + 0.5 * fraction.clamp(0.0, 1.0))
    }
}

/// `period` moved by up to ±`spread` (a fraction such as 0.1) for a random `fraction` in [0, 1).
pub fn jittered(period: Duration, spread: f64, fraction: f64) -> Duration {
    let factor = 1.0 + spread * (2.0 * fraction.clamp(0.0, 1.0) - 1.0);
    period.mul_f64(factor.max(0.0))
}

/// A uniformly random fraction in [0, 1) from the OS generator (timing only, not secrets).
pub fn random_fraction() -> f64 {
    (rand_core::OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stays_in_the_upper_half() {
        let b = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        };
        assert_eq!(
            b.delay(1, 0.999_999),
            Duration::from_secs(10).mul_f64(0.9999995)
        );
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(10));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(20));
        assert_eq!(b.delay(4, 0.0), Duration::from_secs(30));
        assert_eq!(b.delay(50, 0.0), Duration::from_secs(30));
        assert!(b.delay(50, 0.99) <= Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(45));
    }

    #[test]
    fn interval_jitter_is_within_the_spread() {
        let p = Duration::from_secs(300);
        assert_eq!(jittered(p, 0.1, 0.0), Duration::from_secs(270));
        assert_eq!(jittered(p, 0.1, 0.5), p);
        assert!(jittered(p, 0.1, 0.999) < Duration::from_secs(330));
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
