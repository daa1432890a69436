//! `tickler pause|resume|backfill|audit`: an operator steering the schedule. A pause is a row
//! in the database, so every daemon sharing it obeys it from its next fire; a backfill runs
//! past slots in this process; every action is written to the audit log, which `audit` shows.
//! Each command checks its input first and changes nothing when it is wrong.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use super::Format;
use crate::config::{Config, JobSpec};
use crate::daemon::manual;
use crate::store::audit::Action;
use crate::store::audit::{Actor, AuditFilter};
use crate::store::{Status, Store, StoreError};

/// The most slots one backfill runs: a wider range is refused before anything runs.
pub const MAX_BACKFILL_SLOTS: usize = 10_000;

/// A refused operator command.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error("there is no job `{0}` in the config; `tickler list` shows the jobs")]
    UnknownJob(String),
    #[error("`{0}` is already paused; `tickler resume {0}` resumes it")]
    AlreadyPaused(String),
    #[error("`{0}` is not paused")]
    NotPaused(String),
    #[error("`--from` ({from}) is after `--to` ({to}); give the earlier time first")]
    Backwards { from: String, to: String },
    #[error(
        "`--to` ({to}) is in the future; a backfill runs past slots only (the daemon runs the \
         coming ones): give a time before now"
    )]
    Future { to: String },
    #[error(
        "`{job}` has more than {MAX_BACKFILL_SLOTS} slots from {from} to {to}; backfill a \
         narrower range at a time"
    )]
    TooMany {
        job: String,
        from: String,
        to: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
}

pub type Result<T> = std::result::Result<T, OperateError>;

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The person at this terminal, for the audit log: the user `sudo` was run by, else the login
/// user, on this host.
pub fn cli_actor() -> Actor {
    let who = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown user".to_string());
    let host = crate::store::hostname().unwrap_or_else(|_| "unknown host".to_string());
    Actor {
        who,
        origin: format!("cli on {host}"),
    }
}

fn job<'a>(config: &'a Config, name: &str) -> Result<&'a Arc<JobSpec>> {
    config
        .job(name)
        .ok_or_else(|| OperateError::UnknownJob(name.to_string()))
}

/// `tickler pause JOB --reason TEXT`.
pub async fn pause(store: &Store, config: &Config, name: &str, reason: &str) -> Result<String> {
    job(config, name)?;
    if !store
        .pause_job(name, reason.trim(), &cli_actor(), Utc::now())
        .await?
    {
        return Err(OperateError::AlreadyPaused(name.to_string()));
    }
    Ok(format!(
        "paused `{name}`: its slots are recorded `paused`, not run, until `tickler resume {name}`\n"
    ))
}

/// `tickler resume JOB`.
pub async fn resume(store: &Store, config: &Config, name: &str) -> Result<String> {
    job(config, name)?;
    if !store.resume_job(name, &cli_actor(), Utc::now()).await? {
        return Err(OperateError::NotPaused(name.to_string()));
    }
    Ok(format!("resumed `{name}`: its next slot runs\n"))
}

/// What a backfill asks for.
pub struct BackfillRequest<'a> {
    pub job: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub only_missed: bool,
    pub dry_run: bool,
}

