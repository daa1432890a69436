//! Business-day triggers: a cron or interval trigger read against a calendar (`calendar =
//! "za"`, `on_holiday = "skip" | "next_business_day" | "previous_business_day"`), and the
//! month-end triggers `@last_business_day HH:MM` / `@first_business_day HH:MM`.
//!
//! The calendar is a value handed in by `config/` (which read the holiday file); nothing here
//! reads a file or a clock. The dates are local dates in the job's zone, and every instant is
//! found with invariant 1's rules (`first_instant_at_or_after`): a wall time in a spring-forward
//! gap fires at the end of the gap, a repeated one at its first pass.
//!
//! A nominal fire whose local date is no business day is dropped (`skip`) or moved to the same
//! wall time on the next or previous business day. Nominal fires moved onto the same instant
//! (Saturday's and Sunday's onto Monday's) are one slot. Moving needs a fixed time of day, so a
//! wildcard-hour cron or an `every` interval takes only `skip`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::{CronTrigger, ScheduleError, Trigger, first_instant_at_or_after, searchable};
use crate::time::calendar::Calendar;

/// What becomes of a fire whose local date is no business day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnHoliday {
    /// It does not happen.
    #[default]
    Skip,
    /// It happens at the same wall time on the next business day.
    NextBusinessDay,
    /// It happens at the same wall time on the previous business day.
    PreviousBusinessDay,
}

impl OnHoliday {
    pub const NAMES: [&'static str; 3] = ["skip", "next_business_day", "previous_business_day"];

    pub fn parse(text: &str) -> Option<OnHoliday> {
        Some(match text {
            "skip" => OnHoliday::Skip,
            "next_business_day" => OnHoliday::NextBusinessDay,
            "previous_business_day" => OnHoliday::PreviousBusinessDay,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnHoliday::Skip => "skip",
            OnHoliday::NextBusinessDay => "next_business_day",
            OnHoliday::PreviousBusinessDay => "previous_business_day",
        }
    }
}

/// A `[calendars.NAME]` as a trigger holds it. Two are equal when both the name and the days
/// (weekdays and every holiday) are: a reload that changes either changes the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCalendar {
    pub name: Arc<str>,
    pub calendar: Arc<Calendar>,
}

/// A cron or interval trigger whose fires are kept, dropped or moved by a calendar.
#[derive(Clone, PartialEq)]
pub struct OnCalendar {
    inner: Trigger,
    calendar: NamedCalendar,
    on_holiday: OnHoliday,
}

/// Which business day of each month `@first_business_day` / `@last_business_day` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    First,
    Last,
}

/// `@last_business_day HH:MM` or `@first_business_day HH:MM`.
#[derive(Clone, PartialEq)]
pub struct BusinessDayOfMonth {
    which: Which,
    time: NaiveTime,
    calendar: NamedCalendar,
}

/// How many nominal fires a calendar trigger reads before it gives up: a schedule that
/// matches no business day for this long never fires (`tickler check` refuses it).
const MAX_NOMINAL: usize = 100_000;
/// How far past its start a calendar trigger looks for a fire, in days.
const HORIZON_DAYS: u64 = 30 * 366;

impl Trigger {
    /// This trigger read against `calendar`. Moving a fire (`next_business_day`,
    /// `previous_business_day`) needs a fixed time of day; a wildcard-hour cron or an interval
    /// is refused with anything but `skip`.
    pub fn on_calendar(
        self,
        calendar: NamedCalendar,
        on_holiday: OnHoliday,
    ) -> Result<Trigger, ScheduleError> {
        let fixed = match &self {
            Trigger::Cron(c) => c.fixed_time,
            Trigger::Every(_) => false,
            Trigger::OnCalendar(_) | Trigger::BusinessDayOfMonth(_) => {
                return Err(ScheduleError("a trigger takes one calendar".into()));
            }
        };
        if !fixed && on_holiday != OnHoliday::Skip {
            let what = match &self {
                Trigger::Every(_) => "an `every` interval",
                _ => "a cron expression whose hour is a wildcard",
            };
            return Err(ScheduleError(format!(
                "`{}` moves a fire to the same time of day on another day, and {what} has no \
                 fixed time of day; use `on_holiday = \"skip\"`, or a schedule with a fixed \
                 hour such as `30 2 * * *`",
                on_holiday.as_str()
            )));
        }
        Ok(Trigger::OnCalendar(Box::new(OnCalendar {
            inner: self,
            calendar,
            on_holiday,
        })))
    }
}

