//! The replica drill: three `tickler run` processes on one PostgreSQL (a cluster of this test's
//! own, so it can be restarted). One replica is killed with SIGKILL mid-run: its running row
//! becomes `abandoned` (and alerts), its tasks are reclaimed by the others. Then PostgreSQL is
//! stopped for eight seconds and started again: the survivors keep running, log the outage
//! and its end, and every one-second slot from the first to the last is in the ledger exactly
//! once.

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tickler::store::queue::TaskFilter;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{PrivateCluster, Project, lines, runs, signal, wait_for};

struct Replica {
    child: Child,
    log: std::path::PathBuf,
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

// A failed assertion must not leave daemons running.
impl Drop for Replica {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn(p: &Project, name: &str) -> Replica {
    let log = p.path().join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = p
        .daemon_command()
        .env("TICKLER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start tickler");
    Replica { child, log }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_drill_kill_one_and_restart_the_database() {
    let Some((pg, p)) = PrivateCluster::project().await else {
        return;
    };
    let hooks = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hooks)
        .await;
    let dir = p.path().display().to_string();
    p.write_config(
        "heartbeat_interval = \"1s\"\nshutdown_grace = \"10s\"\n",
        &format!(
            "[queue]\nlease = \"2s\"\nconcurrency = 3\nbatch = 3\n\n\
             [queue.handlers.slow]\nkind = \"command\"\nshell = true\n\
             command = [\"echo $TICKLER_TASK_ID >> {dir}/started; sleep 4; echo $TICKLER_TASK_ID >> {dir}/done\"]\n\n\
             [[job]]\nname = \"tick\"\nkind = \"noop\"\nevery = \"1s\"\noverlap = \"allow\"\n\n\
             [[job]]\nname = \"slow\"\nkind = \"command\"\nevery = \"2s\"\ncommand = [\"sleep\", \"5\"]\n\
             on_failure = {{ webhook = [\"{}/alerts\"] }}\n",
            hooks.uri()
        ),
    );
    let store = p.store().await;
    let mut replicas: HashMap<u32, Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let r = spawn(&p, n);
            (r.child.id(), r)
        })
        .collect();
    wait_for(
        "three registered replicas",
        Duration::from_secs(30),
        || async { (store.instances().await.unwrap().len() == 3).then_some(()) },
    )
    .await;

    // Nine tasks of 4 s; each replica runs at most three at once.
    for _ in 0..9 {
        p.enqueue_custom("slow");
    }

    // Kill the replica running `slow` while it also holds tasks.
    let started = p.path().join("started");
    let (victim_instance, victim_run) =
        wait_for("a running `slow` run", Duration::from_secs(30), || async {
            if lines(&started).len() < 9 {
                return None;
            }
            runs(&store, "slow")
                .await
                .into_iter()
                .find(|r| r.status == "running")
                .map(|r| (r.instance.clone().unwrap(), r.id))
        })
        .await;
    let pid = store
        .instances()
        .await
        .unwrap()
        .into_iter()
        .find(|(id, _, _)| *id == victim_instance)
        .map(|(_, _, pid)| pid as u32)
        .unwrap();
    let mut victim = replicas.remove(&pid).expect("the victim is one of ours");
    signal(&victim.child, libc::SIGKILL);
    victim.child.wait().unwrap();

    // Its tasks are reclaimed and every task completes exactly once.
    let tasks = wait_for(
        "all nine tasks completed",
        Duration::from_secs(60),
        || async {
            let t = store
                .tasks(&TaskFilter {
                    status: None,
                    campaign_id: None,
                    limit: 100,
                })
                .await
                .unwrap();
            t.iter().all(|t| t.status == "completed").then_some(t)
        },
    )
    .await;
    let reclaimed: Vec<_> = tasks.iter().filter(|t| t.attempts == 2).collect();
    assert!(
        !reclaimed.is_empty(),
        "the killed replica held tasks that others reclaimed"
    );
    assert!(
        tasks
            .iter()
            .all(|t| t.lease_owner.as_deref() != Some(victim_instance.as_str())),
        "every task was finished by a survivor"
    );
    let done = lines(&p.path().join("done"));
    assert_eq!(
        done.iter().collect::<BTreeSet<_>>().len(),
        9,
        "each task done once"
    );
    assert_eq!(done.len(), 9, "no task done twice");

