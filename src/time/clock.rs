//! The wall clock the timer loop reads, behind a trait so tests drive time by hand: they step
//! it forward, jump it, or move it back, and the loop reacts without any real sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// Time elapsed on a clock that never jumps (and does not count a VM's suspension).
    fn monotonic(&self) -> Duration;
    /// Waits until the wall clock reads `until`, or at most `max`; the loop then reads the
    /// clock again, so a step of the wall clock is noticed within `max`.
    fn sleep_until(&self, until: DateTime<Utc>, max: Duration) -> BoxFuture<'_, ()>;
}

/// The system clock.
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep_until(&self, until: DateTime<Utc>, max: Duration) -> BoxFuture<'_, ()> {
        let wait = (until - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(max);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock moved by hand, for tests.
pub struct ManualClock {
    state: Mutex<(DateTime<Utc>, Duration)>,
    changed: watch::Sender<u64>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            state: Mutex::new((start, Duration::ZERO)),
            changed: watch::Sender::new(0),
        }
    }

    fn update(&self, f: impl FnOnce(&mut (DateTime<Utc>, Duration))) {
        f(&mut self.state.lock().expect("clock lock"));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Time passes normally: wall and monotonic clocks both move by `d`.
    pub fn advance(&self, d: Duration) {
        self.update(|(wall, mono)| {
            *wall += d;
            *mono += d;
        });
    }

    /// The wall clock is stepped (NTP, a VM resume) by `d`, forward or back; no time passes.
    pub fn step_wall(&self, d: chrono::TimeDelta) {
        self.update(|(wall, _)| *wall += d);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.lock().expect("clock lock").0
    }
    fn monotonic(&self) -> Duration {
        self.state.lock().expect("clock lock").1
    }
    fn sleep_until(&self, until: DateTime<Utc>, _max: Duration) -> BoxFuture<'_, ()> {
        let mut rx = self.changed.subscribe();
        Box::pin(async move {
            // Any change wakes the loop, which reads the clock again (as a real 30 s cap would).
            if self.now() < until {
                let _ = rx.changed().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_system_clock_never_sleeps_past_the_cap() {
        let clock = SystemClock::default();
        let start = tokio::time::Instant::now();
        clock
            .sleep_until(
                Utc::now() + chrono::TimeDelta::hours(6),
                Duration::from_secs(30),
            )
            .await;
        // Paused tokio time advances exactly as far as the sleep asked: 30 s, not 6 h.
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn the_manual_clock_wakes_sleepers_when_moved() {
        let clock = std::sync::Arc::new(ManualClock::new(Utc::now()));
        let target = clock.now() + chrono::TimeDelta::minutes(1);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(target, Duration::from_secs(30)).await })
        };
        clock.advance(Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now(), target);
        clock.step_wall(chrono::TimeDelta::minutes(-5));
        assert_eq!(
            clock.monotonic(),
            Duration::from_secs(60),
            "a step does not pass time"
        );
    }
}
