//! Operator actions: `tickler pause` / `resume` obeyed by a running daemon (its slots recorded
//! `paused`, not run; a reload does not unpause), `tickler backfill` (each slot with its own
//! `scheduled_for`, `--only-missed`, `--dry-run`, refusals), and the audit rows every action
//! writes. On SQLite and PostgreSQL alike.

use std::time::Duration;

use tickler::store::audit::AuditFilter;
use tickler::store::{NewRun, RunTrigger, Status};

use crate::helpers::{Project, TestDaemon, runs, stderr, stdout, utc, wait_settled};

const MIN: Duration = Duration::from_secs(60);

const JOBS: &str = "[[job]]\nname = \"tick\"\nkind = \"noop\"\nevery = \"1m\"\n\
                    [[job]]\nname = \"other\"\nkind = \"noop\"\nevery = \"1m\"\n";

/// A pause written by the CLI (another process) is obeyed from the daemon's next fire; `list`
/// and `check` show it; a reload keeps it; `resume` runs the next slot again; both are audited.
async fn pause_story(p: Project) {
    p.write_config("", JOBS);
    let d = TestDaemon::start(p.config(), utc("2025-01-06T10:00:30Z")).await;
    let store = p.store().await;
    d.clock.advance(MIN);
    wait_settled(&store, "tick", 1).await;

    let out = p.cli(&["pause", "tick", "--reason", "bank holiday file late"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "paused `tick`: its slots are recorded `paused`, not run, until `tickler resume tick`\n"
    );
    let again = p.cli(&["pause", "tick"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("`tick` is already paused; `tickler resume tick` resumes it"),
        "{}",
        stderr(&again)
    );

    d.clock.advance(MIN);
    d.reload().await;
    d.clock.advance(MIN);
    let rows = wait_settled(&store, "tick", 3).await;
    let st: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(st, ["succeeded", "paused", "paused"]);
    assert!(
        rows[1].error_message.as_deref().is_some_and(
            |e| e.contains("bank holiday file late") && e.contains("`tickler resume tick`")
        ),
        "{rows:?}"
    );
    // The other job is not touched.
    let other = wait_settled(&store, "other", 3).await;
    assert!(other.iter().all(|r| r.status == "succeeded"), "{other:?}");

    let list = stdout(&p.cli(&["list", "--next", "1"]));
    assert!(list.contains("PAUSED JOBS"), "{list}");
    assert!(list.contains("bank holiday file late"), "{list}");
    let check = stdout(&p.cli(&["check"]));
    let line = check.lines().find(|l| l.contains("tick ")).unwrap_or("");
    assert!(line.contains("PAUSED by "), "{check}");

    let out = p.cli(&["resume", "tick"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "resumed `tick`: its next slot runs\n");
    let not = p.cli(&["resume", "tick"]);
    assert!(
        stderr(&not).contains("`tick` is not paused"),
        "{}",
        stderr(&not)
    );
    d.clock.advance(MIN);
    let rows = wait_settled(&store, "tick", 4).await;
    assert_eq!(rows[3].status, "succeeded");

    let audit = store
        .audit_log(&AuditFilter {
            target: Some("tick".into()),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["resume", "pause"]);
    assert!(audit.iter().all(|a| a.origin.starts_with("cli on ")));
    assert_eq!(audit[1].detail.as_deref(), Some("bank holiday file late"));
    let shown = stdout(&p.cli(&["audit", "--target", "tick"]));
    assert!(
        shown.contains("pause") && shown.contains("resume"),
        "{shown}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_paused_job_records_paused_slots_until_resumed() {
    pause_story(Project::sqlite()).await;
}

#[tokio::test]
async fn a_paused_job_records_paused_slots_until_resumed_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    pause_story(p).await;
}

/// Backfill of a range: `--dry-run` lists, `--only-missed` runs the slots with no successful
/// row, each with its own `scheduled_for` and `trigger = 'backfill'`, oldest first; a second
/// `--only-missed` has nothing left to run.
async fn backfill_story(p: Project) {
    p.write_config(
        "",
        "[[job]]\nname = \"hourly\"\nkind = \"noop\"\nschedule = \"0 * * * *\"\n",
    );
    let store = p.store().await;
    // 01:00 succeeded and 03:00 failed on the daemon; 02:00 and 04:00 have no row.
    let seed = |slot: &str, status: Status| NewRun {
        id: uuid::Uuid::now_v7(),
        job_name: "hourly".into(),
        scheduled_for: utc(slot),
        trigger: RunTrigger::Schedule,
        status,
        started_at: utc(slot),
        instance: "earlier".into(),
        error_message: None,
        metadata: None,
        batch: None,
    };
    store
        .insert_runs(&[
            seed("2025-01-06T01:00:00Z", Status::Succeeded),
            seed("2025-01-06T03:00:00Z", Status::Failed),
        ])
        .await
        .unwrap();
    let range = [
        "--from",
        "2025-01-06T01:00:00Z",
        "--to",
        "2025-01-06T04:30:00Z",
    ];
    let dry = p.cli(
        &[
            &["backfill", "hourly"][..],
            &range,
            &["--only-missed", "--dry-run"],
        ]
        .concat(),
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(
        stdout(&dry),
        "4 slot(s) of `hourly` from 2025-01-06T01:00:00Z to 2025-01-06T04:30:00Z; 3 to run \
         (those with no successful run)\n\
         SLOT (UTC)             LOCAL                      RECORDED\n\
         2025-01-06T01:00:00Z   2025-01-06 01:00 UTC       succeeded  (kept)\n\
         2025-01-06T02:00:00Z   2025-01-06 02:00 UTC       no row\n\
         2025-01-06T03:00:00Z   2025-01-06 03:00 UTC       failed\n\
         2025-01-06T04:00:00Z   2025-01-06 04:00 UTC       no row\n\
         dry run: nothing ran\n"
    );
    assert_eq!(
        runs(&store, "hourly").await.len(),
        2,
        "a dry run runs nothing"
    );

    let out = p.cli(&[&["backfill", "hourly"][..], &range, &["--only-missed"]].concat());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let rows = runs(&store, "hourly").await;
    let backfills: Vec<(String, &str)> = rows
        .iter()
        .filter(|r| r.trigger == "backfill")
        .map(|r| {
            (
                r.scheduled_for.format("%H:%M").to_string(),
                r.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        backfills,
        [
            ("02:00".to_string(), "succeeded"),
            ("03:00".to_string(), "succeeded"),
            ("04:00".to_string(), "succeeded"),
        ]
    );
    // Run oldest first: their starts follow the slots' order.
    let mut starts: Vec<_> = rows
        .iter()
        .filter(|r| r.trigger == "backfill")
        .map(|r| (r.started_at, r.scheduled_for))
        .collect();
    starts.sort();
    assert!(starts.windows(2).all(|w| w[0].1 < w[1].1), "{starts:?}");
    // The failed run stays failed beside its backfill.
    assert!(
        rows.iter()
            .any(|r| r.status == "failed" && r.trigger == "schedule")
    );

    let again = p.cli(&[&["backfill", "hourly"][..], &range, &["--only-missed"]].concat());
    assert!(stdout(&again).contains("; 0 to run"), "{}", stdout(&again));
    assert_eq!(runs(&store, "hourly").await.len(), 5);

    let audit = store
        .audit_log(&AuditFilter {
            target: Some("hourly".into()),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].action, "backfill");
    assert_eq!(
        audit[0].detail.as_deref(),
        Some("3 slot(s) from 2025-01-06T01:00:00Z to 2025-01-06T04:30:00Z, only missed")
    );
}

#[tokio::test]
async fn backfill_runs_each_missing_slot_once_in_order() {
    backfill_story(Project::sqlite()).await;
}

#[tokio::test]
async fn backfill_runs_each_missing_slot_once_in_order_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    backfill_story(p).await;
}

#[tokio::test]
async fn bad_operator_commands_are_refused_and_change_nothing() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"tick\"\nkind = \"noop\"\nevery = \"1s\"\n",
    );
    let store = p.store().await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["pause", "tikc"],
            "error: there is no job `tikc` in the config; `tickler list` shows the jobs\n",
        ),
        (&["resume", "tick"], "error: `tick` is not paused\n"),
        (
            &[
                "backfill",
                "tick",
                "--from",
                "2025-01-06T02:00:00Z",
                "--to",
                "2025-01-06T01:00:00Z",
            ],
            "error: `--from` (2025-01-06T02:00:00Z) is after `--to` (2025-01-06T01:00:00Z); give \
             the earlier time first\n",
        ),
        (
            &[
                "backfill",
                "tick",
                "--from",
                "2025-01-06T00:00:00Z",
                "--to",
                "2999-01-01T00:00:00Z",
            ],
            "error: `--to` (2999-01-01T00:00:00Z) is in the future; a backfill runs past slots \
             only (the daemon runs the coming ones): give a time before now\n",
        ),
        (
            &[
                "backfill",
                "tick",
                "--from",
                "2025-01-06T00:00:00Z",
                "--to",
                "2025-01-06T03:00:00Z",
            ],
            "error: `tick` has more than 10000 slots from 2025-01-06T00:00:00Z to \
             2025-01-06T03:00:00Z; backfill a narrower range at a time\n",
        ),
    ];
    for (args, message) in cases {
        let out = p.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), *message, "{args:?}");
    }
    assert!(runs(&store, "tick").await.is_empty());
    assert!(store.paused_jobs().await.unwrap().is_empty());
    let audit = store
        .audit_log(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit.is_empty(), "{audit:?}");
}

