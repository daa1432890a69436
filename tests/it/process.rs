//! The real binary as a process: signals, kill -9, and the single-daemon lock on SQLite.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::helpers::{Project, TestDaemon, runs, signal, wait_for};

fn spawn_daemon(p: &Project) -> Child {
    p.daemon_command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tickler run")
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_for("the daemon to exit", Duration::from_secs(30), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await
}

#[tokio::test]
async fn kill_9_mid_run_leaves_an_abandoned_row_at_next_start() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"busy\"\nkind = \"command\"\ncommand = [\"sleep\", \"654.5\"]\nevery = \"1s\"\n",
    );
    let mut child = spawn_daemon(&p);
    let store = p.store().await;
    // Running, with its process group recorded (the `sleep` is the group's leader).
    let (row, pgid) = wait_for("a running row", Duration::from_secs(20), || async {
        runs(&store, "busy")
            .await
            .into_iter()
            .filter(|r| r.status == "running")
            .find_map(|r| {
                let pgid = r.metadata.as_ref()?["process_group"]["pgid"].as_i64()?;
                Some((r, pgid as i32))
            })
    })
    .await;
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    // The orphaned `sleep` is not ours to keep (the next daemon ends it too; this test is about
    // the row): ended by the group id the run recorded.
    // SAFETY: a signal to the process group this test's daemon started a moment ago.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }

    let d = TestDaemon::start(p.config(), chrono::Utc::now()).await;
    let after = runs(&store, "busy")
        .await
        .into_iter()
        .find(|r| r.id == row.id)
        .unwrap();
    assert_eq!(after.status, "abandoned");
    let instance = row.instance.unwrap();
    assert_eq!(
        after.error_message.unwrap(),
        format!("the daemon running it ({instance}) stopped without finishing it")
    );
    d.stop().await;
}

#[tokio::test]
async fn a_second_daemon_on_one_sqlite_file_is_refused_and_signals_work() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nevery = \"1m\"\n",
    );
    let mut first = spawn_daemon(&p);
    let store = p.store().await;
    wait_for(
        "the first daemon to register",
        Duration::from_secs(20),
        || async {
            let Store::Sqlite(s) = &store else {
                unreachable!()
            };
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickler_instances")
                .fetch_one(s.pool())
                .await
                .unwrap();
            (n == 1).then_some(())
        },
    )
    .await;

    let second = p.daemon_command().output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let db = p.path().join("tickler.db");
    let err = String::from_utf8_lossy(&second.stderr);
    let expected = format!(
        "error: another tickler daemon (pid {}) is using the SQLite database `{}` (its lock `{}.lock` \
         is held); SQLite allows one daemon: stop the other one, or use PostgreSQL to run several\n",
        first.id(),
        db.display(),
        db.display()
    );
    assert!(err.ends_with(&expected), "{err}");

    // Collect the daemon's log as it comes.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = first.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let logged = |text: &'static str| {
        let log = log.clone();
        async move { log.lock().unwrap().contains(text).then_some(()) }
    };

    // SIGHUP with a broken file: the problem is logged and the daemon keeps running.
    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nevery = \"1 fortnight\"\n",
    );
    signal(&first, libc::SIGHUP);
    wait_for("the refused reload", Duration::from_secs(10), || {
        logged("reload refused: the running schedule is unchanged")
    })
    .await;
    assert!(
        log.lock()
            .unwrap()
            .contains("invalid `every` interval `1 fortnight` for job `a`")
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "a broken reload must not stop the daemon"
    );
    signal(&first, libc::SIGTERM);
    let status = wait_exit(&mut first).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    wait_for("the last log line", Duration::from_secs(10), || {
        logged("tickler stopped")
    })
    .await;
}

use tickler::store::Store;