/// The slots of `spec` from `from` to `to`, both included, oldest first; refused past
/// [`MAX_BACKFILL_SLOTS`].
fn slots_between(
    spec: &JobSpec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>> {
    let mut slots = vec![];
    let mut t = from - chrono::TimeDelta::nanoseconds(1);
    while let Some(next) = spec
        .trigger
        .next_after(t, spec.timezone)
        .filter(|n| *n <= to)
    {
        if slots.len() == MAX_BACKFILL_SLOTS {
            return Err(OperateError::TooMany {
                job: spec.name.to_string(),
                from: at(from),
                to: at(to),
            });
        }
        slots.push(next);
        t = next;
    }
    Ok(slots)
}

/// `tickler backfill JOB --from T1 --to T2 [--only-missed] [--dry-run]`: lists the slots of
/// the range with what the ledger says of each, then (without `--dry-run`) runs those chosen,
/// oldest first. Returns the text and whether every slot run succeeded.
pub async fn backfill(
    store: &Store,
    config: &Config,
    r: &BackfillRequest<'_>,
) -> Result<(String, bool)> {
    let spec = job(config, r.job)?;
    if r.from > r.to {
        return Err(OperateError::Backwards {
            from: at(r.from),
            to: at(r.to),
        });
    }
    if r.to > Utc::now() {
        return Err(OperateError::Future { to: at(r.to) });
    }
    let slots = slots_between(spec, r.from, r.to)?;
    let known = store.slot_statuses(r.job, r.from, r.to).await?;
    let succeeded = |slot: &DateTime<Utc>| {
        known.get(slot).is_some_and(|statuses| {
            statuses
                .iter()
                .any(|s| Status::parse(s).is_some_and(Status::is_success))
        })
    };
    let chosen: Vec<DateTime<Utc>> = slots
        .iter()
        .copied()
        .filter(|s| !(r.only_missed && succeeded(s)))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} slot(s) of `{}` from {} to {}; {} to run{}",
        slots.len(),
        r.job,
        at(r.from),
        at(r.to),
        chosen.len(),
        if r.only_missed {
            " (those with no successful run)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "{:<22} {:<26} RECORDED", "SLOT (UTC)", "LOCAL");
    for slot in &slots {
        let recorded = known
            .get(slot)
            .map_or_else(|| "no row".to_string(), |s| s.join(", "));
        let mark = if chosen.contains(slot) {
            ""
        } else {
            "  (kept)"
        };
        let _ = writeln!(
            out,
            "{:<22} {:<26} {recorded}{mark}",
            at(*slot),
            slot.with_timezone(&spec.timezone)
                .format("%Y-%m-%d %H:%M %Z"),
        );
    }
    if r.dry_run || chosen.is_empty() {
        if r.dry_run {
            out.push_str("dry run: nothing ran\n");
        }
        return Ok((out, true));
    }
    let detail = format!(
        "{} slot(s) from {} to {}{}",
        chosen.len(),
        at(r.from),
        at(r.to),
        if r.only_missed { ", only missed" } else { "" }
    );
    store
        .audit(
            &cli_actor(),
            Action::Backfill,
            r.job,
            Some(&detail),
            Utc::now(),
        )
        .await?;
    let ran = manual::backfill(config, spec, &chosen).await?;
    let mut all_ok = ran.len() == chosen.len();
    out.push_str("\nRAN\n");
    for (slot, summary) in &ran {
        match summary {
            Some(s) => {
                all_ok &= s.status.is_success();
                let _ = writeln!(
                    out,
                    "{:<22} {:<10} records {}{}",
                    at(*slot),
                    s.status.as_str(),
                    s.records.map_or("-".to_string(), |n| n.to_string()),
                    s.error
                        .as_ref()
                        .map(|e| format!("; {e}"))
                        .unwrap_or_default()
                );
            }
            None => {
                all_ok = false;
                let _ = writeln!(
                    out,
                    "{:<22} not run: skipped under the job's overlap policy, held by another \
                     backfill, or this one was stopped (`tickler history --job {}` shows its rows)",
                    at(*slot),
                    r.job
                );
            }
        }
    }
    Ok((out, all_ok))
}

/// `tickler audit [--target NAME] [--limit N]`: the operator actions, newest first.
pub async fn audit(
    store: &Store,
    target: Option<String>,
    limit: i64,
    format: Format,
) -> Result<String> {
    let rows = store
        .audit_log(&AuditFilter {
            target,
            before: None,
            limit,
        })
        .await?;
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n",
        Format::Table => {
            let mut out = format!(
                "{:<20} {:<16} {:<24} {:<10} {:<24} DETAIL\n",
                "AT (UTC)", "WHO", "FROM", "ACTION", "TARGET"
            );
            for a in rows {
                let _ = writeln!(
                    out,
                    "{:<20} {:<16} {:<24} {:<10} {:<24} {}",
                    a.at.format("%Y-%m-%d %H:%M:%S"),
                    a.who,
                    a.origin,
                    a.action,
                    a.target,
                    a.detail.unwrap_or_default()
                );
            }
            out
        }
    })
}
