//! Opt-outs with real parts: `tickler contacts` as a person types it, then an
//! `invoice_reminders` run through a real SMTP server and a Twilio mock. A blocked address
//! gets nothing, its message is recorded `suppressed` and never sent, on SQLite and PostgreSQL.

use chrono::Utc;
use serde_json::json;
use tickler::store::Store;
use wiremock::MockServer;

use crate::billing::{channels, customer, invoice, meta, run, texted, twilio_ok};
use crate::helpers::smtp::SmtpServer;
use crate::helpers::{Project, stderr, stdout, wait_for};

/// `recipient status error` of every row of `notification_log`, by recipient.
pub(crate) async fn log(store: &Store) -> Vec<(String, String, String)> {
    let rows = store
        .query_json(
            "SELECT recipient, status, COALESCE(error, '') AS error FROM notification_log \
             ORDER BY recipient, status",
            Utc::now(),
            100,
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("recipient"), s("status"), s("error"))
        })
        .collect()
}

async fn blocked_story(p: Project) {
    let smtp = SmtpServer::start(p.path());
    let twilio = MockServer::start().await;
    twilio_ok(&twilio).await;
    let jobs = "[[job]]\nname = \"reminders\"\nkind = \"invoice_reminders\"\n\
                schedule = \"0 9 * * *\"\noffsets = [\"7d\", \"1d\"]\nchannels = [\"email\", \"sms\"]\n";
    p.write_config("", &(channels(&p, smtp.port, &twilio.uri()) + jobs));
    let store = p.store().await;
    let thandi = customer("Thandi", Some("Thandi@Example.com"), Some("+27820000001"));
    let sipho = customer("Sipho", Some("sipho@example.com"), Some("+27820000002"));
    let mut invoices = vec![invoice(&thandi, "A-1", 7), invoice(&sipho, "B-1", 1)];
    store
        .import(&[thandi, sipho], &[], &mut invoices, "INV-")
        .await
        .unwrap();

    // Thandi asked for no email (typed as her CRM spells it) and Sipho for no SMS.
    let out = p.cli(&[
        "contacts",
        "block",
        "email",
        " THANDI@example.com ",
        "--reason",
        "asked to stop",
    ]);
    assert_eq!(
        stdout(&out),
        "blocked `thandi@example.com` on `email`\n",
        "{}",
        stderr(&out)
    );
    let out = p.cli(&["contacts", "block", "sms", "+27 82 000 0002"]);
    assert_eq!(
        stdout(&out),
        "blocked `+27820000002` on `sms`\n",
        "{}",
        stderr(&out)
    );
    let out = p.cli(&["contacts", "block", "sms", "+27820000002"]);
    assert!(
        stdout(&out).starts_with("`+27820000002` is already blocked on `sms` (since "),
        "{}",
        stdout(&out)
    );

    let r = run(&p, "reminders").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(2)),
        "{r:?}"
    );
    assert_eq!(meta(&r)["suppressed_blocked"], json!(2));
    let mails = wait_for("1 email", std::time::Duration::from_secs(10), || async {
        Some(smtp.messages()).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "sipho@example.com");
    assert_eq!(texted(&twilio).await, ["+27820000001"]);
    let today = Utc::now().format("%Y-%m-%d");
    assert_eq!(
        log(&store).await,
        [
            ("+27820000001".into(), "sent".into(), String::new()),
            (
                "+27820000002".into(),
                "suppressed".into(),
                format!("blocked on `sms` since {today}: no reason given (source `cli`); not sent")
            ),
            (
                "Thandi@Example.com".into(),
                "suppressed".into(),
                format!("blocked on `email` since {today}: asked to stop (source `cli`); not sent")
            ),
            ("sipho@example.com".into(), "sent".into(), String::new()),
        ]
    );

    // Unblocking is not retroactive: a suppressed message stays suppressed (final, like
    // `skipped`), so a re-run sends nothing more.
    let out = p.cli(&["contacts", "unblock", "email", "thandi@example.com"]);
    assert_eq!(
        stdout(&out),
        "unblocked `thandi@example.com` on `email`\n",
        "{}",
        stderr(&out)
    );
    let r = run(&p, "reminders").await;
    assert_eq!(r.records_processed, Some(0), "{r:?}");
    assert_eq!(meta(&r)["already_sent"], json!(4));
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(texted(&twilio).await.len(), 1);

    let out = p.cli(&["contacts", "unblock", "email", "thandi@example.com"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: `thandi@example.com` is not blocked on `email`; `tickler contacts list` shows \
         the blocks\n"
    );
    let out = p.cli(&["contacts", "list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["address"], json!("+27820000002"));
    assert_eq!(listed[0]["source"], json!("cli"));
    store.close().await;
}

#[tokio::test]
async fn a_blocked_address_gets_nothing_sqlite() {
    blocked_story(Project::sqlite()).await;
}

#[tokio::test]
async fn a_blocked_address_gets_nothing_postgres() {
    if let Some(p) = Project::postgres().await {
        blocked_story(p).await;
    }
}

#[tokio::test]
async fn contacts_refuse_bad_input_and_a_bad_file_imports_nothing() {
    let p = Project::sqlite();
    p.write_config("", "");
    let refused = [
        (
            vec!["block", "fax", "ann@example.com"],
            "error: unknown channel `fax`; write `email`, `sms`, `whatsapp` or `*` (every channel)\n",
        ),
        (
            vec!["block", "email", "ann"],
            "error: `ann` is not an email address\n",
        ),
        (
            vec!["block", "sms", "0821234567"],
            "error: `0821234567` is not a phone number in E.164 form, e.g. `+15551234567`\n",
        ),
    ];
    for (args, want) in refused {
        let mut all = vec!["contacts"];
        all.extend(args);
        let out = p.cli(&all);
        assert!(!out.status.success(), "{all:?}");
        assert_eq!(stderr(&out), want, "{all:?}");
    }
    std::fs::write(
        p.path().join("blocks.csv"),
        "channel,address,reason\n\
         email,ann@example.com,unsubscribed\n\
         fax,+27821234567,\n\
         sms,0821234567,\n\
         email,ANN@example.com,twice\n\
         *,bob@,\n",
    )
    .unwrap();
    let out = p.cli(&["contacts", "import", "blocks.csv"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: `blocks.csv` has 4 bad row(s); nothing was imported. Fix them and import the file again:\n\
         \x20 blocks.csv line 3, column `channel`: unknown channel `fax`; write `email`, `sms`, `whatsapp` or `*` (every channel)\n\
         \x20 blocks.csv line 4, column `address`: `0821234567` is not a phone number in E.164 form, e.g. `+15551234567`\n\
         \x20 blocks.csv line 5, column `address`: `ann@example.com` on `email` is also on line 2\n\
         \x20 blocks.csv line 6, column `address`: `bob@` is not an email address\n"
    );
    let out = p.cli(&["contacts", "list"]);
    assert_eq!(
        stdout(&out),
        "CHANNEL   ADDRESS                          SOURCE  SINCE      REASON\n"
    );

    std::fs::write(
        p.path().join("blocks.csv"),
        "channel,address,reason\nemail,Ann@Example.com,unsubscribed\n*,+27821234567,STOP\n",
    )
    .unwrap();
    let out = p.cli(&["contacts", "import", "blocks.csv"]);
    assert_eq!(
        stdout(&out),
        "blocked 2 address(es) from `blocks.csv` (0 blocked already)\n",
        "{}",
        stderr(&out)
    );
    let out = p.cli(&["contacts", "list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let pairs: Vec<(&str, &str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["channel"].as_str().unwrap(),
                b["address"].as_str().unwrap(),
                b["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("*", "+27821234567", "import"),
            ("email", "ann@example.com", "import")
        ]
    );
}

/// A `notify` job on the application's rows goes through the same check: the blocked row's
/// message is `suppressed`, not sent, and its `on_sent` statements do not run (the app's flag
/// stays unset); the other row's message goes out and is flagged; a second run sends nothing.
#[tokio::test]
async fn a_notify_job_suppresses_a_blocked_row_and_keeps_its_flag_unset() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    std::fs::create_dir_all(p.path().join("templates")).unwrap();
    std::fs::write(
        p.path().join("templates/session.j2"),
        "{% block subject %}Your session{% endblock %}{% block text %}Hi {{ name }}{% endblock %}",
    )
    .unwrap();
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nfrom = \"Sessions <s@acme.test>\"\n\n\
             [[job]]\nname = \"remind\"\nkind = \"notify\"\nschedule = \"0 * * * *\"\n\
             query = \"SELECT id, name, email FROM sessions ORDER BY id\"\n\
             template = \"session\"\ndedup = \"session-{{{{ id }}}}\"\n\
             on_sent = [\"UPDATE sessions SET reminded = 1 WHERE id = :id\"]\n",
            smtp.port
        ),
    );
    let store = p.store().await;
    store
        .execute(
            &[
                "CREATE TABLE sessions (id INTEGER PRIMARY KEY, name TEXT, email TEXT, \
                 reminded INTEGER NOT NULL DEFAULT 0)"
                    .to_string(),
                "INSERT INTO sessions (id, name, email) VALUES (1, 'Ann', 'ann@example.com'), \
                 (2, 'Ben', 'ben@example.com')"
                    .to_string(),
            ],
            true,
        )
        .await
        .unwrap();
    let out = p.cli(&["contacts", "block", "email", "ben@example.com"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let r = run(&p, "remind").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(1)),
        "{r:?}"
    );
    assert_eq!(meta(&r)["on_sent_rows"], json!(1), "{r:?}");
    let mails = wait_for(
        "Ann's email",
        std::time::Duration::from_secs(10),
        || async { Some(smtp.messages()).filter(|m| !m.is_empty()) },
    )
    .await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "ann@example.com");
    let statuses: Vec<(String, String)> = log(&store)
        .await
        .into_iter()
        .map(|(to, status, _)| (to, status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("ann@example.com".to_string(), "sent".to_string()),
            ("ben@example.com".to_string(), "suppressed".to_string()),
        ]
    );
    let flags = store
        .query_json(
            "SELECT id, reminded FROM sessions ORDER BY id",
            Utc::now(),
            10,
        )
        .await
        .unwrap();
    let flags: Vec<i64> = flags
        .iter()
        .map(|r| r["reminded"].as_i64().unwrap())
        .collect();
    assert_eq!(flags, [1, 0], "the blocked row is not flagged");

    let again = run(&p, "remind").await;
    assert_eq!(again.records_processed, Some(0), "{again:?}");
    assert_eq!(meta(&again)["on_sent_rows"], json!(0));
    assert_eq!(smtp.messages().len(), 1);
    store.close().await;
}
