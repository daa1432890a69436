//! `[calendars.NAME]`: business days for the jobs that name them (`calendar = "NAME"`): `days`
//! (weekdays, `mon-fri` when absent) and `holidays` (a holiday file, relative to the config
//! file's directory). The file is read here, once per load, so a reload sees its new content;
//! `schedule/` gets the calendar as a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::problems::Collector;
use super::read::named_entries;
use crate::schedule::NamedCalendar;
use crate::time::calendar::{Calendar, Holidays, Weekdays};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarRaw {
    days: Option<Spanned<String>>,
    holidays: Option<Spanned<String>>,
}

/// The calendars of `[calendars]` by name; one that is refused is reported to `c` and left
/// out. Holiday files are read relative to `config_dir`.
pub(super) fn calendars(
    value: Option<Spanned<DeValue<'_>>>,
    config_dir: &Path,
    c: &mut Collector<'_>,
) -> BTreeMap<String, NamedCalendar> {
    let mut out = BTreeMap::new();
    for (name, at, raw) in named_entries::<CalendarRaw>(value, "calendars", "calendar", c) {
        let at = Some(at);
        let what = |key: &str| format!("invalid `{key}` in `[calendars.{name}]`");
        let days = match &raw.days {
            None => Some(Weekdays::MON_FRI),
            Some(days) => match Weekdays::parse(days.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    c.push(what("days"), Some(days.span()), e.to_string());
                    None
                }
            },
        };
        let holidays = match &raw.holidays {
            None => Some(Holidays::default()),
            Some(file) => match read_holidays(config_dir, file.get_ref()) {
                Ok(h) => Some(h),
                Err(detail) => {
                    c.push(what("holidays"), Some(file.span()), detail);
                    None
                }
            },
        };
        let (Some(days), Some(holidays)) = (days, holidays) else {
            continue;
        };
        match Calendar::new(days, holidays) {
            Ok(calendar) => {
                let named = NamedCalendar {
                    name: Arc::from(name.as_str()),
                    calendar: Arc::new(calendar),
                };
                out.insert(name, named);
            }
            Err(e) => c.push(format!("invalid `[calendars.{name}]`"), at, e.to_string()),
        }
    }
    out
}

