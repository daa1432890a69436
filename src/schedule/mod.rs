//! Triggers: when a job fires. A trigger turns "the last slot" into "the next slot" as an
//! instant in UTC, evaluating cron expressions on the wall clock of the job's IANA zone.
//!
//! Two rules cover daylight-saving changes (DESIGN.md invariant 1):
//! - a *fixed-time* expression (its hour field is not a wildcard: `30 2 * * *`, `0 9,17 * * 1-5`)
//!   fires once on every matching local date. A wall time skipped by a spring-forward gap fires
//!   at the first instant after the gap; a wall time repeated by a fall-back fires at its first
//!   pass only.
//! - a *wildcard-hour* expression (`*/15 * * * *`, `0 * * * *`) follows elapsed time: it fires in
//!   both passes of a repeated hour and not at all in a skipped one.
//!
//! `every = "10m"` intervals are anchored to the Unix epoch, so every replica and every restart
//! agrees on the slots.
//!
//! A job with a `calendar` wraps its trigger in `business.rs`: fires on days that are no
//! business day are dropped or moved, and `@last_business_day HH:MM` fires at month ends.

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, CronComponent};

use crate::time::duration::{LONGEST, LONGEST_SECS, LONGEST_TEXT};

mod business;

pub use business::{BusinessDayOfMonth, NamedCalendar, OnCalendar, OnHoliday, Which};

/// Why an expression or interval was refused; the text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

/// When a job fires.
#[derive(Clone)]
pub enum Trigger {
    Cron(Box<CronTrigger>),
    Every(Duration),
    /// A cron or interval trigger read against a business-day calendar.
    OnCalendar(Box<OnCalendar>),
    /// `@last_business_day HH:MM` / `@first_business_day HH:MM`.
    BusinessDayOfMonth(Box<BusinessDayOfMonth>),
}

/// A 5-field crontab expression (or an `@nickname`), checked by parsing it. It holds the
/// expression alone: croner's parsed pattern is made again when a fire is worked out (see
/// [`with_pattern`]).
#[derive(Clone)]
pub struct CronTrigger {
    /// As written, trimmed.
    expr: String,
    fixed_time: bool,
}

/// The parser of the expressions as they are written: 5 fields, no seconds and no year.
fn written_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// croner's pattern for `body`, a 5-field expression croner accepts, as [`written_parser`]
/// makes it, in an eighth of the time.
///
/// croner gives every pattern a table of the years 1 to 5000, one byte each, and fills it bit
/// by bit from the `*` of the year field tickler has not: 5 KB, and 16-20 µs a parse where a
/// parse with one year takes 2.2-2.4 (croner 4.0.3, a loop over 50,000 yearly expressions).
/// Held by each job, the patterns of 50,000 cron jobs with expressions of their own took about
/// 277 MiB of a daemon's 362-366, and their parse half of `tickler check`. Here the expression
/// is parsed with one year, and that year's table replaced by the table of every year, filled
/// once: the same pattern (a test compares the two over 20,000 expressions). Nothing holds the
/// result long: [`with_pattern`] keeps the few last used on each thread.
fn parse_pattern(body: &str) -> Result<Cron, CronError> {
    static ONE_YEAR: LazyLock<CronParser> = LazyLock::new(|| {
        CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Required)
            .build()
    });
    static EVERY_YEAR: LazyLock<Option<CronComponent>> = LazyLock::new(|| {
        written_parser()
            .parse("* * * * *")
            .ok()
            .map(|c| c.pattern.years)
    });
    let every_year = EVERY_YEAR
        .as_ref()
        .ok_or_else(|| CronError::InvalidPattern("* * * * *".into()))?;
    // The seconds croner itself puts before 5 fields, and a year the table replaces.
    let mut cron = ONE_YEAR.parse(&format!("0 {body} 2000"))?;
    cron.pattern.years = every_year.clone();
    Ok(cron)
}

/// How many whole patterns each thread keeps: a batch of fires, `tickler list` or a scrape of
/// `/metrics` goes through the jobs of one expression after another, or through a few in turn.
const RECENT_PATTERNS: usize = 8;

