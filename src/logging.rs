//! Where the log goes. Under systemd, when stderr is the journal (`JOURNAL_STREAM` names it),
//! events go to journald natively with their fields as journal fields (`JOB`, `RUN_ID`,
//! `STATUS`, `SCHEDULED_FOR`, ...), so `journalctl -u tickler JOB=daily-invoices` finds a job's
//! lines; the plain `journalctl -u tickler` view shows only the message, so an event's `job`,
//! `status` and `error` are also written into its message text ([`FieldsInMessage`]).
//! Otherwise they are plain lines on stderr, coloured only on a terminal.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::field::{DisplayValue, Field, Value, Visit, display};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The journal's `SYSLOG_IDENTIFIER` of every line.
pub const IDENTIFIER: &str = "tickler";

/// Installs the global subscriber: journald when stderr is connected to it, else plain lines.
pub fn init(filter: EnvFilter) {
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier(IDENTIFIER.to_string());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(FieldsInMessage(journal))
                    .init();
                return;
            }
            Err(e) => eprintln!("tickler: cannot log to journald ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` holds its
/// `device:inode`, and a stderr redirected elsewhere (a child of the service, a shell) does not
/// match, as sd_journal_stream_fd(3) advises.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

/// The fields whose values are appended to the message text, in this order, when an event
/// has them: what a reader of the plain journal view needs to tell one job's lines from
/// another's (`run finished job=daily-invoices status=succeeded`).
const IN_MESSAGE: [&str; 3] = ["job", "status", "error"];

/// The most fields an event may have to be rewritten (tracing builds a value set from a
/// fixed-size array); an event with more goes through unchanged.
const MAX_FIELDS: usize = 32;

/// Wraps the journald layer so that an event with a `job` field carries `job=NAME` (and its
/// `status` and `error`) in its message text too, as journald's plain view shows only
/// `MESSAGE`. Every field stays a journal field of its own (`JOB`, `RUN_ID`, ...), so
/// `journalctl JOB=...` and `-o verbose` are unchanged. Done here, once, rather than at each
/// of the call sites that name a job.
pub struct FieldsInMessage<L>(pub L);

impl<S, L> Layer<S> for FieldsInMessage<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Captured::default();
        event.record(&mut fields);
        let (Some(message), true) = (fields.message_with_fields(), fields.0.len() <= MAX_FIELDS)
        else {
            return self.0.on_event(event, ctx);
        };
        let Some(pad) = event.metadata().fields().iter().next() else {
            return self.0.on_event(event, ctx);
        };
        let message = FieldValue::Str(message);
        let values: [(&Field, Option<&dyn Value>); MAX_FIELDS] =
            std::array::from_fn(|i| match fields.0.get(i) {
                Some((f, _)) if f.name() == "message" => (f, Some(message.as_value())),
                Some((f, v)) => (f, Some(v.as_value())),
                None => (&pad, None),
            });
        let values = event.metadata().fields().value_set(&values);
        self.0.on_event(&Event::new(event.metadata(), &values), ctx);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx)
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx)
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, ctx)
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx)
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx)
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx)
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx)
    }
}

/// A field's value, kept with its type so the wrapped layer records it as it would have.
enum FieldValue {
    Str(String),
    /// Anything recorded with `Debug` (or as an error), kept as that text.
    Text(DisplayValue<String>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    fn as_value(&self) -> &dyn Value {
        match self {
            FieldValue::Str(v) => v,
            FieldValue::Text(v) => v,
            FieldValue::I64(v) => v,
            FieldValue::U64(v) => v,
            FieldValue::F64(v) => v,
            FieldValue::Bool(v) => v,
        }
    }

    fn text(&self) -> String {
        match self {
            FieldValue::Str(v) => v.clone(),
            FieldValue::Text(v) => v.to_string(),
            FieldValue::I64(v) => v.to_string(),
            FieldValue::U64(v) => v.to_string(),
            FieldValue::F64(v) => v.to_string(),
            FieldValue::Bool(v) => v.to_string(),
        }
    }
}

/// An event's fields in the order recorded.
#[derive(Default)]
struct Captured(Vec<(Field, FieldValue)>);

impl Captured {
    fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0
            .iter()
            .find(|(f, _)| f.name() == name)
            .map(|(_, v)| v)
    }

    /// The message followed by ` job=NAME status=... error=...` for those present, or `None`
    /// when the event has no message or no `job` (it is left as it is).
    fn message_with_fields(&self) -> Option<String> {
        let mut text = self.get("message")?.text();
        self.get("job")?;
        for name in IN_MESSAGE {
            let Some(value) = self.get(name).map(FieldValue::text) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            // Bare like `job=daily-invoices`; quoted when a space or quote would blur the
            // boundary with the next field.
            if value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
                let _ = write!(text, " {name}={value:?}");
            } else {
                let _ = write!(text, " {name}={value}");
            }
        }
        Some(text)
    }
}

impl Visit for Captured {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .push((field.clone(), FieldValue::Str(value.to_string())));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.clone(), FieldValue::I64(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.clone(), FieldValue::U64(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.clone(), FieldValue::F64(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.clone(), FieldValue::Bool(value)));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .push((field.clone(), FieldValue::Text(display(value.to_string()))));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((
            field.clone(),
            FieldValue::Text(display(format!("{value:?}"))),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::subscriber::with_default;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// One event's fields as `(name, value)`, in the order recorded.
    type Pairs = Vec<(String, String)>;

    /// Records each event as the journald layer would see it: strings raw and everything else
    /// in its `Debug` form.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Pairs>>>);

    struct Fields(Pairs);

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_string(), value.to_string()));
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields(vec![]);
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }

    fn seen(emit: impl FnOnce()) -> Vec<Pairs> {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(FieldsInMessage(seen.clone()));
        with_default(subscriber, emit);
        seen.0.lock().unwrap().clone()
    }

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The plain journal view of a run line names its job; the fields stay as they were.
    #[test]
    fn a_run_line_names_its_job_status_and_error_in_the_message() {
        let job: Arc<str> = Arc::from("daily-invoices");
        let events = seen(|| {
            tracing::info!(job = %job, run_id = %"r-1", status = "succeeded", duration_s = 0.25,
                records = 3u64, "run finished");
            tracing::error!(job = %job, status = "failed", attempts = 2i64, ok = false,
                error = "connection refused: smtp", "run failed");
        });
        assert_eq!(
            events,
            [
                pairs(&[
                    (
                        "message",
                        "run finished job=daily-invoices status=succeeded"
                    ),
                    ("job", "daily-invoices"),
                    ("run_id", "r-1"),
                    ("status", "succeeded"),
                    ("duration_s", "0.25"),
                    ("records", "3"),
                ]),
                pairs(&[
                    (
                        "message",
                        "run failed job=daily-invoices status=failed \
                         error=\"connection refused: smtp\""
                    ),
                    ("job", "daily-invoices"),
                    ("status", "failed"),
                    ("attempts", "2"),
                    ("ok", "false"),
                    ("error", "connection refused: smtp"),
                ]),
            ]
        );
    }

    /// An event without a `job` (or without a message) is passed on untouched.
    #[test]
    fn events_without_a_job_are_unchanged() {
        let events = seen(|| {
            tracing::info!(status = "running", jobs = 3u64, "tickler started");
            tracing::info!(job = "a");
        });
        assert_eq!(
            events,
            [
                pairs(&[
                    ("message", "tickler started"),
                    ("status", "running"),
                    ("jobs", "3"),
                ]),
                pairs(&[("job", "a")]),
            ]
        );
    }
}
