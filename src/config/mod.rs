//! `config.toml`: read, validate, and turn into a schedule of jobs. Every error names the file,
//! line, column and field and says what would be accepted (DESIGN.md invariant 8); all problems
//! of a file are reported at once, and a file with any problem yields no config at all, so a
//! reload with a broken file leaves the running schedule untouched (invariant 5).

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::jobs::{self, BuildError, DynJob};
use crate::notify::{ChannelsRaw, Notifier, TemplatesRaw};
use crate::retry::RetryPolicy;
use crate::schedule::{self, CronTrigger, Trigger};
use crate::secret::DatabaseUrl;
use crate::time::zone::parse_timezone;

pub mod alerts;
mod daemon;
pub mod http;
mod policy;
mod problems;
mod queue;
mod read;

use self::problems::{Collector, Owner, quoted};
pub use self::problems::{ConfigError, Problem};
use self::read::{deser, sub_table, valid_name};

/// The example config shipped with tickler; `tickler print-config` prints it.
pub const EXAMPLE: &str = include_str!("../../config.toml");

/// What happens when a fire comes due while the previous run of the same job still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Record the new fire as `skipped`.
    Skip,
    /// Start the new fire when the running one ends.
    Queue,
    /// Run both.
    Allow,
}

/// What to do with slots missed while the daemon was down or the wall clock jumped forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    None,
    Latest,
    All,
}

/// `[daemon]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub timezone: Tz,
    pub database_url: DatabaseUrl,
    pub state_dir: PathBuf,
    pub max_concurrent: usize,
    pub shutdown_grace: Duration,
    pub heartbeat_interval: Duration,
    pub history_retention: Duration,
    pub failure_retention: Duration,
}

/// One validated `[[job]]`.
pub struct JobSpec {
    pub name: Arc<str>,
    pub kind: String,
    pub description: Option<String>,
    pub trigger: Trigger,
    pub timezone: Tz,
    pub enabled: bool,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub misfire_grace: Duration,
    pub jitter: Duration,
    pub job: Arc<dyn DynJob>,
    /// The channels and templates of the config this job came from.
    pub notifier: Arc<Notifier>,
    /// Who hears of its failures, its dead-man deadline, its monitor's ping URL.
    pub alerts: alerts::JobAlerts,
}

impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("trigger", &self.trigger)
            .field("timezone", &self.timezone)
            .finish_non_exhaustive()
    }
}

/// A validated config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub jobs: Vec<Arc<JobSpec>>,
    pub notifier: Arc<Notifier>,
    /// `[queue]`: the task runner, `custom` task handlers, campaign defaults.
    pub queue: Arc<crate::queue::QueueConfig>,
    /// `[http]`: metrics, health and the authenticated trigger; `None` when absent (off).
    pub http: Option<http::HttpConfig>,
}

impl Config {
    pub fn job(&self, name: &str) -> Option<&Arc<JobSpec>> {
        self.jobs.iter().find(|j| &*j.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRaw {
    name: Spanned<String>,
    kind: Spanned<String>,
    description: Option<String>,
    schedule: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

const IDENTITY_KEYS: &[&str] = &[
    "name",
    "kind",
    "description",
    "schedule",
    "every",
    "timezone",
];

/// Reads and validates a config file; `TICKLER_DATABASE_URL` overrides `database_url`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            what: "cannot read the config file".into(),
            at: None,
            detail: format!(
                "{e}; pass `--config FILE`, or write the example with `tickler print-config > {}`",
                path.display()
            ),
        }],
    })?;
    let mut config = parse(path, &text)?;
    if let Some(url) = std::env::var("TICKLER_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        config.daemon.database_url = DatabaseUrl::new(url);
    }
    Ok(config)
}

/// Validates config text; `path` is used in messages and to resolve nothing else.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut c = Collector::new(text);
    let config = parse_into(path, text, &mut c);
    match config {
        Some(config) if c.problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            ..config
        }),
        _ => Err(ConfigError {
            file: path.to_path_buf(),
            problems: c.problems,
        }),
    }
}

