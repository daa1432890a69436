//! The daemon in-process on SQLite, on a manual clock: slots, catch-up, overlap, timeouts,
//! retries, shutdown and reload, each as the config says.

use std::time::Duration;

use chrono::TimeDelta;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Project, TestDaemon, lines, runs, statuses, utc, wait_for, wait_settled};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn each_slot_runs_once_even_when_the_clock_steps_back() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"tick\"\nkind = \"noop\"\nevery = \"1m\"\n",
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    for n in 1..=3 {
        d.clock.advance(MIN);
        wait_settled(&store, "tick", n).await;
    }
    // NTP steps the clock back two minutes, then time moves on: no slot runs twice.
    d.clock.step_wall(TimeDelta::minutes(-2));
    d.clock.advance(MIN);
    d.clock.advance(MIN);
    d.clock.advance(MIN);
    let rows = wait_settled(&store, "tick", 4).await;
    let slots: Vec<String> = rows
        .iter()
        .map(|r| r.scheduled_for.format("%H:%M").to_string())
        .collect();
    assert_eq!(slots, ["10:01", "10:02", "10:03", "10:04"]);
    assert!(
        rows.iter()
            .all(|r| r.status == "succeeded" && r.trigger == "schedule")
    );
    d.stop().await;
}

#[tokio::test]
async fn a_forward_jump_follows_each_catch_up_policy() {
    let p = Project::sqlite();
    let job = |name: &str, policy: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"noop\"\nevery = \"1m\"\ncatch_up = \"{policy}\"\nmisfire_grace = \"5m\"\n"
        )
    };
    p.write_config(
        "",
        &[
            job("none", "none"),
            job("latest", "latest"),
            job("all", "all"),
        ]
        .concat(),
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    // A VM resumes after ten minutes: slots 10:01 .. 10:10 were never lived through.
    d.clock.step_wall(TimeDelta::seconds(615));
    let none = wait_settled(&store, "none", 10).await;
    assert!(none.iter().all(|r| r.status == "missed"), "{none:?}");
    let latest = wait_settled(&store, "latest", 10).await;
    let ran: Vec<_> = latest.iter().filter(|r| r.status == "succeeded").collect();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].scheduled_for, utc("2025-01-06T10:10:00Z"));
    assert_eq!(ran[0].trigger, "catch_up");
    let all = wait_settled(&store, "all", 10).await;
    let st: Vec<&str> = all.iter().map(|r| r.status.as_str()).collect();
    // 10:06 .. 10:10 are within the 5-minute grace at 10:10:45; older ones are missed.
    assert_eq!(
        st,
        [
            "missed",
            "missed",
            "missed",
            "missed",
            "missed",
            "succeeded",
            "succeeded",
            "succeeded",
            "succeeded",
            "succeeded"
        ]
    );
    assert_eq!(
        all[0].error_message.as_deref(),
        Some("missed: the slot is older than misfire_grace (5m)")
    );
    d.stop().await;
}

/// Two fires of a 1.5 s job one minute apart on the manual clock, the second while the first
/// runs; `during` sees the statuses at the moment the second fire has been handled.
async fn overlap_rows(policy: &str, during: &[&str]) -> Vec<tickler::store::RunRow> {
    let p = Project::sqlite();
    p.write_config(
        "",
        &format!("[[job]]\nname = \"slow\"\nkind = \"noop\"\nduration = \"1500ms\"\nevery = \"1m\"\noverlap = \"{policy}\"\n"),
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    d.clock.advance(MIN);
    wait_for(
        "the first run to start",
        Duration::from_secs(10),
        || async { (statuses(&store, "slow").await == ["running"]).then_some(()) },
    )
    .await;
    d.clock.advance(MIN);
    wait_for(
        &format!("statuses {during:?} while the first run runs"),
        Duration::from_secs(10),
        || async { (statuses(&store, "slow").await == during).then_some(()) },
    )
    .await;
    let rows = wait_settled(&store, "slow", 2).await;
    d.stop().await;
    rows
}

#[tokio::test]
async fn overlap_skip_records_skipped() {
    let rows = overlap_rows("skip", &["running", "skipped"]).await;
    assert_eq!(rows[0].status, "succeeded");
    assert_eq!(rows[1].status, "skipped");
    assert_eq!(
        rows[1].error_message.as_deref(),
        Some("skipped: the previous run is still running (overlap = \"skip\")")
    );
}

#[tokio::test]
async fn overlap_queue_runs_after_the_previous_run() {
    // The second fire waits, unclaimed, until the first run ends.
    let rows = overlap_rows("queue", &["running"]).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[1].status.as_str()),
        ("succeeded", "succeeded")
    );
    assert!(
        rows[1].started_at.unwrap() >= rows[0].completed_at.unwrap(),
        "{rows:?}"
    );
}

