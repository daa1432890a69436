//! Nothing lost, nothing stranded (DESIGN.md invariants 3 and 4), tried on the real binary as
//! an operator's bad day goes: kill -9 during a catch-up backlog, during a page of reminders,
//! of a `run-job` whose command started a grandchild, of a daemon holding a task. Each test
//! counts what was lost, doubled or left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tickler::store::Store;

use crate::helpers::smtp::{Offers, SmtpServer};
use crate::helpers::tenants::seed_tenants;
use crate::helpers::{BIN, Project, TestDaemon, lines, runs, signal, stderr, stdout, wait_for};

fn kill_9(child: &mut Child) {
    signal(child, libc::SIGKILL);
    child.wait().expect("reap the killed process");
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_for("the process to exit", Duration::from_secs(60), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await
}

/// The pids of live processes whose command line is `command` (arguments joined by spaces).
fn processes(command: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            !zombie && args.join(" ") == command
        })
        .collect()
}

/// Ends, by pid, the processes a test's jobs left (only when an assertion failed first).
/// `tickler run-job JOB` on the project's config, its output dropped.
fn spawn_run_job(p: &Project, job: &str) -> Child {
    std::process::Command::new(BIN)
        .args(["run-job", job, "--config"])
        .arg(p.config_path())
        .current_dir(p.path())
        .env_remove("TICKLER_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run-job")
}

/// Waits until a `running` row of `job` records its command's process group.
async fn group_recorded(store: &Store, job: &str) {
    wait_for(
        "the run's process group recorded",
        Duration::from_secs(20),
        || async {
            runs(store, job).await.into_iter().find(|r| {
                r.status == "running"
                    && r.metadata
                        .as_ref()
                        .is_some_and(|m| m.get("process_group").is_some())
            })
        },
    )
    .await;
}