/// Runs `f` on croner's pattern for `body` (an expression [`CronTrigger::parse`] accepted):
/// one of the last [`RECENT_PATTERNS`] used on this thread, or parsed afresh (a few µs).
fn with_pattern<R>(body: &str, f: impl FnOnce(&Cron) -> R) -> Result<R, CronError> {
    thread_local! {
        /// Most recently used first.
        static RECENT: RefCell<Vec<(Box<str>, Cron)>> = const { RefCell::new(Vec::new()) };
    }
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        match recent.iter().position(|(b, _)| **b == *body) {
            Some(i) => recent[..=i].rotate_right(1),
            None => {
                let cron = parse_pattern(body)?;
                recent.truncate(RECENT_PATTERNS - 1);
                recent.insert(0, (body.into(), cron));
            }
        }
        Ok(f(&recent[0].1))
    })
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Cron(c) => write!(f, "cron `{}`", c.expr),
            Trigger::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Trigger::OnCalendar(c) => write!(f, "{c}"),
            Trigger::BusinessDayOfMonth(m) => write!(f, "{m}"),
        }
    }
}

impl PartialEq for Trigger {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Trigger::Cron(a), Trigger::Cron(b)) => a.expr == b.expr,
            (Trigger::Every(a), Trigger::Every(b)) => a == b,
            (Trigger::OnCalendar(a), Trigger::OnCalendar(b)) => a == b,
            (Trigger::BusinessDayOfMonth(a), Trigger::BusinessDayOfMonth(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Trigger {}

/// Hashes the fields `eq` compares (a calendar by its name alone: two calendars of one name
/// hash alike and `eq` tells them apart), so the jobs that share a trigger and a zone can share
/// what is worked out from them (`tickler list` and `check`, and each scrape of `/metrics`,
/// work out each one's fires once).
impl Hash for Trigger {
    fn hash<H: Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Trigger::Cron(c) => c.expr.hash(h),
            Trigger::Every(d) => d.hash(h),
            Trigger::OnCalendar(c) => c.hash(h),
            Trigger::BusinessDayOfMonth(m) => m.hash(h),
        }
    }
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

fn expand_nickname(expr: &str) -> Result<&'static str, ScheduleError> {
    NICKNAMES
        .iter()
        .find(|(nickname, _)| nickname.eq_ignore_ascii_case(expr))
        .map(|(_, body)| *body)
        .ok_or_else(|| {
            ScheduleError(
                "unknown nickname; use @hourly, @daily, @weekly, @monthly or @yearly, or \
                 `@last_business_day HH:MM` / `@first_business_day HH:MM` with a `calendar`"
                    .into(),
            )
        })
}

/// The 5 fields of an expression: itself, or a nickname's.
fn body_of(expr: &str) -> Result<&str, ScheduleError> {
    if expr.starts_with('@') {
        expand_nickname(expr)
    } else {
        Ok(expr)
    }
}

/// Checks the numbers of each field against its range, so the user reads "hour must be 0-23"
/// rather than a parser's internal wording.
fn check_ranges(fields: &[&str]) -> Result<(), ScheduleError> {
    for (field, (name, min, max)) in fields.iter().zip(FIELDS) {
        for part in field.split(',') {
            // The step (`/n`) and nth-weekday (`#n`) suffixes are not values of the field.
            let values = part.split(['/', '#']).next().unwrap_or("");
            for number in values
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
            {
                let n: u64 = number.parse().unwrap_or(u64::MAX);
                if n < u64::from(min) || n > u64::from(max) {
                    return Err(ScheduleError(format!(
                        "{name} must be {min}-{max} (found {n})"
                    )));
                }
            }
            if let Some(step) = part.split_once('/').map(|(_, s)| s)
                && step.parse::<u32>().map(|s| s == 0).unwrap_or(true)
            {
                return Err(ScheduleError(format!(
                    "{name} step `/{step}` must be a whole number of at least 1"
                )));
            }
        }
    }
    Ok(())
}

