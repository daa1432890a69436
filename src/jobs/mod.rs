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

pub mod cleanup;
pub mod command;
pub mod create_invoices;
pub mod http;
pub mod invoice_reminders;
pub mod noop;
pub mod notify;
pub mod overdue_escalation;
pub mod paystack;
pub mod sql;
pub mod stats_report;

/// Every kind name [`build`] accepts, for error messages and `tickler check`.
pub const KINDS: &[&str] = &[
    "cleanup",
    "command",
    "create_invoices",
    "http",
    "invoice_reminders",
    "noop",
    "notify",
    "overdue_escalation",
    "sql",
    "stats_report",
];

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
    /// Who the run's messages are claimed for.
    pub fn claimant(&self) -> crate::notify::Claimant<'_> {
        crate::notify::Claimant {
            job: &self.job_name,
            owner: &self.instance,
            run: self.run_id,
        }
    }

    /// Today's date in the job's zone.
    pub fn today(&self) -> NaiveDate {
        self.now.with_timezone(&self.timezone).date_naive()
    }
}

/// A job kind, modelled on underway's `Task`: the implementing type is its own parameters,
/// read by serde from the `[[job]]` table.
pub trait Job: DeserializeOwned + Send + Sync + 'static {
    /// Checks that need more than serde (e.g. a non-empty command), run whenever the config is
    /// read, so `tickler check` and a reload report them.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// Checks against the rest of the config: the channels the job sends through are
    /// configured and its templates render against sample data.
    fn check(&self, _notifier: &Notifier) -> Result<(), String> {
        Ok(())
    }
    fn run(&self, ctx: &RunContext) -> impl Future<Output = Result<Outcome, JobError>> + Send;
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe face of [`Job`], so jobs of every kind live in one schedule.
pub trait DynJob: Send + Sync {
    fn check(&self, notifier: &Notifier) -> Result<(), String>;
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Result<Outcome, JobError>>;
}

impl<J: Job> DynJob for J {
    fn check(&self, notifier: &Notifier) -> Result<(), String> {
        Job::check(self, notifier)
    }
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Result<Outcome, JobError>> {
        Box::pin(Job::run(self, ctx))
    }
}

/// Why the parameters of a job could not be built.
#[derive(Debug)]
pub enum BuildError {
    UnknownKind,
    Params(toml::de::Error),
    Invalid(String),
}

fn parse<J: Job>(params: toml::de::ValueDeserializer<'_>) -> Result<Arc<dyn DynJob>, BuildError> {
    let job = J::deserialize(params).map_err(BuildError::Params)?;
    job.validate().map_err(BuildError::Invalid)?;
    Ok(Arc::new(job))
}

/// Builds the job of `kind` from the kind-specific keys of its `[[job]]` table.
pub fn build(
    kind: &str,
    params: toml::de::ValueDeserializer<'_>,
) -> Result<Arc<dyn DynJob>, BuildError> {
    match kind {
        "cleanup" => parse::<cleanup::CleanupJob>(params),
        "command" => parse::<command::CommandJob>(params),
        "create_invoices" => parse::<create_invoices::CreateInvoicesJob>(params),
        "http" => parse::<http::HttpJob>(params),
        "invoice_reminders" => parse::<invoice_reminders::InvoiceRemindersJob>(params),
        "noop" => parse::<noop::NoopJob>(params),
        "notify" => parse::<notify::NotifyJob>(params),
        "overdue_escalation" => parse::<overdue_escalation::OverdueEscalationJob>(params),
        "sql" => parse::<sql::SqlJob>(params),
        "stats_report" => parse::<stats_report::StatsReportJob>(params),
        _ => Err(BuildError::UnknownKind),
    }
}

/// The HTTP client every job shares (rustls, connection pool), built at its first use so a
/// daemon without HTTP jobs never loads TLS roots.
pub fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("tickler/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// Text a job read from outside (a program's output, an HTTP answer) without NUL bytes, which
/// PostgreSQL refuses in text and jsonb: such text ends up in the ledger and task results.
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    }
}

/// Keeps the last `max` bytes of `text`, on a character boundary, for metadata tails.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_are_dropped_from_outside_text() {
        assert_eq!(without_nul("disk\0full\n".into()), "diskfull\n");
        assert_eq!(without_nul("plain".into()), "plain");
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

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aé", 1), "…");
    }
}

impl From<crate::store::StoreError> for JobError {
    /// A database error mid-run is retryable: the run's claims make another attempt safe.
    fn from(e: crate::store::StoreError) -> Self {
        JobError::retryable(e.to_string())
    }
}

/// How many per-item errors a run keeps in its record; the rest are counted.
pub const MAX_ERRORS: usize = 100;

/// Counts what a run's messages became, per channel, and keeps the per-item errors and (for
/// `--dry-run`) the plan.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: std::collections::BTreeMap<&'static str, i64>,
    pub failed: std::collections::BTreeMap<&'static str, i64>,
    pub skipped: i64,
    pub already: i64,
    pub errors: Vec<String>,
    pub more_errors: usize,
    pub plan: Vec<Value>,
}

