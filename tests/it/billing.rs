//! Billing and collections with real parts: a real SMTP server (aiosmtpd) on loopback, a local
//! HTTP mock server for Twilio, Paystack and webhooks, real SQLite files and a real
//! PostgreSQL. Jobs run as `tickler run-job` runs them (`daemon::run_now`), on today's date.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate, Utc};
use serde_json::json;
use tickler::daemon;
use tickler::store::billing::{NewCustomer, NewInvoice, NewSubscription};
use tickler::store::ts;
use tickler::store::{HistoryFilter, RunRow, Store};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::smtp::SmtpServer;
use crate::helpers::{Project, stderr, stdout, wait_for};

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn day(n: i64) -> NaiveDate {
    if n >= 0 {
        today() + Days::new(n as u64)
    } else {
        today() - Days::new(n.unsigned_abs())
    }
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn customer(name: &str, email: Option<&str>, phone: Option<&str>) -> NewCustomer {
    NewCustomer {
        id: id(),
        org_id: None,
        name: name.into(),
        email: email.map(str::to_string),
        phone: phone.map(str::to_string),
        timezone: None,
        locale: "en".into(),
        provider_customer_id: None,
    }
}

pub(crate) fn invoice(c: &NewCustomer, number: &str, due_in: i64) -> NewInvoice {
    NewInvoice {
        id: id(),
        number: number.into(),
        customer_id: c.id.clone(),
        subscription_id: None,
        period_start: None,
        period_end: None,
        amount_minor: 100_000,
        currency: "ZAR".into(),
        issued_at: ts(Utc::now() - chrono::Duration::days(20)),
        due_date: day(due_in),
        status: "open".into(),
        paid_at: None,
        provider_ref: None,
        escalation_level: 0,
        escalated_at: None,
    }
}

/// A weekly subscription whose periods start `offset` days from today (mod 7).
fn weekly(c: &NewCustomer, offset: i64) -> NewSubscription {
    NewSubscription {
        id: id(),
        customer_id: c.id.clone(),
        description: "Parking bay 7".into(),
        amount_minor: 50_000,
        currency: "ZAR".into(),
        interval: "weekly".into(),
        anchor_day: day(offset).weekday().number_from_monday() as i32,
        start_date: day(-30),
        end_date: None,
        payment_terms_days: 7,
        auto_invoice: true,
    }
}

/// Runs one job as `tickler run-job` does and returns its ledger row.
pub(crate) async fn run(p: &Project, job: &str) -> RunRow {
    let config = p.config();
    let spec = config.job(job).unwrap_or_else(|| panic!("no job {job}"));
    let results = daemon::run_now(&config, std::slice::from_ref(&spec.name))
        .await
        .unwrap();
    let id = results[0]
        .1
        .as_ref()
        .expect("the run started")
        .id
        .to_string();
    let store = p.store().await;
    let rows = store
        .history(&HistoryFilter {
            job: Some(job.into()),
            status: None,
            limit: 100,
            run: None,
        })
        .await
        .unwrap();
    store.close().await;
    rows.into_iter()
        .find(|r| r.id == id)
        .expect("its ledger row")
}

pub(crate) fn meta(r: &RunRow) -> serde_json::Value {
    r.metadata.clone().unwrap_or_default()
}

async fn level(store: &Store, number: &str) -> i32 {
    store
        .invoice_by_number(number)
        .await
        .unwrap()
        .unwrap()
        .escalation_level
}

/// The numbers Twilio was asked to text, in order.
pub(crate) async fn texted(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let body = String::from_utf8_lossy(&r.body).to_string();
            body.split('&')
                .find_map(|kv| kv.strip_prefix("To=").map(|v| v.replace("%2B", "+")))
        })
        .collect()
}

pub(crate) async fn twilio_ok(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "SM0001" })))
        .mount(server)
        .await;
}

pub(crate) fn channels(p: &Project, smtp_port: u16, twilio: &str) -> String {
    std::fs::write(p.path().join("twilio_token"), "token-123\n").unwrap();
    format!(
        "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
         tls = \"none\"\nfrom = \"Acme Billing <billing@acme.test>\"\n\n\
         [channels.sms]\naccount_sid = \"AC123\"\nauth_token_file = \"{}\"\n\
         from = \"+15005550006\"\nbase_url = \"{twilio}\"\nrate_limit = 0\ntimeout = \"2s\"\n\n\
         [templates]\nvars = {{ company = \"Acme Rentals\" }}\n\n",
        p.path().join("twilio_token").display()
    )
}

