//! Seeds 003 and 004 end to end: the shipped `examples/*/config.toml`, on the application's
//! tables (`schema.sql` on SQLite, `schema.postgres.sql` on PostgreSQL with the config's
//! `datetime(:now, ...)` rewritten by the `sed` command its header gives), run by the real
//! binary (`tickler run-job --all`) against a real SMTP server and a mock of Twilio. The
//! config is changed only where it must point elsewhere: the email transport, Twilio's
//! `base_url`; `APP_DATABASE_URL` names the test's database. Each story seeds rows the jobs
//! must act on and rows they must leave alone, asserts the messages, the application's flags,
//! its `notifications` rows and 003's cleanup, then runs everything again: nothing more is
//! sent or written.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tickler::secret::DatabaseUrl;
use tickler::store::Store;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::examples::{examples_dir, statements};
use crate::helpers::smtp::SmtpServer;
use crate::helpers::{BIN, Project, postgres_database, stderr, stdout};

/// The `sed -E` expression of the examples' headers that turns SQLite's time arithmetic into
/// PostgreSQL's; the PostgreSQL runs use the config it writes.
const TO_POSTGRES: &str =
    r"s/datetime\(:now, '([+-][0-9]+ [a-z]+)'\)/(CAST(:now AS timestamptz) + interval '\1')/g";

/// A message as Twilio received it: the `To` and `Body` fields of the form.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Text {
    to: String,
    body: String,
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// One example set up in a temporary directory: its adapted config, the application's
/// database with the example's tables, an SMTP server and a Twilio mock.
struct Stage {
    project: Project,
    app: Store,
    app_url: String,
    postgres: bool,
    now: DateTime<Utc>,
    smtp: SmtpServer,
    twilio: MockServer,
}

/// `text` with its one `from` replaced by `to`; the shipped config must still have `from`.
fn replace_once(text: &str, from: &str, to: &str, example: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "examples/{example}/config.toml should hold `{from}` once: update the adaptation here"
    );
    text.replacen(from, to, 1)
}

