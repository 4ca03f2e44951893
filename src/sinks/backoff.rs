//! How long a forwarder waits before it tries a failed batch again.
//!
//! "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"):
//! the n-th consecutive retry (n = 0, 1, ...) waits a uniformly random time
//! in `[0, min(cap, base * 2^n))`. With the defaults (0.5 s doubling to
//! 5 min, promtail's and Alloy's numbers) the ceiling reaches the cap at the
//! tenth retry and stays there: retries never give up, the ring is the
//! buffer. Jitter spreads the retries of many hosts after a shared outage,
//! so a recovering backend is not hit by all of them at once.
//!
//! A server's `Retry-After` is honoured as a floor: the wait is the larger
//! of the jittered delay and what the server asked for, the latter capped
//! at [`MAX_RETRY_AFTER`] so a broken header cannot stall a forwarder for
//! days.
//!
//! [`full_jitter`] is a pure function of the attempt and a number in
//! `[0, 1)`; [`Backoff`] keeps the attempt count and takes its randomness
//! from a [`Jitter`], so tests inject a fixed sequence.

use std::time::Duration;

/// The longest `Retry-After` a forwarder honours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The shape of the backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The ceiling of the first retry's wait.
    pub base: Duration,
    /// The largest ceiling; later retries stay there.
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
        }
    }
}

/// The ceiling of retry number `attempt` (0-based): `min(cap, base * 2^attempt)`.
pub fn ceiling(policy: &BackoffPolicy, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    policy
        .base
        .checked_mul(factor)
        .map_or(policy.cap, |d| d.min(policy.cap))
}

/// The wait before retry number `attempt`: `unit` (in `[0, 1)`; clamped to
/// that range) times [`ceiling`].
pub fn full_jitter(policy: &BackoffPolicy, attempt: u32, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling(policy, attempt).mul_f64(unit)
}

/// A source of numbers in `[0, 1)`.
pub trait Jitter {
    fn unit(&mut self) -> f64;
}

impl Jitter for fastrand::Rng {
    fn unit(&mut self) -> f64 {
        self.f64()
    }
}

/// A fixed sequence, repeated: for tests.
impl<const N: usize> Jitter for ([f64; N], usize) {
    fn unit(&mut self) -> f64 {
        let v = self.0[self.1 % N];
        self.1 += 1;
        v
    }
}

/// Consecutive failures of one forwarder.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The shape, fixed at construction.
    policy: BackoffPolicy,
    /// Retries since the last success; [`Backoff::next_delay`] counts up,
    /// [`Backoff::reset`] sets it back to 0.
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// The wait before the next retry, counting this failure. `retry_after`
    /// is the server's `Retry-After`, if it sent one.
    pub fn next_delay(
        &mut self,
        retry_after: Option<Duration>,
        jitter: &mut impl Jitter,
    ) -> Duration {
        let wait = full_jitter(&self.policy, self.attempt, jitter.unit());
        self.attempt = self.attempt.saturating_add(1);
        match retry_after {
            Some(asked) => wait.max(asked.min(MAX_RETRY_AFTER)),
            None => wait,
        }
    }

    /// A batch went through: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_to_the_cap() {
        let p = BackoffPolicy::default();
        let ms = |a| ceiling(&p, a).as_millis();
        assert_eq!(ms(0), 500);
        assert_eq!(ms(1), 1000);
        assert_eq!(ms(9), 256_000);
        assert_eq!(ms(10), 300_000);
        assert_eq!(ms(40), 300_000);
        assert_eq!(ms(u32::MAX), 300_000);
    }

    #[test]
    fn jitter_scales_the_ceiling() {
        let p = BackoffPolicy::default();
        assert_eq!(full_jitter(&p, 0, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(&p, 1, 0.5), Duration::from_millis(500));
        assert_eq!(full_jitter(&p, 3, 0.25), Duration::from_secs(1));
        // Out-of-range numbers are clamped, never a panic.
        assert_eq!(full_jitter(&p, 0, 7.0), Duration::from_millis(500));
        assert_eq!(full_jitter(&p, 0, -1.0), Duration::ZERO);
        assert_eq!(full_jitter(&p, 0, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn backoff_counts_and_honours_retry_after() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let mut half = ([0.5], 0);
        assert_eq!(b.next_delay(None, &mut half), Duration::from_millis(250));
        assert_eq!(b.next_delay(None, &mut half), Duration::from_millis(500));
        assert_eq!(b.attempt(), 2);
        // The server's wish wins when it is longer ...
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(30)), &mut half),
            Duration::from_secs(30)
        );
        // ... but not beyond the limit.
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(1 << 40)), &mut half),
            MAX_RETRY_AFTER
        );
        b.reset();
        assert_eq!(b.next_delay(None, &mut half), Duration::from_millis(250));
    }

    #[test]
    fn real_randomness_stays_under_the_ceiling() {
        let p = BackoffPolicy::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 0..20 {
            let d = full_jitter(&p, attempt, rng.unit());
            assert!(d <= ceiling(&p, attempt));
        }
    }
}