impl BusinessDayOfMonth {
    /// Reads `@last_business_day HH:MM` / `@first_business_day HH:MM`: `None` when `expr` is
    /// neither (another expression), an error when it is one with a bad time.
    pub fn parse(expr: &str) -> Option<Result<(Which, NaiveTime), ScheduleError>> {
        let mut words = expr.split_whitespace();
        let head = words.next()?;
        let which = match head.to_ascii_lowercase().as_str() {
            "@last_business_day" => Which::Last,
            "@first_business_day" => Which::First,
            _ => return None,
        };
        let time = match (words.next(), words.next()) {
            (Some(t), None) => parse_hh_mm(t),
            _ => None,
        };
        Some(time.map(|t| (which, t)).ok_or_else(|| {
            ScheduleError(format!(
                "`{head}` takes a local time of day `HH:MM` (00:00 to 23:59), e.g. `{head} \
                 18:00`"
            ))
        }))
    }

    pub fn trigger(which: Which, time: NaiveTime, calendar: NamedCalendar) -> Trigger {
        Trigger::BusinessDayOfMonth(Box::new(BusinessDayOfMonth {
            which,
            time,
            calendar,
        }))
    }

    pub(super) fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let after = searchable(after)?;
        let local = after.with_timezone(&tz).date_naive();
        // From the month before (a zone's offset can put `after` a day off the local date).
        let mut month = local.with_day(1)?.checked_sub_months(Months::new(1))?;
        for _ in 0..HORIZON_DAYS / 28 {
            let cal = &self.calendar.calendar;
            let day = match self.which {
                Which::First => cal.first_business_day(month.year(), month.month()),
                Which::Last => cal.last_business_day(month.year(), month.month()),
            };
            if let Some(day) = day {
                let t = first_instant_at_or_after(tz, day.and_time(self.time));
                if t > after {
                    return Some(t);
                }
            }
            month = month.checked_add_months(Months::new(1))?;
        }
        None
    }
}