async fn billing_story(p: Project) {
    let smtp = SmtpServer::start(p.path());
    let twilio = MockServer::start().await;
    twilio_ok(&twilio).await;
    let jobs = "[[job]]\nname = \"reminders\"\nkind = \"invoice_reminders\"\nschedule = \"0 9 * * *\"\n\
                offsets = [\"7d\", \"1d\", \"0d\"]\nchannels = [\"email\", \"sms\"]\n\n\
                [[job]]\nname = \"invoices\"\nkind = \"create_invoices\"\nschedule = \"0 7 * * *\"\ndays_ahead = 10\n\n\
                [[job]]\nname = \"level-1\"\nkind = \"overdue_escalation\"\nschedule = \"0 10 * * *\"\nlevel = 1\nmin_days_overdue = 1\n\n\
                [[job]]\nname = \"level-2\"\nkind = \"overdue_escalation\"\nschedule = \"0 11 * * *\"\nlevel = 2\nmin_days_overdue = 7\nmin_interval = \"5d\"\n\n\
                [[job]]\nname = \"weekly\"\nkind = \"stats_report\"\nschedule = \"0 8 * * 1\"\nperiod = \"weekly\"\nrecipients = [\"boss@acme.test\"]\n";
    p.write_config("", &(channels(&p, smtp.port, &twilio.uri()) + jobs));

    let store = p.store().await;
    let thandi = customer(
        "Thandi Mokoena",
        Some("thandi@example.com"),
        Some("+27820000001"),
    );
    let sipho = customer("Sipho Dlamini", Some("sipho@example.com"), None);
    let aisha = customer("Aisha Patel", None, Some("+27820000003"));
    let johan = customer(
        "Johan Botha",
        Some("johan@example.com"),
        Some("+27820000004"),
    );
    let lerato = customer("Lerato Khumalo", Some("lerato@example.com"), None);
    let mut e = invoice(&lerato, "E-1", -10);
    e.escalation_level = 1;
    e.escalated_at = Some(ts(Utc::now() - chrono::Duration::days(6)));
    let mut f = invoice(&sipho, "F-1", 1);
    f.status = "paid".into();
    f.paid_at = Some(ts(Utc::now()));
    let mut invoices = vec![
        invoice(&thandi, "A-1", 5),
        invoice(&sipho, "B-1", 1),
        invoice(&aisha, "C-1", 0),
        invoice(&johan, "D-1", -3),
        e,
        f,
    ];
    let sub = weekly(&thandi, 2);
    store
        .import(
            &[thandi, sipho, aisha, johan, lerato],
            &[sub],
            &mut invoices,
            "INV-",
        )
        .await
        .unwrap();

    // Reminder windows: A (7d) by email and SMS, B (1d) by email (no phone: skipped), C (0d)
    // by SMS (no email: skipped). D and E are overdue; F is paid.
    let r = run(&p, "reminders").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(4)),
        "{r:?}"
    );
    assert_eq!(meta(&r)["skipped_no_address"], json!(2));
    let mails = wait_for("2 emails", std::time::Duration::from_secs(10), || async {
        Some(smtp.messages()).filter(|m| m.len() == 2)
    })
    .await;
    assert_eq!(mails[0].to, "sipho@example.com");
    assert!(mails[0].subject.contains("B-1"), "{}", mails[0].subject);
    assert!(mails[0].body.contains("Dear Sipho") || mails[0].body.contains("Sipho"));
    assert_eq!(mails[1].to, "thandi@example.com");
    assert!(mails[1].subject.contains("A-1"), "{}", mails[1].subject);
    assert!(mails[1].body.contains("ZAR 1,000.00"), "{}", mails[1].body);
    let mut numbers = texted(&twilio).await;
    numbers.sort();
    assert_eq!(numbers, ["+27820000001", "+27820000003"]);

    // Re-running sends nothing twice.
    let r = run(&p, "reminders").await;
    assert_eq!(r.records_processed, Some(0));
    assert_eq!(meta(&r)["already_sent"], json!(6));
    assert_eq!(smtp.messages().len(), 2);
    assert_eq!(texted(&twilio).await.len(), 2);

    // Invoices for the weekly subscription: the current period and the two starting within 10
    // days; once only.
    let r = run(&p, "invoices").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(3))
    );
    let created: Vec<serde_json::Value> = meta(&r)["invoices"].as_array().unwrap().clone();
    let dues: Vec<String> = created
        .iter()
        .map(|i| i["due_date"].as_str().unwrap().to_string())
        .collect();
    // The current period began 5 days ago: its terms run from today, not from its start.
    assert_eq!(
        dues,
        [day(7).to_string(), day(9).to_string(), day(16).to_string()]
    );
    assert_eq!(created[0]["number"], json!("INV-000001"));
    assert_eq!(run(&p, "invoices").await.records_processed, Some(0));

    // The new invoice due in 2 days is in the 7-day window now: only it is reminded.
    let r = run(&p, "reminders").await;
    assert_eq!(r.records_processed, Some(2));
    assert_eq!(smtp.messages().len(), 3);

    // Escalation: D goes to level 1; E (level 1 six days ago) to level 2.
    let r = run(&p, "level-1").await;
    assert_eq!(
        (r.records_processed, meta(&r)["raised"].clone()),
        (Some(1), json!(1))
    );
    assert_eq!(level(&store, "D-1").await, 1);
    let r = run(&p, "level-2").await;
    assert_eq!(
        (r.records_processed, meta(&r)["raised"].clone()),
        (Some(1), json!(1))
    );
    assert_eq!(level(&store, "E-1").await, 2);
    assert_eq!(
        level(&store, "D-1").await,
        1,
        "level 2 waits 7 days overdue"
    );
    assert_eq!(run(&p, "level-1").await.records_processed, Some(0));
    let mails = smtp.messages();
    assert!(
        mails
            .iter()
            .any(|m| m.to == "lerato@example.com" && m.subject.contains("E-1"))
    );

    // Paid: `tickler invoice mark-paid`.
    let out = p.cli(&["invoice", "mark-paid", "D-1", "--reference", "EFT 991"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("invoice D-1 (Johan Botha, ZAR 1,000.00) marked paid at "),
        "{}",
        stdout(&out)
    );
    let out = p.cli(&["invoice", "mark-paid", "D-1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("error: invoice `D-1` is already paid (on "),
        "{}",
        stderr(&out)
    );
    let out = p.cli(&["invoice", "mark-paid", "NOPE-1"]);
    assert_eq!(
        stderr(&out),
        "error: no invoice numbered `NOPE-1`; `tickler history` and SQL on `invoices` list them\n"
    );

    // The weekly report, by email, kept in the run's metadata; once per week.
    let r = run(&p, "weekly").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(1)),
        "one message sent: {r:?}"
    );
    let stats = &meta(&r)["stats"];
    assert_eq!(stats["invoices"]["overdue"], json!(1), "{stats}");
    assert_eq!(stats["invoices"]["open"], json!(7), "{stats}");
    let report = smtp
        .messages()
        .into_iter()
        .find(|m| m.to == "boss@acme.test")
        .expect("the report");
    assert!(
        report.subject.contains("Weekly billing report"),
        "{}",
        report.subject
    );
    assert!(report.body.contains("Collection rate"), "{}", report.body);
    let before = smtp.messages().len();
    let again = run(&p, "weekly").await;
    assert_eq!(smtp.messages().len(), before);
    assert_eq!(
        (again.status.as_str(), again.records_processed),
        ("succeeded", Some(0)),
        "the week's report went out already: {again:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn billing_story_sqlite() {
    billing_story(Project::sqlite()).await;
}

#[tokio::test]
async fn billing_story_postgres() {
    if let Some(p) = Project::postgres().await {
        billing_story(p).await;
    }
}

/// Six SMS reminders; Twilio fails for two of them mid-batch. The rest go out, the run is
/// `partial` with the two errors, and the next run sends exactly the two that failed.
#[tokio::test]
async fn a_provider_outage_mid_batch() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    let twilio = MockServer::start().await;
    let jobs = "[[job]]\nname = \"sms\"\nkind = \"invoice_reminders\"\nschedule = \"0 9 * * *\"\n\
                offsets = [\"7d\"]\nchannels = [\"sms\"]\nbatch_size = 2\n";
    p.write_config("", &(channels(&p, smtp.port, &twilio.uri()) + jobs));
    let store = p.store().await;
    let customers: Vec<NewCustomer> = (1..=6)
        .map(|i| {
            customer(
                &format!("Tenant {i}"),
                None,
                Some(&format!("+2782000001{i}")),
            )
        })
        .collect();
    let mut invoices: Vec<NewInvoice> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| invoice(c, &format!("O-{}", i + 1), 7))
        .collect();
    store
        .import(&customers, &[], &mut invoices, "INV-")
        .await
        .unwrap();
    store.close().await;

    for number in ["%2B27820000013", "%2B27820000014"] {
        Mock::given(method("POST"))
            .and(body_string_contains(format!("To={number}")))
            .respond_with(
                ResponseTemplate::new(503)
                    .set_body_json(json!({ "code": 20500, "message": "Service unavailable" })),
            )
            .with_priority(1)
            .mount(&twilio)
            .await;
    }
    twilio_ok(&twilio).await;
    let r = run(&p, "sms").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(4))
    );
    assert_eq!(
        meta(&r)["item_errors"],
        json!([
            "invoice O-3 by sms to +27820000013: Twilio answered HTTP 503: error 20500: Service unavailable",
            "invoice O-4 by sms to +27820000014: Twilio answered HTTP 503: error 20500: Service unavailable"
        ]),
        "{r:?}"
    );
    assert_eq!(texted(&twilio).await.len(), 6);

    // The provider is back: only the two failed messages go.
    twilio.reset().await;
    twilio_ok(&twilio).await;
    let r = run(&p, "sms").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(2))
    );
    let mut again = texted(&twilio).await;
    again.sort();
    assert_eq!(again, ["+27820000013", "+27820000014"]);
    let r = run(&p, "sms").await;
    assert_eq!(r.records_processed, Some(0));
    assert_eq!(texted(&twilio).await.len(), 2, "nothing is sent twice");
}

/// A provider that does not answer in time fails the message with a clear error; the run
/// goes on and is `partial`.
#[tokio::test]
async fn a_provider_timeout_is_an_item_error() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(std::time::Duration::from_secs(5)))
        .mount(&twilio)
        .await;
    let jobs = "[[job]]\nname = \"r\"\nkind = \"invoice_reminders\"\nschedule = \"0 9 * * *\"\n\
                offsets = [\"1d\"]\nchannels = [\"email\", \"sms\"]\n";
    p.write_config("", &(channels(&p, smtp.port, &twilio.uri()) + jobs));
    let store = p.store().await;
    let c = customer("Tenant", Some("t@example.com"), Some("+27820000099"));
    let mut inv = vec![invoice(&c, "T-1", 1)];
    store.import(&[c], &[], &mut inv, "INV-").await.unwrap();
    store.close().await;
    let r = run(&p, "r").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(1))
    );
    assert_eq!(
        r.error_message.unwrap(),
        format!(
            "invoice T-1 by sms to +27820000099: Twilio ({}): timed out (it may have been \
             sent; it is not sent again)",
            twilio.uri()
        )
    );
    // In doubt, at most once: the next run does not send it again.
    let r = run(&p, "r").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(0))
    );
    assert_eq!(texted(&twilio).await.len(), 1);
}

