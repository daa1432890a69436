//! The contract of the task queue's store code (`store/queue.rs`), written once and run on both
//! backends: what the runner relies on when it claims, renews, finishes, reclaims and releases
//! tasks, and what `tickler tasks cancel`/`retry` rely on.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use tickler::store::Store;
use tickler::store::queue::{NO_ORG, NewTask, TaskFinish, task_time};
use uuid::Uuid;

use crate::helpers::{Project, utc};

fn task(at: DateTime<Utc>, priority: i32, max_retries: i32) -> NewTask {
    NewTask {
        id: Uuid::new_v4().to_string(),
        org_id: NO_ORG.to_string(),
        campaign_id: None,
        invoice_id: None,
        customer_id: None,
        task_type: "custom".to_string(),
        task_data: Some(r#"{"n": 1}"#.to_string()),
        scheduled_for: task_time(at),
        max_retries,
        priority,
        metadata: None,
    }
}

async fn status_of(store: &Store, id: &str) -> String {
    store.task(id).await.unwrap().unwrap().status
}

async fn contract(store: Store) {
    let t0 = utc("2026-03-02T09:00:00Z");
    let later = t0 + TimeDelta::hours(1);
    let low = task(t0, 0, 2);
    let high = task(t0 + TimeDelta::seconds(30), 5, 0);
    let future = task(later, 9, 0);
    store
        .enqueue_tasks(&[low.clone(), high.clone(), future.clone()], t0)
        .await
        .unwrap();
    assert_eq!(store.next_task_time().await.unwrap(), Some(t0));

    // Only due tasks are claimed, highest priority first; a leased task is not claimed again.
    let now = t0 + TimeDelta::minutes(1);
    let lease = now + TimeDelta::seconds(60);
    let claimed = store.claim_tasks("owner-a", now, lease, 10).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [high.id.as_str(), low.id.as_str()]);
    assert!(claimed.iter().all(|t| t.status == "executing"
        && t.lease_owner.as_deref() == Some("owner-a")
        && t.attempts == 1));
    assert_eq!(
        claimed[1].task_data.as_deref().map(|d| d.replace(' ', "")),
        Some(r#"{"n":1}"#.into())
    );
    assert!(
        store
            .claim_tasks("owner-b", now, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The earliest time to look again is now the earliest lease to reclaim, or the next task.
    assert_eq!(store.next_task_time().await.unwrap(), Some(lease));

    // Leases are renewed, and attempts finished, only by the owner holding them.
    let both = vec![high.id.clone(), low.id.clone()];
    assert_eq!(
        store.renew_leases("owner-b", &both, lease).await.unwrap(),
        0
    );
    let lease = lease + TimeDelta::seconds(60);
    assert_eq!(
        store.renew_leases("owner-a", &both, lease).await.unwrap(),
        2
    );
    let done = TaskFinish {
        id: high.id.clone(),
        status: "completed",
        scheduled_for: None,
        error: None,
        retry_count: 0,
        result: Some(r#"{"ok": true}"#.to_string()),
    };
    assert_eq!(
        store
            .finish_tasks("owner-b", std::slice::from_ref(&done), now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(status_of(&store, &high.id).await, "executing");
    assert_eq!(
        store.finish_tasks("owner-a", &[done], now).await.unwrap(),
        1
    );
    let high_row = store.task(&high.id).await.unwrap().unwrap();
    assert_eq!(high_row.status, "completed");
    assert_eq!(high_row.completed_at, Some(now));

    // A lease that runs out (its daemon died) is reclaimed as a failed attempt: pending again,
    // due at once, until the retries are used up.
    assert!(
        store.expired_tasks(lease).await.unwrap().is_empty(),
        "not yet expired"
    );
    let expired_at = lease + TimeDelta::seconds(1);
    let expired = store.expired_tasks(expired_at).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].0.as_str(), expired[0].1.as_deref()),
        (low.id.as_str(), Some("owner-a"))
    );
    let reclaimed = store
        .reclaim_expired(std::slice::from_ref(&low.id), expired_at)
        .await
        .unwrap();
    assert_eq!(reclaimed, std::slice::from_ref(&low.id));
    let low_row = store.task(&low.id).await.unwrap().unwrap();
    assert_eq!(
        (low_row.status.as_str(), low_row.retry_count),
        ("pending", 1)
    );
    assert_eq!(low_row.scheduled_for, expired_at);
    assert_eq!(
        low_row.error_message.as_deref(),
        Some("the daemon running it stopped (lease of owner-a expired)")
    );
    // Reclaiming again does nothing: it is not executing any more.
    assert!(
        store
            .reclaim_expired(std::slice::from_ref(&low.id), expired_at)
            .await
            .unwrap()
            .is_empty()
    );

    // A shutdown gives a task back without counting the attempt.
    let again = store
        .claim_tasks(
            "owner-b",
            expired_at,
            expired_at + TimeDelta::seconds(60),
            10,
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(
        store
            .release_tasks("owner-a", std::slice::from_ref(&low.id), expired_at)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .release_tasks("owner-b", std::slice::from_ref(&low.id), expired_at)
            .await
            .unwrap(),
        1
    );
    let low_row = store.task(&low.id).await.unwrap().unwrap();
    assert_eq!(
        (
            low_row.status.as_str(),
            low_row.attempts,
            low_row.retry_count
        ),
        ("pending", 1, 1)
    );

    // Past its retries, an expired lease leaves the task failed.
    let last = expired_at + TimeDelta::minutes(1);
    store.claim_tasks("owner-b", last, last, 10).await.unwrap();
    let after = last + TimeDelta::seconds(1);
    assert_eq!(
        store
            .reclaim_expired(std::slice::from_ref(&low.id), after)
            .await
            .unwrap(),
        std::slice::from_ref(&low.id)
    );
    let low_row = store.task(&low.id).await.unwrap().unwrap();
    assert_eq!(
        (low_row.status.as_str(), low_row.retry_count),
        ("pending", 2),
        "2 of 2 retries"
    );
    store
        .claim_tasks("owner-b", after, after, 10)
        .await
        .unwrap();
    let end = after + TimeDelta::seconds(1);
    store
        .reclaim_expired(std::slice::from_ref(&low.id), end)
        .await
        .unwrap();
    let low_row = store.task(&low.id).await.unwrap().unwrap();
    assert_eq!(low_row.status, "failed");
    assert_eq!(low_row.completed_at, Some(end));

    // `tasks cancel` takes only a pending task; `tasks retry` only a failed or cancelled one.
    // Each with its audit row in the same transaction: written when the task changed only.
    let actor = tickler::store::audit::Actor {
        who: "ana".into(),
        origin: "console 127.0.0.1".into(),
    };
    let audit = |target| {
        Some(tickler::store::audit::Audit {
            actor: &actor,
            action: tickler::store::audit::Action::TaskCancel,
            target,
            detail: None,
        })
    };
    assert_eq!(
        store
            .cancel_task(&high.id, end, audit(&high.id))
            .await
            .unwrap()
            .as_deref(),
        Some("completed")
    );
    assert_eq!(
        store
            .cancel_task(&future.id, end, audit(&future.id))
            .await
            .unwrap(),
        None
    );
    assert_eq!(status_of(&store, &future.id).await, "cancelled");
    let rows = store
        .audit_log(&tickler::store::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let rows: Vec<_> = rows
        .iter()
        .map(|r| (r.who.as_str(), r.action.as_str(), r.target.as_str(), r.at))
        .collect();
    assert_eq!(rows, vec![("ana", "task.cancel", future.id.as_str(), end)]);
    assert_eq!(
        store
            .retry_task(&high.id, end, None)
            .await
            .unwrap()
            .as_deref(),
        Some("completed")
    );
    assert_eq!(store.retry_task(&future.id, end, None).await.unwrap(), None);
    assert_eq!(store.retry_task(&low.id, end, None).await.unwrap(), None);
    let low_row = store.task(&low.id).await.unwrap().unwrap();
    assert_eq!(
        (
            low_row.status.as_str(),
            low_row.retry_count,
            low_row.scheduled_for
        ),
        ("pending", 0, end)
    );
    let missing = Uuid::new_v4().to_string();
    assert_eq!(
        store
            .cancel_task(&missing, end, None)
            .await
            .unwrap()
            .as_deref(),
        Some("missing")
    );

    let counts: HashMap<String, i64> = store.task_counts().await.unwrap().into_iter().collect();
    assert_eq!(
        counts,
        HashMap::from([("completed".into(), 1), ("pending".into(), 2)])
    );
}

#[tokio::test]
async fn queue_contract_on_sqlite() {
    contract(Project::sqlite().store().await).await;
}

#[tokio::test]
async fn queue_contract_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    contract(p.store().await).await;
}

/// The console's queue pages and a campaign's next tasks: pages of one status in due order
/// across types (the order of the `scheduled_tasks_open` index), each task on one page.
async fn console_reads(store: Store) {
    let t0 = utc("2026-11-30T10:00:00Z");
    let (c1, c2) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    // Inserted latest first, types and campaigns interleaved.
    let tasks: Vec<NewTask> = (0..30)
        .rev()
        .map(|i| {
            let mut t = task(t0 + TimeDelta::minutes(i), 0, 3);
            t.task_type = if i % 2 == 0 { "a" } else { "b" }.to_string();
            t.campaign_id = match i % 3 {
                0 => Some(c1.clone()),
                1 => Some(c2.clone()),
                _ => None,
            };
            t
        })
        .collect();
    store.enqueue_tasks(&tasks, t0).await.unwrap();
    let due = |i: i64| t0 + TimeDelta::minutes(i);

    // Pages of 7 after the last row of the one before; two tasks share a due time.
    let mut twin = task(due(12), 0, 3);
    twin.task_type = "b".to_string();
    store
        .enqueue_tasks(std::slice::from_ref(&twin), t0)
        .await
        .unwrap();
    let mut seen = vec![];
    let mut after = None;
    for page in 0..6 {
        let rows = store.task_page("pending", None, after, 7).await.unwrap();
        assert_eq!(rows.len(), [7, 7, 7, 7, 3, 0][page], "page {page}");
        after = rows.last().map(|r| (r.scheduled_for, r.id.clone()));
        seen.extend(rows.into_iter().map(|r| r.scheduled_for));
    }
    let mut expected: Vec<_> = (0..30).map(due).collect();
    expected.insert(12, due(12));
    assert_eq!(seen, expected);
    let a: Vec<_> = store
        .task_page("pending", Some("a"), Some((due(9), String::new())), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.task_type, r.scheduled_for))
        .collect();
    let expected: Vec<_> = (10..30)
        .step_by(2)
        .map(|i| ("a".to_string(), due(i)))
        .collect();
    assert_eq!(a, expected);
    assert!(
        store
            .task_page("failed", None, None, 7)
            .await
            .unwrap()
            .is_empty()
    );

    // Executing tasks are left out of the index of pending and failed ones (a claim writes
    // no entry to it): their page and their counts are read apart, and still complete.
    let claimed = store
        .claim_tasks("owner", due(4), due(60), 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    let first = store.task_page("executing", None, None, 3).await.unwrap();
    let after = first.last().map(|r| (r.scheduled_for, r.id.clone()));
    let rest = store.task_page("executing", None, after, 3).await.unwrap();
    let executing: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|r| (r.status.as_str(), r.scheduled_for))
        .collect();
    let expected: Vec<_> = (0..5).map(|i| ("executing", due(i))).collect();
    assert_eq!(executing, expected);
    let only_b = store
        .task_page("executing", Some("b"), None, 100)
        .await
        .unwrap();
    assert_eq!(
        only_b.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(),
        [due(1), due(3)]
    );
    let pending = store.task_page("pending", None, None, 100).await.unwrap();
    assert_eq!(pending.len(), 26);
    assert_eq!(pending[0].scheduled_for, due(5));
    let counts: Vec<_> = store
        .open_task_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.task_type, c.status, c.count))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        counts,
        [
            (s("a"), s("executing"), 3),
            (s("a"), s("pending"), 12),
            (s("b"), s("executing"), 2),
            (s("b"), s("pending"), 14),
        ]
    );
}

#[tokio::test]
async fn console_reads_on_sqlite() {
    console_reads(Project::sqlite().store().await).await;
}

#[tokio::test]
async fn console_reads_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    console_reads(p.store().await).await;
}