struct Leftovers(&'static str);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in processes(self.0) {
            // SAFETY: sending a signal to a process this test's job started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// [`wait_for`], with the project's daemon log in the panic message.
async fn wait_logged<T, F, Fut>(p: &Project, what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!(
                "timed out after {deadline:?} waiting for {what}; log:\n{}",
                p.daemon_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- A catch-up backlog across kill -9 ----

/// Every slot of `job` from its first to its last row: the slots with no row, the slots with
/// more than one, and the rows still open (`pending`, `running`).
async fn accounting(store: &Store, job: &str) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>, usize) {
    let rows = runs(store, job).await;
    let mut per_slot: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.trigger != "manual") {
        *per_slot.entry(r.scheduled_for).or_default() += 1;
    }
    let (Some(first), Some(last)) = (
        per_slot.keys().next().copied(),
        per_slot.keys().last().copied(),
    ) else {
        return (vec![], vec![], 0);
    };
    let mut missing = vec![];
    let mut slot = first;
    while slot <= last {
        if !per_slot.contains_key(&slot) {
            missing.push(slot);
        }
        slot += TimeDelta::seconds(1);
    }
    let doubled = per_slot
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    let open = rows
        .iter()
        .filter(|r| r.status == "pending" || r.status == "running")
        .count();
    (missing, doubled, open)
}

/// A job every second whose slots take a while, down for 6 s, then a daemon killed while it
/// works through the backlog, then another: every slot between the first and the last has
/// exactly one row, and no slot ran twice.
async fn backlog_story(p: Project) {
    let ran = p.path().join("ran.txt");
    p.write_config(
        "",
        &format!(
            "[queue]\nenabled = false\n\n[[job]]\nname = \"tick\"\nkind = \"command\"\nshell = true\n\
             command = [\"echo $TICKLER_SCHEDULED_FOR >> {}; sleep 0.9\"]\nevery = \"1s\"\n\
             overlap = \"allow\"\ncatch_up = \"all\"\nmisfire_grace = \"1h\"\n",
            ran.display()
        ),
    );
    let store = p.store().await;
    let mut a = p.spawn_logged_daemon();
    wait_for("3 runs of `tick`", Duration::from_secs(30), || async {
        (lines(&ran).len() >= 3).then_some(())
    })
    .await;
    kill_9(&mut a);
    // The outage: slots come due while no daemon runs.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let last_a = runs(&store, "tick")
        .await
        .iter()
        .map(|r| r.scheduled_for)
        .max()
        .expect("rows of the first daemon");

    let b_start = Utc::now();
    let mut b = p.spawn_logged_daemon();
    // Killed while it works through the backlog (the slots of the outage run one after the
    // other, 0.9 s each) and later slots, on time, already have rows of their own.
    wait_logged(
        &p,
        "an on-time slot during the backlog",
        Duration::from_secs(30),
        || async {
            let rows = runs(&store, "tick").await;
            let behind = rows.iter().any(|r| {
                r.scheduled_for > last_a && r.scheduled_for < b_start && r.status != "succeeded"
            });
            let ahead = rows
                .iter()
                .any(|r| r.scheduled_for > b_start + TimeDelta::seconds(1));
            (behind && ahead).then_some(())
        },
    )
    .await;
    kill_9(&mut b);

    let mut c = p.spawn_logged_daemon();
    wait_logged(
        &p,
        "every slot up to a second ago to be run or recorded",
        Duration::from_secs(60),
        || async {
            let rows = runs(&store, "tick").await;
            let horizon = Utc::now() - TimeDelta::seconds(2);
            let caught_up = rows.iter().any(|r| r.scheduled_for >= horizon);
            let open_old = rows.iter().any(|r| {
                (r.status == "pending" || r.status == "running") && r.scheduled_for < horizon
            });
            (caught_up && !open_old).then_some(())
        },
    )
    .await;
    signal(&c, libc::SIGTERM);
    assert!(wait_exit(&mut c).await.success(), "{}", p.daemon_log());
    // A clean stop leaves the fires still waiting `pending`, for the next daemon: one on a
    // clock that stands still runs them (and the slots since), and nothing after.
    let d = TestDaemon::start(p.config(), Utc::now()).await;
    wait_logged(
        &p,
        "the last waiting slots to run",
        Duration::from_secs(60),
        || async {
            let rows = runs(&store, "tick").await;
            rows.iter()
                .all(|r| r.status != "pending" && r.status != "running")
                .then_some(())
        },
    )
    .await;
    d.stop().await;

    let (missing, doubled, open) = accounting(&store, "tick").await;
    assert!(
        missing.is_empty(),
        "slots with no row: {missing:?}\n{}",
        p.daemon_log()
    );
    assert!(doubled.is_empty(), "slots with two rows: {doubled:?}");
    assert_eq!(open, 0, "rows left open after a clean stop");
    let ran_slots: Vec<String> = lines(&ran);
    let distinct: BTreeSet<&String> = ran_slots.iter().collect();
    assert_eq!(
        distinct.len(),
        ran_slots.len(),
        "a slot ran twice: {ran_slots:?}"
    );
    // The backlog left by the killed daemon was adopted and run.
    // Within the grace every slot runs: it succeeded, or its daemon was killed mid-run (or
    // stopped just as it was claimed).
    let rows = runs(&store, "tick").await;
    let ends: BTreeSet<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert!(
        ends.iter()
            .all(|s| ["succeeded", "abandoned", "interrupted"].contains(s)),
        "{ends:?}"
    );
    assert!(
        p.daemon_log()
            .contains("adopted the waiting slots of a stopped daemon"),
        "{}",
        p.daemon_log()
    );
}

#[tokio::test]
async fn a_catch_up_backlog_survives_kill_9_on_sqlite() {
    backlog_story(Project::sqlite()).await;
}

#[tokio::test]
async fn a_catch_up_backlog_survives_kill_9_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    backlog_story(p).await;
}

// ---- A second claimed ahead, across kill -9 ----

const AHEAD_JOBS: usize = 70;

/// The rows of every job, by slot.
async fn rows_by_slot(store: &Store) -> BTreeMap<DateTime<Utc>, Vec<tickler::store::RunRow>> {
    let rows = store
        .history(&tickler::store::HistoryFilter {
            job: None,
            status: None,
            limit: 100_000,
            run: None,
        })
        .await
        .unwrap();
    let mut by_slot: BTreeMap<DateTime<Utc>, Vec<tickler::store::RunRow>> = BTreeMap::new();
    for r in rows {
        by_slot.entry(r.scheduled_for).or_default().push(r);
    }
    by_slot
}

/// The lines of `ran.txt` (`JOB SLOT`, one per body started) for `slot`.
fn ran_at(ran: &Path, slot: DateTime<Utc>) -> Vec<String> {
    let slot = slot.to_rfc3339();
    lines(ran)
        .into_iter()
        .filter(|l| l.ends_with(&slot))
        .collect()
}

