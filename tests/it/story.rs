//! One story, written once and run against SQLite and PostgreSQL alike: a day of a small
//! back office's scheduler, then two daemons sharing one PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use tickler::daemon;
use tickler::store::Store;
use tickler::time::ManualClock;

use crate::helpers::{Project, TestDaemon, runs, utc, wait_for, wait_settled};

const MIN: Duration = Duration::from_secs(60);

async fn story(p: Project) {
    p.write_config(
        "",
        "[[job]]\nname = \"tick\"\nkind = \"noop\"\nevery = \"1m\"\ncatch_up = \"latest\"\nmisfire_grace = \"1h\"\n\n\
         [[job]]\nname = \"invoices\"\nkind = \"sql\"\nschedule = \"0 7 * * *\"\ntimezone = \"Africa/Johannesburg\"\n\
         statements = [\"CREATE TABLE IF NOT EXISTS demo_invoices (n INTEGER)\", \"INSERT INTO demo_invoices VALUES (1), (2)\"]\n\n\
         [[job]]\nname = \"report\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo '{\\\"deletedCount\\\": 4, \\\"errors\\\": []}'\"]\nschedule = \"*/2 * * * *\"\n",
    );
    // 04:58:30 UTC is 06:58:30 in Johannesburg.
    let d = TestDaemon::start(p.config(), utc("2025-01-06T04:58:30Z")).await;
    let store = p.store().await;
    for n in 1..=3 {
        d.clock.advance(MIN);
        wait_settled(&store, "tick", n).await;
    }
    let inv = wait_settled(&store, "invoices", 1).await;
    assert_eq!(
        inv[0].scheduled_for,
        utc("2025-01-06T05:00:00Z"),
        "07:00 in Johannesburg"
    );
    assert_eq!(
        (inv[0].status.as_str(), inv[0].records_processed),
        ("succeeded", Some(2))
    );
    let rep = wait_settled(&store, "report", 1).await;
    assert_eq!(
        (rep[0].status.as_str(), rep[0].records_processed),
        ("succeeded", Some(4))
    );
    d.stop().await;

    // A manual run, as `tickler run-job tick` does.
    let config = p.config();
    let results = daemon::run_now(&config, &[config.jobs[0].name.clone()])
        .await
        .unwrap();
    assert_eq!(results[0].1.as_ref().unwrap().status.as_str(), "succeeded");
    let manual = runs(&store, "tick")
        .await
        .into_iter()
        .filter(|r| r.trigger == "manual")
        .count();
    assert_eq!(manual, 1);

    // Down for two hours: `tick` catches up its latest slot once; older ones are missed.
    let d = TestDaemon::start(p.config(), utc("2025-01-06T07:01:40Z")).await;
    let rows = wait_for("the catch-up", Duration::from_secs(30), || async {
        let rows = runs(&store, "tick").await;
        (rows
            .iter()
            .any(|r| r.trigger == "catch_up" && r.status == "succeeded")
            && rows.iter().all(|r| r.status != "running"))
        .then_some(rows)
    })
    .await;
    let caught: Vec<_> = rows
        .iter()
        .filter(|r| r.trigger == "catch_up" && r.status == "succeeded")
        .collect();
    assert_eq!(caught.len(), 1);
    assert_eq!(caught[0].scheduled_for, utc("2025-01-06T07:01:00Z"));
    // Every other slot of the two hours has a row of its own (invariant 3).
    let missed = rows.iter().filter(|r| r.status == "missed").count();
    assert_eq!(missed, 119, "each slot not run is recorded `missed`");
    d.stop().await;

    // The seed 004 monitoring query runs unchanged.
    let seed_004 = "SELECT job_name, status, records_processed, duration_seconds, started_at
                      FROM job_execution_logs ORDER BY started_at DESC LIMIT 50;";
    let n = match &store {
        Store::Sqlite(s) => sqlx::query(seed_004)
            .fetch_all(s.pool())
            .await
            .unwrap()
            .len(),
        Store::Postgres(s) => sqlx::query(seed_004)
            .fetch_all(s.pool())
            .await
            .unwrap()
            .len(),
    };
    assert_eq!(n, 50);
}

#[tokio::test]
async fn story_on_sqlite() {
    story(Project::sqlite()).await;
}

#[tokio::test]
async fn story_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    story(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_run_each_slot_once() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let jobs: String = (0..20)
        .map(|i| format!("[[job]]\nname = \"j{i}\"\nkind = \"noop\"\nevery = \"1m\"\n\n"))
        .collect();
    p.write_config("heartbeat_interval = \"1h\"", &jobs);
    let clock = Arc::new(ManualClock::new(utc("2025-01-06T10:00:30Z")));
    let a = TestDaemon::start_with_clock(p.config(), clock.clone()).await;
    let b = TestDaemon::start_with_clock(p.config(), clock.clone()).await;
    let store = p.store().await;
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    let mut rows = vec![];
    for k in 1..=5 {
        clock.advance(MIN);
        rows = wait_for(
            "the slot's runs to finish",
            Duration::from_secs(30),
            || async {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT job_name, status, COUNT(*) OVER (PARTITION BY job_name, scheduled_for)
               FROM job_execution_logs",
                )
                .fetch_all(pg.pool())
                .await
                .unwrap();
                (rows.len() >= 20 * k && rows.iter().all(|r| r.1 != "running")).then_some(rows)
            },
        )
        .await;
    }
    assert_eq!(rows.len(), 100, "20 jobs x 5 slots, each exactly once");
    assert!(
        rows.iter()
            .all(|(_, status, n)| status == "succeeded" && *n == 1),
        "{rows:?}"
    );
    a.stop().await;
    b.stop().await;
}
