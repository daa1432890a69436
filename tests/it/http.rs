//! The optional `[http]` listener on a real socket: `/metrics` after real runs, `/healthz`, and
//! `POST /jobs/{name}/run` with no, wrong and right bearer tokens, and the real binary under a
//! low open-file limit with hundreds of idle clients.

use std::time::Duration;

use crate::helpers::{Project, TestDaemon, runs, signal, utc, wait_for, wait_settled};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A project with two jobs and `[http]` on `port` (a free one when `None`), its token in a
/// file.
fn project(with_token: bool, port: Option<u16>) -> (Project, String) {
    let p = Project::sqlite();
    let port = port.unwrap_or_else(free_port);
    let token_file = p.path().join("trigger-token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let token = if with_token {
        format!("token_file = \"{}\"\n", token_file.display())
    } else {
        String::new()
    };
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{token}\n\
             [[job]]\nname = \"nightly\"\nkind = \"noop\"\nevery = \"1m\"\n\n\
             [[job]]\nname = \"off\"\nkind = \"noop\"\nevery = \"1m\"\nenabled = false\n"
        ),
    );
    (p, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_report_runs_next_fires_and_the_queue() {
    let (p, base) = project(true, None);
    let t0 = utc("2026-11-23T10:00:30Z");
    let d = TestDaemon::start(p.config(), t0).await;
    let store = p.store().await;
    d.clock.advance(Duration::from_secs(30));
    wait_settled(&store, "nightly", 1).await;
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    for line in [
        "tickler_runs_total{job=\"nightly\",status=\"succeeded\"} 1",
        "tickler_run_duration_seconds_count{job=\"nightly\"} 1",
        "tickler_run_lateness_seconds_count{job=\"nightly\"} 1",
        // 10:01 ran, so 10:02 is next; the disabled job has no next fire.
        "tickler_job_next_fire_timestamp_seconds{job=\"nightly\"} 1795428120.0",
        "tickler_queue_tasks{status=\"pending\"} 0",
        "tickler_database_up 1",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("tickler_job_last_success_timestamp_seconds{job=\"nightly\"} ")),
        "{text}"
    );
    assert!(
        !text.contains("job=\"off\""),
        "a disabled job has no next fire and no runs: {text}"
    );

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["loop"], "ok");

    // Nothing else is served.
    for path in ["/", "/metrics/x", "/jobs", "/jobs/nightly"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_trigger_wants_the_bearer_token_and_a_known_job() {
    let (p, base) = project(true, None);
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let store = p.store().await;
    let http = reqwest::Client::new();
    let post = |auth: Option<&str>, job: &str| {
        let mut r = http.post(format!("{base}/jobs/{job}/run"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-token-and-more"),
        Some("Bearer s3cret-toke"),
        Some("s3cret-token"),
        Some("Basic s3cret-token"),
    ] {
        let r = post(auth, "nightly").await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    // The token is checked before the job, so job names cannot be probed without it.
    assert_eq!(post(None, "nope").await.unwrap().status(), 401);
    assert!(
        runs(&store, "nightly").await.is_empty(),
        "no run from a refused request"
    );

    let r = post(Some("Bearer s3cret-token"), "nope").await.unwrap();
    assert_eq!(r.status(), 404);
    let r = post(Some("Bearer s3cret-token"), "nightly").await.unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["job"], "nightly");
    assert_eq!(body["trigger"], "manual");
    let rows = wait_settled(&store, "nightly", 1).await;
    assert_eq!(rows[0].trigger, "manual");
    assert_eq!(rows[0].status, "succeeded");
    // GET is not a trigger.
    let r = http
        .get(format!("{base}/jobs/nightly/run"))
        .header("authorization", "Bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A path that is both `/jobs/...` and `.../run` but names no job is not found (it once
    // sliced out of range), and the listener keeps serving.
    for path in ["/jobs/run", "/jobs//run"] {
        let r = http
            .post(format!("{base}{path}"))
            .header("authorization", "Bearer s3cret-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_trigger_is_refused_and_a_taken_port_fails_the_start() {
    let (p, base) = project(false, None);
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/jobs/nightly/run"))
        .header("authorization", "Bearer anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A second daemon on the same port (another SQLite file) cannot start, and says why.
    let port = base.rsplit(':').next().unwrap();
    let (q, _) = project(false, port.parse().ok());
    let out = q.cli(&["run"]);
    assert!(!out.status.success());
    let err = crate::helpers::stderr(&out);
    assert!(
        err.contains(&format!(
            "error: cannot listen on 127.0.0.1:{port} (`[http] listen`): Address already in use (os error 98); pick a free port"
        )) && err.contains("or remove the `[http]` section") && !err.contains("INFO tickler started"),
        "{err}"
    );
    d.stop().await;

    // A token that cannot be read stops the daemon's start, and only that: the other commands
    // load the same config from a shell without the service's credentials.
    let (r, _) = project(false, None);
    let config = std::fs::read_to_string(r.config_path()).unwrap();
    std::fs::write(
        r.config_path(),
        config.replace("[http]\n", "[http]\ntoken_file = \"/nonexistent/token\"\n"),
    )
    .unwrap();
    let history = r.cli(&["history"]);
    assert!(
        history.status.success(),
        "{}",
        crate::helpers::stderr(&history)
    );
    let out = r.cli(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::helpers::stderr(&out);
    assert!(
        err.ends_with(
            "error: cannot read the `[http]` token: cannot read secret file `/nonexistent/token`: \
             No such file or directory (os error 2)\n"
        ),
        "{err}"
    );
}

/// Sets this test process's soft open-file limit to at least `want` (within its hard limit):
/// the test itself holds hundreds of sockets.
fn ensure_own_file_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on structs we own; only this process's limit changes.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            assert!(
                lim.rlim_max >= want,
                "this test needs {want} descriptors; the hard limit is {}",
                lim.rlim_max
            );
            lim.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

/// A daemon process of this test's own, killed by its pid if the test fails midway.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `GET /healthz` on a connection of its own; its status, or what went wrong.
async fn healthz(base: &str, within: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(within)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// The drill on the real binary: started with a soft limit of 128 files (hard 192),
/// 300 idle clients connect and stay. The daemon raises its limit to 192, serves fewer
/// connections than `max_connections` so that a reserve stays free, answers `/healthz` at
/// once (the oldest idle connection makes room), a job that spawns a process every second
/// keeps succeeding, and the full listener is logged once, not per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_health_checks_jobs_or_descriptors() {
    use std::os::unix::process::CommandExt;

    const CLIENTS: usize = 300;
    const SOFT: u64 = 128;
    const HARD: u64 = 192;
    ensure_own_file_limit(1024);
    let p = Project::sqlite();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[job]]\nname = \"tick\"\nkind = \"command\"\nshell = true\n\
             command = [\"ulimit -n > {}\"]\nevery = \"1s\"\n",
            p.path().join("job-limit").display()
        ),
    );
    let log_path = p.path().join("daemon.log");
    let mut cmd = p.daemon_command();
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .env("TICKLER_LOG", "info");
    // SAFETY: setrlimit is async-signal-safe and changes only the child's own limit.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: SOFT,
                rlim_max: HARD,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut daemon = Spawned(cmd.spawn().expect("spawn tickler run"));
    let pid = daemon.0.id();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for(
        "the listener to answer",
        Duration::from_secs(30),
        || async { (healthz(&base, Duration::from_secs(2)).await == Ok(200)).then_some(()) },
    )
    .await;
    let text = log();
    assert!(
        text.contains(&format!("raised the open-file limit from={SOFT} to={HARD}")),
        "{text}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files")
            && l.split_whitespace().collect::<Vec<_>>()[3..5] == ["192", "192"]),
        "{limits}"
    );
    assert!(
        text.contains("`[http] max_connections` lowered") && text.contains("max_connections=128"),
        "192 files leave fewer than 128 connections after the reserve: {text}"
    );

    let store = p.store().await;
    let before = runs(&store, "tick").await.len();
    let mut idle = Vec::with_capacity(CLIENTS + 50);
    for _ in 0..CLIENTS {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }

    // A monitor is answered at once, though 300 clients got there first and said nothing.
    let started = std::time::Instant::now();
    assert_eq!(healthz(&base, Duration::from_secs(5)).await, Ok(200));
    let answered_in = started.elapsed();
    let free = |n: usize| (HARD as usize).saturating_sub(n);
    let fds = open_descriptors(pid);
    assert!(
        free(fds) >= 32,
        "{fds} of {HARD} descriptors open while idle clients wait"
    );

    // Jobs keep running (each run spawns a shell: pipes, a process) while the clients stay.
    let rows = wait_for(
        "3 more runs of `tick` while the clients stay",
        Duration::from_secs(20),
        || async {
            let fds = open_descriptors(pid);
            assert!(free(fds) >= 32, "{fds} of {HARD} descriptors open");
            let rows = runs(&store, "tick").await;
            let done = rows.iter().filter(|r| r.status != "running").count();
            (done >= before + 3).then_some(rows)
        },
    )
    .await;
    for r in rows.iter().filter(|r| r.status != "running") {
        assert_eq!(r.status, "succeeded", "{:?}", r.error_message);
    }
    // Jobs get the soft limit the daemon was started with, not the one it raised.
    let limit = std::fs::read_to_string(p.path().join("job-limit")).unwrap();
    assert_eq!(limit.trim(), SOFT.to_string());

    // Filling it up again is not logged again.
    for _ in 0..50 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    assert_eq!(healthz(&base, Duration::from_secs(5)).await, Ok(200));
    drop(idle);

    signal(&daemon.0, libc::SIGTERM);
    let status = wait_for("the daemon to exit", Duration::from_secs(30), || {
        let status = daemon.0.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "{status}");
    let text = log();
    assert_eq!(
        text.matches("http connection limit reached").count(),
        1,
        "one line for a full listener, not one per connection: {text}"
    );
    assert!(
        text.contains("raise `[http] max_connections`"),
        "the line says what to do: {text}"
    );
    assert!(!text.contains("Too many open files"), "{text}");
    eprintln!("healthz answered in {answered_in:?} behind {CLIENTS} idle clients");
    store.close().await;
}