/// `tickler backfill` killed with SIGKILL in the middle of a slot: its row does not stay
/// `running` and does not hold the slot; the next backfill (any tickler command of this host
/// resolves it first) records it `abandoned` and runs the slot again, once.
#[tokio::test]
async fn a_backfill_killed_mid_slot_is_abandoned_and_runs_again() {
    let p = Project::sqlite();
    let marker = p.path().join("ran-once");
    // The first run sleeps (and is killed); the next one finds the marker and succeeds.
    let script = format!(
        "if [ -e '{m}' ]; then exit 0; fi; touch '{m}'; exec sleep 600",
        m = marker.display()
    );
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"nightly\"\nkind = \"command\"\nschedule = \"0 2 * * *\"\n\
             command = [\"sh\", \"-c\", {}]\n",
            toml_string(&script)
        ),
    );
    let store = p.store().await;
    let args = [
        "backfill",
        "nightly",
        "--from",
        "2025-01-06T00:00:00Z",
        "--to",
        "2025-01-06T23:00:00Z",
    ];
    let mut child = spawn_backfill(&p, &args);
    // The row is running as soon as its process group is recorded, which can be before the
    // shell has left its marker: killed then, the next run would find no marker and sleep.
    let pgid = crate::helpers::wait_for(
        "a running backfill row whose body left its marker",
        Duration::from_secs(20),
        || async {
            if !marker.exists() {
                return None;
            }
            runs(&store, "nightly").await.into_iter().find_map(|r| {
                (r.status == "running" && r.trigger == "backfill")
                    .then(|| r.metadata.as_ref()?["process_group"]["pgid"].as_i64())
                    .flatten()
            })
        },
    )
    .await;
    crate::helpers::signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    // SAFETY: a signal to the process group this test's backfill started a moment ago.
    unsafe {
        libc::killpg(pgid as i32, libc::SIGKILL);
    }

    let out = p.cli(&[&args[..], &["--only-missed"]].concat());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let rows = runs(&store, "nightly").await;
    let st: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.trigger.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(st, [("backfill", "abandoned"), ("backfill", "succeeded")]);
    assert!(
        rows.iter()
            .all(|r| r.scheduled_for == utc("2025-01-06T02:00:00Z"))
    );
}