#[tokio::test]
async fn overlap_allow_runs_both_at_once() {
    let rows = overlap_rows("allow", &["running", "running"]).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[1].status.as_str()),
        ("succeeded", "succeeded")
    );
}

fn pgrep(pattern: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"hang\"\nkind = \"command\"\nshell = true\ncommand = [\"sleep 987.25 & sleep 987.25; wait\"]\nevery = \"1m\"\ntimeout = \"1s\"\n",
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    d.clock.advance(MIN);
    let rows = wait_settled(&store, "hang", 1).await;
    assert_eq!(rows[0].status, "timed_out");
    assert_eq!(rows[0].error_message.as_deref(), Some("timed out after 1s"));
    wait_for(
        "the command's children to be killed",
        Duration::from_secs(5),
        || async { (!pgrep("sleep 987.25")).then_some(()) },
    )
    .await;
    d.stop().await;
}

#[tokio::test]
async fn retries_follow_the_policy() {
    let p = Project::sqlite();
    let counter = p.path().join("count");
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"always-fails\"\nkind = \"command\"\nshell = true\ncommand = [\"echo boom >&2; exit 3\"]\nevery = \"1m\"\nretry = {{ attempts = 3, initial = \"50ms\", factor = 2, max = \"100ms\", jitter = false }}\n\n\
             [[job]]\nname = \"third-time-lucky\"\nkind = \"command\"\nshell = true\ncommand = [\"n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ]\"]\nevery = \"1m\"\nretry = {{ attempts = 5, initial = \"50ms\", jitter = false }}\n",
            c = counter.display()
        ),
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    d.clock.advance(MIN);
    let failed = &wait_settled(&store, "always-fails", 1).await[0];
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.attempt, 3);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("`echo boom >&2; exit 3` exited with status 3: boom")
    );
    let meta = failed.metadata.as_ref().unwrap();
    assert_eq!(meta["failed_attempts"].as_array().unwrap().len(), 3);
    assert_eq!(
        meta["failed_attempts"][2]["details"]["stderr_tail"],
        "boom\n"
    );
    let lucky = &wait_settled(&store, "third-time-lucky", 1).await[0];
    assert_eq!((lucky.status.as_str(), lucky.attempt), ("succeeded", 3));
    d.stop().await;
}

#[tokio::test]
async fn http_jobs_record_reports_and_do_not_retry_client_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/cron/reminders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "success": true, "remindersSent": 12, "errors": ["booking 7: no phone number"]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/gone"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/flaky"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&server)
        .await;
    let p = Project::sqlite();
    let retry = "retry = { attempts = 2, initial = \"10ms\", jitter = false }";
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"reminders\"\nkind = \"http\"\nurl = \"{u}/api/cron/reminders\"\nevery = \"1m\"\n{retry}\n\
             [[job]]\nname = \"gone\"\nkind = \"http\"\nmethod = \"POST\"\nurl = \"{u}/gone\"\nevery = \"1m\"\n{retry}\n\
             [[job]]\nname = \"flaky\"\nkind = \"http\"\nurl = \"{u}/flaky\"\nevery = \"1m\"\n{retry}\n",
            u = server.uri()
        ),
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    d.clock.advance(MIN);
    let r = &wait_settled(&store, "reminders", 1).await[0];
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(12))
    );
    assert_eq!(
        r.error_message.as_deref(),
        Some("booking 7: no phone number")
    );
    let g = &wait_settled(&store, "gone", 1).await[0];
    assert_eq!((g.status.as_str(), g.attempt), ("failed", 1));
    assert_eq!(
        g.error_message.as_deref(),
        Some(&*format!(
            "`POST {}/gone` answered 404 Not Found",
            server.uri()
        ))
    );
    let f = &wait_settled(&store, "flaky", 1).await[0];
    assert_eq!((f.status.as_str(), f.attempt), ("failed", 2));
    d.stop().await;
    server.verify().await;
}

