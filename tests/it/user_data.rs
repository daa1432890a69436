//! Work on the user's own tables (issue 14): what each seed's application keeps in its database
//! (OTP codes, notifications, sessions), cleaned up and read by tickler as the seed's own code
//! did, on real SQLite files and a real PostgreSQL.

use std::collections::BTreeSet;

use tickler::store::Store;

use crate::billing::run;
use crate::helpers::Project;

/// The run's item errors, one per rule that could not run.
fn item_errors(r: &tickler::store::RunRow) -> Vec<String> {
    let meta = r.metadata.clone().unwrap_or_default();
    serde_json::from_value(meta["item_errors"].clone()).unwrap_or_default()
}

/// The ids left in `table`.
async fn ids(store: &Store, table: &str) -> BTreeSet<i64> {
    let rows = store
        .query_json(&format!("SELECT id FROM {table}"), chrono::Utc::now(), 1000)
        .await
        .unwrap();
    rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

const RULES: &str = "[[job]]\nname = \"cleanup\"\nkind = \"cleanup\"\nschedule = \"0 2 * * 1\"\n\n\
     [[job.rule]]\ntable = \"otp_codes\"\ncolumn = \"expires_at\"\nolder_than = \"0s\"\n\n\
     [[job.rule]]\ntable = \"notifications\"\nolder_than = \"30d\"\n\n";

/// SQLite keeps times as text in two forms (its own `datetime()` writes `YYYY-MM-DD HH:MM:SS`,
/// most libraries write RFC 3339 `…T…Z`) or as unix seconds. Compared as text, `…T…` sorts
/// after `… …` of the same day, so an OTP code valid for another hour was deleted under
/// `older_than = "0s"` and a notification 29 days 23 hours old under `"30d"`. Every form is
/// now read as an instant, and a column holding something else is refused, naming the value.
#[tokio::test]
async fn cleanup_compares_instants_whatever_form_sqlite_keeps_them_in() {
    let p = Project::sqlite();
    p.write_config(
        "",
        &format!(
            "{RULES}[[job.rule]]\ntable = \"junk\"\nolder_than = \"1d\"\n\n\
             [[job.rule]]\ntable = \"missing\"\nolder_than = \"1d\"\n"
        ),
    );
    let store = p.store().await;
    let setup = [
        "CREATE TABLE otp_codes (id INTEGER PRIMARY KEY, expires_at TEXT)",
        "INSERT INTO otp_codes VALUES
            (1, datetime('now', '+1 hour')),
            (2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+1 hour')),
            (3, datetime('now', '-1 hour')),
            (4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 minute')),
            (5, unixepoch('now') + 3600),
            (6, unixepoch('now') - 60),
            (7, strftime('%Y-%m-%dT%H:%M:%S+02:00', 'now', '+2 hours', '+30 minutes')),
            (8, NULL)",
        "CREATE TABLE notifications (id INTEGER PRIMARY KEY, created_at TEXT)",
        "INSERT INTO notifications VALUES
            (1, datetime('now', '-29 days', '-23 hours')),
            (2, datetime('now', '-30 days', '-1 hour')),
            (3, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-29 days', '-23 hours')),
            (4, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-30 days', '-1 hour'))",
        "CREATE TABLE junk (id INTEGER PRIMARY KEY, created_at TEXT)",
        "INSERT INTO junk VALUES (1, 'tomorrow'), (2, datetime('now', '-100 days'))",
    ]
    .map(String::from);
    store.execute(&setup, true).await.unwrap();

    let r = run(&p, "cleanup").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(5)),
        "{r:?}"
    );
    assert_eq!(
        item_errors(&r),
        [
            "junk.created_at older than 1day: `junk.created_at` holds `tomorrow`, which is not \
             an instant: `cleanup` compares the column with its cut-off as a time; keep times \
             there as text (`YYYY-MM-DD HH:MM:SS` or RFC 3339) or unix seconds, or name another \
             `column`",
            "missing.created_at older than 1day: database error while deleting old rows: error \
             returned from database: (code: 1) no such table: missing"
        ],
    );
    // Still valid (an hour ahead in each form, +02:00 included), or without an expiry: kept.
    assert_eq!(
        ids(&store, "otp_codes").await,
        BTreeSet::from([1, 2, 5, 7, 8])
    );
    assert_eq!(ids(&store, "notifications").await, BTreeSet::from([1, 3]));
    assert_eq!(
        ids(&store, "junk").await,
        BTreeSet::from([1, 2]),
        "a column refused is left whole"
    );
    store.close().await;
}

/// On PostgreSQL the column's type says how to read it: `timestamptz`; `timestamp` (as UTC) and
/// `date` (midnight UTC); unix seconds in a number column. Text is refused with the types that
/// are read.
#[tokio::test]
async fn cleanup_compares_instants_by_column_type_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    p.write_config(
        "",
        &format!(
            "{RULES}[[job.rule]]\ntable = \"visits\"\ncolumn = \"day\"\nolder_than = \"1d\"\n\n\
             [[job.rule]]\ntable = \"events\"\ncolumn = \"at\"\nolder_than = \"1h\"\n\n\
             [[job.rule]]\ntable = \"texts\"\nolder_than = \"1d\"\n\n\
             [[job.rule]]\ntable = \"otp_codes\"\ncolumn = \"nope\"\nolder_than = \"1d\"\n"
        ),
    );
    let store = p.store().await;
    let setup = [
        "CREATE TABLE otp_codes (id bigint PRIMARY KEY, expires_at timestamptz)",
        "INSERT INTO otp_codes VALUES (1, now() + interval '1 hour'),
            (3, now() - interval '1 minute'), (8, NULL)",
        "CREATE TABLE notifications (id bigint PRIMARY KEY, created_at timestamp)",
        "INSERT INTO notifications VALUES
            (1, (now() AT TIME ZONE 'UTC') - interval '29 days 23 hours'),
            (2, (now() AT TIME ZONE 'UTC') - interval '30 days 1 hour')",
        "CREATE TABLE visits (id bigint PRIMARY KEY, day date)",
        "INSERT INTO visits VALUES (1, (now() AT TIME ZONE 'UTC')::date),
            (2, (now() AT TIME ZONE 'UTC')::date - 3)",
        "CREATE TABLE events (id bigint PRIMARY KEY, at bigint)",
        "INSERT INTO events VALUES (1, extract(epoch FROM now())::bigint - 60),
            (2, extract(epoch FROM now())::bigint - 7200)",
        "CREATE TABLE texts (id bigint PRIMARY KEY, created_at text)",
        "INSERT INTO texts VALUES (1, '2020-01-01T00:00:00Z')",
    ]
    .map(String::from);
    store.execute(&setup, true).await.unwrap();

    let r = run(&p, "cleanup").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("partial", Some(4)),
        "{r:?}"
    );
    assert_eq!(
        item_errors(&r),
        [
            "texts.created_at older than 1day: `texts.created_at` is a `text` column: `cleanup` \
             reads instants from `timestamp with time zone`, `timestamp` (as UTC), `date` \
             (midnight UTC) or unix seconds (an integer or numeric column); name another \
             `column`",
            "otp_codes.nope older than 1day: there is no column `otp_codes.nope`: check `table` \
             and `column` of the rule"
        ],
    );
    assert_eq!(ids(&store, "otp_codes").await, BTreeSet::from([1, 8]));
    assert_eq!(ids(&store, "notifications").await, BTreeSet::from([1]));
    assert_eq!(ids(&store, "visits").await, BTreeSet::from([1]));
    assert_eq!(ids(&store, "events").await, BTreeSet::from([1]));
    assert_eq!(ids(&store, "texts").await, BTreeSet::from([1]));
    store.close().await;
}

/// Seed 003's "cancel bookings without a deposit after 24 h": a rule that updates instead of
/// deleting, once per row (its `keep` leaves alone what it changed), on both databases.
async fn cancel_story(p: Project, created: [&str; 3]) {
    p.write_config(
        "",
        "[[job]]\nname = \"cancel\"\nkind = \"cleanup\"\nschedule = \"0 * * * *\"\n\n\
         [[job.rule]]\ntable = \"bookings\"\nolder_than = \"24h\"\nbatch_size = 1\n\
         keep = \"status <> 'pending' OR deposit_paid\"\n\
         action = { update = \"status = 'cancelled'\" }\n",
    );
    let store = p.store().await;
    let setup = [
        "CREATE TABLE bookings (id BIGINT PRIMARY KEY, status TEXT NOT NULL,
                                deposit_paid BOOLEAN NOT NULL, created_at TIMESTAMP)"
            .to_string(),
        format!(
            "INSERT INTO bookings VALUES (1, 'pending', FALSE, {}), (2, 'pending', TRUE, {}),
                (3, 'pending', FALSE, {}), (4, 'pending', FALSE, {})",
            created[0], created[0], created[0], created[1]
        ),
        format!(
            "INSERT INTO bookings VALUES (5, 'confirmed', FALSE, {})",
            created[2]
        ),
    ];
    store.execute(&setup, true).await.unwrap();
    let r = run(&p, "cancel").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(2)),
        "{r:?}"
    );
    let meta = r.metadata.clone().unwrap_or_default();
    assert_eq!(
        meta["updated"]["bookings.created_at older than 1day"], 2,
        "{meta}"
    );
    let cancelled = store
        .query_json(
            "SELECT id FROM bookings WHERE status = 'cancelled' ORDER BY id",
            chrono::Utc::now(),
            10,
        )
        .await
        .unwrap();
    let ids: Vec<i64> = cancelled
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [1, 3],
        "old, pending and unpaid: cancelled; nothing deleted"
    );
    assert_eq!(ids_of(&store).await, BTreeSet::from([1, 2, 3, 4, 5]));
    let again = run(&p, "cancel").await;
    assert_eq!(again.records_processed, Some(0), "changed once: {again:?}");
    store.close().await;
}