fn parse_hh_mm(text: &str) -> Option<NaiveTime> {
    let (h, m) = text.split_once(':')?;
    let ok = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || m.len() != 2 || !ok(m) {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

impl OnCalendar {
    pub(super) fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match &self.inner {
            Trigger::Cron(c) if c.fixed_time => self.next_fixed(c, after, tz),
            inner => self.next_skipping(inner, after, tz),
        }
    }

    /// `skip` for a trigger without a fixed time of day: its fires on a business day, jumping
    /// over the days that are not.
    fn next_skipping(
        &self,
        inner: &Trigger,
        after: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let cal = &self.calendar.calendar;
        let mut t = searchable(after)?;
        for _ in 0..MAX_NOMINAL {
            let fire = inner.next_after(t, tz)?;
            let date = fire.with_timezone(&tz).date_naive();
            if cal.is_business_day(date) {
                return Some(fire);
            }
            if fire - after > TimeDelta::days(HORIZON_DAYS as i64) {
                return None;
            }
            // On to the start of the next business day (never backwards: a fall-back at
            // midnight can repeat the end of a day after the next one began).
            let day = cal.next_business_day(date.succ_opt()?)?;
            let start = first_instant_at_or_after(tz, day.and_time(NaiveTime::MIN))
                - TimeDelta::nanoseconds(1);
            t = start.max(fire);
        }
        None
    }

    /// A fixed-time cron: each nominal fire (a local date and wall time) is kept, dropped or
    /// moved by its date, and the earliest resulting instant after `after` is the answer. A
    /// nominal fire before `after` can move past it (`next_business_day`) and one far after it
    /// can move before the others (`previous_business_day`), so the search starts at the last
    /// business day before `after` and stops once no later nominal fire can land earlier than
    /// the best found.
    fn next_fixed(
        &self,
        cron: &CronTrigger,
        after: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let cal = &self.calendar.calendar;
        let after = searchable(after)?;
        let local = after.with_timezone(&tz).date_naive();
        let from = match self.on_holiday {
            OnHoliday::NextBusinessDay => cal
                .previous_business_day(local.pred_opt()?)
                .unwrap_or(local.checked_sub_days(Days::new(367))?),
            _ => local,
        }
        // A day earlier, for a zone whose wall time is behind the UTC date.
        .pred_opt()?;
        let horizon = local.checked_add_days(Days::new(HORIZON_DAYS))?;
        let mut wall = from.and_time(NaiveTime::MIN);
        let mut inclusive = true;
        let mut best: Option<(DateTime<Utc>, NaiveDate)> = None;
        for _ in 0..MAX_NOMINAL {
            let Some(next) = cron.next_wall(wall, inclusive) else {
                break;
            };
            inclusive = false;
            wall = next;
            let date = wall.date();
            let day = if cal.is_business_day(date) {
                Some(date)
            } else {
                match self.on_holiday {
                    OnHoliday::Skip => None,
                    OnHoliday::NextBusinessDay => cal.next_business_day(date),
                    OnHoliday::PreviousBusinessDay => cal.previous_business_day(date),
                }
            };
            match best {
                // Where nominal dates land never goes backwards: once this one lands after the
                // best slot's day, no later one can land before it.
                Some((_, best_day)) if date > best_day && day.is_none_or(|d| d > best_day) => {
                    break;
                }
                None if date > horizon => break,
                _ => {}
            }
            let Some(day) = day else { continue };
            let instant = first_instant_at_or_after(tz, day.and_time(wall.time()));
            if instant > after && best.is_none_or(|(b, _)| instant < b) {
                best = Some((instant, day));
            }
        }
        best.map(|(t, _)| t)
    }
}

/// By what `eq` compares, the calendar by its name (see `Trigger`'s `Hash`).
impl Hash for OnCalendar {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.inner.hash(h);
        self.calendar.name.hash(h);
        self.on_holiday.hash(h);
    }
}

impl Hash for BusinessDayOfMonth {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.which.hash(h);
        self.time.hash(h);
        self.calendar.name.hash(h);
    }
}

