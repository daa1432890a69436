//! Business days: which weekdays count (`"mon-fri"`) and which dates are holidays (a holiday
//! file). Used by job calendars (`[calendars.X]`, `on_holiday`, `@last_business_day`) and by
//! send windows (`send_window.days`, `send_window.holidays`). Pure date arithmetic: reading the
//! holiday file is `config/`'s, this room parses its text.
//!
//! A holiday file is TOML:
//!
//! ```toml
//! [[holiday]]
//! date = "2026-12-25"
//! name = "Christmas Day"   # optional
//! ```

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// A set of weekdays, as `"mon-fri"`, `"mon,wed,fri"`, `"sat-sun"` or `"fri-mon"` (a range may
/// wrap past Sunday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Weekdays(u8);

/// Why a weekday list, a holiday file or a calendar could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error(
        "invalid weekdays `{0}`: write days as `mon-fri`, `mon,wed,fri` or `sat-sun` (mon tue \
         wed thu fri sat sun)"
    )]
    Weekdays(String),
    #[error("invalid holiday file: {0}; write `[[holiday]]` tables with `date = YYYY-MM-DD`")]
    Holidays(String),
    #[error("a calendar with no business day (`days` is empty) would never fire or send")]
    NoBusinessDay,
}

pub type Result<T> = std::result::Result<T, CalendarError>;

impl Weekdays {
    pub const MON_FRI: Weekdays = Weekdays(0b0011111);
    pub const ALL: Weekdays = Weekdays(0b1111111);

    pub fn parse(text: &str) -> Result<Weekdays> {
        let bad = || CalendarError::Weekdays(text.to_string());
        let mut bits = 0u8;
        for part in text.split(',').map(str::trim) {
            let (from, to) = match part.split_once('-') {
                Some((a, b)) => (
                    day(a.trim()).ok_or_else(bad)?,
                    day(b.trim()).ok_or_else(bad)?,
                ),
                None => {
                    let d = day(part).ok_or_else(bad)?;
                    (d, d)
                }
            };
            let mut d = from;
            loop {
                bits |= 1 << d.num_days_from_monday();
                if d == to {
                    break;
                }
                d = d.succ();
            }
        }
        if bits == 0 {
            return Err(bad());
        }
        Ok(Weekdays(bits))
    }

