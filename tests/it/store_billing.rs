//! The contract of the billing store code (`store/billing.rs`), written once and run on both
//! backends: invoice pages in `(due_date, id)` order, and the life of a message claim that
//! invariants 4 and 5 rest on (one claim per dedup key, an attempt recorded only by its owner,
//! a release that resends what never left and never resends what may have).

use chrono::{Days, NaiveDate, TimeDelta};
use tickler::store::Store;
use tickler::store::billing::{
    Claimant, Cursor, NewInvoice, NotificationAttempt, NotificationClaim, NotificationEnd,
};
use uuid::Uuid;

use crate::helpers::tenants::{open_invoice, tenant};
use crate::helpers::{Project, utc};

fn claim(key: &str) -> NotificationClaim {
    NotificationClaim {
        id: Uuid::new_v4().to_string(),
        key: key.to_string(),
        channel: "email",
        recipient: "a@example.com".to_string(),
        template: "friendly".to_string(),
        invoice: None,
        status: "sending",
        error: None,
        until: None,
    }
}

fn end(key: &str, status: &'static str) -> NotificationEnd {
    NotificationEnd {
        key: key.to_string(),
        status,
        provider_id: None,
        error: None,
    }
}

fn keys(v: &[&str]) -> Vec<String> {
    v.iter().map(|k| k.to_string()).collect()
}

/// Attempts of messages about no invoice.
fn attempts(v: &[&str]) -> Vec<NotificationAttempt> {
    v.iter()
        .map(|k| NotificationAttempt {
            key: k.to_string(),
            invoice: None,
        })
        .collect()
}

