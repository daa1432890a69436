//! The monitoring files shipped in `deploy/`: every metric the Prometheus rules and the Grafana
//! dashboard name is one a real daemon's `/metrics` exposes (and the dashboard shows every one
//! of them); the dashboard is importable JSON with its datasource and `job` variables; and
//! `promtool` accepts the rules, their unit tests (which make each alert fire) and the
//! dashboard's queries.
//!
//! There is no YAML crate in the tree, so the rules are read as text for their metric names and
//! checked as YAML by `promtool`. Without `promtool` on PATH that part is skipped loudly, unless
//! `TICKLER_REQUIRE_PROMTOOL=1` (as in `.ci/run`), which makes it fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Project, TestDaemon, utc, wait_settled};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// The `tickler_*` names in `text` (and Prometheus' own `up`, which the rules use for a failed
/// scrape).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while let Some(at) = text[i..].find("tickler_").map(|at| at + i) {
        let mut end = at;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if at == 0 || !word(bytes[at - 1]) {
            names.insert(text[at..end].to_string());
        }
        i = end;
    }
    names
}

/// A daemon with `[http]`, one job with a dead-man deadline that has run once and one paused
/// job, so that every family of `/metrics` has a sample; its exposition.
async fn scrape() -> String {
    let p = Project::sqlite();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[job]]\nname = \"nightly\"\nkind = \"noop\"\nevery = \"1m\"\n\
             expect_success_within = \"1h\"\n\
             [[job]]\nname = \"held\"\nkind = \"noop\"\nevery = \"1m\"\n"
        ),
    );
    let store = p.store().await;
    let actor = tickler::store::audit::Actor {
        who: "test".into(),
        origin: "test".into(),
    };
    store
        .pause_job("held", "", &actor, utc("2026-11-23T10:00:00Z"))
        .await
        .unwrap();
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;
    d.clock.advance(Duration::from_secs(30));
    wait_settled(&store, "nightly", 1).await;
    wait_settled(&store, "held", 1).await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    d.stop().await;
    store.close().await;
    text
}

/// The names of the samples in an exposition (`tickler_runs_total`, `..._bucket`, ...), and
/// of its families (`# TYPE` lines: `tickler_runs`, `tickler_run_duration_seconds`, ...).
fn exposed(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    (samples, families)
}

/// The `expr` of every target of every panel (rows hold none).
fn exprs(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .expect("`panels` is a list")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("each target has an `expr`")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_and_dashboard_name_only_metrics_the_daemon_exposes() {
    let text = scrape().await;
    let (samples, families) = exposed(&text);
    assert!(
        samples.contains("tickler_run_duration_seconds_bucket")
            && samples.contains("tickler_job_success_due_timestamp_seconds")
            && samples.contains("tickler_loop_tick_age_seconds")
            && samples.contains("tickler_queue_tasks"),
        "the scrape has a sample of every family:\n{text}"
    );

    let rules = std::fs::read_to_string(deploy("prometheus/tickler-rules.yml")).unwrap();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/tickler.json")).unwrap())
            .expect("deploy/grafana/tickler.json is JSON");
    let exprs = exprs(&dashboard);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let in_dashboard = metric_names(&exprs.join("\n"));
    let in_rules = metric_names(&rules);
    for (file, names) in [("rules", &in_rules), ("dashboard", &in_dashboard)] {
        let unknown: Vec<_> = names.iter().filter(|n| !samples.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "the {file} name metrics `/metrics` does not expose: {unknown:?}\nexposed: {samples:?}"
        );
    }
    // The dashboard shows every family; the rules use the ones an alert is about.
    for family in &families {
        assert!(
            in_dashboard.iter().any(|n| n.starts_with(family.as_str())),
            "the dashboard does not show `{family}`"
        );
    }
    for name in [
        "tickler_runs_total",
        "tickler_job_success_due_timestamp_seconds",
        "tickler_loop_tick_age_seconds",
        "tickler_database_up",
        "tickler_queue_tasks",
    ] {
        assert!(in_rules.contains(name), "no rule uses `{name}`");
    }
    // Prometheus renames the series' own `job` label to `exported_job`; the scrape job is
    // `tickler`.
    assert!(rules.contains("up{job=\"tickler\"} == 0"));
    for e in &exprs {
        let per_job = metric_names(e)
            .iter()
            .any(|n| n.starts_with("tickler_run") || n.starts_with("tickler_job_"));
        if per_job {
            assert!(
                e.contains("exported_job=~\"$job\""),
                "a per-job panel follows the `job` variable through `exported_job`: {e}"
            );
        }
        assert!(
            !e.contains("{job=~") && !e.contains(",job=~"),
            "`job` is the scrape job: {e}"
        );
    }
}

#[test]
fn the_dashboard_is_importable_with_its_datasource_and_job_variables() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/tickler.json")).unwrap())
            .unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    let job = var("job");
    assert_eq!(job["type"], "query");
    assert!(
        job["definition"]
            .as_str()
            .unwrap()
            .starts_with("label_values(tickler_")
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{p}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        }
    }
    let titles: Vec<_> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Runs by status",
        "Failures (last hour)",
        "Run duration p50 / p99",
        "Start lateness p99",
        "Since last success",
        "Next fire",
        "Tasks by status",
        "Open messages",
        "Database up",
        "Timer loop: last round",
    ] {
        assert!(titles.contains(&want), "no panel `{want}` in {titles:?}");
    }
}

/// `promtool` when it is on PATH; `None` (after a loud line) when it is not and not required.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("promtool");
    }
    if std::env::var("TICKLER_REQUIRE_PROMTOOL").as_deref() == Ok("1") {
        panic!(
            "`promtool` is not on PATH and TICKLER_REQUIRE_PROMTOOL=1: install Debian's \
             `prometheus` package"
        );
    }
    eprintln!(
        "SKIPPING promtool: `promtool` is not on PATH, so deploy/prometheus/tickler-rules.yml \
         is not checked (install Debian's `prometheus` package, or set \
         TICKLER_REQUIRE_PROMTOOL=1 to fail instead)"
    );
    None
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else {
        return;
    };
    // The dashboard's queries, with Grafana's variables filled in, as recording rules: promtool
    // parses each one.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/tickler.json")).unwrap())
            .unwrap();
    let mut queries = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs(&dashboard).iter().enumerate() {
        let e = e.replace("$__rate_interval", "5m").replace("$job", ".*");
        let quoted = serde_json::to_string(&e).unwrap();
        queries.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let queries_file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&queries_file, &queries).unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&queries_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the dashboard's queries do not parse:\n{}{}\n{queries}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        ["check", "rules", "tickler-rules.yml"],
        ["test", "rules", "tickler-rules.test.yml"],
    ] {
        let out = Command::new(promtool)
            .args(args)
            .current_dir(deploy("prometheus"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
