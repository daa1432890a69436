//! The optional `[http]` listener on a real socket: `/metrics` after real runs and with a
//! scraper that stops reading, `/healthz`, `POST /jobs/{name}/run` with no, wrong and right
//! bearer tokens, its run id, `?wait=` for the finished run, `GET` where allowed and disabled
//! jobs, and the real binary under a low open-file limit with hundreds of idle clients.

use std::time::Duration;

use serde_json::{Value, json};
use tickler::daemon::Signal;

use crate::helpers::{Project, TestDaemon, free_port, runs, signal, utc, wait_for, wait_settled};

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

    // The next fires are the timer's: a reload that moves `nightly` to hourly and enables
    // `off` shows in the next scrape.
    let config = std::fs::read_to_string(p.config_path()).unwrap();
    let config = config
        .replacen("every = \"1m\"", "every = \"1h\"", 1)
        .replace("enabled = false\n", "");
    std::fs::write(p.config_path(), config).unwrap();
    d.reload().await;
    let wanted = [
        "tickler_job_next_fire_timestamp_seconds{job=\"nightly\"} 1795431600.0",
        "tickler_job_next_fire_timestamp_seconds{job=\"off\"} 1795428120.0",
    ];
    wait_for(
        "the reloaded next fires in a scrape",
        Duration::from_secs(10),
        || async {
            let r = http.get(format!("{base}/metrics")).send().await.ok()?;
            let text = r.text().await.ok()?;
            wanted
                .iter()
                .all(|w| text.lines().any(|l| l == *w))
                .then_some(())
        },
    )
    .await;

    // Nothing else is served.
    for path in ["/", "/metrics/x", "/jobs", "/jobs/nightly"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    d.stop().await;
    store.close().await;
}

/// `/metrics` is written while the scraper reads it, never held whole (57 MB at 100,000
/// jobs): a scraper that reads nothing has its response cut after 10 s (the connection closes
/// without the body's end, so it cannot take a part for the whole), and the scrape waiting
/// behind it is then answered in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scraper_that_reads_nothing_is_cut_off_and_the_next_scrape_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let p = Project::sqlite();
    let port = free_port();
    // About 16 MB of exposition: far more than the kernel's socket buffers hold.
    let jobs: String = (0..30_000)
        .map(|i| format!("[[job]]\nname = \"job-{i:05}\"\nkind = \"noop\"\nevery = \"1d\"\n"))
        .collect();
    p.write_config(
        "",
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n\n{jobs}"),
    );
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;

    // A scraper with a small receive buffer that asks and reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: tickler\r\n\r\n")
        .await
        .unwrap();
    // Its response has begun (it has the scrapes' turn) once its head arrives.
    let mut head = vec![];
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(60), stalled.read_exact(&mut byte));
        read.await
            .expect("the response's head within 60 s")
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");

    // The next scrape waits its turn, then gets the whole text.
    let started = std::time::Instant::now();
    let scrape = async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?;
        assert_eq!(r.status(), 200);
        r.text().await
    };
    let text = tokio::time::timeout(Duration::from_secs(90), scrape)
        .await
        .expect("the scrape behind a stalled one answered within 90 s")
        .unwrap();
    assert!(
        text.ends_with("# EOF\n"),
        "whole: {}",
        &text[text.len() - 200..]
    );
    assert!(text.contains("tickler_runs_total{job=\"job-29999\",status=\"failed\"} 0\n"));
    assert!(text.len() > 10_000_000, "{}", text.len());
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "it waited for the stalled scraper to be given up: {:?}",
        started.elapsed()
    );

    // The stalled scraper's response was cut: reading it now finds the connection closed
    // before the body's end (the last chunk, `0`, and the exposition's `# EOF`).
    let mut got = vec![];
    tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut got))
        .await
        .expect("the stalled connection was closed")
        .ok();
    let got = String::from_utf8_lossy(&got);
    assert!(
        !got.contains("# EOF"),
        "cut before its end ({} bytes read)",
        got.len()
    );
    assert!(!got.ends_with("\r\n0\r\n\r\n"), "no last chunk");
    d.stop().await;
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
    // The run has its audit row, as a run asked for by the CLI or the console has; the
    // refused requests above wrote none.
    let audit = store
        .audit_log(&tickler::store::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (
            audit[0].who.as_str(),
            audit[0].origin.as_str(),
            audit[0].action.as_str(),
            audit[0].target.as_str(),
            audit[0].detail.clone()
        ),
        (
            "bearer token",
            "http 127.0.0.1",
            "run",
            "nightly",
            Some(format!("run {}", body["run_id"].as_str().unwrap()))
        )
    );
    // GET is not a trigger (unless `allow_get_trigger`): the resource is there, the method
    // is not allowed.
    let r = http
        .get(format!("{base}/jobs/nightly/run"))
        .header("authorization", "Bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
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

/// A project for the trigger's callers (seed 003's Vercel cron): a job that succeeds, one
/// whose run is `partial` (a `cleanup` rule on a table that does not exist), one that takes
/// 3 s, and a disabled one; none is due while the test runs. `http_extra` goes into `[http]`.
fn trigger_project(http_extra: &str) -> (Project, String) {
    let p = Project::sqlite();
    let port = free_port();
    let token_file = p.path().join("trigger-token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n{http_extra}\n\
             [[job]]\nname = \"ok\"\nkind = \"noop\"\nschedule = \"0 3 1 1 *\"\n\n\
             [[job]]\nname = \"patchy\"\nkind = \"cleanup\"\nschedule = \"0 3 1 1 *\"\n\n\
             [[job.rule]]\ntable = \"notification_log\"\nolder_than = \"90d\"\n\n\
             [[job.rule]]\ntable = \"no_such_table\"\nolder_than = \"1d\"\n\n\
             [[job]]\nname = \"slow\"\nkind = \"command\"\ncommand = [\"sleep\", \"3\"]\n\
             schedule = \"0 3 1 1 *\"\n\n\
             [[job]]\nname = \"off\"\nkind = \"noop\"\nschedule = \"0 3 1 1 *\"\nenabled = false\n",
            token_file.display()
        ),
    );
    (p, format!("http://127.0.0.1:{port}"))
}

