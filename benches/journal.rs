//! What a message's statements cost on the embedded SQLite, where they are tickler's own CPU
//! (on PostgreSQL they run in the server): the selection of the page of invoices it is made
//! from (`Store::open_invoices_due`, 2,000 a page, as `invoice_reminders` reads them), the
//! claim of a page of messages (`Store::claim_notifications`, one statement) and the journal's
//! commits (`Store::journal_notifications`), each recording the attempts of a group of
//! messages about to be sent and the ends of the group sent before it, as a delivery does.
//!
//! This VM's timings move by 20-30 % from run to run, so the parts are compared by the
//! instructions callgrind counts (every thread's, SQLite's connection threads included):
//! `bench/instructions.sh --bench journal LABEL=BINARY...` prints each part's instructions per
//! message.
//!
//! `cargo bench --bench journal -- PART [N]`: on a fresh SQLite file with 2,000 customers and
//! 20,000 open invoices, does PART for N messages (default 2,000), each about its own invoice,
//! and prints the wall time per message. PART: `none` (the setup alone), `select` (the pages
//! of invoices), `claim` (the claim), `journal` (the claim, then the journal's commits, 16
//! messages a group).

use std::time::Instant;

use chrono::Utc;
use tickler::secret::DatabaseUrl;
use tickler::store::Store;
use tickler::store::billing::{
    Claimant, Cursor, NotificationAttempt, NotificationClaim, NotificationEnd,
};

mod common;

const CUSTOMERS: usize = 2_000;
const INVOICES: usize = 20_000;
/// Invoices a page of the selection reads: the `batch_size` the reminders benchmark runs with.
const PAGE: i64 = 2_000;
/// Messages whose attempts one journal commit records (and the ends of as many).
const GROUP: usize = 16;

fn main() {
    let (part, n) = common::part_and_count("journal");
    let part = part.as_str();
    assert!(n <= INVOICES, "N: at most {INVOICES} messages");
    let (claim, journal) = match part {
        "none" | "select" => (false, false),
        "claim" => (true, false),
        "journal" => (true, true),
        other => panic!("unknown part `{other}`: write none, select, claim or journal"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}/journal.db", dir.path().display());
    rt.block_on(async {
        let store = Store::connect(&DatabaseUrl::new(url))
            .await
            .expect("the store opens");
        store.migrate().await.expect("the migrations run");
        let today = Utc::now().date_naive();
        let invoices = common::seed(&store, today, CUSTOMERS, INVOICES, |_| 0).await;
        let claims: Vec<NotificationClaim> = invoices[..n]
            .iter()
            .enumerate()
            .map(|(j, invoice)| NotificationClaim {
                // Time-ordered as tickler's own (version 7), the same at every run.
                id: uuid::Builder::from_unix_timestamp_millis(
                    1_780_000_000_000 + j as u64,
                    &[j as u8; 10],
                )
                .into_uuid()
                .to_string(),
                key: format!("reminder:7d:{invoice}:email"),
                channel: "email",
                recipient: format!("customer{}@example.com", j % CUSTOMERS),
                template: "friendly".into(),
                invoice: Some(invoice.clone()),
                status: "sending",
                error: None,
                until: None,
            })
            .collect();
        let claimant = Claimant {
            job: "reminders",
            owner: "bench",
            run: Some(uuid::Uuid::from_u128(7)),
        };
        let start = Instant::now();
        if part == "select" {
            let mut cursor = Cursor::start();
            let mut read = 0;
            while read < n {
                let page = store
                    .open_invoices_due(today, today, &cursor, PAGE.min((n - read) as i64))
                    .await
                    .expect("a page of invoices");
                let Some(last) = page.last() else { break };
                cursor = Cursor::after(last);
                read += std::hint::black_box(page).len();
            }
            assert_eq!(read, n, "every invoice read");
        }
        if claim {
            let taken = store
                .claim_notifications(&claimant, &claims, Utc::now())
                .await
                .expect("the claim commits");
            assert_eq!(taken.len(), n, "every message claimed");
        }
        if journal {
            let groups: Vec<&[NotificationClaim]> = claims.chunks(GROUP).collect();
            for k in 0..=groups.len() {
                let attempts: Vec<NotificationAttempt> = groups.get(k).map_or(vec![], |g| {
                    g.iter()
                        .map(|c| NotificationAttempt {
                            key: c.key.clone(),
                            invoice: c.invoice.clone(),
                        })
                        .collect()
                });
                let ends: Vec<NotificationEnd> = k.checked_sub(1).map_or(vec![], |before| {
                    groups[before]
                        .iter()
                        .map(|c| NotificationEnd {
                            key: c.key.clone(),
                            status: "sent",
                            provider_id: Some(format!("<{}@example.com>", c.id)),
                            error: None,
                        })
                        .collect()
                });
                let marked = store
                    .journal_notifications(claimant.owner, &attempts, &ends, Utc::now())
                    .await
                    .expect("the journal commits");
                assert_eq!(marked.len(), attempts.len(), "every attempt still ours");
            }
        }
        let took = start.elapsed();
        println!(
            "{part}: {n} messages, {:.2} µs each (wall)",
            took.as_secs_f64() * 1e6 / n.max(1) as f64
        );
    });
}
