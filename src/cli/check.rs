//! `tickler check` and `tickler list`: the config validated, each job with its next fires.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::Format;
use crate::config::{Config, JobSpec};
use crate::schedule::Trigger;
use crate::store::Store;
use crate::store::audit::Pause;

/// What `tickler check` found in the SQL of jobs on the application's databases: SQL that does
/// not prepare (refused), and databases it could not reach (warned: a reload must not fail
/// because the application's database is away for a moment).
#[derive(Debug, Default)]
pub struct SqlFindings {
    pub refused: Vec<String>,
    pub warnings: Vec<String>,
}

/// Connects to each `[databases]` entry that an enabled job uses and prepares the job's SQL
/// there (a `sql` job's statements, a `notify` job's query and `on_sent`, a `cleanup` rule's
/// table and column), so a typo fails now and not at 9 AM; and refuses SQL comparing `:now`
/// with a column whose values are another form of instant than `:now`'s, which would pick the
/// wrong rows.
pub async fn check_sql(config: &Config) -> SqlFindings {
    let mut found = SqlFindings::default();
    let mut unreachable = std::collections::BTreeSet::new();
    for job in config.jobs.iter().filter(|j| j.enabled) {
        let Some(name) = job.job.database() else {
            continue;
        };
        if unreachable.contains(name) {
            continue;
        }
        let db = match config.databases.get(name).await {
            Ok(db) => db,
            Err(e) => {
                found.warnings.push(format!(
                    "cannot reach {e}; the SQL of the jobs using it was not checked"
                ));
                unreachable.insert(name.to_string());
                continue;
            }
        };
        let mut prepared = true;
        for (what, sql) in job.job.sql() {
            if let Err(e) = db.prepare(&sql).await {
                prepared = false;
                found.refused.push(format!(
                    "job `{}`: {what} does not prepare on database `{name}`: {e}",
                    job.name
                ));
            }
        }
        // SQL that prepares, and compares `:now` with a column in another form of instant.
        for (what, sql) in job.job.now_sql().into_iter().filter(|_| prepared) {
            if let Err(e) = db.check_now_columns(&sql).await {
                found.refused.push(format!(
                    "job `{}`: {what} on database `{name}`: {e}",
                    job.name
                ));
            }
        }
    }
    config.databases.close().await;
    found
}

/// `tickler check`: one line per job with its trigger, zone and next fire (and its lane);
/// `paused` are the paused jobs, when the database could be read.
pub fn check_report(config: &Config, now: DateTime<Utc>, paused: &[Pause]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: OK, {} job(s); database {}; default time zone {}",
        config.path.display(),
        config.jobs.len(),
        config.daemon.database_url,
        config.daemon.timezone
    );
    let paused: HashMap<&str, &Pause> = paused.iter().map(|p| (&*p.job_name, p)).collect();
    let next_fire = Fires::of_jobs(&config.jobs, now, 1, |t, tz| {
        format!("next {}", t.with_timezone(&tz).to_rfc3339())
    });
    for (i, job) in config.jobs.iter().enumerate() {
        let next = match next_fire.of(i).first() {
            Some(next) => next.clone(),
            None if job.enabled => "never fires".to_string(),
            None => "disabled".to_string(),
        };
        let next = match &job.lane {
            Some(lane) => format!("{next}; lane {lane}"),
            None => next,
        };
        let next = match paused.get(&*job.name) {
            Some(p) => format!("PAUSED by {} ({}); {next}", p.paused_by, reason_of(p)),
            None => next,
        };
        let _ = writeln!(
            out,
            "  {:<24} {:<18} {:<24} {:<20} {next}",
            job.name,
            job.kind,
            job.trigger.to_string(),
            job.timezone.name()
        );
    }
    out
}

/// The next fires of each job as text, worked out and written once for each trigger and zone:
/// the jobs that share both (a pattern per tenant or per plan, the usual shape of a large
/// config) share the text, so `list` at 100,000 jobs is not 500,000 cron searches. Where they
/// do not (50,000 crons of their own are 250,000 searches for `list`), the searches are shared
/// out among the cores.
struct Fires {
    /// For each job, in the config's order: where its fires are in `fires` (`None` when
    /// disabled). Looked up once here, so writing out 100,000 jobs hashes no trigger again.
    slot: Vec<Option<usize>>,
    fires: Vec<Vec<String>>,
}

/// Fewer triggers than this are worked out on the calling thread.
const TRIGGERS_PER_THREAD: usize = 1_000;

impl Fires {
    /// The next `n` fires from `from` of each enabled job's trigger in its zone, each written
    /// by `render`.
    fn of_jobs(
        jobs: &[Arc<JobSpec>],
        from: DateTime<Utc>,
        n: usize,
        render: impl Fn(DateTime<Utc>, Tz) -> String + Sync,
    ) -> Self {
        let mut index: HashMap<(&Trigger, Tz), usize> = HashMap::new();
        let mut keys: Vec<(&Trigger, Tz)> = vec![];
        let slot = jobs
            .iter()
            .map(|job| {
                job.enabled.then(|| {
                    let key = (&job.trigger, job.timezone);
                    *index.entry(key).or_insert_with(|| {
                        keys.push(key);
                        keys.len() - 1
                    })
                })
            })
            .collect();
        let fires = crate::cores::in_order(&keys, TRIGGERS_PER_THREAD, |keys| {
            keys.iter()
                .map(|(trigger, tz)| {
                    let fires = trigger.upcoming(from, *tz, n);
                    fires.into_iter().map(|t| render(t, *tz)).collect()
                })
                .collect()
        });
        Fires { slot, fires }
    }