#[tokio::test]
async fn sql_jobs_count_affected_rows() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"fill\"\nkind = \"sql\"\nevery = \"1m\"\nstatements = [\"CREATE TABLE IF NOT EXISTS t (x INTEGER)\", \"INSERT INTO t VALUES (1), (2), (3)\"]\n\n\
         [[job]]\nname = \"broken\"\nkind = \"sql\"\nevery = \"1m\"\nstatements = [\"INSERT INTO t VALUES (9)\", \"SELEC 1\"]\nretry = { attempts = 3 }\n",
    );
    let store = p.store().await;
    store
        .execute(&["CREATE TABLE t (x INTEGER)".into()], false)
        .await
        .unwrap();
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    d.clock.advance(MIN);
    let r = &wait_settled(&store, "fill", 1).await[0];
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(3))
    );
    let b = &wait_settled(&store, "broken", 1).await[0];
    // A statement the database refuses is not retried, and the transaction undid the insert.
    assert_eq!((b.status.as_str(), b.attempt), ("failed", 1));
    assert!(
        b.error_message.as_deref().unwrap().contains("syntax error"),
        "{b:?}"
    );
    let n = store
        .execute(&["DELETE FROM t WHERE x = 9".into()], true)
        .await
        .unwrap();
    assert_eq!(n, 0);
    d.stop().await;
}

