//! `config.toml`: read, validate, and turn into a schedule of jobs. Every error names the file,
//! line, column and field and says what would be accepted (DESIGN.md invariant 10); all problems
//! of a file are reported at once, and a file with any problem yields no config at all, so a
//! reload with a broken file leaves the running schedule untouched (invariant 7).
//!
//! This file holds the public types and `load`/`parse`; the rooms, in the order `parse` uses
//! them: `sections` (which table is which section; the notifier), `daemon` (`[daemon]`),
//! `databases` (`[databases]`), `lanes` (`[lanes]`), `calendars` (`[calendars]`), `job`
//! (each `[[job]]`, with `trigger`, `policy` and `alerts`), `queue` (`[queue]`), `http`
//! (`[http]`), `payments` (`[payments.*]`). All of them report through `problems` and share the helpers of `read`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::de::DeTable;

use crate::jobs::DynJob;
use crate::notify::Notifier;
use crate::retry::RetryPolicy;
use crate::schedule::Trigger;
use crate::secret::DatabaseUrl;
use crate::store::user::Databases;

pub mod alerts;
mod calendars;
mod daemon;
mod databases;
pub mod http;
mod job;
mod lanes;
pub mod payments;
mod policy;
mod problems;
mod queue;
mod read;
mod sections;
mod trigger;
pub mod users;

use self::problems::Collector;
pub use self::problems::{ConfigError, Problem};

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
    /// The `[lanes]` entry whose run slots it takes; `None`: those of `[daemon] max_concurrent`.
    pub lane: Option<Arc<str>>,
    pub job: Arc<dyn DynJob>,
    /// The channels and templates of the config this job came from.
    pub notifier: Arc<Notifier>,
    /// The application's databases of that config.
    pub databases: Arc<Databases>,
    /// Who hears of its failures, its dead-man deadline, its monitor's ping URL.
    pub alerts: alerts::JobAlerts,
    /// Its messages go out only inside this window (and their channel's), in each
    /// recipient's zone.
    pub send_window: Option<Arc<crate::notify::SendWindow>>,
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
    /// `[payments.*]`: the payment webhooks served by `[http]` and their signing secrets.
    pub payments: Arc<payments::PaymentsConfig>,
    /// `[databases]`: the application's databases, opened on first use.
    pub databases: Arc<Databases>,
    /// `[lanes]`: each lane's number of run slots, apart from `[daemon] max_concurrent`.
    pub lanes: BTreeMap<Arc<str>, usize>,
}

impl Config {
    /// The job called `name` (a walk of the list: for one name).
    pub fn job(&self, name: &str) -> Option<&Arc<JobSpec>> {
        self.jobs.iter().find(|j| &*j.name == name)
    }

    /// The jobs by name, for looking up many (`job` for each of 100,000 would walk the list
    /// 100,000 times).
    pub fn jobs_by_name(&self) -> HashMap<&str, &Arc<JobSpec>> {
        self.jobs.iter().map(|j| (&*j.name, j)).collect()
    }
}

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
    let sections = sections::Sections::read(root.into_inner(), c);
    let daemon = daemon::daemon_config(sections.daemon, c);
    let config_dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let state_dir = daemon
        .as_ref()
        .map(|d| d.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from("var"));
    let notifier = sections.notify.notifier(config_dir, &state_dir, c);
    let databases = Arc::new(databases::databases(sections.databases, c));
    let lanes = lanes::lanes(sections.lanes, c);
    sections.defaults.check_lane(&lanes, c);
    let calendars = calendars::calendars(sections.calendars, config_dir, c);
    let ctx = job::JobContext {
        defaults: &sections.defaults,
        calendars: &calendars,
        daemon: daemon.as_ref(),
        notifier: notifier.as_ref(),
        databases: &databases,
        lanes: &lanes,
        config_dir,
    };
    let jobs = job::job_specs(sections.jobs, ctx, c);
    let queue = queue::queue_config(sections.queue, notifier.as_deref(), config_dir, c);
    let has_http = sections.http.is_some();
    let http = http::http_config(sections.http, config_dir, c);
    let payments = payments::payments_config(sections.payments, has_http, c);
    Some(Config {
        path: PathBuf::new(),
        daemon: daemon?,
        jobs,
        notifier: notifier?,
        queue: Arc::new(queue),
        http,
        payments: Arc::new(payments),
        databases,
        lanes,
    })
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
}