impl Stage {
    async fn new(example: &str, project: Project, app_url: String) -> Stage {
        let postgres = app_url.starts_with("postgres");
        let dir = examples_dir().join(example);
        if !postgres {
            std::fs::write(app_url.trim_start_matches("sqlite://"), b"").unwrap();
        }
        let app = Store::connect_user(&DatabaseUrl::new(app_url.clone()))
            .await
            .unwrap();
        let schema = dir.join(if postgres {
            "schema.postgres.sql"
        } else {
            "schema.sql"
        });
        let sql = std::fs::read_to_string(&schema).unwrap();
        app.execute(&statements(&sql), true).await.unwrap();

        let shipped = dir.join("config.toml");
        let mut text = std::fs::read_to_string(&shipped).unwrap();
        if postgres {
            assert!(
                text.contains(TO_POSTGRES),
                "examples/{example}/config.toml's header gives the `sed` command run here"
            );
            let out = std::process::Command::new("sed")
                .arg("-E")
                .arg(TO_POSTGRES)
                .arg(&shipped)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            text = stdout(&out);
            assert!(
                !text
                    .lines()
                    .any(|l| !l.trim_start().starts_with('#') && l.contains("datetime(")),
                "the `sed` command leaves SQLite's arithmetic in examples/{example}"
            );
        }
        let smtp = SmtpServer::start(project.path());
        let twilio = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(serde_json::json!({ "sid": "SM1" })),
            )
            .mount(&twilio)
            .await;
        // The two places that must point elsewhere: the email transport (a `.eml` file in
        // the shipped config, with its comment left on the last line) and Twilio.
        let text = replace_once(
            &text,
            "transport = \"file\"",
            &format!(
                "transport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"",
                smtp.port
            ),
            example,
        );
        let text = replace_once(
            &text,
            "base_url = \"https://api.twilio.com\"",
            &format!("base_url = \"{}\"", twilio.uri()),
            example,
        );
        std::fs::write(project.config_path(), text).unwrap();
        std::os::unix::fs::symlink(dir.join("templates"), project.path().join("templates"))
            .unwrap();
        Stage {
            project,
            app,
            app_url,
            postgres,
            now: Utc::now(),
            smtp,
            twilio,
        }
    }

    /// The time `minutes` from the stage's start, as an SQL literal of the backend.
    fn at(&self, minutes: i64) -> String {
        let t = self.now + chrono::Duration::minutes(minutes);
        if self.postgres {
            format!("'{}'", t.format("%Y-%m-%d %H:%M:%S+00"))
        } else {
            format!("'{}'", t.format("%Y-%m-%d %H:%M:%S"))
        }
    }

    async fn seed(&self, sql: &[String]) {
        self.app.execute(sql, true).await.unwrap();
    }

    /// `tickler ARGS --config config.toml` in the stage's directory, with the environment the
    /// example names; killed if it has not finished in 60 s.
    async fn tickler(&self, args: &[&str]) -> std::process::Output {
        let child = tokio::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.project.config_path())
            .current_dir(self.project.path())
            .env_remove("TICKLER_CONFIG")
            .env("TICKLER_DATABASE_URL", &self.project.database_url)
            .env("APP_DATABASE_URL", &self.app_url)
            .env("TWILIO_ACCOUNT_SID", "AC123")
            .env("TWILIO_AUTH_TOKEN", "token-123")
            .env("CRON_SECRET", "secret-123")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`tickler {}` still running after 60 s", args.join(" ")))
            .unwrap()
    }

    /// `tickler check`: the adapted config (on PostgreSQL, the rewritten SQL) prepares on
    /// the application's tables, with no warning.
    async fn check(&self) {
        let out = self.tickler(&["check"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stderr(&out), "", "`tickler check` warns");
    }

    /// `tickler run-job --all`: every job succeeds; returns what it printed.
    async fn run_all(&self, jobs: &[&str]) -> String {
        let out = self.tickler(&["run-job", "--all"]).await;
        let text = stdout(&out);
        assert!(out.status.success(), "{text}{}", stderr(&out));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), jobs.len(), "{text}");
        for (line, job) in lines.iter().zip(jobs) {
            assert!(
                line.starts_with(&format!("{job}: succeeded (")),
                "{text}{}",
                stderr(&out)
            );
        }
        text
    }

    /// The emails delivered, as (recipient, subject), and their bodies.
    fn emails(&self) -> (Vec<(String, String)>, Vec<String>) {
        let mails = self.smtp.messages();
        (
            mails
                .iter()
                .map(|m| (m.to.clone(), m.subject.clone()))
                .collect(),
            mails.into_iter().map(|m| m.body).collect(),
        )
    }

    /// The WhatsApp messages Twilio received, sorted.
    async fn texts(&self) -> Vec<Text> {
        let mut texts: Vec<Text> = self
            .twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let body = String::from_utf8_lossy(&r.body).to_string();
                let field = |name: &str| {
                    body.split('&')
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(form_decode))
                        .unwrap_or_default()
                };
                Text {
                    to: field("To"),
                    body: field("Body"),
                }
            })
            .collect();
        texts.sort();
        texts
    }

    /// The rows of `sql` on the application's database.
    async fn rows(&self, sql: &str) -> Vec<serde_json::Map<String, Value>> {
        self.app.query_json(sql, Utc::now(), 1000).await.unwrap()
    }

    /// The ids `sql` selects.
    async fn ids(&self, sql: &str) -> Vec<i64> {
        self.rows(sql)
            .await
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }

    /// Runs everything a second time: every job succeeds, and no email, text, notification
    /// or other row of `tables` is added.
    async fn run_again_changes_nothing(&self, jobs: &[&str], tables: &[&str]) {
        let emails = self.emails().0;
        let texts = self.texts().await;
        let mut counts = vec![];
        for t in tables {
            counts.push(self.rows(&format!("SELECT * FROM {t} ORDER BY id")).await);
        }
        self.run_all(jobs).await;
        assert_eq!(self.emails().0, emails, "a second run sends no email");
        assert_eq!(self.texts().await, texts, "a second run sends no text");
        for (t, before) in tables.iter().zip(counts) {
            assert_eq!(
                self.rows(&format!("SELECT * FROM {t} ORDER BY id")).await,
                before,
                "a second run changes nothing in `{t}`"
            );
        }
    }
}

