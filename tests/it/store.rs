//! The store's contract, tested once against both backends.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use tickler::store::{Finish, HistoryFilter, Instance, NewRun, RunTrigger, Status, Store};
use uuid::Uuid;

use crate::helpers::{Project, utc};

fn new_run(job: &str, slot: &str, status: Status, instance: &Arc<str>) -> NewRun {
    NewRun {
        id: Uuid::new_v4(),
        job_name: Arc::from(job),
        scheduled_for: utc(slot),
        trigger: RunTrigger::Schedule,
        status,
        started_at: utc(slot),
        instance: instance.clone(),
        error_message: None,
        metadata: None,
        batch: None,
    }
}

async fn contract(store: Store) {
    let me = Instance::current().unwrap();
    store.register_instance(&me).await.unwrap();
    let gone: Arc<str> = Arc::from("ghost:1:dead");

    // A slot is claimed once: the second insert of the same key does not go in.
    let a = new_run("a", "2025-01-06T10:00:00Z", Status::Running, &me.id);
    let b = new_run("a", "2025-01-06T10:00:00Z", Status::Running, &me.id);
    let c = new_run("a", "2025-01-06T10:01:00Z", Status::Skipped, &me.id);
    let orphan = new_run("o", "2025-01-06T10:00:00Z", Status::Running, &gone);
    let inserted = store
        .insert_runs(&[a.clone(), b.clone(), c.clone(), orphan.clone()])
        .await
        .unwrap();
    assert_eq!(inserted, HashSet::from([a.id, c.id, orphan.id]));
    assert!(
        store
            .insert_runs(std::slice::from_ref(&b))
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store.running_jobs(&me.id).await.unwrap(),
        HashSet::from(["o".to_string()])
    );
    let last = store.last_slots().await.unwrap();
    assert_eq!(last["a"], utc("2025-01-06T10:01:00Z"));

    store
        .finish_runs(&[Finish {
            id: a.id,
            status: Status::Partial,
            started_at: utc("2025-01-06T10:00:00.5Z"),
            completed_at: utc("2025-01-06T10:00:02Z"),
            duration_seconds: 1.5,
            records_processed: Some(7),
            error_message: Some("item 3: no email".into()),
            metadata: json!({"item_errors": ["item 3: no email"]}),
            attempt: 2,
        }])
        .await
        .unwrap();
    let rows = store
        .history(&HistoryFilter {
            job: Some("a".into()),
            status: Some(Status::Partial),
            limit: 10,
            run: None,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.records_processed, r.attempt, r.duration_seconds),
        (Some(7), 2, Some(1.5))
    );
    assert_eq!(r.started_at, Some(utc("2025-01-06T10:00:00.5Z")));
    assert_eq!(
        r.metadata.as_ref().unwrap()["item_errors"][0],
        "item 3: no email"
    );

    // One run, by id (what an alert links to), with a retry counted.
    store.set_attempt(c.id, 3).await.unwrap();
    let one = store
        .history(&HistoryFilter {
            job: None,
            status: None,
            limit: 10,
            run: Some(c.id),
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        (one[0].id.as_str(), one[0].attempt, one[0].status.as_str()),
        (c.id.to_string().as_str(), 3, "skipped")
    );
    // The other filters still apply to the lookup by id.
    for (job, status) in [(Some("o"), None), (None, Some(Status::Failed))] {
        let none = store
            .history(&HistoryFilter {
                job: job.map(String::from),
                status,
                limit: 10,
                run: Some(c.id),
            })
            .await
            .unwrap();
        assert!(none.is_empty(), "{job:?} {status:?}: {none:?}");
    }
    let daemons = store.instances().await.unwrap();
    assert!(
        daemons
            .iter()
            .any(|(id, _, pid)| **id == *me.id && *pid == me.pid as i64)
    );

    // The run of an instance that never beats is abandoned; ours is not.
    let now = Utc::now();
    let abandoned = store
        .abandon_orphans(&me.id, now - TimeDelta::seconds(30), now)
        .await
        .unwrap();
    let jobs: Vec<&str> = abandoned.iter().map(|o| o.job_name.as_str()).collect();
    assert_eq!(jobs, ["o"]);
    let o = store
        .history(&HistoryFilter {
            job: Some("o".into()),
            status: None,
            limit: 1,
            run: None,
        })
        .await
        .unwrap();
    assert_eq!(o[0].status, "abandoned");
    assert_eq!(
        abandoned[0].id, o[0].id,
        "the abandoned row's id is returned"
    );
    assert_eq!(abandoned[0].scheduled_for, o[0].scheduled_for);
    assert_eq!(
        o[0].error_message.as_deref(),
        Some("the daemon running it (ghost:1:dead) stopped without finishing it")
    );

    // Retention: successes and skips go after `ok_before`, failures only after `failed_before`.
    let prune_ok = utc("2025-01-06T10:00:30Z");
    let deleted = store
        .prune(prune_ok, utc("2025-01-01T00:00:00Z"), 1)
        .await
        .unwrap();
    assert_eq!(
        deleted, 0,
        "a partial run is a failure, kept longer; the skip is newer"
    );
    let deleted = store
        .prune(utc("2025-01-07T00:00:00Z"), utc("2025-01-01T00:00:00Z"), 1)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "only the skipped row goes");
    let deleted = store
        .prune(utc("2025-01-07T00:00:00Z"), utc("2025-01-07T00:00:00Z"), 1)
        .await
        .unwrap();
    assert_eq!(
        deleted, 2,
        "then the partial and the abandoned rows, in batches of one"
    );
    store.deregister(&me.id).await.unwrap();
}