fn parse_into(path: &Path, text: &str, c: &mut Collector<'_>) -> Option<Config> {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            c.toml("invalid TOML", &e, 0..0);
            return None;
        }
    };
    let mut daemon_raw = daemon::DaemonRaw::default();
    let mut defaults = policy::PolicyRaw::default();
    let mut job_tables: Vec<Spanned<DeValue<'_>>> = vec![];
    let mut channels = ChannelsRaw::default();
    let mut templates = TemplatesRaw::default();
    let mut notify_span = 0..0;
    let mut templates_span: Option<Range<usize>> = None;
    let mut queue_value = None;
    let mut http_value = None;
    for (key, value) in root.get_ref().iter() {
        let span = value.span();
        match key.get_ref().as_ref() {
            "daemon" => match deser::<daemon::DaemonRaw>(value.clone()) {
                Ok(d) => daemon_raw = d,
                Err(e) => c.toml_value(Owner::Section("invalid `[daemon]` section"), &e, span),
            },
            "channels" => match deser::<ChannelsRaw>(value.clone()) {
                Ok(ch) => {
                    channels = ch;
                    notify_span = span;
                }
                Err(e) => c.toml_value(Owner::Section("invalid `[channels]` section"), &e, span),
            },
            "templates" => match deser::<TemplatesRaw>(value.clone()) {
                Ok(t) => {
                    templates = t;
                    templates_span = Some(span);
                }
                Err(e) => c.toml_value(Owner::Section("invalid `[templates]` section"), &e, span),
            },
            "queue" => queue_value = Some(value.clone()),
            "http" => http_value = Some(value.clone()),
            "defaults" => match deser::<policy::PolicyRaw>(value.clone()) {
                Ok(d) => defaults = d,
                Err(e) => c.toml_value(Owner::Section("invalid `[defaults]` section"), &e, span),
            },
            "job" => match value.get_ref() {
                DeValue::Array(items) => job_tables.extend(items.iter().cloned()),
                _ => c.push(
                    "invalid `job`",
                    Some(key.span()),
                    "write each job as a `[[job]]` table",
                ),
            },
            other => c.push(
                format!("unknown section `{other}`"),
                Some(key.span()),
                "expected `[daemon]`, `[defaults]`, `[channels]`, `[templates]`, `[queue]`, `[http]` or `[[job]]`",
            ),
        }
    }

    let daemon = daemon::daemon_config(daemon_raw, c);
    let config_dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let state_dir = daemon
        .as_ref()
        .map(|d| d.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from("var"));
    let notifier = match Notifier::build(channels, templates, config_dir, &state_dir) {
        Ok(n) => Some(Arc::new(n)),
        Err(problems) => {
            for (what, detail) in problems {
                // A template's own file and line are in `detail`.
                let at = if what == "invalid template" {
                    templates_span.clone()
                } else {
                    Some(notify_span.clone())
                };
                c.push(what, at, detail);
            }
            None
        }
    };
    let mut jobs = vec![];
    let mut seen: HashSet<String> = HashSet::new();
    for table in job_tables {
        if let Some(job) = job_spec(table, &defaults, daemon.as_ref(), notifier.as_ref(), c) {
            if !seen.insert(job.0.name.to_string()) {
                c.push(
                    format!("duplicate job name `{}`", job.0.name),
                    Some(job.1),
                    "each `[[job]]` needs a unique `name`; rename or remove one of them",
                );
            }
            jobs.push(Arc::new(job.0));
        }
    }
    let queue = queue::queue_config(queue_value, notifier.as_deref(), c);
    let http = http::http_config(http_value, c);
    Some(Config {
        path: PathBuf::new(),
        daemon: daemon?,
        jobs,
        notifier: notifier?,
        queue: Arc::new(queue),
        http,
    })
}