/// `[channels.sms] provider = "aws-sns"`: each SMS is an SNS `Publish` signed with SigV4 for
/// the region (the headers checked in shape: the key, the date, the region and service, the
/// signed headers), with the SMS type and sender id attributes. SNS refusing a number (400) is
/// a sure failure, sent again by the next run; SNS failing inside (500) may have published it,
/// so it is `unknown` and not sent again.
#[tokio::test]
async fn sms_through_aws_sns_is_signed_and_its_failures_mapped() {
    let p = Project::sqlite();
    let sns = MockServer::start().await;
    let xml = |body: &str| ResponseTemplate::new(200).set_body_string(body.to_string());
    Mock::given(method("POST"))
        .and(path("/"))
        .and(body_string_contains("PhoneNumber=%2B27820000001"))
        .respond_with(xml(
            "<PublishResponse xmlns=\"https://sns.amazonaws.com/doc/2010-03-31/\">\
             <PublishResult><MessageId>0f1e-sns-1</MessageId></PublishResult>\
             </PublishResponse>",
        ))
        .mount(&sns)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("PhoneNumber=%2B27820000002"))
        .respond_with(ResponseTemplate::new(400).set_body_string(
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code>\
             <Message>Invalid parameter: PhoneNumber Reason: +27820000002 is not valid \
             &amp; cannot be used</Message></Error></ErrorResponse>",
        ))
        .mount(&sns)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("PhoneNumber=%2B27820000003"))
        .respond_with(ResponseTemplate::new(500).set_body_string(
            "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code>\
             <Message>Internal error</Message></Error></ErrorResponse>",
        ))
        .mount(&sns)
        .await;
    std::fs::write(p.path().join("aws_secret"), "sns-secret-key\n").unwrap();
    p.write_config(
        "",
        &format!(
            "[channels.sms]\nprovider = \"aws-sns\"\nregion = \"af-south-1\"\n\
             access_key_id = \"AKIDTEST\"\nsecret_access_key_file = \"{}\"\n\
             sender_id = \"Acme\"\nbase_url = \"{}\"\nrate_limit = 0\ntimeout = \"2s\"\n\n\
             [templates]\nvars = {{ company = \"Acme Rentals\" }}\n\n\
             [[job]]\nname = \"r\"\nkind = \"invoice_reminders\"\nschedule = \"0 9 * * *\"\n\
             offsets = [\"1d\"]\nchannels = [\"sms\"]\n",
            p.path().join("aws_secret").display(),
            sns.uri()
        ),
    );
    let store = p.store().await;
    let people: Vec<NewCustomer> = (1..=3)
        .map(|i| {
            customer(
                &format!("Tenant {i}"),
                None,
                Some(&format!("+2782000000{i}")),
            )
        })
        .collect();
    let mut inv: Vec<NewInvoice> = people
        .iter()
        .enumerate()
        .map(|(i, c)| invoice(c, &format!("S-{}", i + 1), 1))
        .collect();
    store.import(&people, &[], &mut inv, "INV-").await.unwrap();

    let r = run(&p, "r").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(1)),
        "{r:?}"
    );
    let errors = r.error_message.clone().unwrap_or_default();
    assert!(
        errors.contains(
            "invoice S-2 by sms to +27820000002: SNS answered HTTP 400: InvalidParameter: \
             Invalid parameter: PhoneNumber Reason: +27820000002 is not valid & cannot be used"
        ),
        "{errors}"
    );
    let states = store
        .query_json(
            "SELECT recipient, status FROM notification_log ORDER BY recipient",
            Utc::now(),
            10,
        )
        .await
        .unwrap();
    let states: Vec<String> = states
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["recipient"].as_str().unwrap(),
                r["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            "+27820000001 sent",
            "+27820000002 failed",
            "+27820000003 unknown"
        ]
    );
    let requests = sns.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 3);
    let first = requests
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains("%2B27820000001"))
        .expect("the first number's request");
    let header = |name: &str| {
        first
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_string()
    };
    let date = header("x-amz-date");
    assert!(
        date.len() == 16 && date.ends_with('Z') && date.as_bytes()[8] == b'T',
        "{date}"
    );
    let auth = header("authorization");
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDTEST/{}/af-south-1/sns/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature=",
        &date[..8]
    );
    let signature = auth
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{auth}"));
    assert!(
        signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()),
        "{auth}"
    );
    assert!(header("content-type").starts_with("application/x-www-form-urlencoded"));
    let body = String::from_utf8_lossy(&first.body).to_string();
    for part in [
        "Action=Publish",
        "Version=2010-03-31",
        "MessageAttributes.entry.1.Value.StringValue=Transactional",
        "MessageAttributes.entry.2.Name=AWS.SNS.SMS.SenderID",
        "MessageAttributes.entry.2.Value.StringValue=Acme",
        "Message=",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }
    assert!(
        body.contains("S-1"),
        "the reminder names its invoice: {body}"
    );

    // The 400 is sent again by the next run; the 500 and the sent one are not.
    let r = run(&p, "r").await;
    assert_eq!(r.status, "partial", "{r:?}");
    let requests = sns.received_requests().await.unwrap_or_default();
    let to = |n: &str| {
        requests
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains(n))
            .count()
    };
    assert_eq!(
        (
            to("%2B27820000001"),
            to("%2B27820000002"),
            to("%2B27820000003")
        ),
        (1, 2, 1)
    );
    store.close().await;
}

/// Payments in (issue 15, item 4): each event once per provider; partial payments add up and
/// the invoice is paid when they reach its amount, with its pending tasks cancelled in the same
/// transaction; a replay, an unknown invoice, another currency and a payment to a paid invoice
/// are kept in `payments` and change no invoice.
async fn payments_story(p: Project) {
    use tickler::billing::payments::{Applied, InvoiceRef, PaymentEvent, apply};
    p.write_config("", "");
    let store = p.store().await;
    let c = customer("Thandi", Some("t@example.com"), None);
    let mut inv = vec![invoice(&c, "P-1", 3), invoice(&c, "P-2", 3)];
    let (first, second) = (inv[0].id.clone(), inv[1].id.clone());
    store
        .import(std::slice::from_ref(&c), &[], &mut inv, "INV-")
        .await
        .unwrap();
    let now = Utc::now();
    let task = |id: &str, invoice: &str| tickler::store::queue::NewTask {
        id: id.into(),
        org_id: tickler::store::queue::NO_ORG.into(),
        campaign_id: None,
        invoice_id: Some(invoice.into()),
        customer_id: Some(c.id.clone()),
        task_type: "send_email".into(),
        task_data: None,
        scheduled_for: ts(now + chrono::Duration::days(1)),
        max_retries: 3,
        priority: 0,
        metadata: None,
    };
    let (t1, t2) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    store
        .enqueue_tasks(&[task(&t1, &first), task(&t2, &second)], now)
        .await
        .unwrap();
    let event = |id: &str, invoice: InvoiceRef, amount: i64, currency: &str| PaymentEvent {
        provider: "stripe".into(),
        event_id: id.into(),
        invoice,
        amount_minor: amount,
        currency: currency.into(),
        paid_at: now,
        reference: Some(format!("ref-{id}")),
        payload: json!({ "id": id }),
    };
    let n = |s: &str| InvoiceRef::Number(s.into());
    // P-1 is 1000.00 (100000 minor units): 400.00, then the same event again, then 600.00.
    let a = apply(&store, &event("evt_1", n("P-1"), 40_000, "ZAR"), now)
        .await
        .unwrap();
    assert_eq!(
        a,
        Applied::Partial {
            number: "P-1".into(),
            paid_minor: 40_000,
            amount_minor: 100_000
        }
    );
    let a = apply(&store, &event("evt_1", n("P-1"), 40_000, "ZAR"), now)
        .await
        .unwrap();
    assert_eq!(a, Applied::Duplicate);
    assert_eq!(
        store
            .invoice_by_number("P-1")
            .await
            .unwrap()
            .unwrap()
            .status,
        "open"
    );
    assert_eq!(store.task(&t1).await.unwrap().unwrap().status, "pending");
    // Another event of the same payment (Stripe's checkout session and payment intent carry
    // the same reference): applied once.
    let mut same = event("evt_1b", n("P-1"), 40_000, "ZAR");
    same.reference = Some("ref-evt_1".into());
    assert_eq!(apply(&store, &same, now).await.unwrap(), Applied::Duplicate);
    let a = apply(&store, &event("evt_2", n("P-1"), 60_000, "ZAR"), now)
        .await
        .unwrap();
    assert_eq!(
        a,
        Applied::Paid {
            number: "P-1".into()
        }
    );
    let paid = store.invoice_by_number("P-1").await.unwrap().unwrap();
    assert_eq!(
        (paid.status.as_str(), paid.provider_ref.as_deref()),
        ("paid", Some("ref-evt_2"))
    );
    let cancelled = store.task(&t1).await.unwrap().unwrap();
    assert_eq!(
        (
            cancelled.status.as_str(),
            cancelled.error_message.as_deref()
        ),
        ("cancelled", Some("cancelled: invoice P-1 was paid"))
    );
    assert_eq!(
        store.task(&t2).await.unwrap().unwrap().status,
        "pending",
        "P-2 is unpaid"
    );
    // Kept, not applied.
    let a = apply(&store, &event("evt_3", n("P-404"), 100, "ZAR"), now)
        .await
        .unwrap();
    assert_eq!(a, Applied::UnknownInvoice);
    let a = apply(&store, &event("evt_4", n("P-2"), 100, "USD"), now)
        .await
        .unwrap();
    assert_eq!(
        a,
        Applied::NotApplied {
            number: "P-2".into(),
            why: "invoice P-2 is in ZAR, the payment in USD".into()
        }
    );
    let a = apply(&store, &event("evt_5", n("P-1"), 100, "ZAR"), now)
        .await
        .unwrap();
    assert_eq!(
        a,
        Applied::NotApplied {
            number: "P-1".into(),
            why: "invoice P-1 is paid already".into()
        }
    );
    // Another provider may reuse an event id; by payment reference.
    store.set_provider_ref(&second, "PRQ_abc").await.unwrap();
    let mut paystack = event(
        "evt_1",
        InvoiceRef::ProviderRef("PRQ_abc".into()),
        100_000,
        "ZAR",
    );
    paystack.provider = "paystack".into();
    assert_eq!(
        apply(&store, &paystack, now).await.unwrap(),
        Applied::Paid {
            number: "P-2".into()
        }
    );
    assert_eq!(store.task(&t2).await.unwrap().unwrap().status, "cancelled");
    // Refused before anything is written.
    let bad = apply(&store, &event("evt_6", n("P-2"), 0, "ZAR"), now)
        .await
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "`amount_minor` must be a whole number of minor units above 0 (found 0)"
    );
    let bad = apply(&store, &event("evt_6", n("P-2"), 5, "zar"), now)
        .await
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "`currency` must be an ISO 4217 code such as `ZAR` (found `zar`)"
    );
    let rows = store.payments(None, 100).await.unwrap();
    let seen: Vec<(String, String, Option<String>)> = rows
        .iter()
        .rev()
        .map(|r| (r.event_id.clone(), r.outcome.clone(), r.number.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("evt_1".into(), "partial".into(), Some("P-1".into())),
            ("evt_2".into(), "paid".into(), Some("P-1".into())),
            ("evt_3".into(), "unknown_invoice".into(), None),
            ("evt_4".into(), "not_applied".into(), Some("P-2".into())),
            ("evt_5".into(), "not_applied".into(), Some("P-1".into())),
            ("evt_1".into(), "paid".into(), Some("P-2".into())),
        ]
    );
    let out = p.cli(&["payments", "list", "--invoice", "P-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(2).collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "stripe",
                "evt_5",
                "P-1",
                "ZAR",
                "1.00",
                "not_applied",
                "invoice",
                "P-1",
                "is",
                "paid",
                "already"
            ],
            vec!["stripe", "evt_2", "P-1", "ZAR", "600.00", "paid"],
            vec![
                "stripe", "evt_1", "P-1", "ZAR", "400.00", "partial", "40000", "of", "100000",
                "paid"
            ],
        ],
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(
        &p.cli(&["payments", "list", "--format", "json", "--limit", "1"]),
    ))
    .unwrap();
    assert_eq!(json[0]["event_id"], "evt_1");
    assert_eq!(json[0]["provider"], "paystack");
    store.close().await;
}

