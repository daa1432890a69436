//! The overview of the schedule that an operator reads every morning: each job with its
//! trigger in words, next fire, last run, failure streak and dead-man state; the queue; today's
//! messages; the database. Assembled here, below both edges, for the console's first page
//! (`http::console`) and `tickler status` (`cli`), from one page of jobs at a time: the ledger
//! is read only for the jobs on the page, in one statement (`Store::job_figures`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::deadman::success_due;
use super::shared::LOOP_STALE;
use crate::config::JobSpec;
use crate::schedule::Trigger;
use crate::store::audit::Pause;
use crate::store::claims::DaemonRow;
use crate::store::console::{JobFigures, lateness_ms};
use crate::store::{Store, StoreError};

/// When each job was first known to the daemon that asks (its dead-man reference for a job
/// that never ran); empty in a process that watches no job (`tickler status`).
pub type KnownSince = std::collections::HashMap<String, DateTime<Utc>>;

/// How long the overview waits for the database before it says it is unreachable.
const DB_PATIENCE: Duration = Duration::from_secs(2);
/// The most jobs on one page.
pub const MAX_PER_PAGE: usize = 500;

/// Which jobs, and which page of them.
#[derive(Debug, Clone)]
pub struct OverviewQuery {
    /// Jobs whose name contains this (case-insensitive).
    pub name: Option<String>,
    /// `enabled`, `disabled` or `paused`: read from the config (and the pauses), so the
    /// filter costs no ledger reads.
    pub state: Option<String>,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

impl Default for OverviewQuery {
    fn default() -> Self {
        OverviewQuery {
            name: None,
            state: None,
            page: 1,
            per_page: 100,
        }
    }
}

/// The overview of one page of jobs.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub now: DateTime<Utc>,
    pub jobs: Vec<JobLine>,
    /// Jobs matching the filter, on every page.
    pub matching: usize,
    pub page: usize,
    pub pages: usize,
    /// Open tasks (pending, executing, failed) by status.
    pub queue: BTreeMap<String, i64>,
    /// Messages created since midnight UTC, by status (`sent`, `deferred`, `suppressed`,
    /// `failed`...).
    pub messages_today: BTreeMap<String, i64>,
    /// The database answered within 2 s.
    pub database_ok: bool,
    /// The processes registered on the database, with their heartbeat and loop health.
    pub daemons: Vec<DaemonLine>,
}

/// A registered process: a daemon (with a timer loop) or a `run-job`/`backfill` one.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonLine {
    pub hostname: String,
    pub pid: i64,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_s: i64,
    /// How long its timer loop had not turned at that heartbeat (`None`: no timer loop).
    pub loop_age_s: Option<i64>,
    /// `ok`, `stalled` (the loop had not turned in [`LOOP_STALE`]) or `no loop`.
    pub state: &'static str,
}

impl DaemonLine {
    fn of(d: DaemonRow, now: DateTime<Utc>) -> DaemonLine {
        let loop_age_s = d
            .loop_tick_at
            .map(|t| (d.heartbeat_at - t).num_seconds().max(0));
        let state = match loop_age_s {
            None => "no loop",
            Some(age) if age as u64 >= LOOP_STALE.as_secs() => "stalled",
            Some(_) => "ok",
        };
        DaemonLine {
            hostname: d.hostname,
            pid: d.pid,
            version: d.version,
            started_at: d.started_at,
            heartbeat_age_s: (now - d.heartbeat_at).num_seconds().max(0),
            loop_age_s,
            state,
        }
    }
}

/// One job of the overview.
#[derive(Debug, Clone, Serialize)]
pub struct JobLine {
    pub name: String,
    pub kind: String,
    pub description: Option<String>,
    pub trigger: String,
    pub zone: String,
    pub enabled: bool,
    pub paused: bool,
    /// Who paused it, when and why.
    pub pause: Option<Pause>,
    /// The next fire in the job's zone (`2026-12-01 09:00 CET`) and in UTC.
    pub next_local: Option<String>,
    pub next_utc: Option<DateTime<Utc>>,
    pub last: Option<LastRun>,
    pub failure_streak: i64,
    /// `off` (no `expect_success_within`, or disabled), `paused`, `ok` or `overdue`, judged as
    /// the dead-man alert judges ([`crate::daemon::alerts::success_due`]).
    pub dead_man: &'static str,
    /// When it is (or was) overdue without a success.
    pub dead_man_deadline: Option<DateTime<Utc>>,
}

