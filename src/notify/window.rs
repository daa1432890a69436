//! Send windows (DESIGN.md invariant 6): the hours, weekdays and holidays in which a message may
//! reach its recipient, read in the recipient's zone. A channel, a job or a campaign may each
//! have one (`send_window = { hours = "08:00-20:00", days = "mon-fri", holidays = "h.toml" }`);
//! a message goes out only when every window that applies to it is open. Outside them, the
//! pipeline records it `deferred` with the instant they next open, and a `deliver_message` task
//! sends it then.

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::schedule::first_instant_at_or_after;
use crate::time::calendar::{CalendarError, Holidays, Weekdays};

/// `send_window` as written in `config.toml`; `holidays` is a path, read by the caller.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRaw {
    pub hours: Option<String>,
    pub days: Option<String>,
    pub holidays: Option<std::path::PathBuf>,
}

/// Why a `send_window` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "invalid `hours` `{0}`: write the opening and closing local times as `08:00-20:00` \
         (closing after opening, `24:00` for midnight)"
    )]
    Hours(String),
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("cannot read the holiday file `{path}`: {error}")]
    HolidayFile { path: String, error: String },
    #[error("a `send_window` needs at least one of `hours`, `days` and `holidays`")]
    Empty,
}

/// A window: local opening hours on some weekdays, except holidays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWindow {
    /// Minutes after local midnight: opens at `open`, closes at `close` (at most 1440).
    open: u32,
    close: u32,
    /// As written, for messages and `tickler list`.
    hours: String,
    days: String,
    weekdays: Weekdays,
    /// Kept in a deferred message's task too, so it is judged as it was deferred.
    holidays: Holidays,
}

/// How far ahead the next opening is looked for: a window closed for a whole year is a wrong
/// holiday file, not a window.
const SEARCH_DAYS: u64 = 400;

impl SendWindow {
    /// Builds a window from its keys; `read` returns a holiday file's text by its path.
    pub fn build(
        raw: &WindowRaw,
        read: impl FnOnce(&std::path::Path) -> std::io::Result<String>,
    ) -> Result<SendWindow, WindowError> {
        if raw.hours.is_none() && raw.days.is_none() && raw.holidays.is_none() {
            return Err(WindowError::Empty);
        }
        let hours = raw.hours.clone().unwrap_or_else(|| "00:00-24:00".into());
        let (open, close) = parse_hours(&hours)?;
        let days = raw.days.clone().unwrap_or_else(|| "mon-sun".into());
        let weekdays = Weekdays::parse(&days)?;
        let holidays = match &raw.holidays {
            None => Holidays::default(),
            Some(path) => {
                let text = read(path).map_err(|e| WindowError::HolidayFile {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })?;
                Holidays::parse(&text)?
            }
        };
        Ok(SendWindow {
            open,
            close,
            hours,
            days,
            weekdays,
            holidays,
        })
    }

    /// `08:00-20:00 mon-fri` (and `except N holidays`), for people.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.hours, self.days);
        if !self.holidays.is_empty() {
            s.push_str(&format!(" except {} holidays", self.holidays.len()));
        }
        s
    }

    fn day_open(&self, d: NaiveDate) -> bool {
        use chrono::Datelike;
        self.weekdays.contains(d.weekday()) && !self.holidays.contains(d)
    }

    /// The first instant at or after `at` when the window is open in `tz`: `at` itself when
    /// it is open then. `None` when it does not open within 400 days.
    pub fn next_open(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = at.with_timezone(&tz).date_naive().pred_opt()?;
        for n in 0..=SEARCH_DAYS {
            let d = start.checked_add_days(Days::new(n))?;
            if !self.day_open(d) {
                continue;
            }
            let open = first_instant_at_or_after(tz, d.and_time(minutes(self.open)));
            let close = if self.close >= 1440 {
                first_instant_at_or_after(tz, d.succ_opt()?.and_time(NaiveTime::MIN))
            } else {
                first_instant_at_or_after(tz, d.and_time(minutes(self.close)))
            };
            if at < open {
                return Some(open);
            }
            if at < close {
                return Some(at);
            }
        }
        None
    }
}

/// The task type that sends a deferred message (`queue::tasks::deliver_message`).
pub const DELIVER_TASK: &str = "deliver_message";