    // Its run is abandoned by a survivor (heartbeat stale after 30 s), and alerted.
    let abandoned = wait_for(
        "the run to be abandoned",
        Duration::from_secs(90),
        || async {
            runs(&store, "slow")
                .await
                .into_iter()
                .find(|r| r.id == victim_run && r.status == "abandoned")
        },
    )
    .await;
    assert!(
        abandoned
            .error_message
            .as_deref()
            .unwrap()
            .contains(&victim_instance),
        "{abandoned:?}"
    );
    let alert = wait_for("the abandoned alert", Duration::from_secs(30), || async {
        let requests = hooks.received_requests().await.unwrap_or_default();
        requests.into_iter().find_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            (v["run_id"] == victim_run.as_str()).then_some(v)
        })
    })
    .await;
    assert_eq!(alert["status"], "abandoned");
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains("slow was abandoned")
    );

    // PostgreSQL goes away for eight seconds (every connection is closed), then comes back.
    let outage_start = Utc::now();
    let cluster = pg.clone();
    tokio::task::spawn_blocking(move || {
        cluster.stop();
        // The outage itself, not a wait for something to settle.
        std::thread::sleep(Duration::from_secs(8));
        cluster.start_again();
    })
    .await
    .unwrap();
    let outage_end = Utc::now();
    wait_for(
        "ten seconds of slots after the outage",
        Duration::from_secs(60),
        || async {
            let rows = runs(&store, "tick").await;
            rows.iter()
                .any(|r| {
                    r.scheduled_for > outage_end + TimeDelta::seconds(10) && r.status == "succeeded"
                })
                .then_some(())
        },
    )
    .await;
    for r in replicas.values_mut() {
        assert!(
            r.child.try_wait().unwrap().is_none(),
            "a replica exited during the outage:\n{}",
            r.log()
        );
    }
    for r in replicas.values() {
        signal(&r.child, libc::SIGTERM);
    }
    for r in replicas.values_mut() {
        let status = r.child.wait().unwrap();
        assert!(status.success(), "{status:?}\n{}", r.log());
    }

    // Every one-second slot from the first to the last is in the ledger exactly once (the
    // slot key is unique), none lost to the outage or the kill, and none failed.
    let rows = runs(&store, "tick").await;
    let slots: Vec<_> = rows.iter().map(|r| r.scheduled_for).collect();
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            TimeDelta::seconds(1),
            "a gap or a repeat between {} and {}",
            pair[0],
            pair[1]
        );
    }
    // The killed replica's own `tick` run may have been cut off (`abandoned`).
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.status != "succeeded")
        .filter(|r| !(r.status == "abandoned" && r.instance.as_deref() == Some(&victim_instance)))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    let during: Vec<_> = rows
        .iter()
        .filter(|r| r.scheduled_for >= outage_start && r.scheduled_for <= outage_end)
        .collect();
    assert!(
        during.len() >= 7,
        "the fires that came due during the outage ran once the database was back"
    );
    let after: BTreeSet<_> = rows
        .iter()
        .filter(|r| r.scheduled_for > outage_end)
        .filter_map(|r| r.instance.clone())
        .collect();
    assert!(
        !after.is_empty() && !after.contains(&victim_instance),
        "survivors fire after the outage: {after:?}"
    );
    for r in replicas.values() {
        let log = r.log();
        assert!(
            log.contains("retrying with backoff until the database is back")
                || log.contains("heartbeat failed; retrying every second"),
            "the outage is logged:\n{log}"
        );
        assert!(
            log.contains("the database is reachable again")
                || log.contains("succeeded again after"),
            "the recovery is logged:\n{log}"
        );
    }
    store.close().await;
}
