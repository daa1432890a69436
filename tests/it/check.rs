//! `tickler check`, `list`, `print-config`: exact output and exact error messages.

use crate::helpers::{Project, stderr, stdout};

/// Runs `tickler check` on a config whose `[[job]]` part is `jobs`; returns its stderr.
fn check_error(jobs: &str) -> String {
    let p = Project::sqlite();
    p.write_config("", jobs);
    let out = p.cli(&["check"]);
    assert_eq!(out.status.code(), Some(1), "check must fail on:\n{jobs}");
    assert_eq!(stdout(&out), "");
    // Messages name the file by the path given; make it stable.
    stderr(&out).replace(&p.config_path().display().to_string(), "config.toml")
}

/// Runs `tickler check` on a config with `daemon` keys and `body`; returns its stderr.
fn check_error_in(daemon: &str, body: &str) -> String {
    let p = Project::sqlite();
    p.write_config(daemon, body);
    let out = p.cli(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check must fail on:\n{daemon}\n{body}"
    );
    assert_eq!(stdout(&out), "");
    stderr(&out).replace(&p.config_path().display().to_string(), "config.toml")
}

/// Every value that would overflow where it is used (`now + d`, `d * 3`, a retry factor, the
/// slots of an interval) is refused by `tickler check`, named by its key and position, with the
/// largest accepted value. Before, `every = "18446744073709551615s"` passed and the daemon
/// then spun on it; a huge `misfire_grace` or `older_than` panicked or wrapped at run time.
#[test]
fn values_that_would_overflow_are_refused_with_their_key() {
    const JOB: &str = "[[job]]\nname = \"x\"\nkind = \"noop\"\n";
    let too_large = "larger than the largest accepted, `100y` (3155760000s)";
    let every_1m = format!("{JOB}every = \"1m\"\n");
    #[rustfmt::skip]
    let table: Vec<(&str, String, String)> = vec![
        ("", format!("{JOB}every = \"18446744073709551615s\"\n"),
         "invalid `every` interval `18446744073709551615s` for job `x` (config.toml line 9, \
          column 9): larger than the largest accepted interval, `100y` (3155760000s)".into()),
        ("", format!("{JOB}every = \"99999999999999999999s\"\n"),
         "invalid `every` interval `99999999999999999999s` for job `x` (config.toml line 9, \
          column 9): larger than the largest accepted interval, `100y` (3155760000s)".into()),
        ("", format!("{every_1m}timeout = \"99999999999999d\"\n"),
         format!("invalid `timeout` for job `x` (config.toml line 10, column 11): invalid \
                  duration `99999999999999d`: {too_large}")),
        ("", format!("{every_1m}misfire_grace = \"18446744073709551615s\"\n"),
         format!("invalid `misfire_grace` for job `x` (config.toml line 10, column 17): invalid \
                  duration `18446744073709551615s`: {too_large}")),
        ("", format!("{every_1m}jitter = \"101y\"\n"),
         format!("invalid `jitter` for job `x` (config.toml line 10, column 10): invalid \
                  duration `101y`: {too_large}")),
        ("", format!("{every_1m}retry = {{ attempts = 3, max = \"300000y\" }}\n"),
         format!("invalid `retry.max` for job `x` (config.toml line 10, column 31): invalid \
                  duration `300000y`: {too_large}")),
        ("", format!("{every_1m}expect_success_within = \"200y\"\n"),
         format!("invalid `expect_success_within` for job `x` (config.toml line 10, column 25): \
                  invalid duration `200y`: {too_large}")),
        ("", format!("{every_1m}on_failure = {{ repeat_after = \"200y\" }}\n"),
         format!("invalid `on_failure.repeat_after` for job `x` (config.toml line 10, column \
                  31): invalid duration `200y`: {too_large}")),
        ("", "[[job]]\nname = \"c\"\nkind = \"cleanup\"\nschedule = \"0 3 * * *\"\n\
              [[job.rule]]\ntable = \"job_execution_logs\"\nolder_than = \"99999999999999d\"\n"
                .into(),
         format!("invalid `rule.older_than` for job `c` (config.toml line 12, column 14): \
                  invalid duration `99999999999999d`: {too_large}")),
        ("heartbeat_interval = \"18446744073709551615s\"", String::new(),
         format!("invalid `heartbeat_interval` in `[daemon]` (config.toml line 5, column 22): \
                  invalid duration `18446744073709551615s`: {too_large}")),
        ("history_retention = \"101y\"", String::new(),
         format!("invalid `history_retention` in `[daemon]` (config.toml line 5, column 21): \
                  invalid duration `101y`: {too_large}")),
        ("", "[defaults]\nmisfire_grace = \"101y\"\n".into(),
         format!("invalid `misfire_grace` in `[defaults]` (config.toml line 7, column 17): \
                  invalid duration `101y`: {too_large}")),
        ("", "[queue]\nlease = \"101y\"\n".into(),
         format!("invalid `lease` in `[queue]` (config.toml line 7, column 9): invalid \
                  duration `101y`: {too_large}")),
        ("", "[queue.retry.default]\nbackoff = [\"1s\", \"101y\"]\n".into(),
         format!("invalid `backoff` in `[queue.retry.default]` (config.toml line 7, column 18): \
                  invalid duration `101y`: {too_large}")),
        ("", "[queue.handlers.h]\nkind = \"noop\"\ntimeout = \"101y\"\n".into(),
         format!("invalid `timeout` for handler `h` (config.toml line 8, column 11): invalid \
                  duration `101y`: {too_large}")),
        ("", "[channels.webhook]\ntimeout = \"101y\"\n".into(),
         format!("invalid `timeout` in `[channels.webhook]` (config.toml line 7, column 11): \
                  invalid duration `101y`: {too_large}")),
    ];
    for (daemon, body, message) in table {
        assert_eq!(
            check_error_in(daemon, &body),
            format!("error: {message}\n"),
            "on:\n{daemon}\n{body}"
        );
    }
    // The largest accepted value is accepted.
    let p = Project::sqlite();
    p.write_config("", &format!("{JOB}every = \"100y\"\ntimeout = \"100y\"\n"));
    let out = p.cli(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn bad_cron_expression() {
    let err = check_error(
        "[[job]]\nname = \"daily-invoices\"\nkind = \"noop\"\nschedule = \"0 25 * * *\"\n",
    );
    assert_eq!(
        err,
        "error: invalid cron expression `0 25 * * *` for job `daily-invoices` (config.toml line 9, \
         column 12): hour must be 0-23 (found 25)\n"
    );
}

#[test]
fn six_fields_are_not_crontab() {
    let err = check_error("[[job]]\nname = \"x\"\nkind = \"noop\"\nschedule = \"0 0 7 * * *\"\n");
    assert_eq!(
        err,
        "error: invalid cron expression `0 0 7 * * *` for job `x` (config.toml line 9, column 12): \
         expected 5 fields (minute hour day-of-month month day-of-week), found 6\n"
    );
}

#[test]
fn unknown_time_zone() {
    let err = check_error(
        "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\ntimezone = \"Africa/Joburg\"\n",
    );
    assert_eq!(
        err,
        "error: invalid `timezone` for job `x` (config.toml line 10, column 12): unknown time zone \
         `Africa/Joburg`; use an IANA name such as `Africa/Johannesburg` or `UTC` \
         (`timedatectl list-timezones` lists them)\n"
    );
}

#[test]
fn unknown_field() {
    let err = check_error(
        "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\nscheduel = \"0 7 * * *\"\n",
    );
    assert_eq!(
        err,
        "error: invalid job `x` (config.toml line 10, column 1): unknown field `scheduel`, expected \
         `duration` for kind `noop`; every job also takes `name`, `kind`, `description`, \
         `schedule`, `every`, `timezone`, `send_window`, `calendar`, `on_holiday`, `enabled`, \
         `timeout`, `retry`, `overlap`, `catch_up`, `misfire_grace`, `jitter`, `on_failure`, \
         `expect_success_within`, `ping_url`, `lane`\n"
    );
}

#[test]
fn duplicate_job_name() {
    let err = check_error(
        "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\n\n[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"5m\"\n",
    );
    assert_eq!(
        err,
        "error: duplicate job name `x` (config.toml line 12, column 8): each `[[job]]` needs a \
         unique `name`; rename or remove one of them\n"
    );
}

#[test]
fn both_schedule_and_every() {
    let err = check_error(
        "[[job]]\nname = \"x\"\nkind = \"noop\"\nschedule = \"0 7 * * *\"\nevery = \"1h\"\n",
    );
    assert_eq!(
        err,
        "error: both `schedule` and `every` set for job `x` (config.toml line 10, column 9): a job \
         has exactly one trigger; keep `schedule` (cron) or `every` (interval)\n"
    );
}

#[test]
fn bad_duration() {
    let err = check_error(
        "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\ntimeout = \"10 mn\"\n",
    );
    assert_eq!(
        err,
        "error: invalid `timeout` for job `x` (config.toml line 10, column 11): invalid duration \
         `10 mn`: \
         unknown time unit \"mn\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, \
         months, years (and few variations); write e.g. `30s`, `10m`, `1h30m`, `7d`\n"
    );
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let err = check_error(
        "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\noverlap = \"never\"\n",
    );
    assert_eq!(
        err,
        "error: invalid `overlap` for job `x` (config.toml line 10, column 11): unknown variant \
         `never`, expected one of `skip`, `queue`, `allow`\n"
    );
}

#[test]
fn several_problems_are_reported_together() {
    let err = check_error(
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nschedule = \"61 * * * *\"\n\n[[job]]\nname = \"b\"\nkind = \"smtp\"\nevery = \"1m\"\n",
    );
    assert_eq!(
        err,
        "error: invalid cron expression `61 * * * *` for job `a` (config.toml line 9, column 12): \
         minute must be 0-59 (found 61)\n\
         unknown kind `smtp` for job `b` (config.toml line 13, column 8): expected one of \
         `cleanup`, `command`, `create_invoices`, `http`, `invoice_reminders`, `noop`, `notify`, \
         `overdue_escalation`, `sql`, `stats_report`\n"
    );
}

/// A file of 12,000 jobs is read on every core, a part each; its problems still come out in
/// the file's order, each job's where its own would be, and a name taken in one part is a
/// duplicate in the other.
#[test]
fn a_large_file_reports_its_problems_in_the_order_of_the_file() {
    let job = |k: usize| {
        let name = match k {
            100 | 11_000 => "x".to_string(),
            5_999 | 6_000 => "dup".to_string(),
            k => format!("job-{k}"),
        };
        let kind = if k == 11_999 { "smtp" } else { "noop" };
        let trigger = if k == 3 || k == 6_001 {
            "schedule = \"61 * * * *\""
        } else {
            "every = \"1h\""
        };
        format!("[[job]]\nname = \"{name}\"\nkind = \"{kind}\"\n{trigger}\n\n")
    };
    let err = check_error(&(0..12_000).map(job).collect::<String>());
    // Job k's table starts on line 6 + 5k: its name on the next line, its trigger two below.
    let cron = |k: usize| {
        format!(
            "invalid cron expression `61 * * * *` for job `job-{k}` (config.toml line {}, \
             column 12): minute must be 0-59 (found 61)",
            9 + 5 * k
        )
    };
    let duplicate = |name: &str, k: usize| {
        format!(
            "duplicate job name `{name}` (config.toml line {}, column 8): each `[[job]]` needs a \
             unique `name`; rename or remove one of them",
            7 + 5 * k
        )
    };
    let expected = [
        cron(3),
        duplicate("dup", 6_000),
        cron(6_001),
        duplicate("x", 11_000),
        format!(
            "unknown kind `smtp` for job `job-11999` (config.toml line {}, column 8): expected \
             one of `cleanup`, `command`, `create_invoices`, `http`, `invoice_reminders`, \
             `noop`, `notify`, `overdue_escalation`, `sql`, `stats_report`",
            8 + 5 * 11_999
        ),
    ];
    assert_eq!(err, format!("error: {}\n", expected.join("\n")));
}

#[test]
fn toml_syntax_error() {
    let err = check_error("[[job]\nname = \"x\"\n");
    assert_eq!(
        err,
        "error: invalid TOML (config.toml line 6, column 7): unclosed array table, expected `]`\n"
    );
}

#[test]
fn missing_config_file() {
    let p = Project::sqlite();
    let out = p.cli(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out).replace(&p.config_path().display().to_string(), "config.toml");
    assert_eq!(
        err,
        "error: cannot read the config file (config.toml): No such file or directory (os error 2); \
         pass `--config FILE`, or write the example with `tickler print-config > config.toml`\n"
    );
}

#[test]
fn the_shipped_config_passes_check() {
    let out = std::process::Command::new(crate::helpers::BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(": OK, 13 job(s); database sqlite://var/tickler.db; default time zone Africa/Johannesburg\n"), "{text}");
    assert!(text.contains("heartbeat"), "{text}");
    assert!(text.contains("disabled"), "{text}");
}

#[test]
fn print_config_prints_the_shipped_example() {
    let out = std::process::Command::new(crate::helpers::BIN)
        .arg("print-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), include_str!("../../config.toml"));
}

#[test]
fn list_shows_fires_in_the_job_zone_and_utc() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"ny\"\nkind = \"noop\"\nschedule = \"30 2 * * *\"\ntimezone = \"America/New_York\"\n",
    );
    let out = p.cli(&[
        "list",
        "--next",
        "3",
        "--from",
        "2025-03-08T00:00:00Z",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "job": "ny",
            "timezone": "America/New_York",
            "fires": ["2025-03-08T07:30:00Z", "2025-03-09T07:00:00Z", "2025-03-10T06:30:00Z"]
        }])
    );
    let out = p.cli(&["list", "--next", "2", "--from", "2025-03-08T00:00:00Z"]);
    assert_eq!(
        stdout(&out),
        "JOB                      LOCAL                      UTC                 \n\
         ny                       2025-03-08 02:30 EST       2025-03-08T07:30:00Z\n\
         ny                       2025-03-09 03:00 EDT       2025-03-09T07:00:00Z\n"
    );
}