async fn ids_of(store: &Store) -> BTreeSet<i64> {
    ids(store, "bookings").await
}

#[tokio::test]
async fn cleanup_can_cancel_instead_of_deleting() {
    cancel_story(
        Project::sqlite(),
        [
            "datetime('now', '-2 days')",
            "datetime('now', '-1 hour')",
            "datetime('now', '-3 days')",
        ],
    )
    .await;
}

#[tokio::test]
async fn cleanup_can_cancel_instead_of_deleting_postgres() {
    if let Some(p) = Project::postgres().await {
        cancel_story(
            p,
            [
                "(now() AT TIME ZONE 'UTC') - interval '2 days'",
                "(now() AT TIME ZONE 'UTC') - interval '1 hour'",
                "(now() AT TIME ZONE 'UTC') - interval '3 days'",
            ],
        )
        .await;
    }
}

/// An update without `keep` would change the same rows at every run: `check` refuses it.
#[tokio::test]
async fn an_update_rule_without_keep_is_refused() {
    let p = Project::sqlite();
    std::fs::write(
        p.config_path(),
        "[[job]]\nname = \"cancel\"\nkind = \"cleanup\"\nschedule = \"0 * * * *\"\n\n\
         [[job.rule]]\ntable = \"bookings\"\nolder_than = \"24h\"\n\
         action = { update = \"status = 'cancelled'\" }\n",
    )
    .unwrap();
    let out = p.cli(&["check"]);
    assert!(!out.status.success());
    assert!(
        crate::helpers::stderr(&out).contains(
            "a rule with `action = { update = ... }` needs `keep`, a condition true of the rows \
             it already changed, e.g. `keep = \"status <> 'pending'\"`; else every run changes \
             them again"
        ),
        "{}",
        crate::helpers::stderr(&out)
    );
}

