//! Alerts on real parts: `on_failure` emails through a real SMTP server (aiosmtpd) and webhook
//! POSTs to a local mock, de-duplicated through `notification_log` across restarts;
//! `expect_success_within` checked by the daemon after a restart; `ping_url` pings in order; a
//! refused send tried again; an alert that waits out a PostgreSQL outage.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::smtp::SmtpServer;
use tickler::store::Store;

use crate::helpers::{
    PrivateCluster, Project, TestDaemon, runs, signal, stderr, stdout, utc, wait_for, wait_settled,
};

fn email_channel(smtp: &SmtpServer) -> String {
    format!(
        "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"tickler <tickler@acme.test>\"\n",
        smtp.port
    )
}

async fn webhook_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

async fn posted(server: &MockServer, path_prefix: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path().starts_with(path_prefix))
        .collect()
}

fn json(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

/// A job failing every minute: one alert, a reminder once `repeat_after` has passed (in a
/// later daemon: the decision comes from the ledger), one "recovered" message. Emails and
/// webhooks alike; nothing else is sent.
async fn failure_story(p: Project) {
    let smtp = SmtpServer::start(p.path());
    let hooks = webhook_server().await;
    let flag = p.path().join("failing");
    std::fs::write(&flag, "").unwrap();
    p.write_config(
        "",
        &format!(
            "{}\n[[job]]\nname = \"flaky\"\nkind = \"command\"\nschedule = \"* * * * *\"\n\
             command = [\"test ! -e {}\"]\nshell = true\n\
             on_failure = {{ email = [\"ops@acme.test\"], webhook = [\"{}/hooks/T1/B1/secret-token\"], \
             repeat_after = \"30m\", run_url = \"https://dash.acme.test/runs/{{run_id}}\" }}\n",
            email_channel(&smtp),
            flag.display(),
            hooks.uri()
        ),
    );
    let store = p.store().await;

    // Ten failures in ten minutes.
    let d = TestDaemon::start(p.config(), utc("2026-01-05T10:00:00Z")).await;
    for i in 1..=10 {
        d.clock.advance(Duration::from_secs(60));
        wait_settled(&store, "flaky", i).await;
        if i == 1 {
            // The alert names the run that started the streak.
            smtp.wait_for_messages(1).await;
        }
    }
    d.stop().await; // waits for every alert in flight
    let rows = runs(&store, "flaky").await;
    assert!(rows.iter().all(|r| r.status == "failed"), "{rows:?}");
    let first = &rows[0];
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one email for ten failures: {mails:?}");
    assert_eq!(mails[0].to, "ops@acme.test");
    assert_eq!(mails[0].subject, "[tickler] flaky failed");
    let body = &mails[0].body;
    assert!(
        body.contains(&format!("https://dash.acme.test/runs/{}", first.id)),
        "{body}"
    );
    assert!(
        body.contains("Error: `test ! -e"),
        "the error is in the alert: {body}"
    );
    assert!(
        body.contains("Scheduled for: 2026-01-05 10:01:00 UTC"),
        "{body}"
    );
    assert!(body.contains("at most one reminder every 30m"), "{body}");
    let hooks_seen = posted(&hooks, "/hooks/").await;
    assert_eq!(hooks_seen.len(), 1, "one webhook for ten failures");
    let payload = json(&hooks_seen[0]);
    assert_eq!(payload["event"], "failure");
    assert_eq!(payload["job"], "flaky");
    assert_eq!(payload["status"], "failed");
    assert_eq!(payload["run_id"], first.id.as_str());
    assert_eq!(payload["failures"], 1);
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .starts_with("[tickler] flaky failed: "),
        "{payload}"
    );
    // A new daemon; 21 minutes later the job still fails: past `repeat_after` since the
    // first failure (10:01), so one reminder.
    let d = TestDaemon::start(p.config(), utc("2026-01-05T10:10:00Z")).await;
    d.clock.advance(Duration::from_secs(21 * 60));
    wait_for("the 10:31 run", Duration::from_secs(30), || async {
        runs(&store, "flaky")
            .await
            .iter()
            .any(|r| r.scheduled_for == utc("2026-01-05T10:31:00Z") && r.status == "failed")
            .then_some(())
    })
    .await;
    let mails = smtp.wait_for_messages(2).await;
    let reminder = mails
        .iter()
        .find(|m| m.subject.contains("still failing"))
        .expect("a reminder");
    assert_eq!(
        reminder.subject,
        "[tickler] flaky is still failing (11 failed runs since 2026-01-05 10:01:00 UTC)"
    );

    // It succeeds again: one "recovered" message.
    std::fs::remove_file(&flag).unwrap();
    d.clock.advance(Duration::from_secs(60));
    let mails = smtp.wait_for_messages(3).await;
    d.stop().await;
    let recovered = mails
        .iter()
        .find(|m| m.subject.contains("recovered"))
        .expect("a recovery message");
    assert_eq!(recovered.subject, "[tickler] flaky recovered");
    assert!(
        recovered
            .body
            .contains("after 11 failed run(s) since 2026-01-05 10:01:00 UTC"),
        "{}",
        recovered.body
    );
    assert_eq!(smtp.messages().len(), 3, "failure, reminder, recovered");
    let events: Vec<String> = posted(&hooks, "/hooks/")
        .await
        .iter()
        .map(|r| json(r)["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["failure", "failure", "recovered"]);
}

#[tokio::test]
async fn a_failing_job_alerts_once_reminds_and_recovers_on_sqlite() {
    failure_story(Project::sqlite()).await;
}

#[tokio::test]
async fn a_failing_job_alerts_once_reminds_and_recovers_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    failure_story(p).await;
}

/// The alert's status in `notification_log`, with its error.
async fn alert_rows(store: &Store) -> Vec<(String, Option<String>)> {
    let Store::Sqlite(s) = store else {
        unreachable!()
    };
    sqlx::query_as("SELECT status, error FROM notification_log ORDER BY created_at")
        .fetch_all(s.pool())
        .await
        .unwrap()
}

/// A send that failed for sure (here an HTTP 503) is tried again a few seconds later, in the
/// background; a shutdown cuts the wait short with one last try, and records the failure.
#[tokio::test]
async fn a_failed_alert_send_is_tried_again() {
    let p = Project::sqlite();
    let hooks = MockServer::start().await;
    // The first POST is refused (a chat service restarting), the next ones taken.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("try later"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hooks)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hooks)
        .await;
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"flaky\"\nkind = \"command\"\nschedule = \"* * * * *\"\n\
             command = [\"false\"]\n\
             on_failure = {{ webhook = [\"{}/hooks/one\"] }}\n",
            hooks.uri()
        ),
    );
    let store = p.store().await;
    let d = TestDaemon::start(p.config(), utc("2026-01-05T10:00:00Z")).await;
    d.clock.advance(Duration::from_secs(60));
    wait_settled(&store, "flaky", 1).await;
    let seen = wait_for("the retried POST", Duration::from_secs(20), || async {
        let seen = posted(&hooks, "/hooks/").await;
        (seen.len() >= 2).then_some(seen)
    })
    .await;
    d.stop().await;
    assert_eq!(seen.len(), 2, "one refused POST, one taken");
    assert_eq!(
        json(&seen[0])["key"],
        json(&seen[1])["key"],
        "the same alert"
    );
    assert_eq!(alert_rows(&store).await, [("sent".to_string(), None)]);

    // A webhook that keeps refusing, and the real binary: on SIGTERM the daemon does not wait
    // out the retry schedule; it makes one last try before it exits, and records the failure.
    let p = Project::sqlite();
    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("try later"))
        .mount(&down)
        .await;
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"flaky\"\nkind = \"command\"\nevery = \"1s\"\n\
             command = [\"false\"]\n\
             on_failure = {{ webhook = [\"{}/hooks/two\"] }}\n",
            down.uri()
        ),
    );
    let mut daemon = p
        .daemon_command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first POST", Duration::from_secs(20), || async {
        (!posted(&down, "/hooks/").await.is_empty()).then_some(())
    })
    .await;
    let stopping = std::time::Instant::now();
    signal(&daemon, libc::SIGTERM);
    let status = wait_for("the daemon to exit", Duration::from_secs(20), || {
        let status = daemon.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "the shutdown did not wait for the retry schedule: {:?}",
        stopping.elapsed()
    );
    assert_eq!(
        posted(&down, "/hooks/").await.len(),
        2,
        "first try and last try"
    );
    let store = p.store().await;
    let rows = alert_rows(&store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "failed");
    assert_eq!(
        rows[0].1.as_deref(),
        Some("webhook `http://127.0.0.1/***` answered HTTP 503: try later"),
        "the URL's path is kept out of the record"
    );

    // The next failure of the same window claims the failed alert again: here a manual run,
    // which waits for the first retry, then makes a last try instead of the whole schedule.
    let out = p.cli(&["run-job", "flaky"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        posted(&down, "/hooks/").await.len(),
        5,
        "a try, the retry 5 s later, the last try"
    );
    assert_eq!(alert_rows(&store).await[0].0, "failed");
}

/// An SMTP server that takes the connection and never greets: a sure failure after the
/// channel's `timeout` (nothing was sent), so it is tried again and recorded `failed`, not a
/// send of unknown outcome.
#[tokio::test]
async fn an_smtp_server_that_never_greets_is_a_failure() {
    let p = Project::sqlite();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = vec![];
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"none\"\ntimeout = \"1s\"\nfrom = \"tickler <tickler@acme.test>\"\n\n\
             [[job]]\nname = \"flaky\"\nkind = \"command\"\nschedule = \"* * * * *\"\n\
             command = [\"false\"]\non_failure = {{ email = [\"ops@acme.test\"] }}\n"
        ),
    );
    let store = p.store().await;
    let d = TestDaemon::start(p.config(), utc("2026-01-05T10:00:00Z")).await;
    d.clock.advance(Duration::from_secs(60));
    wait_settled(&store, "flaky", 1).await;
    // The first try ends after 1 s and is recorded `failed`; the retry would wait 5 s, and the
    // shutdown makes it now.
    wait_for("the first try to fail", Duration::from_secs(30), || async {
        let rows = alert_rows(&store).await;
        (rows.len() == 1 && rows[0].0 == "failed").then_some(())
    })
    .await;
    d.stop().await;
    held.abort();
    let rows = alert_rows(&store).await;
    assert_eq!(
        rows,
        [(
            "failed".to_string(),
            Some(format!(
                "SMTP `127.0.0.1:{port}`: no answer within 1s (connecting, TLS, greeting, STARTTLS \
                 or AUTH)"
            ))
        )]
    );
}