    pub fn contains(self, d: Weekday) -> bool {
        self.0 & (1 << d.num_days_from_monday()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

fn day(text: &str) -> Option<Weekday> {
    Some(match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

/// Holidays by date, with their names (empty when the file gives none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Holidays(BTreeMap<NaiveDate, String>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    #[serde(default)]
    holiday: Vec<HolidayEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayEntry {
    date: toml::Value,
    #[serde(default)]
    name: String,
}

impl Holidays {
    /// Parses a holiday file's text. A date given twice, or a value that is not a plain date,
    /// is refused with its line.
    pub fn parse(text: &str) -> Result<Holidays> {
        let file: HolidayFile =
            toml::from_str(text).map_err(|e| CalendarError::Holidays(describe(text, &e)))?;
        let mut days = BTreeMap::new();
        for entry in file.holiday {
            let date = match &entry.date {
                toml::Value::Datetime(d) => match (d.date, d.time, d.offset) {
                    (Some(x), None, None) => {
                        NaiveDate::from_ymd_opt(x.year.into(), x.month.into(), x.day.into())
                    }
                    _ => None,
                },
                toml::Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                _ => None,
            }
            .ok_or_else(|| {
                CalendarError::Holidays(format!("`{}` is not a date (`YYYY-MM-DD`)", entry.date))
            })?;
            if days.insert(date, entry.name).is_some() {
                return Err(CalendarError::Holidays(format!("{date} is listed twice")));
            }
        }
        Ok(Holidays(days))
    }

    pub fn from_dates(dates: impl IntoIterator<Item = NaiveDate>) -> Holidays {
        Holidays(dates.into_iter().map(|d| (d, String::new())).collect())
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.0.contains_key(&date)
    }

    /// The holiday's name, when `date` is one.
    pub fn name(&self, date: NaiveDate) -> Option<&str> {
        self.0.get(&date).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn describe(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    match line {
        Some(l) => format!("line {l}: {}", e.message().trim()),
        None => e.message().trim().to_string(),
    }
}

/// Business days: weekdays in `days` that are not holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub days: Weekdays,
    pub holidays: Holidays,
}

/// How far `next`/`previous` look for a business day: a year of holidays in a row is a wrong
/// file, not a calendar.
const SEARCH_DAYS: u64 = 366;

impl Calendar {
    pub fn new(days: Weekdays, holidays: Holidays) -> Result<Calendar> {
        if days.is_empty() {
            return Err(CalendarError::NoBusinessDay);
        }
        Ok(Calendar { days, holidays })
    }

    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        self.days.contains(date.weekday()) && !self.holidays.contains(date)
    }

    /// The first business day on or after `date`; `None` when none comes within a year.
    pub fn next_business_day(&self, date: NaiveDate) -> Option<NaiveDate> {
        (0..=SEARCH_DAYS)
            .filter_map(|n| date.checked_add_days(Days::new(n)))
            .find(|d| self.is_business_day(*d))
    }

    /// The last business day on or before `date`; `None` when none came within a year.
    pub fn previous_business_day(&self, date: NaiveDate) -> Option<NaiveDate> {
        (0..=SEARCH_DAYS)
            .filter_map(|n| date.checked_sub_days(Days::new(n)))
            .find(|d| self.is_business_day(*d))
    }

    /// The last business day of `year`-`month`; `None` when the month has none.
    pub fn last_business_day(&self, year: i32, month: u32) -> Option<NaiveDate> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let last = first
            .checked_add_months(chrono::Months::new(1))?
            .pred_opt()?;
        self.previous_business_day(last)
            .filter(|d| d.month() == month)
    }

    /// The first business day of `year`-`month`; `None` when the month has none.
    pub fn first_business_day(&self, year: i32, month: u32) -> Option<NaiveDate> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        self.next_business_day(first).filter(|d| d.month() == month)
    }
}

/// `date` as chrono's `Display` writes it (`2026-12-03`). chrono's goes through its `Debug`, a
/// character at a time, and a message's context writes four dates: this writes the years
/// 0-9999 directly and asks chrono for the others (a sign, or more digits).
pub fn iso_date(date: NaiveDate) -> String {
    let Ok(year @ 0..=9999) = u32::try_from(date.year()) else {
        return date.to_string();
    };
    let mut text = String::with_capacity(10);
    push_digits(&mut text, year, 4);
    text.push('-');
    push_digits(&mut text, date.month(), 2);
    text.push('-');
    push_digits(&mut text, date.day(), 2);
    text
}

/// `date` as chrono's `format("%-d %B %Y")` writes it (`3 December 2026`), which parses its
/// format at every call: the years 0-9999 written directly, the others by chrono.
pub fn long_date(date: NaiveDate) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let Ok(year @ 0..=9999) = u32::try_from(date.year()) else {
        return date.format("%-d %B %Y").to_string();
    };
    let month = MONTHS[date.month0() as usize];
    let mut text = String::with_capacity(month.len() + 8);
    push_digits(&mut text, date.day(), if date.day() < 10 { 1 } else { 2 });
    text.push(' ');
    text.push_str(month);
    text.push(' ');
    push_digits(&mut text, year, 4);
    text
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(text: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        text.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both date texts are chrono's, on every day of the years around each width of a year
    /// (1, 2, 3 and 4 digits, the millennia) and of 1969-2100, and on years chrono signs.
    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        let years = (0..=2)
            .chain(9..=11)
            .chain(99..=101)
            .chain(999..=1001)
            .chain(1969..=2100)
            .chain(9998..=9999);
        let mut days = 0;
        for year in years {
            let mut d = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
            while d.year() == year {
                assert_eq!(iso_date(d), d.to_string());
                assert_eq!(long_date(d), d.format("%-d %B %Y").to_string());
                d = d.succ_opt().unwrap();
                days += 1;
            }
        }
        assert_eq!(days, 146 * 365 + 33);
        for d in [
            NaiveDate::from_ymd_opt(-1, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(10000, 1, 1).unwrap(),
            NaiveDate::MIN,
            NaiveDate::MAX,
        ] {
            assert_eq!(iso_date(d), d.to_string());
            assert_eq!(long_date(d), d.format("%-d %B %Y").to_string());
        }
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn weekday_lists_and_ranges() {
        let w = Weekdays::parse("mon-fri").unwrap();
        assert_eq!(w, Weekdays::MON_FRI);
        assert!(w.contains(Weekday::Fri) && !w.contains(Weekday::Sat));
        let w = Weekdays::parse("fri-mon").unwrap();
        assert!(w.contains(Weekday::Sun) && w.contains(Weekday::Mon) && !w.contains(Weekday::Tue));
        let w = Weekdays::parse("Mon, wed,FRI").unwrap();
        assert!(w.contains(Weekday::Wed) && !w.contains(Weekday::Tue));
        assert_eq!(Weekdays::parse("mon-sun").unwrap(), Weekdays::ALL);
        for bad in ["", "mon-", "monday-frid", "1-5", "mon;fri"] {
            assert_eq!(
                Weekdays::parse(bad).unwrap_err().to_string(),
                format!(
                    "invalid weekdays `{bad}`: write days as `mon-fri`, `mon,wed,fri` or \
                     `sat-sun` (mon tue wed thu fri sat sun)"
                )
            );
        }
    }

    #[test]
    fn holiday_files_are_read_and_bad_ones_refused_with_their_line() {
        let h = Holidays::parse(
            "[[holiday]]\ndate = 2026-12-25\nname = \"Christmas Day\"\n\n[[holiday]]\ndate = \
             \"2026-12-16\"\n",
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h.name(date("2026-12-25")), Some("Christmas Day"));
        assert!(h.contains(date("2026-12-16")) && !h.contains(date("2026-12-17")));
        assert!(Holidays::parse("").unwrap().is_empty());
        let err = |t: &str| Holidays::parse(t).unwrap_err().to_string();
        assert_eq!(
            err("[[holiday]]\ndate = 2026-12-25T10:00:00\n"),
            "invalid holiday file: `2026-12-25T10:00:00` is not a date (`YYYY-MM-DD`); write \
             `[[holiday]]` tables with `date = YYYY-MM-DD`"
        );
        assert_eq!(
            err("[[holiday]]\ndate = 2026-12-25\n[[holiday]]\ndate = 2026-12-25\n"),
            "invalid holiday file: 2026-12-25 is listed twice; write `[[holiday]]` tables with \
             `date = YYYY-MM-DD`"
        );
        assert!(
            err("[[holiday]]\ndate = 2026-12-25\nwhen = 1\n")
                .starts_with("invalid holiday file: line 3: unknown field `when`"),
            "{}",
            err("[[holiday]]\ndate = 2026-12-25\nwhen = 1\n")
        );
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let cal = Calendar::new(
            Weekdays::MON_FRI,
            Holidays::from_dates([date("2026-12-25"), date("2026-12-31")]),
        )
        .unwrap();
        // Thursday 2026-12-31 is a holiday, Jan 1st 2027 a Friday.
        assert_eq!(cal.last_business_day(2026, 12), Some(date("2026-12-30")));
        assert_eq!(
            cal.next_business_day(date("2026-12-25")),
            Some(date("2026-12-28"))
        );
        assert_eq!(
            cal.previous_business_day(date("2026-12-27")),
            Some(date("2026-12-24"))
        );
        assert_eq!(cal.first_business_day(2027, 1), Some(date("2027-01-01")));
        // Brute force: for two years, a business day is a weekday that is no holiday, and
        // `next`/`previous` land on the nearest one.
        let mut d = date("2026-01-01");
        while d < date("2028-01-01") {
            let weekday = !matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
            assert_eq!(cal.is_business_day(d), weekday && !cal.holidays.contains(d));
            let next = cal.next_business_day(d).unwrap();
            assert!(cal.is_business_day(next) && next >= d);
            assert!(
                d.iter_days()
                    .take_while(|x| *x < next)
                    .all(|x| !cal.is_business_day(x))
            );
            d = d.succ_opt().unwrap();
        }
        assert_eq!(
            Calendar::new(Weekdays(0), Holidays::default()).unwrap_err(),
            CalendarError::NoBusinessDay
        );
    }
}