/// How often a deferred message's task retries a failed send before it stays `failed`.
const DELIVER_RETRIES: i32 = 5;

/// A deferred message as its task keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeferredMessage {
    pub key: String,
    pub channel: super::ChannelKind,
    pub recipient: Option<String>,
    pub template: String,
    pub invoice_id: Option<String>,
    pub context: serde_json::Value,
    pub zone: Option<String>,
    pub window: Option<SendWindow>,
    /// The job (or task) that meant to send it: its claim is recorded under that name.
    pub job: String,
}

impl DeferredMessage {
    /// The message again, with its zone and window read back.
    pub fn message(&self) -> super::Message {
        super::Message {
            key: self.key.clone(),
            channel: self.channel,
            recipient: self.recipient.clone(),
            template: self.template.clone(),
            invoice_id: self.invoice_id.clone(),
            context: self.context.clone(),
            zone: self.zone.as_deref().and_then(|z| z.parse().ok()),
            window: self.window.clone().map(Arc::new),
        }
    }
}

/// The task that sends `m` at `at`, for `job`. It names the message's invoice, so that a
/// payment cancels it in the transaction that records the payment.
pub fn deferred_task(
    m: &super::Message,
    job: &str,
    at: DateTime<Utc>,
) -> crate::store::queue::NewTask {
    let data = DeferredMessage {
        key: m.key.clone(),
        channel: m.channel,
        recipient: m.recipient.clone(),
        template: m.template.clone(),
        invoice_id: m.invoice_id.clone(),
        context: m.context.clone(),
        zone: m.zone.map(|z| z.name().to_string()),
        window: m.window.as_deref().cloned(),
        job: job.to_string(),
    };
    crate::store::queue::NewTask {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: crate::store::queue::NO_ORG.to_string(),
        campaign_id: None,
        invoice_id: m.invoice_id.clone(),
        customer_id: None,
        task_type: DELIVER_TASK.to_string(),
        task_data: serde_json::to_string(&data).ok(),
        scheduled_for: crate::store::queue::task_time(at),
        max_retries: DELIVER_RETRIES,
        priority: 0,
        metadata: Some(serde_json::json!({ "dedup_key": m.key }).to_string()),
    }
}

fn minutes(m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap_or(NaiveTime::MIN)
}

fn parse_hours(text: &str) -> Result<(u32, u32), WindowError> {
    let bad = || WindowError::Hours(text.to_string());
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let at = |s: &str| -> Option<u32> {
        let s = s.trim();
        if s == "24:00" {
            return Some(1440);
        }
        let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
        Some(t.hour() * 60 + t.minute())
    };
    let (open, close) = (at(a).ok_or_else(bad)?, at(b).ok_or_else(bad)?);
    if open >= close || open >= 1440 {
        return Err(bad());
    }
    Ok((open, close))
}

