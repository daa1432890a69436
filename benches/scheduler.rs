//! Scheduler benchmarks (issue "tickler core", Performance). Run them all with `bench/run.sh`;
//! each mode alone with `cargo bench --bench scheduler -- MODE ...`:
//!
//! - `lateness --jobs N --database URL`: N `noop` jobs due at the same second, run by a daemon
//!   in this process on the system clock. Prints fired/total and the lateness p50/p99/max
//!   read back from the ledger (`started_at - scheduled_for`, where `started_at` is the start
//!   of the job body, after its ledger row was committed).
//! - `idle --jobs N --seconds S [--database URL]`: the release binary with N jobs loaded and
//!   none due, and the task queue on (as shipped: no `[queue]` section); prints its RSS, CPU
//!   time and wakeups (context switches of all its threads) over S seconds. PostgreSQL: the
//!   database `tickler_bench_idle` next to URL's, dropped and created again.
//! - `wake --inserts N --moves M [--database URL]`: the release binary, idle with the queue on;
//!   this process (another process, as an application would) inserts N tasks due now, one at
//!   a time at random moments while the daemon sleeps, then M times moves a pending task due
//!   in an hour to now. Prints the start lateness of each kind (`executed_at`, the daemon's
//!   claim, minus `scheduled_for`, taken just before the commit), p50/p99/max.
//! - `floor --jobs N`: the floor under `lateness` (`bench/compare.sh`'s last column): N tokio
//!   tasks, on the same runtime as the daemon's, sleep until the same second and note how late
//!   they woke; no database, no ledger. Same line shape, `backend=floor`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use tickler::config;
use tickler::daemon::{self, Options, Signal};
use tickler::secret::DatabaseUrl;
use tickler::store::Store;
use tickler::time::SystemClock;
use tokio::sync::{mpsc, oneshot};

mod common;
use common::pg_url_with_db;

