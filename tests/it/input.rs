//! Bad input on the real binary: values that would overflow are refused with a message and an
//! exit status instead of a panic or a runaway daemon.
//!
//! Every process here runs bounded: an address-space limit (the old code grew to 24 GB on an
//! overflowing interval) and a deadline after which it is killed, by its own handle.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{BIN, Project};

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