/// The first instant at or after `at` when every window in `windows` is open in `tz`; `None`
/// when they never open together within the search (e.g. disjoint hours).
pub fn open_together(windows: &[&SendWindow], at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    let mut t = at;
    // Each round moves `t` to the next opening of a closed window, so it only grows; windows
    // that never meet run out of rounds instead of looping.
    for _ in 0..64 {
        let mut moved = false;
        for w in windows {
            let next = w.next_open(t, tz)?;
            if next != t {
                t = next;
                moved = true;
            }
        }
        if !moved {
            return Some(t);
        }
        if t - at > TimeDelta::days(SEARCH_DAYS as i64) {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(hours: &str, days: &str, holidays: &[&str]) -> SendWindow {
        let raw = WindowRaw {
            hours: Some(hours.into()),
            days: Some(days.into()),
            holidays: (!holidays.is_empty()).then(|| "h.toml".into()),
        };
        let text: String = holidays
            .iter()
            .map(|d| format!("[[holiday]]\ndate = {d}\n"))
            .collect();
        SendWindow::build(&raw, |_| Ok(text)).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_next_opening_is_read_in_the_recipients_zone() {
        let w = window("08:00-20:00", "mon-fri", &["2026-12-25"]);
        let jhb: Tz = "Africa/Johannesburg".parse().unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        // Monday 2026-11-30 05:00 UTC: 07:00 in Johannesburg (opens at 06:00 UTC), 00:00 in
        // New York (opens at 13:00 UTC).
        let at = utc("2026-11-30T05:00:00Z");
        assert_eq!(w.next_open(at, jhb), Some(utc("2026-11-30T06:00:00Z")));
        assert_eq!(w.next_open(at, ny), Some(utc("2026-11-30T13:00:00Z")));
        // Inside: itself.
        let inside = utc("2026-11-30T12:00:00Z");
        assert_eq!(w.next_open(inside, jhb), Some(inside));
        // Friday 20:00 closes until Monday 08:00; Christmas (a Friday) moves to Monday 28th.
        assert_eq!(
            w.next_open(utc("2026-12-04T18:00:00Z"), jhb),
            Some(utc("2026-12-07T06:00:00Z"))
        );
        assert_eq!(
            w.next_open(utc("2026-12-24T19:00:00Z"), jhb),
            Some(utc("2026-12-28T06:00:00Z"))
        );
    }

    #[test]
    fn windows_follow_dst_and_open_together() {
        let w = window("02:30-04:00", "mon-sun", &[]);
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2027-03-14: 02:00-03:00 does not exist in New York; the window opens at 03:00 EDT.
        assert_eq!(
            w.next_open(utc("2027-03-14T05:00:00Z"), ny),
            Some(utc("2027-03-14T07:00:00Z"))
        );
        let a = window("08:00-12:00", "mon-fri", &[]);
        let b = window("10:00-18:00", "tue-sat", &[]);
        let utc_tz: Tz = "UTC".parse().unwrap();
        // Monday 09:00: a open, b closed (Monday) → Tuesday 10:00.
        assert_eq!(
            open_together(&[&a, &b], utc("2026-11-30T09:00:00Z"), utc_tz),
            Some(utc("2026-12-01T10:00:00Z"))
        );
        let c = window("13:00-14:00", "mon-sun", &[]);
        assert_eq!(
            open_together(&[&a, &c], utc("2026-11-30T09:00:00Z"), utc_tz),
            None
        );
        // Brute force over a month in a DST zone, minute by minute at 7-minute steps: the
        // opening found is open, and nothing between `at` and it is.
        let w = window("08:00-20:00", "mon-fri", &["2027-03-10"]);
        let mut at = utc("2027-03-01T00:00:00Z");
        while at < utc("2027-04-01T00:00:00Z") {
            let open = w.next_open(at, ny).unwrap();
            let local = |t: DateTime<Utc>| t.with_timezone(&ny);
            let is_open = |t: DateTime<Utc>| {
                let l = local(t);
                w.day_open(l.date_naive())
                    && l.time() >= NaiveTime::from_hms_opt(8, 0, 0).unwrap()
                    && l.time() < NaiveTime::from_hms_opt(20, 0, 0).unwrap()
            };
            assert!(is_open(open), "{at} → {open}");
            let mut t = at;
            while t < open {
                assert!(!is_open(t), "{t} is open before {open}");
                t += TimeDelta::minutes(30);
            }
            at += TimeDelta::minutes(7 * 60 + 7);
        }
    }

    #[test]
    fn bad_windows_are_refused_with_what_to_write() {
        let err = |hours: &str| {
            SendWindow::build(
                &WindowRaw {
                    hours: Some(hours.into()),
                    ..Default::default()
                },
                |_| Ok(String::new()),
            )
            .unwrap_err()
            .to_string()
        };
        for bad in ["8-20", "20:00-08:00", "08:00", "08:00-25:00", "24:00-24:00"] {
            assert_eq!(
                err(bad),
                format!(
                    "invalid `hours` `{bad}`: write the opening and closing local times as \
                     `08:00-20:00` (closing after opening, `24:00` for midnight)"
                )
            );
        }
        assert_eq!(
            SendWindow::build(&WindowRaw::default(), |_| Ok(String::new()))
                .unwrap_err()
                .to_string(),
            "a `send_window` needs at least one of `hours`, `days` and `holidays`"
        );
        let missing = SendWindow::build(
            &WindowRaw {
                holidays: Some("nope.toml".into()),
                ..Default::default()
            },
            |_| Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            missing,
            "cannot read the holiday file `nope.toml`: entity not found"
        );
    }
}