impl CronTrigger {
    /// Parses a standard 5-field crontab expression: minute, hour, day of month, month, day of
    /// week (0 or 7 is Sunday, `1-5` is Monday to Friday; day of month and day of week are OR'ed
    /// when both are restricted), or one of the `@` nicknames.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let trimmed = expr.trim();
        let body = body_of(trimmed)?;
        let fields: Vec<&str> = body.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        check_ranges(&fields)?;
        let fixed_time =
            with_pattern(body, |cron| !cron.pattern.hours.from_wildcard).map_err(|e| {
                // In croner's words for the expression as written.
                let e = written_parser().parse(body).err().unwrap_or(e);
                ScheduleError(croner_message(&e))
            })?;
        Ok(CronTrigger {
            expr: trimmed.to_string(),
            fixed_time,
        })
    }

    /// The 5 fields croner parses: the expression, or the nickname's.
    fn body(&self) -> &str {
        body_of(&self.expr).unwrap_or(&self.expr)
    }

    fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // croner searches years 1 to 5000 and panics on a local time chrono cannot hold (an
        // instant at the very end of its range, moved by the zone's offset): start no earlier
        // than year 1 (a day in, for the offset), and past 5000 nothing can be found.
        let after = searchable(after)?;
        let after_s = after.with_nanosecond(0)?;
        with_pattern(self.body(), |cron| {
            if self.fixed_time {
                next_fixed(cron, after, after_s.with_timezone(&tz).naive_local(), tz)
            } else {
                // Elapsed-time semantics are croner's own behaviour for wildcard-hour patterns.
                cron.find_next_occurrence(&after_s.with_timezone(&tz), false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
        })
        .ok()
        .flatten()
    }

    /// The first wall time after `wall` (or at it, if `inclusive`) that the expression matches.
    fn next_wall(&self, wall: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        with_pattern(self.body(), |cron| {
            cron.find_next_occurrence(&wall.and_utc(), inclusive).ok()
        })
        .ok()
        .flatten()
        .map(|t| t.naive_utc())
    }
}

/// Fixed-time search. Every matching wall time maps to exactly one instant (the first pass of
/// a repeated time, the end of a gap for a skipped one), and that mapping never goes backwards,
/// so the first match whose instant lies after `after` is the answer.
fn next_fixed(
    cron: &Cron,
    after: DateTime<Utc>,
    mut wall: NaiveDateTime,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    // A start inside the later pass of a repeated hour revisits at most that hour's matches.
    for _ in 0..10_000 {
        let next_wall = cron.find_next_occurrence(&wall.and_utc(), false).ok()?;
        wall = next_wall.naive_utc();
        let instant = first_instant_at_or_after(tz, wall);
        if instant > after {
            return Some(instant);
        }
    }
    None
}

/// `after`, moved into the years croner searches (1 to 5000): no earlier than a day into year
/// 1 (so that any zone's wall time of it exists); `None` from year 5000 on, where nothing can
/// be found.
fn searchable(after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if after.year() >= croner::YEAR_UPPER_LIMIT {
        return None;
    }
    let first = NaiveDate::from_ymd_opt(croner::YEAR_LOWER_LIMIT, 1, 2)?
        .and_hms_opt(0, 0, 0)?
        .and_utc();
    Some(after.max(first))
}

/// The first instant whose wall time in `tz` is `wall` or, when `wall` falls in a
/// spring-forward gap, the first instant after that gap.
pub fn first_instant_at_or_after(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Binary search, to the second, for the first instant whose wall time is not before
            // `wall`. Wall time rises monotonically across a gap; ±16 h spans every UTC offset.
            // In whole seconds and clamped to chrono's range, so that a wall time at either end
            // of it (which chrono also reports as "no such instant") neither overflows nor
            // leaves a fraction of a second the search cannot halve.
            let (min, max) = (
                DateTime::<Utc>::MIN_UTC.timestamp(),
                DateTime::<Utc>::MAX_UTC.timestamp(),
            );
            let around = wall.and_utc().timestamp();
            let mut lo = around.saturating_sub(16 * 3600).max(min);
            let mut hi = around.saturating_add(16 * 3600).min(max);
            let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
            // The wall time of an instant; `None` past the end of chrono's range.
            let local = |t: DateTime<Utc>| {
                let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
                t.naive_utc().checked_add_offset(offset)
            };
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                // Out of range above (mid > 0) is later than any wall time; below, earlier.
                if local(at(mid)).map_or(mid > 0, |l| l >= wall) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            at(hi)
        }
    }
}

