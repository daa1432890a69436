//! When a job fires: its `schedule` (cron) or `every` (interval), in its `timezone` (by default
//! `[daemon]`'s), refused when malformed or when it could never fire. `schedule/` computes the
//! instants; this room only checks the keys that name them, for `job.rs`.

use std::ops::Range;

use chrono_tz::Tz;
use toml::Spanned;

use super::problems::Collector;
use crate::schedule::{self, CronTrigger, Trigger};
use crate::time::zone::parse_timezone;

/// A job's trigger keys as written.
pub(super) struct TriggerKeys<'a> {
    pub(super) schedule: Option<&'a Spanned<String>>,
    pub(super) every: Option<&'a Spanned<String>>,
    pub(super) timezone: Option<&'a Spanned<String>>,
    /// Where the job's `name` is: a missing trigger is reported there.
    pub(super) name_at: Range<usize>,
}

/// The trigger and zone of `label` (`default_zone` when it names none); each `None` when it is
/// refused, or for the zone when `[daemon]` was. Every problem is pushed to `c`: the zone's,
/// the trigger's, then whether it ever fires.
pub(super) fn when(
    keys: &TriggerKeys<'_>,
    default_zone: Option<Tz>,
    label: &str,
    c: &mut Collector<'_>,
) -> (Option<Trigger>, Option<Tz>) {
    let timezone = zone(keys.timezone, default_zone, label, c);
    let trigger = trigger(keys, label, c);
    if let (Some(trigger), Some(tz)) = (&trigger, timezone) {
        check_fires(trigger, tz, keys, label, c);
    }
    (trigger, timezone)
}

fn zone(
    zone: Option<&Spanned<String>>,
    default_zone: Option<Tz>,
    label: &str,
    c: &mut Collector<'_>,
) -> Option<Tz> {
    match zone {
        Some(tz) => match parse_timezone(tz.get_ref()) {
            Ok(tz) => Some(tz),
            Err(e) => {
                c.push(
                    format!("invalid `timezone` for {label}"),
                    Some(tz.span()),
                    e,
                );
                None
            }
        },
        None => default_zone,
    }
}

/// Exactly one of `schedule` and `every`, parsed.
fn trigger(keys: &TriggerKeys<'_>, label: &str, c: &mut Collector<'_>) -> Option<Trigger> {
    match (keys.schedule, keys.every) {
        (Some(_), Some(every)) => {
            c.push(
                format!("both `schedule` and `every` set for {label}"),
                Some(every.span()),
                "a job has exactly one trigger; keep `schedule` (cron) or `every` (interval)",
            );
            None
        }
        (None, None) => {
            c.push(
                format!("no trigger for {label}"),
                Some(keys.name_at.clone()),
                "add `schedule = \"<5-field cron>\"` or `every = \"10m\"`",
            );
            None
        }
        (Some(expr), None) => match CronTrigger::parse(expr.get_ref()) {
            Ok(t) => Some(Trigger::Cron(Box::new(t))),
            Err(e) => {
                c.push(
                    format!("invalid cron expression `{}` for {label}", expr.get_ref()),
                    Some(expr.span()),
                    e.0,
                );
                None
            }
        },
        (None, Some(every)) => match schedule::parse_every(every.get_ref()) {
            Ok(d) => Some(Trigger::Every(d)),
            Err(e) => {
                c.push(
                    format!("invalid `every` interval `{}` for {label}", every.get_ref()),
                    Some(every.span()),
                    e.0,
                );
                None
            }
        },
    }
}

/// Refuses a trigger with no next fire after now, in zone `tz`.
fn check_fires(
    trigger: &Trigger,
    tz: Tz,
    keys: &TriggerKeys<'_>,
    label: &str,
    c: &mut Collector<'_>,
) {
    if trigger.next_after(chrono::Utc::now(), tz).is_some() {
        return;
    }
    match (keys.schedule, keys.every) {
        (Some(expr), _) => c.push(
            format!(
                "cron expression `{}` for {label} never fires",
                expr.get_ref()
            ),
            Some(expr.span()),
            "no date matches it (e.g. February 30th); fix the day-of-month or month",
        ),
        // Unreachable while `parse_every` caps intervals at `time::duration::LONGEST`; kept so
        // that a daemon is never handed a trigger it cannot compute, whatever the cap.
        (None, Some(every)) => c.push(
            format!(
                "`every` interval `{}` for {label} never fires",
                every.get_ref()
            ),
            Some(every.span()),
            format!(
                "its next fire lies beyond the last instant tickler can compute; use at \
                 most `{}`",
                crate::time::duration::LONGEST_TEXT
            ),
        ),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn a_job_without_a_trigger_is_refused() {
        assert_eq!(
            errors("[[job]]\nname = \"x\"\nkind = \"noop\"\n"),
            "no trigger for job `x` (config.toml line 2, column 8): add `schedule = \"<5-field \
             cron>\"` or `every = \"10m\"`"
        );
    }

    #[test]
    fn never_firing_expressions_are_refused() {
        assert_eq!(
            errors("[[job]]\nname = \"x\"\nkind = \"noop\"\nschedule = \"0 0 30 2 *\"\n"),
            "cron expression `0 0 30 2 *` for job `x` never fires (config.toml line 4, column \
             12): no date matches it (e.g. February 30th); fix the day-of-month or month"
        );
    }
}