#[tokio::test]
async fn shutdown_interrupts_runs_past_the_grace() {
    let p = Project::sqlite();
    p.write_config(
        "shutdown_grace = \"300ms\"",
        "[[job]]\nname = \"long\"\nkind = \"noop\"\nduration = \"1h\"\nevery = \"1m\"\n\n\
         [[job]]\nname = \"short\"\nkind = \"noop\"\nduration = \"100ms\"\nevery = \"1m\"\n",
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    d.clock.advance(MIN);
    wait_for("both runs to start", Duration::from_secs(10), || async {
        (statuses(&store, "long").await == ["running"]).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    d.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(statuses(&store, "long").await, ["interrupted"]);
    assert_eq!(statuses(&store, "short").await, ["succeeded"]);
    let row = &runs(&store, "long").await[0];
    assert_eq!(
        row.error_message.as_deref(),
        Some("interrupted: the daemon shut down and the shutdown grace ran out")
    );
}

#[tokio::test]
async fn a_broken_reload_keeps_the_running_schedule() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nevery = \"1m\"\n",
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    // A broken file: a bad cron for `a` and a new job `b`. Nothing of it applies.
    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nschedule = \"0 25 * * *\"\n\n[[job]]\nname = \"b\"\nkind = \"noop\"\nevery = \"1m\"\n",
    );
    d.reload().await;
    d.clock.advance(MIN);
    wait_settled(&store, "a", 1).await;
    d.clock.advance(MIN);
    wait_settled(&store, "a", 2).await;
    assert_eq!(runs(&store, "b").await.len(), 0);
    // A valid file: `a` is gone, `b` starts.
    p.write_config(
        "",
        "[[job]]\nname = \"b\"\nkind = \"noop\"\nevery = \"1m\"\n",
    );
    d.reload().await;
    d.clock.advance(MIN);
    wait_settled(&store, "b", 1).await;
    assert_eq!(runs(&store, "a").await.len(), 2);
    d.stop().await;
}

#[tokio::test]
async fn max_concurrent_bounds_parallel_runs() {
    let p = Project::sqlite();
    p.write_config(
        "max_concurrent = 1",
        "[[job]]\nname = \"one\"\nkind = \"noop\"\nduration = \"700ms\"\nevery = \"1m\"\noverlap = \"allow\"\n\n\
         [[job]]\nname = \"two\"\nkind = \"noop\"\nduration = \"700ms\"\nevery = \"1m\"\noverlap = \"allow\"\n",
    );
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    d.clock.advance(MIN);
    // One runs; the other waits for the permit, its slot held by a `pending` row.
    let first = wait_for("one run to start", Duration::from_secs(10), || async {
        let (a, b) = (statuses(&store, "one").await, statuses(&store, "two").await);
        match (a.as_slice(), b.as_slice()) {
            ([s], [w]) if s == "running" && w == "pending" => Some("one"),
            ([w], [s]) if s == "running" && w == "pending" => Some("two"),
            _ => None,
        }
    })
    .await;
    let other = if first == "one" { "two" } else { "one" };
    assert_eq!(statuses(&store, other).await, ["pending"]);
    assert_eq!(wait_settled(&store, first, 1).await[0].status, "succeeded");
    assert_eq!(wait_settled(&store, other, 1).await[0].status, "succeeded");
    d.stop().await;
}

/// Seed 002's lanes: a slow `low_priority` job (a 20 s report) holds its lane, and a
/// `high_priority` job that comes due meanwhile runs at once. Without lanes the same two jobs
/// share `[daemon] max_concurrent = 1` and the reminders wait behind the report: the case the
/// lanes exist for. A reload that widens a lane starts the fire waiting in it.
async fn lanes_story(lanes: bool) -> (Vec<String>, Vec<String>) {
    let p = Project::sqlite();
    let lane = |name: &str| {
        if lanes {
            format!("lane = \"{name}\"\n")
        } else {
            String::new()
        }
    };
    let body = |low: usize| {
        format!(
            "[lanes.high_priority]\nconcurrency = 1\n[lanes.low_priority]\nconcurrency = {low}\n\n\
             [[job]]\nname = \"report\"\nkind = \"noop\"\nduration = \"20s\"\n\
             schedule = \"* * * * *\"\n{}\n\
             [[job]]\nname = \"export\"\nkind = \"noop\"\nduration = \"20s\"\n\
             schedule = \"5 * * * *\"\n{}\n\
             [[job]]\nname = \"reminders\"\nkind = \"noop\"\nschedule = \"*/2 * * * *\"\n{}",
            lane("low_priority"),
            lane("low_priority"),
            lane("high_priority"),
        )
    };
    let daemon = "max_concurrent = 1\nshutdown_grace = \"300ms\"";
    p.write_config(daemon, &body(1));
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    // 10:01: the report starts and holds its lane (or, without lanes, the only slot).
    d.clock.advance(MIN);
    wait_for("the report to run", Duration::from_secs(10), || async {
        (statuses(&store, "report").await == ["running"]).then_some(())
    })
    .await;
    // 10:02: the reminders come due, with the report still running (its own 10:02 fire is
    // skipped: overlap = "skip").
    d.clock.advance(MIN);
    let reminders = wait_for(
        "the reminders to settle or wait",
        Duration::from_secs(10),
        || async {
            let s = statuses(&store, "reminders").await;
            (s == ["succeeded"] || s == ["pending"]).then_some(s)
        },
    )
    .await;
    let report = statuses(&store, "report").await;
    if lanes {
        // 11:05: the export comes due in the full low lane and waits; a reload that gives the
        // lane a second slot starts it.
        d.clock.advance(63 * MIN);
        wait_for(
            "the export to wait for the low lane",
            Duration::from_secs(10),
            || async {
                let s = statuses(&store, "export").await;
                (s.last().map(String::as_str) == Some("pending")).then_some(())
            },
        )
        .await;
        assert_eq!(statuses(&store, "reminders").await[0], "succeeded");
        p.write_config(daemon, &body(2));
        d.reload().await;
        wait_for(
            "the export to start in the widened lane",
            Duration::from_secs(10),
            || async {
                let s = statuses(&store, "export").await;
                (s.last().map(String::as_str) == Some("running")).then_some(())
            },
        )
        .await;
    }
    d.stop().await;
    (reminders, report)
}

#[tokio::test]
async fn a_slow_low_priority_job_never_delays_a_high_priority_one() {
    let (reminders, report) = lanes_story(true).await;
    assert_eq!(
        reminders,
        ["succeeded"],
        "the reminders ran while the report ran"
    );
    assert_eq!(report[..2], ["running", "skipped"]);
    // The contrast: one shared slot, the reminders wait for the report.
    let (reminders, report) = lanes_story(false).await;
    assert_eq!(reminders, ["pending"]);
    assert_eq!(report[..2], ["running", "skipped"]);
}

/// A program's output may hold NUL bytes, which PostgreSQL refuses in text and jsonb: the run
/// is still recorded (without them), and the ledger goes on with the next runs.
#[tokio::test]
async fn output_with_nul_bytes_is_recorded_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    p.write_config(
        "",
        "[[job]]\nname = \"nul\"\nkind = \"command\"\nschedule = \"* * * * *\"\n\
         command = [\"sh\", \"-c\", \"printf 'disk\\\\000full\\\\n' >&2; exit 1\"]\n",
    );
    let store = p.store().await;
    let d = TestDaemon::start(p.config(), utc("2026-01-05T10:00:00Z")).await;
    d.clock.advance(MIN);
    let first = wait_settled(&store, "nul", 1).await;
    d.clock.advance(MIN);
    wait_settled(&store, "nul", 2).await;
    d.stop().await;
    assert_eq!(first[0].status, "failed");
    assert_eq!(
        first[0].error_message.as_deref(),
        Some("`sh` exited with status 1: diskfull")
    );
    assert_eq!(
        first[0].metadata.as_ref().unwrap()["failed_attempts"][0]["details"]["stderr_tail"],
        "diskfull\n"
    );
}