/// A run that fails while PostgreSQL is away: its alert waits for the database (25 s here; three
/// tries used to give up after about 18 s) and goes out once it is back, exactly once.
#[tokio::test]
async fn an_alert_waits_for_the_database() {
    let Some((pg, p)) = PrivateCluster::project().await else {
        return;
    };
    let hooks = webhook_server().await;
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"flaky\"\nkind = \"command\"\nschedule = \"* * * * *\"\n\
             command = [\"sh\", \"-c\", \"sleep 2; echo ledger down >&2; exit 1\"]\n\
             on_failure = {{ webhook = [\"{}/hooks/db\"] }}\n",
            hooks.uri()
        ),
    );
    let store = p.store().await;
    let d = TestDaemon::start(p.config(), utc("2026-01-05T10:00:00Z")).await;
    d.clock.advance(Duration::from_secs(60));
    let run = wait_for("the run to start", Duration::from_secs(30), || async {
        runs(&store, "flaky")
            .await
            .into_iter()
            .find(|r| r.status == "running")
    })
    .await;
    // The run fails two seconds into the outage.
    let cluster = pg.clone();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap();
    // The outage itself lasts 25 s (not a wait for a state): no alert may go out during it.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(
        posted(&hooks, "/hooks/").await.is_empty(),
        "no alert while the database is away"
    );
    let cluster = pg.clone();
    tokio::task::spawn_blocking(move || cluster.start_again())
        .await
        .unwrap();
    let alert = wait_for("the alert", Duration::from_secs(60), || async {
        posted(&hooks, "/hooks/").await.first().map(json)
    })
    .await;
    assert_eq!(alert["event"], "failure");
    assert_eq!(alert["run_id"], run.id.as_str());
    assert_eq!(alert["error"], "`sh` exited with status 1: ledger down");
    d.stop().await;
    assert_eq!(posted(&hooks, "/hooks/").await.len(), 1, "sent once");
    let rows = runs(&store, "flaky").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "failed", "the run's end is recorded too");
}