impl fmt::Display for OnCalendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on calendar `{}`", self.inner, self.calendar.name)?;
        if self.on_holiday != OnHoliday::Skip {
            write!(f, " ({})", self.on_holiday.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Display for BusinessDayOfMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let which = match self.which {
            Which::First => "@first_business_day",
            Which::Last => "@last_business_day",
        };
        write!(
            f,
            "`{which} {}` on calendar `{}`",
            self.time.format("%H:%M"),
            self.calendar.name
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use chrono::{LocalResult, NaiveDateTime, TimeZone, Weekday};

    use super::*;
    use crate::time::calendar::{Holidays, Weekdays};

    const ZA_HOLIDAYS: &str = include_str!("../../holidays/za-2026-2027.toml");

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn named(days: &str, holidays: Holidays) -> NamedCalendar {
        NamedCalendar {
            name: "test".into(),
            calendar: Arc::new(Calendar::new(Weekdays::parse(days).unwrap(), holidays).unwrap()),
        }
    }

    fn cron(expr: &str) -> Trigger {
        Trigger::Cron(Box::new(CronTrigger::parse(expr).unwrap()))
    }

    /// Holidays next to weekends (Friday and Monday ones, Easter), on the last weekday of a
    /// month (2026-07-31, 2026-12-31, 2027-04-30, 2027-05-31, 2027-12-31), the Monday after
    /// New York's 2026 spring-forward Sunday and runs of several (Christmas 2026).
    fn test_holidays() -> Vec<NaiveDate> {
        [
            "2026-01-01",
            "2026-01-02",
            "2026-03-09",
            "2026-04-03",
            "2026-04-06",
            "2026-07-31",
            "2026-12-24",
            "2026-12-25",
            "2026-12-28",
            "2026-12-31",
            "2027-03-14",
            "2027-04-30",
            "2027-05-31",
            "2027-11-01",
            "2027-12-27",
            "2027-12-31",
        ]
        .map(date)
        .to_vec()
    }

    /// The reference: business days, nearest business days and wall times to instants by the
    /// plainest rules, sharing nothing with the code under test.
    struct Reference {
        days: Vec<Weekday>,
        holidays: HashSet<NaiveDate>,
        tz: Tz,
    }

    impl Reference {
        fn business(&self, d: NaiveDate) -> bool {
            self.days.contains(&d.weekday()) && !self.holidays.contains(&d)
        }

        fn step(&self, mut d: NaiveDate, forward: bool) -> NaiveDate {
            while !self.business(d) {
                d = if forward { d.succ_opt() } else { d.pred_opt() }.unwrap();
            }
            d
        }

        /// A wall time's instant: the earlier of a repeated one; for a skipped one, the first
        /// minute after it that exists.
        fn instant(&self, mut wall: NaiveDateTime) -> DateTime<Utc> {
            loop {
                match self.tz.from_local_datetime(&wall) {
                    LocalResult::Single(t) => return t.with_timezone(&Utc),
                    LocalResult::Ambiguous(a, b) => return a.min(b).with_timezone(&Utc),
                    LocalResult::None => wall += TimeDelta::minutes(1),
                }
            }
        }

        /// The slots of nominal fires at `times` on the dates `matches`, kept, dropped or
        /// moved by `mode`, between `from` and `to` (exclusive, inclusive).
        fn fires(
            &self,
            matches: impl Fn(NaiveDate) -> bool,
            times: &[NaiveTime],
            mode: OnHoliday,
            (from, to): (DateTime<Utc>, DateTime<Utc>),
        ) -> Vec<DateTime<Utc>> {
            let mut out = BTreeSet::new();
            let mut d = from.with_timezone(&self.tz).date_naive() - TimeDelta::days(20);
            while d < to.with_timezone(&self.tz).date_naive() + TimeDelta::days(20) {
                if matches(d) {
                    let day = match mode {
                        _ if self.business(d) => Some(d),
                        OnHoliday::Skip => None,
                        OnHoliday::NextBusinessDay => Some(self.step(d, true)),
                        OnHoliday::PreviousBusinessDay => Some(self.step(d, false)),
                    };
                    for time in times {
                        if let Some(day) = day {
                            out.insert(self.instant(day.and_time(*time)));
                        }
                    }
                }
                d = d.succ_opt().unwrap();
            }
            out.into_iter().filter(|t| *t > from && *t <= to).collect()
        }

        fn month_ends(
            &self,
            which: Which,
            time: NaiveTime,
            (from, to): (DateTime<Utc>, DateTime<Utc>),
        ) -> Vec<DateTime<Utc>> {
            let mut out = vec![];
            let mut d = date("2025-12-01");
            while d < date("2028-02-01") {
                let days: Vec<NaiveDate> = d
                    .iter_days()
                    .take_while(|x| x.month() == d.month())
                    .filter(|x| self.business(*x))
                    .collect();
                let day = match which {
                    Which::First => days.first(),
                    Which::Last => days.last(),
                };
                out.push(self.instant(day.unwrap().and_time(time)));
                d = d.checked_add_months(Months::new(1)).unwrap();
            }
            out.into_iter().filter(|t| *t > from && *t <= to).collect()
        }
    }

    fn walk(
        trigger: &Trigger,
        tz: Tz,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
    ) -> Vec<DateTime<Utc>> {
        let mut out = vec![];
        let mut t = from;
        while let Some(next) = trigger.next_after(t, tz) {
            assert!(next > t, "{trigger}: {next} after {t}");
            if next > to {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// Two years of fires in New York (DST, with `sun-thu` business days so that both
    /// transition Sundays are business days) and in Johannesburg (South Africa's holidays),
    /// each compared with the reference.
    #[test]
    fn two_years_of_business_day_fires_match_a_brute_force_reference() {
        let cases: [(&str, &str, Vec<NaiveDate>); 4] = [
            ("America/New_York", "mon-fri", test_holidays()),
            ("America/New_York", "sun-thu", test_holidays()),
            ("Europe/London", "sun-thu", test_holidays()),
            ("Africa/Johannesburg", "mon-fri", {
                let h = Holidays::parse(ZA_HOLIDAYS).unwrap();
                date("2026-01-01")
                    .iter_days()
                    .take_while(|d| d.year() < 2028)
                    .filter(|d| h.contains(*d))
                    .collect()
            }),
        ];
        let everyday = |_: NaiveDate| true;
        let monday = |d: NaiveDate| d.weekday() == Weekday::Mon;
        let saturday = |d: NaiveDate| d.weekday() == Weekday::Sat;
        let twenty_fifth = |d: NaiveDate| d.day() == 25;
        type Matches = Box<dyn Fn(NaiveDate) -> bool>;
        let exprs: [(&str, Matches, Vec<NaiveTime>); 6] = [
            ("30 2 * * *", Box::new(everyday), vec![t(2, 30)]),
            ("30 1 * * *", Box::new(everyday), vec![t(1, 30)]),
            ("30 2 * * 1", Box::new(monday), vec![t(2, 30)]),
            ("30 2 * * 6", Box::new(saturday), vec![t(2, 30)]),
            ("0 18 25 * *", Box::new(twenty_fifth), vec![t(18, 0)]),
            ("0 9,17 * * *", Box::new(everyday), vec![t(9, 0), t(17, 0)]),
        ];
        for (zone, days, holidays) in cases {
            let tz: Tz = zone.parse().unwrap();
            let reference = Reference {
                days: date("2026-01-05")
                    .iter_days()
                    .take(7)
                    .map(|d| d.weekday())
                    .filter(|w| Weekdays::parse(days).unwrap().contains(*w))
                    .collect(),
                holidays: holidays.iter().copied().collect(),
                tz,
            };
            let calendar = named(days, Holidays::from_dates(holidays));
            let range = (
                reference.instant(date("2026-01-01").and_time(t(0, 0))),
                reference.instant(date("2028-01-01").and_time(t(0, 0))),
            );
            for (expr, matches, times) in &exprs {
                for mode in [
                    OnHoliday::Skip,
                    OnHoliday::NextBusinessDay,
                    OnHoliday::PreviousBusinessDay,
                ] {
                    let trigger = cron(expr).on_calendar(calendar.clone(), mode).unwrap();
                    let want = reference.fires(matches, times, mode, range);
                    let got = walk(&trigger, tz, range);
                    // Saturdays are no business day in either calendar: skipped, none is left.
                    let none_left = *expr == "30 2 * * 6" && mode == OnHoliday::Skip;
                    assert_eq!(want.is_empty(), none_left, "{zone} {days}: {trigger}");
                    assert_eq!(got, want, "{zone} {days}: {trigger}");
                }
            }
            for (which, time) in [(Which::Last, t(18, 0)), (Which::First, t(2, 30))] {
                let trigger = BusinessDayOfMonth::trigger(which, time, calendar.clone());
                let want = reference.month_ends(which, time, range);
                assert_eq!(want.len(), 24);
                assert_eq!(walk(&trigger, tz, range), want, "{zone} {days}: {trigger}");
            }
            // Without a fixed time of day: `skip` keeps the fires of business days only.
            let trigger = cron("0 */6 * * *").on_calendar(calendar.clone(), OnHoliday::Skip);
            let got = walk(&trigger.unwrap(), tz, range);
            let plain = walk(&cron("0 */6 * * *"), tz, range);
            let business =
                |i: &DateTime<Utc>| reference.business(i.with_timezone(&tz).date_naive());
            assert_eq!(
                got,
                plain.iter().copied().filter(business).collect::<Vec<_>>()
            );
            let every = Trigger::Every(std::time::Duration::from_secs(5 * 3600));
            let got = walk(
                &every
                    .clone()
                    .on_calendar(calendar.clone(), OnHoliday::Skip)
                    .unwrap(),
                tz,
                range,
            );
            let plain = walk(&every, tz, range);
            assert_eq!(
                got,
                plain.iter().copied().filter(business).collect::<Vec<_>>()
            );
        }
    }

    /// The cases the reference covers, spelled out where a reader can check them.
    #[test]
    fn moved_fires_meet_the_spring_forward_gap_and_month_ends_skip_holidays() {
        let ny = chrono_tz::America::New_York;
        let cal = named("sun-thu", Holidays::from_dates(test_holidays()));
        let local = |trigger: &Trigger, from: &str, n: usize| -> Vec<String> {
            let from = first_instant_at_or_after(ny, from.parse().unwrap());
            trigger
                .upcoming(from, ny, n)
                .iter()
                .map(|t| t.with_timezone(&ny).to_rfc3339())
                .collect()
        };
        // Saturday 2026-03-07 is no business day (sun-thu): moved onto Sunday 03-08, whose
        // 02:30 is in the spring-forward gap, so it fires at 03:00 EDT, as does Sunday's own.
        // Friday's too: three nominal fires, one slot.
        let next = cron("30 2 * * *")
            .on_calendar(cal.clone(), OnHoliday::NextBusinessDay)
            .unwrap();
        assert_eq!(
            local(&next, "2026-03-05T12:00:00", 3),
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-10T02:30:00-04:00",
                "2026-03-11T02:30:00-04:00"
            ],
            "Monday 03-09 is a holiday: moved to Tuesday with Tuesday's own"
        );
        // `previous_business_day` moves Friday and Saturday back onto Thursday; from Thursday
        // 03:00 the next is Sunday's.
        let previous = cron("30 2 * * *")
            .on_calendar(cal.clone(), OnHoliday::PreviousBusinessDay)
            .unwrap();
        assert_eq!(
            local(&previous, "2026-03-04T12:00:00", 3),
            [
                "2026-03-05T02:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
        // Last business day of December 2026 (mon-fri): the 31st is a holiday, so the 30th.
        let cal = named("mon-fri", Holidays::from_dates(test_holidays()));
        let month_end = BusinessDayOfMonth::trigger(Which::Last, t(18, 0), cal);
        assert_eq!(
            local(&month_end, "2026-11-30T18:00:00", 2),
            ["2026-12-30T18:00:00-05:00", "2027-01-29T18:00:00-05:00"]
        );
    }

    #[test]
    fn moving_needs_a_fixed_time_and_month_ends_a_time_of_day() {
        let cal = named("mon-fri", Holidays::default());
        let err = |t: Trigger| {
            t.on_calendar(cal.clone(), OnHoliday::NextBusinessDay)
                .unwrap_err()
                .0
        };
        assert_eq!(
            err(cron("*/15 * * * *")),
            "`next_business_day` moves a fire to the same time of day on another day, and a cron \
             expression whose hour is a wildcard has no fixed time of day; use `on_holiday = \
             \"skip\"`, or a schedule with a fixed hour such as `30 2 * * *`"
        );
        assert!(
            err(Trigger::Every(std::time::Duration::from_secs(60))).contains("an `every` interval")
        );
        assert_eq!(
            BusinessDayOfMonth::parse("@last_business_day 18:00"),
            Some(Ok((Which::Last, t(18, 0))))
        );
        assert_eq!(
            BusinessDayOfMonth::parse("@First_Business_Day 7:05"),
            Some(Ok((Which::First, t(7, 5))))
        );
        assert_eq!(BusinessDayOfMonth::parse("@daily"), None);
        for bad in [
            "@last_business_day",
            "@last_business_day 24:00",
            "@last_business_day 18:0",
            "@last_business_day 18:00 x",
            "@last_business_day 6pm",
        ] {
            assert_eq!(
                BusinessDayOfMonth::parse(bad).unwrap().unwrap_err().0,
                "`@last_business_day` takes a local time of day `HH:MM` (00:00 to 23:59), e.g. \
                 `@last_business_day 18:00`",
                "{bad}"
            );
        }
    }

    /// A schedule that matches no business day has no next fire (and `tickler check` refuses
    /// it), found within a bounded search.
    #[test]
    fn a_schedule_on_no_business_day_never_fires() {
        let cal = named("mon-fri", Holidays::default());
        let after = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for trigger in [
            cron("0 9 * * 6,0").on_calendar(cal.clone(), OnHoliday::Skip),
            cron("0 * * * 6").on_calendar(cal.clone(), OnHoliday::Skip),
        ] {
            assert_eq!(trigger.unwrap().next_after(after, Tz::UTC), None);
        }
        let moved = cron("0 9 * * 6").on_calendar(cal, OnHoliday::NextBusinessDay);
        assert_eq!(
            moved.unwrap().next_after(after, Tz::UTC),
            Some(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap())
        );
    }
}
