//! Send windows (DESIGN.md invariant 6) on a real daemon with a manual clock, a real SMTP
//! server and both databases: customers in three zones, a reminder run that straddles their
//! windows' openings, the deferred messages going out when their windows open and not before,
//! once, and a payment cancelling one that waits.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use tickler::store::Store;
use tickler::store::billing::{NewCustomer, NewInvoice};
use tickler::store::queue::{TaskFilter, TaskRow};
use tickler::time::Clock;

use crate::billing::{customer, meta};
use crate::helpers::smtp::SmtpServer;
use crate::helpers::{Project, TestDaemon, stdout, utc, wait_for, wait_settled};

fn in_zone(name: &str, zone: &str) -> NewCustomer {
    let mut c = customer(name, Some(&format!("{name}@example.com")), None);
    c.timezone = Some(zone.into());
    c
}

fn due(c: &NewCustomer, number: &str, date: &str) -> NewInvoice {
    let mut i = crate::billing::invoice(c, number, 0);
    i.due_date = date.parse().unwrap();
    i
}

async fn deliver_tasks(store: &Store) -> Vec<TaskRow> {
    store
        .tasks(&TaskFilter {
            status: None,
            campaign_id: None,
            limit: 1000,
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.task_type == "deliver_message")
        .collect()
}

async fn states(store: &Store, keys: &[String]) -> Vec<String> {
    let found = store.notification_states(keys).await.unwrap();
    keys.iter()
        .map(|k| found.get(k).cloned().unwrap_or_else(|| "none".into()))
        .collect()
}

fn to_whom(smtp: &SmtpServer) -> Vec<String> {
    let mut to: Vec<String> = smtp.messages().into_iter().map(|m| m.to).collect();
    to.sort();
    to
}

async fn windows_story(p: Project) {
    let smtp = SmtpServer::start(p.path());
    // Tuesday 2026-12-01 05:00 UTC: 14:00 in Tokyo (open), 07:00 in Johannesburg (opens at
    // 06:00 UTC), 21:00 on Monday in Los Angeles (opens Tuesday 08:00 PST = 16:00 UTC).
    let reminders = "schedule = \"0 5 * * *\"\nkind = \"invoice_reminders\"\noffsets = [\"1d\"]\n\
                     send_window = { hours = \"08:00-20:00\", days = \"mon-fri\" }\n";
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nfrom = \"Acme Billing <billing@acme.test>\"\n\n\
             [templates]\nvars = {{ company = \"Acme Rentals\" }}\n\n\
             [[job]]\nname = \"reminders\"\n{reminders}\n\
             [[job]]\nname = \"reminders-again\"\n{}\n",
            smtp.port,
            reminders.replace("0 5 * * *", "30 5 * * *")
        ),
    );
    let store = p.store().await;
    let tokyo = in_zone("tokyo", "Asia/Tokyo");
    let jhb = in_zone("jhb", "Africa/Johannesburg");
    let la = in_zone("la", "America/Los_Angeles");
    let decoy = in_zone("decoy", "America/Los_Angeles");
    let payer = in_zone("payer", "America/Los_Angeles");
    // "Due tomorrow" in each customer's own date: Dec 2 in Tokyo and Johannesburg, Dec 1 in
    // Los Angeles (where it is still Nov 30). The decoy's Dec 2 is tomorrow in UTC, the job's
    // zone, but two days away in Los Angeles: it gets nothing.
    let mut invoices = vec![
        due(&tokyo, "W-TYO", "2026-12-02"),
        due(&jhb, "W-JHB", "2026-12-02"),
        due(&la, "W-LAX", "2026-12-01"),
        due(&decoy, "W-DECOY", "2026-12-02"),
        due(&payer, "W-PAID", "2026-12-01"),
    ];
    let key = |i: &NewInvoice| format!("reminder:1d:{}:email", i.id);
    let keys: Vec<String> = invoices.iter().map(key).collect();
    store
        .import(&[tokyo, jhb, la, decoy, payer], &[], &mut invoices, "INV-")
        .await
        .unwrap();

    let d = TestDaemon::start(p.config(), utc("2026-12-01T04:59:59Z")).await;
    d.clock.advance(Duration::from_secs(1));
    let runs = wait_settled(&store, "reminders", 1).await;
    assert_eq!(runs[0].status, "succeeded", "{:?}", runs[0]);
    let m = meta(&runs[0]);
    assert_eq!(m["sent"], json!({ "email": 1 }), "{m}");
    assert_eq!(
        m["deferred"],
        json!({ "count": 3, "next_at": "2026-12-01T06:00:00Z" }),
        "{m}"
    );
    smtp.wait_for_messages(1).await;
    assert_eq!(to_whom(&smtp), ["tokyo@example.com"]);
    assert_eq!(
        states(&store, &keys).await,
        ["sent", "deferred", "deferred", "none", "deferred"]
    );
    assert_eq!(
        deliver_tasks(&store).await.len(),
        3,
        "one task per deferral"
    );

    // `tickler list` shows what waits, and when the first goes out.
    let list = stdout(&p.cli(&["list", "--next", "1"]));
    let words = list.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("MESSAGES WAITING FOR THEIR SEND WINDOW")
            && words.contains("reminders 3 2026-12-01T06:00:00Z 08:00-20:00 mon-fri"),
        "{list}"
    );

    // A second job with the same messages, before any window opens: nothing new, no second
    // deferral, no second task.
    d.clock.advance(Duration::from_secs(30 * 60));
    let again = wait_settled(&store, "reminders-again", 1).await;
    let m = meta(&again[0]);
    assert_eq!(m["already_sent"], json!(4), "{m}");
    assert!(m.get("deferred").is_none(), "{m}");
    assert_eq!(deliver_tasks(&store).await.len(), 3);

    // 06:00 UTC: Johannesburg's window opens; its reminder goes out then, Los Angeles' waits.
    let at = |s: &str| utc(s);
    let advance_to = |t: DateTime<Utc>| {
        let now = d.clock.now();
        d.clock.advance((t - now).to_std().unwrap());
    };
    advance_to(at("2026-12-01T06:00:00Z"));
    smtp.wait_for_messages(2).await;
    assert_eq!(to_whom(&smtp), ["jhb@example.com", "tokyo@example.com"]);
    wait_for("the jhb row sent", Duration::from_secs(30), || async {
        (states(&store, &keys).await[1] == "sent").then_some(())
    })
    .await;

    // 10:00 UTC: the payer pays; its waiting reminder and its task are cancelled with it.
    advance_to(at("2026-12-01T10:00:00Z"));
    let paid = tickler::billing::payments::apply(
        &store,
        &tickler::billing::payments::PaymentEvent {
            provider: "api".into(),
            event_id: "pay-1".into(),
            invoice: tickler::billing::payments::InvoiceRef::Number("W-PAID".into()),
            amount_minor: 100_000,
            currency: "ZAR".into(),
            paid_at: d.clock.now(),
            reference: Some("pay-1".into()),
            payload: json!({}),
        },
        d.clock.now(),
    )
    .await
    .unwrap();
    assert!(format!("{paid:?}").contains("Paid"), "{paid:?}");
    assert_eq!(states(&store, &keys).await[4], "cancelled");

    // 16:00 UTC: Los Angeles opens; its reminder goes out, the paid one never does.
    advance_to(at("2026-12-01T16:00:00Z"));
    smtp.wait_for_messages(3).await;
    wait_for(
        "the deliveries settled",
        Duration::from_secs(30),
        || async {
            let t = deliver_tasks(&store).await;
            t.iter()
                .all(|t| t.status == "completed" || t.status == "cancelled")
                .then_some(t)
        },
    )
    .await;
    let mut ends: Vec<String> = deliver_tasks(&store)
        .await
        .into_iter()
        .map(|t| t.status)
        .collect();
    ends.sort();
    assert_eq!(ends, ["cancelled", "completed", "completed"]);
    assert_eq!(
        states(&store, &keys).await,
        ["sent", "sent", "sent", "none", "cancelled"]
    );
    d.stop().await;
    assert_eq!(
        to_whom(&smtp),
        ["jhb@example.com", "la@example.com", "tokyo@example.com"],
        "each once, the paid and the decoy never"
    );
    store.close().await;
}