/// Seeds 003 and 004 keep sent-flags and in-app notification rows in their own tables:
/// `on_sent` writes them for each row whose message went out, binding the row's columns by
/// name, in one transaction per row. A row whose message did not go out (no address) gets
/// neither, and a second run sends and writes nothing, though the query does not filter on the
/// flag (seed 004's per-session flag with per-student messages): `on_sent` runs once per row,
/// recorded in `notification_log`, and a row whose `on_sent` failed gets it at the next run.
async fn on_sent_story(p: Project) {
    let postgres = p.database_url.starts_with("postgres");
    std::fs::create_dir_all(p.path().join("templates")).unwrap();
    std::fs::write(
        p.path().join("templates/session.j2"),
        "{% block subject %}{{ title }}{% endblock %}{% block text %}Hi {{ name }}{% endblock %}",
    )
    .unwrap();
    p.write_config(
        "",
        "[channels.email]\nfrom = \"Sessions <s@acme.test>\"\n\n\
         [[job]]\nname = \"remind\"\nkind = \"notify\"\nschedule = \"0 * * * *\"\n\
         query = \"SELECT s.id, s.user_id, u.name, u.email, 'Your session tomorrow' AS title \
                   FROM sessions s JOIN users u ON u.id = s.user_id \
                   ORDER BY s.id\"\n\
         template = \"session\"\ndedup = \"session-24h-{{ id }}\"\n\
         on_sent = [\"UPDATE sessions SET reminder_24h_sent = TRUE, reminded_at = :now WHERE id = :id\",\n\
                    \"INSERT INTO notifications (user_id, type, title) VALUES (:user_id, 'reminder', :title)\"]\n",
    );
    let store = p.store().await;
    let (serial, at) = if postgres {
        ("BIGSERIAL", "TIMESTAMPTZ")
    } else {
        ("INTEGER", "TEXT")
    };
    let setup = [
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT, email TEXT)".to_string(),
        format!(
            "CREATE TABLE sessions (id BIGINT PRIMARY KEY, user_id BIGINT,
                 reminder_24h_sent BOOLEAN NOT NULL DEFAULT FALSE, reminded_at {at})"
        ),
        format!(
            "CREATE TABLE notifications (id {serial} PRIMARY KEY, user_id BIGINT, type TEXT,
                 title TEXT)"
        ),
        "INSERT INTO users VALUES (1, 'Ann', 'ann@example.com'), (2, 'Ben', NULL)".to_string(),
        "INSERT INTO sessions (id, user_id) VALUES (10, 1), (11, 2), (12, 1)".to_string(),
    ];
    store.execute(&setup, true).await.unwrap();

    let r = run(&p, "remind").await;
    let meta = r.metadata.clone().unwrap_or_default();
    assert_eq!(meta["on_sent_rows"], 2, "{r:?}");
    let flagged = store
        .query_json(
            "SELECT id FROM sessions WHERE reminder_24h_sent AND reminded_at IS NOT NULL ORDER BY id",
            chrono::Utc::now(),
            10,
        )
        .await
        .unwrap();
    let flagged: Vec<i64> = flagged.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(flagged, [10, 12], "Ben has no email: not flagged");
    let notes = store
        .query_json(
            "SELECT user_id, type, title FROM notifications ORDER BY id",
            chrono::Utc::now(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().all(|n| n["user_id"] == 1
        && n["type"] == "reminder"
        && n["title"] == "Your session tomorrow"));

    let again = run(&p, "remind").await;
    let meta = again.metadata.clone().unwrap_or_default();
    assert_eq!(meta["on_sent_rows"], 0, "{again:?}");
    assert_eq!(
        store
            .query_json("SELECT id FROM notifications", chrono::Utc::now(), 10)
            .await
            .unwrap()
            .len(),
        2,
        "a second run writes nothing"
    );

    // A new session whose `on_sent` fails (its table is away): the message goes out, the run is
    // `partial`, and the next run, with the table back, writes the flag and the notification
    // (it used to give up on a row whose message went out in an earlier run); then no more.
    let notes = |store: &Store| {
        let store = store.clone();
        async move {
            let rows = store
                .query_json("SELECT id FROM notifications", chrono::Utc::now(), 10)
                .await
                .unwrap();
            rows.len()
        }
    };
    store
        .execute(
            &[
                "INSERT INTO sessions (id, user_id) VALUES (13, 1)".to_string(),
                "ALTER TABLE notifications RENAME TO notifications_away".to_string(),
            ],
            true,
        )
        .await
        .unwrap();
    let failed = run(&p, "remind").await;
    assert_eq!(failed.status, "partial", "{failed:?}");
    assert_eq!(
        failed.metadata.clone().unwrap_or_default()["on_sent_rows"],
        0
    );
    store
        .execute(
            &["ALTER TABLE notifications_away RENAME TO notifications".to_string()],
            true,
        )
        .await
        .unwrap();
    let retried = run(&p, "remind").await;
    assert_eq!(retried.status, "succeeded", "{retried:?}");
    assert_eq!(
        retried.metadata.clone().unwrap_or_default()["on_sent_rows"],
        1
    );
    assert_eq!(notes(&store).await, 3);
    let last = run(&p, "remind").await;
    assert_eq!(last.metadata.clone().unwrap_or_default()["on_sent_rows"], 0);
    assert_eq!(notes(&store).await, 3);
    store.close().await;
}

