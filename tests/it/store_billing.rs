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
    // Each claim's template names it, for the message log below.
    let about = |key: &str, invoice: &str| NotificationClaim {
        invoice: Some(invoice.to_string()),
        template: key.to_string(),
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
    // Each cancelled message says why; the one whose attempt named another invoice than its
    // own reads its invoice as gone.
    let mut why: Vec<(String, Option<String>)> = store
        .message_log(&tickler::store::console::MessageFilter {
            status: Some("cancelled".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.template.unwrap_or_default(), m.error))
        .collect();
    why.sort();
    assert_eq!(
        why,
        [
            (
                "hinted".into(),
                Some("cancelled: its invoice is gone".into())
            ),
            ("paid".into(), Some("cancelled: its invoice is paid".into())),
        ]
    );
}

#[tokio::test]
async fn billing_contract_on_sqlite() {
    let p = Project::sqlite();
    let store = p.store().await;
    invoices_in_order(&store).await;
    message_claims(&store).await;
    attempts_follow_their_invoices(&store).await;
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
    // The journal's connections look rows up by key whatever the statistics say (a commit is
    // one statement there, without a transaction to `SET LOCAL` in).
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    let seqscan: String = sqlx::query_scalar("SHOW enable_seqscan")
        .fetch_one(pg.journal_pool())
        .await
        .unwrap();
    assert_eq!(seqscan, "off");
}