#[tokio::test]
async fn reminders_wait_for_each_customers_window() {
    windows_story(Project::sqlite()).await;
}

#[tokio::test]
async fn reminders_wait_for_each_customers_window_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    windows_story(p).await;
}

/// `run-job --dry-run` shows a message it would defer, and when; a window that is closed all
/// day today (its only day is tomorrow) makes the plan independent of the hour the test runs.
#[tokio::test]
async fn a_dry_run_shows_deferrals() {
    use chrono::Datelike;
    let p = Project::sqlite();
    let tomorrow = Utc::now().date_naive() + TimeDelta::days(1);
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [tomorrow.weekday().num_days_from_monday() as usize];
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"file\"\nfrom = \"billing@acme.test\"\n\n\
             [templates]\nvars = {{ company = \"Acme Rentals\" }}\n\n\
             [[job]]\nname = \"reminders\"\nschedule = \"0 5 * * *\"\n\
             kind = \"invoice_reminders\"\noffsets = [\"1d\"]\n\
             send_window = {{ days = \"{day}\" }}\n"
        ),
    );
    let store = p.store().await;
    let c = customer("ann", Some("ann@example.com"), None);
    let mut inv = vec![crate::billing::invoice(&c, "D-1", 1)];
    store.import(&[c], &[], &mut inv, "INV-").await.unwrap();
    store.close().await;
    let out = p.cli(&["run-job", "reminders", "--dry-run"]);
    let text = stdout(&out);
    let at = format!("{tomorrow}T00:00:00Z");
    assert!(
        text.contains(&format!(
            "\"would_defer\":{{\"count\":1,\"next_at\":\"{at}\"}}"
        )) && text.contains(&format!(
            "would defer email to ann@example.com until {at} (outside its send window)"
        )),
        "{text}\n{}",
        crate::helpers::stderr(&out)
    );
}