#[tokio::test]
async fn payments_apply_once_and_add_up() {
    payments_story(Project::sqlite()).await;
}

#[tokio::test]
async fn payments_apply_once_and_add_up_postgres() {
    if let Some(p) = Project::postgres().await {
        payments_story(p).await;
    }
}

/// Paystack payment requests: a 500 is retried under the item policy, a 400 is not, a
/// customer without a Paystack code is an item error; the job goes on (`partial`).
#[tokio::test]
async fn paystack_payment_requests_retry_per_invoice() {
    let p = Project::sqlite();
    let paystack = MockServer::start().await;
    std::fs::write(p.path().join("paystack_key"), "sk_test_1").unwrap();
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"invoices\"\nkind = \"create_invoices\"\nschedule = \"0 7 * * *\"\n\
             days_ahead = 0\npaystack = {{ secret_key_file = \"{}\", base_url = \"{}\" }}\n\
             item_retry = {{ attempts = 3, initial = \"10ms\", max = \"20ms\" }}\n",
            p.path().join("paystack_key").display(),
            paystack.uri()
        ),
    );
    Mock::given(method("POST"))
        .and(path("/paymentrequest"))
        .and(body_string_contains("CUS_1"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({ "status": false, "message": "oops" })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&paystack)
        .await;
    Mock::given(method("POST"))
        .and(path("/paymentrequest"))
        .and(body_string_contains("CUS_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({ "status": true, "data": { "request_code": "PRQ_1", "id": 1 } }),
            ),
        )
        .with_priority(2)
        .mount(&paystack)
        .await;
    // No request exists yet for anyone; P3 has no Paystack code: not found by email, created.
    Mock::given(method("GET"))
        .and(path("/paymentrequest"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "status": true, "data": [] })),
        )
        .mount(&paystack)
        .await;
    Mock::given(method("GET"))
        .and(path("/customer/p3@example.com"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({ "status": false, "message": "Customer not found" })),
        )
        .mount(&paystack)
        .await;
    Mock::given(method("POST"))
        .and(path("/customer"))
        .and(body_string_contains("p3@example.com"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": true, "data": { "customer_code": "CUS_3" } })),
        )
        .mount(&paystack)
        .await;
    Mock::given(method("POST"))
        .and(path("/paymentrequest"))
        .and(body_string_contains("CUS_3"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({ "status": true, "data": { "request_code": "PRQ_3", "id": 3 } }),
            ),
        )
        .mount(&paystack)
        .await;
    Mock::given(method("POST"))
        .and(path("/paymentrequest"))
        .and(body_string_contains("CUS_2"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({ "status": false, "message": "Customer not found" })),
        )
        .mount(&paystack)
        .await;

    let store = p.store().await;
    let mut a = customer("P1", Some("p1@example.com"), None);
    a.provider_customer_id = Some("CUS_1".into());
    let mut b = customer("P2", Some("p2@example.com"), None);
    b.provider_customer_id = Some("CUS_2".into());
    let c = customer("P3", Some("p3@example.com"), None);
    let subs = vec![weekly(&a, 0), weekly(&b, 0), weekly(&c, 0)];
    store
        .import(&[a, b, c], &subs, &mut [], "INV-")
        .await
        .unwrap();

    let r = run(&p, "invoices").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(3)),
        "{r:?}"
    );
    assert_eq!(
        meta(&r)["item_errors"],
        json!([
            "invoice INV-000002: payment request failed after 1 attempt(s): Paystack API error: \
             HTTP 400: Customer not found",
        ])
    );
    let third = store
        .invoice_by_number("INV-000003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            third.provider_ref.as_deref(),
            third.provider_customer_id.as_deref()
        ),
        (Some("PRQ_3"), Some("CUS_3")),
        "P3's Paystack customer was created and kept"
    );
    let first = store
        .invoice_by_number("INV-000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.provider_ref.as_deref(), Some("PRQ_1"));
    let all = paystack.received_requests().await.unwrap();
    let calls: Vec<_> = all
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/paymentrequest")
        .collect();
    let auth = calls[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(auth, "Bearer sk_test_1");
    assert_eq!(
        calls.len(),
        4,
        "a 500 then a 200 for CUS_1, one 400 for CUS_2, one for CUS_3"
    );
    // The run says it needed a retry: CUS_1's 500.
    assert_eq!(
        (
            meta(&r)["payment_requests"].clone(),
            meta(&r)["payment_request_retries"].clone()
        ),
        (json!(2), json!(1)),
        "{r:?}"
    );

    // The next run creates nothing and asks again only for the invoices still without one.
    let r = run(&p, "invoices").await;
    assert_eq!(meta(&r)["created"], json!(0));
    assert_eq!(meta(&r)["payment_requests_failed"], json!(1));
    assert_eq!(
        meta(&r)["payment_request_retries"],
        json!(0),
        "a 400 is not retried"
    );
    let posts = paystack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(
        posts, 6,
        "4 payment requests and P3's customer, then CUS_2's again"
    );
    store.close().await;
}

/// A payment request whose creation timed out may exist at Paystack: the next attempt finds
/// it among the customer's requests and takes it, instead of sending the customer a second one;
/// a customer Paystack knows by email is taken, not created again.
#[tokio::test]
async fn a_payment_request_that_timed_out_is_found_not_sent_twice() {
    let p = Project::sqlite();
    let paystack = MockServer::start().await;
    std::fs::write(p.path().join("paystack_key"), "sk_test_1").unwrap();
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"invoices\"\nkind = \"create_invoices\"\nschedule = \"0 7 * * *\"\n\
             days_ahead = 0\npaystack = {{ secret_key_file = \"{}\", base_url = \"{}\", timeout = \"500ms\" }}\n\
             item_retry = {{ attempts = 3, initial = \"10ms\", max = \"20ms\" }}\n",
            p.path().join("paystack_key").display(),
            paystack.uri()
        ),
    );
    Mock::given(method("GET"))
        .and(path("/customer/known@example.com"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": true, "data": { "customer_code": "CUS_9" } })),
        )
        .mount(&paystack)
        .await;
    // The first listing finds nothing; the request is created but its answer is lost; from then
    // on the listing shows it.
    Mock::given(method("GET"))
        .and(path("/paymentrequest"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "status": true, "data": [] })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&paystack)
        .await;
    let store = p.store().await;
    let known = customer("Known Person", Some("known@example.com"), None);
    let subs = vec![weekly(&known, 0)];
    let (amount, currency) = (subs[0].amount_minor, subs[0].currency.clone());
    let number = "INV-000001";
    Mock::given(method("GET"))
        .and(path("/paymentrequest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": true, "data": [
            { "request_code": "PRQ_other", "description": "Invoice INV-999", "amount": amount, "currency": currency },
            { "request_code": "PRQ_9", "description": format!("Invoice {number}"), "amount": amount, "currency": currency },
        ] })))
        .with_priority(2)
        .mount(&paystack)
        .await;
    Mock::given(method("POST"))
        .and(path("/paymentrequest"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": true, "data": { "request_code": "PRQ_9" } }))
                .set_delay(std::time::Duration::from_secs(3)),
        )
        .mount(&paystack)
        .await;
    store
        .import(&[known], &subs, &mut [], "INV-")
        .await
        .unwrap();
    let r = run(&p, "invoices").await;
    assert_eq!(r.status, "partial", "{r:?}");
    assert_eq!(
        meta(&r)["item_errors"],
        json!([format!(
            "invoice {number}: payment request failed after 1 attempt(s): Paystack API error: \
             timed out"
        )]),
        "a timeout is not retried at once"
    );
    let r = run(&p, "invoices").await;
    assert_eq!(r.status, "succeeded", "{r:?}");
    let inv = store.invoice_by_number(number).await.unwrap().unwrap();
    assert_eq!(
        (
            inv.provider_ref.as_deref(),
            inv.provider_customer_id.as_deref()
        ),
        (Some("PRQ_9"), Some("CUS_9"))
    );
    let all = paystack.received_requests().await.unwrap();
    let count = |m: &str, p: &str| {
        all.iter()
            .filter(|r| r.method.as_str() == m && r.url.path() == p)
            .count()
    };
    assert_eq!(
        count("POST", "/paymentrequest"),
        1,
        "never a second request"
    );
    assert_eq!(
        count("POST", "/customer"),
        0,
        "the customer Paystack knew was taken"
    );
    store.close().await;
}

