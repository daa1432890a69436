//! What the billing jobs and commands share: billing periods of a subscription, reminder
//! offsets, and (in submodules) CSV import and the demo data.

use chrono::{Datelike, Days, Months, NaiveDate};

use crate::store::billing::SubscriptionRow;

pub mod demo;
pub mod import;
pub mod messages;
pub mod payments;
pub mod providers;

/// The billing intervals a subscription may have.
pub const INTERVALS: &[&str] = &["monthly", "weekly", "yearly"];

/// The day `anchor` of the month of `date`, or the month's last day when it is shorter.
fn anchored(date: NaiveDate, anchor: u32) -> NaiveDate {
    let first = date.with_day(1).unwrap_or(date);
    let last = (first + Months::new(1)).pred_opt().unwrap_or(first);
    first.with_day(anchor.min(last.day())).unwrap_or(last)
}

/// The period starts (anchor dates) of a subscription from the one at or before `from` to the
/// first after `to`.
fn anchors(sub: &SubscriptionRow, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    let anchor = sub.anchor_day.max(1) as u32;
    let mut out = vec![];
    match sub.interval.as_str() {
        "weekly" => {
            let weekday = anchor.clamp(1, 7);
            let back = (from.weekday().number_from_monday() + 7 - weekday) % 7;
            let mut d = from - Days::new(back as u64);
            while d <= to + Days::new(7) {
                out.push(d);
                d = d + Days::new(7);
            }
        }
        "yearly" => {
            let month = sub.start_date.month();
            for year in (from.year() - 1)..=(to.year() + 1) {
                if let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) {
                    out.push(anchored(first, anchor));
                }
            }
        }
        _ => {
            let mut month = (from.with_day(1).unwrap_or(from)) - Months::new(1);
            while month <= to + Months::new(1) {
                out.push(anchored(month, anchor));
                month = month + Months::new(1);
            }
        }
    }
    out
}

/// The billing periods `(start, end)` of `sub` that overlap `[from, to]`: each starts on an
/// anchor day on or after the subscription's start and ends the day before the next one (or
/// on the subscription's end date). A first partial period before the first anchor day is not
/// invoiced automatically.
pub fn periods(
    sub: &SubscriptionRow,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<(NaiveDate, NaiveDate)> {
    let starts = anchors(sub, from, to);
    starts
        .windows(2)
        .filter_map(|w| {
            let (start, next) = (w[0], w[1]);
            let mut end = next.pred_opt()?;
            if let Some(e) = sub.end_date {
                if start > e {
                    return None;
                }
                end = end.min(e);
            }
            (start >= sub.start_date && start <= to && end >= from).then_some((start, end))
        })
        .collect()
}

/// Why a reminder offset cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    /// Not `Nd` or `-Nd` with N at most 3650 (the text as written).
    #[error(
        "invalid offset `{0}`: write days before the due date as `7d`, `1d`, `0d` (the due date) \
         or `-3d` (3 days after it)"
    )]
    Invalid(String),
}

/// Reads a reminder offset: `7d` (days before the due date), `0d` (the due date), `-3d`
/// (three days after it).
pub fn parse_offset(text: &str) -> Result<i64, OffsetError> {
    let t = text.trim();
    let (sign, body) = match t.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, t),
    };
    body.strip_suffix('d')
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n <= 3650)
        .map(|n| sign * n)
        .ok_or_else(|| OffsetError::Invalid(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn sub(interval: &str, anchor: i32, start: &str, end: Option<&str>) -> SubscriptionRow {
        SubscriptionRow {
            id: "s".into(),
            customer_id: "c".into(),
            amount_minor: 100,
            currency: "ZAR".into(),
            interval: interval.into(),
            anchor_day: anchor,
            start_date: d(start),
            end_date: end.map(d),
            payment_terms_days: 7,
        }
    }

    #[test]
    fn monthly_periods_clamp_to_short_months() {
        let s = sub("monthly", 31, "2026-01-01", None);
        assert_eq!(
            periods(&s, d("2026-02-10"), d("2026-03-05")),
            vec![
                (d("2026-01-31"), d("2026-02-27")),
                (d("2026-02-28"), d("2026-03-30")),
            ]
        );
        let s = sub("monthly", 1, "2026-11-15", Some("2027-01-10"));
        assert_eq!(
            periods(&s, d("2026-11-20"), d("2027-02-20")),
            vec![
                (d("2026-12-01"), d("2026-12-31")),
                (d("2027-01-01"), d("2027-01-10"))
            ]
        );
    }

    #[test]
    fn weekly_and_yearly_periods() {
        // 2026-11-23 is a Monday; anchor 5 is Friday.
        let s = sub("weekly", 5, "2026-01-01", None);
        assert_eq!(
            periods(&s, d("2026-11-23"), d("2026-11-30")),
            vec![
                (d("2026-11-20"), d("2026-11-26")),
                (d("2026-11-27"), d("2026-12-03")),
            ]
        );
        let s = sub("yearly", 1, "2025-03-01", None);
        assert_eq!(
            periods(&s, d("2026-02-20"), d("2026-03-10")),
            vec![
                (d("2025-03-01"), d("2026-02-28")),
                (d("2026-03-01"), d("2027-02-28"))
            ]
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("7d"), Ok(7));
        assert_eq!(parse_offset("0d"), Ok(0));
        assert_eq!(parse_offset("-3d"), Ok(-3));
        assert!(
            parse_offset("7")
                .unwrap_err()
                .to_string()
                .starts_with("invalid offset `7`")
        );
        assert!(parse_offset("--9d").is_err());
        assert!(parse_offset("99999d").is_err());
    }

    #[test]
    fn bad_offsets_say_how_to_write_one() {
        for text in ["7", "--9d", "99999d", "d", " 7 d", "7days"] {
            assert_eq!(
                parse_offset(text).unwrap_err().to_string(),
                format!(
                    "invalid offset `{text}`: write days before the due date as `7d`, `1d`, `0d` \
                     (the due date) or `-3d` (3 days after it)"
                )
            );
        }
        assert_eq!(parse_offset(" 3d ").ok(), Some(3));
    }
}