#[tokio::test]
async fn on_sent_keeps_the_applications_flags_and_notifications() {
    on_sent_story(Project::sqlite()).await;
}

#[tokio::test]
async fn on_sent_keeps_the_applications_flags_and_notifications_postgres() {
    if let Some(p) = Project::postgres().await {
        on_sent_story(p).await;
    }
}

/// `[databases.app]`: `sql`, `cleanup` and `notify` jobs work on the application's own
/// database (`database = "app"`), opened on first use; tickler's ledger stays in its own.
/// `tickler check` prepares their SQL there and refuses a typo, naming the job and the
/// database; a database it cannot reach is a warning (a reload must not fail for it), and a
/// job naming no `[databases]` entry is refused where it is written.
async fn named_database_story(p: Project, app_url: String) {
    let app =
        tickler::store::Store::connect_user(&tickler::secret::DatabaseUrl::new(app_url.clone()))
            .await
            .unwrap();
    app.execute(
        &[
            "CREATE TABLE otp_codes (id BIGINT PRIMARY KEY, expires_at BIGINT)".to_string(),
            "CREATE TABLE audit (id BIGINT PRIMARY KEY, note TEXT)".to_string(),
            "INSERT INTO otp_codes VALUES (1, 0), (2, 99999999999)".to_string(),
        ],
        true,
    )
    .await
    .unwrap();
    // The URL in a file, as a password-bearing URL would be (`url_file`).
    let url_file = p.path().join("app_url");
    let set_url = |url: &str| std::fs::write(&url_file, url).unwrap();
    set_url(&app_url);
    let jobs = |table: &str| {
        format!(
            "[databases.app]\nurl_file = \"{}\"\n\n\
             [[job]]\nname = \"audit\"\nkind = \"sql\"\nschedule = \"0 * * * *\"\ndatabase = \"app\"\n\
             statements = [\"INSERT INTO {table} VALUES (1, 'checked')\"]\n\n\
             [[job]]\nname = \"otp\"\nkind = \"cleanup\"\nschedule = \"0 * * * *\"\ndatabase = \"app\"\n\
             [[job.rule]]\ntable = \"otp_codes\"\ncolumn = \"expires_at\"\nolder_than = \"0s\"\n",
            url_file.display()
        )
    };
    p.write_config("", &jobs("audit"));
    let check = || p.cli(&["check"]);
    let out = check();
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));

    // The jobs run there, not on tickler's database.
    let r = run(&p, "audit").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(1)),
        "{r:?}"
    );
    let r = run(&p, "otp").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(1)),
        "{r:?}"
    );
    assert_eq!(ids(&app, "audit").await, BTreeSet::from([1]));
    assert_eq!(ids(&app, "otp_codes").await, BTreeSet::from([2]));
    let own = p.store().await;
    assert!(
        own.query_json("SELECT 1 FROM audit", chrono::Utc::now(), 1)
            .await
            .is_err()
    );
    own.close().await;

    // A typo is refused by `check`, naming the job, the statement and the database.
    p.write_config("", &jobs("audits"));
    let out = check();
    assert!(!out.status.success());
    let err = crate::helpers::stderr(&out);
    assert!(
        err.contains("job `audit`: statement 1 does not prepare on database `app`:")
            && err.contains("audits"),
        "{err}"
    );
    // A database that cannot be reached is a warning.
    p.write_config("", &jobs("audit"));
    set_url("postgres://nobody@127.0.0.1:1/none");
    let out = check();
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    assert!(
        crate::helpers::stderr(&out).starts_with(
            "warning: cannot reach database `app`: cannot open the database \
             `postgres://nobody@127.0.0.1:1/none`"
        ),
        "{}",
        crate::helpers::stderr(&out)
    );
    // A job naming no entry is refused where it is written.
    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"sql\"\nschedule = \"0 * * * *\"\ndatabase = \"ap\"\n\
         statements = [\"SELECT 1\"]\n",
    );
    let out = check();
    assert!(!out.status.success());
    assert!(crate::helpers::stderr(&out).starts_with("error: unknown database `ap` for job `a` ("));
    assert!(
        crate::helpers::stderr(&out).contains(
            "config.toml line 10, column 12): add \
             `[databases.ap]` with `url` (or `url_env` / `url_file`), or leave `database` out to \
             use tickler's own"
        ),
        "{}",
        crate::helpers::stderr(&out)
    );
    app.close().await;
}