/// Each body holds its texts.
fn assert_bodies(bodies: &[String], expected: &[&[&str]]) {
    assert_eq!(bodies.len(), expected.len());
    for (body, parts) in bodies.iter().zip(expected) {
        for part in *parts {
            assert!(body.contains(part), "`{part}` missing from:\n{body}");
        }
    }
}

/// A SQLite application database in the project's directory.
fn sqlite_app(p: &Project) -> String {
    format!("sqlite://{}", p.path().join("app.db").display())
}

const VERCEL_JOBS: [&str; 3] = ["booking-reminders", "payment-reminders", "cleanup"];

/// Seed 003: 24 h booking reminders (WhatsApp + email, flag, notification, audit log),
/// balance reminders 2-3 days before the due date, and the cleanup of stale bookings, read
/// notifications, expired OTP codes and old audit logs.
async fn vercel_cron_story(project: Project, app_url: String) {
    let s = Stage::new("003-vercel-cron", project, app_url).await;
    s.check().await;
    let (h, d) = (60, 24 * 60);
    let at = |m: i64| s.at(m);
    s.seed(&[
        "INSERT INTO clients (id, user_id, name, email, phone) VALUES
            (1, 101, 'Ava Stone', 'ava@example.com', '+15550000001'),
            (2, 102, 'Ben Okafor', 'ben@example.com', '+15550000002'),
            (3, 103, 'Cleo Park', 'cleo@example.com', '+15550000003'),
            (4, 104, 'Dan Reyes', 'dan@example.com', '+15550000004')"
            .into(),
        "INSERT INTO performers (id, name) VALUES (1, 'DJ Nova')".into(),
        format!(
            "INSERT INTO bookings (id, client_id, performer_id, event_date, status, deposit_paid,
                 balance_amount, balance_due_date, reminder_sent, payment_reminder_sent,
                 created_at) VALUES
             (1, 1, 1, {}, 'confirmed', TRUE, 0, NULL, FALSE, FALSE, {}),
             (2, 2, NULL, {}, 'confirmed', TRUE, 0, NULL, FALSE, FALSE, {}),
             (3, 3, 1, {}, 'confirmed', TRUE, 250, {}, FALSE, FALSE, {}),
             (4, 4, 1, {}, 'confirmed', TRUE, 0, NULL, TRUE, FALSE, {}),
             (5, 4, 1, {}, 'pending', FALSE, 0, NULL, FALSE, FALSE, {}),
             (6, 4, NULL, {}, 'pending', FALSE, 0, NULL, FALSE, FALSE, {}),
             (7, 4, NULL, {}, 'pending', TRUE, 0, NULL, FALSE, FALSE, {}),
             (8, 2, NULL, {}, 'confirmed', TRUE, 100, {}, FALSE, FALSE, {}),
             (9, 1, NULL, {}, 'confirmed', TRUE, 0, {}, FALSE, FALSE, {}),
             (10, 3, NULL, {}, 'confirmed', TRUE, 80, {}, FALSE, TRUE, {})",
            // In the 24 h window: reminded (Ava with her performer, Ben with none).
            at(24 * h),
            at(-10 * d),
            at(23 * h + 30),
            at(-10 * d),
            // Outside it; its balance is due in 2.5 days: Cleo's balance reminder.
            at(30 * h),
            at(2 * d + 12 * h),
            at(-10 * d),
            // Already flagged by the app: nothing.
            at(24 * h),
            at(-10 * d),
            // Pending, no deposit, two days old: not reminded, cancelled by the cleanup.
            at(24 * h),
            at(-2 * d),
            // Pending but an hour old, or with its deposit paid: left pending.
            at(5 * d),
            at(-h),
            at(5 * d),
            at(-3 * d),
            // A balance due in 5 days, nothing owed, a balance already reminded: nothing.
            at(10 * d),
            at(5 * d),
            at(-10 * d),
            at(10 * d),
            at(2 * d + 12 * h),
            at(-10 * d),
            at(10 * d),
            at(2 * d + 12 * h),
            at(-10 * d),
        ),
        format!(
            "INSERT INTO notifications (user_id, type, title, read, created_at) VALUES
             (999, 'system', 'read, 40 days old', TRUE, {}),
             (999, 'system', 'read, 10 days old', TRUE, {}),
             (999, 'system', 'unread, 40 days old', FALSE, {})",
            at(-40 * d),
            at(-10 * d),
            at(-40 * d)
        ),
        format!(
            "INSERT INTO otp_codes (id, phone, code, expires_at) VALUES
             (1, '+15550000001', '111111', {}), (2, '+15550000002', '222222', {})",
            at(-h),
            at(h)
        ),
        format!(
            "INSERT INTO audit_logs (action, severity, created_at) VALUES
             ('old info', 'info', {}), ('old critical', 'critical', {}),
             ('recent info', 'info', {})",
            at(-100 * d),
            at(-100 * d),
            at(-10 * d)
        ),
    ])
    .await;

    s.run_all(&VERCEL_JOBS).await;

    let (emails, bodies) = s.emails();
    assert_eq!(
        emails
            .iter()
            .map(|(to, subject)| (to.as_str(), subject.split(" at ").next().unwrap()))
            .collect::<Vec<_>>()[..2],
        [
            ("ava@example.com", "Reminder: DJ Nova tomorrow"),
            ("ben@example.com", "Reminder: your performer tomorrow"),
        ],
        "{emails:?}"
    );
    assert_eq!(emails.len(), 3, "{emails:?}");
    assert_eq!(emails[2].0, "cleo@example.com");
    assert!(emails[2].1.starts_with("Balance of 250"), "{emails:?}");
    assert_bodies(
        &bodies,
        &[
            &[
                "Hi Ava Stone",
                "Your booking with DJ Nova is tomorrow",
                "Flavor Entertainers",
            ],
            &[
                "Hi Ben Okafor",
                "Your booking with your performer is tomorrow",
            ],
            &["Hi Cleo Park", "The outstanding balance of 250"],
        ],
    );
    let texts = s.texts().await;
    assert_eq!(
        texts.iter().map(|t| t.to.as_str()).collect::<Vec<_>>(),
        [
            "whatsapp:+15550000001",
            "whatsapp:+15550000002",
            "whatsapp:+15550000003"
        ],
        "{texts:?}"
    );
    assert!(
        texts[0]
            .body
            .starts_with("Flavor Entertainers: your booking with DJ Nova is tomorrow"),
        "{texts:?}"
    );
    assert!(texts[1].body.contains("your performer"), "{texts:?}");
    assert!(texts[2].body.contains("balance of 250"), "{texts:?}");

    // The app's flags, notifications and audit trail.
    assert_eq!(
        s.ids("SELECT id FROM bookings WHERE reminder_sent ORDER BY id")
            .await,
        [1, 2, 4]
    );
    assert_eq!(
        s.ids("SELECT id FROM bookings WHERE payment_reminder_sent ORDER BY id")
            .await,
        [3, 10]
    );
    let notes = s
        .rows("SELECT user_id, type, title FROM notifications ORDER BY user_id, title")
        .await;
    let notes: Vec<(i64, &str, &str)> = notes
        .iter()
        .map(|n| {
            (
                n["user_id"].as_i64().unwrap(),
                n["type"].as_str().unwrap(),
                n["title"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        notes,
        [
            (101, "booking_reminder", "Your booking is tomorrow"),
            (102, "booking_reminder", "Your booking is tomorrow"),
            (103, "payment_reminder", "Balance due soon"),
            // The read one 40 days old is gone; too young or unread, kept.
            (999, "system", "read, 10 days old"),
            (999, "system", "unread, 40 days old"),
        ]
    );
    let audit = s
        .rows("SELECT action, entity_id FROM audit_logs ORDER BY action, entity_id")
        .await;
    let audit: Vec<(&str, Option<i64>)> = audit
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["entity_id"].as_i64()))
        .collect();
    assert_eq!(
        audit,
        [
            ("booking_reminder_sent", Some(1)),
            ("booking_reminder_sent", Some(2)),
            ("old critical", None),
            ("recent info", None),
        ]
    );
    // The cleanup: the stale booking cancelled (not deleted), the expired code deleted.
    assert_eq!(
        s.ids("SELECT id FROM bookings WHERE status = 'cancelled' ORDER BY id")
            .await,
        [5]
    );
    assert_eq!(
        s.ids("SELECT id FROM bookings WHERE status = 'pending' ORDER BY id")
            .await,
        [6, 7]
    );
    assert_eq!(s.ids("SELECT id FROM bookings").await.len(), 10);
    assert_eq!(s.ids("SELECT id FROM otp_codes").await, [2]);

    s.run_again_changes_nothing(&VERCEL_JOBS, &["bookings", "notifications", "audit_logs"])
        .await;
    s.app.close().await;
}

