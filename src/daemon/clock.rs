//! The wall clock the timer loop reads, behind a trait so tests drive time by hand: they step
//! it forward, jump it, or move it back, and the loop reacts without any real sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::jobs::BoxFuture;

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
