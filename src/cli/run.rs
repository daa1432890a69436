//! `tickler run` (the daemon, with signals forwarded to it) and `tickler run-job` (jobs run now,
//! in this process, or previewed with `--dry-run`).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;

use super::{finish, open_store};
use crate::config::Config;
use crate::daemon::{self, Options, Signal};
use crate::store::Status;
use crate::store::audit::Action;

/// `tickler run`: the daemon, until SIGTERM; SIGHUP reloads the config.
pub async fn run(config: Config, demo: bool) -> anyhow::Result<ExitCode> {
    if demo {
        run_demo(&config).await?;
    }
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(forward_signals(tx));
    let options = Options {
        service: daemon::systemd::ServiceManager::from_env(),
        edge: crate::http::edge(&config),
        ..Options::default()
    };
    daemon::run(config, rx, options).await?;
    Ok(ExitCode::SUCCESS)
}

/// `tickler run-job`: the named job, or every enabled one, run now and recorded `manual`.
pub async fn run_job(
    config: &Config,
    name: Option<String>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let names: Vec<Arc<str>> = match name {
        Some(name) => match config.job(&name) {
            Some(spec) => vec![spec.name.clone()],
            None => anyhow::bail!(
                "no job named `{name}` in `{}`; `tickler check` lists the jobs",
                config.path.display()
            ),
        },
        None => config
            .jobs
            .iter()
            .filter(|j| j.enabled)
            .map(|j| j.name.clone())
            .collect(),
    };
    let code = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    let mut text = String::new();
    let mut ok = true;
    if dry_run {
        for (name, result) in daemon::dry_run(config, &names).await? {
            match result {
                Ok(outcome) => text.push_str(&dry_run_report(&name, &outcome)),
                Err(e) => {
                    ok = false;
                    let _ = writeln!(text, "{name}: would fail: {e}");
                }
            }
        }
        return finish(&text, code(ok));
    }
    let ran = daemon::run_now(config, &names).await?;
    let store = open_store(config).await?;
    let actor = super::operate::cli_actor();
    for (name, summary) in &ran {
        let detail = summary.as_ref().map(|s| format!("run {}", s.id));
        store
            .audit(&actor, Action::Run, name, detail.as_deref(), Utc::now())
            .await?;
    }
    store.close().await;
    for (name, summary) in ran {
        match summary {
            Some(s) => {
                ok &= matches!(s.status, Status::Succeeded | Status::Partial);
                let _ = writeln!(
                    text,
                    "{name}: {} (run {}, {} records{})",
                    s.status.as_str(),
                    s.id,
                    s.records.unwrap_or(0),
                    s.error.map(|e| format!("; {e}")).unwrap_or_default()
                );
            }
            None => {
                ok = false;
                let _ = writeln!(text, "{name}: did not run");
            }
        }
    }
    finish(&text, code(ok))
}

/// `tickler run --demo`: demo data in an empty database, then every enabled job once.
async fn run_demo(config: &Config) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let today = Utc::now()
        .with_timezone(&config.daemon.timezone)
        .date_naive();
    match crate::billing::demo::fill(&store, today).await {
        Ok((c, s, i)) => tracing::info!(
            customers = c,
            subscriptions = s,
            invoices = i,
            "demo data loaded"
        ),
        Err(e) => tracing::info!("no demo data loaded: {e}"),
    }
    store.close().await;
    let names: Vec<Arc<str>> = config
        .jobs
        .iter()
        .filter(|j| j.enabled)
        .map(|j| j.name.clone())
        .collect();
    for (name, summary) in daemon::run_now(config, &names).await? {
        match summary {
            Some(s) => {
                tracing::info!(job = %name, status = s.status.as_str(), records = s.records.unwrap_or(0), "demo run")
            }
            None => tracing::warn!(job = %name, "demo run did not start"),
        }
    }
    Ok(())
}

/// What `run-job --dry-run` prints for one job.
pub fn dry_run_report(name: &str, outcome: &crate::jobs::Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{name}: dry run, {} record(s); nothing was sent or changed",
        outcome.records
    );
    let mut summary = outcome.metadata.clone();
    let plan = summary.remove("plan");
    if !summary.is_empty() {
        let _ = writeln!(out, "  {}", serde_json::Value::Object(summary));
    }
    if let Some(serde_json::Value::Array(items)) = plan {
        for item in items {
            if let Some(at) = item["deferred_until"].as_str() {
                let _ = writeln!(
                    out,
                    "  would defer {} to {} until {at} (outside its send window)",
                    item["channel"].as_str().unwrap_or("?"),
                    item["to"].as_str().unwrap_or("?"),
                );
                continue;
            }
            let _ = writeln!(
                out,
                "  would send {} to {}: {}",
                item["channel"].as_str().unwrap_or("?"),
                item["to"].as_str().unwrap_or("?"),
                item["subject"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .or(item["text"].as_str())
                    .unwrap_or("")
            );
        }
    }
    for e in &outcome.errors {
        let _ = writeln!(out, "  would fail: {e}");
    }
    out
}

async fn forward_signals(tx: mpsc::Sender<Signal>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        let s = tokio::select! {
            _ = hup.recv() => Signal::Reload,
            _ = term.recv() => Signal::Shutdown,
            _ = int.recv() => Signal::Shutdown,
        };
        if tx.send(s).await.is_err() {
            return;
        }
    }
}
