//! Task queue throughput and lateness (issue 4, Performance): a burn-down of 100,000
//! pre-inserted no-op `custom` tasks, then a steady offered load, each run by real daemons
//! (`tickler run` processes) on PostgreSQL with one and with two daemons, and on SQLite (one
//! daemon: SQLite allows no more). Targets: >= 20,000 tasks/s burn-down on PostgreSQL, start
//! lateness p99 <= 50 ms under 1,000 tasks/s offered, and no task run twice.
//!
//! `cargo bench --bench queue [-- OPTIONS]`; `bench/run.sh queue [OPTIONS]` runs it against a
//! throwaway PostgreSQL cluster started there.
//!
//! - PostgreSQL: `TICKLER_BENCH_POSTGRES_URL`, an admin URL (`bench/run.sh` starts a throwaway
//!   cluster with PostgreSQL's default settings, fsync and synchronous_commit on, except
//!   `max_connections = 200`); the database `tickler_bench_queue` next to it is dropped and
//!   created again for every run.
//! - SQLite: a fresh file in a temporary directory for every run.
//! - The daemons are the release binary of this package (`CARGO_BIN_EXE_tickler`, built by
//!   `cargo bench`), started as `tickler run --config X` with `TICKLER_LOG=warn`, each with its
//!   own config and state directory: no `[[job]]`, `[queue] concurrency` and `batch` as set by
//!   `--settings`, and `[queue.handlers.nop] kind = "noop"`. Every task is `custom` with data
//!   `{"handler": "nop"}`.
//!
//! One run of a setup:
//!
//! 1. Burn-down: `--tasks` tasks (100,000) are inserted with `Store::enqueue_tasks`, 2,000 per
//!    transaction, due in the past (1 ms apart, in insert order); PostgreSQL gets an `ANALYZE`
//!    (autovacuum would analyze a table this size within a minute). Then the daemons start.
//!    The figure is `tasks / (max(completed_at) - min(executed_at))`, from the database: the
//!    daemons' start-up is not counted. `wall s` is from spawning the daemons to this process
//!    seeing no task left `pending` or `executing` (polled every 250 ms), so it includes the
//!    start-up (`startup s`: spawn to the first `executed_at`).
//! 2. Steady load, on the same daemons, now idle: for `--seconds` (20) this process inserts
//!    `--rate` (1,000) tasks per second, every 10 ms the tasks due by then, task `i` scheduled
//!    at exactly `t0 + lead + i / rate` (`--lead`, 200 ms: inserted about `lead` before it is
//!    due; `--lead 0` measures tasks due at once, so the wake-up after an insert). Once all ran,
//!    the start lateness of each is `executed_at - scheduled_for` (`executed_at` is the claiming
//!    daemon's clock when it claimed; the same host, so the same clock). The handler starts
//!    after the claim statement returns, so `end` lateness (`completed_at - scheduled_for`,
//!    taken when the finish is written) is given too: the real start lies between the two.
//! 3. Checks, which fail the bench when broken: every task `completed`, none with
//!    `attempts <> 1` (`attempts` counts claims: a task run twice shows 2), the daemons
//!    exiting cleanly on SIGTERM. Reported: tasks run by each daemon (`lease_owner` keeps the
//!    last owner), lines the daemons logged (at `warn` and above), CPU of the daemons and of
//!    PostgreSQL per task (`/proc`), the host's busy CPU (two cores at 100 % each is 200 %),
//!    the claim and finish statements that did the work (a claim stamps its tasks with one
//!    `executed_at`, a finish batch with one `completed_at`), PostgreSQL's transactions per
//!    steady task, `pg_stat_user_tables` (dead tuples, autovacuum) and SQLite's WAL size.
//!
//! Options:
//! - `--setups pg1,pg2,sqlite` (default all three).
//! - `--settings C:B,...`: `[queue] concurrency` C and `batch` B (default `256:128`, the
//!   defaults of `[queue]`).
//! - `--repeat N` (2): runs of each setup and setting, interleaved.
//! - `--tasks N` (100000), `--rate R` (1000), `--seconds S` (20), `--lead MS,...` (200).
//! - `--sqlite-checkpoint MS`: an experiment: during the steady load this process runs
//!   `PRAGMA wal_checkpoint(PASSIVE)` every MS, so the WAL never reaches `wal_autocheckpoint`
//!   and no commit of the daemon has to checkpoint it. Labelled in the results.
//! - `--poll DURATION`: `[queue] poll` of the daemons (default: not set, so 5 s): on SQLite, how
//!   often a runner looks for tasks inserted by another process (this one) when inotify cannot
//!   be had; otherwise unused (the kernel reports the writes).
//! - `--pg-set NAME=VALUE,...`: `ALTER DATABASE ... SET` for the run's database, so the
//!   daemons' sessions use it (e.g. `synchronous_commit=off`); labelled in the results. Not
//!   for headline figures.
//! - `--no-plans`: skips the `EXPLAIN (ANALYZE, BUFFERS)` of the claim, the finish of the
//!   tasks it claimed, and the runner's `next_task_time` query, run before and after the first
//!   PostgreSQL burn-down in a rolled-back transaction (copies of the store's texts).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::json;
use tickler::queue::{QueueConfig, TaskRequest, TaskType};
use tickler::secret::DatabaseUrl;
use tickler::store::Store;
use tickler::store::queue::{CLAIM_PG, FINISH, NEXT_TASK, NewTask, TaskFinish};