/// A daily job last succeeded at 02:00; the daemon was down through the next night. The
/// restarted daemon finds the job overdue from the ledger and alerts once; another restart
/// in the same window sends nothing, and the next window (`repeat_after`) one reminder.
#[tokio::test]
async fn expect_success_within_is_checked_after_restarts() {
    let p = Project::sqlite();
    let smtp = SmtpServer::start(p.path());
    p.write_config(
        "",
        &format!(
            "{}\n[[job]]\nname = \"nightly\"\nkind = \"noop\"\nschedule = \"0 2 * * *\"\n\
             expect_success_within = \"26h\"\n\
             on_failure = {{ email = [\"ops@acme.test\"], repeat_after = \"6h\" }}\n",
            email_channel(&smtp)
        ),
    );
    let store = p.store().await;
    let d = TestDaemon::start(p.config(), utc("2026-01-05T01:59:00Z")).await;
    d.clock.advance(Duration::from_secs(60));
    let ok = wait_settled(&store, "nightly", 1).await;
    assert_eq!(ok[0].status, "succeeded");
    d.stop().await;
    assert!(smtp.messages().is_empty());

    // Down until 04:30 the next day: due at 04:00.
    let d = TestDaemon::start(p.config(), utc("2026-01-06T04:30:00Z")).await;
    let mails = smtp.wait_for_messages(1).await;
    d.stop().await;
    assert_eq!(
        mails[0].subject,
        "[tickler] nightly has not succeeded in 26h"
    );
    assert!(
        mails[0]
            .body
            .contains("has not succeeded since 2026-01-05 02:00:00 UTC"),
        "{}",
        mails[0].body
    );
    assert!(
        mails[0]
            .body
            .contains("so it was due by 2026-01-06 04:00:00 UTC"),
        "{}",
        mails[0].body
    );

    // Restarted again in the same window: checked at start, not sent again; the same daemon
    // six hours after the deadline sends one reminder.
    let d = TestDaemon::start(p.config(), utc("2026-01-06T04:35:00Z")).await;
    d.clock.advance(Duration::from_secs(5 * 3600 + 25 * 60));
    // The daemon checks once a minute of its clock.
    wait_for("the reminder", Duration::from_secs(30), || async {
        d.clock.advance(Duration::from_secs(60));
        (smtp.messages().len() >= 2).then_some(())
    })
    .await;
    let mails = smtp.messages();
    d.stop().await;
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(smtp.messages().len(), 2);
}