/// A job's newest run.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub id: String,
    pub status: String,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub lateness_ms: Option<i64>,
}

/// The jobs of `jobs` matching `query`, in config order.
pub fn matching<'a>(
    jobs: &'a [Arc<JobSpec>],
    query: &OverviewQuery,
    paused: &std::collections::HashSet<String>,
) -> Vec<&'a Arc<JobSpec>> {
    let name = query.name.as_deref().map(str::to_lowercase);
    jobs.iter()
        .filter(|j| {
            name.as_deref()
                .is_none_or(|n| j.name.to_lowercase().contains(n))
        })
        .filter(|j| match query.state.as_deref() {
            Some("enabled") => j.enabled,
            Some("disabled") => !j.enabled,
            Some("paused") => paused.contains(&*j.name),
            _ => true,
        })
        .collect()
}

/// The overview of the page `query` asks for.
pub async fn overview(
    store: &Store,
    jobs: &[Arc<JobSpec>],
    now: DateTime<Utc>,
    query: &OverviewQuery,
    known: &KnownSince,
) -> Result<Overview, StoreError> {
    let database_ok = matches!(
        tokio::time::timeout(DB_PATIENCE, store.ping()).await,
        Ok(Ok(()))
    );
    // Without the database the page still lists the jobs from the config, with the badge
    // saying why nothing else is shown.
    let paused = match database_ok {
        true => pauses(store).await?,
        false => HashMap::new(),
    };
    let names_paused: std::collections::HashSet<String> = paused.keys().cloned().collect();
    let all = matching(jobs, query, &names_paused);
    let per_page = query.per_page.clamp(1, MAX_PER_PAGE);
    let pages = all.len().div_ceil(per_page).max(1);
    let page = query.page.clamp(1, pages);
    let on_page: Vec<&Arc<JobSpec>> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .copied()
        .collect();
    let names: Vec<String> = on_page.iter().map(|j| j.name.to_string()).collect();
    let figures: BTreeMap<String, JobFigures> = match database_ok {
        true => store.job_figures(&names).await?,
        false => vec![],
    }
    .into_iter()
    .map(|f| (f.job.clone(), f))
    .collect();
    let lines = on_page
        .iter()
        .map(|j| {
            let f = figures.get(&*j.name);
            job_line(j, f, paused.get(&*j.name).cloned(), known, now)
        })
        .collect();
    // Open tasks only (a partial index holds them): completed history is not counted.
    let mut queue = BTreeMap::new();
    let mut messages_today = BTreeMap::new();
    let mut daemons = vec![];
    if database_ok {
        daemons = store
            .daemons()
            .await?
            .into_iter()
            .map(|d| DaemonLine::of(d, now))
            .collect();
        for t in store.open_task_counts().await? {
            *queue.entry(t.status).or_insert(0) += t.count;
        }
        let midnight = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(now);
        messages_today = store
            .message_counts_since(midnight)
            .await?
            .into_iter()
            .collect();
    }
    Ok(Overview {
        now,
        jobs: lines,
        matching: all.len(),
        page,
        pages,
        queue,
        messages_today,
        database_ok,
        daemons,
    })
}

/// The paused jobs, by name.
async fn pauses(store: &Store) -> Result<HashMap<String, Pause>, StoreError> {
    Ok(store
        .paused_jobs()
        .await?
        .into_iter()
        .map(|p| (p.job_name.clone(), p))
        .collect())
}

/// The overview line of one job (its console page).
pub async fn one_job(
    store: &Store,
    spec: &JobSpec,
    now: DateTime<Utc>,
    known: &KnownSince,
) -> Result<JobLine, StoreError> {
    let pause = store
        .paused_jobs()
        .await?
        .into_iter()
        .find(|p| *p.job_name == *spec.name);
    let figures = store.job_figures(&[spec.name.to_string()]).await?;
    Ok(job_line(spec, figures.first(), pause, known, now))
}