mod common;
use common::{arg, host_busy, pg_url_with_db, postgres_cpu, proc_cpu};

const PG_DB: &str = "tickler_bench_queue";
const BIN: &str = env!("CARGO_BIN_EXE_tickler");

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match arg(args, name) {
        None => default,
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value `{v}` for {name}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    backend: Backend,
    daemons: usize,
}

impl Setup {
    fn label(&self) -> String {
        match self.backend {
            Backend::Postgres => format!("postgres, {} daemon(s)", self.daemons),
            Backend::Sqlite => "sqlite, 1 daemon".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Setting {
    concurrency: usize,
    batch: usize,
}

struct Opts {
    tasks: usize,
    rate: f64,
    seconds: f64,
    leads: Vec<u64>,
    pg_set: Vec<(String, String)>,
    /// `--sqlite-checkpoint MS`: this process checkpoints SQLite's WAL every MS during the
    /// steady load.
    sqlite_checkpoint: Option<u64>,
    /// `[queue] poll`, when set.
    poll: Option<String>,
    plans: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let setups: Vec<Setup> = arg(&args, "--setups")
        .unwrap_or_else(|| "pg1,pg2,sqlite".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.trim() {
            "pg1" => Setup {
                backend: Backend::Postgres,
                daemons: 1,
            },
            "pg2" => Setup {
                backend: Backend::Postgres,
                daemons: 2,
            },
            "sqlite" => Setup {
                backend: Backend::Sqlite,
                daemons: 1,
            },
            other => panic!("unknown setup `{other}`: write pg1, pg2 or sqlite"),
        })
        .collect();
    let settings: Vec<Setting> = arg(&args, "--settings")
        .unwrap_or_else(|| "256:128".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (c, b) = s
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("bad setting `{s}`: write CONCURRENCY:BATCH"));
            Setting {
                concurrency: c.parse().expect("concurrency"),
                batch: b.parse().expect("batch"),
            }
        })
        .collect();
    let repeat: usize = num(&args, "--repeat", 2);
    let opts = Opts {
        tasks: num(&args, "--tasks", 100_000),
        rate: num(&args, "--rate", 1000.0),
        seconds: num(&args, "--seconds", 20.0),
        leads: arg(&args, "--lead")
            .unwrap_or_else(|| "200".into())
            .split(',')
            .map(|l| l.trim().parse().expect("--lead in milliseconds"))
            .collect(),
        pg_set: arg(&args, "--pg-set")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                let (k, v) = s.split_once('=').expect("--pg-set NAME=VALUE");
                assert!(
                    k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'),
                    "--pg-set takes plain names and values"
                );
                (k.to_string(), v.to_string())
            })
            .collect(),
        poll: arg(&args, "--poll"),
        sqlite_checkpoint: arg(&args, "--sqlite-checkpoint")
            .map(|v| v.parse().expect("--sqlite-checkpoint in milliseconds")),
        plans: !args.iter().any(|a| a == "--no-plans"),
    };
    assert!(
        std::path::Path::new(BIN).is_file(),
        "no daemon binary at {BIN}"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg_needed = setups.iter().any(|s| s.backend == Backend::Postgres);
    let admin = pg_needed.then(|| {
        std::env::var("TICKLER_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .expect(
                "set TICKLER_BENCH_POSTGRES_URL to an admin URL, or run `bench/run.sh queue`, \
                 which starts a throwaway cluster",
            )
    });
    let pg_version = admin.as_deref().map(|a| rt.block_on(pg_version(a)));
    println!(
        "queue: {} tasks burn-down, then {} tasks/s for {} s (lead {:?} ms); setups: {}; \
         settings: {}; {repeat} run(s) each; {} cores; daemon binary {BIN}{}",
        opts.tasks,
        opts.rate,
        opts.seconds,
        opts.leads,
        setups
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join("; "),
        settings
            .iter()
            .map(|s| format!("concurrency={} batch={}", s.concurrency, s.batch))
            .collect::<Vec<_>>()
            .join(", "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match &pg_version {
            Some(v) => format!("; {v}"),
            None => String::new(),
        }
    );
    if let Some(ms) = opts.sqlite_checkpoint {
        println!(
            "*** experiment: this process checkpoints SQLite's WAL every {ms} ms during the steady \
             load ***"
        );
    }
    if let Some(p) = &opts.poll {
        println!("[queue] poll = \"{p}\" (not the default)");
    }
    if !opts.pg_set.is_empty() {
        println!(
            "*** PostgreSQL settings changed for these runs (not PostgreSQL's defaults): {} ***",
            opts.pg_set
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut results = vec![];
    let mut plans_done = !opts.plans;
    for r in 1..=repeat {
        for setup in &setups {
            for setting in &settings {
                let explain = setup.backend == Backend::Postgres && !plans_done;
                plans_done |= explain;
                let res = rt.block_on(one_run(
                    *setup,
                    *setting,
                    r,
                    admin.as_deref(),
                    &opts,
                    explain,
                ));
                results.push(res);
            }
        }
    }
    print_results(&results, &opts);
}

// ---------------------------------------------------------------------------------------------
// One run

struct Lateness {
    lead_ms: u64,
    tasks: usize,
    offered: f64,
    /// Tasks whose insert committed after their `scheduled_for` (the producer fell behind).
    inserted_late: usize,
    insert_ms_max: f64,
    start: Pcts,
    end: Pcts,
    per_daemon: Vec<usize>,
    daemon_cpu_pct: f64,
    pg_cpu_pct: Option<f64>,
    host_busy_pct: f64,
}

struct RunResult {
    setup: Setup,
    setting: Setting,
    run: usize,
    db_seconds: f64,
    rate: f64,
    wall_seconds: f64,
    startup_seconds: f64,
    per_daemon: Vec<usize>,
    daemon_cpu_us: f64,
    pg_cpu_us: Option<f64>,
    host_busy_pct: f64,
    lateness: Vec<Lateness>,
    warnings: usize,
}

async fn one_run(
    setup: Setup,
    setting: Setting,
    run: usize,
    admin: Option<&str>,
    opts: &Opts,
    explain: bool,
) -> RunResult {
    let label = format!(
        "{} concurrency={} batch={} run {run}",
        setup.label(),
        setting.concurrency,
        setting.batch
    );
    println!("\n=== {label} ===");
    let dir = tempfile::Builder::new()
        .prefix("tickler-bench-queue-")
        .tempdir()
        .unwrap();
    let url = match setup.backend {
        Backend::Sqlite => format!("sqlite://{}/queue.db", dir.path().display()),
        Backend::Postgres => {
            fresh_pg_database(admin.expect("a PostgreSQL URL"), &opts.pg_set).await
        }
    };
    let store = Store::connect(&DatabaseUrl::new(url.clone()))
        .await
        .unwrap();
    store.migrate().await.unwrap();

    // 1. Burn-down.
    let t = Instant::now();
    let base = Utc::now() - TimeDelta::seconds(200);
    let queue = QueueConfig::default();
    let rows: Vec<NewTask> = (0..opts.tasks)
        .map(|i| task(base + TimeDelta::milliseconds(i as i64), &queue))
        .collect();
    for chunk in rows.chunks(2000) {
        store.enqueue_tasks(chunk, Utc::now()).await.unwrap();
    }
    drop(rows);
    if let Store::Postgres(pg) = &store {
        sqlx::query("ANALYZE scheduled_tasks")
            .execute(pg.pool())
            .await
            .unwrap();
    }
    println!(
        "inserted {} due tasks in {:.1}s (not measured)",
        opts.tasks,
        t.elapsed().as_secs_f64()
    );
    if explain {
        print_plans(&store, setting, "before the burn-down, every task pending").await;
    }

    let daemons: Vec<Daemon> = (0..setup.daemons)
        .map(|n| Daemon::start(dir.path(), n, &url, setting, opts.poll.as_deref()))
        .collect();
    let spawned = Utc::now();
    let spawned_i = Instant::now();
    let pids: Vec<u32> = daemons.iter().map(|d| d.child.id()).collect();
    let w0 = pg_wal(&store).await;
    let cpu0 = (pids_cpu(&pids), postgres_cpu(), host_busy());
    let deadline = Duration::from_secs(600);
    let mut last = (usize::MAX, Instant::now());
    let mut daemons = daemons;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for d in &mut daemons {
            d.check_alive();
        }
        let left = unfinished(&store).await;
        if left == 0 {
            break;
        }
        if left != last.0 {
            last = (left, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(60),
            "{label}: no progress for 60 s, {left} tasks unfinished; daemon logs: {}",
            logs_tail(&daemons)
        );
        assert!(
            spawned_i.elapsed() < deadline,
            "{label}: the burn-down took over {deadline:?}"
        );
    }
    let wall_seconds = spawned_i.elapsed().as_secs_f64();
    let cpu1 = (pids_cpu(&pids), postgres_cpu(), host_busy());
    if let (Some(a), Some(b)) = (w0, pg_wal(&store).await) {
        println!("{}", wal_line("during the burn-down", a, b, opts.tasks));
    }
    let all = task_rows(&store).await;
    let burn = check(&label, "burn-down", &all, opts.tasks, &pids);
    let (claims, finishes) = statements(&all.iter().collect::<Vec<_>>());
    println!(
        "burn-down statements: {claims} claims ({:.0} tasks each), {finishes} finish batches \
         ({:.0} tasks each)",
        opts.tasks as f64 / claims as f64,
        opts.tasks as f64 / finishes as f64
    );
    let first = all.iter().filter_map(|r| r.executed_at).min().unwrap();
    let end = all.iter().filter_map(|r| r.completed_at).max().unwrap();
    let db_seconds = (end - first).as_seconds_f64();
    let n = opts.tasks as f64;
    let busy_span = wall_seconds; // the CPU was sampled from spawn to the last poll
    let result_cpu = (
        (cpu1.0 - cpu0.0) / n,
        (setup.backend == Backend::Postgres).then(|| (cpu1.1 - cpu0.1) / n),
        (cpu1.2 - cpu0.2) / (busy_span * 1e6) * 100.0,
    );
    println!(
        "burn-down: {} tasks in {db_seconds:.2}s (first executed_at .. last completed_at) = {:.0} \
         tasks/s; wall {wall_seconds:.2}s from spawn (first claim {:.2}s after spawn); per \
         daemon {:?}; CPU per task: daemons {:.1} µs, postgres {}; host busy {:.0}%",
        opts.tasks,
        n / db_seconds,
        (first - spawned).as_seconds_f64(),
        burn,
        result_cpu.0,
        result_cpu
            .1
            .map_or("-".to_string(), |v| format!("{v:.1} µs")),
        result_cpu.2
    );
    pg_table_stats(&store, "after the burn-down", spawned).await;
    wal_size(dir.path(), "after the burn-down");
    if explain {
        print_plans(&store, setting, "after the burn-down, nothing pending").await;
    }

    // 2. Steady load, once per lead.
    let mut lateness = vec![];
    let mut expected = opts.tasks;
    for &lead_ms in &opts.leads {
        let x0 = pg_xacts(&store).await;
        let k0 = pg_checkpoints(&store).await;
        let w0 = pg_wal(&store).await;
        let checkpointer = match (&store, opts.sqlite_checkpoint) {
            (Store::Sqlite(s), Some(ms)) => {
                let pool = s.pool().clone();
                Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                            .execute(&pool)
                            .await;
                    }
                }))
            }
            _ => None,
        };
        let c0 = (pids_cpu(&pids), postgres_cpu(), host_busy(), Instant::now());
        let produced = produce(&store, opts.rate, opts.seconds, lead_ms).await;
        let c1 = (pids_cpu(&pids), postgres_cpu(), host_busy(), Instant::now());
        let x1 = pg_xacts(&store).await;
        if let Some(c) = checkpointer {
            c.abort();
        }
        if let (Some(a), Some(b)) = (w0, pg_wal(&store).await) {
            println!(
                "{}",
                wal_line("during the steady load", a, b, produced.tasks)
            );
        }
        if let (Some(a), Some(b)) = (k0, pg_checkpoints(&store).await) {
            println!(
                "PostgreSQL checkpoints during the steady load: {} timed, {} requested ({} \
                 buffers written by them, as pg_stat_bgwriter reports)",
                b.0 - a.0,
                b.1 - a.1,
                b.2 - a.2
            );
        }
        expected += produced.tasks;
        let wait = Instant::now();
        loop {
            for d in &mut daemons {
                d.check_alive();
            }
            if unfinished(&store).await == 0 {
                break;
            }
            assert!(
                wait.elapsed() < Duration::from_secs(120),
                "{label}: steady tasks still unfinished 120 s after the producer stopped; \
                 daemon logs: {}",
                logs_tail(&daemons)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all = task_rows(&store).await;
        let what = format!("steady load, lead {lead_ms} ms");
        check(&label, &what, &all, expected, &pids);
        let steady: Vec<&TaskState> = all
            .iter()
            .filter(|r| r.scheduled_for >= produced.first && r.scheduled_for <= produced.last)
            .collect();
        assert_eq!(
            steady.len(),
            produced.tasks,
            "{label}: {what}: the steady tasks are not all found"
        );
        let ms = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).as_seconds_f64() * 1e3;
        let start = Pcts::of(
            steady
                .iter()
                .map(|r| ms(r.executed_at.unwrap(), r.scheduled_for))
                .collect(),
        );
        let end = Pcts::of(
            steady
                .iter()
                .map(|r| ms(r.completed_at.unwrap(), r.scheduled_for))
                .collect(),
        );
        let per_daemon = per_daemon(&steady, &pids);
        let (claims, finishes) = statements(&steady);
        println!(
            "steady statements: {claims} claims that took tasks ({:.1} tasks each), {finishes} \
             finish batches ({:.1} each){}",
            steady.len() as f64 / claims as f64,
            steady.len() as f64 / finishes as f64,
            match (x0, x1) {
                (Some(a), Some(b)) => format!(
                    "; PostgreSQL transactions over the phase, all clients, about {:.1} per task",
                    (b - a) as f64 / steady.len() as f64
                ),
                _ => String::new(),
            }
        );
        println!(
            "start lateness by second of the steady phase (max ms): {}",
            by_second(&steady, produced.first)
        );
        let span = (c1.3 - c0.3).as_secs_f64();
        let l = Lateness {
            lead_ms,
            tasks: produced.tasks,
            offered: produced.tasks as f64 / produced.seconds,
            inserted_late: produced.inserted_late,
            insert_ms_max: produced.insert_ms_max,
            start,
            end,
            per_daemon,
            daemon_cpu_pct: (c1.0 - c0.0) / (span * 1e6) * 100.0,
            pg_cpu_pct: (setup.backend == Backend::Postgres)
                .then(|| (c1.1 - c0.1) / (span * 1e6) * 100.0),
            host_busy_pct: (c1.2 - c0.2) / (span * 1e6) * 100.0,
        };
        println!(
            "steady, lead {lead_ms} ms: {} tasks at {:.0}/s offered ({} inserted after their \
             time, slowest insert {:.1} ms); start lateness p50 {:.1} / p99 {:.1} / max {:.1} ms; \
             end lateness p50 {:.1} / p99 {:.1} / max {:.1} ms; per daemon {:?}; CPU: daemons \
             {:.0}%, postgres {}, host busy {:.0}%",
            l.tasks,
            l.offered,
            l.inserted_late,
            l.insert_ms_max,
            l.start.p50,
            l.start.p99,
            l.start.max,
            l.end.p50,
            l.end.p99,
            l.end.max,
            l.per_daemon,
            l.daemon_cpu_pct,
            l.pg_cpu_pct.map_or("-".to_string(), |v| format!("{v:.0}%")),
            l.host_busy_pct
        );
        lateness.push(l);
    }

    // 3. Stop, and look at what the daemons logged.
    let mut warnings = 0;
    for d in daemons {
        warnings += d.stop(&label);
    }
    pg_table_stats(&store, "at the end", spawned).await;
    wal_size(dir.path(), "at the end");
    store.close().await;
    RunResult {
        setup,
        setting,
        run,
        db_seconds,
        rate: n / db_seconds,
        wall_seconds,
        startup_seconds: (first - spawned).as_seconds_f64(),
        per_daemon: burn,
        daemon_cpu_us: result_cpu.0,
        pg_cpu_us: result_cpu.1,
        host_busy_pct: result_cpu.2,
        lateness,
        warnings,
    }
}