/// Jobs on a business-day calendar, over Easter 2026 in Johannesburg (Good Friday 04-03 and
/// Family Day 04-06 are holidays), the clock moved to each morning's fire: `skip` runs on
/// Thursday and Tuesday only, and the holidays and the weekend leave no row at all (they are
/// no slots of the trigger, as a Saturday is none of `0 9 * * 1-5`); a Friday job with
/// `next_business_day` runs on Tuesday in Friday's stead; a reload that adds Wednesday to the
/// holiday file moves the next fire past it.
#[tokio::test]
async fn a_calendar_job_fires_on_business_days_and_holidays_leave_no_rows() {
    let p = Project::sqlite();
    let holidays = p.path().join("holidays.toml");
    let easter = "[[holiday]]\ndate = 2026-04-03\n[[holiday]]\ndate = 2026-04-06\n";
    std::fs::write(&holidays, easter).unwrap();
    p.write_config(
        "",
        "[calendars.za]\nholidays = \"holidays.toml\"\n\n\
         [[job]]\nname = \"daily\"\nkind = \"noop\"\nschedule = \"0 9 * * *\"\n\
         timezone = \"Africa/Johannesburg\"\ncalendar = \"za\"\n\n\
         [[job]]\nname = \"fridays\"\nkind = \"noop\"\nschedule = \"0 9 * * 5\"\n\
         timezone = \"Africa/Johannesburg\"\ncalendar = \"za\"\n\
         on_holiday = \"next_business_day\"\n",
    );
    // Thursday 08:59:30 SAST.
    let d = TestDaemon::start(p.config(), utc("2026-04-02T06:59:30Z")).await;
    let store = p.store().await;
    let day = Duration::from_secs(86_400) - MIN;
    // A morning: to 09:00:30, then on to the next day's 08:59:30.
    let morning = |d: &TestDaemon| {
        d.clock.advance(MIN);
        d.clock.advance(day);
    };
    d.clock.advance(MIN);
    wait_settled(&store, "daily", 1).await;
    d.clock.advance(day);
    // Friday to Monday: holidays and the weekend.
    for _ in 0..4 {
        morning(&d);
    }
    // Tuesday.
    d.clock.advance(MIN);
    let daily = wait_settled(&store, "daily", 2).await;
    let fridays = wait_settled(&store, "fridays", 1).await;
    let slots = |rows: &[tickler::store::RunRow]| -> Vec<String> {
        rows.iter()
            .map(|r| format!("{} {}", r.scheduled_for.to_rfc3339(), r.status))
            .collect()
    };
    assert_eq!(
        slots(&daily),
        [
            "2026-04-02T07:00:00+00:00 succeeded",
            "2026-04-07T07:00:00+00:00 succeeded"
        ]
    );
    assert_eq!(slots(&fridays), ["2026-04-07T07:00:00+00:00 succeeded"]);
    // Wednesday becomes a holiday; after the reload the next fire is Thursday's.
    std::fs::write(
        &holidays,
        format!("{easter}[[holiday]]\ndate = 2026-04-08\n"),
    )
    .unwrap();
    d.reload().await;
    d.clock.advance(day);
    morning(&d);
    d.clock.advance(MIN);
    let daily = wait_settled(&store, "daily", 3).await;
    assert_eq!(
        slots(&daily)[2],
        "2026-04-09T07:00:00+00:00 succeeded",
        "{daily:?}"
    );
    d.stop().await;
}