/// `ping_url`: `/start` then the URL itself for a success; `/start` then `/fail` with the error
/// for a failure; each carries the run id as `rid`.
#[tokio::test]
async fn ping_url_reports_start_and_end_of_each_run() {
    let p = Project::sqlite();
    let monitor = webhook_server().await;
    p.write_config(
        &format!(
            "[defaults]\nping_url = \"{}/ping/key/{{job}}\"\n",
            monitor.uri()
        ),
        "[[job]]\nname = \"good\"\nkind = \"noop\"\nschedule = \"* * * * *\"\n\n\
         [[job]]\nname = \"bad\"\nkind = \"command\"\nschedule = \"* * * * *\"\n\
         command = [\"sh\", \"-c\", \"echo disk full >&2; exit 3\"]\n",
    );
    let store = p.store().await;
    let d = TestDaemon::start(p.config(), utc("2026-01-05T10:00:00Z")).await;
    d.clock.advance(Duration::from_secs(60));
    wait_settled(&store, "good", 1).await;
    wait_settled(&store, "bad", 1).await;
    d.stop().await;
    let good = &runs(&store, "good").await[0];
    let bad = &runs(&store, "bad").await[0];
    let pings = posted(&monitor, "/ping/").await;
    let seen: Vec<(String, String)> = pings
        .iter()
        .map(|r| {
            let rid = r
                .url
                .query_pairs()
                .find(|(k, _)| k == "rid")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            (r.url.path().to_string(), rid)
        })
        .collect();
    let of = |job: &str| -> Vec<(String, String)> {
        seen.iter()
            .filter(|(path, _)| path.starts_with(&format!("/ping/key/{job}")))
            .cloned()
            .collect()
    };
    assert_eq!(
        of("good"),
        [
            ("/ping/key/good/start".to_string(), good.id.clone()),
            ("/ping/key/good".to_string(), good.id.clone()),
        ]
    );
    assert_eq!(
        of("bad"),
        [
            ("/ping/key/bad/start".to_string(), bad.id.clone()),
            ("/ping/key/bad/fail".to_string(), bad.id.clone()),
        ]
    );
    let fail = pings
        .iter()
        .find(|r| r.url.path() == "/ping/key/bad/fail")
        .unwrap();
    let body = String::from_utf8_lossy(&fail.body);
    assert!(body.starts_with("failed: "), "{body}");
    assert!(
        body.contains("disk full"),
        "the error goes with /fail: {body}"
    );

    // The run an alert names, whole.
    let out = p.cli(&["history", "--run", &bad.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.starts_with(&format!(
            "run            {}\njob            bad\nstatus         failed\n",
            bad.id
        )),
        "{shown}"
    );
    assert!(
        shown.contains("\"stderr_tail\": \"disk full\\n\""),
        "{shown}"
    );
    let out = p.cli(&["history", "--run", "01a2-nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "invalid value '01a2-nonsense' for '--run <RUN>': not a run id; a run id is a UUID"
        ),
        "{}",
        stderr(&out)
    );
    let unknown = "0193b0a4-6f2e-7c3d-9a51-2b8e4f1c0d7e";
    let out = p.cli(&["history", "--run", unknown]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "error: no run `{unknown}` in the ledger of `sqlite://"
        )),
        "{}",
        stderr(&out)
    );
}