/// `tickler backfill ARGS` started in the background, its output dropped.
fn spawn_backfill(p: &Project, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_tickler"))
        .args(args)
        .arg("--config")
        .arg(p.config_path())
        .current_dir(p.path())
        .env_remove("TICKLER_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tickler backfill")
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Two backfills of one range at once, of a job that allows overlapping runs: the slot still
/// runs once (the first backfill's open row holds it); the second says so and exits 1.
#[tokio::test]
async fn two_backfills_at_once_run_a_slot_once() {
    let p = Project::sqlite();
    let release = p.path().join("release");
    let script = format!(
        "while [ ! -e '{r}' ]; do sleep 0.05; done",
        r = release.display()
    );
    p.write_config(
        "",
        &format!(
            "[[job]]\nname = \"nightly\"\nkind = \"command\"\nschedule = \"0 2 * * *\"\n\
             timeout = \"60s\"\noverlap = \"allow\"\ncommand = [\"sh\", \"-c\", {}]\n",
            toml_string(&script)
        ),
    );
    let store = p.store().await;
    let args = [
        "backfill",
        "nightly",
        "--from",
        "2025-01-06T00:00:00Z",
        "--to",
        "2025-01-06T23:00:00Z",
    ];
    let mut first = spawn_backfill(&p, &args);
    crate::helpers::wait_for(
        "the first backfill to run",
        Duration::from_secs(20),
        || async {
            runs(&store, "nightly")
                .await
                .iter()
                .any(|r| r.status == "running")
                .then_some(())
        },
    )
    .await;
    let second = p.cli(&args);
    std::fs::write(&release, "").unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", stdout(&second));
    assert!(
        stdout(&second).contains(
            "2025-01-06T02:00:00Z   not run: skipped under the job's overlap policy, held by \
             another backfill, or this one was stopped (`tickler history --job nightly` shows \
             its rows)"
        ),
        "{}",
        stdout(&second)
    );
    let status =
        crate::helpers::wait_for("the first backfill to end", Duration::from_secs(30), || {
            let s = first.try_wait().unwrap();
            async move { s }
        })
        .await;
    assert!(status.success());
    let st: Vec<String> = runs(&store, "nightly")
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(st, ["succeeded"]);
}
