//! One way to wait and try again (DESIGN.md "Jobs and tasks"): a failed run's [`RetryPolicy`], the
//! doubling [`Backoff`] between tries, and the two ways of waiting for a database that is away:
//! [`until_done`] for a write that must not be lost (the ledger, message records, alert claims),
//! [`patiently`] for a read or claim that may give up after a while (alerts). What counts as
//! "away or busy" is the error's to say ([`Transient`]); the store says it for its errors.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// An error that may go away if the same thing is tried again (a database restarting, a full
/// pool, a lock), as opposed to one refused outright.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// How a failed run is attempted again (seed 001: 3 attempts, 1 s, factor 2, max 10 s, jitter).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included; 1 means no retry.
    pub attempts: u32,
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    /// Randomize each delay between half and the whole of its computed value.
    pub jitter: bool,
}

impl RetryPolicy {
    /// The delay before attempt `next_attempt` (2 for the first retry).
    pub fn delay_before(&self, next_attempt: u32) -> Duration {
        let exp = self.factor.powi(next_attempt.saturating_sub(2) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let secs = if self.jitter {
            secs * (0.5 + fastrand::f64() * 0.5)
        } else {
            secs
        };
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// A delay that doubles after each try, up to a bound.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { next: first, max }
    }

    /// The delay to wait now; the one after it is twice as long, at most the bound.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// The delay [`Backoff::next_delay`] would give, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }
}

/// Sleeps `d`, or less if `stop` is cancelled meanwhile.
pub async fn sleep_unless(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}

/// Retries a database write with backoff (0.1 s doubling to 5 s) until it succeeds or
/// `give_up` is cancelled. The first failure is logged, then one line every 30 s, and the
/// recovery.
pub async fn until_done<T, E, F, Fut>(
    doing: &str,
    give_up: &CancellationToken,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Transient + fmt::Display,
{
    let start = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut logged: Option<tokio::time::Instant> = None;
    let mut refused = 0;
    loop {
        match f().await {
            Ok(v) => {
                if logged.is_some() {
                    tracing::info!(
                        "{doing} succeeded again after {:.1}s",
                        start.elapsed().as_secs_f64()
                    );
                }
                return Some(v);
            }
            Err(e) if give_up.is_cancelled() => {
                tracing::error!(error = %e, "{doing} failed; giving up (shutting down)");
                return None;
            }
            Err(e) if !e.is_transient() => {
                refused += 1;
                if refused >= 3 {
                    tracing::error!(error = %e, "{doing} failed; the database refuses it, giving up");
                    return None;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                if logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                    tracing::warn!(
                        error = %e, waited_s = start.elapsed().as_secs(),
                        "{doing} failed; retrying with backoff until the database is back"
                    );
                    logged = Some(tokio::time::Instant::now());
                }
                sleep_unless(backoff.next_delay(), give_up).await;
            }
        }
    }
}

/// Tries `f` until it succeeds or fails for good: while its error is transient it tries again,
/// 1 s doubling to 30 s apart, for up to `within`; `stop` ends the wait (the last error is
/// returned).
pub async fn patiently<T, E, F, Fut>(
    stop: &CancellationToken,
    within: Duration,
    mut f: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Transient,
{
    let give_up = std::time::Instant::now() + within;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        match f().await {
            Err(e)
                if e.is_transient()
                    && !stop.is_cancelled()
                    && std::time::Instant::now() + backoff.peek() < give_up =>
            {
                sleep_unless(backoff.next_delay(), stop).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_follow_seed_001() {
        let p = RetryPolicy {
            attempts: 3,
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(10),
            jitter: false,
        };
        let delays: Vec<u64> = (2..=6).map(|a| p.delay_before(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10]);
        let jittered = RetryPolicy { jitter: true, ..p };
        for _ in 0..100 {
            let d = jittered.delay_before(3);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }
}