impl Tally {
    /// Records the fates of `messages`; `label` names a message in an error ("invoice INV-1").
    pub fn record(
        &mut self,
        messages: &[crate::notify::Message],
        fates: &[crate::notify::Fate],
        label: impl Fn(&crate::notify::Message) -> String,
    ) {
        use crate::notify::Fate;
        for (m, fate) in messages.iter().zip(fates) {
            let channel = m.channel.as_str();
            match fate {
                Fate::Sent => *self.sent.entry(channel).or_default() += 1,
                Fate::Failed(e) => {
                    *self.failed.entry(channel).or_default() += 1;
                    self.error(format!(
                        "{} by {channel} to {}: {e}",
                        label(m),
                        m.recipient.as_deref().unwrap_or("?")
                    ));
                }
                Fate::Skipped(_) => self.skipped += 1,
                Fate::Done => self.already += 1,
                Fate::Planned(r) => {
                    if self.plan.len() < 1000 {
                        self.plan.push(serde_json::json!({
                            "channel": channel,
                            "to": m.recipient,
                            "subject": r.subject,
                            "text": tail(&r.text, 160),
                            "key": m.key,
                        }));
                    }
                    *self.sent.entry(channel).or_default() += 1;
                }
            }
        }
    }

    /// [`Tally::record`] for messages about the invoices of `page`, named by their numbers.
    pub fn record_invoices(
        &mut self,
        page: &[crate::store::billing::InvoiceView],
        messages: &[crate::notify::Message],
        fates: &[crate::notify::Fate],
    ) {
        let numbers: std::collections::HashMap<&str, &str> = page
            .iter()
            .map(|i| (i.id.as_str(), i.number.as_str()))
            .collect();
        self.record(messages, fates, |m| {
            let id = m.invoice_id.as_deref().unwrap_or("");
            format!("invoice {}", numbers.get(id).copied().unwrap_or(id))
        });
    }

    pub fn error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        } else {
            self.more_errors += 1;
        }
    }

    pub fn sent_total(&self) -> i64 {
        self.sent.values().sum()
    }

    /// Adds the counts to `outcome` (records: messages sent; metadata: per channel).
    pub fn into_outcome(self, mut outcome: Outcome, dry_run: bool) -> Outcome {
        outcome.records += self.sent_total();
        let key = if dry_run { "would_send" } else { "sent" };
        outcome
            .metadata
            .insert(key.into(), serde_json::json!(self.sent));
        outcome
            .metadata
            .insert("failed".into(), serde_json::json!(self.failed));
        outcome
            .metadata
            .insert("skipped_no_address".into(), serde_json::json!(self.skipped));
        outcome
            .metadata
            .insert("already_sent".into(), serde_json::json!(self.already));
        if dry_run {
            outcome
                .metadata
                .insert("plan".into(), Value::Array(self.plan));
        }
        outcome.errors.extend(self.errors);
        if self.more_errors > 0 {
            outcome
                .errors
                .push(format!("… and {} more failed items", self.more_errors));
        }
        outcome
    }
}

/// The messages of one invoice, one per channel: the address comes from the customer
/// (`email` for email, `phone` for SMS and WhatsApp).
pub fn invoice_messages(
    invoice: &crate::store::billing::InvoiceView,
    channels: &[crate::notify::ChannelKind],
    key_prefix: &str,
    template: &str,
    context: &Value,
) -> Vec<crate::notify::Message> {
    use crate::notify::ChannelKind;
    channels
        .iter()
        .map(|c| crate::notify::Message {
            key: format!("{key_prefix}:{}:{}", invoice.id, c.as_str()),
            channel: *c,
            recipient: match c {
                ChannelKind::Email => invoice.email.clone(),
                ChannelKind::Sms | ChannelKind::Whatsapp => invoice.phone.clone(),
                ChannelKind::Webhook => Some("webhook".into()),
            }
            .filter(|a| !a.trim().is_empty()),
            template: template.to_string(),
            invoice_id: Some(invoice.id.clone()),
            context: context.clone(),
        })
        .collect()
}

/// An invoice's payment link from a `pay_url` pattern with `{number}`, `{id}` and
/// `{provider_ref}`.
pub fn pay_url(
    pattern: Option<&str>,
    invoice: &crate::store::billing::InvoiceView,
) -> Option<String> {
    let p = pattern?;
    if p.contains("{provider_ref}") && invoice.provider_ref.is_none() {
        return None;
    }
    Some(
        p.replace("{number}", &invoice.number)
            .replace("{id}", &invoice.id)
            .replace(
                "{provider_ref}",
                invoice.provider_ref.as_deref().unwrap_or(""),
            ),
    )
}

/// The checks every sending job shares: at least one channel, a sane page size.
fn check_sending(channels: &[crate::notify::ChannelKind], batch_size: i64) -> Result<(), String> {
    if channels.is_empty() {
        return Err("`channels` must list at least one channel, e.g. `[\"email\"]`".into());
    }
    if !(1..=10_000).contains(&batch_size) {
        return Err(format!("`batch_size` must be 1-10000 (found {batch_size})"));
    }
    Ok(())
}

fn default_channels() -> Vec<crate::notify::ChannelKind> {
    vec![crate::notify::ChannelKind::Email]
}

/// Invoices per page of a billing job: large pages keep the channels busy between the
/// database steps (measured: 2000 beats 500 by 10-20 % in messages per second).
fn default_batch() -> i64 {
    2000
}

/// The outcome of `--dry-run` for a kind whose effects cannot be previewed (a program, a URL,
/// SQL statements): it says what it would do, and does nothing.
pub fn dry_run_only(key: &str, what: Value) -> Outcome {
    let mut outcome = Outcome::default();
    outcome.metadata.insert(key.into(), what);
    outcome
}
