//! A leaf every box may use: the clock the timer loop and the queue runner read, how long either
//! may sleep before reading it again, a sleep that wakes the process once (`Alarm`), the one
//! reader of human durations (with the longest span tickler computes with), and IANA zone
//! names.

use std::time::Duration;

pub mod alarm;
pub mod calendar;
pub mod clock;
pub mod duration;
pub mod zone;

pub use alarm::Alarm;
pub use clock::{Clock, ManualClock, SystemClock};

/// The longest a loop sleeps without reading the wall clock again (DESIGN.md invariant 1), so
/// a step of the clock (NTP, a resumed VM) is noticed within it. An idle timer loop keeps it
/// through the daemon's beat, which wakes it, its own timer then a longer backstop
/// (`daemon::timer::idle_cap`).
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