#[tokio::test]
async fn examples_003_vercel_cron_runs_end_to_end() {
    let p = Project::sqlite();
    let app = sqlite_app(&p);
    vercel_cron_story(p, app).await;
}

#[tokio::test]
async fn examples_003_vercel_cron_runs_end_to_end_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let app = postgres_database().await.unwrap();
    vercel_cron_story(p, app).await;
}

const APSCHEDULER_JOBS: [&str; 7] = [
    "session_reminders_24h",
    "session_reminders_15min",
    "recording_notifications",
    "assignment_reminders",
    "payment_reminders",
    "lead_follow_ups",
    "lead_final_reminders",
];

/// Seed 004: session reminders 24 h and 15 min ahead to every enrolled student, recordings,
/// assignments due in 24-48 h, payments pending 3+ days, day 3 and day 7 lead follow-ups, each
/// with the app's sent-flag and, for sessions and recordings, an in-app notification.
async fn apscheduler_story(project: Project, app_url: String) {
    let s = Stage::new("004-apscheduler", project, app_url).await;
    s.check().await;
    let (h, d) = (60, 24 * 60);
    let at = |m: i64| s.at(m);
    s.seed(&[
        "INSERT INTO profiles (id, full_name, email, phone) VALUES
            (1, 'Asha Rao', 'asha@example.com', '+15551000001'),
            (2, 'Bram Vos', 'bram@example.com', '+15551000002'),
            (3, 'Cyd Lim', 'cyd@example.com', '+15551000003')"
            .into(),
        "INSERT INTO enrollments (course_id, student_id) VALUES (1, 1), (1, 2), (2, 3)".into(),
        format!(
            "INSERT INTO sessions (id, course_id, title, scheduled_at, meeting_link) VALUES
             (10, 1, 'Rust Basics', {}, 'https://meet.example/10'),
             (11, 2, 'Async Deep Dive', {}, 'https://meet.example/11'),
             (12, 1, 'Later Session', {}, 'https://meet.example/12'),
             (13, 2, 'Past Session', {}, 'https://meet.example/13'),
             (14, 1, 'Too Soon', {}, 'https://meet.example/14')",
            // 24 h ahead: both students of course 1; 15 min ahead: Cyd; the others nothing.
            at(24 * h),
            at(15),
            at(3 * d),
            at(-2 * d),
            at(22 * h),
        ),
        // Visible and not announced: Cyd; hidden, or announced already: nothing.
        "INSERT INTO recordings (id, session_id, url, visible_to_students, notification_sent)
         VALUES (1, 13, 'https://rec.example/13', TRUE, FALSE),
                (2, 13, 'https://rec.example/13b', FALSE, FALSE),
                (3, 12, 'https://rec.example/12', TRUE, TRUE)"
            .into(),
        format!(
            "INSERT INTO assignments (id, student_id, title, deadline, submitted_at, reminder_sent)
             VALUES (1, 1, 'Essay', {}, NULL, FALSE), (2, 2, 'Quiz', {}, {}, FALSE),
                    (3, 2, 'Project', {}, NULL, TRUE), (4, 3, 'Thesis', {}, NULL, FALSE),
                    (5, 3, 'Lab', {}, NULL, FALSE)",
            // Due in 36 h: Asha; submitted, reminded, due in 5 days or in 12 h: nothing.
            at(36 * h),
            at(36 * h),
            at(-h),
            at(36 * h),
            at(5 * d),
            at(12 * h),
        ),
        format!(
            "INSERT INTO payments (id, student_id, amount, status, payment_link, created_at,
                 reminder_sent) VALUES
             (1, 2, 5000, 'pending', 'https://pay.example/1', {}, FALSE),
             (2, 1, 1200, 'pending', 'https://pay.example/2', {}, FALSE),
             (3, 3, 900, 'paid', 'https://pay.example/3', {}, FALSE),
             (4, 3, 700, 'pending', 'https://pay.example/4', {}, TRUE)",
            // Pending 4 days: Bram; a day old, paid, reminded already: nothing.
            at(-4 * d),
            at(-d),
            at(-10 * d),
            at(-10 * d),
        ),
        format!(
            "INSERT INTO imported_leads (id, name, email, status, last_contacted_at,
                 follow_up_day3_sent, follow_up_day7_sent) VALUES
             (1, 'Lena', 'lena@example.com', 'contacted', {}, FALSE, FALSE),
             (2, 'Milo', 'milo@example.com', 'contacted', {}, TRUE, FALSE),
             (3, 'Nia', 'nia@example.com', 'contacted', {}, TRUE, TRUE),
             (4, 'Otto', 'otto@example.com', 'converted', {}, FALSE, FALSE),
             (5, 'Pia', 'pia@example.com', 'contacted', {}, FALSE, FALSE)",
            // 4 days: Lena's day 3; 8 days with day 3 sent: Milo's day 7; the others nothing.
            at(-4 * d),
            at(-8 * d),
            at(-8 * d),
            at(-8 * d),
            at(-d),
        ),
    ])
    .await;

    s.run_all(&APSCHEDULER_JOBS).await;

    let (emails, bodies) = s.emails();
    assert_eq!(
        emails
            .iter()
            .map(|(to, subject)| (to.as_str(), subject.as_str()))
            .collect::<Vec<_>>(),
        [
            ("asha@example.com", "Assignment Due Soon: Essay"),
            ("asha@example.com", "Starts Tomorrow: Rust Basics"),
            ("bram@example.com", "Payment Reminder"),
            ("bram@example.com", "Starts Tomorrow: Rust Basics"),
            ("cyd@example.com", "Recording Available: Past Session"),
            ("cyd@example.com", "Starting Soon: Async Deep Dive"),
            ("lena@example.com", "Still interested?"),
            ("milo@example.com", "Last chance: 10% off your first course"),
        ],
        "{emails:?}"
    );
    assert_bodies(
        &bodies,
        &[
            &["Hi Asha Rao", "your assignment \"Essay\" is due soon"],
            &["Hi Asha Rao", "Join: https://meet.example/10"],
            &["Hi Bram Vos", "Amount: 5000", "https://pay.example/1"],
            &["Hi Bram Vos", "Join: https://meet.example/10"],
            &["Hi Cyd Lim", "Watch it: https://rec.example/13"],
            &["Hi Cyd Lim", "Join now: https://meet.example/11"],
            &["Hi Lena", "Academy"],
            &["Hi Milo", "final reminder"],
        ],
    );
    let texts = s.texts().await;
    assert_eq!(
        texts
            .iter()
            .map(|t| (t.to.as_str(), t.body.split(',').next().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("whatsapp:+15551000001", "Hi Asha Rao"),
            ("whatsapp:+15551000002", "Hi Bram Vos"),
            ("whatsapp:+15551000002", "Hi Bram Vos"),
            ("whatsapp:+15551000003", "Hi Cyd Lim"),
        ],
        "{texts:?}"
    );
    let bodies: BTreeSet<&str> = texts.iter().map(|t| t.body.as_str()).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("\"Rust Basics\" starts tomorrow") && b.starts_with("Hi Asha Rao"))
            && bodies.iter().any(|b| b.contains("pending payment of 5000"))
            && bodies
                .iter()
                .any(|b| b.contains("\"Async Deep Dive\" starts in 15 minutes")),
        "{texts:?}"
    );

    // The app's flags: set by `on_sent` for what went out, left as they were elsewhere.
    for (sql, ids) in [
        (
            "SELECT id FROM sessions WHERE reminder_24h_sent ORDER BY id",
            &[10][..],
        ),
        (
            "SELECT id FROM sessions WHERE reminder_15min_sent ORDER BY id",
            &[11],
        ),
        (
            "SELECT id FROM recordings WHERE notification_sent ORDER BY id",
            &[1, 3],
        ),
        (
            "SELECT id FROM assignments WHERE reminder_sent ORDER BY id",
            &[1, 3],
        ),
        (
            "SELECT id FROM payments WHERE reminder_sent ORDER BY id",
            &[1, 4],
        ),
        (
            "SELECT id FROM imported_leads WHERE follow_up_day3_sent ORDER BY id",
            &[1, 2, 3],
        ),
        (
            "SELECT id FROM imported_leads WHERE follow_up_day7_sent ORDER BY id",
            &[2, 3],
        ),
    ] {
        assert_eq!(s.ids(sql).await, ids, "{sql}");
    }
    let notes = s
        .rows(
            "SELECT user_id, type, title, message, link FROM notifications
              ORDER BY user_id, type",
        )
        .await;
    let notes: Vec<[String; 5]> = notes
        .iter()
        .map(|n| {
            [
                n["user_id"].to_string(),
                n["type"].as_str().unwrap().into(),
                n["title"].as_str().unwrap().into(),
                n["message"].as_str().unwrap().into(),
                n["link"].as_str().unwrap().into(),
            ]
        })
        .collect();
    let note = |u: &str, ty: &str, title: &str, msg: &str, link: &str| {
        [u, ty, title, msg, link].map(String::from)
    };
    assert_eq!(
        notes,
        [
            note(
                "1",
                "session_reminder",
                "Session tomorrow",
                "Rust Basics",
                "https://meet.example/10"
            ),
            note(
                "2",
                "session_reminder",
                "Session tomorrow",
                "Rust Basics",
                "https://meet.example/10"
            ),
            note(
                "3",
                "recording_available",
                "Recording available",
                "Past Session",
                "https://rec.example/13"
            ),
            note(
                "3",
                "session_starting",
                "Session starting soon",
                "Async Deep Dive",
                "https://meet.example/11"
            ),
        ]
    );

    s.run_again_changes_nothing(
        &APSCHEDULER_JOBS,
        &[
            "sessions",
            "recordings",
            "assignments",
            "payments",
            "imported_leads",
            "notifications",
        ],
    )
    .await;
    s.app.close().await;
}

#[tokio::test]
async fn examples_004_apscheduler_runs_end_to_end() {
    let p = Project::sqlite();
    let app = sqlite_app(&p);
    apscheduler_story(p, app).await;
}

#[tokio::test]
async fn examples_004_apscheduler_runs_end_to_end_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let app = postgres_database().await.unwrap();
    apscheduler_story(p, app).await;
}

#[test]
fn form_values_are_decoded() {
    assert_eq!(
        form_decode("whatsapp%3A%2B15550000001"),
        "whatsapp:+15550000001"
    );
    assert_eq!(form_decode("Hi+Ava%2C+%22x%22"), "Hi Ava, \"x\"");
}
