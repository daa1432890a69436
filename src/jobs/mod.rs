//! Job kinds: what a fire does. Each kind is one file holding its TOML parameters (serde,
//! `deny_unknown_fields`) and one async `run`; [`build`] is the single place that maps a kind
//! name to its implementation. The daemon owns timing, retries, timeouts and the ledger; a kind
//! owns only its work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::notify::Notifier;
use crate::store::Store;
use crate::store::user::{DatabaseError, Databases};

pub mod cleanup;
pub mod command;
pub mod create_invoices;
pub mod http;
pub mod invoice_reminders;
pub mod noop;
pub mod notify;
pub mod overdue_escalation;
pub mod paystack;
pub mod sending;
pub mod sql;
pub mod stats_report;

/// What a run produced: the count of records it processed, the per-item errors it recorded
/// while going on with the next item (the run is then `partial`), and JSON metadata kept in
/// the ledger.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub records: i64,
    pub errors: Vec<String>,
    pub metadata: Map<String, Value>,
}

/// Why a run failed. A retryable error is attempted again under the job's retry policy; a
/// fatal one (bad parameters, a 4xx answer, a missing secret) is not.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    #[error("{message}")]
    Retryable {
        message: String,
        metadata: Map<String, Value>,
    },
    #[error("{message}")]
    Fatal {
        message: String,
        metadata: Map<String, Value>,
    },
}

impl JobError {
    pub fn retryable(message: impl Into<String>) -> Self {
        JobError::Retryable {
            message: message.into(),
            metadata: Map::new(),
        }
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        JobError::Fatal {
            message: message.into(),
            metadata: Map::new(),
        }
    }
    /// Attaches metadata (an HTTP status, a command's output tail) kept with the failed run.
    pub fn with_metadata(mut self, extra: Map<String, Value>) -> Self {
        match &mut self {
            JobError::Retryable { metadata, .. } | JobError::Fatal { metadata, .. } => {
                metadata.extend(extra)
            }
        }
        self
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobError::Retryable { .. })
    }
    pub fn metadata(&self) -> &Map<String, Value> {
        match self {
            JobError::Retryable { metadata, .. } | JobError::Fatal { metadata, .. } => metadata,
        }
    }
}

/// What a run may use: the store, the notifier, and the identity and time of the run.
#[derive(Clone)]
pub struct RunContext {
    pub job_name: Arc<str>,
    pub scheduled_for: DateTime<Utc>,
    pub attempt: u32,
    pub store: Store,
    /// When this attempt started, on the daemon's clock: billing jobs count days from it.
    pub now: DateTime<Utc>,
    /// The job's zone: "today" and "due in 7 days" are dates there.
    pub timezone: Tz,
    pub notifier: Arc<Notifier>,
    /// `tickler run-job --dry-run`: report what would be sent and changed; change nothing.
    pub dry_run: bool,
    /// Set when a `custom` task runs this job as its handler.
    pub task: Option<Arc<TaskInput>>,
    /// The process running it (its `tickler_instances` id): the owner of every claim the run
    /// makes, so that its claims are resolved if it dies.
    pub instance: Arc<str>,
    /// The run's ledger row (none for a dry run or a task's handler).
    pub run_id: Option<uuid::Uuid>,
    /// The application's databases of `[databases]`, opened on first use.
    pub databases: Arc<Databases>,
    /// The job's `send_window`: its messages go out only inside it (and their channel's).
    pub send_window: Option<Arc<crate::notify::SendWindow>>,
}

/// The task a handler runs for: `http` sends it as the JSON body (unless the handler has its
/// own) with an `Idempotency-Key` header; `command` gets it in `TICKLER_TASK_*` variables.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskInput {
    pub id: String,
    pub task_type: String,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub campaign_id: Option<String>,
    pub invoice_id: Option<String>,
    pub customer_id: Option<String>,
    pub data: Value,
}

impl RunContext {
    /// The database a job's SQL runs on: the `[databases]` entry `name`, or tickler's own.
    pub async fn database(&self, name: Option<&str>) -> Result<&Store, JobError> {
        let Some(name) = name else {
            return Ok(&self.store);
        };
        self.databases.get(name).await.map_err(|e| match e {
            DatabaseError::Open { .. } => JobError::retryable(e.to_string()),
            _ => JobError::fatal(e.to_string()),
        })
    }