fn task(at: DateTime<Utc>, queue: &QueueConfig) -> NewTask {
    let mut r = TaskRequest::new(TaskType::Custom, at);
    r.data = Some(json!({ "handler": "nop" }));
    r.into_row(queue)
}

struct Produced {
    tasks: usize,
    seconds: f64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    inserted_late: usize,
    insert_ms_max: f64,
}

/// Inserts `rate` tasks a second for `seconds`, every 10 ms those due by then; task `i` is
/// scheduled at `t0 + lead + i / rate`.
async fn produce(store: &Store, rate: f64, seconds: f64, lead_ms: u64) -> Produced {
    let queue = QueueConfig::default();
    let total = (rate * seconds).round() as usize;
    let start = Instant::now();
    // Whole microseconds: PostgreSQL keeps no more.
    let t0 = (Utc::now() + TimeDelta::milliseconds(lead_ms as i64)).trunc_subsecs(6);
    let at = |i: usize| t0 + TimeDelta::microseconds((i as f64 * 1e6 / rate).round() as i64);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut next, mut late, mut slowest) = (0usize, 0usize, 0f64);
    while next < total {
        tick.tick().await;
        let upto = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
        if upto <= next {
            continue;
        }
        let rows: Vec<NewTask> = (next..upto).map(|i| task(at(i), &queue)).collect();
        let t = Instant::now();
        store
            .enqueue_tasks(&rows, Utc::now())
            .await
            .expect("inserting steady tasks");
        slowest = slowest.max(t.elapsed().as_secs_f64() * 1e3);
        let committed = Utc::now();
        late += (next..upto).filter(|&i| at(i) < committed).count();
        next = upto;
    }
    Produced {
        tasks: total,
        seconds: start.elapsed().as_secs_f64(),
        first: at(0),
        last: at(total - 1),
        inserted_late: late,
        insert_ms_max: slowest,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the database back

#[derive(sqlx::FromRow)]
struct TaskState {
    status: String,
    attempts: i32,
    lease_owner: Option<String>,
    scheduled_for: DateTime<Utc>,
    executed_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    error_message: Option<String>,
}

async fn task_rows(store: &Store) -> Vec<TaskState> {
    let q = "SELECT status, attempts, lease_owner, scheduled_for, executed_at, completed_at,
                    error_message
               FROM scheduled_tasks";
    match store {
        Store::Postgres(s) => sqlx::query_as(q).fetch_all(s.pool()).await.unwrap(),
        Store::Sqlite(s) => sqlx::query_as(q).fetch_all(s.pool()).await.unwrap(),
    }
}

async fn unfinished(store: &Store) -> usize {
    let q = "SELECT count(*) FROM scheduled_tasks WHERE status IN ('pending', 'executing')";
    let n: i64 = match store {
        Store::Postgres(s) => sqlx::query_scalar(q).fetch_one(s.pool()).await.unwrap(),
        Store::Sqlite(s) => sqlx::query_scalar(q).fetch_one(s.pool()).await.unwrap(),
    };
    n as usize
}

/// The pid in a `lease_owner` (`HOST:PID:RANDOM`, the daemon's instance id).
fn owner_pid(owner: &str) -> Option<u32> {
    owner.rsplit(':').nth(1).and_then(|p| p.parse().ok())
}

/// Tasks run by each daemon (`pids`, in order), by their last `lease_owner`.
fn per_daemon(rows: &[&TaskState], pids: &[u32]) -> Vec<usize> {
    pids.iter()
        .map(|pid| {
            rows.iter()
                .filter(|r| r.lease_owner.as_deref().and_then(owner_pid) == Some(*pid))
                .count()
        })
        .collect()
}

/// Claim and finish statements that wrote these tasks: a claim stamps its tasks with one
/// `executed_at` (the daemon's clock when it claimed), a batch of finishes with one
/// `completed_at`; so distinct (owner, time) pairs count the statements that took or ended at
/// least one task.
fn statements(rows: &[&TaskState]) -> (usize, usize) {
    let mut claims = std::collections::HashSet::new();
    let mut finishes = std::collections::HashSet::new();
    for r in rows {
        claims.insert((r.lease_owner.as_deref(), r.executed_at));
        finishes.insert((r.lease_owner.as_deref(), r.completed_at));
    }
    (claims.len(), finishes.len())
}

/// Transactions committed or rolled back in the current PostgreSQL database (backends report
/// them at most once a second, and an idle one after up to 10 s: approximate over short spans).
async fn pg_xacts(store: &Store) -> Option<i64> {
    let Store::Postgres(pg) = store else {
        return None;
    };
    Some(
        sqlx::query_scalar(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database
              WHERE datname = current_database()",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap(),
    )
}

/// The correctness checks: `expected` tasks, every one `completed`, each claimed exactly once,
/// none without an owner. Panics otherwise. Returns the tasks run by each owner.
fn check(label: &str, what: &str, rows: &[TaskState], expected: usize, pids: &[u32]) -> Vec<usize> {
    let not_completed: Vec<&TaskState> = rows.iter().filter(|r| r.status != "completed").collect();
    let twice = rows.iter().filter(|r| r.attempts != 1).count();
    let refs: Vec<&TaskState> = rows.iter().collect();
    let per = per_daemon(&refs, pids);
    let owned: usize = per.iter().sum();
    let mut problems = vec![];
    if rows.len() != expected {
        problems.push(format!("{} rows, expected {expected}", rows.len()));
    }
    if !not_completed.is_empty() {
        let sample: Vec<String> = not_completed
            .iter()
            .take(3)
            .map(|r| format!("{} ({:?})", r.status, r.error_message))
            .collect();
        problems.push(format!(
            "{} not `completed`, e.g. {}",
            not_completed.len(),
            sample.join("; ")
        ));
    }
    if twice > 0 {
        problems.push(format!("{twice} with attempts <> 1 (run twice, or never)"));
    }
    if owned != rows.len() {
        problems.push(format!(
            "{} whose lease_owner is none of the daemons",
            rows.len() - owned
        ));
    }
    assert!(
        problems.is_empty(),
        "{label}: {what}: CHECK FAILED: {}",
        problems.join("; ")
    );
    println!(
        "checks ({what}): {} tasks, all completed, attempts = 1 for each; run by daemon pid {}",
        rows.len(),
        pids.iter()
            .zip(&per)
            .map(|(p, n)| format!("{p}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    per
}

/// The largest start lateness of the tasks due in each second of the steady phase.
fn by_second(rows: &[&TaskState], first: DateTime<Utc>) -> String {
    let mut max: Vec<f64> = vec![];
    for r in rows {
        let i = (r.scheduled_for - first).num_milliseconds().max(0) as usize / 1000;
        if max.len() <= i {
            max.resize(i + 1, 0.0);
        }
        let late = (r.executed_at.unwrap() - r.scheduled_for).as_seconds_f64() * 1e3;
        max[i] = max[i].max(late);
    }
    max.iter()
        .map(|m| format!("{m:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Pcts {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Pcts {
    fn of(mut v: Vec<f64>) -> Pcts {
        assert!(!v.is_empty());
        v.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Pcts {
            p50: p(0.50),
            p99: p(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// PostgreSQL's WAL so far: bytes, full-page images, and the segment files in `pg_wal` (a
/// segment created rather than recycled is written full of zeros first, holding up commits).
async fn pg_wal(store: &Store) -> Option<(f64, i64, i64)> {
    let Store::Postgres(pg) = store else {
        return None;
    };
    Some(
        sqlx::query_as(
            "SELECT wal_bytes::float8, wal_fpi, (SELECT count(*) FROM pg_ls_waldir())
               FROM pg_stat_wal",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap(),
    )
}

fn wal_line(what: &str, a: (f64, i64, i64), b: (f64, i64, i64), tasks: usize) -> String {
    format!(
        "PostgreSQL WAL {what}: {:.0} bytes and {:.2} full-page images per task; segment files \
         in pg_wal {} -> {}",
        (b.0 - a.0) / tasks as f64,
        (b.1 - a.1) as f64 / tasks as f64,
        a.2,
        b.2
    )
}

/// PostgreSQL's checkpoints so far: timed, requested, buffers they wrote.
async fn pg_checkpoints(store: &Store) -> Option<(i64, i64, i64)> {
    let Store::Postgres(pg) = store else {
        return None;
    };
    Some(
        sqlx::query_as(
            "SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint FROM pg_stat_bgwriter",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap(),
    )
}

/// The size of SQLite's WAL file, when there is one (`wal_autocheckpoint` is 20,000 pages).
fn wal_size(dir: &Path, when: &str) {
    if let Ok(m) = std::fs::metadata(dir.join("queue.db-wal")) {
        println!(
            "sqlite WAL {when}: {:.1} MB",
            m.len() as f64 / (1024.0 * 1024.0)
        );
    }
}

/// `pg_stat_user_tables` of `scheduled_tasks`: updates, HOT ones, dead tuples, and when
/// autovacuum last ran, in seconds after the daemons started.
async fn pg_table_stats(store: &Store, when: &str, spawned: DateTime<Utc>) {
    let Store::Postgres(pg) = store else { return };
    type Stats = (
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let s: Stats = sqlx::query_as(
        "SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count, autoanalyze_count,
                last_autovacuum, last_autoanalyze
           FROM pg_stat_user_tables WHERE relname = 'scheduled_tasks'",
    )
    .fetch_one(pg.pool())
    .await
    .unwrap();
    let after = |t: Option<DateTime<Utc>>| {
        t.map_or("never".to_string(), |t| {
            format!("{:+.1}s", (t - spawned).as_seconds_f64())
        })
    };
    println!(
        "pg_stat_user_tables scheduled_tasks {when} (as reported so far: an idle backend \
         reports up to 10 s late): updates {} (HOT {}), dead tuples {}, autovacuums {} (last \
         {} after the daemons started), autoanalyzes {} (last {})",
        s.0,
        s.1,
        s.2,
        s.3,
        after(s.5),
        s.4,
        after(s.6)
    );
}

async fn print_plans(store: &Store, setting: Setting, when: &str) {
    let Store::Postgres(pg) = store else { return };
    let now = Utc::now();
    let mut tx = pg.pool().begin().await.unwrap();
    let text = format!("EXPLAIN (ANALYZE, BUFFERS) {CLAIM_PG}");
    let plan: Vec<String> = sqlx::query_scalar(&text)
        .bind(now)
        .bind("bench-explain")
        .bind(now + TimeDelta::seconds(60))
        .bind(setting.batch as i64)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    println!(
        "\n-- claim plan ({when}; the store's CLAIM_PG, LIMIT {}; rolled back):\n{}",
        setting.batch,
        plan.join("\n")
    );
    // The tasks just claimed, finished as the runner's finisher writes them.
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id::text FROM scheduled_tasks WHERE lease_owner = $1")
            .bind("bench-explain")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    if !ids.is_empty() {
        let finishes: Vec<TaskFinish> = ids
            .into_iter()
            .map(|id| TaskFinish {
                id,
                status: "completed",
                scheduled_for: None,
                error: None,
                retry_count: 0,
                result: Some(r#"{"handler":"nop"}"#.into()),
            })
            .collect();
        let plan: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {}", store.sql(FINISH)))
                .bind(serde_json::to_string(&finishes).unwrap())
                .bind("bench-explain")
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        println!(
            "-- finish plan ({when}; the store's FINISH of the {} tasks claimed above; rolled \
             back):\n{}",
            finishes.len(),
            plan.join("\n")
        );
    }
    tx.rollback().await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {NEXT_TASK}"))
        .fetch_all(pg.pool())
        .await
        .unwrap();
    println!("-- next_task_time plan ({when}):\n{}\n", plan.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Daemons

struct Daemon {
    child: Child,
    log: PathBuf,
    n: usize,
}

impl Daemon {
    fn start(dir: &Path, n: usize, url: &str, s: Setting, poll: Option<&str>) -> Daemon {
        let state = dir.join(format!("daemon-{n}"));
        std::fs::create_dir_all(&state).unwrap();
        let config = state.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\ndatabase_url = \"{url}\"\nstate_dir = \"{}\"\ntimezone = \"UTC\"\n\n\
                 [queue]\nconcurrency = {}\nbatch = {}\n{}\n\
                 [queue.handlers.nop]\nkind = \"noop\"\n",
                state.display(),
                s.concurrency,
                s.batch,
                poll.map_or(String::new(), |p| format!("poll = \"{p}\"\n")),
            ),
        )
        .unwrap();
        let log = state.join("daemon.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(&state)
            .env("TICKLER_LOG", "warn")
            .env_remove("TICKLER_DATABASE_URL")
            .env_remove("TICKLER_CONFIG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot start the daemon");
        Daemon { child, log, n }
    }

    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "daemon {} exited early ({status}): {}",
                self.n,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// SIGTERM, then waits up to 60 s; panics unless it exits cleanly. Returns the lines it
    /// logged (at `warn` and above), printing the first few.
    fn stop(mut self, label: &str) -> usize {
        // SAFETY: kill has no memory preconditions; the pid is our live child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("{label}: daemon {} did not stop within 60 s", self.n);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        for l in lines.iter().take(5) {
            println!("daemon {} logged: {l}", self.n);
        }
        assert!(
            status.success(),
            "{label}: daemon {} exited with {status}: {log}",
            self.n
        );
        lines.len()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn logs_tail(daemons: &[Daemon]) -> String {
    let mut out = String::new();
    for d in daemons {
        let log = std::fs::read_to_string(&d.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        let _ = write!(out, "\n[daemon {}]", d.n);
        for l in tail.iter().rev() {
            let _ = write!(out, "\n  {l}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// CPU from /proc

fn pids_cpu(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|s| proc_cpu(&s))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

async fn pg_version(admin: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {admin}: {e}"));
    let v: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings
          WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'wal_level',
                         'max_connections')
          ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    format!(
        "{} ({})",
        v.split(" on ").next().unwrap_or(&v),
        settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Drops and creates the run's database; applies `--pg-set`.
async fn fresh_pg_database(admin: &str, set: &[(String, String)]) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {admin}: {e}"));
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {PG_DB}"))
        .execute(&mut conn)
        .await
        .unwrap();
    for (k, v) in set {
        sqlx::raw_sql(&format!("ALTER DATABASE {PG_DB} SET {k} = {v}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.ok();
    pg_url_with_db(admin, PG_DB)
}

/// A throwaway cluster (as tests/it/helpers does, but with PostgreSQL's default durability
/// settings), stopped and removed when dropped.
fn print_results(results: &[RunResult], opts: &Opts) {
    println!("\n## Results\n");
    let mut changed = vec![];
    if let Some(p) = &opts.poll {
        changed.push(format!("daemons' `[queue] poll = \"{p}\"`"));
    }
    if let Some(ms) = opts.sqlite_checkpoint {
        changed.push(format!(
            "this process checkpoints SQLite's WAL every {ms} ms during the steady load"
        ));
    }
    for (k, v) in &opts.pg_set {
        changed.push(format!("PostgreSQL `{k} = {v}`"));
    }
    if !changed.is_empty() {
        println!(
            "**Not the defaults, an experiment:** {}\n",
            changed.join("; ")
        );
    }
    println!(
        "| setup | concurrency:batch | run | burn-down tasks/s (DB) | DB s | wall s | startup s | \
         tasks per daemon | daemon CPU µs/task | pg CPU µs/task | host busy | lead ms | \
         offered/s | start p50 ms | start p99 ms | start max ms | end p99 ms | steady CPU \
         daemons / pg / host | daemon log lines |"
    );
    println!("|{}", "---|".repeat(20));
    for r in results {
        for (i, l) in r.lateness.iter().enumerate() {
            let burn = if i == 0 {
                format!(
                    "{:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {} | {:.0}%",
                    r.rate,
                    r.db_seconds,
                    r.wall_seconds,
                    r.startup_seconds,
                    r.per_daemon
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    r.daemon_cpu_us,
                    r.pg_cpu_us.map_or("-".to_string(), |v| format!("{v:.1}")),
                    r.host_busy_pct
                )
            } else {
                "〃 | | | | | | | ".to_string()
            };
            println!(
                "| {} | {}:{} | {} | {burn} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | \
                 {:.0}% / {} / {:.0}% | {} |",
                r.setup.label(),
                r.setting.concurrency,
                r.setting.batch,
                r.run,
                l.lead_ms,
                l.offered,
                l.start.p50,
                l.start.p99,
                l.start.max,
                l.end.p99,
                l.daemon_cpu_pct,
                l.pg_cpu_pct.map_or("-".to_string(), |v| format!("{v:.0}%")),
                l.host_busy_pct,
                r.warnings
            );
        }
    }

    println!("\n## Ranges over runs\n");
    println!(
        "| setup | concurrency:batch | runs | burn-down tasks/s | lead ms | start p50 ms | \
         start p99 ms | start max ms |"
    );
    println!("|{}", "---|".repeat(8));
    let mut keys: Vec<(String, Setting)> = vec![];
    for r in results {
        let k = (r.setup.label(), r.setting);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let range = |v: Vec<f64>, digits: usize| -> String {
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if (hi - lo).abs() < 1e-9 {
            format!("{lo:.digits$}")
        } else {
            format!("{lo:.digits$} – {hi:.digits$}")
        }
    };
    for (label, s) in &keys {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| &r.setup.label() == label && r.setting == *s)
            .collect();
        for (i, lead) in opts.leads.iter().enumerate() {
            let lat: Vec<&Lateness> = runs.iter().map(|r| &r.lateness[i]).collect();
            println!(
                "| {label} | {}:{} | {} | {} | {lead} | {} | {} | {} |",
                s.concurrency,
                s.batch,
                runs.len(),
                if i == 0 {
                    range(runs.iter().map(|r| r.rate).collect(), 0)
                } else {
                    "〃".into()
                },
                range(lat.iter().map(|l| l.start.p50).collect(), 1),
                range(lat.iter().map(|l| l.start.p99).collect(), 1),
                range(lat.iter().map(|l| l.start.max).collect(), 1),
            );
        }
    }

    let pg_rate_ok = results
        .iter()
        .filter(|r| r.setup.backend == Backend::Postgres)
        .all(|r| r.rate >= 20_000.0);
    let p99_ok = results
        .iter()
        .flat_map(|r| r.lateness.iter())
        .all(|l| l.start.p99 <= 50.0);
    println!(
        "\ntargets: burn-down >= 20,000 tasks/s on PostgreSQL: {}; start lateness p99 <= 50 ms \
         at {} tasks/s: {}; no task run twice: met (checked after every phase of every run; \
         the bench fails otherwise)",
        if pg_rate_ok {
            "met by every run"
        } else {
            "NOT met by every run"
        },
        opts.rate,
        if p99_ok {
            "met by every run"
        } else {
            "NOT met by every run"
        },
    );
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
}