/// `POST /jobs/NAME/run` with `auth` as the `Authorization` header; `query` after the path.
async fn post_run(base: &str, job_and_query: &str, auth: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/jobs/{job_and_query}"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The ledger row of run `id` once it has ended.
async fn ended_run(store: &tickler::store::Store, id: &str) -> tickler::store::RunRow {
    let id: uuid::Uuid = id.parse().expect("a run id");
    wait_for(
        &format!("run {id} to end in the ledger"),
        Duration::from_secs(30),
        || async {
            let rows = store
                .history(&tickler::store::HistoryFilter {
                    job: None,
                    status: None,
                    limit: 1,
                    run: Some(id),
                })
                .await
                .unwrap();
            rows.into_iter()
                .find(|r| r.status != "running" && r.status != "pending")
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_answers_with_its_run_id_or_waits_for_the_run_in_the_seeds_shape() {
    let (p, base) = trigger_project("");
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let store = p.store().await;
    // Each manual run of a job is its own slot: the test's clock moves on between two.
    let next_instant = || d.clock.advance(Duration::from_millis(1));

    // Without `wait`: 202 at once, with the id the run's ledger row then has.
    let (status, body) = post_run(&base, "ok/run", "Bearer s3cret-token").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["job"], "ok");
    assert_eq!(body["trigger"], "manual");
    let row = ended_run(&store, body["run_id"].as_str().unwrap()).await;
    assert_eq!(
        (
            row.job_name.as_str(),
            row.status.as_str(),
            row.trigger.as_str()
        ),
        ("ok", "succeeded", "manual")
    );

    // With `wait`: the finished run, as seed 003's endpoints answer (`success`, counts,
    // `errors`), and the same as its ledger row.
    next_instant();
    let (status, body) = post_run(&base, "ok/run?wait=30s", "Bearer s3cret-token").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["job"], "ok");
    assert_eq!(body["errors"], json!([]));
    let row = ended_run(&store, body["run_id"].as_str().unwrap()).await;
    assert_eq!(row.status, "succeeded");
    assert_eq!(body["records_processed"], json!(row.records_processed));
    assert_eq!(runs(&store, "ok").await.len(), 2);

    // A run with item errors is `partial`: not a success, its item errors listed, its counts
    // given.
    let (status, body) = post_run(&base, "patchy/run?wait=30s", "Bearer s3cret-token").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["status"], "partial");
    assert_eq!(body["records_processed"], 0);
    let errors = body["errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 1, "{body}");
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .starts_with("no_such_table.created_at older than 1day: "),
        "{body}"
    );
    let row = ended_run(&store, body["run_id"].as_str().unwrap()).await;
    assert_eq!(row.status, "partial");
    assert_eq!(row.metadata.unwrap()["item_errors"], json!(errors));
    assert_eq!(body["metadata"]["item_error_count"], 1);

    // The scheme is case-insensitive (RFC 7235); the token is not.
    for auth in ["bearer s3cret-token", "BEARER s3cret-token"] {
        next_instant();
        let (status, body) = post_run(&base, "ok/run", auth).await;
        assert_eq!(status, 202, "{auth}: {body}");
        ended_run(&store, body["run_id"].as_str().unwrap()).await;
    }
    let (status, _) = post_run(&base, "ok/run", "bearer S3CRET-TOKEN").await;
    assert_eq!(status, 401);

    // A bad `wait` is refused before anything runs, and says what to write.
    next_instant();
    for (query, message) in [
        (
            "wait=soon",
            "invalid `wait` query parameter `soon`: expected a duration such as `30s`, `2m` or \
             `1m30s`",
        ),
        (
            "wait=10m",
            "invalid `wait` query parameter `10m`: at most 5m is accepted; follow a longer run \
             with `tickler history --run RUN_ID`",
        ),
    ] {
        let (status, body) =
            post_run(&base, &format!("ok/run?{query}"), "Bearer s3cret-token").await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body, json!({"error": message}), "{query}");
    }

    // A disabled job does not run, and the answer says how to enable it.
    let (status, body) = post_run(&base, "off/run?wait=30s", "Bearer s3cret-token").await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"error": "job `off` is disabled (`enabled = false`); to run it, set `enabled = \
                         true` in its `[[job]]` and reload the daemon (`systemctl reload tickler`)"})
    );
    // An unknown job is still 404, with or without `wait`.
    let (status, _) = post_run(&base, "nope/run?wait=1s", "Bearer s3cret-token").await;
    assert_eq!(status, 404);
    assert_eq!(
        runs(&store, "ok").await.len(),
        4,
        "no run from a refused `wait`"
    );
    assert!(runs(&store, "off").await.is_empty());
    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_runs_out_answers_504_with_the_run_id_and_the_run_goes_on() {
    let (p, base) = trigger_project("");
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let store = p.store().await;
    let asked = std::time::Instant::now();
    let (status, body) = post_run(&base, "slow/run?wait=1s", "Bearer s3cret-token").await;
    let answered_in = asked.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        answered_in >= Duration::from_secs(1) && answered_in < Duration::from_secs(3),
        "answered after {answered_in:?}"
    );
    let id = body["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        body,
        json!({
            "error": format!("`slow` is still running after 1s; its row in `tickler history \
                              --run {id}` says how it ends"),
            "run_id": id,
            "job": "slow",
        })
    );
    let rows = runs(&store, "slow").await;
    assert_eq!(
        (rows.len(), rows[0].id.as_str(), rows[0].status.as_str()),
        (1, id.as_str(), "running")
    );
    // The caller gave up waiting; the run did not stop.
    assert_eq!(ended_run(&store, &id).await.status, "succeeded");
    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_ends_when_the_daemon_stops() {
    let (p, base) = trigger_project("");
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let store = p.store().await;
    let asked = std::time::Instant::now();
    let request = tokio::spawn({
        let base = base.clone();
        async move { post_run(&base, "slow/run?wait=5m", "Bearer s3cret-token").await }
    });
    let row = wait_for("the slow run to start", Duration::from_secs(30), || async {
        runs(&store, "slow")
            .await
            .into_iter()
            .find(|r| r.status == "running")
    })
    .await;
    d.signals.send(Signal::Shutdown).await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("the waiting request is answered when the daemon stops, not after 5m")
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["run_id"], row.id.as_str());
    assert_eq!(
        body["error"],
        format!(
            "the daemon is stopping; the run goes on within its shutdown grace and `tickler \
             history --run {}` says how it ended",
            row.id
        )
    );
    // The daemon still lets the run finish within its grace.
    d.task.await.unwrap().unwrap();
    assert_eq!(ended_run(&store, &row.id).await.status, "succeeded");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_triggers_a_run_only_where_allow_get_trigger_is_set() {
    let http = reqwest::Client::new();

    let (p, base) = trigger_project("");
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let r = http
        .get(format!("{base}/jobs/ok/run"))
        .header("authorization", "Bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "`GET /jobs/NAME/run` runs nothing here: use POST, or set \
                         `allow_get_trigger = true` in `[http]` for a caller that can only GET"})
    );
    let store = p.store().await;
    assert!(runs(&store, "ok").await.is_empty());
    d.stop().await;
    store.close().await;

    // As Vercel cron calls: GET, with a bearer token.
    let (p, base) = trigger_project("allow_get_trigger = true\n");
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let store = p.store().await;
    let get = |path: &str, auth: &str| {
        http.get(format!("{base}{path}"))
            .header("authorization", auth)
            .send()
    };
    let r = get("/jobs/ok/run", "Bearer wrong").await.unwrap();
    assert_eq!(r.status(), 401, "the token is wanted on GET too");
    let r = get("/jobs/ok/run?wait=30s", "Bearer s3cret-token")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["success"], &body["status"]),
        (&json!(true), &json!("succeeded"))
    );
    let rows = runs(&store, "ok").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(body["run_id"], rows[0].id.as_str());
    assert_eq!(rows[0].trigger, "manual");
    // Other paths are still not found.
    let r = get("/jobs/ok", "Bearer s3cret-token").await.unwrap();
    assert_eq!(r.status(), 404);
    d.stop().await;
    store.close().await;
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