    /// Who the run's messages are claimed for.
    pub fn claimant(&self) -> crate::notify::Claimant<'_> {
        crate::notify::Claimant {
            job: &self.job_name,
            owner: &self.instance,
            run: self.run_id,
        }
    }

    /// Sends `messages` through the pipeline as this run: each in its recipient's zone (the
    /// job's when it has none) and within the job's send window.
    pub async fn send(
        &self,
        messages: &mut [crate::notify::Message],
    ) -> Result<Vec<crate::notify::Fate>, crate::store::StoreError> {
        for m in messages.iter_mut() {
            m.within(self.timezone, self.send_window.as_ref());
        }
        self.notifier
            .deliver(
                &self.store,
                &self.claimant(),
                messages,
                self.dry_run,
                self.now,
            )
            .await
    }

    /// Today's date in the job's zone.
    pub fn today(&self) -> NaiveDate {
        self.now.with_timezone(&self.timezone).date_naive()
    }
}

/// A job kind, modelled on underway's `Task`: the implementing type is its own parameters,
/// read by serde from the `[[job]]` table.
pub trait Job: DeserializeOwned + Send + Sync + 'static {
    /// What can be wrong with this kind's parameters: its module's error enum, whose text
    /// `tickler check` shows after "invalid job `name`".
    type Invalid: std::error::Error + Send + Sync + 'static;
    /// Checks that need more than serde (e.g. a non-empty command), run whenever the config is
    /// read, so `tickler check` and a reload report them.
    fn validate(&self) -> Result<(), Self::Invalid> {
        Ok(())
    }
    /// Checks against the rest of the config: the channels the job sends through are
    /// configured and its templates render against sample data.
    fn check(&self, _notifier: &Notifier) -> Result<(), Self::Invalid> {
        Ok(())
    }
    /// The `[databases]` entry its SQL runs on (`database = "app"`); `None`: tickler's own.
    fn database(&self) -> Option<&str> {
        None
    }
    /// The SQL it runs, each with what to call it in a message, for `tickler check` to prepare
    /// on the job's database.
    fn sql(&self) -> Vec<(String, String)> {
        vec![]
    }
    /// Its SQL that `:now` is bound in, as written, each with what to call it in a message:
    /// `tickler check` and each run look there for columns compared with `:now` that hold
    /// instants in another form than `:now`'s ([`crate::store::Store::check_now_columns`]).
    fn now_sql(&self) -> Vec<(String, String)> {
        vec![]
    }
    fn run(&self, ctx: &RunContext) -> impl Future<Output = Result<Outcome, JobError>> + Send;
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe face of [`Job`], so jobs of every kind live in one schedule.
pub trait DynJob: Send + Sync {
    fn check(&self, notifier: &Notifier) -> Result<(), Invalid>;
    fn database(&self) -> Option<&str>;
    fn sql(&self) -> Vec<(String, String)>;
    fn now_sql(&self) -> Vec<(String, String)>;
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Result<Outcome, JobError>>;
}

impl<J: Job> DynJob for J {
    fn check(&self, notifier: &Notifier) -> Result<(), Invalid> {
        Job::check(self, notifier).map_err(Invalid::new)
    }
    fn database(&self) -> Option<&str> {
        Job::database(self)
    }
    fn sql(&self) -> Vec<(String, String)> {
        Job::sql(self)
    }
    fn now_sql(&self) -> Vec<(String, String)> {
        Job::now_sql(self)
    }
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Result<Outcome, JobError>> {
        Box::pin(Job::run(self, ctx))
    }
}

/// Why the parameters of a job could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("unknown job kind; expected one of {}", kind_names().join(", "))]
    UnknownKind,
    #[error("{}", .0.message().trim())]
    Params(toml::de::Error),
    /// The kind's own checks refused the parameters.
    #[error("{0}")]
    Invalid(Invalid),
}

/// What a kind's checks found wrong, whatever the kind: its module's error (e.g.
/// [`cleanup::CleanupError`]), boxed so that every kind fits the one schedule.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(Box<dyn std::error::Error + Send + Sync>);

impl Invalid {
    fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Invalid(Box::new(e))
    }
}

/// For the config checks, which report a problem as text.
impl From<Invalid> for String {
    fn from(e: Invalid) -> String {
        e.to_string()
    }
}

/// Reads a kind's parameters (serde, `deny_unknown_fields`) and checks them.
type Builder = for<'a> fn(toml::de::ValueDeserializer<'a>) -> Result<Arc<dyn DynJob>, BuildError>;

fn parse<J: Job>(params: toml::de::ValueDeserializer<'_>) -> Result<Arc<dyn DynJob>, BuildError> {
    let job = J::deserialize(params).map_err(BuildError::Params)?;
    job.validate()
        .map_err(|e| BuildError::Invalid(Invalid::new(e)))?;
    Ok(Arc::new(job))
}

