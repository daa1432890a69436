//! `tickler history`: recorded runs, newest first, as a table or JSON, or one run whole.

use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::{Format, finish, open_store};
use crate::config::Config;
use crate::store::{HistoryFilter, RunRow, Status};

/// `tickler history`.
pub async fn history(
    config: &Config,
    job: Option<String>,
    run: Option<uuid::Uuid>,
    status: Option<Status>,
    limit: i64,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let filter = HistoryFilter {
        job,
        status,
        limit,
        run,
    };
    let mut rows = store.history(&filter).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut messages = store.run_messages(&ids).await?;
    for r in &mut rows {
        r.messages = messages.remove(&r.id);
    }
    store.close().await;
    if let Some(id) = run
        && rows.is_empty()
    {
        anyhow::bail!(
            "no run `{id}` in the ledger of `{}`; it may have been pruned \
             (`history_retention`), or belong to another database",
            config.daemon.database_url
        );
    }
    let text = match (format, run) {
        (Format::Json, _) => serde_json::to_string_pretty(&rows)? + "\n",
        (Format::Table, Some(_)) => run_detail(&rows[0]),
        (Format::Table, None) => history_table(&rows),
    };
    finish(&text, ExitCode::SUCCESS)
}

/// One run, field by field, with its metadata (failed attempts, item errors, output tails).
fn run_detail(r: &RunRow) -> String {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let mut out = String::new();
    let fields = [
        ("run", r.id.clone()),
        ("job", r.job_name.clone()),
        ("status", r.status.clone()),
        ("trigger", r.trigger.clone()),
        ("scheduled_for", r.scheduled_for.to_rfc3339()),
        ("started_at", time(r.started_at)),
        ("completed_at", time(r.completed_at)),
        (
            "duration_s",
            r.duration_seconds
                .map(|d| format!("{d:.3}"))
                .unwrap_or_default(),
        ),
        (
            "records",
            r.records_processed
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ),
        ("attempts", r.attempt.to_string()),
        ("daemon", r.instance.clone().unwrap_or_default()),
        ("messages", message_counts(r)),
        ("error", r.error_message.clone().unwrap_or_default()),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "{name:<14} {value}");
    }
    if let Some(m) = &r.metadata {
        let pretty = serde_json::to_string_pretty(m).unwrap_or_default();
        let _ = writeln!(out, "metadata\n{pretty}");
    }
    out
}

/// The error of a run, and the messages it may have sent without knowing (`unknown`).
fn history_note(r: &RunRow) -> String {
    let unknown = r
        .messages
        .as_ref()
        .and_then(|m| m.get("unknown"))
        .copied()
        .unwrap_or(0);
    let error = r.error_message.as_deref().unwrap_or("");
    match (unknown, error) {
        (0, e) => e.to_string(),
        (n, "") => format!("{n} message(s) unknown: they may have been sent"),
        (n, e) => format!("{e}; {n} message(s) unknown: they may have been sent"),
    }
}

/// A run's messages by status, e.g. `530 sent, 4 unknown`.
fn message_counts(r: &RunRow) -> String {
    r.messages
        .iter()
        .flatten()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn history_table(rows: &[RunRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<24} {:<11} {:<8} {:>3} {:>9} {:>8}  ERROR",
        "SCHEDULED_FOR (UTC)", "JOB", "STATUS", "TRIGGER", "TRY", "SECONDS", "RECORDS"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<24} {:<11} {:<8} {:>3} {:>9} {:>8}  {}",
            r.scheduled_for.format("%Y-%m-%d %H:%M:%S"),
            r.job_name,
            r.status,
            r.trigger,
            r.attempt,
            r.duration_seconds
                .map(|d| format!("{d:.3}"))
                .unwrap_or_default(),
            r.records_processed
                .map(|n| n.to_string())
                .unwrap_or_default(),
            history_note(r)
        );
    }
    out
}