/// `list` shows the slots of a calendar job as the daemon fires them: New York's 2026
/// month ends, where a holiday on the last weekday (Friday 07-31, Thursday 12-31) moves the
/// month end a day earlier, and `check` shows the trigger with its calendar.
#[test]
fn list_and_check_show_business_day_fires() {
    let p = Project::sqlite();
    std::fs::write(
        p.path().join("us.toml"),
        "[[holiday]]\ndate = 2026-07-31\n[[holiday]]\ndate = 2026-12-31\n",
    )
    .unwrap();
    p.write_config(
        "",
        "[calendars.us]\nholidays = \"us.toml\"\n\n[[job]]\nname = \"close\"\nkind = \"noop\"\n\
         schedule = \"@last_business_day 18:00\"\ntimezone = \"America/New_York\"\n\
         calendar = \"us\"\n",
    );
    let out = p.cli(&["list", "--next", "2", "--from", "2026-07-01T00:00:00Z"]);
    assert_eq!(
        stdout(&out),
        "JOB                      LOCAL                      UTC                 \n\
         close                    2026-07-30 18:00 EDT       2026-07-30T22:00:00Z\n\
         close                    2026-08-31 18:00 EDT       2026-08-31T22:00:00Z\n"
    );
    let out = p.cli(&["list", "--next", "1", "--from", "2026-12-01T00:00:00Z"]);
    assert!(
        stdout(&out).contains("close                    2026-12-30 18:00 EST"),
        "{}",
        stdout(&out)
    );
    let out = p.cli(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("`@last_business_day 18:00` on calendar `us`"),
        "{}",
        stdout(&out)
    );
}