/// A second with many fires is claimed ahead (`pending` rows, a second before it): a reload
/// between that claim and the second is obeyed as if the slot had been claimed when it came.
#[tokio::test]
async fn a_reload_between_the_claim_ahead_and_the_second_is_obeyed() {
    let p = Project::sqlite();
    let out = p.path().join("out");
    let jobs = |changed: bool| {
        let mut text = String::new();
        for i in 0..70 {
            let job = match (changed, i / 10) {
                // Removed.
                (true, 0) => continue,
                (true, 1) => "kind = \"noop\"\nevery = \"1m\"\nenabled = false".to_string(),
                // A schedule without 10:01.
                (true, 2) => "kind = \"noop\"\nschedule = \"5 * * * *\"".to_string(),
                // A schedule with 10:01, and another body: the new one runs.
                (true, 3) => format!(
                    "kind = \"command\"\nshell = true\nschedule = \"* * * * *\"\n\
                     command = [\"echo job-{i} >> {}\"]",
                    out.display()
                ),
                _ => "kind = \"noop\"\nevery = \"1m\"".to_string(),
            };
            text.push_str(&format!("[[job]]\nname = \"job-{i}\"\n{job}\n\n"));
        }
        text
    };
    // Room for all 70 at once (the default is 64): a fire that would wait is not claimed ahead.
    p.write_config("max_concurrent = 100", &jobs(false));
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    // Half a second before 10:01 its 70 fires are claimed ahead.
    d.clock.advance(Duration::from_millis(29_500));
    let pending = || async {
        let rows = store
            .history(&tickler::store::HistoryFilter {
                job: None,
                status: Some(tickler::store::Status::Pending),
                limit: 1000,
                run: None,
            })
            .await
            .unwrap();
        (rows.len() == 70).then_some(())
    };
    wait_for("70 slots claimed ahead", Duration::from_secs(30), pending).await;
    p.write_config("max_concurrent = 100", &jobs(true));
    d.reload().await;
    d.clock.advance(Duration::from_millis(500));
    let at = utc("2025-01-06T10:01:00Z");
    let why = |i: usize| match i / 10 {
        0 => Some(
            "skipped: the job was removed from the config by a reload after its slot was claimed",
        ),
        1 => Some("skipped: the job was disabled by a reload after its slot was claimed"),
        2 => Some(
            "skipped: a reload after its slot was claimed changed the job's schedule, which no longer has this slot",
        ),
        _ => None,
    };
    for i in 0..70 {
        let rows = wait_settled(&store, &format!("job-{i}"), 1).await;
        assert_eq!(rows[0].scheduled_for, at, "job-{i}");
        let expected = if why(i).is_some() {
            "skipped"
        } else {
            "succeeded"
        };
        assert_eq!(rows[0].status, expected, "job-{i}");
        assert_eq!(rows[0].error_message.as_deref(), why(i), "job-{i}");
    }
    let mut ran = lines(&out);
    ran.sort();
    let mut want: Vec<String> = (30..40).map(|i| format!("job-{i}")).collect();
    want.sort();
    assert_eq!(ran, want, "the reloaded command ran, once per job");
    d.stop().await;
}