fn croner_message(e: &CronError) -> String {
    use CronError as E;
    match e {
        E::EmptyPattern => "the expression is empty".into(),
        E::IllegalCharacters(m) | E::InvalidPattern(m) | E::ComponentError(m) => {
            let m = m.trim_end_matches('.');
            let mut c = m.chars();
            match c.next() {
                Some(first) => first.to_lowercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        }
        other => other.to_string(),
    }
}

/// Parses an `every` interval: a whole number of seconds, at least one second and at most
/// `LONGEST`, so that its next fire can always be computed (an interval past that would never
/// fire, or overflow the arithmetic that finds its slots).
pub fn parse_every(text: &str) -> Result<Duration, ScheduleError> {
    let too_large = || {
        ScheduleError(format!(
            "larger than the largest accepted interval, `{LONGEST_TEXT}` ({LONGEST_SECS}s)"
        ))
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => too_large(),
        e => ScheduleError(format!("{e}; write e.g. `30s`, `10m`, `6h` or `1d`")),
    })?;
    if d > LONGEST {
        return Err(too_large());
    }
    if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
        return Err(ScheduleError(
            "an interval must be a whole number of seconds, at least 1s".into(),
        ));
    }
    Ok(d)
}

impl Trigger {
    /// The first slot strictly after `after`, evaluated in `tz`. `None` for an expression
    /// that never matches again (e.g. `0 0 30 2 *`) and for a slot beyond the instants chrono
    /// can represent: the arithmetic is checked, and a result that is not later than `after`
    /// is never returned, so a caller walking the slots always moves forward and ends.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let next = match self {
            Trigger::Cron(c) => c.next_after(after, tz),
            Trigger::Every(d) => {
                let step = i64::try_from(d.as_secs()).ok().filter(|s| *s > 0)?;
                let next = after
                    .timestamp()
                    .div_euclid(step)
                    .checked_mul(step)?
                    .checked_add(step)?;
                DateTime::from_timestamp(next, 0)
            }
            Trigger::OnCalendar(c) => c.next_after(after, tz),
            Trigger::BusinessDayOfMonth(m) => m.next_after(after, tz),
        };
        next.filter(|t| *t > after)
    }

    /// The next `n` slots after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t, tz) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeDelta};

    fn cron(expr: &str) -> Trigger {
        Trigger::Cron(Box::new(CronTrigger::parse(expr).unwrap()))
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_trigger_works_out_its_fires_whatever_patterns_were_used_meanwhile() {
        let a = CronTrigger::parse("43 5 * * 2-4").unwrap();
        let after = utc("2026-12-04T12:00:00Z");
        let expected = Some(utc("2026-12-08T05:43:00Z"));
        assert_eq!(a.next_after(after, chrono_tz::UTC), expected);
        // Twice as many other expressions as a thread keeps whole, used in between.
        for minute in 0..2 * RECENT_PATTERNS {
            let other = CronTrigger::parse(&format!("{minute} 5 * * 2-4")).unwrap();
            assert_eq!(
                other.next_after(after, chrono_tz::UTC),
                Some(utc(&format!("2026-12-08T05:{minute:02}:00Z")))
            );
        }
        assert_eq!(a.next_after(after, chrono_tz::UTC), expected);
        // On a thread that has never parsed it.
        let elsewhere = std::thread::spawn(move || a.next_after(after, chrono_tz::UTC));
        assert_eq!(elsewhere.join().unwrap(), expected);
        // An expression croner refuses is refused in croner's words for it as written.
        assert_eq!(
            CronTrigger::parse("5 4 L * *").err().map(|e| e.0),
            written_parser()
                .parse("5 4 L * *")
                .err()
                .map(|e| croner_message(&e))
        );
    }

    /// `parse_pattern` (one year, then the table of every year put in its place) makes the
    /// pattern croner makes of the expression as written, and refuses what croner refuses: on
    /// each shape of field, and on 20,000 expressions put together from them at random.
    #[test]
    fn a_pattern_parsed_with_one_year_is_the_pattern_croner_makes_of_the_expression() {
        let written = written_parser();
        let (mut accepted, mut refused) = (0, 0);
        let mut same = |e: &str| match (written.parse(e), parse_pattern(e)) {
            (Ok(a), Ok(b)) => {
                assert!(a == b, "`{e}`: the two patterns differ");
                accepted += 1;
            }
            (Err(_), Err(_)) => refused += 1,
            (a, b) => panic!("`{e}`: as written {a:?}, with one year {b:?}"),
        };
        for e in [
            "* * * * *",
            "0 0 1 1 *",
            "*/15 * * * *",
            "5-55/10 8-18 * * 1-5",
            "0 9,17 * * MON-FRI",
            "0 0 L * *",
            "0 0 LW * *",
            "0 0 15W * *",
            "0 0 * * 5L",
            "0 0 * * FRI#2",
            "0 0 ? * 1#1,3#3",
            "0 0 1-7 * +1",
            "0 0 31 2 *",
            "0 0 * JAN,jul *",
            "0 0 * * 7",
            "0 0 * * 0-7",
            "59 23 31 12 6",
            // Refused by croner too.
            "0 0 * * 8",
            "0 0 32 * *",
            "0 0 * 13 *",
            "0 0 W * *",
            "0 0 * * 1#6",
            "60 * * * *",
            "* * * *",
            "* * * * * *",
        ] {
            same(e);
        }
        let mut rng = fastrand::Rng::with_seed(17);
        // One part of a field: a value (one in 50 past the range), a range (one in 10 the
        // wrong way round), a step (one in 60 of 0), a modifier, a name.
        fn part(rng: &mut fastrand::Rng, min: u32, max: u32) -> String {
            let n = |rng: &mut fastrand::Rng| match rng.u8(0..50) {
                0 => max + 1,
                _ => rng.u32(min..=max),
            };
            let range = |rng: &mut fastrand::Rng| {
                let (a, b) = (n(rng), n(rng));
                match rng.u8(0..10) {
                    0 => format!("{}-{}", a.max(b), a.min(b)),
                    _ => format!("{}-{}", a.min(b), a.max(b)),
                }
            };
            match rng.u8(0..10) {
                0 => "*".to_string(),
                1 => format!("*/{}", rng.u32(0..=max)),
                2 => range(rng),
                3 => format!("{}/{}", range(rng), rng.u32(1..=max)),
                4 if max == 31 => ["L", "LW", "?"][rng.usize(0..3)].to_string(),
                5 if max == 31 => format!("{}W", n(rng)),
                4 if max == 7 => format!("{}L", n(rng)),
                5 if max == 7 => format!("{}#{}", n(rng), rng.u32(0..7)),
                6 if max == 7 => ["SUN", "mon", "Fri-Sat", "?"][rng.usize(0..4)].to_string(),
                6 if max == 12 => ["JAN", "feb-apr", "Dec"][rng.usize(0..3)].to_string(),
                _ => n(rng).to_string(),
            }
        }
        let value = |rng: &mut fastrand::Rng, min: u32, max: u32| {
            let mut field = part(rng, min, max);
            for _ in 0..rng.usize(0..3) {
                field = format!("{field},{}", part(rng, min, max));
            }
            field
        };
        for _ in 0..20_000 {
            let plus = if rng.u8(0..20) == 0 { "+" } else { "" };
            let e = format!(
                "{} {} {} {} {plus}{}",
                value(&mut rng, 0, 59),
                value(&mut rng, 0, 23),
                value(&mut rng, 1, 31),
                value(&mut rng, 1, 12),
                value(&mut rng, 0, 7),
            );
            same(&e);
        }
        // Of both kinds, many: 4,769 and 15,256 with this seed.
        assert!(
            accepted > 4_000 && refused > 4_000,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// The fires between two instants, written as local RFC 3339 strings for readable asserts.
    fn fires(expr: &str, zone: &str, from: &str, to: &str) -> Vec<String> {
        let tz: Tz = zone.parse().unwrap();
        let trigger = cron(expr);
        let (mut t, end) = (utc(from), utc(to));
        let mut out = vec![];
        while let Some(next) = trigger.next_after(t, tz) {
            if next > end {
                break;
            }
            out.push(next.with_timezone(&tz).to_rfc3339());
            t = next;
        }
        out
    }

    #[test]
    fn new_york_spring_forward_fixed_time_fires_after_gap() {
        // 2025-03-09 02:00 EST -> 03:00 EDT: 02:30 does not exist that day.
        let got = fires(
            "30 2 * * *",
            "America/New_York",
            "2025-03-08T00:00:00Z",
            "2025-03-11T00:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-03-08T02:30:00-05:00",
                "2025-03-09T03:00:00-04:00",
                "2025-03-10T02:30:00-04:00"
            ]
        );
    }

    #[test]
    fn new_york_fall_back_fixed_time_fires_once_at_first_pass() {
        // 2025-11-02 02:00 EDT -> 01:00 EST: 01:30 happens twice.
        let got = fires(
            "30 1 * * *",
            "America/New_York",
            "2025-11-01T12:00:00Z",
            "2025-11-03T12:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]
        );
    }

    #[test]
    fn hour_lists_are_fixed_time_too() {
        let got = fires(
            "30 1,13 * * *",
            "America/New_York",
            "2025-11-02T00:00:00Z",
            "2025-11-02T23:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-11-02T01:30:00-04:00", "2025-11-02T13:30:00-05:00"]
        );
        let got = fires(
            "*/30 2 * * *",
            "America/New_York",
            "2025-03-09T00:00:00Z",
            "2025-03-09T12:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-03-09T03:00:00-04:00"],
            "both gap times fire once, after the gap"
        );
    }

    #[test]
    fn new_york_wildcard_hour_follows_elapsed_time() {
        // Fall back: the 01:xx hour runs twice, once in EDT and once in EST.
        let got = fires(
            "*/30 * * * *",
            "America/New_York",
            "2025-11-02T04:45:00Z",
            "2025-11-02T07:15:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-11-02T01:00:00-04:00",
                "2025-11-02T01:30:00-04:00",
                "2025-11-02T01:00:00-05:00",
                "2025-11-02T01:30:00-05:00",
                "2025-11-02T02:00:00-05:00"
            ]
        );
        // Spring forward: nothing in the skipped 02:xx hour.
        let got = fires(
            "*/30 * * * *",
            "America/New_York",
            "2025-03-09T06:15:00Z",
            "2025-03-09T07:45:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-03-09T01:30:00-05:00",
                "2025-03-09T03:00:00-04:00",
                "2025-03-09T03:30:00-04:00"
            ]
        );
    }

    #[test]
    fn london_transitions() {
        // 2025-03-30 01:00 GMT -> 02:00 BST; 2025-10-26 02:00 BST -> 01:00 GMT.
        let got = fires(
            "15 1 * * *",
            "Europe/London",
            "2025-03-29T12:00:00Z",
            "2025-03-31T12:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-03-30T02:00:00+01:00", "2025-03-31T01:15:00+01:00"]
        );
        let got = fires(
            "15 1 * * *",
            "Europe/London",
            "2025-10-25T12:00:00Z",
            "2025-10-27T12:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-10-26T01:15:00+01:00", "2025-10-27T01:15:00+00:00"]
        );
        // A daily job at midnight is not moved by a gap later that night (croner issue #67).
        let got = fires(
            "0 0 * * *",
            "Europe/London",
            "2025-03-29T12:00:00Z",
            "2025-03-31T12:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-03-30T00:00:00+00:00", "2025-03-31T00:00:00+01:00"]
        );
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        // 2025-04-06 02:00 +11 -> 01:30 +10:30; 2025-10-05 02:00 +10:30 -> 02:30 +11.
        let got = fires(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2025-04-05T00:00:00Z",
            "2025-04-06T16:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-04-06T01:45:00+11:00", "2025-04-07T01:45:00+10:30"]
        );
        let got = fires(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2025-10-04T00:00:00Z",
            "2025-10-05T16:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-10-05T02:30:00+11:00", "2025-10-06T02:15:00+11:00"]
        );
        let got = fires(
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2025-04-05T14:40:00Z",
            "2025-04-05T15:35:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-04-06T01:45:00+11:00",
                "2025-04-06T01:30:00+10:30",
                "2025-04-06T01:45:00+10:30",
                "2025-04-06T02:00:00+10:30",
            ]
        );
    }

    #[test]
    fn zones_without_dst_are_steady() {
        let got = fires(
            "0 7 * * *",
            "Africa/Johannesburg",
            "2025-03-29T00:00:00Z",
            "2025-03-31T23:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-03-29T07:00:00+02:00",
                "2025-03-30T07:00:00+02:00",
                "2025-03-31T07:00:00+02:00"
            ]
        );
        let got = fires(
            "30 9 * * *",
            "Asia/Kolkata",
            "2025-11-01T00:00:00Z",
            "2025-11-02T23:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-11-01T09:30:00+05:30", "2025-11-02T09:30:00+05:30"]
        );
        let got = fires(
            "0 * * * *",
            "Asia/Kolkata",
            "2025-11-01T00:00:00Z",
            "2025-11-01T01:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-11-01T06:00:00+05:30"],
            "hourly at :00 local is :30 UTC"
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_are_ored_and_1_5_is_weekdays() {
        // 2025-12: the 1st is a Monday; 13 is a Saturday.
        let got = fires(
            "0 12 13 * 5",
            "UTC",
            "2025-12-01T00:00:00Z",
            "2025-12-20T00:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-12-05T12:00:00+00:00",
                "2025-12-12T12:00:00+00:00",
                "2025-12-13T12:00:00+00:00",
                "2025-12-19T12:00:00+00:00"
            ]
        );
        let got = fires(
            "0 9 * * 1-5",
            "UTC",
            "2025-12-05T10:00:00Z",
            "2025-12-09T10:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-12-08T09:00:00+00:00", "2025-12-09T09:00:00+00:00"]
        );
        let got = fires(
            "0 12 * * 1,3,5",
            "UTC",
            "2025-12-01T13:00:00Z",
            "2025-12-06T00:00:00Z",
        );
        assert_eq!(
            got,
            ["2025-12-03T12:00:00+00:00", "2025-12-05T12:00:00+00:00"]
        );
    }

    #[test]
    fn nicknames() {
        let after = utc("2025-12-10T10:10:00Z");
        let next = |e: &str| cron(e).next_after(after, Tz::UTC).unwrap().to_rfc3339();
        assert_eq!(next("@hourly"), "2025-12-10T11:00:00+00:00");
        assert_eq!(next("@daily"), "2025-12-11T00:00:00+00:00");
        assert_eq!(next("@weekly"), "2025-12-14T00:00:00+00:00");
        assert_eq!(next("@monthly"), "2026-01-01T00:00:00+00:00");
        assert_eq!(next("@yearly"), "2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn intervals_are_epoch_anchored() {
        let every = Trigger::Every(Duration::from_secs(600));
        let next = every
            .next_after(utc("2025-12-10T10:17:31.5Z"), Tz::UTC)
            .unwrap();
        assert_eq!(next, utc("2025-12-10T10:20:00Z"));
        assert_eq!(
            every.next_after(next, Tz::UTC).unwrap(),
            utc("2025-12-10T10:30:00Z")
        );
        assert!(parse_every("0s").is_err());
        assert!(parse_every("1500ms").is_err());
        assert_eq!(parse_every("1d").unwrap(), Duration::from_secs(86_400));
    }

    #[test]
    fn sub_second_start_does_not_skip_or_repeat() {
        let t = cron("* * * * *");
        assert_eq!(
            t.next_after(utc("2025-12-10T10:10:00.250Z"), Tz::UTC)
                .unwrap(),
            utc("2025-12-10T10:11:00Z")
        );
        assert_eq!(
            t.next_after(utc("2025-12-10T10:10:00Z"), Tz::UTC).unwrap(),
            utc("2025-12-10T10:11:00Z")
        );
    }

    #[test]
    fn error_messages() {
        let err = |e: &str| CronTrigger::parse(e).err().unwrap().0;
        assert_eq!(err("0 25 * * *"), "hour must be 0-23 (found 25)");
        assert_eq!(err("60 * * * *"), "minute must be 0-59 (found 60)");
        assert_eq!(err("0 0 0 * *"), "day-of-month must be 1-31 (found 0)");
        assert_eq!(err("0 0 * 13 *"), "month must be 1-12 (found 13)");
        assert_eq!(err("0 0 * * 8"), "day-of-week must be 0-7 (found 8)");
        assert_eq!(
            err("0 0 * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), found 4"
        );
        assert_eq!(
            err("0 0 0 * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), found 6"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "minute step `/0` must be a whole number of at least 1"
        );
        assert_eq!(
            err("@often"),
            "unknown nickname; use @hourly, @daily, @weekly, @monthly or @yearly, or \
             `@last_business_day HH:MM` / `@first_business_day HH:MM` with a `calendar`"
        );
        assert!(CronTrigger::parse("0 9 * * MON-FRI").is_ok());
        assert!(CronTrigger::parse("0 0 1 JAN *").is_ok());
        assert!(CronTrigger::parse("x 0 * * *").is_err());
    }

    #[test]
    fn intervals_are_at_most_100_years() {
        assert_eq!(parse_every("100y").unwrap(), LONGEST);
        let err = |text: &str| parse_every(text).unwrap_err().0;
        let too_large = "larger than the largest accepted interval, `100y` (3155760000s)";
        assert_eq!(err("18446744073709551615s"), too_large);
        assert_eq!(err("101y"), too_large);
        assert_eq!(
            err("99999999999999999999s"),
            too_large,
            "humantime's own overflow"
        );
    }

    /// Whatever the interval and the start, the next slot is later than the start or absent:
    /// `list` never prints fires going backwards and the daemon never loops on a past slot.
    #[test]
    fn next_after_never_goes_backwards_nor_panics() {
        let starts = [
            DateTime::<Utc>::MIN_UTC,
            utc("1969-12-31T23:59:59Z"),
            utc("2025-12-10T10:17:31.5Z"),
            utc("9999-12-31T23:59:59Z"),
            DateTime::<Utc>::MAX_UTC - TimeDelta::days(1),
            DateTime::<Utc>::MAX_UTC,
        ];
        let intervals = [
            Duration::from_secs(1),
            LONGEST,
            Duration::from_secs(i64::MAX as u64),
            Duration::from_secs(i64::MAX as u64 + 1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ];
        let mut triggers: Vec<Trigger> = intervals.iter().map(|d| Trigger::Every(*d)).collect();
        triggers.extend(["* * * * *", "30 2 * * *", "0 0 29 2 *"].map(cron));
        let calendar = NamedCalendar {
            name: "weekdays".into(),
            calendar: std::sync::Arc::new(crate::time::calendar::Calendar {
                days: crate::time::calendar::Weekdays::MON_FRI,
                holidays: Default::default(),
            }),
        };
        for mode in [OnHoliday::NextBusinessDay, OnHoliday::PreviousBusinessDay] {
            triggers.push(
                cron("30 2 * * *")
                    .on_calendar(calendar.clone(), mode)
                    .unwrap(),
            );
        }
        let every = Trigger::Every(Duration::from_secs(1));
        triggers.push(
            every
                .on_calendar(calendar.clone(), OnHoliday::Skip)
                .unwrap(),
        );
        triggers.push(BusinessDayOfMonth::trigger(
            Which::Last,
            NaiveTime::MIN,
            calendar,
        ));
        for trigger in &triggers {
            for after in starts {
                for tz in [
                    Tz::UTC,
                    chrono_tz::America::New_York,
                    chrono_tz::Pacific::Kiritimati,
                ] {
                    if let Some(next) = trigger.next_after(after, tz) {
                        assert!(next > after, "{trigger} after {after}: {next}");
                    }
                }
            }
            let fires = trigger.upcoming(utc("2025-12-10T10:17:31Z"), Tz::UTC, 5);
            assert!(
                fires.windows(2).all(|w| w[0] < w[1]),
                "{trigger}: {fires:?}"
            );
        }
        // The interval the issue found: 2^64-1 seconds has no next slot at all.
        let huge = Trigger::Every(Duration::from_secs(u64::MAX));
        assert_eq!(huge.next_after(utc("2025-12-10T10:17:31Z"), Tz::UTC), None);
    }

    /// A wall time whose instant lies outside chrono's range looks like a gap to chrono; the
    /// search around it stays inside the range instead of overflowing.
    #[test]
    fn a_wall_time_at_the_ends_of_time_does_not_panic() {
        let late = NaiveDateTime::MAX - TimeDelta::hours(1);
        let ny = first_instant_at_or_after(chrono_tz::America::New_York, late);
        assert_eq!(Some(ny), DateTime::<Utc>::MAX_UTC.with_nanosecond(0));
        let early = NaiveDateTime::MIN + TimeDelta::hours(1);
        let kiritimati = first_instant_at_or_after(chrono_tz::Pacific::Kiritimati, early);
        assert!(kiritimati < DateTime::<Utc>::MIN_UTC + TimeDelta::days(1));
    }

    #[test]
    fn impossible_expression_has_no_next() {
        assert_eq!(
            cron("0 0 30 2 *").next_after(utc("2025-01-01T00:00:00Z"), Tz::UTC),
            None
        );
    }
}
