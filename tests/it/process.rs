//! The real binary as a process: signals, kill -9, and the single-daemon lock on SQLite.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::helpers::{Project, TestDaemon, free_port, runs, signal, wait_for};

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

/// An idle timer loop goes round with each beat (it has no timer of its own under 60 s):
/// every heartbeat finds it turned since the beat before, however far off its jobs are, and it
/// keeps turning while the heartbeat is stuck on a database another process holds locked.
/// Before the loop followed the beat it woke on its own every 30 s, and a beat 4 s in found it
/// unturned since start-up.
#[tokio::test]
async fn an_idle_timer_loop_goes_round_with_each_beat_even_with_the_heartbeat_stuck() {
    let p = Project::sqlite();
    let port = free_port();
    p.write_config(
        "heartbeat_interval = \"1s\"",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[job]]\nname = \"far\"\nkind = \"noop\"\nschedule = \"0 3 1 1 *\"\n"
        ),
    );
    let mut child = spawn_daemon(&p);
    let store = p.store().await;
    let row = wait_for(
        "a heartbeat 4 s after start",
        Duration::from_secs(30),
        || async {
            store
                .daemons()
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.heartbeat_at - d.started_at >= chrono::TimeDelta::seconds(4))
        },
    )
    .await;
    let tick = row
        .loop_tick_at
        .expect("a daemon's heartbeat carries its loop tick");
    // The beat may be read before the loop turns for it: one interval, plus scheduling (on a
    // busy machine); a loop on its own timer would be 4 s behind.
    assert!(
        row.heartbeat_at - tick < chrono::TimeDelta::milliseconds(2500),
        "the loop last turned {} before the beat: {row:?}",
        row.heartbeat_at - tick
    );

    // Another process takes the write lock: the heartbeat waits on it (up to the 10 s busy
    // timeout); the loop's age, read from `/metrics` (reads are not blocked), stays a beat.
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    let mut lock = s.pool().acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let held = std::time::Instant::now();
    let held_at = chrono::Utc::now();
    let ages = std::cell::RefCell::new(vec![]);
    let worst = wait_for("6 s of the lock held", Duration::from_secs(30), || {
        let ages = &ages;
        async move {
            let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let age: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("tickler_loop_tick_age_seconds "))?
                .trim()
                .parse()
                .ok()?;
            ages.borrow_mut().push(age);
            (held.elapsed() >= Duration::from_secs(6))
                .then(|| ages.borrow().iter().cloned().fold(0.0, f64::max))
        }
    })
    .await;
    // No heartbeat got through meanwhile (the lock's own view: nobody else can commit).
    let beat: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(heartbeat_at) FROM tickler_instances")
            .fetch_one(&mut *lock)
            .await
            .unwrap();
    assert!(
        beat < held_at,
        "a heartbeat at {beat} passed the lock taken at {held_at}"
    );
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).await.success());
    let ages = ages.into_inner();
    assert!(ages.len() >= 10, "too few scrapes: {ages:?}");
    assert!(
        worst < 2.5,
        "the loop stopped turning with the heartbeat stuck: its age reached {worst} s in {} \
         scrapes over 6 s",
        ages.len()
    );
}