    /// The next fires, rendered, of the job at `index` of the jobs given to `of_jobs`; none
    /// for a disabled job.
    fn of(&self, index: usize) -> &[String] {
        self.slot[index].map_or(&[], |k| self.fires[k].as_slice())
    }
}

fn reason_of(p: &Pause) -> &str {
    if p.reason.is_empty() {
        "no reason given"
    } else {
        &p.reason
    }
}

/// What `list` and `check` read from the database, when it can be read (both work on the
/// config alone otherwise): the messages waiting for their send windows, per job (how many,
/// the first instant one goes out), and the paused jobs.
#[derive(Debug, Default)]
pub struct Recorded {
    pub deferred: Vec<(String, i64, DateTime<Utc>)>,
    pub paused: Vec<Pause>,
}

impl Recorded {
    /// Reads it without migrating anything (`check` runs before the daemon starts); an
    /// unreachable database, or one without the tables yet, reads as nothing recorded.
    pub async fn read(config: &Config) -> Recorded {
        let Ok(store) = Store::connect(&config.daemon.database_url).await else {
            return Recorded::default();
        };
        let recorded = Recorded {
            deferred: store.deferred_by_job().await.unwrap_or_default(),
            paused: store.paused_jobs().await.unwrap_or_default(),
        };
        store.close().await;
        recorded
    }
}

/// `tickler list`, with what the database says of each job.
pub fn list_report(
    config: &Config,
    from: DateTime<Utc>,
    n: usize,
    format: Format,
    recorded: &Recorded,
) -> String {
    let deferred = &recorded.deferred;
    let paused: HashMap<&str, &Pause> = recorded.paused.iter().map(|p| (&*p.job_name, p)).collect();
    let secs = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match format {
        Format::Json => {
            let by_job: HashMap<&str, (i64, DateTime<Utc>)> = deferred
                .iter()
                .map(|(job, count, at)| (job.as_str(), (*count, *at)))
                .collect();
            let fires = Fires::of_jobs(&config.jobs, from, n, |t, _| secs(&t));
            let v: Vec<serde_json::Value> = config
                .jobs
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    let mut v = serde_json::json!({
                        "job": job.name,
                        "timezone": job.timezone.name(),
                        "fires": fires.of(i),
                    });
                    if let Some(w) = &job.send_window {
                        v["send_window"] = w.describe().into();
                    }
                    if let Some(p) = paused.get(&*job.name) {
                        v["paused"] = serde_json::json!({
                            "by": p.paused_by,
                            "at": secs(&p.paused_at),
                            "reason": p.reason,
                        });
                    }
                    if let Some((count, at)) = by_job.get(&*job.name) {
                        v["deferred"] = serde_json::json!({
                            "count": count,
                            "next_at": secs(at),
                        });
                    }
                    v
                })
                .collect();
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(out, "{:<24} {:<26} {:<20}", "JOB", "LOCAL", "UTC");
            let fires = Fires::of_jobs(&config.jobs, from, n, |t, tz| {
                let local = t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
                format!("{local:<26} {}", secs(&t))
            });
            for (i, job) in config.jobs.iter().enumerate() {
                for fire in fires.of(i) {
                    let _ = writeln!(out, "{:<24} {fire}", job.name);
                }
            }
            if !recorded.paused.is_empty() {
                let _ = writeln!(
                    out,
                    "\nPAUSED JOBS (their slots are recorded `paused`, not run; `tickler resume JOB`)\n{:<24} {:<20}  {:<16}  REASON",
                    "JOB", "SINCE (UTC)", "BY"
                );
                for p in &recorded.paused {
                    let _ = writeln!(
                        out,
                        "{:<24} {:<20}  {:<16}  {}",
                        p.job_name,
                        secs(&p.paused_at),
                        p.paused_by,
                        reason_of(p)
                    );
                }
            }
            if !deferred.is_empty() {
                let _ = writeln!(
                    out,
                    "\nMESSAGES WAITING FOR THEIR SEND WINDOW\n{:<24} {:>8}  {:<20}  WINDOW",
                    "JOB", "DEFERRED", "FIRST GOES OUT (UTC)"
                );
                let jobs = config.jobs_by_name();
                for (job, count, at) in deferred {
                    let window = jobs
                        .get(job.as_str())
                        .and_then(|j| j.send_window.as_ref())
                        .map_or_else(|| "the channel's".to_string(), |w| w.describe());
                    let _ = writeln!(out, "{job:<24} {count:>8}  {:<20}  {window}", secs(at));
                }
            }
            out
        }
    }
}
