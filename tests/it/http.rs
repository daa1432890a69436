//! The optional `[http]` listener on a real socket: `/metrics` after real runs, `/healthz`, and
//! `POST /jobs/{name}/run` with no, wrong and right bearer tokens.

use std::time::Duration;

use crate::helpers::{Project, TestDaemon, runs, utc, wait_settled};

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