fn job_line(
    j: &JobSpec,
    f: Option<&JobFigures>,
    pause: Option<Pause>,
    known: &KnownSince,
    now: DateTime<Utc>,
) -> JobLine {
    let next = j
        .enabled
        .then(|| j.trigger.next_after(now, j.timezone))
        .flatten();
    let last = f.and_then(|f| {
        Some(LastRun {
            id: f.last_id.clone()?,
            status: f.last_status.clone()?,
            scheduled_for: f.last_scheduled_for?,
            started_at: f.last_started_at,
            duration_seconds: f.last_duration_seconds,
            lateness_ms: lateness_ms(f.last_metadata.as_deref()),
        })
    });
    // As the dead-man check judges: not a disabled or paused job (no alert is sent for
    // them), else from the last success, or the first ended run or when the daemon first
    // knew the job.
    let (dead_man, dead_man_deadline) = match j.alerts.expect_success_within {
        Some(_) if pause.is_some() => ("paused", None),
        Some(within) if j.enabled => {
            let due = success_due(
                f.and_then(|f| f.last_success),
                f.and_then(|f| f.first_ended),
                known.get(&*j.name).copied(),
                within,
            );
            match due {
                Some(deadline) if deadline < now => ("overdue", Some(deadline)),
                deadline => ("ok", deadline),
            }
        }
        _ => ("off", None),
    };
    JobLine {
        name: j.name.to_string(),
        kind: j.kind.clone(),
        description: j.description.clone(),
        trigger: describe(&j.trigger),
        zone: j.timezone.name().to_string(),
        enabled: j.enabled,
        paused: pause.is_some(),
        pause,
        next_local: next.map(|t| {
            t.with_timezone(&j.timezone)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        }),
        next_utc: next,
        last,
        failure_streak: f.map(|f| f.failure_streak).unwrap_or(0),
        dead_man,
        dead_man_deadline,
    }
}

/// A trigger in words: `at 09:00 on Mon-Fri`, `every 20s`, `@first_business_day 09:00 on
/// calendar `de``; a cron expression with more than one time a day stays as written.
pub fn describe(trigger: &Trigger) -> String {
    let text = trigger.to_string();
    match text
        .strip_prefix("cron `")
        .and_then(|r| r.strip_suffix('`'))
    {
        Some(expr) => describe_cron(expr).unwrap_or(text),
        None => text.replace('`', ""),
    }
}

fn describe_cron(expr: &str) -> Option<String> {
    let f: Vec<&str> = expr.split_whitespace().collect();
    if f.len() != 5 {
        return None;
    }
    let num = |s: &str, max: u32| s.parse::<u32>().ok().filter(|n| *n <= max);
    let (minute, hour, dom, month, dow) = (f[0], f[1], f[2], f[3], f[4]);
    if month != "*" {
        return None;
    }
    if let (Some(m), Some(h)) = (num(minute, 59), num(hour, 23)) {
        let at = format!("at {h:02}:{m:02}");
        return match (dom, dow) {
            ("*", "*") => Some(format!("{at} every day")),
            ("*", dow) => Some(format!("{at} on {}", days(dow)?)),
            (dom, "*") => Some(format!("{at} on day {dom} of the month")),
            _ => None,
        };
    }
    if dom != "*" || dow != "*" {
        return None;
    }
    match (minute, hour) {
        (m, "*") if num(m, 59).is_some() => Some(format!("every hour at :{m:0>2}")),
        ("*", "*") => Some("every minute".into()),
        (m, "*") => m
            .strip_prefix("*/")
            .and_then(|n| num(n, 59))
            .map(|n| format!("every {n} min")),
        _ => None,
    }
}