/// Reports and other messages to a webhook arrive as Slack-compatible JSON.
#[tokio::test]
async fn webhooks_get_slack_compatible_json() {
    let p = Project::sqlite();
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/T000/B000"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&hook)
        .await;
    std::fs::write(
        p.path().join("hook_url"),
        format!("{}/hooks/T000/B000", hook.uri()),
    )
    .unwrap();
    p.write_config(
        "",
        &format!(
            "[channels.webhook]\nurl_file = \"{}\"\n\n[templates]\nvars = {{ company = \"Acme\" }}\n\n\
             [[job]]\nname = \"monthly\"\nkind = \"stats_report\"\nschedule = \"0 9 1 * *\"\n\
             period = \"monthly\"\nchannels = [\"webhook\"]\n",
            p.path().join("hook_url").display()
        ),
    );
    let r = run(&p, "monthly").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(1)),
        "{r:?}"
    );
    let calls = hook.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("Monthly billing report"),
        "{body}"
    );
    assert!(
        body["subject"].as_str().unwrap().contains("[Acme]"),
        "{body}"
    );

    // A webhook answering 500: the message fails with the answer, the URL's secret hidden.
    hook.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .mount(&hook)
        .await;
    let p2 = Project::sqlite();
    std::fs::write(
        p2.path().join("hook_url"),
        format!("{}/hooks/T000/B000", hook.uri()),
    )
    .unwrap();
    p2.write_config(
        "",
        &format!(
            "[channels.webhook]\nurl_file = \"{}\"\n\n[templates]\nvars = {{ company = \"Acme\" }}\n\n\
             [[job]]\nname = \"weekly\"\nkind = \"stats_report\"\nschedule = \"0 9 * * 1\"\n\
             period = \"weekly\"\nchannels = [\"webhook\"]\n",
            p2.path().join("hook_url").display()
        ),
    );
    let r = run(&p2, "weekly").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(0)),
        "nothing sent: {r:?}"
    );
    let error = r.error_message.unwrap();
    assert!(
        error.contains("webhook `http://127.0.0.1/***` answered HTTP 500: internal error"),
        "{error}"
    );
    assert!(
        !error.contains("T000"),
        "the secret URL stays hidden: {error}"
    );
}