#[tokio::test]
async fn jobs_work_on_a_named_application_database() {
    let p = Project::sqlite();
    let app = p.path().join("app.db");
    std::fs::File::create(&app).unwrap();
    let url = format!("sqlite://{}", app.display());
    named_database_story(p, url).await;
}

#[tokio::test]
async fn jobs_work_on_a_named_application_database_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let app = crate::helpers::postgres_database().await.unwrap();
    named_database_story(p, app).await;
}

/// A named SQLite database whose file is missing is not created (a mistyped path would
/// become an empty database): the run fails and says so.
#[tokio::test]
async fn a_missing_application_sqlite_file_is_not_created() {
    let p = Project::sqlite();
    let missing = p.path().join("nope.db");
    p.write_config(
        "",
        &format!(
            "[databases.app]\nurl = \"sqlite://{}\"\n\n\
             [[job]]\nname = \"audit\"\nkind = \"sql\"\nschedule = \"0 * * * *\"\n\
             database = \"app\"\nstatements = [\"SELECT 1\"]\n",
            missing.display()
        ),
    );
    let r = run(&p, "audit").await;
    assert_eq!(r.status, "failed", "{r:?}");
    assert_eq!(
        r.error_message.as_deref(),
        Some(
            format!(
                "database `app`: the SQLite file `{}` does not exist; tickler does not create \
                 the application's database: check `[databases.app]`",
                missing.display()
            )
            .as_str()
        )
    );
    assert!(!missing.exists());
}