/// Seventy jobs due at the same second are claimed a second ahead of it. A daemon killed
/// before the second leaves their rows `pending`: the next daemon adopts them and runs each
/// once, when the second comes (not before). A daemon killed after the second, while the
/// bodies run, leaves them `abandoned`: none runs again.
///
/// `sleep` is the body's sleep, a command line of this test's own: the guard that ends what
/// the jobs leave finds them by it, and must not end the other backend's, running alongside.
async fn ahead_story(p: Project, sleep: &'static str) {
    let _left = Leftovers(sleep);
    let ran = p.path().join("ran.txt");
    let mut jobs = String::from("[queue]\nenabled = false\n\n");
    for i in 0..AHEAD_JOBS {
        jobs.push_str(&format!(
            "[[job]]\nname = \"j{i:02}\"\nkind = \"command\"\nshell = true\n\
             command = [\"echo $TICKLER_JOB $TICKLER_SCHEDULED_FOR >> {}; {sleep}\"]\n\
             every = \"10s\"\noverlap = \"allow\"\n\n",
            ran.display()
        ));
    }
    p.write_config("max_concurrent = 500", &jobs);
    let store = p.store().await;

    // Killed with the next second's rows claimed ahead, before it comes.
    let mut a = p.spawn_logged_daemon();
    let slot = wait_logged(
        &p,
        "a second claimed ahead",
        Duration::from_secs(40),
        || async {
            let now = Utc::now();
            rows_by_slot(&store)
                .await
                .into_iter()
                .find_map(|(slot, rows)| {
                    (slot > now
                        && rows.len() == AHEAD_JOBS
                        && rows.iter().all(|r| r.status == "pending"))
                    .then_some(slot)
                })
        },
    )
    .await;
    kill_9(&mut a);
    assert!(
        Utc::now() < slot - TimeDelta::milliseconds(100),
        "the daemon was to be killed before {slot}; the test came too late to tell"
    );
    assert!(
        ran_at(&ran, slot).is_empty(),
        "a body ran before its second"
    );

    let mut b = p.spawn_logged_daemon();
    let rows = wait_logged(
        &p,
        "the adopted second to run",
        Duration::from_secs(40),
        || async {
            let rows = rows_by_slot(&store).await.remove(&slot).unwrap_or_default();
            rows.iter().all(|r| r.status == "succeeded").then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.len(), AHEAD_JOBS);
    assert!(
        rows.iter().all(|r| r.started_at.is_some_and(|s| s >= slot)),
        "an adopted slot started before its second: {:?}",
        rows.iter().map(|r| r.started_at).min()
    );
    let mut once = ran_at(&ran, slot);
    once.sort();
    once.dedup();
    assert_eq!(once.len(), AHEAD_JOBS, "each job of the second once");
    assert_eq!(ran_at(&ran, slot).len(), AHEAD_JOBS, "no body ran twice");
    assert!(
        p.daemon_log()
            .contains("adopted the waiting slots of a stopped daemon")
    );

    // Killed after a later second came, with its bodies running.
    let later = wait_logged(
        &p,
        "a later second's bodies to start",
        Duration::from_secs(40),
        || async {
            let now = Utc::now();
            rows_by_slot(&store)
                .await
                .into_keys()
                .filter(|s| *s > slot && *s < now)
                .find(|s| ran_at(&ran, *s).len() == AHEAD_JOBS)
        },
    )
    .await;
    kill_9(&mut b);
    let mut c = p.spawn_logged_daemon();
    let rows = wait_logged(
        &p,
        "the killed second to be resolved",
        Duration::from_secs(40),
        || async {
            let rows = rows_by_slot(&store)
                .await
                .remove(&later)
                .unwrap_or_default();
            rows.iter()
                .all(|r| r.status != "pending" && r.status != "running")
                .then_some(rows)
        },
    )
    .await;
    signal(&c, libc::SIGTERM);
    assert!(wait_exit(&mut c).await.success(), "{}", p.daemon_log());
    assert_eq!(rows.len(), AHEAD_JOBS);
    assert!(
        rows.iter().all(|r| r.status == "abandoned"),
        "{:?}",
        rows.iter().map(|r| &r.status).collect::<BTreeSet<_>>()
    );
    assert_eq!(
        ran_at(&ran, later).len(),
        AHEAD_JOBS,
        "a started slot ran again"
    );
}

#[tokio::test]
async fn a_second_claimed_ahead_survives_kill_9_on_sqlite() {
    ahead_story(Project::sqlite(), "sleep 4.01").await;
}

#[tokio::test]
async fn a_second_claimed_ahead_survives_kill_9_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    ahead_story(p, "sleep 4.02").await;
}

