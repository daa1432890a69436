//! The `[queue]` section: how the task runner claims and runs tasks, the retries of each task
//! type, the handlers of `custom` tasks, and the defaults of new campaigns.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::problems::{Collector, Owner, quoted};
use super::read::{deser, sub_table, valid_name};
use crate::jobs::{self, BuildError};
use crate::notify::Notifier;
use crate::queue::{CampaignDefaults, Handler, QueueConfig, RetryRule, TaskType};
use crate::time::duration;

const QUEUE_KEYS: &[&str] = &[
    "enabled",
    "concurrency",
    "batch",
    "lease",
    "timeout",
    "poll",
    "retry",
    "campaigns",
];

/// Kinds a `custom` task handler may be.
const HANDLER_KINDS: &[&str] = &["command", "http", "noop", "sql"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueueRaw {
    enabled: Option<bool>,
    concurrency: Option<Spanned<i64>>,
    batch: Option<Spanned<i64>>,
    #[serde(default, with = "duration::option")]
    lease: Option<Duration>,
    #[serde(default, with = "duration::option")]
    timeout: Option<Duration>,
    #[serde(default, with = "duration::option")]
    poll: Option<Duration>,
    #[serde(default)]
    retry: BTreeMap<String, RetryRaw>,
    campaigns: Option<CampaignsRaw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRaw {
    backoff: Option<Vec<Spanned<String>>>,
    max_retries: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignsRaw {
    days_between_emails: Option<Spanned<i64>>,
    max_attempts: Option<Spanned<i64>>,
    stages: Option<Spanned<Vec<String>>>,
    escalation_tone: Option<Spanned<String>>,
    send_hour: Option<Spanned<i64>>,
    #[serde(default, with = "duration::option")]
    first_email_after: Option<Duration>,
    send_window: Option<Spanned<crate::notify::window::WindowRaw>>,
}

fn ranged(
    c: &mut Collector<'_>,
    what: &str,
    v: &Option<Spanned<i64>>,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> i64 {
    match v {
        None => default,
        Some(n) if range.contains(n.get_ref()) => *n.get_ref(),
        Some(n) => {
            c.push(
                format!("invalid `{what}`"),
                Some(n.span()),
                format!(
                    "must be {}-{} (found {})",
                    range.start(),
                    range.end(),
                    n.get_ref()
                ),
            );
            default
        }
    }
}

/// Reads `[queue]`; problems go to `c`. `notifier` checks the tones of campaign defaults.
pub(super) fn queue_config(
    value: Option<Spanned<DeValue<'_>>>,
    notifier: Option<&Notifier>,
    config_dir: &std::path::Path,
    c: &mut Collector<'_>,
) -> QueueConfig {
    let mut q = QueueConfig::default();
    let Some(value) = value else {
        return q;
    };
    let span = value.span();
    let DeValue::Table(t) = value.get_ref() else {
        c.push(
            "invalid `[queue]` section",
            Some(span),
            "`queue` must be a table",
        );
        return q;
    };
    let mut handlers_value = None;
    for (k, v) in t.iter() {
        match k.get_ref().as_ref() {
            "handlers" => handlers_value = Some(v.clone()),
            key if QUEUE_KEYS.contains(&key) => {}
            other => c.push(
                format!("unknown key `{other}` in `[queue]`"),
                Some(k.span()),
                format!("expected {} or `[queue.handlers.NAME]`", quoted(QUEUE_KEYS)),
            ),
        }
    }
    let raw: QueueRaw = match deser(sub_table(t, QUEUE_KEYS, span.clone())) {
        Ok(r) => r,
        Err(e) => {
            c.toml_value(Owner::Section("invalid `[queue]` section"), &e, span);
            return q;
        }
    };
    q.enabled = raw.enabled.unwrap_or(true);
    q.concurrency = ranged(
        c,
        "concurrency` in `[queue]",
        &raw.concurrency,
        1..=10_000,
        256,
    ) as usize;
    q.batch = ranged(c, "batch` in `[queue]", &raw.batch, 1..=5_000, 128) as usize;
    if let Some(lease) = raw.lease {
        if lease < Duration::from_secs(1) {
            c.push(
                "invalid `lease` in `[queue]`",
                Some(span.clone()),
                "must be at least 1s; a task's lease is renewed while it runs",
            );
        }
        q.lease = lease;
    }
    if let Some(timeout) = raw.timeout {
        q.timeout = timeout;
    }
    if let Some(poll) = raw.poll {
        q.poll = poll.max(Duration::from_millis(10));
    }
    for (name, rule) in raw.retry {
        let label = format!("`[queue.retry.{name}]`");
        let mut r = RetryRule::default();
        if let Some(backoff) = rule.backoff {
            let mut steps = vec![];
            for step in backoff {
                match duration::parse(step.get_ref()) {
                    Ok(d) => steps.push(d),
                    Err(e) => c.push(
                        format!("invalid `backoff` in {label}"),
                        Some(step.span()),
                        e.to_string(),
                    ),
                }
            }
            if steps.is_empty() {
                c.push(
                    format!("invalid `backoff` in {label}"),
                    Some(span.clone()),
                    "list at least one wait, e.g. `[\"5m\", \"15m\", \"1h\"]`",
                );
            } else {
                r.backoff = steps;
            }
        }
        r.max_retries = ranged(
            c,
            &format!("max_retries` in `{label}"),
            &rule.max_retries,
            0..=100,
            3,
        ) as u32;
        if name == "default" {
            q.retry_default = r;
        } else {
            match TaskType::parse(&name) {
                Ok(ty) => {
                    q.retry.insert(ty, r);
                }
                Err(e) => c.push(
                    format!("invalid {label}"),
                    Some(span.clone()),
                    format!("{e}, or `default`"),
                ),
            }
        }
    }
    if let Some(camp) = raw.campaigns {
        q.campaigns = campaign_defaults(camp, notifier, config_dir, c);
    }
    if let Some(handlers) = handlers_value {
        q.handlers = handlers_config(handlers, c);
    }
    q
}

fn campaign_defaults(
    raw: CampaignsRaw,
    notifier: Option<&Notifier>,
    config_dir: &std::path::Path,
    c: &mut Collector<'_>,
) -> CampaignDefaults {
    let mut d = CampaignDefaults {
        first_email_after: raw
            .first_email_after
            .unwrap_or(CampaignDefaults::default().first_email_after),
        ..CampaignDefaults::default()
    };
    d.days_between_emails = ranged(
        c,
        "days_between_emails` in `[queue.campaigns]",
        &raw.days_between_emails,
        1..=365,
        5,
    ) as u32;
    d.max_attempts = ranged(
        c,
        "max_attempts` in `[queue.campaigns]",
        &raw.max_attempts,
        1..=100,
        4,
    ) as u32;
    d.send_hour = ranged(
        c,
        "send_hour` in `[queue.campaigns]",
        &raw.send_hour,
        0..=23,
        10,
    ) as u32;
    if let Some(w) = raw.send_window {
        let read = |p: &std::path::Path| std::fs::read_to_string(config_dir.join(p));
        match crate::notify::SendWindow::build(w.get_ref(), read) {
            Ok(window) => d.send_window = Some(std::sync::Arc::new(window)),
            Err(e) => c.push(
                "invalid `send_window` in `[queue.campaigns]`",
                Some(w.span()),
                e.to_string(),
            ),
        }
    }
    let mut tones: Vec<(String, Range<usize>)> = vec![];
    if let Some(stages) = raw.stages {
        if stages.get_ref().is_empty() {
            c.push(
                "invalid `stages` in `[queue.campaigns]`",
                Some(stages.span()),
                "list the tone of each email, e.g. `[\"friendly\", \"professional\", \"firm\"]`",
            );
        } else {
            d.stages = stages.get_ref().clone();
            tones.extend(d.stages.iter().map(|s| (s.clone(), stages.span())));
        }
    }
    if let Some(tone) = raw.escalation_tone {
        d.escalation_tone = match tone.get_ref().as_str() {
            "" | "none" => None,
            t => {
                tones.push((t.to_string(), tone.span()));
                Some(t.to_string())
            }
        };
    }
    if let Some(notifier) = notifier {
        for (tone, span) in tones {
            if let Err(e) = notifier.templates.require(&tone, "tone") {
                c.push("invalid `[queue.campaigns]`", Some(span), e);
            }
        }
    }
    d
}

fn handlers_config(
    value: Spanned<DeValue<'_>>,
    c: &mut Collector<'_>,
) -> BTreeMap<String, Handler> {
    let mut out = BTreeMap::new();
    let DeValue::Table(t) = value.get_ref() else {
        c.push(
            "invalid `[queue.handlers]`",
            Some(value.span()),
            "write each handler as a `[queue.handlers.NAME]` table",
        );
        return out;
    };
    for (name, table) in t.iter() {
        let name_str = name.get_ref().to_string();
        let label = format!("handler `{name_str}`");
        let span = table.span();
        if !valid_name(&name_str) {
            c.push(
                format!("invalid handler name `{name_str}`"),
                Some(name.span()),
                "use 1-64 characters of a-z, 0-9, `_` and `-`",
            );
        }
        let DeValue::Table(h) = table.get_ref() else {
            c.push(
                format!("invalid {label}"),
                Some(span),
                "a handler must be a table",
            );
            continue;
        };
        let kind = match h.get("kind").and_then(|k| k.get_ref().as_str()) {
            Some(k) if HANDLER_KINDS.contains(&k) => k.to_string(),
            Some(k) => {
                c.push(
                    format!("unknown kind `{k}` for {label}"),
                    Some(span),
                    format!("a handler is one of {}", quoted(HANDLER_KINDS)),
                );
                continue;
            }
            None => {
                c.push(
                    format!("no `kind` for {label}"),
                    Some(span),
                    format!("add `kind = ` one of {}", quoted(HANDLER_KINDS)),
                );
                continue;
            }
        };
        let timeout = match h.get("timeout") {
            None => None,
            Some(v) => match v.get_ref().as_str().map(duration::parse) {
                Some(Ok(d)) if !d.is_zero() => Some(d),
                Some(Err(e)) => {
                    c.push(
                        format!("invalid `timeout` for {label}"),
                        Some(v.span()),
                        e.to_string(),
                    );
                    None
                }
                _ => {
                    c.push(
                        format!("invalid `timeout` for {label}"),
                        Some(v.span()),
                        "write a duration such as `30s`",
                    );
                    None
                }
            },
        };
        let keys: Vec<&str> = h
            .iter()
            .map(|(k, _)| k.get_ref().as_ref())
            .filter(|k| !matches!(*k, "kind" | "timeout"))
            .collect();
        match jobs::build(
            &kind,
            ValueDeserializer::from(sub_table(h, &keys, span.clone())),
        ) {
            Ok(job) => {
                out.insert(name_str, Handler { kind, job, timeout });
            }
            Err(BuildError::Params(e)) => {
                let at = e.span().unwrap_or(span);
                let owner = Owner::Entry {
                    label: &label,
                    depth: 3,
                };
                let what = c.what(owner, at.start);
                c.push(what, Some(at), e.message().trim().to_string());
            }
            Err(BuildError::Invalid(detail)) => {
                c.push(format!("invalid {label}"), Some(span), detail)
            }
            Err(BuildError::UnknownKind) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::queue::TaskType;

    fn problems(text: &str) -> Vec<String> {
        match crate::config::parse(Path::new("config.toml"), text) {
            Ok(_) => vec![],
            Err(e) => e
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.what, p.detail))
                .collect(),
        }
    }

    #[test]
    fn queue_settings_are_read_with_their_defaults() {
        let config = crate::config::parse(
            Path::new("config.toml"),
            r#"
[queue]
lease = "20s"
[queue.retry.default]
backoff = ["1s", "2s"]
max_retries = 5
[queue.retry.send_email]
max_retries = 1
[queue.handlers.sync]
kind = "noop"
"#,
        )
        .unwrap();
        let q = &config.queue;
        assert_eq!(q.lease.as_secs(), 20);
        assert_eq!(q.concurrency, 256);
        assert_eq!(q.retry_of(TaskType::Custom).max_retries, 5);
        assert_eq!(q.retry_of(TaskType::Custom).delay(7).as_secs(), 2);
        assert_eq!(q.retry_of(TaskType::SendEmail).max_retries, 1);
        assert_eq!(q.retry_of(TaskType::SendEmail).delay(1).as_secs(), 300);
        assert!(q.handlers.contains_key("sync"));
    }

    #[test]
    fn bad_queue_settings_are_named() {
        let p = problems(
            r#"
[queue]
batch = 0
[queue.retry.send_mail]
max_retries = 2
[queue.handlers.crm]
kind = "ftp"
"#,
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].contains("invalid `batch` in `[queue]`")
                && p[0].contains("must be 1-5000 (found 0)"),
            "{p:?}"
        );
        assert!(p[1].contains("unknown task type `send_mail`"), "{p:?}");
        assert!(
            p[2].contains("unknown kind `ftp` for handler `crm`"),
            "{p:?}"
        );
    }
}