/// A `notify` job of `now_story`: the sessions of `app` matching `condition`, one email each.
fn now_job(name: &str, condition: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nkind = \"notify\"\nschedule = \"0 * * * *\"\n\
         database = \"app\"\n\
         query = \"SELECT s.id, s.email, 'Soon' AS title, 'Ann' AS name FROM sessions s \
                   WHERE {condition}\"\n\
         template = \"session\"\ndedup = \"{name}-{{{{ id }}}}\"\n\n"
    )
}

/// On SQLite `:now` is the text `YYYY-MM-DD HH:MM:SS` and text compares by its characters:
/// a column holding RFC 3339 (`…T…Z`) or unix seconds, compared bare with `:now`, would pick
/// rows by text order (a past session inside "the next 24 hours", a reminder a day early or
/// never). `check` refuses such a query naming the job, the database, the column, the value
/// and the comparison to write, and a run fails before sending anything. The comparisons it
/// suggests work; a column in SQLite's own forms, and `:now` compared with no column, pass.
#[tokio::test]
async fn notify_refuses_now_compared_with_another_form_of_instant_sqlite() {
    let p = Project::sqlite();
    let app_path = p.path().join("app.db");
    std::fs::File::create(&app_path).unwrap();
    let app_url = format!("sqlite://{}", app_path.display());
    let app = Store::connect_user(&tickler::secret::DatabaseUrl::new(app_url.clone()))
        .await
        .unwrap();
    // Sessions in an hour (the one to remind), an hour ago, in two days, and one in 2020
    // (the newest row: the value the refusals name), each time in four forms.
    let at = |f: &str| {
        ["'+1 hour'", "'-1 hour'", "'+2 days'"]
            .map(|d| f.replace("{}", &format!("'now', {d}")))
            .to_vec()
    };
    let (rfc, unix, dt, day) = (
        at("strftime('%Y-%m-%dT%H:%M:%SZ', {})"),
        at("unixepoch({})"),
        at("datetime({})"),
        at("date({})"),
    );
    let rows: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "({}, 's{}@example.com', {}, {}, {}, {})",
                i + 1,
                i + 1,
                rfc[i],
                unix[i],
                dt[i],
                day[i]
            )
        })
        .collect();
    app.execute(
        &[
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY, email TEXT, at_rfc TEXT,
                 at_unix INTEGER, at_dt TEXT, day TEXT)"
                .to_string(),
            format!("INSERT INTO sessions VALUES {}", rows.join(", ")),
            "INSERT INTO sessions VALUES (4, 's4@example.com', '2020-01-01T10:00:00Z',
                 1577872800, '2020-01-01 10:00:00', '2020-01-01')"
                .to_string(),
        ],
        true,
    )
    .await
    .unwrap();
    std::fs::create_dir_all(p.path().join("templates")).unwrap();
    std::fs::write(
        p.path().join("templates/session.j2"),
        "{% block subject %}{{ title }}{% endblock %}{% block text %}Hi {{ name }}{% endblock %}",
    )
    .unwrap();
    let jobs = [
        ("rfc", "s.at_rfc BETWEEN :now AND datetime(:now, '+1 day')"),
        (
            "unix",
            "datetime(:now, '+1 day') > at_unix AND at_unix > :now",
        ),
        (
            "rfc_julianday",
            "julianday(s.at_rfc) BETWEEN julianday(:now) AND julianday(:now, '+1 day')",
        ),
        (
            "unix_epoch",
            "unixepoch(:now, '+1 day') > at_unix AND at_unix > unixepoch(:now)",
        ),
        (
            "dt_bare",
            "s.at_dt BETWEEN :now AND datetime(:now, '+1 day')",
        ),
        // A date column compares with `:now`'s datetime as its midnight: no refusal.
        (
            "day_bare",
            "s.day = date(:now, '+2 days') AND s.day >= datetime(:now, '+1 day')",
        ),
        (
            "literal",
            ":now > '2000-01-01' AND s.at_rfc LIKE '%Z' AND s.id = 1",
        ),
    ];
    let body: String = jobs.iter().map(|(n, c)| now_job(n, c)).collect();
    p.write_config(
        "",
        &format!(
            "[channels.email]\nfrom = \"Sessions <s@acme.test>\"\n\n\
             [databases.app]\nurl = \"{app_url}\"\n\n{body}"
        ),
    );
    let refused = [
        (
            "rfc",
            "job `rfc`: `query` on database `app`: `s.at_rfc BETWEEN :now AND datetime(:now, \
             '+1 day')` compares `sessions.at_rfc` with `:now`, the text `YYYY-MM-DD HH:MM:SS` \
             (UTC), and `sessions.at_rfc` holds `2020-01-01T10:00:00Z`: as text it sorts by its \
             characters, not by time, so the query would pick the wrong rows; write \
             `julianday(s.at_rfc) BETWEEN julianday(:now) AND julianday(:now, '+1 day')`, or \
             keep `YYYY-MM-DD HH:MM:SS` (UTC) in the column",
        ),
        (
            "unix",
            "job `unix`: `query` on database `app`: `datetime(:now, '+1 day') > at_unix` \
             compares `sessions.at_unix` with `:now`, the text `YYYY-MM-DD HH:MM:SS` (UTC), and \
             `sessions.at_unix` holds `1577872800` (a number, integer): SQLite sorts every \
             number before any text, so the query would pick the wrong rows; if it holds unix \
             seconds, write `unixepoch(:now, '+1 day') > at_unix`, or keep `YYYY-MM-DD \
             HH:MM:SS` (UTC) in the column",
        ),
    ];
    let out = p.cli(&["check"]);
    assert!(!out.status.success());
    let err = crate::helpers::stderr(&out);
    let lines: Vec<&str> = err.lines().skip(1).map(str::trim).collect();
    assert_eq!(lines, refused.map(|(_, m)| m), "{err}");

    // A run fails with the same words before it sends anything.
    for (job, message) in refused {
        let r = run(&p, job).await;
        assert_eq!(
            (r.status.as_str(), r.error_message.as_deref()),
            ("failed", Some(message))
        );
    }
    let own = p.store().await;
    let sent = || async {
        own.query_json(
            "SELECT dedup_key FROM notification_log ORDER BY dedup_key",
            chrono::Utc::now(),
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r["dedup_key"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
    };
    assert!(sent().await.is_empty());
    assert!(!p.path().join("outbox").exists(), "no email written");

    // The comparisons it suggests, SQLite's own forms compared bare, and `:now` compared
    // with a literal: the session in an hour (the one in two days for the date), nothing else.
    for (job, _) in &jobs[2..] {
        let r = run(&p, job).await;
        assert_eq!(
            (r.status.as_str(), r.records_processed),
            ("succeeded", Some(1)),
            "{job}: {r:?}"
        );
    }
    assert_eq!(
        sent().await,
        [
            "day_bare-3:email",
            "dt_bare-1:email",
            "literal-1:email",
            "rfc_julianday-1:email",
            "unix_epoch-1:email"
        ]
    );
    own.close().await;
    app.close().await;
}

/// On PostgreSQL `:now` is a `timestamptz` and comparisons are typed: a `timestamptz` column
/// compared bare is right, and a `text` column cannot pick wrong rows, since PostgreSQL has no
/// `text <= timestamptz`. `check` prepares the query with `:now` typed as the run binds it, so
/// it refuses such a query at once (plain preparing would read `$1` as text and pass), and a
/// run fails with the same words, sending nothing.
#[tokio::test]
async fn notify_now_is_typed_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    let app_url = crate::helpers::postgres_database().await.unwrap();
    let app = Store::connect_user(&tickler::secret::DatabaseUrl::new(app_url.clone()))
        .await
        .unwrap();
    app.execute(
        &[
            "CREATE TABLE sessions (id bigint PRIMARY KEY, email text, at_text text,
                 at_tz timestamptz)"
                .to_string(),
            "INSERT INTO sessions VALUES
                (1, 's1@example.com', to_char(now() + interval '1 hour',
                    'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), now() + interval '1 hour'),
                (2, 's2@example.com', '2020-01-01T10:00:00Z', now() - interval '1 hour')"
                .to_string(),
        ],
        true,
    )
    .await
    .unwrap();
    std::fs::create_dir_all(p.path().join("templates")).unwrap();
    std::fs::write(
        p.path().join("templates/session.j2"),
        "{% block subject %}{{ title }}{% endblock %}{% block text %}Hi {{ name }}{% endblock %}",
    )
    .unwrap();
    let url_file = p.path().join("app_url");
    std::fs::write(&url_file, &app_url).unwrap();
    p.write_config(
        "",
        &format!(
            "[channels.email]\nfrom = \"Sessions <s@acme.test>\"\n\n\
             [databases.app]\nurl_file = \"{}\"\n\n{}{}",
            url_file.display(),
            now_job("text", "s.at_text <= :now"),
            now_job("tz", "s.at_tz <= :now"),
        ),
    );
    let refused = "job `text`: `query` on database `app`: PostgreSQL refuses the comparison \
                   with `:now`, a `timestamptz`: error returned from database: operator does \
                   not exist: text <= timestamp with time zone; compare it with a \
                   `timestamptz`, `timestamp` or `date` column, or cast the column, e.g. \
                   `starts_at::timestamptz`";
    let out = p.cli(&["check"]);
    assert!(!out.status.success());
    let err = crate::helpers::stderr(&out);
    let lines: Vec<&str> = err.lines().skip(1).map(str::trim).collect();
    assert_eq!(lines, [refused], "{err}");

    let r = run(&p, "text").await;
    assert_eq!(
        (r.status.as_str(), r.error_message.as_deref()),
        ("failed", Some(refused))
    );
    assert!(!p.path().join("outbox").exists(), "no email written");
    let r = run(&p, "tz").await;
    assert_eq!(
        (r.status.as_str(), r.records_processed),
        ("succeeded", Some(1)),
        "{r:?}"
    );
    app.close().await;
}