/// A start logs the next fire of the first 100 jobs and counts the rest in one line; a reload
/// logs the jobs it changed (100 at most, the same way) and the jobs it removed, and says
/// nothing of the others. journald keeps 10,000 lines of a service in 30 s by default (times 4
/// to 6 with the free disk space of a usual host): a start with 100,000 jobs logged a line
/// each, and journald dropped what came after them.
#[tokio::test]
async fn a_start_and_a_reload_list_a_bounded_number_of_jobs_and_count_the_rest() {
    let p = Project::sqlite();
    let jobs = |names: std::ops::Range<usize>, every: &str| {
        names
            .map(|i| {
                format!("[[job]]\nname = \"j{i:03}\"\nkind = \"noop\"\nevery = \"{every}\"\n\n")
            })
            .collect::<String>()
    };
    p.write_config("", &jobs(0..250, "1h"));
    let mut daemon = p.spawn_logged_daemon();
    let logged = |text: &'static str| {
        let log = p.daemon_log();
        async move { log.contains(text).then_some(()) }
    };
    wait_for("the start's last schedule line", Duration::from_secs(30), || {
        logged("150 more jobs scheduled, not listed one by one; `tickler list` shows each one's next fires")
    })
    .await;
    let count = |log: &str, text: &str| log.lines().filter(|l| l.contains(text)).count();
    let started = p.daemon_log();
    assert_eq!(count(&started, " INFO scheduled job=j"), 100, "{started}");
    assert!(started.contains(" INFO scheduled job=j099 "), "{started}");
    assert!(!started.contains("job=j100 "), "{started}");

    // Three jobs' intervals changed, 127 unchanged, 120 removed, one added.
    let changed = jobs(0..3, "2h") + &jobs(3..130, "1h");
    p.write_config(
        "",
        &(changed + "[[job]]\nname = \"new\"\nkind = \"noop\"\nevery = \"5m\"\n"),
    );
    signal(&daemon, libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(30), || {
        logged("config reloaded")
    })
    .await;
    let log = p.daemon_log();
    let reload = &log[started.len()..];
    assert_eq!(count(reload, " INFO scheduled job="), 4, "{reload}");
    for job in ["j000", "j001", "j002", "new"] {
        assert!(
            reload.contains(&format!(" INFO scheduled job={job} ")),
            "{reload}"
        );
    }
    assert_eq!(
        count(reload, "removed; a run in flight finishes job=j"),
        100,
        "{reload}"
    );
    assert!(
        reload.contains("20 more jobs removed, not listed one by one; a run in flight finishes"),
        "{reload}"
    );
    assert!(!reload.contains("more jobs scheduled"), "{reload}");
    signal(&daemon, libc::SIGTERM);
    assert!(wait_exit(&mut daemon).await.success(), "{}", p.daemon_log());
}

/// A daemon that adopts 150 slots left `pending` by a stopped process, of jobs now disabled,
/// records each one `missed` and logs the first 100 one by one and the rest in one line (each
/// is in the run history). A crash under 100,000 jobs logged a line a slot, past what journald
/// keeps of a service in 30 s.
#[tokio::test]
async fn missed_slots_past_a_hundred_are_counted_in_one_line() {
    let p = Project::sqlite();
    let jobs: String = (0..150)
        .map(|i| {
            format!(
                "[[job]]\nname = \"j{i:03}\"\nkind = \"noop\"\nevery = \"1d\"\nenabled = false\n\n"
            )
        })
        .collect();
    p.write_config("", &jobs);
    let store = p.store().await;
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    // As a daemon killed before their second came leaves them: owned by a process that is gone.
    let slot = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339();
    for i in 0..150 {
        sqlx::query(
            "INSERT INTO job_execution_logs (id, job_name, status, scheduled_for, \"trigger\", \
             instance) VALUES (?, ?, 'pending', ?, 'schedule', 'gone:1:0')",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(format!("j{i:03}"))
        .bind(&slot)
        .execute(s.pool())
        .await
        .unwrap();
    }
    let mut daemon = p.spawn_logged_daemon();
    wait_for(
        "the line counting the rest",
        Duration::from_secs(30),
        || {
            let log = p.daemon_log();
            async move {
                log.contains(
                    "50 more slots recorded `missed`, not listed one by one; `tickler history \
                 --status missed` shows them",
                )
                .then_some(())
            }
        },
    )
    .await;
    let log = p.daemon_log();
    let why = "missed: its daemon stopped before it ran, and the job is now disabled";
    assert_eq!(
        log.lines().filter(|l| l.contains(why)).count(),
        100,
        "{log}"
    );
    wait_for(
        "150 slots recorded missed",
        Duration::from_secs(30),
        || async {
            let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_execution_logs WHERE status = 'missed' AND error_message = ?",
        )
        .bind(why)
        .fetch_one(s.pool())
        .await
        .unwrap();
            (n == 150).then_some(())
        },
    )
    .await;
    signal(&daemon, libc::SIGTERM);
    assert!(wait_exit(&mut daemon).await.success(), "{}", p.daemon_log());
}