// ---- A page of reminders across kill -9 ----

/// `n` tenants, each with one invoice due in 7 days and an email address of their own; the
/// dedup keys of their reminders.
async fn tenants(store: &Store, n: usize) -> Vec<String> {
    seed_tenants(store, n, "example.com", "K-")
        .await
        .iter()
        .map(|(_, i)| format!("reminder:7d:{}:email", i.id))
        .collect()
}

/// `(status, count)` of the messages of `keys` in `notification_log`.
async fn message_states(store: &Store, keys: &[String]) -> BTreeMap<String, usize> {
    let states = store.notification_states(keys).await.unwrap();
    let mut out = BTreeMap::new();
    for s in states.values() {
        *out.entry(s.clone()).or_default() += 1;
    }
    out
}

/// `tickler run-job reminders` killed with -9 in the middle of its page: a later run sends
/// what was never handed to the SMTP server, nothing twice, and leaves nothing `sending`; what
/// may have been handed over is `unknown` (at most the messages in flight at the kill). When
/// the server `offers` PIPELINING, each message's MAIL, RCPT and DATA go in one write; with
/// CHUNKING too, the message goes with them in one BDAT chunk.
async fn reminder_page_story(p: Project, offers: Offers) {
    const N: usize = 240;
    const CONCURRENCY: usize = 4;
    let smtp = SmtpServer::start_with(p.path(), offers);
    p.write_config(
        "",
        &format!(
            "[channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nfrom = \"Acme <billing@acme.test>\"\nrate_limit = 60\n\
             concurrency = {CONCURRENCY}\n\n\
             [templates]\nvars = {{ company = \"Acme Rentals\" }}\n\n\
             [[job]]\nname = \"reminders\"\nkind = \"invoice_reminders\"\n\
             schedule = \"0 9 * * *\"\noffsets = [\"7d\"]\nchannels = [\"email\"]\n",
            smtp.port
        ),
    );
    let store = p.store().await;
    let keys = tenants(&store, N).await;

    let mut first = std::process::Command::new(BIN)
        .args(["run-job", "reminders", "--config"])
        .arg(p.config_path())
        .current_dir(p.path())
        .env_remove("TICKLER_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(p.path().join("daemon.log")).unwrap())
        .spawn()
        .expect("spawn run-job");
    wait_logged(&p, "40 emails", Duration::from_secs(60), || {
        let exited = first.try_wait().unwrap();
        assert!(
            exited.is_none(),
            "run-job ended before the kill: {exited:?}\n{}",
            p.daemon_log()
        );
        let n = smtp.messages().len();
        async move { (n >= 40).then_some(()) }
    })
    .await;
    kill_9(&mut first);
    let delivered_before = smtp.messages().len();
    assert!(delivered_before < N, "the page was through before the kill");

    // The next run, in a new process, finds the dead one's claims at once (same host).
    let out = p.cli(&["run-job", "reminders"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let states = message_states(&store, &keys).await;
    let delivered = smtp.messages();
    let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
    for m in &delivered {
        *per_address.entry(m.to.clone()).or_default() += 1;
    }
    let twice: Vec<&String> = per_address
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(a, _)| a)
        .collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(
        states.get("sending"),
        None,
        "rows left `sending`: {states:?}"
    );
    let sent = states.get("sent").copied().unwrap_or(0);
    let unknown = states.get("unknown").copied().unwrap_or(0);
    assert_eq!(sent + unknown, N, "{states:?}");
    assert!(
        unknown <= CONCURRENCY,
        "{unknown} unknown: more than were in flight"
    );
    // The path the story meant to take: every message pipelined, or none; in a chunk, or
    // none.
    let (pipelined, chunks) = (smtp.pipelined(), smtp.chunks());
    if offers == Offers::Nothing {
        assert_eq!(pipelined, 0);
    } else {
        assert!(
            pipelined >= delivered.len(),
            "{pipelined} pipelined of {}",
            delivered.len()
        );
    }
    if offers == Offers::Chunking {
        assert!(
            chunks >= delivered.len(),
            "{chunks} chunks for {}",
            delivered.len()
        );
    } else {
        assert_eq!(chunks, 0);
    }
    // Every `sent` row was delivered; an `unknown` one may or may not have been.
    assert!(
        delivered.len() >= sent && delivered.len() <= N,
        "{} delivered, {states:?}",
        delivered.len()
    );
    // The killed run is `abandoned`, and what it sent or may have sent is in its history.
    let history = p.cli(&["history", "--job", "reminders", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&history)).unwrap();
    let killed = rows
        .iter()
        .find(|r| r["status"] == "abandoned")
        .unwrap_or_else(|| panic!("no abandoned run: {rows:?}"));
    assert!(
        killed["messages"]["sent"].as_i64().unwrap_or(0) > 0,
        "{killed}"
    );
    assert_eq!(
        killed["messages"]["unknown"].as_u64().unwrap_or(0) as usize,
        unknown,
        "{killed}"
    );
}

#[tokio::test]
async fn kill_9_mid_reminder_page_strands_nothing_on_sqlite() {
    reminder_page_story(Project::sqlite(), Offers::Nothing).await;
}

#[tokio::test]
async fn kill_9_mid_reminder_page_strands_nothing_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    reminder_page_story(p, Offers::Nothing).await;
}

#[tokio::test]
async fn kill_9_mid_pipelined_reminder_page_strands_nothing_on_sqlite() {
    reminder_page_story(Project::sqlite(), Offers::Pipelining).await;
}

#[tokio::test]
async fn kill_9_mid_pipelined_reminder_page_strands_nothing_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    reminder_page_story(p, Offers::Pipelining).await;
}

