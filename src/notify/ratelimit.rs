//! Per-channel pacing: at most `concurrency` sends in flight, started at most `rate` per
//! second (evenly spaced), so a provider's limit (Twilio's messages per second, an SMTP relay's
//! hourly quota) is respected by every job sharing the channel.

use std::time::Duration;

use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Why a configured `rate_limit` is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// Negative, or outside what a provider can be paced at (the value found).
    #[error("`rate_limit` must be 0 (no limit) or 0.001-100000 messages per second (found {0})")]
    OutOfRange(f64),
}

/// Checks a configured rate: 0 (no limit) or 0.001-100000 messages per second.
pub fn check(rate: f64) -> Result<(), RateLimitError> {
    if rate == 0.0 || (0.001..=100_000.0).contains(&rate) {
        Ok(())
    } else {
        Err(RateLimitError::OutOfRange(rate))
    }
}

pub struct RateLimiter {
    /// Time between two starts; zero when unlimited.
    spacing: Duration,
    next: Mutex<Option<Instant>>,
    slots: Semaphore,
}

impl RateLimiter {
    /// `rate` is messages per second (0: unlimited).
    pub fn new(rate: f64, concurrency: usize) -> RateLimiter {
        let spacing = if rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::ZERO
        };
        RateLimiter {
            spacing,
            next: Mutex::new(None),
            slots: Semaphore::new(concurrency.max(1)),
        }
    }

    /// Waits for a free slot and for the next start time; the permit frees the slot.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        if !self.spacing.is_zero() {
            let start = {
                let mut next = self.next.lock().await;
                let now = Instant::now();
                let start = next.map_or(now, |n| n.max(now));
                *next = Some(start + self.spacing);
                start
            };
            tokio::time::sleep_until(start).await;
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_out_of_range_are_refused() {
        assert!(check(0.0).is_ok() && check(0.001).is_ok() && check(100_000.0).is_ok());
        for (rate, found) in [(-1.0, "-1"), (0.0001, "0.0001"), (200_000.0, "200000")] {
            assert_eq!(
                check(rate).unwrap_err().to_string(),
                format!(
                    "`rate_limit` must be 0 (no limit) or 0.001-100000 messages per second \
                     (found {found})"
                )
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced_by_the_rate() {
        let limiter = RateLimiter::new(10.0, 100);
        let t0 = Instant::now();
        let mut starts = vec![];
        for _ in 0..5 {
            let _p = limiter.acquire().await;
            starts.push(Instant::now() - t0);
        }
        assert_eq!(starts[0], Duration::ZERO);
        assert_eq!(starts[4], Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_does_not_wait() {
        let limiter = RateLimiter::new(0.0, 2);
        let t0 = Instant::now();
        for _ in 0..100 {
            let _p = limiter.acquire().await;
        }
        assert_eq!(Instant::now() - t0, Duration::ZERO);
    }
}
