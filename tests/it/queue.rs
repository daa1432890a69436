//! The task queue and collection campaigns with real parts: a real SMTP server, a local HTTP
//! mock for `custom` handlers, real SQLite files, a real PostgreSQL, in-process daemons on a
//! manual clock, and real daemon processes killed with SIGKILL.

use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tickler::cli::campaign::{self, CreateArgs};
use tickler::cli::tasks::{self, EnqueueArgs};
use tickler::store::Store;
use tickler::store::billing::{NewCustomer, NewInvoice};
use tickler::store::queue::{TaskFilter, TaskRow};
use tickler::store::ts;
use tickler::time::Clock;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::smtp::SmtpServer;
use crate::helpers::{Project, TestDaemon, lines, stderr, stdout, utc, wait_for};

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A customer in New York with two overdue invoices, `A-1` and `B-1`.
async fn billing_data(store: &Store, now: DateTime<Utc>) {
    let c = NewCustomer {
        id: id(),
        org_id: None,
        name: "Ana Silva".into(),
        email: Some("ana@example.com".into()),
        phone: None,
        timezone: Some("America/New_York".into()),
        locale: "en".into(),
        provider_customer_id: None,
    };
    let inv = |number: &str| NewInvoice {
        id: id(),
        number: number.into(),
        customer_id: c.id.clone(),
        subscription_id: None,
        period_start: None,
        period_end: None,
        amount_minor: 250_000,
        currency: "USD".into(),
        issued_at: ts(now - TimeDelta::days(40)),
        due_date: (now - TimeDelta::days(10)).date_naive(),
        status: "open".into(),
        paid_at: None,
        provider_ref: None,
        escalation_level: 0,
        escalated_at: None,
    };
    let mut invoices = vec![inv("A-1"), inv("B-1")];
    store
        .import(&[c], &[], &mut invoices, "INV-")
        .await
        .unwrap();
}

fn email_config(p: &Project, smtp: &SmtpServer, queue: &str) {
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nfrom = \"Acme Billing <billing@acme.test>\"\n\n\
             [templates]\nvars = {{ company = \"Acme Rentals\" }}\n\n{queue}",
            smtp.port
        ),
    );
}

async fn tasks(store: &Store, status: Option<&str>) -> Vec<TaskRow> {
    store
        .tasks(&TaskFilter {
            status: status.map(String::from),
            campaign_id: None,
            limit: 10_000,
        })
        .await
        .unwrap()
}

async fn task(store: &Store, id: &str) -> TaskRow {
    store.task(id).await.unwrap().expect("the task exists")
}

/// Queues a task as `tickler tasks enqueue` does; returns its id.
async fn enqueue(
    store: &Store,
    config: &tickler::config::Config,
    args: EnqueueArgs,
    now: DateTime<Utc>,
) -> String {
    let msg = tasks::enqueue(store, config, args, now).await.unwrap();
    msg.split_whitespace().nth(2).unwrap().to_string()
}

fn data(t: &TaskRow) -> Value {
    serde_json::from_str(t.task_data.as_deref().unwrap_or("null")).unwrap()
}

fn result(t: &TaskRow) -> Value {
    serde_json::from_str(t.result.as_deref().unwrap_or("null")).unwrap()
}

/// Waits until the task `id` has `status`.
async fn wait_status(store: &Store, id: &str, status: &str) -> TaskRow {
    wait_for(
        &format!("task {id} to be {status}"),
        Duration::from_secs(30),
        || async {
            let t = task(store, id).await;
            (t.status == status).then_some(t)
        },
    )
    .await
}

/// The pending task of invoice `number`, once there is exactly one.
async fn pending_of(store: &Store, number: &str) -> TaskRow {
    let inv = store.invoice_by_number(number).await.unwrap().unwrap();
    wait_for(
        &format!("one pending task for {number}"),
        Duration::from_secs(30),
        || async {
            let mut p: Vec<TaskRow> = tasks(store, Some("pending"))
                .await
                .into_iter()
                .filter(|t| t.invoice_id.as_deref() == Some(&inv.id))
                .collect();
            (p.len() == 1).then(|| p.remove(0))
        },
    )
    .await
}