async fn invoices_in_order(store: &Store) {
    let customer = tenant(0, "example.com");
    let day = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
    // Five open invoices over three days, one paid: pages follow (due_date, id).
    let mut invoices: Vec<NewInvoice> = [
        (0, "open"),
        (0, "open"),
        (1, "open"),
        (2, "open"),
        (1, "paid"),
    ]
    .iter()
    .map(|(d, status)| NewInvoice {
        status: status.to_string(),
        ..open_invoice(&customer, String::new(), day + Days::new(*d))
    })
    .collect();
    store
        .import(&[customer], &[], &mut invoices, "INV-")
        .await
        .unwrap();
    let mut expected: Vec<(NaiveDate, String)> = invoices
        .iter()
        .filter(|i| i.status == "open")
        .map(|i| (i.due_date, i.id.clone()))
        .collect();
    expected.sort();
    let mut seen = vec![];
    let mut cursor = Cursor::start();
    loop {
        let page = store
            .open_invoices_due(day, day + Days::new(2), &cursor, 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        cursor = Cursor::after(page.last().unwrap());
        seen.extend(page.iter().map(|i| (i.due_date, i.id.clone())));
    }
    assert_eq!(
        seen, expected,
        "every open invoice once, in index order; the paid one never"
    );
    let numbered = store.invoice_by_id(&expected[0].1).await.unwrap().unwrap();
    assert!(numbered.number.starts_with("INV-"), "{}", numbered.number);
    assert_eq!(
        store
            .invoice_by_number(&numbered.number)
            .await
            .unwrap()
            .map(|i| i.id),
        Some(expected[0].1.clone())
    );
}

async fn message_claims(store: &Store) {
    let now = utc("2026-03-10T09:00:00Z");
    let (a, b) = ("owner-a", "owner-b");
    let by = |owner| Claimant {
        job: "reminders",
        owner,
        run: None,
    };
    let all = ["m1", "m2", "m3"];
    let claims: Vec<NotificationClaim> = all.iter().map(|k| claim(k)).collect();
    let got = store
        .claim_notifications(&by(a), &claims, now)
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    // A key being sent is nobody else's to claim.
    assert!(
        store
            .claim_notifications(&by(b), &claims, now)
            .await
            .unwrap()
            .is_empty()
    );

    // Only the owner records an attempt; then one ends sent, one failed, one stays in flight.
    assert!(
        store
            .journal_notifications(b, &attempts(&all), &[], now)
            .await
            .unwrap()
            .is_empty()
    );
    let marked = store
        .journal_notifications(a, &attempts(&["m1", "m2"]), &[], now)
        .await
        .unwrap();
    assert_eq!(marked.len(), 2);
    store
        .journal_notifications(a, &[], &[end("m1", "sent"), end("m2", "failed")], now)
        .await
        .unwrap();
    let states = store.notification_states(&keys(&all)).await.unwrap();
    assert_eq!(states["m1"], "sent");
    assert_eq!(states["m2"], "failed");
    assert_eq!(states["m3"], "sending");

    // A sent key is never claimed again; a failed one is, by anyone.
    let again = store
        .claim_notifications(&by(b), &claims[..2], now)
        .await
        .unwrap();
    assert_eq!(again, keys(&["m2"]).into_iter().collect());

    // The owner dies: what it never attempted is released to be sent again (`failed`); what it
    // attempted may have left, and becomes `unknown`.
    let later = now + TimeDelta::minutes(5);
    assert_eq!(
        store
            .journal_notifications(b, &attempts(&["m2"]), &[], later)
            .await
            .unwrap()
            .len(),
        1
    );
    let released = store
        .release_notifications(a, &keys(&all), "its process died", later)
        .await
        .unwrap();
    assert_eq!(
        (released.released, released.unknown),
        (1, 0),
        "m3, never attempted by a"
    );
    let released = store
        .release_notifications(b, &keys(&all), "its process died", later)
        .await
        .unwrap();
    assert_eq!(
        (released.released, released.unknown),
        (0, 1),
        "m2, attempted by b"
    );
    let states = store.notification_states(&keys(&all)).await.unwrap();
    assert_eq!(
        (
            states["m1"].as_str(),
            states["m2"].as_str(),
            states["m3"].as_str()
        ),
        ("sent", "unknown", "failed")
    );
    // An unknown message is never claimed again; the released one is.
    let last = store
        .claim_notifications(&by(a), &claims, later)
        .await
        .unwrap();
    assert_eq!(last, keys(&["m3"]).into_iter().collect());
}

/// An attempt goes only while the invoice its message is about is open: the invoice is
/// looked up by the id the attempt names, which must be the claim's; a message about a paid
/// invoice is `cancelled`, saying why, and so is one whose attempt names another invoice.
async fn attempts_follow_their_invoices(store: &Store) {
    let now = utc("2026-03-10T09:00:00Z");
    let customer = tenant(7, "example.com");
    let day = NaiveDate::from_ymd_opt(2026, 3, 17).unwrap();
    let mut invoices: Vec<NewInvoice> = ["open", "paid", "open"]
        .iter()
        .map(|status| NewInvoice {
            status: status.to_string(),
            ..open_invoice(&customer, String::new(), day)
        })
        .collect();
    store
        .import(&[customer], &[], &mut invoices, "INV-")
        .await
        .unwrap();
    let ids: Vec<String> = invoices.iter().map(|i| i.id.clone()).collect();
    let about = |key: &str, invoice: &str| NotificationClaim {
        invoice: Some(invoice.to_string()),
        ..claim(key)
    };
    let claims = [
        about("open", &ids[0]),
        about("paid", &ids[1]),
        about("hinted", &ids[1]),
        claim("none"),
    ];
    let claimant = Claimant {
        job: "reminders",
        owner: "owner-a",
        run: None,
    };
    assert_eq!(
        store
            .claim_notifications(&claimant, &claims, now)
            .await
            .unwrap()
            .len(),
        4
    );
    let attempt = |key: &str, invoice: Option<&String>| NotificationAttempt {
        key: key.to_string(),
        invoice: invoice.cloned(),
    };
    let go = store
        .journal_notifications(
            "owner-a",
            &[
                attempt("open", Some(&ids[0])),
                attempt("paid", Some(&ids[1])),
                // About the paid invoice, naming an open one: not sent.
                attempt("hinted", Some(&ids[2])),
                attempt("none", None),
            ],
            &[],
            now,
        )
        .await
        .unwrap();
    assert_eq!(go, keys(&["open", "none"]).into_iter().collect());
    let states = store
        .notification_states(&keys(&["open", "paid", "hinted", "none"]))
        .await
        .unwrap();
    assert_eq!(states["open"], "sending");
    assert_eq!(states["none"], "sending");
    assert_eq!(states["paid"], "cancelled");
    assert_eq!(states["hinted"], "cancelled");
    // The cancelled ones are final: their keys left `notification_open` with the attempt.
    let open = open_keys(store, "").await;
    assert!(open.contains(&"open".to_string()) && open.contains(&"none".to_string()));
    assert!(!open.contains(&"paid".to_string()) && !open.contains(&"hinted".to_string()));
}

/// The keys in `notification_open` that start with `prefix` (one test's messages), in order.
async fn open_keys(store: &Store, prefix: &str) -> Vec<String> {
    let q = "SELECT dedup_key FROM notification_open WHERE dedup_key LIKE $1 ORDER BY dedup_key";
    let like = format!("{prefix}%");
    match store {
        Store::Sqlite(s) => sqlx::query_scalar(q).bind(like).fetch_all(s.pool()).await,
        Store::Postgres(s) => sqlx::query_scalar(q).bind(like).fetch_all(s.pool()).await,
    }
    .unwrap()
}

/// `notification_open` holds the key of every message that is not final (`sending`,
/// `unknown`, `deferred`): the claim adds it in its transaction, the delivery forgets the
/// ended ones, a release forgets the released ones, and the sweep of stopped processes
/// finds their claims there and forgets what a process ended without forgetting. On
/// PostgreSQL a row another transaction holds keeps its key (it may be being claimed again).
async fn open_keys_follow_their_messages(store: &Store) {
    let now = utc("2026-03-11T09:00:00Z");
    let claimant = Claimant {
        job: "reminders",
        owner: "owner-o",
        run: None,
    };
    let skipped = NotificationClaim {
        status: "skipped",
        ..claim("q-skipped")
    };
    let count = |counts: &[(String, i64)], status: &str| {
        counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n)
    };
    let before = store.open_message_counts().await.unwrap();
    let claims = [claim("q1"), claim("q2"), claim("q3"), claim("q4"), skipped];
    store
        .claim_notifications(&claimant, &claims, now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q1", "q2", "q3", "q4"]));

    // A delivery: q1 sent, q2 unknown, q3 in flight; the journal's commit that ends a
    // message forgets its key if it is final.
    let owner = "owner-o";
    store
        .journal_notifications(owner, &attempts(&["q1", "q2", "q3"]), &[], now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q1", "q2", "q3", "q4"]));
    store
        .journal_notifications(owner, &[], &[end("q1", "sent"), end("q2", "unknown")], now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3", "q4"]));
    // An end by another owner is not written, and forgets nothing.
    store
        .journal_notifications("owner-x", &[], &[end("q3", "sent")], now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3", "q4"]));
    // The earlier contracts' rows count too: this one adds q3 and q4 sending, q2 unknown.
    let counts = store.open_message_counts().await.unwrap();
    assert_eq!(
        (count(&counts, "sending"), count(&counts, "unknown")),
        (count(&before, "sending") + 2, count(&before, "unknown") + 1)
    );

    // Cut short: q3 (attempted) becomes unknown and stays; q4 goes back to failed.
    store
        .release_notifications(owner, &keys(&["q3", "q4"]), "cut short", now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3"]));
    // Claimed again, q4 is open again.
    store
        .claim_notifications(&claimant, &claims[3..4], now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3", "q4"]));

    // A process stopped after writing q1's end, before forgetting it: the sweep of stopped
    // processes releases q4 (found by its key here; no process is registered, so every owner
    // is stopped, the earlier contracts' too) and forgets both.
    let stale = "INSERT INTO notification_open (dedup_key) VALUES ('q1')";
    match store {
        Store::Sqlite(s) => sqlx::query(stale).execute(s.pool()).await.map(drop),
        Store::Postgres(s) => sqlx::query(stale).execute(s.pool()).await.map(drop),
    }
    .unwrap();
    let released = store
        .release_dead_messages(now + TimeDelta::minutes(1), now)
        .await
        .unwrap();
    assert!(released.released >= 1, "q4: {released:?}");
    assert_eq!(
        store.notification_states(&keys(&["q4"])).await.unwrap()["q4"],
        "failed"
    );
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3"]));

    // A failed message ends out of the set.
    store
        .claim_notifications(&claimant, &[claim("q5")], now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3", "q5"]));
    store
        .journal_notifications(owner, &[], &[end("q5", "failed")], now)
        .await
        .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3"]));

    // PostgreSQL: the forgetting of the sweeps (outside the transaction that ended the
    // message) skips a row another transaction holds (a claim of a failed message in
    // progress: its key must stay), and does not wait for it. q5's key is left over here as
    // a process stopped before its forgetting would leave it.
    let Store::Postgres(s) = store else {
        return;
    };
    sqlx::query("INSERT INTO notification_open (dedup_key) VALUES ('q5')")
        .execute(s.pool())
        .await
        .unwrap();
    let mut holder = s.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM notification_log WHERE dedup_key = 'q5' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        store.forget_ended_messages(&keys(&["q5"])),
    )
    .await
    .expect("forgetting waited for a row another transaction holds")
    .unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3", "q5"]));
    holder.rollback().await.unwrap();
    store.forget_ended_messages(&keys(&["q5"])).await.unwrap();
    assert_eq!(open_keys(store, "q").await, keys(&["q2", "q3"]));
}

/// An upgrade to `notification_open` (a migration, numbered `version` in the backend's
/// folder) with a message left `sending` by a daemon stopped before it: the migration copies
/// the open keys, so the sweep of stopped processes still finds and releases that message;
/// a sent one is not copied. The schema from before the migration is made again from the
/// migrated one (the table dropped, the two indexes back, the migration unrecorded).
async fn upgrade_keeps_open_messages(p: &Project, version: i64) {
    let store = p.store().await;
    let now = utc("2026-03-12T09:00:00Z");
    let claimant = Claimant {
        job: "reminders",
        owner: "owner-u",
        run: None,
    };
    store
        .claim_notifications(&claimant, &[claim("u1"), claim("u2")], now)
        .await
        .unwrap();
    store
        .journal_notifications("owner-u", &attempts(&["u2"]), &[end("u2", "sent")], now)
        .await
        .unwrap();
    let before = [
        "DROP TABLE notification_open",
        "CREATE INDEX notification_log_open ON notification_log (status)
          WHERE status IN ('sending', 'unknown')",
        "CREATE INDEX notification_log_deferred ON notification_log (deferred_until)
          WHERE status = 'deferred'",
    ];
    let unrecord = format!("DELETE FROM _sqlx_migrations WHERE version = {version}");
    for q in before.iter().copied().chain([unrecord.as_str()]) {
        match &store {
            Store::Sqlite(s) => sqlx::query(q).execute(s.pool()).await.map(drop),
            Store::Postgres(s) => sqlx::query(q).execute(s.pool()).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    store.close().await;

    let store = p.store().await;
    assert_eq!(open_keys(&store, "u").await, keys(&["u1"]));
    let released = store
        .release_dead_messages(now + TimeDelta::minutes(1), now)
        .await
        .unwrap();
    assert_eq!((released.released, released.unknown), (1, 0));
    let states = store
        .notification_states(&keys(&["u1", "u2"]))
        .await
        .unwrap();
    assert_eq!(
        (states["u1"].as_str(), states["u2"].as_str()),
        ("failed", "sent")
    );
    assert!(open_keys(&store, "u").await.is_empty());
    store.close().await;
}

#[tokio::test]
async fn upgrade_keeps_open_messages_on_sqlite() {
    upgrade_keeps_open_messages(&Project::sqlite(), 16).await;
}

#[tokio::test]
async fn upgrade_keeps_open_messages_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    upgrade_keeps_open_messages(&p, 17).await;
}

#[tokio::test]
async fn billing_contract_on_sqlite() {
    let p = Project::sqlite();
    let store = p.store().await;
    invoices_in_order(&store).await;
    message_claims(&store).await;
    attempts_follow_their_invoices(&store).await;
    open_keys_follow_their_messages(&store).await;
}

#[tokio::test]
async fn billing_contract_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let store = p.store().await;
    invoices_in_order(&store).await;
    message_claims(&store).await;
    attempts_follow_their_invoices(&store).await;
    open_keys_follow_their_messages(&store).await;
}