use common::arg;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let jobs: usize = arg(&args, "--jobs")
        .and_then(|j| j.parse().ok())
        .unwrap_or(1000);
    if args.iter().any(|a| a == "idle") {
        let seconds = arg(&args, "--seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        idle(jobs, seconds, arg(&args, "--database").as_deref());
    } else if args.iter().any(|a| a == "wake") {
        let num = |name: &str, default: usize| {
            arg(&args, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(wake(
            num("--inserts", 50),
            num("--moves", 10),
            arg(&args, "--database").as_deref(),
        ));
    } else if args.iter().any(|a| a == "floor") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(floor(jobs));
    } else if args.iter().any(|a| a == "lateness") {
        let dir = tempfile::tempdir().unwrap();
        let url = arg(&args, "--database")
            .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(lateness(jobs, &url, dir.path()));
    } else {
        eprintln!(
            "usage: cargo bench --bench scheduler -- lateness|floor|idle|wake [--jobs N] [--database URL] \
             [--seconds S] [--inserts N] [--moves M]"
        );
    }
}

fn config_text(url: &str, state: &std::path::Path, jobs: usize, trigger: &str) -> String {
    let mut text = format!(
        "[daemon]\ndatabase_url = \"{url}\"\nstate_dir = \"{}\"\nmax_concurrent = {}\n\n",
        state.display(),
        jobs.max(1)
    );
    for i in 0..jobs {
        text.push_str(&format!(
            "[[job]]\nname = \"job-{i}\"\nkind = \"noop\"\n{trigger}\n\n"
        ));
    }
    text
}

async fn lateness(jobs: usize, url: &str, state: &std::path::Path) {
    // Every job fires on the same 15-second boundaries; the first one after start-up is measured.
    let path = state.join("config.toml");
    std::fs::write(&path, config_text(url, state, jobs, "every = \"15s\"")).unwrap();
    let config = config::load(&path).unwrap();
    let store = Store::connect(&DatabaseUrl::new(url)).await.unwrap();
    store.migrate().await.unwrap();
    if let Store::Postgres(pg) = &store {
        sqlx::query("TRUNCATE job_execution_logs")
            .execute(pg.pool())
            .await
            .unwrap();
    }
    let (tx, rx) = mpsc::channel(1);
    let (ready_tx, ready_rx) = oneshot::channel();
    let options = Options {
        clock: Arc::new(SystemClock::default()),
        ready: Some(ready_tx),
        ..Options::default()
    };
    let daemon = tokio::spawn(daemon::run(config, rx, options));
    ready_rx.await.expect("daemon ready");
    let secs = Utc::now().timestamp();
    let first = chrono::DateTime::from_timestamp(secs - secs.rem_euclid(15) + 15, 0).unwrap();
    // The first fire after start-up pays for cold statement caches; the second is the steady
    // state of a daemon that has been running.
    let mut results = vec![];
    for (label, slot) in [("first", first), ("steady", first + TimeDelta::seconds(15))] {
        let deadline = Instant::now() + Duration::from_secs(120);
        // Not a look at the ledger until a second after the slot: each look reads every row
        // of the slot, CPU the fires being measured would otherwise share.
        let quiet = (slot + TimeDelta::seconds(1) - Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(quiet).await;
        let (fired, mut late_ms) = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let rows = slot_rows(&store, slot).await;
            let done = rows
                .iter()
                .filter(|(status, _)| status != "running" && status != "pending")
                .count();
            if (done == jobs && Utc::now() > slot) || Instant::now() > deadline {
                let fired = rows.iter().filter(|(s, _)| s == "succeeded").count();
                if fired < jobs {
                    // What became of the others: the first thing to know when a fire falls short.
                    let mut other = std::collections::BTreeMap::new();
                    for (status, _) in rows.iter().filter(|(s, _)| s != "succeeded") {
                        *other.entry(status.as_str()).or_insert(0usize) += 1;
                    }
                    println!(
                        "shortfall backend={} jobs={jobs} fire={label}: {fired} succeeded, {} rows in all, the rest {other:?}",
                        backend_of(url),
                        rows.len()
                    );
                }
                break (
                    fired,
                    rows.into_iter().map(|(_, l)| l).collect::<Vec<f64>>(),
                );
            }
        };
        late_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        results.push((label, fired, late_ms));
    }
    tx.send(Signal::Shutdown).await.unwrap();
    daemon.await.unwrap().unwrap();
    print_lateness(backend_of(url), jobs, results);
}

/// The next 15-second boundary at least 2 s ahead (the daemon is ready before it).
fn next_boundary() -> chrono::DateTime<Utc> {
    let secs = Utc::now().timestamp() + 2;
    chrono::DateTime::from_timestamp(secs - secs.rem_euclid(15) + 15, 0).unwrap()
}

async fn floor(jobs: usize) {
    let first = next_boundary();
    let mut results = vec![];
    for (label, slot) in [("first", first), ("steady", first + TimeDelta::seconds(15))] {
        let ahead = (slot - Utc::now()).to_std().unwrap_or_default();
        let at = tokio::time::Instant::now() + ahead;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..jobs {
            set.spawn(async move {
                tokio::time::sleep_until(at).await;
                let late = Utc::now() - slot;
                late.num_microseconds().unwrap_or(0) as f64 / 1000.0
            });
        }
        let mut late_ms = set.join_all().await;
        late_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        results.push((label, jobs, late_ms));
    }
    print_lateness("floor", jobs, results);
}

fn print_lateness(backend: &str, jobs: usize, results: Vec<(&str, usize, Vec<f64>)>) {
    for (label, fired, late_ms) in results {
        let pct = |p: f64| {
            late_ms
                .get(((late_ms.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "lateness  backend={backend:<8} jobs={jobs:<6} fire={label:<6} fired={fired}/{jobs}  p50={:.1}ms  p99={:.1}ms  max={:.1}ms",
            pct(0.5),
            pct(0.99),
            late_ms.last().copied().unwrap_or(f64::NAN)
        );
    }
}

/// (status, lateness in ms) of every row of `slot`.
async fn slot_rows(store: &Store, slot: chrono::DateTime<Utc>) -> Vec<(String, f64)> {
    let rows: Vec<(String, Option<chrono::DateTime<Utc>>)> = match store {
        Store::Sqlite(s) => sqlx::query_as(
            "SELECT status, started_at FROM job_execution_logs WHERE scheduled_for = ?",
        )
        .bind(slot)
        .fetch_all(s.pool())
        .await
        .unwrap(),
        Store::Postgres(s) => sqlx::query_as(
            "SELECT status, started_at FROM job_execution_logs WHERE scheduled_for = $1",
        )
        .bind(slot)
        .fetch_all(s.pool())
        .await
        .unwrap(),
    };
    rows.into_iter()
        .map(|(status, started)| {
            let late = started.map(|s| s - slot).unwrap_or(TimeDelta::zero());
            (status, late.num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect()
}

fn proc_numbers(pid: u32) -> (u64, f64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks;
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let s = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for l in s.lines() {
            if l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
            {
                switches += l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    (rss_kb, cpu, switches)
}

/// A fresh database `db` next to the PostgreSQL `url`'s, or a SQLite file in `dir`; its URL.
fn fresh_database(url: Option<&str>, db: &str, dir: &std::path::Path) -> String {
    let Some(url) = url else {
        return format!("sqlite://{}/{db}.db", dir.display());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    pg_url_with_db(url, db)
}

fn backend_of(url: &str) -> &'static str {
    if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    }
}

fn idle(jobs: usize, seconds: u64, database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(database, "tickler_bench_idle", dir.path());
    // Loaded but not due during the measurement: half yearly crons, half daily intervals.
    let mut text = config_text(&url, dir.path(), 0, "");
    for i in 0..jobs {
        let trigger = if i % 2 == 0 {
            "schedule = \"0 3 1 1 *\""
        } else {
            "every = \"1d\""
        };
        text.push_str(&format!(
            "[[job]]\nname = \"job-{i}\"\nkind = \"noop\"\n{trigger}\n\n"
        ));
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickler"))
        .args(["run", "--config"])
        .arg(&path)
        .env("TICKLER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Let start-up (migrations, loading) finish before measuring the idle state.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon exited during start-up"
    );
    let (_, cpu0, sw0) = proc_numbers(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    let (rss_kb, cpu1, sw1) = proc_numbers(pid);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon exited during the measurement"
    );
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    child.wait().unwrap();
    println!(
        "idle      backend={:<8} jobs={jobs:<6} seconds={seconds}  rss={:.1}MiB  cpu={:.3}s  wakeups={:.2}/s",
        backend_of(&url),
        rss_kb as f64 / 1024.0,
        cpu1 - cpu0,
        (sw1 - sw0) as f64 / seconds as f64
    );
}

/// See the module's comment: how soon a task that another process inserts, or moves earlier,
/// starts in an idle daemon.
async fn wake(inserts: usize, moves: usize, database: Option<&str>) {
    use tickler::queue::{QueueConfig, TaskRequest, TaskType};
    let dir = tempfile::tempdir().unwrap();
    let url = {
        let (database, dir) = (database.map(String::from), dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            fresh_database(database.as_deref(), "tickler_bench_wake", &dir)
        })
        .await
        .unwrap()
    };
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "{}[queue.handlers.nop]\nkind = \"noop\"\n",
            config_text(&url, dir.path(), 0, "")
        ),
    )
    .unwrap();
    let store = Store::connect(&DatabaseUrl::new(url.clone()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickler"))
        .args(["run", "--config"])
        .arg(&path)
        .env("TICKLER_LOG", "warn")
        .env_remove("TICKLER_DATABASE_URL")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.instances().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queue = QueueConfig::default();
    let task = |at| {
        let mut r = TaskRequest::new(TaskType::Custom, at);
        r.data = Some(serde_json::json!({ "handler": "nop" }));
        r.into_row(&queue)
    };
    let done = |id: String| {
        let store = store.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let t = store.task(&id).await.unwrap().unwrap();
                if t.status == "completed" {
                    let late = t.executed_at.unwrap() - t.scheduled_for;
                    return late.num_microseconds().unwrap() as f64 / 1000.0;
                }
                assert!(
                    Instant::now() < deadline,
                    "task {id} did not run within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // A random pause before each, so the daemon is asleep and nothing lines up with its timers.
    let pause = || tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(0..400)));
    let mut inserted = vec![];
    for _ in 0..inserts {
        pause().await;
        let row = task(Utc::now());
        store
            .enqueue_tasks(std::slice::from_ref(&row), Utc::now())
            .await
            .unwrap();
        inserted.push(done(row.id).await);
    }
    let mut moved = vec![];
    for _ in 0..moves {
        let row = task(Utc::now() + TimeDelta::hours(1));
        store
            .enqueue_tasks(std::slice::from_ref(&row), Utc::now())
            .await
            .unwrap();
        pause().await;
        let now = Utc::now();
        let sql = store.sql("UPDATE scheduled_tasks SET scheduled_for = $1 WHERE id = $2::uuid");
        match &store {
            Store::Sqlite(s) => sqlx::query(&sql)
                .bind(tickler::store::queue::task_time(now))
                .bind(&row.id)
                .execute(s.pool())
                .await
                .map(drop),
            Store::Postgres(s) => sqlx::query(&sql)
                .bind(now)
                .bind(&row.id)
                .execute(s.pool())
                .await
                .map(drop),
        }
        .unwrap();
        moved.push(done(row.id).await);
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap();
    store.close().await;
    for (what, mut late) in [("insert", inserted), ("moved", moved)] {
        if late.is_empty() {
            continue;
        }
        late.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |p: f64| late[((late.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "wake      backend={:<8} {what:<6} n={:<4} p50={:.1}ms  p99={:.1}ms  max={:.1}ms",
            backend_of(&url),
            late.len(),
            pct(0.5),
            pct(0.99),
            late[late.len() - 1]
        );
    }
}