/// Seed 000's example workflow on a controllable clock: campaign created, first emails 30
/// minutes later, follow-ups at 10:00 in the customer's zone (across a DST change), a
/// too-early email rescheduled, an escalation past the last stage, and payments cancelling
/// everything that remains, each in the transaction that records the payment.
async fn campaign_story(p: Project) {
    let smtp = SmtpServer::start(p.path());
    email_config(&p, &smtp, "");
    let store = p.store().await;
    // 2026-03-02 07:00 in New York (UTC-5); the clocks go forward on 2026-03-08.
    let t0 = utc("2026-03-02T12:00:00Z");
    billing_data(&store, t0).await;
    let config = p.config();
    let daemon = TestDaemon::start(config.clone(), t0).await;

    let out = campaign::create(
        &store,
        &config,
        CreateArgs {
            name: "march-overdue".into(),
            invoices: vec!["A-1".into(), "B-1".into()],
            stages: Some(vec!["friendly".into(), "professional".into()]),
            max_attempts: Some(4),
            days_between: Some(5),
            send_hour: Some(10),
            ..Default::default()
        },
        t0,
    )
    .await
    .unwrap();
    assert!(
        out.contains("with 2 invoices; first emails (friendly) at 2026-03-02T12:30:00+00:00"),
        "{out}"
    );
    let first = pending_of(&store, "A-1").await;
    assert_eq!(first.task_type, "send_email");
    assert_eq!(first.scheduled_for, utc("2026-03-02T12:30:00Z"));

    // 30 minutes later: both first emails, friendly.
    daemon.clock.advance(Duration::from_secs(30 * 60));
    wait_status(&store, &first.id, "completed").await;
    let mails = smtp.wait_for_messages(2).await;
    assert!(mails.iter().all(|m| m.to.contains("ana@example.com")));
    assert_eq!(
        result(&task(&store, &first.id).await)["template"],
        "friendly"
    );

    // The follow-up: five dates later at 10:00 New York time (still UTC-5 on 03-07).
    let follow = pending_of(&store, "A-1").await;
    assert_eq!(follow.task_type, "follow_up");
    assert_eq!(follow.scheduled_for, utc("2026-03-07T15:00:00Z"));
    assert_eq!(data(&follow), serde_json::json!({ "tone": "professional" }));

    // An email asked for too early is moved to when it is time (the queued one cancelled
    // first, so it is the only one).
    tasks::cancel(&store, &follow.id, t0).await.unwrap();
    let now = daemon.clock.now();
    let early_id = enqueue(
        &store,
        &config,
        EnqueueArgs {
            task_type: "follow_up".into(),
            after: Some("0s".into()),
            data: Some(r#"{"tone": "professional"}"#.into()),
            invoice: Some("A-1".into()),
            campaign: Some("march-overdue".into()),
            ..Default::default()
        },
        now,
    )
    .await;
    let early = wait_status(&store, &early_id, "completed").await;
    assert_eq!(result(&early)["rescheduled_to"], "2026-03-07T15:00:00Z");
    let follow = pending_of(&store, "A-1").await;
    assert_eq!(follow.scheduled_for, utc("2026-03-07T15:00:00Z"));
    assert_eq!(smtp.messages().len(), 2, "nothing sent too early");

    // 2026-03-07 10:00 in New York: the professional follow-ups.
    daemon.clock.advance(
        (utc("2026-03-07T15:00:00Z") - daemon.clock.now())
            .to_std()
            .unwrap(),
    );
    wait_status(&store, &follow.id, "completed").await;
    smtp.wait_for_messages(4).await;

    // B pays: its pending email is cancelled in the same transaction.
    let b_next = pending_of(&store, "B-1").await;
    assert!(
        store
            .mark_paid("B-1", daemon.clock.now(), None, None)
            .await
            .unwrap()
    );
    let b_next = task(&store, &b_next.id).await;
    assert_eq!(b_next.status, "cancelled");
    assert_eq!(
        b_next.error_message.as_deref(),
        Some("cancelled: invoice B-1 was paid")
    );

    // Past the last stage, A gets an escalation, on 03-12 at 10:00 New York time, which is
    // now daylight time (UTC-4).
    let esc = pending_of(&store, "A-1").await;
    assert_eq!(esc.task_type, "escalate");
    assert_eq!(esc.scheduled_for, utc("2026-03-12T14:00:00Z"));
    daemon
        .clock
        .advance((esc.scheduled_for - daemon.clock.now()).to_std().unwrap());
    wait_status(&store, &esc.id, "completed").await;
    let mails = smtp.wait_for_messages(5).await;
    assert_eq!(mails.len(), 5);
    assert_eq!(result(&task(&store, &esc.id).await)["template"], "urgent");
    let last = pending_of(&store, "A-1").await;
    assert_eq!(last.task_type, "follow_up");
    assert_eq!(
        data(&last),
        serde_json::json!({ "tone": "urgent" }),
        "the escalated tone stays"
    );

    // A pays: everything left is cancelled and the campaign completes.
    assert!(
        store
            .mark_paid("A-1", daemon.clock.now(), None, None)
            .await
            .unwrap()
    );
    assert_eq!(task(&store, &last.id).await.status, "cancelled");
    let c = store.campaign("march-overdue").await.unwrap().unwrap();
    assert_eq!(c.status, "completed");
    assert!(tasks(&store, Some("pending")).await.is_empty());
    let shown = campaign::show(&store, "march-overdue").await.unwrap();
    assert!(
        shown.contains("A-1            paid      emails sent 3"),
        "{shown}"
    );
    assert!(
        shown.contains("B-1            paid      emails sent 2"),
        "{shown}"
    );

    // Seed 000's monitoring SQL runs unchanged.
    seed_monitoring_sql(&store).await;
    daemon.stop().await;
    store.close().await;
    assert_eq!(smtp.messages().len(), 5, "no email after the payments");
}

async fn seed_monitoring_sql(store: &Store) {
    let pending =
        "SELECT * FROM scheduled_tasks \nWHERE status = 'pending' \nORDER BY scheduled_for;";
    let failed = "SELECT * FROM scheduled_tasks \nWHERE status = 'failed';";
    let stats = "SELECT \n  task_type,\n  status,\n  COUNT(*) as count\nFROM scheduled_tasks\nGROUP BY task_type, status;";
    let count = |text: &'static str| async move {
        match store {
            Store::Sqlite(s) => sqlx::query(text).fetch_all(s.pool()).await.unwrap().len(),
            Store::Postgres(s) => sqlx::query(text).fetch_all(s.pool()).await.unwrap().len(),
        }
    };
    assert_eq!(count(pending).await, 0);
    assert_eq!(count(failed).await, 0);
    // (send_email, completed), (follow_up, completed), (follow_up, cancelled) of the early
    // one and of A's last, (escalate, completed) of A, (escalate, cancelled) of B.
    assert_eq!(count(stats).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_story_on_sqlite() {
    campaign_story(Project::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_story_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    campaign_story(p).await;
}

/// Seed 000: an escalation of an invoice whose next email is already queued changes the tone
/// of that email and of the later ones. Before, it was skipped ("too early; the invoice's next
/// email is already scheduled"), the campaign kept its tone and the next email went out
/// `professional`.
async fn escalation_story(p: Project) {
    let smtp = SmtpServer::start(p.path());
    email_config(&p, &smtp, "");
    let store = p.store().await;
    let t0 = utc("2026-03-02T12:00:00Z");
    billing_data(&store, t0).await;
    let config = p.config();
    let daemon = TestDaemon::start(config.clone(), t0).await;
    campaign::create(
        &store,
        &config,
        CreateArgs {
            name: "escalated".into(),
            invoices: vec!["A-1".into()],
            stages: Some(vec![
                "friendly".into(),
                "professional".into(),
                "firm".into(),
            ]),
            max_attempts: Some(4),
            days_between: Some(5),
            send_hour: Some(10),
            ..Default::default()
        },
        t0,
    )
    .await
    .unwrap();
    let first = pending_of(&store, "A-1").await;
    daemon.clock.advance(Duration::from_secs(30 * 60));
    wait_status(&store, &first.id, "completed").await;
    smtp.wait_for_messages(1).await;
    let next = pending_of(&store, "A-1").await;
    assert_eq!(data(&next), serde_json::json!({ "tone": "professional" }));

    let esc_id = enqueue(
        &store,
        &config,
        EnqueueArgs {
            task_type: "escalate".into(),
            after: Some("0s".into()),
            data: Some(r#"{"newTone": "urgent"}"#.into()),
            invoice: Some("A-1".into()),
            campaign: Some("escalated".into()),
            ..Default::default()
        },
        daemon.clock.now(),
    )
    .await;
    let esc = wait_status(&store, &esc_id, "completed").await;
    assert_eq!(result(&esc)["tone"], "urgent", "{:?}", result(&esc));
    let retoned = task(&store, &next.id).await;
    assert_eq!(
        (retoned.status.as_str(), data(&retoned)),
        ("pending", serde_json::json!({ "tone": "urgent" })),
        "the queued email takes the new tone, at the same time"
    );
    assert_eq!(retoned.scheduled_for, next.scheduled_for);
    assert_eq!(smtp.messages().len(), 1, "nothing sent early");

    daemon
        .clock
        .advance((next.scheduled_for - daemon.clock.now()).to_std().unwrap());
    let sent = wait_status(&store, &next.id, "completed").await;
    assert_eq!(result(&sent)["template"], "urgent");
    smtp.wait_for_messages(2).await;
    let later = pending_of(&store, "A-1").await;
    assert_eq!(
        data(&later),
        serde_json::json!({ "tone": "urgent" }),
        "and the later ones"
    );
    daemon.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_changes_the_tone_of_what_is_pending() {
    escalation_story(Project::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_changes_the_tone_of_what_is_pending_postgres() {
    if let Some(p) = Project::postgres().await {
        escalation_story(p).await;
    }
}

/// Failures are retried after the type's backoff, then the task fails with the last error;
/// `tickler tasks retry` runs it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_after_its_backoff_then_fails() {
    let p = Project::sqlite();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .up_to_n_times(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&server)
        .await;
    p.write_config(
        "",
        &format!(
            "[queue.retry.custom]\nbackoff = [\"5m\", \"15m\"]\nmax_retries = 2\n\n\
             [queue.handlers.crm]\nkind = \"http\"\nmethod = \"POST\"\nurl = \"{}/hook\"\n",
            server.uri()
        ),
    );
    let store = p.store().await;
    let t0 = utc("2026-06-01T08:00:00Z");
    let config = p.config();
    let daemon = TestDaemon::start(config.clone(), t0).await;
    let id = enqueue(
        &store,
        &config,
        EnqueueArgs {
            task_type: "custom".into(),
            after: Some("0s".into()),
            data: Some(r#"{"handler": "crm", "customer": 42}"#.into()),
            ..Default::default()
        },
        t0,
    )
    .await;
    let first = wait_for("the first retry", Duration::from_secs(30), || async {
        let t = task(&store, &id).await;
        (t.retry_count == 1).then_some(t)
    })
    .await;
    assert_eq!(first.status, "pending");
    assert_eq!(first.scheduled_for, t0 + TimeDelta::minutes(5));
    assert!(
        first
            .error_message
            .as_deref()
            .unwrap()
            .contains("answered 503")
    );
    daemon.clock.advance(Duration::from_secs(300));
    let second = wait_for("the second retry", Duration::from_secs(30), || async {
        let t = task(&store, &id).await;
        (t.retry_count == 2).then_some(t)
    })
    .await;
    assert_eq!(second.scheduled_for, t0 + TimeDelta::minutes(20));
    daemon.clock.advance(Duration::from_secs(900));
    let failed = wait_status(&store, &id, "failed").await;
    assert_eq!(failed.attempts, 3);
    assert!(
        failed
            .error_message
            .as_deref()
            .unwrap()
            .ends_with("(after 2 retries)"),
        "{:?}",
        failed.error_message
    );
    // The handler got the task as JSON with its idempotency key, each time.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(
            r.headers.get("idempotency-key").unwrap().to_str().unwrap(),
            id
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["data"]["customer"], 42);
    }
    let out = tasks::retry(&store, &id, daemon.clock.now()).await.unwrap();
    assert_eq!(out, format!("task {id} is pending again, due now"));
    let done = wait_status(&store, &id, "completed").await;
    assert_eq!(done.attempts, 4);
    daemon.stop().await;
    store.close().await;
}

/// A send whose dedup key is already `sent` (the attempt before a crash sent it) is not sent
/// again: the task completes and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_after_a_crash_never_sends_twice() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    email_config(&p, &smtp, "");
    let store = p.store().await;
    let t0 = utc("2026-06-01T08:00:00Z");
    billing_data(&store, t0).await;
    let config = p.config();
    let id = enqueue(
        &store,
        &config,
        EnqueueArgs {
            task_type: "send_email".into(),
            after: Some("1m".into()),
            data: Some(r#"{"tone": "firm"}"#.into()),
            invoice: Some("A-1".into()),
            ..Default::default()
        },
        t0,
    )
    .await;
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    sqlx::query(
        "INSERT INTO notification_log (id, dedup_key, channel, recipient, status, created_at, updated_at)
         VALUES ('x', $1, 'email', 'ana@example.com', 'sent', $2, $2)",
    )
    .bind(format!("task:{id}"))
    .bind(ts(t0))
    .execute(s.pool())
    .await
    .unwrap();
    let daemon = TestDaemon::start(config, t0 + TimeDelta::minutes(2)).await;
    let done = wait_status(&store, &id, "completed").await;
    assert_eq!(result(&done)["already_sent"], true);
    daemon.stop().await;
    assert!(smtp.messages().is_empty());
    store.close().await;
}

/// A `send_email` task's own `subject` and `body` are templates rendered with the invoice's
/// context, as the tone templates are; one that cannot be rendered for its invoice (here
/// `{{ campaign }}` outside a campaign) fails at once, without retries and without sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_subject_and_body_are_rendered_with_the_invoice() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    email_config(&p, &smtp, "");
    let store = p.store().await;
    let t0 = utc("2026-06-01T08:00:00Z");
    billing_data(&store, t0).await;
    let config = p.config();
    let own = |subject: &str, body: &str| EnqueueArgs {
        task_type: "send_email".into(),
        after: Some("0s".into()),
        data: Some(serde_json::json!({ "subject": subject, "body": body }).to_string()),
        invoice: Some("A-1".into()),
        ..Default::default()
    };
    let sent = enqueue(
        &store,
        &config,
        own(
            "Invoice {{ invoice.number }} for {{ customer.first_name }}",
            "{{ vars.company }}: {{ invoice.amount }} was due on {{ invoice.due_date }}.",
        ),
        t0,
    )
    .await;
    let broken = enqueue(
        &store,
        &config,
        own("Step {{ campaign.email_number }}", "Hello"),
        t0,
    )
    .await;
    let daemon = TestDaemon::start(config, t0).await;
    let done = wait_status(&store, &sent, "completed").await;
    assert_eq!(result(&done)["template"], "custom-message");
    let failed = wait_status(&store, &broken, "failed").await;
    assert_eq!(failed.attempts, 1);
    assert_eq!(
        failed.error_message.as_deref().unwrap(),
        "cannot render the `subject` template line 1: undefined value: `campaign` is \
         undefined; the task's `subject` is a minijinja template"
    );
    daemon.stop().await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].subject, "Invoice A-1 for Ana");
    assert!(
        mails[0]
            .body
            .trim_end()
            .ends_with("\n\nAcme Rentals: USD 2,500.00 was due on 2026-05-22."),
        "{}",
        mails[0].body
    );
    store.close().await;
}

/// Two daemons on one PostgreSQL work one queue: every task runs exactly once, and both
/// take part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_run_every_task_once() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(20)))
        .mount(&server)
        .await;
    p.write_config(
        "",
        &format!(
            "[queue]\nbatch = 10\nconcurrency = 20\n\n\
             [queue.handlers.crm]\nkind = \"http\"\nmethod = \"POST\"\nurl = \"{}/hook\"\n",
            server.uri()
        ),
    );
    let store = p.store().await;
    let config = p.config();
    let t0 = utc("2026-06-01T08:00:00Z");
    let clock = std::sync::Arc::new(tickler::time::ManualClock::new(t0));
    let a = TestDaemon::start_with_clock(config.clone(), clock.clone()).await;
    let b = TestDaemon::start_with_clock(config.clone(), clock.clone()).await;
    let requests: Vec<_> = (0..300)
        .map(|i| {
            let mut r = tickler::queue::TaskRequest::new(tickler::queue::TaskType::Custom, t0);
            r.data = Some(serde_json::json!({ "handler": "crm", "n": i }));
            r
        })
        .collect();
    let ids = tickler::queue::runner::enqueue(&store, &config.queue, requests, t0)
        .await
        .unwrap();
    wait_for("300 tasks completed", Duration::from_secs(60), || async {
        (tasks(&store, Some("completed")).await.len() == 300).then_some(())
    })
    .await;
    let done = tasks(&store, Some("completed")).await;
    assert!(
        done.iter().all(|t| t.attempts == 1),
        "no task was claimed twice"
    );
    let owners: std::collections::HashSet<_> =
        done.iter().filter_map(|t| t.lease_owner.clone()).collect();
    assert_eq!(owners.len(), 2, "both daemons ran tasks");
    let mut keys: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    keys.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(keys, expected, "each task called its handler exactly once");
    a.stop().await;
    b.stop().await;
    store.close().await;
}

fn spawn_daemon(p: &Project) -> Child {
    p.daemon_command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tickler")
}

/// kill -9 of the daemon running a task: its handler dies with it, and another daemon reclaims
/// the task when the lease expires and completes it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_killed_daemon_is_reclaimed_after_its_lease() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let dir = p.path().display().to_string();
    p.write_config(
        "",
        &format!(
            "[queue]\nlease = \"2s\"\n\n[queue.handlers.slow]\nkind = \"command\"\nshell = true\n\
             command = [\"echo $TICKLER_TASK_ID >> {dir}/started; sleep 3; echo $TICKLER_TASK_ID >> {dir}/done\"]\n"
        ),
    );
    let store = p.store().await;
    let mut first = spawn_daemon(&p);
    let id = p.enqueue_custom("slow");
    let started = p.path().join("started");
    wait_for("the handler to start", Duration::from_secs(30), || async {
        (lines(&started).len() == 1).then_some(())
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = spawn_daemon(&p);
    let t = wait_status(&store, &id, "completed").await;
    assert_eq!(t.attempts, 2, "started twice: once by each daemon");
    assert_eq!(t.retry_count, 1, "the lost attempt counts as a failed one");
    assert_eq!(lines(&started), vec![id.clone(), id.clone()]);
    assert_eq!(
        lines(&p.path().join("done")),
        vec![id.clone()],
        "completed once"
    );
    second.kill().unwrap();
    second.wait().unwrap();
    store.close().await;
}

/// Waits until a `tickler run` of this project has registered (its task runner then starts).
async fn wait_registered(store: &Store) {
    wait_for(
        "the daemon to register",
        Duration::from_secs(30),
        || async { (!store.instances().await.unwrap().is_empty()).then_some(()) },
    )
    .await;
}

/// How long a test waits for a task another process inserted or moved: far more than the
/// milliseconds it takes (a correctness bound; the queue benchmark measures the latency), far
/// less than the runner's next look of its own (30 s) or the fallback poll (1 h).
const NOTICED_WITHIN: Duration = Duration::from_secs(10);

async fn wait_completed_soon(store: &Store, id: &str, what: &str) -> TaskRow {
    wait_for(what, NOTICED_WITHIN, || async {
        let t = task(store, id).await;
        (t.status == "completed").then_some(t)
    })
    .await
}

/// A pending task due in an hour, then moved by another process (this test's connection) to
/// now, runs at once: the runner reads the earliest time again instead of finishing its sleep.
/// A task due now runs first, so the runner has read the hour-away time before the move (its
/// claim of that task comes before its read of the next time, and that before it completes).
async fn a_task_moved_earlier_runs_at_once(p: &Project, store: &Store) {
    let data = r#"{"handler": "nothing"}"#;
    let out = p.cli(&[
        "tasks", "enqueue", "--type", "custom", "--in", "1h", "--data", data,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).split_whitespace().nth(2).unwrap().to_string();
    let first = p.enqueue_custom("nothing");
    wait_completed_soon(store, &first, "the task due now to run").await;
    let sql = store.sql("UPDATE scheduled_tasks SET scheduled_for = $1 WHERE id = $2::uuid");
    let moved = match store {
        Store::Sqlite(s) => sqlx::query(&sql)
            .bind(ts(Utc::now()))
            .bind(&id)
            .execute(s.pool())
            .await
            .unwrap()
            .rows_affected(),
        Store::Postgres(s) => sqlx::query(&sql)
            .bind(Utc::now())
            .bind(&id)
            .execute(s.pool())
            .await
            .unwrap()
            .rows_affected(),
    };
    assert_eq!(moved, 1);
    let t = wait_completed_soon(store, &id, "the task moved from +1h to now to run").await;
    assert_eq!(t.attempts, 1);
}

/// On SQLite, which has no NOTIFY, a task that another process inserts (`tickler tasks
/// enqueue`, plain SQL through `sqlite3`) or moves earlier wakes a sleeping runner through
/// the kernel's notification of the write to the WAL. The fallback poll is an hour and the
/// runner's own next look 30 s away, both beyond this test's waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_task_inserted_or_moved_earlier_by_another_process_wakes_the_runner() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[queue]\npoll = \"1h\"\n\n[queue.handlers.nothing]\nkind = \"noop\"\n",
    );
    let store = p.store().await;
    let mut daemon = p.spawn_logged_daemon();
    wait_registered(&store).await;

    let id = p.enqueue_custom("nothing");
    let t = wait_completed_soon(&store, &id, "the task of `tickler tasks enqueue` to run").await;
    assert_eq!(t.attempts, 1);

    // `sqlite3` inserts a task due now, then runs `then` (SQL or dot commands); its id.
    let db = p.path().join("tickler.db");
    let insert_by_sqlite3 = |then: &[&str]| {
        let id = uuid::Uuid::new_v4().to_string();
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(format!(
                "INSERT INTO scheduled_tasks (id, task_type, task_data, scheduled_for)
                 VALUES ('{id}', 'custom', '{{\"handler\": \"nothing\"}}', '{}')",
                ts(Utc::now())
            ))
            .args(then)
            .output()
            .expect("run sqlite3");
        assert!(out.status.success(), "{}", stderr(&out));
        id
    };
    let id = insert_by_sqlite3(&[]);
    wait_completed_soon(&store, &id, "the task inserted by sqlite3 to run").await;

    // Another process commits a task, then holds the write lock for 1.5 s (a long import).
    // The watch reads the count of changes under the write lock, so it waits for that lock by
    // design (up to the busy timeout): no "slow statement" to warn about in the daemon's log,
    // and the task runs once the lock is released.
    let id = insert_by_sqlite3(&["BEGIN IMMEDIATE;", ".shell sleep 1.5", "COMMIT;"]);
    wait_completed_soon(&store, &id, "the task committed before a held lock to run").await;

    a_task_moved_earlier_runs_at_once(&p, &store).await;
    let logged = p.daemon_log();
    // (A write of the daemon's own that met the held lock may be logged as slow: not the
    // watch's.)
    assert!(
        !logged
            .lines()
            .any(|l| l.contains("slow statement") && l.contains("queue_changes")),
        "the watch's wait for the write lock was logged as a slow statement:\n{logged}"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    store.close().await;
}

/// On PostgreSQL, an update that makes a pending task due sooner notifies the runners, as an
/// insert does (before migration 0006 the runner saw it at its next look, up to 30 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_task_moved_earlier_by_another_process_wakes_the_runner() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    p.write_config("", "[queue.handlers.nothing]\nkind = \"noop\"\n");
    let store = p.store().await;
    let mut daemon = spawn_daemon(&p);
    wait_registered(&store).await;
    a_task_moved_earlier_runs_at_once(&p, &store).await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    store.close().await;
}

/// `tickler tasks run-now`, from another process, makes a task queued for 30 minutes from now
/// due at once, and the running daemon runs it without anyone advancing its clock: what an
/// operator types to see a campaign's next email go out instead of waiting for it.
async fn run_now_story(p: Project) {
    p.write_config(
        "",
        "[queue]\npoll = \"1h\"\n\n[queue.handlers.nothing]\nkind = \"noop\"\n",
    );
    let store = p.store().await;
    // The daemon's clock stands a minute ahead of the CLI's, so `run-now`'s "now" is due for
    // it, and stands still, so only `run-now` can make the task due.
    let t0 = Utc::now() + TimeDelta::minutes(1);
    let daemon = TestDaemon::start(p.config(), t0).await;
    let data = r#"{"handler": "nothing"}"#;
    let out = p.cli(&[
        "tasks", "enqueue", "--type", "custom", "--in", "30m", "--data", data,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).split_whitespace().nth(2).unwrap().to_string();
    // A task due now runs first, so the runner has read the later task's time and sleeps
    // towards it when `run-now` comes.
    let first = p.enqueue_custom("nothing");
    wait_completed_soon(&store, &first, "the task due now to run").await;
    let later = task(&store, &id).await;
    assert_eq!(later.status, "pending");
    assert!(later.scheduled_for > t0 + TimeDelta::minutes(25));

    let out = p.cli(&["tasks", "run-now", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("task {id} is due now\n"));
    let t = wait_completed_soon(&store, &id, "the task made due now to run").await;
    assert_eq!(t.attempts, 1);
    assert!(t.scheduled_for <= t0, "{}", t.scheduled_for);
    assert_eq!(daemon.clock.now(), t0, "the daemon's clock never moved");

    let out = p.cli(&["tasks", "run-now", &id]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: task {id} is completed; only a pending task can be run now: queue a new \
             one with `tickler tasks enqueue`"
        )
    );
    daemon.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_runs_a_later_task_at_once() {
    run_now_story(Project::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_runs_a_later_task_at_once_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    run_now_story(p).await;
}

/// `tasks enqueue --org` stores the task under that organisation (in the UUID's canonical
/// form, as campaigns keep theirs); without it the task is the single organisation's.
async fn org_story(p: Project) {
    p.write_config("", "[queue.handlers.nothing]\nkind = \"noop\"\n");
    let store = p.store().await;
    let data = r#"{"handler": "nothing"}"#;
    let enqueue = |extra: &[&str]| {
        let mut args = vec![
            "tasks", "enqueue", "--type", "custom", "--in", "1h", "--data", data,
        ];
        args.extend_from_slice(extra);
        let out = p.cli(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).split_whitespace().nth(2).unwrap().to_string()
    };
    let tenant = enqueue(&["--org", "6F9619FF-8B86-D011-B42D-00C04FC964FF"]);
    let single = enqueue(&[]);
    assert_eq!(
        task(&store, &tenant).await.org_id,
        "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    );
    assert_eq!(
        task(&store, &single).await.org_id,
        tickler::store::queue::NO_ORG
    );
    store.close().await;
}

#[tokio::test]
async fn enqueue_org_sets_the_task_organisation() {
    org_story(Project::sqlite()).await;
}

#[tokio::test]
async fn enqueue_org_sets_the_task_organisation_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    org_story(p).await;
}

/// A SQLite project for the CLI: an email channel (never reached) and the billing sample.
async fn cli_project() -> (Project, Store) {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[channels.email]\nfrom = \"b@acme.test\"\n\n[templates]\nvars = { company = \"Acme\" }\n",
    );
    let store = p.store().await;
    billing_data(&store, Utc::now()).await;
    (p, store)
}

/// Bad input is refused with a message that says what to do, and writes nothing.
#[tokio::test]
async fn bad_task_and_campaign_input_is_refused_and_writes_nothing() {
    let (p, store) = cli_project().await;
    let err = |args: &[&str]| {
        let out = p.cli(args);
        assert!(
            !out.status.success(),
            "{args:?} succeeded: {}",
            stdout(&out)
        );
        stderr(&out).trim().to_string()
    };
    assert_eq!(
        err(&["tasks", "enqueue", "--type", "send_sms", "--in", "1m"]),
        "error: unknown task type `send_sms`: expected one of `send_email`, `follow_up`, \
         `check_payment`, `escalate`, `pause_campaign`, `resume_campaign`, `custom`, \
         `deliver_message`"
    );
    assert_eq!(
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "send_email",
            "--in",
            "1m",
            "--invoice",
            "A-1",
            "--data",
            "{\"tone\": firm}"
        ]),
        "error: invalid JSON in `--data`: expected ident at line 1 column 11; write an object \
         such as '{\"tone\": \"firm\"}'"
    );
    let past = err(&[
        "tasks",
        "enqueue",
        "--type",
        "check_payment",
        "--invoice",
        "A-1",
        "--at",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(
        past.starts_with("error: `--at 2020-01-01T00:00:00Z` is in the past (it is now ")
            && past.ends_with("); to run a task at once use `--in 0s`"),
        "{past}"
    );
    assert_eq!(
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "send_email",
            "--in",
            "1m",
            "--invoice",
            "A-1",
            "--data",
            "{\"tone\": \"rude\"}"
        ]),
        "error: no template for the tone `rude`: add `rude.j2` to the templates directory or use \
         one of: custom-message, escalation-1, escalation-2, escalation-3, firm, friendly, \
         professional, stats-report, urgent"
    );
    assert_eq!(
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "send_email",
            "--in",
            "1m",
            "--data",
            "{\"colour\": \"red\"}"
        ]),
        "error: invalid data for a `send_email` task: unknown field `colour`, expected one of \
         `tone`, `templateId`, `subject`, `body`; it takes `tone`, `templateId`, `subject` and \
         `body`"
    );
    let own_text = |subject: &str| {
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "send_email",
            "--in",
            "1m",
            "--invoice",
            "A-1",
            "--data",
            &serde_json::json!({ "subject": subject, "body": "Hello" }).to_string(),
        ])
    };
    assert_eq!(
        own_text("Invoice {{ invoice.number"),
        "error: invalid data for a `send_email` task: the `subject` template line 1: syntax \
         error: unexpected end of input, expected end of variable block; `subject` and `body` \
         are minijinja templates, e.g. `Invoice {{ invoice.number }} is due`"
    );
    assert_eq!(
        own_text("Invoice {{ invoice.nmber }}"),
        "error: invalid data for a `send_email` task: cannot render the `subject` template line \
         1: undefined value: `invoice.nmber` is undefined; `subject` and `body` are minijinja \
         templates, e.g. `Invoice {{ invoice.number }} is due`"
    );
    assert_eq!(
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "custom",
            "--in",
            "1m",
            "--data",
            "{\"handler\": \"crm\"}"
        ]),
        "error: no handler `crm` for a `custom` task: add `[queue.handlers.crm]` to config.toml \
         (none is configured)"
    );
    assert_eq!(
        err(&["tasks", "enqueue", "--type", "follow_up", "--in", "1m"]),
        "error: a `follow_up` task needs an invoice (`--invoice NUMBER`)"
    );
    // A cancelled (completed) campaign takes no new tasks, and cannot be resumed.
    let out = p.cli(&["campaign", "create", "--name", "q1", "--invoices", "A-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(p.cli(&["invoice", "mark-paid", "A-1"]).status.success());
    assert_eq!(
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "check_payment",
            "--in",
            "1m",
            "--campaign",
            "q1"
        ]),
        "error: campaign `q1` is completed (its tasks were cancelled); create a new campaign instead"
    );
    assert_eq!(
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "check_payment",
            "--in",
            "1m",
            "--invoice",
            "A-1",
            "--org",
            "acme"
        ]),
        "error: `--org acme` is not a UUID"
    );
    assert_eq!(
        err(&[
            "tasks",
            "enqueue",
            "--type",
            "check_payment",
            "--in",
            "1m",
            "--campaign",
            "q1",
            "--org",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff"
        ]),
        "error: `--org 6f9619ff-8b86-d011-b42d-00c04fc964ff` is not the organisation of \
         campaign `q1` (00000000-0000-0000-0000-000000000000): a campaign's tasks belong to its \
         organisation; leave out `--org`"
    );
    assert_eq!(
        err(&["campaign", "resume", "q1"]),
        "error: cannot resume campaign `q1`: it is completed (a completed campaign stays \
         completed; create a new one)"
    );
    assert_eq!(
        err(&[
            "campaign",
            "create",
            "--name",
            "q2",
            "--invoices",
            "A-1,Z-9"
        ]),
        "error: no invoice numbered `Z-9`"
    );
    assert_eq!(
        err(&["campaign", "create", "--name", "q2", "--invoices", "A-1"]),
        "error: invoice A-1 is paid; a campaign takes open invoices"
    );
    assert_eq!(
        err(&["tasks", "cancel", "nope"]),
        "error: `nope` is not a task id: use the UUID `tickler tasks list` shows"
    );
    // Nothing was written by the refused commands: only the campaign's first email, cancelled.
    let all = tasks(&store, None).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].status, "cancelled");
    assert_eq!(
        err(&["tasks", "retry", &uuid::Uuid::nil().to_string()]),
        "error: no task 00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(
        err(&["tasks", "cancel", &all[0].id]),
        format!(
            "error: task {} is cancelled; only a pending task can be cancelled",
            all[0].id
        )
    );
    assert_eq!(
        err(&["tasks", "run-now", &all[0].id]),
        format!(
            "error: task {0} is cancelled; only a pending task can be run now: `tickler tasks \
             retry {0}` queues it again, due now",
            all[0].id
        )
    );
    assert_eq!(
        err(&["tasks", "run-now", &uuid::Uuid::nil().to_string()]),
        "error: no task 00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(
        err(&["tasks", "run-now", "nope"]),
        "error: `nope` is not a task id: use the UUID `tickler tasks list` shows"
    );
    assert_eq!(store.campaigns().await.unwrap().len(), 1);
    store.close().await;
}