#[tokio::test]
async fn csv_import_rejects_bad_rows_by_line_and_imports_nothing() {
    let p = Project::sqlite();
    p.write_config("", "");
    std::fs::write(
        p.path().join("customers.csv"),
        "name,email,phone,timezone\n\
         Thandi Mokoena,thandi@example.com,+27821234567,Africa/Johannesburg\n\
         ,nobody@example.com,,\n\
         Bob,bob@,0821234567,Africa/Johannesburg\n\
         \"Smith, Anna\",anna@example.com,,Europe/Lodnon\n",
    )
    .unwrap();
    let out = p.cli(&["import", "customers", "customers.csv"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: `customers.csv` has 3 bad row(s); nothing was imported. Fix them and import the file again:\n\
         \x20 customers.csv line 3, column `name`: is required\n\
         \x20 customers.csv line 4, column `email`: `bob@` is not an email address\n\
         \x20 customers.csv line 4, column `phone`: `0821234567` is not an international number such as +27821234567\n\
         \x20 customers.csv line 5, column `timezone`: unknown time zone `Europe/Lodnon`; did you mean `Europe/London`? \
         use an IANA name such as `Africa/Johannesburg` or `UTC` (`timedatectl list-timezones` lists them)\n"
    );
    let store = p.store().await;
    assert_eq!(store.billing_counts().await.unwrap(), (0, 0, 0));

    std::fs::write(
        p.path().join("customers.csv"),
        "name,email,phone\nThandi Mokoena,thandi@example.com,+27821234567\nSipho Dlamini,sipho@example.com,\n",
    )
    .unwrap();
    let out = p.cli(&["import", "customers", "customers.csv"]);
    assert_eq!(
        stdout(&out),
        "imported 2 customers from customers.csv\n",
        "{}",
        stderr(&out)
    );

    std::fs::write(
        p.path().join("leases.csv"),
        "customer_email,amount,currency,interval,start_date,anchor_day\n\
         thandi@example.com,6500.00,ZAR,monthly,2026-01-01,1\n\
         nobody@example.com,6500,ZAR,monthly,2026-01-01,1\n\
         sipho@example.com,65.001,ZAR,fortnightly,2026-13-01,1\n",
    )
    .unwrap();
    let out = p.cli(&["import", "subscriptions", "leases.csv"]);
    assert_eq!(
        stderr(&out),
        "error: `leases.csv` has 2 bad row(s); nothing was imported. Fix them and import the file again:\n\
         \x20 leases.csv line 3, column `customer_email`: no customer with the email `nobody@example.com`\n\
         \x20 leases.csv line 4, column `amount`: `65.001` is not an amount of ZAR (a positive number with at most 2 decimals, no currency sign or thousands separator)\n\
         \x20 leases.csv line 4, column `interval`: `fortnightly` must be monthly, weekly or yearly\n\
         \x20 leases.csv line 4, column `start_date`: `2026-13-01` is not a date; write YYYY-MM-DD\n"
    );
    assert_eq!(store.billing_counts().await.unwrap(), (2, 0, 0));
    std::fs::write(
        p.path().join("leases.csv"),
        "customer_email,amount,currency,interval,start_date\nthandi@example.com,6500.00,ZAR,monthly,2026-01-15\n",
    )
    .unwrap();
    let out = p.cli(&["import", "subscriptions", "leases.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = p.cli(&["import", "invoices", "nope.csv"]);
    assert!(
        stderr(&out).starts_with("error: cannot read `nope.csv`: No such file or directory"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        p.path().join("inv.csv"),
        "number,customer_email,amount,currency,due_date,colour\n",
    )
    .unwrap();
    let out = p.cli(&["import", "invoices", "inv.csv"]);
    assert!(
        stderr(&out)
            .contains("inv.csv line 1: unknown column `colour`; invoices files take: id, number,"),
        "{}",
        stderr(&out)
    );
    store.close().await;
}

/// An import never doubles or contradicts: customers are one per email (a file imported twice
/// is refused, not doubled), a header names each column once, `customer_id` and
/// `customer_email` must agree, periods run forwards; and two invoices of one customer named
/// by email import (the lookup counted the customer once per row and refused them).
#[tokio::test]
async fn import_refuses_what_would_double_or_contradict() {
    let p = Project::sqlite();
    p.write_config("", "");
    let (a, b) = (id(), id());
    let write = |name: &str, text: String| std::fs::write(p.path().join(name), text).unwrap();
    let refused = |args: &[&str]| {
        let out = p.cli(args);
        assert!(!out.status.success(), "{}", stdout(&out));
        stderr(&out)
    };
    write(
        "people.csv",
        format!("id,name,email\n{a},Anna,anna@x.test\n{b},Ben,ben@x.test\n"),
    );
    let out = p.cli(&["import", "customers", "people.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    write(
        "again.csv",
        "name,email\nAnna,anna@x.test\nBen,ben@x.test\n".into(),
    );
    assert_eq!(
        refused(&["import", "customers", "again.csv"]),
        "error: `again.csv` has 2 bad row(s); nothing was imported. Fix them and import the file again:\n\
         \x20 again.csv line 2, column `email`: a customer with the email `anna@x.test` exists already; remove the rows imported before (a file is imported once), or import with `--update` to change the stored customers\n\
         \x20 again.csv line 3, column `email`: a customer with the email `ben@x.test` exists already; remove the rows imported before (a file is imported once), or import with `--update` to change the stored customers\n"
    );
    // `--update`: the stored customers change, in the file's columns only (Ben keeps his id
    // and name; `phone` is new), a new email is inserted, and nobody is doubled.
    write(
        "crm.csv",
        "email,phone,name\nanna@x.test,+27821234567,Anna Smith\ndan@x.test,,Dan\n".into(),
    );
    let out = p.cli(&["import", "customers", "crm.csv", "--update"]);
    assert_eq!(
        stdout(&out),
        "imported 1 customers and updated 1 from crm.csv\n",
        "{}",
        stderr(&out)
    );
    let store = p.store().await;
    let people = store
        .query_json(
            "SELECT id, email, name, phone FROM customers ORDER BY email",
            chrono::Utc::now(),
            100,
        )
        .await
        .unwrap();
    let people: Vec<String> = people
        .iter()
        .map(|r| format!("{} {} {} {}", r["email"], r["id"], r["name"], r["phone"]))
        .collect();
    assert_eq!(people.len(), 3, "{people:?}");
    assert_eq!(
        people[..2],
        [
            format!("\"anna@x.test\" \"{a}\" \"Anna Smith\" \"+27821234567\""),
            format!("\"ben@x.test\" \"{b}\" \"Ben\" null"),
        ]
    );
    assert!(people[2].starts_with("\"dan@x.test\""), "{people:?}");
    store.close().await;
    write(
        "wrong.csv",
        format!("id,email,name\n{b},anna@x.test,Anna\n"),
    );
    assert_eq!(
        refused(&["import", "customers", "wrong.csv", "--update"]),
        format!(
            "error: `wrong.csv` has 1 bad row(s); nothing was imported. Fix them and import the file again:\n\
             \x20 wrong.csv line 2, column `id`: the customer with the email `anna@x.test` is `{a}`, not `{b}`; leave `id` out or give that one\n\
             \x20 wrong.csv line 2, column `id`: `{b}` already exists in customers\n"
        )
    );
    write(
        "twice.csv",
        "name,email,phone,email\nCara,cara@x.test,,\nCora,CARA@x.test,,\n".into(),
    );
    assert_eq!(
        refused(&["import", "customers", "twice.csv"]),
        "error: `twice.csv` has 1 bad row(s); nothing was imported. Fix them and import the file again:\n\
         \x20 twice.csv line 1: the column `email` is there twice (columns 2 and 4); keep one\n"
    );
    write(
        "twice.csv",
        "name,email\nCara,cara@x.test\nCora,CARA@x.test\n".into(),
    );
    assert_eq!(
        refused(&["import", "customers", "twice.csv"]),
        "error: `twice.csv` has 1 bad row(s); nothing was imported. Fix them and import the file again:\n\
         \x20 twice.csv line 3, column `email`: `CARA@x.test` is also on line 2\n"
    );
    write(
        "bad.csv",
        format!(
            "number,customer_id,customer_email,amount,currency,due_date,period_start,period_end\n\
             B-1,{a},ben@x.test,10,ZAR,2026-12-01,,\n\
             B-2,,anna@x.test,10,ZAR,2026-12-01,2026-12-10,2026-12-01\n"
        ),
    );
    assert_eq!(
        refused(&["import", "invoices", "bad.csv"]),
        format!(
            "error: `bad.csv` has 2 bad row(s); nothing was imported. Fix them and import the file again:\n\
             \x20 bad.csv line 2, column `customer_email`: `ben@x.test` is not the email of the customer `{a}` (`customer_id`); give one of the two, or make them agree\n\
             \x20 bad.csv line 3, column `period_end`: `2026-12-01` is before `period_start` `2026-12-10`\n"
        )
    );
    write(
        "invoices.csv",
        format!(
            "number,customer_id,customer_email,amount,currency,due_date\n\
             A-1,,anna@x.test,10,ZAR,2026-12-01\n\
             A-2,,anna@x.test,20,ZAR,2026-12-02\n\
             A-3,{a},anna@x.test,30,ZAR,2026-12-03\n"
        ),
    );
    let out = p.cli(&["import", "invoices", "invoices.csv"]);
    assert_eq!(
        stdout(&out),
        "imported 3 invoices from invoices.csv\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(
        refused(&["import", "invoices", "invoices.csv", "--update"]),
        "error: `--update` changes customers only (each found by its email); invoices are \
         imported once, so import invoices.csv without it\n"
    );
    let store = p.store().await;
    assert_eq!(store.billing_counts().await.unwrap(), (3, 0, 3));
    store.close().await;
}

/// `import customers --update` on PostgreSQL (its `UPDATE … FROM` is the other dialect's).
#[tokio::test]
async fn import_update_changes_stored_customers_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    p.write_config("", "");
    let write = |name: &str, text: &str| std::fs::write(p.path().join(name), text).unwrap();
    write("a.csv", "name,email,locale\nAnna,anna@x.test,af\n");
    assert!(p.cli(&["import", "customers", "a.csv"]).status.success());
    write(
        "b.csv",
        "email,name,org_id\nanna@x.test,Anna Smith,0f1e2d3c-0000-4000-8000-000000000001\n",
    );
    let out = p.cli(&["import", "customers", "b.csv", "--update"]);
    assert_eq!(
        stdout(&out),
        "imported 0 customers and updated 1 from b.csv\n",
        "{}",
        stderr(&out)
    );
    let store = p.store().await;
    let rows = store
        .query_json(
            "SELECT name, locale, org_id::text AS org FROM customers",
            chrono::Utc::now(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (&rows[0]["name"], &rows[0]["locale"], &rows[0]["org"]),
        (
            &json!("Anna Smith"),
            &json!("af"),
            &json!("0f1e2d3c-0000-4000-8000-000000000001")
        )
    );
    store.close().await;
}

/// `run-job --dry-run` renders and lists what would be sent, and sends, records and changes
/// nothing.
#[tokio::test]
async fn a_dry_run_sends_and_changes_nothing() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[channels.email]\nfrom = \"Billing <b@acme.test>\"\n\n[templates]\nvars = { company = \"Acme\" }\n\n\
         [[job]]\nname = \"r\"\nkind = \"invoice_reminders\"\nschedule = \"0 9 * * *\"\n\n\
         [[job]]\nname = \"i\"\nkind = \"create_invoices\"\nschedule = \"0 7 * * *\"\n",
    );
    let store = p.store().await;
    let c = customer("Thandi Mokoena", Some("thandi@example.com"), None);
    let mut inv = vec![invoice(&c, "A-1", 1)];
    let sub = weekly(&c, 3);
    store.import(&[c], &[sub], &mut inv, "INV-").await.unwrap();
    let out = p.cli(&["run-job", "r", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("r: dry run, 1 record(s); nothing was sent or changed\n"),
        "{text}"
    );
    assert!(
        text.contains("  would send email to thandi@example.com: ") && text.contains("A-1"),
        "{text}"
    );
    let out = p.cli(&["run-job", "i", "--dry-run"]);
    assert!(
        stdout(&out).contains("\"would_create\":5"),
        "{}",
        stdout(&out)
    );
    assert!(!p.path().join("outbox").exists(), "no email written");
    assert_eq!(
        store.billing_counts().await.unwrap(),
        (1, 1, 1),
        "no invoice created"
    );
    assert!(
        store
            .notification_states(&["reminder:7d".into()])
            .await
            .unwrap()
            .is_empty()
    );
    let rows = store
        .history(&HistoryFilter {
            job: None,
            status: None,
            limit: 10,
            run: None,
        })
        .await
        .unwrap();
    assert!(rows.is_empty(), "a dry run is not a run: {rows:?}");
    store.close().await;
}

/// `notify` on the user's own table: seed 003's "bookings 24 h ahead", once per booking, and
/// never again from a second job sharing its `dedup` (seed 002's weekend catch-up batch).
async fn notify_story(p: Project) {
    let postgres = p.database_url.starts_with("postgres");
    let window = if postgres {
        "starts_at BETWEEN :now + interval '23 hours' AND :now + interval '25 hours'"
    } else {
        "starts_at BETWEEN datetime(:now, '+23 hours') AND datetime(:now, '+25 hours')"
    };
    std::fs::create_dir_all(p.path().join("templates")).unwrap();
    std::fs::write(
        p.path().join("templates/booking.j2"),
        "{% block subject %}Your booking {{ id }} at {{ starts_at }}{% endblock %}\
         {% block text %}Hi {{ name }}, see you at {{ starts_at }}.{% endblock %}",
    )
    .unwrap();
    let job = |name: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"notify\"\nschedule = \"0 * * * *\"\n\
             query = \"SELECT id, name, email, starts_at FROM bookings WHERE {window} ORDER BY id\"\n\
             template = \"booking\"\ndedup = \"booking-24h-{{{{ id }}}}\"\n\n"
        )
    };
    p.write_config(
        "",
        &format!(
            "[channels.email]\nfrom = \"Bookings <b@acme.test>\"\n\n{}{}",
            job("hourly"),
            job("weekend")
        ),
    );
    let store = p.store().await;
    let at = |h: i64| {
        (Utc::now() + chrono::Duration::hours(h))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    store
        .execute(
            &[
                if postgres {
                    "CREATE TABLE bookings (id INTEGER, name TEXT, email TEXT, starts_at TIMESTAMPTZ)"
                } else {
                    "CREATE TABLE bookings (id INTEGER, name TEXT, email TEXT, starts_at TEXT)"
                }
                .into(),
                format!(
                    "INSERT INTO bookings VALUES (1, 'Ann', 'ann@example.com', '{}'), \
                     (1, 'Ann', 'ann@example.com', '{}'), \
                     (2, 'Ben', NULL, '{}'), (3, 'Cat', 'cat@example.com', '{}')",
                    at(24),
                    at(24),
                    at(24),
                    at(48)
                ),
            ],
            true,
        )
        .await
        .unwrap();
    let r = run(&p, "hourly").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(1)),
        "{r:?}"
    );
    assert_eq!(meta(&r)["skipped_no_address"], json!(1));
    assert_eq!(
        meta(&r)["already_sent"],
        json!(1),
        "a row twice is one message"
    );
    let outbox: Vec<_> = std::fs::read_dir(p.path().join("outbox"))
        .unwrap()
        .collect();
    assert_eq!(outbox.len(), 1);
    let eml = std::fs::read_to_string(outbox[0].as_ref().unwrap().path()).unwrap();
    assert!(eml.contains("To: ann@example.com"), "{eml}");
    assert!(eml.contains("Subject: Your booking 1 at "), "{eml}");
    assert_eq!(run(&p, "hourly").await.records_processed, Some(0));
    assert_eq!(run(&p, "weekend").await.records_processed, Some(0));
    let states = store
        .notification_states(&["booking-24h-1:email".into(), "booking-24h-2:email".into()])
        .await
        .unwrap();
    assert_eq!(
        states.into_iter().collect::<BTreeMap<_, _>>(),
        BTreeMap::from([
            ("booking-24h-1:email".to_string(), "sent".to_string()),
            ("booking-24h-2:email".to_string(), "skipped".to_string())
        ])
    );
    store.close().await;
}

#[tokio::test]
async fn notify_reminds_rows_of_your_own_tables_once() {
    notify_story(Project::sqlite()).await;
}

#[tokio::test]
async fn notify_reminds_rows_of_your_own_tables_once_postgres() {
    if let Some(p) = Project::postgres().await {
        notify_story(p).await;
    }
}

/// `cleanup` deletes old rows in batches, keeps what `keep` protects, and reports a rule it
/// cannot run as an item error while the other rules go on.
#[tokio::test]
async fn cleanup_deletes_in_batches_and_keeps_what_it_is_told() {
    use tickler::store::billing::{NotificationClaim, NotificationEnd};
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"cleanup\"\nkind = \"cleanup\"\nschedule = \"0 2 * * 1\"\n\n\
         [[job.rule]]\ntable = \"notification_log\"\nolder_than = \"90d\"\nkeep = \"status = 'failed'\"\nbatch_size = 2\n\n\
         [[job.rule]]\ntable = \"no_such_table\"\nolder_than = \"1d\"\n",
    );
    let store = p.store().await;
    let claim = |key: String| NotificationClaim {
        id: id(),
        key,
        channel: "email",
        recipient: "x@example.com".into(),
        template: "friendly".into(),
        invoice: None,
        status: "sending",
        error: None,
        until: None,
    };
    let old = Utc::now() - chrono::Duration::days(100);
    let olds: Vec<_> = (0..7).map(|i| claim(format!("old-{i}"))).collect();
    let claimant = tickler::notify::Claimant {
        job: "t",
        owner: "test",
        run: None,
    };
    store
        .claim_notifications(&claimant, &olds, old)
        .await
        .unwrap();
    let ends: Vec<_> = (0..7)
        .map(|i| NotificationEnd {
            key: format!("old-{i}"),
            status: if i < 2 { "failed" } else { "sent" },
            provider_id: None,
            error: None,
        })
        .collect();
    store
        .journal_notifications("test", &[], &ends, old)
        .await
        .unwrap();
    let news: Vec<_> = (0..3).map(|i| claim(format!("new-{i}"))).collect();
    store
        .claim_notifications(&claimant, &news, Utc::now())
        .await
        .unwrap();

    let r = run(&p, "cleanup").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(5)),
        "{r:?}"
    );
    assert!(
        r.error_message.as_deref().unwrap().contains("no_such_table.created_at older than 1day: database error while deleting old rows: error returned from database: (code: 1) no such table: no_such_table"),
        "{r:?}"
    );
    let keys: Vec<String> = (0..7)
        .map(|i| format!("old-{i}"))
        .chain((0..3).map(|i| format!("new-{i}")))
        .collect();
    let left = store.notification_states(&keys).await.unwrap();
    assert_eq!(
        left.len(),
        5,
        "two old failures and three new rows stay: {left:?}"
    );
    assert!(left.contains_key("old-0") && left.contains_key("old-1") && left.contains_key("new-2"));
    store.close().await;
}

