//! Host names and replicas: a daemon checks the pids of processes registered under its own host
//! name locally and judges every other host's processes by their heartbeat alone. Run here as
//! the shipped unit sees the machine: a host name of its own (a UTS namespace) and a `/proc`
//! mounted with `subset=pid` (the unit's `ProcSubset=pid`), which has no `/proc/sys`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tickler::store::{NewRun, RunTrigger, Status, Store};
use uuid::Uuid;

use crate::helpers::{BIN, Project, runs, signal, wait_for};

/// No process has this pid here (it is above any `pid_max`), so a local check finds it gone.
const NO_SUCH_PID: i32 = 2_147_483_000;

/// `tickler run` on `p`'s config in its own user, UTS, mount and pid namespaces, with the host
/// name `host` and `/proc` remounted with `subset=pid`. `None` when namespaces are not allowed
/// here. Killing the returned child (`unshare`) kills the daemon too (`--kill-child`).
fn daemon_on_host(p: &Project, host: &str) -> Option<Child> {
    let probe = Command::new("unshare")
        .args(["-Urupm", "--fork", "sh", "-c"])
        .arg("mount -t proc -o subset=pid proc /proc && test ! -e /proc/sys")
        .output()
        .is_ok_and(|o| o.status.success());
    if !probe {
        eprintln!("skipped: unshare -Urupm with a subset=pid /proc is not allowed here");
        return None;
    }
    let script = format!(
        "hostname {host} && mount -t proc -o subset=pid proc /proc && exec {BIN} run --config {}",
        p.config_path().display()
    );
    Some(
        Command::new("unshare")
            .args(["-Urupm", "--fork", "--kill-child", "sh", "-c", &script])
            .current_dir(p.path())
            .env_remove("TICKLER_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Registers a process in `tickler_instances` with SQL, as that process would have.
async fn register(store: &Store, id: &str, hostname: &str, pid: i32, beat: DateTime<Utc>) {
    let sql = "INSERT INTO tickler_instances (id, hostname, pid, version, started_at, heartbeat_at)
               VALUES ($1, $2, $3, 'test', $4, $4)";
    macro_rules! run {
        ($pool:expr) => {
            sqlx::query(sql)
                .bind(id)
                .bind(hostname)
                .bind(pid)
                .bind(beat)
                .execute($pool)
                .await
                .map(|_| ())
        };
    }
    match store {
        Store::Sqlite(s) => run!(s.pool()),
        Store::Postgres(s) => run!(s.pool()),
    }
    .unwrap();
}

async fn registered_hostnames(store: &Store) -> Vec<(String, String)> {
    let sql = "SELECT id, hostname FROM tickler_instances ORDER BY id";
    match store {
        Store::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.pool()).await,
        Store::Postgres(s) => sqlx::query_as(sql).fetch_all(s.pool()).await,
    }
    .unwrap()
}

/// A run `running` since a minute ago, owned by `instance`.
fn running(job: &str, instance: &str, now: DateTime<Utc>) -> NewRun {
    let slot = now - chrono::TimeDelta::minutes(1);
    NewRun {
        id: Uuid::new_v4(),
        job_name: Arc::from(job),
        scheduled_for: slot,
        trigger: RunTrigger::Schedule,
        status: Status::Running,
        started_at: slot,
        instance: Arc::from(instance),
        error_message: None,
        metadata: None,
        batch: None,
    }
}

/// Two replicas on other hosts, each with a pid that does not exist here and a fresh heartbeat
/// (one named `localhost`, as every replica called itself when `/proc/sys` was hidden), keep
/// their running rows when a daemon starts on `replica-a`; a dead process registered under
/// `replica-a` has its row abandoned at once; the daemon registers under `replica-a`.
async fn peers_on_other_hosts_keep_their_runs(p: Project) {
    p.write_config(
        "",
        "[[job]]\nname = \"tick\"\nkind = \"noop\"\nevery = \"1s\"\n",
    );
    let store = p.store().await;
    let now = Utc::now();
    let rows = [
        ("replica-b:77:peer", "replica-b", "peer-b"),
        ("localhost:78:peer", "localhost", "peer-localhost"),
        ("replica-a:79:gone", "replica-a", "same-host-dead"),
    ];
    for (id, host, job) in rows {
        register(&store, id, host, NO_SUCH_PID, now).await;
        let inserted = store.insert_runs(&[running(job, id, now)]).await.unwrap();
        assert_eq!(inserted.len(), 1);
    }

    let Some(mut child) = daemon_on_host(&p, "replica-a") else {
        return;
    };
    // Orphans are resolved before the first fire, so once `tick` ran the start-up is judged.
    wait_for("a run of `tick`", Duration::from_secs(30), || async {
        runs(&store, "tick")
            .await
            .iter()
            .any(|r| r.status == "succeeded")
            .then_some(())
    })
    .await;
    let status = |job: &'static str| {
        let store = store.clone();
        async move { runs(&store, job).await[0].status.clone() }
    };
    let (b, local, dead) = (
        status("peer-b").await,
        status("peer-localhost").await,
        status("same-host-dead").await,
    );
    let hosts = registered_hostnames(&store).await;
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();

    assert_eq!(
        (b.as_str(), local.as_str()),
        ("running", "running"),
        "a live replica of another host must keep its runs"
    );
    assert_eq!(
        dead, "abandoned",
        "a dead process of this host is found by its pid"
    );
    let mine: Vec<&str> = hosts
        .iter()
        .filter(|(id, _)| !rows.iter().any(|r| r.0 == id))
        .map(|(_, h)| h.as_str())
        .collect();
    assert_eq!(
        mine,
        ["replica-a"],
        "the daemon's own registration, among {hosts:?}"
    );
}

#[tokio::test]
async fn replicas_on_other_hosts_keep_their_runs_sqlite() {
    peers_on_other_hosts_keep_their_runs(Project::sqlite()).await;
}

#[tokio::test]
async fn replicas_on_other_hosts_keep_their_runs_postgres() {
    let Some(p) = Project::postgres().await else {
        return;
    };
    peers_on_other_hosts_keep_their_runs(p).await;
}
