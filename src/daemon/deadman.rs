//! The dead-man rule: when a job with `expect_success_within` is overdue. One pure function,
//! below the alerts, `/metrics` and the overview that all judge by it (so none of them imports
//! another for it).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// When a job with `expect_success_within` is overdue unless it succeeds (or ends `partial`)
/// first: `within` after its last success; without one, after the earlier of its first ended
/// run and when this daemon first knew it. `None` with no reference at all (a job that never
/// ran, read by a process that does not watch it). The dead-man check, `/metrics` and the
/// overview all judge by this one rule.
pub fn success_due(
    last_success: Option<DateTime<Utc>>,
    first_ended: Option<DateTime<Utc>>,
    known_since: Option<DateTime<Utc>>,
    within: Duration,
) -> Option<DateTime<Utc>> {
    let reference = last_success.or(match (first_ended, known_since) {
        (Some(f), Some(k)) => Some(f.min(k)),
        (f, k) => f.or(k),
    })?;
    reference.checked_add_signed(TimeDelta::from_std(within).unwrap_or(TimeDelta::MAX))
}