/// The first run bills the period under way: before, due its terms after the period's start
/// (here 4 days ago), so the invoice was born overdue and the same morning's overdue message
/// told the tenant so. Now its terms run from today; `bill_past_periods = false` skips it.
#[tokio::test]
async fn a_new_invoice_is_never_born_overdue() {
    for (past, dues) in [
        (true, vec![day(1), day(3), day(10)]),
        (false, vec![day(3), day(10)]),
    ] {
        let p = Project::sqlite();
        p.write_config(
            "",
            &format!(
                "[[job]]\nname = \"i\"\nkind = \"create_invoices\"\nschedule = \"0 7 * * *\"\n\
                 days_ahead = 10\nbill_past_periods = {past}\n"
            ),
        );
        let store = p.store().await;
        let c = customer("Nomsa", Some("n@example.com"), None);
        let mut sub = weekly(&c, 2);
        sub.payment_terms_days = 1;
        store.import(&[c], &[sub], &mut [], "INV-").await.unwrap();
        let r = run(&p, "i").await;
        let created = meta(&r)["invoices"].as_array().unwrap().clone();
        let got: Vec<&str> = created
            .iter()
            .map(|i| i["due_date"].as_str().unwrap())
            .collect();
        let want: Vec<String> = dues.iter().map(|d| d.to_string()).collect();
        assert_eq!(got, want, "bill_past_periods = {past}");
        assert!(dues.iter().all(|d| *d > today()), "none born overdue");
        store.close().await;
    }
}