#[tokio::test]
async fn kill_9_mid_chunked_reminder_page_strands_nothing_on_sqlite() {
    reminder_page_story(Project::sqlite(), Offers::Chunking).await;
}

#[tokio::test]
async fn kill_9_mid_chunked_reminder_page_strands_nothing_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    reminder_page_story(p, Offers::Chunking).await;
}

// ---- Commands' grandchildren, and a killed `run-job` ----

/// `tickler run-job` killed with -9 while its command's grandchild (`sleep`) runs: the next
/// tickler command on this host (here `history`) sees the dead pid at once, records the run
/// `abandoned`, and ends the grandchild.
#[tokio::test]
async fn a_killed_run_job_is_abandoned_by_the_next_command_and_its_grandchild_ended() {
    let p = Project::sqlite();
    let _leftovers = Leftovers("sleep 30.31");
    p.write_config(
        "",
        "[[job]]\nname = \"slow\"\nkind = \"command\"\nshell = true\n\
         command = [\"sleep 30.31; echo done\"]\nschedule = \"0 0 1 1 *\"\n",
    );
    let store = p.store().await;
    let mut run = spawn_run_job(&p, "slow");
    let sleep = wait_for(
        "the command's grandchild",
        Duration::from_secs(20),
        || async { processes("sleep 30.31").first().copied() },
    )
    .await;
    group_recorded(&store, "slow").await;
    kill_9(&mut run);
    // `sh` died with run-job (PR_SET_PDEATHSIG); its child did not.
    assert!(Path::new(&format!("/proc/{sleep}")).exists());

    let out = p.cli(&["history", "--job", "slow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("abandoned"), "{}", stdout(&out));
    wait_for(
        "the grandchild to be ended",
        Duration::from_secs(10),
        || async { processes("sleep 30.31").is_empty().then_some(()) },
    )
    .await;
}

/// `tickler run-job` killed with -9 while a daemon runs beside it: the daemon's periodic look
/// (every third heartbeat: one read of the registrations and of the claims that may need
/// resolving) sees the dead pid, records the run `abandoned` and ends the grandchild, with no
/// other command run. `sleep` is the command line of each backend's own grandchild, so the
/// two variants never end each other's.
async fn a_killed_run_job_is_abandoned_by_a_running_daemon(p: Project, sleep: &'static str) {
    let _leftovers = Leftovers(sleep);
    p.write_config(
        "heartbeat_interval = \"1s\"\n[queue]\nenabled = false\n",
        &format!(
            "[[job]]\nname = \"slow\"\nkind = \"command\"\nshell = true\n\
             command = [\"{sleep}; echo done\"]\nschedule = \"0 0 1 1 *\"\n"
        ),
    );
    let store = p.store().await;
    let mut daemon = p.spawn_logged_daemon();
    let mut run = spawn_run_job(&p, "slow");
    group_recorded(&store, "slow").await;
    kill_9(&mut run);
    let abandoned = wait_for(
        "the daemon to record the run `abandoned`",
        Duration::from_secs(20),
        || async {
            runs(&store, "slow")
                .await
                .into_iter()
                .find(|r| r.status == "abandoned")
        },
    )
    .await;
    assert!(
        abandoned
            .error_message
            .as_deref()
            .is_some_and(|e| e.contains("stopped without finishing it")),
        "{abandoned:?}"
    );
    wait_for(
        "the grandchild to be ended",
        Duration::from_secs(10),
        || async { processes(sleep).is_empty().then_some(()) },
    )
    .await;
    signal(&daemon, libc::SIGTERM);
    daemon.wait().expect("the daemon stops");
}

#[tokio::test]
async fn a_killed_run_job_is_abandoned_by_a_running_daemon_on_sqlite() {
    a_killed_run_job_is_abandoned_by_a_running_daemon(Project::sqlite(), "sleep 30.41").await;
}

#[tokio::test]
async fn a_killed_run_job_is_abandoned_by_a_running_daemon_on_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    a_killed_run_job_is_abandoned_by_a_running_daemon(p, "sleep 30.42").await;
}

/// A daemon killed with -9 while a command's grandchild runs: the next daemon ends the
/// grandchild at start-up, before it runs the job again.
#[tokio::test]
async fn a_killed_daemons_grandchild_is_ended_at_the_next_start() {
    let p = Project::sqlite();
    let _leftovers = Leftovers("sleep 30.32");
    p.write_config(
        "[queue]\nenabled = false\n",
        "[[job]]\nname = \"slow\"\nkind = \"command\"\nshell = true\n\
         command = [\"sleep 30.32; echo done\"]\nevery = \"1s\"\noverlap = \"skip\"\n",
    );
    let store = p.store().await;
    let mut daemon = p.spawn_logged_daemon();
    wait_for(
        "the command's grandchild",
        Duration::from_secs(20),
        || async { processes("sleep 30.32").first().copied() },
    )
    .await;
    group_recorded(&store, "slow").await;
    kill_9(&mut daemon);
    let old = processes("sleep 30.32");
    assert_eq!(old.len(), 1, "the grandchild outlived its daemon");

    let d = TestDaemon::start(p.config(), Utc::now()).await;
    wait_for(
        "the old grandchild to be ended",
        Duration::from_secs(10),
        || async {
            (!Path::new(&format!("/proc/{}", old[0])).exists()
                || processes("sleep 30.32").iter().all(|pid| *pid != old[0]))
            .then_some(())
        },
    )
    .await;
    d.stop().await;
    assert!(
        runs(&store, "slow")
            .await
            .iter()
            .any(|r| r.status == "abandoned"),
    );
}

/// A daemon killed with -9 while a task's command handler has a grandchild running: the
/// daemon that reclaims the task ends the grandchild before the task runs again.
#[tokio::test]
async fn a_reclaimed_tasks_grandchild_is_ended_before_it_runs_again() {
    let p = Project::sqlite();
    let _leftovers = Leftovers("sleep 30.33");
    let log = p.path().join("attempts.txt");
    p.write_config(
        "[queue]\nlease = \"2s\"\n\n[queue.handlers.slow]\nkind = \"command\"\nshell = true\n",
        &format!(
            "command = [\"echo start $TICKLER_ATTEMPT >> {}; sleep 30.33; echo done\"]\n",
            log.display()
        ),
    );
    let mut daemon = p.spawn_logged_daemon();
    // The task is enqueued once the daemon runs its queue (this test is about the reclaim).
    wait_logged(&p, "the task runner", Duration::from_secs(20), || async {
        p.daemon_log().contains("task runner started").then_some(())
    })
    .await;
    p.enqueue_custom("slow");
    let old = wait_logged(
        &p,
        "the handler's grandchild",
        Duration::from_secs(20),
        || async { processes("sleep 30.33").first().copied() },
    )
    .await;
    kill_9(&mut daemon);
    assert!(Path::new(&format!("/proc/{old}")).exists());

    let mut next = p.spawn_logged_daemon();
    wait_for(
        "the task's second attempt",
        Duration::from_secs(30),
        || async { (lines(&log).len() >= 2).then_some(()) },
    )
    .await;
    let now = processes("sleep 30.33");
    assert!(
        !now.contains(&old),
        "the first attempt's grandchild still runs beside the second"
    );
    signal(&next, libc::SIGKILL);
    next.wait().unwrap();
}
