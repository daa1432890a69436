//! The operator console in a real headless Chromium against the real `tickler` binary on the
//! shipped `config.toml` (with `--demo`), as an operator and a viewer use it: log in, see the
//! demo's jobs, pause a job (the daemon records its slots `paused`, `tickler list` shows it),
//! resume it, run a job now, retry a failed task, mark an invoice paid (its campaign's pending
//! emails cancelled), and a viewer refused when acting. Each page is saved as a screenshot under
//! `target/console-screenshots/`.

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use tickler::store::Store;

use crate::helpers::browser::{Browser, Until};
use crate::helpers::{BIN, Project, free_port, signal, statuses, stderr, stdout, wait_for};

const OPERATOR_PASSWORD: &str = "operator password 1";
const VIEWER_PASSWORD: &str = "viewer password 22";
const PAGE: Duration = Duration::from_secs(15);

/// The shipped `config.toml` with the console on `port`, a job firing every 2 s to pause, and
/// a `custom` task handler that fails until the file `ok` exists.
fn shipped_with_console(p: &Project, port: u16) {
    let shipped = include_str!("../../config.toml");
    let ok = p.path().join("ok");
    let text = format!(
        "{shipped}\n\
         [queue.handlers.flaky]\nkind = \"command\"\n\
         command = [\"/bin/sh\", \"-c\", \"test -f '{}'\"]\n\n\
         [[job]]\nname = \"pulse\"\nkind = \"noop\"\nevery = \"2s\"\n\n\
         [http.console]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"console-users.toml\"\n",
        ok.display()
    );
    std::fs::write(p.config_path(), text).unwrap();
    // The message templates and holiday files it reads, beside it as in the repository.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["templates", "holidays"] {
        std::fs::create_dir_all(p.path().join(dir)).unwrap();
        for f in std::fs::read_dir(repo.join(dir)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, p.path().join(dir).join(f.file_name().unwrap())).unwrap();
        }
    }
}

/// `tickler console add-user NAME --role ROLE`, the password typed on stdin.
fn add_user(p: &Project, name: &str, role: &str, password: &str) {
    let mut child = std::process::Command::new(BIN)
        .args(["console", "add-user", name, "--role", role, "--config"])
        .arg(p.config_path())
        .current_dir(p.path())
        .env_remove("TICKLER_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "add-user {name}: {}", stderr(&out));
}

/// The daemon, ended by SIGTERM (by pid) when dropped, so a failing test leaves nothing behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            signal(&self.0, libc::SIGTERM);
            let _ = crate::helpers::wait_for_blocking("the daemon to stop", PAGE, || {
                self.0.try_wait().ok().flatten()
            });
        }
    }
}

async fn task_status(store: &Store, id: &str) -> String {
    store.task(id).await.unwrap().expect("the task").status
}