/// Amounts up to the importer's cap summed to more than 64 bits, and `stats_report` failed
/// with `integer overflow` until the rows were fixed. Sums are now exact at any size.
#[tokio::test]
async fn stats_sum_amounts_without_overflow() {
    stats_overflow(Project::sqlite()).await;
}

#[tokio::test]
async fn stats_sum_amounts_without_overflow_postgres() {
    if let Some(p) = Project::postgres().await {
        stats_overflow(p).await;
    }
}

async fn stats_overflow(p: Project) {
    p.write_config(
        "",
        "[channels.email]\ntransport = \"file\"\nfrom = \"billing@acme.test\"\n\n\
         [templates]\nvars = { company = \"Acme\" }\n\n\
         [[job]]\nname = \"weekly\"\nkind = \"stats_report\"\nschedule = \"0 8 * * 1\"\n\
         period = \"weekly\"\nrecipients = [\"boss@acme.test\"]\n",
    );
    let store = p.store().await;
    let c = customer("Big", Some("big@example.com"), None);
    let mut invoices: Vec<NewInvoice> = (1..=3)
        .map(|n| {
            let mut i = invoice(&c, &format!("BIG-{n}"), 10);
            i.amount_minor = i64::MAX / 2;
            i
        })
        .collect();
    store
        .import(&[c], &[], &mut invoices, "INV-")
        .await
        .unwrap();
    let r = run(&p, "weekly").await;
    assert_eq!(r.status, "succeeded", "{r:?}");
    let zar = &meta(&r)["stats"]["currencies"][0];
    assert_eq!(zar["outstanding_minor"], json!("13835058055282163709"));
    assert_eq!(
        zar["outstanding_amount"],
        json!("ZAR 138,350,580,552,821,637.09")
    );
    store.close().await;
}

/// Invoice numbers never collide with imported ones: the counter skips past them.
#[tokio::test]
async fn invoice_numbers_skip_past_imported_ones() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"i\"\nkind = \"create_invoices\"\nschedule = \"0 7 * * *\"\ndays_ahead = 0\n",
    );
    let store = p.store().await;
    let c = customer("Legacy", Some("l@example.com"), None);
    let mut old = vec![
        invoice(&c, "INV-000001", -40),
        invoice(&c, "INV-000007", -20),
    ];
    let sub = weekly(&c, 0);
    store.import(&[c], &[sub], &mut old, "INV-").await.unwrap();
    let r = run(&p, "i").await;
    assert_eq!(r.status, "succeeded", "{r:?}");
    assert_eq!(meta(&r)["invoices"][0]["number"], json!("INV-000008"));
    store.close().await;
}

/// The job `sms`: SMS reminders 7 days before the due date; `extra` adds to it.
fn sms_job(extra: &str) -> String {
    format!(
        "[[job]]\nname = \"sms\"\nkind = \"invoice_reminders\"\nschedule = \"0 9 * * *\"\n\
         offsets = [\"7d\"]\nchannels = [\"sms\"]\n{extra}"
    )
}

/// A project with the job `sms` (`extra` added), its SMS lane at `rate` messages a second one
/// at a time through a Twilio mock, and `n` customers (phone `{phone}{i}`), each with an open
/// invoice `{prefix}-{i}` due in 7 days.
async fn sms_reminders(
    p: &Project,
    rate: &str,
    extra: &str,
    n: usize,
    prefix: &str,
    phone: &str,
) -> (
    SmtpServer,
    MockServer,
    Store,
    Vec<NewCustomer>,
    Vec<NewInvoice>,
) {
    let smtp = SmtpServer::start(p.path());
    let twilio = MockServer::start().await;
    twilio_ok(&twilio).await;
    let text = channels(p, smtp.port, &twilio.uri()).replace(
        "rate_limit = 0",
        &format!("rate_limit = {rate}\nconcurrency = 1"),
    );
    p.write_config("", &(text + &sms_job(extra)));
    let store = p.store().await;
    let customers: Vec<NewCustomer> = (1..=n)
        .map(|i| customer(&format!("Tenant {i}"), None, Some(&format!("{phone}{i}"))))
        .collect();
    let mut invoices: Vec<NewInvoice> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| invoice(c, &format!("{prefix}-{}", i + 1), 7))
        .collect();
    store
        .import(&customers, &[], &mut invoices, "INV-")
        .await
        .unwrap();
    (smtp, twilio, store, customers, invoices)
}

/// A run cut short by its timeout: the messages it had claimed but not yet handed to the
/// provider go back to `failed`, so the next run sends them, and none is sent twice.
#[tokio::test]
async fn a_cut_short_run_leaves_no_message_behind() {
    let p = Project::sqlite();
    let (smtp, twilio, store, _, invoices) =
        sms_reminders(&p, "1", "timeout = \"1500ms\"\n", 4, "S", "+2782000002").await;
    let r = run(&p, "sms").await;
    assert_eq!(r.status, "timed_out", "{r:?}");
    let first = texted(&twilio).await.len();
    assert!((1..4).contains(&first), "{first} sent before the timeout");
    let keys: Vec<String> = invoices
        .iter()
        .map(|i| format!("reminder:7d:{}:sms", i.id))
        .collect();
    wait_for(
        "unattempted messages released",
        std::time::Duration::from_secs(10),
        || async {
            let states = store.notification_states(&keys).await.unwrap();
            let failed = states.values().filter(|s| *s == "failed").count();
            (failed == 4 - first).then_some(())
        },
    )
    .await;

    // Without the timeout, the rest go out; none twice.
    p.write_config("", &(channels(&p, smtp.port, &twilio.uri()) + &sms_job("")));
    let r = run(&p, "sms").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(4 - first as i64))
    );
    let mut all = texted(&twilio).await;
    all.sort();
    assert_eq!(
        all,
        [
            "+27820000021",
            "+27820000022",
            "+27820000023",
            "+27820000024"
        ]
    );
    store.close().await;
}

/// Invariant 6: an invoice paid while its reminder waits for its lane (claimed with its page,
/// not yet handed to the provider: here a rate limit of one message every 2 s) gets no
/// reminder; the message is recorded `cancelled`, saying why.
async fn a_reminder_waiting_for_its_lane_is_cancelled_when_the_invoice_is_paid(p: Project) {
    let (_smtp, twilio, store, customers, invoices) =
        sms_reminders(&p, "0.5", "", 3, "P", "+2782000003").await;
    let pay_the_rest = async {
        let first = wait_for(
            "the first reminder sent",
            std::time::Duration::from_secs(20),
            || async { texted(&twilio).await.first().cloned() },
        )
        .await;
        for (c, i) in customers.iter().zip(&invoices) {
            if c.phone.as_deref() != Some(first.as_str()) {
                assert!(
                    store
                        .mark_paid(&i.number, Utc::now(), None, None)
                        .await
                        .unwrap()
                );
            }
        }
        first
    };
    let (r, first) = tokio::join!(run(&p, "sms"), pay_the_rest);
    assert_eq!(r.status, "succeeded", "{r:?}");
    assert_eq!(texted(&twilio).await, std::slice::from_ref(&first));
    let log = crate::contacts::log(&store).await;
    let expected: Vec<(String, String, String)> = customers
        .iter()
        .map(|c| {
            let phone = c.phone.clone().unwrap();
            if phone == first {
                (phone, "sent".into(), String::new())
            } else {
                (
                    phone,
                    "cancelled".into(),
                    "cancelled: its invoice is paid".into(),
                )
            }
        })
        .collect();
    assert_eq!(log, expected);
    store.close().await;
}

#[tokio::test]
async fn a_reminder_waiting_for_its_lane_is_cancelled_when_the_invoice_is_paid_sqlite() {
    a_reminder_waiting_for_its_lane_is_cancelled_when_the_invoice_is_paid(Project::sqlite()).await;
}

#[tokio::test]
async fn a_reminder_waiting_for_its_lane_is_cancelled_when_the_invoice_is_paid_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    a_reminder_waiting_for_its_lane_is_cancelled_when_the_invoice_is_paid(p).await;
}