#[tokio::test]
async fn contract_on_sqlite() {
    contract(Project::sqlite().store().await).await;
}

#[tokio::test]
async fn contract_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    contract(p.store().await).await;
}

/// Slots claimed ahead (`timer::claim_ahead`): a batch of `pending` rows that has not started
/// is adopted when its daemon dies (the slots run elsewhere); once its one `fire_batches` row
/// is committed, its rows count as running: abandoned, never adopted, never run twice.
async fn batches(store: Store) {
    let me = Instance::current().unwrap();
    store.register_instance(&me).await.unwrap();
    let gone: Arc<str> = Arc::from("ghost:2:dead");
    let in_batch = |job: &str, batch: Uuid| NewRun {
        batch: Some(batch),
        ..new_run(job, "2025-01-06T10:00:00Z", Status::Pending, &gone)
    };
    let (waiting, started) = (Uuid::now_v7(), Uuid::now_v7());
    let rows = [
        in_batch("w1", waiting),
        in_batch("w2", waiting),
        in_batch("s1", started),
        in_batch("s2", started),
    ];
    assert_eq!(store.insert_runs(&rows).await.unwrap().len(), 4);
    // Started by the dead daemon before it died; nothing of the batch was adopted before.
    let lost = store
        .start_batch(started, &gone, utc("2025-01-06T10:00:00Z"))
        .await
        .unwrap();
    assert!(lost.is_empty(), "{lost:?}");

    let now = Utc::now();
    let stale = now - TimeDelta::seconds(30);
    let mut abandoned: Vec<String> = store
        .abandon_orphans(&me.id, stale, now)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.job_name)
        .collect();
    abandoned.sort();
    assert_eq!(abandoned, ["s1", "s2"]);
    let mut adopted: Vec<String> = store
        .adopt_pending(&me.id, stale)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.job_name)
        .collect();
    adopted.sort();
    assert_eq!(adopted, ["w1", "w2"], "only the batch not yet started");

    // Our own batch: adopted by nobody, started, then turned `running` in the background;
    // a run that ended first keeps its end.
    let mine = Uuid::now_v7();
    let ours: Vec<NewRun> = ["m1", "m2"]
        .iter()
        .map(|j| NewRun {
            batch: Some(mine),
            ..new_run(j, "2025-01-06T10:00:00Z", Status::Pending, &me.id)
        })
        .collect();
    store.insert_runs(&ours).await.unwrap();
    let at = utc("2025-01-06T10:00:00.002Z");
    assert!(
        store
            .start_batch(mine, &me.id, at)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_runs(&[Finish {
            id: ours[0].id,
            status: Status::Succeeded,
            started_at: at,
            completed_at: at,
            duration_seconds: 0.0,
            records_processed: None,
            error_message: None,
            metadata: json!({}),
            attempt: 1,
        }])
        .await
        .unwrap();
    store.batch_running(mine, at).await.unwrap();
    let status_of = |job: &'static str| {
        let store = store.clone();
        async move {
            store
                .history(&HistoryFilter {
                    job: Some(job.into()),
                    status: None,
                    limit: 1,
                    run: None,
                })
                .await
                .unwrap()[0]
                .status
                .clone()
        }
    };
    assert_eq!(status_of("m1").await, "succeeded");
    assert_eq!(status_of("m2").await, "running");
    store.deregister(&me.id).await.unwrap();
}

#[tokio::test]
async fn claimed_ahead_batches_on_sqlite() {
    batches(Project::sqlite().store().await).await;
}

#[tokio::test]
async fn claimed_ahead_batches_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    batches(p.store().await).await;
}

/// Several processes migrating one fresh SQLite file at once (a daemon starting while a
/// `tickler history` runs, or a test's store beside its daemon) all succeed: SQLite has no
/// advisory lock, so one applies a migration while another, having read the list before,
/// tries it too and fails on its effects ("already exists", or migration 17's "no such index"
/// for the index the winner dropped); the loser sees the winner's progress and looks again.
/// Before that, only some error texts were taken for a race, and a daemon that lost migration
/// 17 exited (CI, 2026-12-03: "timed out waiting for the first daemon to register").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_of_one_sqlite_file_all_succeed() {
    for round in 0..60 {
        let p = Project::sqlite();
        let url = tickler::secret::DatabaseUrl::new(p.database_url.clone());
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(Store::connect(&url).await.unwrap());
        }
        let runs: Vec<_> = stores
            .into_iter()
            .map(|s| tokio::spawn(async move { s.migrate().await.map(|()| s) }))
            .collect();
        for run in runs {
            let store = run
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            store.close().await;
        }
    }
}