/// `list` and `check` work out the fires of a trigger once for all the jobs that share it
/// and their zone: a job sharing a trigger in another zone, or on another calendar, still gets
/// its own fires, and a disabled one none.
#[test]
fn jobs_sharing_a_trigger_keep_their_own_zone_and_calendar() {
    let p = Project::sqlite();
    for (file, day) in [("us.toml", "2026-07-02"), ("uk.toml", "2026-07-01")] {
        std::fs::write(p.path().join(file), format!("[[holiday]]\ndate = {day}\n")).unwrap();
    }
    let job = |name: &str, more: &str| {
        format!("[[job]]\nname = \"{name}\"\nkind = \"noop\"\nschedule = \"0 9 * * *\"\n{more}\n")
    };
    p.write_config(
        "",
        &[
            "[calendars.us]\nholidays = \"us.toml\"\n[calendars.uk]\nholidays = \"uk.toml\"\n"
                .into(),
            job("a", ""),
            job("ny", "timezone = \"America/New_York\""),
            job("b", ""),
            job("off", "enabled = false"),
            job("us", "calendar = \"us\""),
            job("uk", "calendar = \"uk\""),
        ]
        .concat(),
    );
    let out = p.cli(&["list", "--next", "2", "--from", "2026-07-01T00:00:00Z"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "JOB                      LOCAL                      UTC                 \n\
         a                        2026-07-01 09:00 UTC       2026-07-01T09:00:00Z\n\
         a                        2026-07-02 09:00 UTC       2026-07-02T09:00:00Z\n\
         ny                       2026-07-01 09:00 EDT       2026-07-01T13:00:00Z\n\
         ny                       2026-07-02 09:00 EDT       2026-07-02T13:00:00Z\n\
         b                        2026-07-01 09:00 UTC       2026-07-01T09:00:00Z\n\
         b                        2026-07-02 09:00 UTC       2026-07-02T09:00:00Z\n\
         us                       2026-07-01 09:00 UTC       2026-07-01T09:00:00Z\n\
         us                       2026-07-03 09:00 UTC       2026-07-03T09:00:00Z\n\
         uk                       2026-07-02 09:00 UTC       2026-07-02T09:00:00Z\n\
         uk                       2026-07-03 09:00 UTC       2026-07-03T09:00:00Z\n"
    );
    let out = p.cli(&[
        "list",
        "--next",
        "1",
        "--from",
        "2026-07-01T00:00:00Z",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let fires: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let first = j["fires"].get(0).and_then(|f| f.as_str()).unwrap_or("none");
            (j["job"].as_str().unwrap(), first)
        })
        .collect();
    assert_eq!(
        fires,
        [
            ("a", "2026-07-01T09:00:00Z"),
            ("ny", "2026-07-01T13:00:00Z"),
            ("b", "2026-07-01T09:00:00Z"),
            ("off", "none"),
            ("us", "2026-07-01T09:00:00Z"),
            ("uk", "2026-07-02T09:00:00Z"),
        ]
    );
    let out = p.cli(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |job: &str| {
        let prefix = format!("  {job:<24} ");
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    assert!(line("off").ends_with(" disabled"), "{text}");
    let ny = line("ny");
    assert!(ny.contains("-05:00") || ny.contains("-04:00"), "{text}");
    assert!(line("a").contains("+00:00"), "{text}");
}

/// With thousands of triggers of their own, `list` and `check` share the searches out among
/// threads: each job still gets its own trigger's fires, in the order of the config.
#[test]
fn thousands_of_distinct_crons_each_list_their_own_fires() {
    let p = Project::sqlite();
    // 3,000 daily crons, each its own minute of the day, listed out of order.
    let minutes: Vec<u32> = (0..3_000).map(|k| (k * 7 + 11) % 1_440).collect();
    let jobs: Vec<String> = minutes
        .iter()
        .enumerate()
        .map(|(k, m)| {
            format!(
                "[[job]]\nname = \"job-{k}\"\nkind = \"noop\"\nschedule = \"{} {} * * *\"\n",
                m % 60,
                m / 60
            )
        })
        .collect();
    p.write_config("", &jobs.concat());
    let out = p.cli(&["list", "--next", "2", "--from", "2026-06-30T23:59:30Z"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines().skip(1);
    for (k, m) in minutes.iter().enumerate() {
        for day in ["01", "02"] {
            let at = format!("2026-07-{day}T{:02}:{:02}:00Z", m / 60, m % 60);
            let line = lines.next().unwrap_or_default();
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                (fields.first().copied(), fields.last().copied()),
                (Some(&*format!("job-{k}")), Some(&*at)),
                "line `{line}`"
            );
        }
    }
    assert_eq!(lines.next(), None);
    let out = p.cli(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for (k, m) in minutes.iter().enumerate().step_by(97) {
        let next = format!("job-{k} ");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&next))
            .unwrap();
        assert!(
            line.contains(&format!("{:02}:{:02}:00+00:00", m / 60, m % 60)),
            "line `{line}`"
        );
    }
}

#[test]
fn bad_cli_arguments_are_explained() {
    let p = Project::sqlite();
    p.write_config("", "");
    let out = p.cli(&["list", "--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'yesterday' for '--from <FROM>': premature end of input; write an RFC 3339 time such as `2025-03-09T00:00:00Z`"), "{}", stderr(&out));
    let out = p.cli(&["history", "--status", "done"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown status; expected one of pending, running, succeeded, partial, failed, timed_out, skipped, missed, paused, abandoned, interrupted"), "{}", stderr(&out));
    let out = p.cli(&["run-job", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: no job named `nope` in `"),
        "{}",
        stderr(&out)
    );
}

/// Channels and templates are checked with the config: a job naming a channel that is not
/// configured, a template that does not exist, does not parse, or uses an undefined value
/// is refused by `tickler check` (and by a reload), not at 9 AM.
#[test]
fn channels_and_templates_are_checked_with_the_config() {
    let p = crate::helpers::Project::sqlite();
    let job = "[[job]]\nname = \"r\"\nkind = \"invoice_reminders\"\nschedule = \"0 9 * * *\"\n";
    p.write_config("", &format!("{job}channels = [\"sms\"]\n"));
    let out = p.cli(&["check"]);
    assert_eq!(
        stderr(&out),
        format!(
            "error: invalid job `r` ({}/config.toml line 6, column 1): the channel `sms` is not \
             configured; add a `[channels.sms]` section or remove it from `channels`\n",
            p.path().display()
        )
    );

    let email = "[channels.email]\nfrom = \"B <b@acme.test>\"\n\n";
    p.write_config("", &format!("{email}{job}template = \"gentle\"\n"));
    let out = p.cli(&["check"]);
    assert!(
        stderr(&out).contains(
            "config.toml line 9, column 1): no template named `gentle`; add `gentle.j2` to the \
             templates directory or use one of: custom-message, escalation-1, escalation-2, \
             escalation-3, firm, friendly, professional, stats-report, urgent\n"
        ),
        "{}",
        stderr(&out)
    );

    std::fs::create_dir_all(p.path().join("templates")).unwrap();
    std::fs::write(
        p.path().join("templates/gentle.j2"),
        "{% block subject %}Invoice {{ invoice.number }}{% endblock %}\n{% block text %}\nHi {{ customer.nmae }}\n{% endblock %}\n",
    )
    .unwrap();
    let out = p.cli(&["check"]);
    assert!(
        stderr(&out).contains(&format!(
            "config.toml line 9, column 1): cannot render template `gentle` ({}/templates/gentle.j2) \
             line 3: undefined value: `customer.nmae` is undefined\n",
            p.path().display()
        )),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        p.path().join("templates/gentle.j2"),
        "{% block subject %}\n{% if %}\n",
    )
    .unwrap();
    let out = p.cli(&["check"]);
    assert!(
        stderr(&out).contains(&format!(
            "invalid template ({}/config.toml): template `gentle` ({}/templates/gentle.j2) line 2: syntax error: unexpected end of block",
            p.path().display(),
            p.path().display()
        )),
        "{}",
        stderr(&out)
    );

    p.write_config("", &format!("{email}{job}offsets = [\"7d\", \"seven\"]\n"));
    let out = p.cli(&["check"]);
    assert!(
        stderr(&out).contains(
            "config.toml line 9, column 1): invalid offset `seven`: write days before the due \
             date as `7d`, `1d`, `0d` (the due date) or `-3d` (3 days after it)\n"
        ),
        "{}",
        stderr(&out)
    );
}

/// The opt-out keys of `[channels.*]` are checked by `tickler check` and refused with the file,
/// line and key.
#[test]
fn opt_out_keys_are_refused_with_where_and_what() {
    let p = crate::helpers::Project::sqlite();
    for (section, message) in [
        (
            "[channels.email]\nfrom = \"b@acme.test\"\nunsubscribe_url = \"http://b.example/u\"\n\
             unsubscribe_secret_env = \"U\"\n",
            "invalid `[channels.email]` ({dir}/config.toml line 6, column 2): `unsubscribe_url` \
             `http://b.example/u` is not an https URL (RFC 8058 one-click links must be https, \
             found `http`); write the public address of the listener's `/unsubscribe`, e.g. \
             `https://billing.example.com/unsubscribe`",
        ),
        (
            "[channels.email]\nfrom = \"b@acme.test\"\nunsubscribe_secret_file = \"u\"\n",
            "invalid `[channels.email]` ({dir}/config.toml line 6, column 2): \
             `unsubscribe_secret_env`/`unsubscribe_secret_file` needs `unsubscribe_url`",
        ),
        (
            "[channels.sms]\naccount_sid = \"AC1\"\nauth_token_env = \"T\"\nfrom = \"+15005550006\"\n\
             inbound_url = \"twilio/inbound\"\n",
            "invalid `[channels.sms]` ({dir}/config.toml line 6, column 2): invalid `inbound_url` \
             `twilio/inbound`: relative URL without a base; write the public URL Twilio posts \
             replies to, e.g. `https://billing.example.com/twilio/inbound`",
        ),
    ] {
        p.write_config("", section);
        let out = p.cli(&["check"]);
        let want = message.replace("{dir}", &p.path().display().to_string());
        assert_eq!(stderr(&out), format!("error: {want}\n"), "{section}");
    }
}