/// Pausing a campaign cancels its pending tasks in the same transaction; resuming schedules
/// each invoice's next email again.
#[tokio::test]
async fn pause_cancels_and_resume_reschedules() {
    let (p, store) = cli_project().await;
    let out = p.cli(&[
        "campaign",
        "create",
        "--name",
        "spring",
        "--invoices",
        "A-1,B-1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = p.cli(&["campaign", "pause", "spring"]);
    assert_eq!(
        stdout(&out),
        "paused campaign `spring`; its pending tasks are cancelled\n"
    );
    assert_eq!(tasks(&store, Some("cancelled")).await.len(), 2);
    assert!(tasks(&store, Some("pending")).await.is_empty());
    let out = p.cli(&["campaign", "resume", "spring"]);
    assert_eq!(
        stdout(&out),
        "resumed campaign `spring`; scheduled 2 emails\n"
    );
    let pending = tasks(&store, Some("pending")).await;
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|t| t.task_type == "send_email"));
    let list = stdout(&p.cli(&["campaign", "list"]));
    assert!(
        list.contains("spring                    active           2        2"),
        "{list}"
    );
    store.close().await;
}

/// A `send_email` task to an address blocked on every channel (`*`) sends nothing: it fails at
/// once, without retries, naming the block, as a customer without an email does, and its
/// message is recorded `suppressed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_email_to_a_blocked_address_is_suppressed() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    email_config(&p, &smtp, "");
    let store = p.store().await;
    let t0 = utc("2026-06-01T08:00:00Z");
    billing_data(&store, t0).await;
    let out = p.cli(&[
        "contacts",
        "block",
        "*",
        "Ana@Example.com",
        "--reason",
        "disputed",
    ]);
    assert_eq!(
        stdout(&out),
        "blocked `ana@example.com` on `*`\n",
        "{}",
        stderr(&out)
    );
    let config = p.config();
    let args = EnqueueArgs {
        task_type: "send_email".into(),
        after: Some("0s".into()),
        invoice: Some("A-1".into()),
        ..Default::default()
    };
    let id = enqueue(&store, &config, args, t0).await;
    let daemon = TestDaemon::start(config, t0).await;
    let failed = wait_status(&store, &id, "failed").await;
    daemon.stop().await;
    assert_eq!(failed.attempts, 1);
    let today = Utc::now().format("%Y-%m-%d");
    assert_eq!(
        failed.error_message.as_deref().unwrap(),
        format!("blocked on `*` since {today}: disputed (source `cli`); not sent")
    );
    assert_eq!(smtp.messages().len(), 0);
    let log = store
        .query_json("SELECT status FROM notification_log", t0, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "suppressed");
    store.close().await;
}