fn job_spec(
    table: Spanned<DeValue<'_>>,
    defaults: &policy::PolicyRaw,
    daemon: Option<&DaemonConfig>,
    notifier: Option<&Arc<Notifier>>,
    c: &mut Collector<'_>,
) -> Option<(JobSpec, Range<usize>)> {
    let span = table.span();
    let DeValue::Table(t) = table.get_ref() else {
        c.push("invalid `[[job]]`", Some(span), "each job must be a table");
        return None;
    };
    // Name the job in every message, when it has a usable name.
    let label = match t.get("name").and_then(|v| v.get_ref().as_str()) {
        Some(n) => format!("job `{n}`"),
        None => format!("the job at line {}", c.source.at(span.start).0),
    };
    let owner = Owner::Entry {
        label: &label,
        depth: 1,
    };
    let identity: IdentityRaw = match deser(sub_table(t, IDENTITY_KEYS, span.clone())) {
        Ok(i) => i,
        Err(e) => {
            c.toml_value(owner, &e, span.clone());
            return None;
        }
    };
    let policy: policy::PolicyRaw = match deser(sub_table(t, policy::POLICY_KEYS, span.clone())) {
        Ok(p) => p,
        Err(e) => {
            c.toml_value(owner, &e, span.clone());
            policy::PolicyRaw::default()
        }
    };
    let before = c.problems.len();
    let name = identity.name.get_ref().clone();
    if !valid_name(&name) {
        c.push(
            format!("invalid job name `{name}`"),
            Some(identity.name.span()),
            "use 1-64 characters of a-z, 0-9, `_` and `-`",
        );
    }
    let label = format!("job `{name}`");

    let kind = identity.kind.get_ref().clone();
    let params_keys: Vec<&str> = t
        .iter()
        .map(|(k, _)| k.get_ref().as_ref())
        .filter(|k| !IDENTITY_KEYS.contains(k) && !policy::POLICY_KEYS.contains(k))
        .collect();
    let params = sub_table(t, &params_keys, span.clone());
    let job = match jobs::build(&kind, ValueDeserializer::from(params)) {
        Ok(job) => Some(job),
        Err(BuildError::UnknownKind) => {
            c.push(
                format!("unknown kind `{kind}` for {label}"),
                Some(identity.kind.span()),
                format!("expected one of {}", quoted(&jobs::kind_names())),
            );
            None
        }
        Err(BuildError::Params(e)) => {
            let mut detail = e.message().trim().to_string();
            if detail.starts_with("unknown field") {
                detail = format!(
                    "{detail} for kind `{kind}`; every job also takes {}",
                    quoted(&[IDENTITY_KEYS, policy::POLICY_KEYS].concat())
                );
            }
            let at = e.span().unwrap_or(span.clone());
            let what = c.what(
                Owner::Entry {
                    label: &label,
                    depth: 1,
                },
                at.start,
            );
            c.push(what, Some(at), detail);
            None
        }
        Err(BuildError::Invalid(detail)) => {
            c.push(format!("invalid {label}"), Some(span.clone()), detail);
            None
        }
    };
    if let (Some(job), Some(notifier)) = (&job, notifier)
        && let Err(detail) = job.check(notifier)
    {
        c.push(format!("invalid {label}"), Some(span.clone()), detail);
    }

    let timezone = match &identity.timezone {
        Some(tz) => match parse_timezone(tz.get_ref()) {
            Ok(tz) => Some(tz),
            Err(e) => {
                c.push(
                    format!("invalid `timezone` for {label}"),
                    Some(tz.span()),
                    e,
                );
                None
            }
        },
        None => daemon.map(|d| d.timezone),
    };

    let trigger = match (&identity.schedule, &identity.every) {
        (Some(_), Some(every)) => {
            c.push(
                format!("both `schedule` and `every` set for {label}"),
                Some(every.span()),
                "a job has exactly one trigger; keep `schedule` (cron) or `every` (interval)",
            );
            None
        }
        (None, None) => {
            c.push(
                format!("no trigger for {label}"),
                Some(identity.name.span()),
                "add `schedule = \"<5-field cron>\"` or `every = \"10m\"`",
            );
            None
        }
        (Some(expr), None) => match CronTrigger::parse(expr.get_ref()) {
            Ok(t) => Some(Trigger::Cron(Box::new(t))),
            Err(e) => {
                c.push(
                    format!("invalid cron expression `{}` for {label}", expr.get_ref()),
                    Some(expr.span()),
                    e.0,
                );
                None
            }
        },
        (None, Some(every)) => match schedule::parse_every(every.get_ref()) {
            Ok(d) => Some(Trigger::Every(d)),
            Err(e) => {
                c.push(
                    format!("invalid `every` interval `{}` for {label}", every.get_ref()),
                    Some(every.span()),
                    e.0,
                );
                None
            }
        },
    };
    if let (Some(trigger), Some(tz)) = (&trigger, timezone)
        && trigger.next_after(chrono::Utc::now(), tz).is_none()
    {
        match (&identity.schedule, &identity.every) {
            (Some(expr), _) => c.push(
                format!(
                    "cron expression `{}` for {label} never fires",
                    expr.get_ref()
                ),
                Some(expr.span()),
                "no date matches it (e.g. February 30th); fix the day-of-month or month",
            ),
            // Unreachable while `parse_every` caps intervals at `time::duration::LONGEST`; kept so
            // that a daemon is never handed a trigger it cannot compute, whatever the cap.
            (None, Some(every)) => c.push(
                format!(
                    "`every` interval `{}` for {label} never fires",
                    every.get_ref()
                ),
                Some(every.span()),
                format!(
                    "its next fire lies beyond the last instant tickler can compute; use at \
                     most `{}`",
                    crate::time::duration::LONGEST_TEXT
                ),
            ),
            (None, None) => {}
        }
    }

    let alerts = alerts::job_alerts(
        policy.alert_keys(defaults),
        &name,
        &label,
        span.clone(),
        trigger.as_ref().zip(timezone),
        notifier.map(|n| &**n),
        c,
    );
    let run = policy::run_policy(&policy, defaults, &label, span.clone(), c);
    if c.problems.len() > before {
        return None;
    }
    let run = run?;
    let spec = JobSpec {
        name: Arc::from(name.as_str()),
        kind,
        description: identity.description,
        trigger: trigger?,
        timezone: timezone?,
        enabled: run.enabled,
        timeout: run.timeout,
        retry: run.retry,
        overlap: run.overlap,
        catch_up: run.catch_up,
        misfire_grace: run.misfire_grace,
        jitter: run.jitter,
        job: job?,
        notifier: notifier?.clone(),
        alerts,
    };
    Some((spec, identity.name.span()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message `tickler check` prints for `text`, which must be refused.
    pub(super) fn errors(text: &str) -> String {
        parse(Path::new("config.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let config = parse(Path::new("config.toml"), EXAMPLE).unwrap();
        assert!(config.jobs.len() >= 3);
    }

    /// The shipped config documents every option, so it shows every job kind; each of its jobs
    /// was built by its kind's builder when it was parsed.
    #[test]
    fn every_job_kind_builds_from_the_shipped_example() {
        let config = parse(Path::new("config.toml"), EXAMPLE).unwrap();
        let shown: HashSet<&str> = config.jobs.iter().map(|j| j.kind.as_str()).collect();
        for kind in jobs::kind_names() {
            assert!(shown.contains(kind), "no `{kind}` job in config.toml");
        }
        assert_eq!(shown.len(), jobs::KINDS.len(), "every job's kind is listed");
    }

    #[test]
    fn a_job_without_a_trigger_is_refused() {
        assert_eq!(
            errors("[[job]]\nname = \"x\"\nkind = \"noop\"\n"),
            "no trigger for job `x` (config.toml line 2, column 8): add `schedule = \"<5-field \
             cron>\"` or `every = \"10m\"`"
        );
    }

    #[test]
    fn names_and_kinds_are_checked() {
        assert_eq!(
            errors("[[job]]\nname = \"Daily Invoices\"\nkind = \"noop\"\nevery = \"1m\"\n"),
            "invalid job name `Daily Invoices` (config.toml line 2, column 8): use 1-64 \
             characters of a-z, 0-9, `_` and `-`"
        );
        assert_eq!(
            errors("[[job]]\nname = \"x\"\nkind = \"shell\"\nevery = \"1m\"\n"),
            "unknown kind `shell` for job `x` (config.toml line 3, column 8): expected one of \
             `cleanup`, `command`, `create_invoices`, `http`, `invoice_reminders`, `noop`, \
             `notify`, `overdue_escalation`, `sql`, `stats_report`"
        );
    }

    #[test]
    fn never_firing_expressions_are_refused() {
        assert_eq!(
            errors("[[job]]\nname = \"x\"\nkind = \"noop\"\nschedule = \"0 0 30 2 *\"\n"),
            "cron expression `0 0 30 2 *` for job `x` never fires (config.toml line 4, column \
             12): no date matches it (e.g. February 30th); fix the day-of-month or month"
        );
    }

    #[test]
    fn alert_keys_are_checked() {
        let job = "[[job]]\nname = \"x\"\nkind = \"noop\"\nschedule = \"0 2 * * *\"\n";
        assert_eq!(
            errors(&format!(
                "{job}on_failure = {{ email = [\"ops@example.com\"] }}\n"
            )),
            "invalid `on_failure.email` for job `x` (config.toml line 5, column 25): alert emails \
             go out through `[channels.email]`, which is not configured; add it, or alert through \
             `webhook` only"
        );
        assert_eq!(
            errors(&format!(
                "{job}on_failure = {{ webhook = [\"hooks.slack.com/services/T0/B0/secret\"] }}\n"
            )),
            "invalid `on_failure.webhook` for job `x` (config.toml line 5, column 27): `***` is \
             not an http(s) URL (shown by its host only: it holds a secret), e.g. \
             `https://hooks.slack.com/services/...`"
        );
        assert_eq!(
            errors(&format!(
                "{job}on_failure = {{ webhook = [\"https://h.test/x\"], run_url = \"https://d.test/\" }}\n"
            )),
            "invalid `on_failure.run_url` for job `x` (config.toml line 5, column 58): must be a \
             URL holding `{run_id}`, e.g. `https://grafana.example.com/explore?run={run_id}`"
        );
        assert_eq!(
            errors(&format!("{job}expect_success_within = \"20h\"\n")),
            "invalid `expect_success_within` for job `x` (config.toml line 1, column 1): the \
             job's trigger leaves up to 24h between fires, so a deadline of 20h would alert \
             while nothing is wrong; set it longer than that gap (e.g. the gap plus the job's \
             usual run time and retries)"
        );
        assert_eq!(
            errors(&format!("{job}ping_url = \"hc-ping.com/abc\"\n")),
            "invalid `ping_url` for job `x` (config.toml line 5, column 12): `***` is not an \
             http(s) URL (shown by its host only: it holds a secret); e.g. \
             `https://hc-ping.com/<uuid>`, or `https://hc-ping.com/<ping-key>/{job}` in \
             `[defaults]`"
        );
    }
}
