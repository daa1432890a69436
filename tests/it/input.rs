//! Bad input on the real binary: values that would overflow are refused with a message and an
//! exit status instead of a panic or a runaway daemon, and a reader that closes stdout early
//! (`tickler history | head`) ends a command quietly.
//!
//! Every process here runs bounded: an address-space limit (the old code grew to 24 GB on an
//! overflowing interval) and a deadline after which it is killed, by its own handle.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickler::store::{NewRun, RunTrigger, Status};
use uuid::Uuid;

use crate::helpers::{BIN, Project, utc};

/// The address space a tickler process may use here (tokio and SQLite need well under 1 GiB).
const MEMORY_LIMIT: u64 = 2 << 30;

/// `tickler ARGS --config <p's config>`, limited to `MEMORY_LIMIT`, its output thrown away
/// unless the caller says otherwise.
fn command(p: &Project, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--config")
        .arg(p.config_path())
        .current_dir(p.path())
        .env_remove("TICKLER_DATABASE_URL")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child being started.
    unsafe {
        c.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// Waits for `child` to exit within `deadline`; past it, kills it (by its handle, so only this
/// process) and fails the test. Returns its status and stderr.
fn wait_bounded(mut child: Child, deadline: Duration, what: &str) -> (ExitStatus, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` still running after {deadline:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}

/// Runs `tickler ARGS` bounded; returns its exit status and stderr.
fn run_bounded(p: &Project, args: &[&str]) -> (ExitStatus, String) {
    let child = command(p, args).spawn().expect("spawn tickler");
    wait_bounded(child, Duration::from_secs(60), &args.join(" "))
}

const OVERFLOWING: &str =
    "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"18446744073709551615s\"\n";

/// `tickler run` (and `list`) on a config whose interval would overflow refuse it at start,
/// with the config error and exit status 1. Before, `run` spun, ignored SIGTERM and grew until
/// the kernel killed it, and `list` printed fires going backwards.
#[test]
fn the_daemon_refuses_an_overflowing_interval_at_start() {
    let p = Project::sqlite();
    p.write_config("", OVERFLOWING);
    let message = format!(
        "error: invalid `every` interval `18446744073709551615s` for job `x` ({} line 9, column \
         9): larger than the largest accepted interval, `100y` (3155760000s)\n",
        p.config_path().display()
    );
    for args in [&["run"][..], &["list"]] {
        let (status, err) = run_bounded(&p, args);
        assert_eq!(status.code(), Some(1), "{args:?}: {status:?}: {err}");
        assert_eq!(err, message, "{args:?}");
    }
}

/// `--in` and `--at` beyond 100 years, and counts that would overflow a date or the stored
/// integer, are input errors (exit status 1, as any other refused input), never a panic.
#[test]
fn out_of_range_cli_values_are_input_errors() {
    let p = Project::sqlite();
    p.write_config("", "[queue.handlers.h]\nkind = \"noop\"\n");
    let enqueue = [
        "tasks",
        "enqueue",
        "--type",
        "custom",
        "--data",
        r#"{"handler": "h"}"#,
    ];
    let too_far = |flag: &str| {
        format!(
            "error: `{flag}` is too far ahead: the largest accepted is `100y` (3155760000s) from \
             now\n"
        )
    };
    #[rustfmt::skip]
    let table: Vec<(Vec<&str>, String)> = vec![
        (vec!["--in", "99999999999999d"], too_far("--in 99999999999999d")),
        (vec!["--in", "300000y"], too_far("--in 300000y")),
        (vec!["--in", "99999999999999999999s"], too_far("--in 99999999999999999999s")),
        (vec!["--in", "101y"], too_far("--in 101y")),
        (vec!["--at", "9999-12-31T23:59:59Z"], too_far("--at 9999-12-31T23:59:59Z")),
        (vec!["--at", "9999-12-31 23:59"], too_far("--at 9999-12-31 23:59")),
        (vec!["--in", "1s", "--max-retries", "4294967295"],
         "error: `--max-retries 4294967295` must be 0-100, as `max_retries` in `[queue.retry]`\n"
             .into()),
    ];
    for (extra, message) in table {
        let args: Vec<&str> = enqueue.iter().copied().chain(extra).collect();
        let (status, err) = run_bounded(&p, &args);
        assert_eq!(status.code(), Some(1), "{args:?}: {status:?}: {err}");
        assert_eq!(err, message, "{args:?}");
    }
    let (status, err) = run_bounded(
        &p,
        &[
            "campaign",
            "create",
            "--name",
            "c",
            "--overdue-days",
            "4294967295",
        ],
    );
    assert_eq!(status.code(), Some(1), "{status:?}: {err}");
    assert_eq!(
        err,
        "error: `--overdue-days 4294967295` must be 0-3650 (ten years)\n"
    );
    // Nothing was queued by the refused commands; the largest accepted delay is.
    let (status, err) = run_bounded(&p, &[&enqueue[..], &["--in", "100y"]].concat());
    assert!(status.success(), "{err}");
    let out = p.cli(&["tasks", "list", "--format", "json"]);
    let tasks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
}

/// A project with output to show in every command: demo invoices, a campaign, and 2,000 runs
/// in the ledger (`history --format json` then prints far more than a pipe holds, 64 KiB).
async fn project_with_output() -> Project {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[queue.handlers.h]\nkind = \"noop\"\n\n\
         [[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\n",
    );
    let out = p.cli(&["demo"]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let out = p.cli(&["campaign", "create", "--name", "c", "--overdue-days", "0"]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let store = p.store().await;
    let instance: Arc<str> = Arc::from("test:1:1");
    let start = utc("2025-01-01T00:00:00Z");
    let runs: Vec<NewRun> = (0..2000)
        .map(|i| NewRun {
            id: Uuid::now_v7(),
            job_name: Arc::from("x"),
            scheduled_for: start + chrono::TimeDelta::minutes(i),
            trigger: RunTrigger::Schedule,
            status: Status::Missed,
            started_at: start + chrono::TimeDelta::minutes(i),
            instance: instance.clone(),
            error_message: Some("the daemon was down at this slot".into()),
            metadata: None,
            batch: None,
        })
        .collect();
    assert_eq!(store.insert_runs(&runs).await.unwrap().len(), 2000);
    store.close().await;
    p
}

/// The issue's case: `tickler history --format json | head -c 600`. The reader takes a few
/// bytes and goes away while tickler still has ~600 KB to write: tickler ends with status 0
/// and says nothing (before: `failed printing to stdout: Broken pipe`, a panic, status 101).
#[tokio::test]
async fn history_ends_quietly_when_its_reader_goes_away() {
    let p = project_with_output().await;
    let mut c = command(&p, &["history", "--format", "json", "--limit", "2000"]);
    let mut child = c.stdout(Stdio::piped()).spawn().expect("spawn tickler");
    let mut reader = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first[..], b"[\n  {\n    ");
    drop(reader);
    let (status, err) = wait_bounded(child, Duration::from_secs(60), "history");
    assert_eq!((status.code(), err.as_str()), (Some(0), ""));
}

/// Every command that prints, with its stdout a pipe nobody reads any more: each ends with
/// its own status (0 here) and nothing on stderr.
#[tokio::test]
async fn every_command_ends_quietly_on_a_closed_stdout() {
    let p = project_with_output().await;
    let commands: &[&[&str]] = &[
        &["check"],
        &["list"],
        &["list", "--format", "json"],
        &["print-config"],
        &["completions", "bash"],
        &["history"],
        &["history", "--format", "json"],
        &["tasks", "list"],
        &["tasks", "list", "--format", "json"],
        &["campaign", "list"],
        &["campaign", "show", "c"],
        &["migrate"],
        &["run-job", "x"],
        &["run-job", "x", "--dry-run"],
        &[
            "tasks",
            "enqueue",
            "--type",
            "custom",
            "--in",
            "1h",
            "--data",
            r#"{"handler":"h"}"#,
        ],
        &["--help"],
        &["--version"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut c = command(&p, args);
        // Logs of `run-job` are not the subject here; a panic message would still show.
        c.stdout(writer).env("TICKLER_LOG", "error");
        let child = c.spawn().expect("spawn tickler");
        drop(c);
        let (status, err) = wait_bounded(child, Duration::from_secs(60), &args.join(" "));
        assert_eq!((status.code(), err.as_str()), (Some(0), ""), "{args:?}");
    }
}

/// A migration that fails while no other process makes progress is final, and said once: here
/// a file that already holds a table of tickler's name, made by something else. The message
/// names the database, the migration and SQLite's reason, once (each of sqlx's errors prints
/// its source too, and the chain said the reason four times).
#[test]
fn a_migration_that_fails_on_its_own_is_reported_once() {
    let p = Project::sqlite();
    p.write_config("", "");
    let db = p.path().join("tickler.db");
    let status = Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE job_execution_logs (x INTEGER)")
        .status()
        .expect("sqlite3");
    assert!(status.success());
    let (status, err) = run_bounded(&p, &["migrate"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        format!(
            "error: cannot apply migrations to `sqlite://{}`: while executing migration 1: \
             error returned from database: (code: 1) table job_execution_logs already exists\n",
            db.display()
        )
    );
}