/// The holidays of the file `file` (relative to `config_dir`), or what is wrong with it.
fn read_holidays(config_dir: &Path, file: &str) -> Result<Holidays, String> {
    let path = if config_dir == Path::new(".") {
        PathBuf::from(file)
    } else {
        config_dir.join(file)
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the holiday file `{}`: {e}; a relative path is read from the config \
             file's directory",
            path.display()
        )
    })?;
    Holidays::parse(&text).map_err(|e| format!("`{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;
    use crate::config::tests::errors;

    const JOB: &str = "[[job]]\nname = \"x\"\nkind = \"noop\"\nschedule = \"30 2 * * *\"\n";

    #[test]
    fn calendars_are_checked_with_their_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "[[holiday]]\ndate = 2026-02-30\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ok.toml"),
            "[[holiday]]\ndate = 2026-12-25\n",
        )
        .unwrap();
        let config = dir.path().join("config.toml");
        let err = |text: &str| parse(&config, text).unwrap_err().to_string();
        let file = |name: &str| dir.path().join(name).display().to_string();
        let c = config.display();
        let table = [
            (
                "[calendars.za]\ndays = \"mon-frx\"\n",
                format!(
                    "invalid `days` in `[calendars.za]` ({c} line 2, column 8): invalid weekdays \
                     `mon-frx`: write days as `mon-fri`, `mon,wed,fri` or `sat-sun` (mon tue wed \
                     thu fri sat sun)"
                ),
            ),
            (
                "[calendars.za]\nholidays = \"missing.toml\"\n",
                format!(
                    "invalid `holidays` in `[calendars.za]` ({c} line 2, column 12): cannot read \
                     the holiday file `{}`: No such file or directory (os error 2); a relative \
                     path is read from the config file's directory",
                    file("missing.toml")
                ),
            ),
            (
                "[calendars.za]\nholidays = \"bad.toml\"\n",
                format!(
                    "invalid `holidays` in `[calendars.za]` ({c} line 2, column 12): `{}`: \
                     invalid holiday file: line 2: invalid date, expected day between 01 and 28; write `[[holiday]]` tables \
                     with `date = YYYY-MM-DD`",
                    file("bad.toml")
                ),
            ),
            (
                "[calendars.za]\nweekdays = \"mon-fri\"\n",
                format!(
                    "invalid `[calendars]` section ({c} line 2, column 1): unknown field \
                     `weekdays`, expected `days` or `holidays`"
                ),
            ),
            (
                "[calendars.\"Z A\"]\n",
                format!(
                    "invalid `[calendars.Z A]` ({c} line 1, column 12): a calendar name is 1-64 \
                     of a-z, 0-9, `_` and `-`"
                ),
            ),
        ];
        for (text, want) in table {
            assert_eq!(err(&format!("{text}{JOB}")), want, "{text}");
        }
        let ok = parse(
            &config,
            &format!("[calendars.za]\nholidays = \"ok.toml\"\n{JOB}calendar = \"za\"\n"),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    /// A reload keeps a job's next fire only when its trigger is unchanged: the calendar's
    /// name, its days, its holiday file's content and `on_holiday` are all part of it.
    #[test]
    fn the_calendar_and_its_file_are_part_of_the_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let trigger = |holidays: &str, job: &str| {
            std::fs::write(dir.path().join("h.toml"), holidays).unwrap();
            let text = format!(
                "[calendars.za]\nholidays = \"h.toml\"\n[calendars.us]\nholidays = \
                 \"h.toml\"\n{JOB}{job}"
            );
            parse(&config, &text).unwrap().jobs[0].trigger.clone()
        };
        let christmas = "[[holiday]]\ndate = 2026-12-25\n";
        let base = trigger(christmas, "calendar = \"za\"\n");
        assert!(base == trigger(christmas, "calendar = \"za\"\n"));
        assert!(base == trigger(christmas, "calendar = \"za\"\non_holiday = \"skip\"\n"));
        for (holidays, job) in [
            ("[[holiday]]\ndate = 2026-12-24\n", "calendar = \"za\"\n"),
            ("", "calendar = \"za\"\n"),
            (christmas, "calendar = \"us\"\n"),
            (
                christmas,
                "calendar = \"za\"\non_holiday = \"next_business_day\"\n",
            ),
            (christmas, ""),
        ] {
            assert!(base != trigger(holidays, job), "{holidays} {job}");
        }
    }

    #[test]
    fn a_job_names_a_calendar_and_what_to_do_on_holidays() {
        let cal = "[calendars.za]\n[calendars.us]\ndays = \"mon-fri\"\n";
        let job = |keys: &str| format!("{cal}[[job]]\nname = \"x\"\nkind = \"noop\"\n{keys}");
        let table = [
            (
                job("schedule = \"30 2 * * *\"\ncalendar = \"zz\"\n"),
                "unknown calendar `zz` for job `x` (config.toml line 8, column 12): add \
                 `[calendars.zz]`, or use one of `us`, `za`",
            ),
            (
                "[[job]]\nname = \"x\"\nkind = \"noop\"\nschedule = \"30 2 * * *\"\ncalendar = \"zz\"\n"
                    .to_string(),
                "unknown calendar `zz` for job `x` (config.toml line 5, column 12): add a \
                 `[calendars.zz]` section with its `days` and `holidays`",
            ),
            (
                job("schedule = \"30 2 * * *\"\non_holiday = \"next_business_day\"\n"),
                "`on_holiday` without `calendar` for job `x` (config.toml line 8, column 14): \
                 `on_holiday` says what becomes of a fire on a day that is no business day of \
                 the job's `calendar`; add `calendar = \"NAME\"` naming a `[calendars.NAME]` \
                 section, or remove `on_holiday`",
            ),
            (
                job("schedule = \"30 2 * * *\"\ncalendar = \"za\"\non_holiday = \"later\"\n"),
                "invalid `on_holiday` for job `x` (config.toml line 9, column 14): expected one \
                 of `skip`, `next_business_day`, `previous_business_day` (found `later`)",
            ),
            (
                job("every = \"1h\"\ncalendar = \"za\"\non_holiday = \"next_business_day\"\n"),
                "invalid `on_holiday` for job `x` (config.toml line 9, column 14): \
                 `next_business_day` moves a fire to the same time of day on another day, and \
                 an `every` interval has no fixed time of day; use `on_holiday = \"skip\"`, or \
                 a schedule with a fixed hour such as `30 2 * * *`",
            ),
            (
                job(
                    "schedule = \"*/15 * * * *\"\ncalendar = \"za\"\non_holiday = \
                     \"previous_business_day\"\n",
                ),
                "invalid `on_holiday` for job `x` (config.toml line 9, column 14): \
                 `previous_business_day` moves a fire to the same time of day on another day, \
                 and a cron expression whose hour is a wildcard has no fixed time of day; use \
                 `on_holiday = \"skip\"`, or a schedule with a fixed hour such as `30 2 * * *`",
            ),
            (
                job("schedule = \"@last_business_day 18:00\"\n"),
                "schedule `@last_business_day 18:00` for job `x` needs a `calendar` (config.toml \
                 line 7, column 12): it fires on a business day of each month, which a calendar \
                 defines; add `calendar = \"NAME\"` naming a `[calendars.NAME]` section",
            ),
            (
                job("schedule = \"@last_business_day 6pm\"\ncalendar = \"za\"\n"),
                "invalid schedule `@last_business_day 6pm` for job `x` (config.toml line 7, \
                 column 12): `@last_business_day` takes a local time of day `HH:MM` (00:00 to \
                 23:59), e.g. `@last_business_day 18:00`",
            ),
            (
                job(
                    "schedule = \"@first_business_day 09:00\"\ncalendar = \"za\"\non_holiday = \
                     \"skip\"\n",
                ),
                "invalid `on_holiday` for job `x` (config.toml line 9, column 14): \
                 `@first_business_day` always fires on a business day; remove `on_holiday`",
            ),
            (
                job("schedule = \"0 9 * * 6,0\"\ncalendar = \"za\"\n"),
                "cron expression `0 9 * * 6,0` for job `x` never fires on calendar `za` \
                 (config.toml line 7, column 12): none of its fires falls on a business day of \
                 the calendar and `on_holiday` is `skip`; change the schedule or the calendar's \
                 `days`",
            ),
        ];
        for (text, want) in table {
            assert_eq!(errors(&text), want, "{text}");
        }
        let ok = parse(
            Path::new("config.toml"),
            &job(
                "schedule = \"0 9 * * 6\"\ncalendar = \"za\"\non_holiday = \"next_business_day\"\n",
            ),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }
}