/// `1-5` → `Mon-Fri`, `0,6` → `Sun,Sat`.
fn days(dow: &str) -> Option<String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let name = |d: &str| {
        d.parse::<usize>()
            .ok()
            .and_then(|n| NAMES.get(n).copied())
            .or_else(|| {
                let d = d.to_ascii_lowercase();
                NAMES.iter().copied().find(|n| n.to_ascii_lowercase() == d)
            })
    };
    let mut out = Vec::new();
    for part in dow.split(',') {
        match part.split_once('-') {
            Some((a, b)) => out.push(format!("{}-{}", name(a)?, name(b)?)),
            None => out.push(name(part)?.to_string()),
        }
    }
    Some(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::{JobFigures, KnownSince, Pause, describe, job_line};
    use crate::schedule::{CronTrigger, Trigger};
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(enabled: bool) -> std::sync::Arc<crate::config::JobSpec> {
        let text = format!(
            "[[job]]\nname = \"j\"\nkind = \"noop\"\nevery = \"10m\"\nenabled = {enabled}\n\
             expect_success_within = \"1h\"\n"
        );
        crate::config::parse(std::path::Path::new("t.toml"), &text)
            .unwrap()
            .jobs[0]
            .clone()
    }

    /// A job failing every 10 minutes since 09:00, newest slot 11:50.
    fn failing(last_success: Option<&str>) -> JobFigures {
        JobFigures {
            job: "j".into(),
            last_id: Some("r".into()),
            last_status: Some("failed".into()),
            last_scheduled_for: Some(t("2026-11-23T11:50:00Z")),
            last_started_at: Some(t("2026-11-23T11:50:00Z")),
            last_duration_seconds: Some(1.0),
            last_metadata: None,
            last_success: last_success.map(t),
            failure_streak: 18,
            first_ended: Some(t("2026-11-23T09:00:01Z")),
        }
    }

    #[test]
    fn a_daemon_whose_loop_had_not_turned_for_75_s_at_its_heartbeat_is_stalled() {
        use super::DaemonLine;
        use crate::store::claims::DaemonRow;
        let now = t("2026-11-23T12:00:10Z");
        let row = |loop_tick_at: Option<&str>| DaemonRow {
            hostname: "h".into(),
            pid: 7,
            version: "0.1.0".into(),
            started_at: t("2026-11-23T09:00:00Z"),
            heartbeat_at: t("2026-11-23T12:00:00Z"),
            loop_tick_at: loop_tick_at.map(t),
        };
        let line = |at| {
            let l = DaemonLine::of(row(at), now);
            (l.heartbeat_age_s, l.loop_age_s, l.state)
        };
        assert_eq!(line(Some("2026-11-23T11:59:31Z")), (10, Some(29), "ok"));
        assert_eq!(line(Some("2026-11-23T11:58:46Z")), (10, Some(74), "ok"));
        assert_eq!(
            line(Some("2026-11-23T11:58:45Z")),
            (10, Some(75), "stalled")
        );
        assert_eq!(line(None), (10, None, "no loop"));
    }

    #[test]
    fn the_dead_man_state_is_judged_as_the_alert_judges_it() {
        let now = t("2026-11-23T12:00:00Z");
        let none = KnownSince::new();
        let dead = |enabled, f: &JobFigures, pause: Option<Pause>, known: &KnownSince| {
            let l = job_line(&spec(enabled), Some(f), pause, known, now);
            (l.dead_man, l.dead_man_deadline)
        };
        // Never succeeded, failing for 3 h: overdue from its first ended run (it once showed
        // `ok` for ever, counted from its newest slot).
        assert_eq!(
            dead(true, &failing(None), None, &none),
            ("overdue", Some(t("2026-11-23T10:00:01Z")))
        );
        // ... or from when the daemon first knew it, if earlier.
        let known = KnownSince::from([("j".to_string(), t("2026-11-23T08:00:00Z"))]);
        assert_eq!(
            dead(true, &failing(None), None, &known),
            ("overdue", Some(t("2026-11-23T09:00:00Z")))
        );
        // A success 30 min ago: ok until an hour after it.
        assert_eq!(
            dead(true, &failing(Some("2026-11-23T11:30:00Z")), None, &known),
            ("ok", Some(t("2026-11-23T12:30:00Z")))
        );
        // Paused or disabled: no alert is sent, so not overdue.
        let pause = Pause {
            job_name: "j".into(),
            reason: "supplier outage".into(),
            paused_by: "ana".into(),
            paused_at: t("2026-11-23T09:00:00Z"),
        };
        assert_eq!(
            dead(true, &failing(None), Some(pause), &none),
            ("paused", None)
        );
        assert_eq!(dead(false, &failing(None), None, &none), ("off", None));
        // No run and not watched by this process (`tickler status`): not judged.
        let l = job_line(&spec(true), None, None, &none, now);
        assert_eq!((l.dead_man, l.dead_man_deadline), ("ok", None));
    }

    #[test]
    fn triggers_read_as_words() {
        let cron = |e: &str| describe(&Trigger::Cron(Box::new(CronTrigger::parse(e).unwrap())));
        assert_eq!(cron("0 9 * * 1-5"), "at 09:00 on Mon-Fri");
        assert_eq!(cron("30 2 * * *"), "at 02:30 every day");
        assert_eq!(cron("0 8 * * 0,6"), "at 08:00 on Sun,Sat");
        assert_eq!(cron("0 6 1 * *"), "at 06:00 on day 1 of the month");
        assert_eq!(cron("*/15 * * * *"), "every 15 min");
        assert_eq!(cron("5 * * * *"), "every hour at :05");
        assert_eq!(cron("0 9,17 * * *"), "cron `0 9,17 * * *`");
        assert_eq!(
            describe(&Trigger::Every(Duration::from_secs(20))),
            "every 20s"
        );
    }
}