fn outbox(p: &Project) -> usize {
    std::fs::read_dir(p.path().join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// kill -9 of the real daemon while a message waits for its window: the deferral and its task
/// were committed together, so the next daemon sends it when the window opens, once, and the
/// job's later runs add nothing. Real time: the job's zone is chosen so that it is about noon
/// there, and the window opens two minutes after the test starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_message_survives_kill_9_and_goes_out_once() {
    use chrono::Timelike;
    let p = Project::sqlite();
    let now = Utc::now();
    // Etc/GMT-N is UTC+N: with N = 12 - the UTC hour, it is 12:MM there.
    let n = 12 - now.hour() as i32;
    let zone = match n {
        0 => "UTC".to_string(),
        n if n > 0 => format!("Etc/GMT-{n}"),
        n => format!("Etc/GMT+{}", -n),
    };
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let opens = (now + TimeDelta::minutes(2)).with_timezone(&tz);
    let hours = format!("{:02}:{:02}-23:00", opens.hour(), opens.minute());
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"file\"\nfrom = \"billing@acme.test\"\n\n\
             [templates]\nvars = {{ company = \"Acme Rentals\" }}\n\n\
             [[job]]\nname = \"reminders\"\nevery = \"20s\"\ntimezone = \"{zone}\"\n\
             kind = \"invoice_reminders\"\noffsets = [\"1d\"]\n\
             send_window = {{ hours = \"{hours}\" }}\n"
        ),
    );
    let store = p.store().await;
    let c = customer("ann", Some("ann@example.com"), None);
    let mut inv = vec![crate::billing::invoice(&c, "K-1", 0)];
    inv[0].due_date = now.with_timezone(&tz).date_naive() + TimeDelta::days(1);
    let key = vec![format!("reminder:1d:{}:email", inv[0].id)];
    store.import(&[c], &[], &mut inv, "INV-").await.unwrap();

    let mut first = p
        .daemon_command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tickler");
    wait_for("the message deferred", Duration::from_secs(60), || async {
        (states(&store, &key).await == ["deferred"]).then_some(())
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(outbox(&p), 0);
    let tasks = deliver_tasks(&store).await;
    assert_eq!(tasks.len(), 1, "the deferral's task was committed with it");
    let window_opens = tasks[0].scheduled_for;
    assert_eq!(window_opens.timestamp() % 60, 0, "{window_opens}");

    let mut second = p
        .daemon_command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tickler again");
    wait_for("the message sent", Duration::from_secs(180), || async {
        (states(&store, &key).await == ["sent"]).then_some(())
    })
    .await;
    assert!(Utc::now() >= window_opens, "not before its window opened");
    // A run of the job after the send finds it sent.
    let sent_at = Utc::now();
    wait_for("a later run", Duration::from_secs(60), || async {
        let runs = crate::helpers::runs(&store, "reminders").await;
        runs.iter()
            .any(|r| r.status == "succeeded" && r.started_at.is_some_and(|s| s > sent_at))
            .then_some(())
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(outbox(&p), 1, "sent once");
    let t = &deliver_tasks(&store).await[0];
    assert_eq!(t.status, "completed");
    store.close().await;
}