/// Logs in through the form and lands on the overview.
async fn log_in(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/login")).await;
    b.wait_for(Until::Css("form#login"), PAGE).await;
    b.fill("#login input[name=user]", user).await;
    b.fill("#login input[name=password]", password).await;
    b.submit("form#login").await;
    b.wait_for(Until::Css("tr[data-job=\"pulse\"]"), PAGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_and_a_viewer_steer_the_demo_from_a_real_browser() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let p = Project::sqlite();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    shipped_with_console(&p, port);
    add_user(&p, "ana", "operator", OPERATOR_PASSWORD);
    add_user(&p, "vic", "viewer", VIEWER_PASSWORD);
    let log = std::fs::File::create(p.path().join("daemon.log")).unwrap();
    let daemon = Daemon(
        p.daemon_command()
            .arg("--demo")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // The demo fills the database (the shipped config keeps it in `var/`) and runs each job.
    let http = reqwest::Client::new();
    wait_for("the console to answer", Duration::from_secs(60), || async {
        let r = http.get(format!("{base}/login")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let store = Store::connect(&tickler::secret::DatabaseUrl::new(format!(
        "sqlite://{}/var/tickler.db",
        p.path().display()
    )))
    .await
    .unwrap();
    let daemon_log = || std::fs::read_to_string(p.path().join("daemon.log")).unwrap_or_default();
    wait_for("the demo's runs", Duration::from_secs(60), || async {
        let weekly = statuses(&store, "weekly-stats").await;
        (weekly.first().map(String::as_str) == Some("succeeded")).then_some(())
    })
    .await;

    // A task that fails (no retry left) for the operator to retry, and a campaign over the
    // overdue invoices whose first emails are pending.
    let out = p.cli(&[
        "tasks",
        "enqueue",
        "--type",
        "custom",
        "--in",
        "0s",
        "--max-retries",
        "0",
        "--data",
        r#"{"handler": "flaky"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let task = stdout(&out).split_whitespace().nth(2).unwrap().to_string();
    wait_for("the flaky task to fail", PAGE, || async {
        (task_status(&store, &task).await == "failed").then_some(())
    })
    .await;
    let out = p.cli(&[
        "campaign",
        "create",
        "--name",
        "overdue",
        "--overdue-days",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let run = async {
        // The login form; a wrong password is refused on the page.
        b.goto(&format!("{base}/")).await;
        b.wait_for(Until::Url("/login"), PAGE).await;
        b.screenshot("login").await;
        b.fill("#login input[name=user]", "ana").await;
        b.fill("#login input[name=password]", "not the password")
            .await;
        b.submit("form#login").await;
        b.wait_for(Until::Css("form#login"), PAGE).await;
        assert!(
            b.cookies()
                .await
                .iter()
                .all(|c| c.name() != "tickler_console")
        );

        // The operator sees every job of the demo on the overview.
        log_in(&b, &base, "ana", OPERATOR_PASSWORD).await;
        for job in [
            "heartbeat",
            "create-invoices",
            "invoice-reminders",
            "escalation-level-1",
            "weekly-stats",
            "monthly-summary",
            "cleanup",
        ] {
            assert!(
                b.exists(&format!("tr[data-job=\"{job}\"]")).await,
                "{job} on the overview"
            );
        }
        b.screenshot("overview").await;

        // Pause `pulse` from its page: the daemon records its next slots `paused`.
        b.goto(&format!("{base}/jobs/pulse")).await;
        b.fill("#actions input[name=reason]", "supplier outage")
            .await;
        b.click("button[data-action=\"pause\"]").await;
        b.wait_for(Until::Text("paused `pulse`"), PAGE).await;
        assert!(b.exists("[data-badge=\"paused\"]").await);
        wait_for("a paused slot of pulse", PAGE, || async {
            statuses(&store, "pulse")
                .await
                .contains(&"paused".to_string())
                .then_some(())
        })
        .await;
        let list = stdout(&p.cli(&["list"]));
        let section = list.split("PAUSED JOBS").nth(1).expect(&list);
        assert!(section.contains("pulse"), "{list}");
        assert!(section.contains("supplier outage"), "{list}");
        b.goto(&format!("{base}/jobs/pulse")).await;
        b.wait_for(Until::Text("paused"), PAGE).await;
        b.screenshot("job-paused").await;

        // Resume it: its next slot runs again.
        b.click("button[data-action=\"resume\"]").await;
        b.wait_for(Until::Text("resumed `pulse`"), PAGE).await;
        let resumed_at = chrono::Utc::now();
        wait_for("a slot of pulse run after the resume", PAGE, || async {
            crate::helpers::runs(&store, "pulse")
                .await
                .iter()
                .any(|r| r.status == "succeeded" && r.scheduled_for > resumed_at)
                .then_some(())
        })
        .await;

        // Run `weekly-stats` now; its run page shows the manual run.
        b.goto(&format!("{base}/jobs/weekly-stats")).await;
        b.click("button[data-action=\"run\"]").await;
        b.wait_for(Until::Text("started a run of `weekly-stats`"), PAGE)
            .await;
        let manual = wait_for("the manual run of weekly-stats", PAGE, || async {
            crate::helpers::runs(&store, "weekly-stats")
                .await
                .into_iter()
                .find(|r| r.trigger == "manual" && r.status == "succeeded")
        })
        .await;
        b.goto(&format!("{base}/jobs/weekly-stats")).await;
        b.wait_for(Until::Css("#run-chart"), PAGE).await;
        b.screenshot("job").await;
        b.goto(&format!("{base}/runs/{}", manual.id)).await;
        b.wait_for(Until::Text("manual"), PAGE).await;
        b.screenshot("run").await;

        // Retry the failed task once its handler can succeed.
        std::fs::write(p.path().join("ok"), "").unwrap();
        b.goto(&format!("{base}/queue?status=failed")).await;
        let row = format!("tr[data-task=\"{task}\"]");
        b.wait_for(Until::Css(&row), PAGE).await;
        b.screenshot("queue-failed").await;
        b.click(&format!("{row} button[data-action=\"retry\"]"))
            .await;
        b.wait_for(Until::Text(&format!("task {task} retried")), PAGE)
            .await;
        wait_for("the retried task to complete", PAGE, || async {
            (task_status(&store, &task).await == "completed").then_some(())
        })
        .await;

        // Mark an overdue invoice of the campaign paid: its pending emails are cancelled,
        // the other invoices' stay pending.
        let pending = store
            .tasks(&tickler::store::queue::TaskFilter {
                status: Some("pending".into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let campaign: Vec<_> = pending
            .iter()
            .filter(|t| t.campaign_id.is_some() && t.invoice_id.is_some())
            .collect();
        assert!(campaign.len() >= 2, "the campaign's emails: {campaign:?}");
        let paid_id = campaign[0].invoice_id.clone().unwrap();
        let number = store.invoice_by_id(&paid_id).await.unwrap().unwrap().number;
        b.goto(&format!("{base}/invoices?overdue=1")).await;
        let row = format!("tr[data-invoice=\"{number}\"]");
        b.wait_for(Until::Css(&row), PAGE).await;
        b.screenshot("invoices").await;
        b.fill(&format!("{row} input[name=reference]"), "EFT 4471")
            .await;
        b.click(&format!("{row} button[data-action=\"mark-paid\"]"))
            .await;
        b.wait_for(Until::Text(&format!("invoice {number} marked paid")), PAGE)
            .await;
        let invoice = store.invoice_by_number(&number).await.unwrap().unwrap();
        assert_eq!(invoice.status, "paid");
        for t in &campaign {
            let now = task_status(&store, &t.id).await;
            if t.invoice_id.as_deref() == Some(paid_id.as_str()) {
                assert_eq!(now, "cancelled", "{t:?}");
            } else {
                assert_eq!(now, "pending", "{t:?}");
            }
        }

        // The other pages, and the audit log with every action above.
        for (path, shot, css) in [
            ("/queue", "queue", "#task-counts"),
            ("/campaigns", "campaigns", "body"),
            ("/messages", "messages", "#message-filter"),
        ] {
            b.goto(&format!("{base}{path}")).await;
            b.wait_for(Until::Css(css), PAGE).await;
            b.screenshot(shot).await;
        }
        b.goto(&format!("{base}/audit")).await;
        for action in ["pause", "resume", "run", "task.retry", "invoice.mark_paid"] {
            b.wait_for(Until::Text(action), PAGE).await;
        }
        b.screenshot("audit").await;
        let audit = store
            .audit_log(&tickler::store::audit::AuditFilter {
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        let by_ana: Vec<(&str, &str)> = audit
            .iter()
            .filter(|a| a.who == "ana")
            .map(|a| (a.action.as_str(), a.target.as_str()))
            .collect();
        assert_eq!(
            by_ana,
            vec![
                ("invoice.mark_paid", number.as_str()),
                ("task.retry", task.as_str()),
                ("run", "weekly-stats"),
                ("resume", "pulse"),
                ("pause", "pulse"),
            ]
        );
        assert!(
            audit
                .iter()
                .all(|a| a.who != "ana" || a.origin == "console 127.0.0.1")
        );

        // Log out; the viewer sees the pages without actions, and a forged action is refused.
        b.click("button[data-action=\"logout\"]").await;
        b.wait_for(Until::Css("form#login"), PAGE).await;
        log_in(&b, &base, "vic", VIEWER_PASSWORD).await;
        b.goto(&format!("{base}/jobs/pulse")).await;
        b.wait_for(Until::Css("#next-fires"), PAGE).await;
        assert!(!b.exists("#actions").await, "a viewer has no actions");
        b.goto(&format!("{base}/queue?status=failed")).await;
        assert!(
            !b.exists("button[data-action]:not([data-action=\"logout\"])")
                .await
        );
        // A form built in the page, carrying the viewer's own valid CSRF token.
        b.client()
            .execute(
                "const f = document.createElement('form');
                 f.method = 'post'; f.action = '/jobs/pulse/pause';
                 const c = document.createElement('input');
                 c.type = 'hidden'; c.name = 'csrf';
                 c.value = document.querySelector('#logout input[name=csrf]').value;
                 f.appendChild(c); document.body.appendChild(f); f.submit(); return true;",
                vec![],
            )
            .await
            .unwrap();
        b.wait_for(Until::Text("viewers cannot act: ask an operator"), PAGE)
            .await;
        assert!(store.paused_jobs().await.unwrap().is_empty());
        assert!(
            store
                .audit_log(&tickler::store::audit::AuditFilter {
                    limit: 50,
                    ..Default::default()
                })
                .await
                .unwrap()
                .iter()
                .all(|a| a.who != "vic"),
            "the viewer wrote nothing"
        );
    };
    if tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .is_err()
    {
        panic!(
            "the console walk-through took over 240 s; daemon log:\n{}",
            daemon_log()
        );
    }
    b.close().await;
    drop(daemon);
    store.close().await;
}
