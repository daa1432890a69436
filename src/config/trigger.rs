//! When a job fires: its `schedule` (cron, or `@last_business_day HH:MM`) or `every`
//! (interval), in its `timezone` (by default `[daemon]`'s), on the business days of its
//! `calendar` with `on_holiday`, refused when malformed or when it could never fire.
//! `schedule/` computes the instants; this room only checks the keys that name them, for
//! `job.rs`.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono_tz::Tz;
use toml::Spanned;

use super::problems::Collector;
use super::problems::quoted;
use crate::schedule::{self, BusinessDayOfMonth, CronTrigger, NamedCalendar, OnHoliday, Trigger};
use crate::time::zone::parse_timezone;

/// A job's trigger keys as written.
pub(super) struct TriggerKeys<'a> {
    pub(super) schedule: Option<&'a Spanned<String>>,
    pub(super) every: Option<&'a Spanned<String>>,
    pub(super) timezone: Option<&'a Spanned<String>>,
    pub(super) calendar: Option<&'a Spanned<String>>,
    pub(super) on_holiday: Option<&'a Spanned<String>>,
    /// Where the job's `name` is: a missing trigger is reported there.
    pub(super) name_at: Range<usize>,
}

/// The trigger and zone of `label` (`default_zone` when it names none); each `None` when it is
/// refused, or for the zone when `[daemon]` was. Every problem is pushed to `c`: the zone's,
/// the trigger's, then whether it ever fires.
pub(super) fn when(
    keys: &TriggerKeys<'_>,
    default_zone: Option<Tz>,
    calendars: &BTreeMap<String, NamedCalendar>,
    label: &str,
    c: &mut Collector<'_>,
) -> (Option<Trigger>, Option<Tz>) {
    let timezone = zone(keys.timezone, default_zone, label, c);
    let trigger = on_calendar(keys, calendars, label, c);
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

/// The trigger read against the job's `calendar` and `on_holiday`, when it names one.
fn on_calendar(
    keys: &TriggerKeys<'_>,
    calendars: &BTreeMap<String, NamedCalendar>,
    label: &str,
    c: &mut Collector<'_>,
) -> Option<Trigger> {
    let calendar = match keys.calendar {
        None => None,
        Some(name) => match calendars.get(name.get_ref()) {
            Some(cal) => Some(cal.clone()),
            None => {
                let name = name.get_ref();
                let detail = if calendars.is_empty() {
                    format!("add a `[calendars.{name}]` section with its `days` and `holidays`")
                } else {
                    let known: Vec<&str> = calendars.keys().map(String::as_str).collect();
                    format!("add `[calendars.{name}]`, or use one of {}", quoted(&known))
                };
                c.push(
                    format!("unknown calendar `{name}` for {label}"),
                    Some(keys.calendar?.span()),
                    detail,
                );
                // The schedule's own problems still show (a month-end one needs the calendar).
                let month_day = keys
                    .schedule
                    .is_some_and(|e| BusinessDayOfMonth::parse(e.get_ref()).is_some());
                if !month_day {
                    trigger(keys, label, c);
                }
                return None;
            }
        },
    };
    let on_holiday = match keys.on_holiday {
        None => None,
        Some(text) => match OnHoliday::parse(text.get_ref()) {
            Some(h) => Some((h, text.span())),
            None => {
                c.push(
                    format!("invalid `on_holiday` for {label}"),
                    Some(text.span()),
                    format!(
                        "expected one of {} (found `{}`)",
                        quoted(&OnHoliday::NAMES),
                        text.get_ref()
                    ),
                );
                return None;
            }
        },
    };
    let month_day = keys
        .schedule
        .and_then(|expr| Some((expr, BusinessDayOfMonth::parse(expr.get_ref())?)));
    if let Some((expr, parsed)) = month_day {
        let (which, time) = match parsed {
            Ok(t) => t,
            Err(e) => {
                c.push(
                    format!("invalid schedule `{}` for {label}", expr.get_ref()),
                    Some(expr.span()),
                    e.0,
                );
                return None;
            }
        };
        let head = expr.get_ref().split_whitespace().next().unwrap_or_default();
        let Some(calendar) = calendar else {
            c.push(
                format!(
                    "schedule `{}` for {label} needs a `calendar`",
                    expr.get_ref()
                ),
                Some(expr.span()),
                "it fires on a business day of each month, which a calendar defines; add \
                 `calendar = \"NAME\"` naming a `[calendars.NAME]` section",
            );
            return None;
        };
        if let Some((_, at)) = on_holiday {
            c.push(
                format!("invalid `on_holiday` for {label}"),
                Some(at),
                format!("`{head}` always fires on a business day; remove `on_holiday`"),
            );
            return None;
        }
        // Refuse `every` alongside, as for any other schedule.
        return trigger_keys_ok(keys, label, c)
            .then(|| BusinessDayOfMonth::trigger(which, time, calendar));
    }
    let base = trigger(keys, label, c)?;
    match (calendar, on_holiday) {
        (None, None) => Some(base),
        (None, Some((_, at))) => {
            c.push(
                format!("`on_holiday` without `calendar` for {label}"),
                Some(at),
                "`on_holiday` says what becomes of a fire on a day that is no business day of \
                 the job's `calendar`; add `calendar = \"NAME\"` naming a `[calendars.NAME]` \
                 section, or remove `on_holiday`",
            );
            None
        }
        (Some(calendar), on_holiday) => {
            let mode = on_holiday.as_ref().map_or(OnHoliday::Skip, |(h, _)| *h);
            match base.on_calendar(calendar, mode) {
                Ok(t) => Some(t),
                Err(e) => {
                    c.push(
                        format!("invalid `on_holiday` for {label}"),
                        on_holiday.map(|(_, at)| at),
                        e.0,
                    );
                    None
                }
            }
        }
    }
}

/// Whether `schedule` and `every` are not both set (reported when they are).
fn trigger_keys_ok(keys: &TriggerKeys<'_>, label: &str, c: &mut Collector<'_>) -> bool {
    match (keys.schedule, keys.every) {
        (Some(_), Some(every)) => {
            c.push(
                format!("both `schedule` and `every` set for {label}"),
                Some(every.span()),
                "a job has exactly one trigger; keep `schedule` (cron) or `every` (interval)",
            );
            false
        }
        _ => true,
    }
}

/// Exactly one of `schedule` and `every`, parsed.
fn trigger(keys: &TriggerKeys<'_>, label: &str, c: &mut Collector<'_>) -> Option<Trigger> {
    if !trigger_keys_ok(keys, label, c) {
        return None;
    }
    match (keys.schedule, keys.every) {
        (Some(_), Some(_)) => None,
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
    if let (Some(calendar), Trigger::OnCalendar(_) | Trigger::BusinessDayOfMonth(_)) =
        (keys.calendar, trigger)
    {
        let (what, at) = match (keys.schedule, keys.every) {
            (Some(expr), _) => (format!("cron expression `{}`", expr.get_ref()), expr.span()),
            (None, Some(every)) => (
                format!("`every` interval `{}`", every.get_ref()),
                every.span(),
            ),
            (None, None) => return,
        };
        c.push(
            format!(
                "{what} for {label} never fires on calendar `{}`",
                calendar.get_ref()
            ),
            Some(at),
            "none of its fires falls on a business day of the calendar and `on_holiday` is \
             `skip`; change the schedule or the calendar's `days`",
        );
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