/// A queue email due outside the email channel's send window waits in its own task (moved to
/// the window's opening, without counting a retry, so what follows it in a campaign follows it
/// then) and goes out when the window opens in the customer's zone (New York here), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_email_waits_for_the_customers_window() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nfrom = \"Acme Billing <billing@acme.test>\"\n\
             send_window = {{ hours = \"09:00-17:00\" }}\n\n\
             [templates]\nvars = {{ company = \"Acme Rentals\" }}\n",
            smtp.port
        ),
    );
    let store = p.store().await;
    // 08:00 UTC is 04:00 in New York (EDT): the window opens at 13:00 UTC.
    let t0 = utc("2026-06-01T08:00:00Z");
    billing_data(&store, t0).await;
    let config = p.config();
    let id = enqueue(
        &store,
        &config,
        EnqueueArgs {
            task_type: "send_email".into(),
            after: Some("0s".into()),
            invoice: Some("A-1".into()),
            ..Default::default()
        },
        t0,
    )
    .await;
    let daemon = TestDaemon::start(config, t0).await;
    let waiting = wait_for("the task to wait", Duration::from_secs(30), || async {
        let t = task(&store, &id).await;
        (t.status == "pending" && t.attempts == 1).then_some(t)
    })
    .await;
    assert_eq!(waiting.scheduled_for, utc("2026-06-01T13:00:00Z"));
    assert_eq!(waiting.retry_count, 0, "waiting is no retry");
    assert_eq!(result(&waiting)["deferred_until"], "2026-06-01T13:00:00Z");
    assert!(smtp.messages().is_empty());
    daemon.clock.advance(Duration::from_secs(5 * 3600));
    let done = wait_status(&store, &id, "completed").await;
    assert_eq!(done.retry_count, 0);
    daemon.stop().await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].to, "ana@example.com");
    store.close().await;
}
