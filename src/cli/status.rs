//! `tickler status`: the console's overview in the terminal, one line per job like
//! `systemctl list-timers` (next fire, time left, last run and how it ended, failure streak,
//! dead-man state), then the queue, today's messages and the database; `--format json` prints
//! the same overview as the console reads it.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::Format;
use crate::config::Config;
use crate::daemon::overview::{Overview, OverviewQuery, overview};
use crate::store::{Store, StoreError};

/// `tickler status`, returning what it prints.
pub async fn status(
    store: &Store,
    config: &Config,
    query: &OverviewQuery,
    now: DateTime<Utc>,
    format: Format,
) -> Result<String, StoreError> {
    // This process watches no job: a job that never ran has no dead-man reference here.
    let o = overview(store, &config.jobs, now, query, &Default::default()).await?;
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(&o).unwrap_or_default() + "\n");
    }
    Ok(table(&o))
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = (now - t).num_seconds();
    let (d, suffix) = if d < 0 { (-d, "left") } else { (d, "ago") };
    let text = crate::time::duration::short(std::time::Duration::from_secs(d as u64));
    format!("{text} {suffix}")
}

/// The overview as a table.
pub fn table(o: &Overview) -> String {
    let mut out = format!(
        "{:<25} {:<11} {:<25} {:<11} {:>9} {:>5} {:<8} {:<24} TRIGGER\n",
        "NEXT", "LEFT", "LAST", "STATUS", "DURATION", "FAILS", "DEAD-MAN", "JOB"
    );
    for j in &o.jobs {
        let next = j.next_local.clone().unwrap_or_else(|| "-".into());
        let left = j
            .next_utc
            .map(|t| ago(o.now, t))
            .unwrap_or_else(|| "-".into());
        let (last, status, duration) = match &j.last {
            Some(l) => (
                l.scheduled_for.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                l.status.clone(),
                l.duration_seconds
                    .map(|d| format!("{d:.2}s"))
                    .unwrap_or_else(|| "-".into()),
            ),
            None => ("-".into(), "never".into(), "-".into()),
        };
        let mut name = j.name.clone();
        if j.paused {
            name.push_str(" (paused)");
        } else if !j.enabled {
            name.push_str(" (disabled)");
        }
        let _ = writeln!(
            out,
            "{next:<25} {left:<11} {last:<25} {status:<11} {duration:>9} {:>5} {:<8} {name:<24} {}",
            j.failure_streak, j.dead_man, j.trigger
        );
    }
    if o.jobs.is_empty() {
        out.push_str("(no job matches)\n");
    }
    let counts = |m: &std::collections::BTreeMap<String, i64>| {
        if m.is_empty() {
            return "none".to_string();
        }
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let daemons: String = o
        .daemons
        .iter()
        .map(|d| {
            let turned = d
                .loop_age_s
                .map(|a| format!(", loop turned {a}s before it"))
                .unwrap_or_default();
            format!(
                "\n  {} pid {} ({}): heartbeat {}s ago{turned}: {}",
                d.hostname, d.pid, d.version, d.heartbeat_age_s, d.state
            )
        })
        .collect();
    let daemons = if o.daemons.is_empty() && o.database_ok {
        " none registered (is the daemon running?)".to_string()
    } else {
        daemons
    };
    let _ = write!(
        out,
        "\n{} job(s), page {} of {}\nqueue: {}\nmessages today: {}\ndatabase: {}\ndaemons:{daemons}\n",
        o.matching,
        o.page,
        o.pages,
        counts(&o.queue),
        counts(&o.messages_today),
        if o.database_ok { "ok" } else { "unreachable" }
    );
    out
}