/// Every job kind: its name in `config.toml` and its builder. A new kind is a file in this
/// folder and one line here.
pub const KINDS: &[(&str, Builder)] = &[
    ("cleanup", parse::<cleanup::CleanupJob>),
    ("command", parse::<command::CommandJob>),
    (
        "create_invoices",
        parse::<create_invoices::CreateInvoicesJob>,
    ),
    ("http", parse::<http::HttpJob>),
    (
        "invoice_reminders",
        parse::<invoice_reminders::InvoiceRemindersJob>,
    ),
    ("noop", parse::<noop::NoopJob>),
    ("notify", parse::<notify::NotifyJob>),
    (
        "overdue_escalation",
        parse::<overdue_escalation::OverdueEscalationJob>,
    ),
    ("sql", parse::<sql::SqlJob>),
    ("stats_report", parse::<stats_report::StatsReportJob>),
];

/// The kind names of [`KINDS`], for error messages and `tickler check`.
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|(name, _)| *name).collect()
}

/// Builds the job of `kind` from the kind-specific keys of its `[[job]]` table.
pub fn build(
    kind: &str,
    params: toml::de::ValueDeserializer<'_>,
) -> Result<Arc<dyn DynJob>, BuildError> {
    let (_, builder) = KINDS
        .iter()
        .find(|(name, _)| *name == kind)
        .ok_or(BuildError::UnknownKind)?;
    builder(params)
}

/// Reads seed 003's report shape, `{"success": true, "deletedCount": 3, "errors": ["..."]}`,
/// from a job's JSON answer: integer fields add up to the records processed (nested objects
/// too, as in `{"summary": {"staleBookings": {"cancelled": 3, "errors": []}}}`), and every
/// `errors` array holds per-item errors. Returns `None` when `value` is not an object.
pub fn report_from_json(value: &Value) -> Option<Outcome> {
    fn walk(v: &Map<String, Value>, out: &mut Outcome) {
        for (key, item) in v {
            match item {
                Value::Number(n) if key != "errors" => out.records += n.as_i64().unwrap_or(0),
                Value::Array(errors) if key == "errors" => {
                    out.errors.extend(errors.iter().map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }))
                }
                Value::Object(inner) => walk(inner, out),
                _ => {}
            }
        }
    }
    let object = value.as_object()?;
    let mut out = Outcome::default();
    walk(object, &mut out);
    if object.get("success") == Some(&Value::Bool(false)) && out.errors.is_empty() {
        out.errors
            .push("the job reported `success: false` without errors".into());
    }
    out.metadata.insert("report".into(), value.clone());
    Some(out)
}

impl From<crate::store::StoreError> for JobError {
    /// A database error mid-run is retryable: the run's claims make another attempt safe.
    fn from(e: crate::store::StoreError) -> Self {
        JobError::retryable(e.to_string())
    }
}

/// The outcome of `--dry-run` for a kind whose effects cannot be previewed (a program, a URL,
/// SQL statements): it says what it would do, and does nothing.
pub fn dry_run_only(key: &str, what: Value) -> Outcome {
    let mut outcome = Outcome::default();
    outcome.metadata.insert(key.into(), what);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a kind's error table: `validate` refuses each entry's parameters (the kind's TOML
    /// keys) with exactly its message.
    pub(crate) fn assert_refused<J: Job>(table: &[(impl AsRef<str>, &str)]) {
        for (params, message) in table {
            let params = params.as_ref();
            let job: J = toml::from_str(params).unwrap_or_else(|e| panic!("{params}: {e}"));
            match job.validate() {
                Ok(()) => panic!("accepted: {params}"),
                Err(e) => assert_eq!(e.to_string(), *message, "{params}"),
            }
        }
    }

    #[test]
    fn seed_003_reports_are_read() {
        let v = serde_json::json!({
            "success": false,
            "timestamp": "2025-10-07T02:00:00.000Z",
            "summary": {
                "staleBookings": { "cancelled": 3, "errors": ["booking 7: no client"] },
                "notifications": { "deleted": 150, "errors": [] }
            }
        });
        let out = report_from_json(&v).unwrap();
        assert_eq!(out.records, 153);
        assert_eq!(out.errors, ["booking 7: no client"]);
        let out = report_from_json(&serde_json::json!({"success": false})).unwrap();
        assert_eq!(
            out.errors,
            ["the job reported `success: false` without errors"]
        );
        assert!(report_from_json(&serde_json::json!([1, 2])).is_none());
    }
}
