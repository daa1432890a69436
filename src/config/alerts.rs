//! The alert keys of a job (or of `[defaults]`): `on_failure` (who hears about a failed run),
//! `expect_success_within` (the dead-man deadline) and `ping_url` (a healthchecks.io-style
//! monitor). Validated here, acted on by `daemon/alerts.rs`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::problems::Collector;
use crate::notify::{ChannelKind, Notifier};
use crate::schedule::Trigger;
use crate::secret::host_only;

/// While a job keeps failing, one reminder per this long (after the first alert).
pub const DEFAULT_REPEAT_AFTER: Duration = Duration::from_secs(6 * 3600);

/// `on_failure = { email = [...], webhook = [...], repeat_after = "6h", run_url = "..." }`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct OnFailureRaw {
    #[serde(default)]
    email: Vec<Spanned<String>>,
    #[serde(default)]
    webhook: Vec<Spanned<String>>,
    #[serde(default, with = "crate::time::duration::option")]
    repeat_after: Option<Duration>,
    run_url: Option<Spanned<String>>,
}

/// Who is told about a failed run, and how often.
#[derive(Clone, PartialEq)]
pub struct OnFailure {
    pub email: Vec<String>,
    /// Each gets a JSON POST whose `text` field makes it a Slack-style incoming webhook.
    pub webhook: Vec<String>,
    /// A job failing again within this of its last alert sends nothing more.
    pub repeat_after: Duration,
    /// A link to a run, with `{run_id}` replaced (a dashboard, a log search).
    pub run_url: Option<String>,
}

impl OnFailure {
    pub fn has_recipients(&self) -> bool {
        !self.email.is_empty() || !self.webhook.is_empty()
    }
}

/// A job's alert settings.
#[derive(Clone, Default, PartialEq)]
pub struct JobAlerts {
    pub on_failure: Option<OnFailure>,
    /// Alert when the job has not succeeded (or ended `partial`) for this long.
    pub expect_success_within: Option<Duration>,
    /// Pinged at `/start`, on success, and at `/fail` (with `{job}` replaced).
    pub ping_url: Option<String>,
}

impl JobAlerts {
    /// `on_failure`, when it names anyone.
    pub fn recipients(&self) -> Option<&OnFailure> {
        self.on_failure.as_ref().filter(|o| o.has_recipients())
    }

    pub fn repeat_after(&self) -> Duration {
        self.on_failure
            .as_ref()
            .map(|o| o.repeat_after)
            .unwrap_or(DEFAULT_REPEAT_AFTER)
    }
}

// Webhook and ping URLs hold tokens (Slack's and healthchecks.io's are secrets).
impl fmt::Debug for JobAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (email, webhooks) = self
            .on_failure
            .as_ref()
            .map(|o| (o.email.clone(), o.webhook.len()))
            .unwrap_or_default();
        f.debug_struct("JobAlerts")
            .field("email", &email)
            .field("webhooks", &webhooks)
            .field("expect_success_within", &self.expect_success_within)
            .field("ping_url", &self.ping_url.as_deref().map(|_| "***"))
            .finish()
    }
}

/// The raw alert keys of a job and of `[defaults]`; a job's key replaces the default's.
pub(super) struct AlertKeys<'a> {
    pub on_failure: Option<&'a OnFailureRaw>,
    pub expect_success_within: Option<Duration>,
    pub ping_url: Option<&'a Spanned<String>>,
}

/// Validates the alert keys of job `name` (`label` is "job `name`").
pub(super) fn job_alerts(
    keys: AlertKeys<'_>,
    name: &str,
    label: &str,
    span: std::ops::Range<usize>,
    schedule: Option<(&Trigger, chrono_tz::Tz)>,
    notifier: Option<&Notifier>,
    c: &mut Collector<'_>,
) -> JobAlerts {
    let mut alerts = JobAlerts::default();
    if let Some(raw) = keys.on_failure {
        alerts.on_failure = on_failure(raw, label, span.clone(), notifier, c);
    }
    if let Some(within) = keys.expect_success_within {
        if within < Duration::from_secs(60) {
            c.push(
                format!("invalid `expect_success_within` for {label}"),
                Some(span.clone()),
                "must be at least 1m",
            );
        } else if let Some((trigger, tz)) = schedule
            && let Some(gap) = longest_gap(trigger, tz)
            && gap >= within
        {
            c.push(
                format!("invalid `expect_success_within` for {label}"),
                Some(span.clone()),
                format!(
                    "the job's trigger leaves up to {} between fires, so a deadline of {} would \
                     alert while nothing is wrong; set it longer than that gap (e.g. the gap plus \
                     the job's usual run time and retries)",
                    crate::time::duration::short(gap),
                    crate::time::duration::short(within)
                ),
            );
        }
        alerts.expect_success_within = Some(within);
    }
    if let Some(url) = keys.ping_url {
        let resolved = url.get_ref().replace("{job}", name);
        match reqwest::Url::parse(&resolved) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => alerts.ping_url = Some(resolved),
            _ => c.push(
                format!("invalid `ping_url` for {label}"),
                Some(url.span()),
                format!(
                    "`{}` is not an http(s) URL (shown by its host only: it holds a secret); \
                     e.g. `https://hc-ping.com/<uuid>`, or `https://hc-ping.com/<ping-key>/{{job}}` \
                     in `[defaults]`",
                    host_only(url.get_ref())
                ),
            ),
        }
    }
    alerts
}

fn on_failure(
    raw: &OnFailureRaw,
    label: &str,
    span: std::ops::Range<usize>,
    notifier: Option<&Notifier>,
    c: &mut Collector<'_>,
) -> Option<OnFailure> {
    let before = c.problems.len();
    let mut email = vec![];
    for addr in &raw.email {
        match addr.get_ref().parse::<lettre::Address>() {
            Ok(_) => email.push(addr.get_ref().clone()),
            Err(e) => c.push(
                format!("invalid `on_failure.email` for {label}"),
                Some(addr.span()),
                format!("`{}` is not an email address: {e}", addr.get_ref()),
            ),
        }
    }
    if let (Some(first), Some(n)) = (raw.email.first(), notifier)
        && !n.has_channel(ChannelKind::Email)
    {
        c.push(
            format!("invalid `on_failure.email` for {label}"),
            Some(first.span()),
            "alert emails go out through `[channels.email]`, which is not configured; add it, \
             or alert through `webhook` only",
        );
    }
    let mut webhook = vec![];
    for url in &raw.webhook {
        match reqwest::Url::parse(url.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => webhook.push(url.get_ref().clone()),
            _ => c.push(
                format!("invalid `on_failure.webhook` for {label}"),
                Some(url.span()),
                format!(
                    "`{}` is not an http(s) URL (shown by its host only: it holds a secret), \
                     e.g. `https://hooks.slack.com/services/...`",
                    host_only(url.get_ref())
                ),
            ),
        }
    }
    let repeat_after = raw.repeat_after.unwrap_or(DEFAULT_REPEAT_AFTER);
    if repeat_after < Duration::from_secs(60) {
        c.push(
            format!("invalid `on_failure.repeat_after` for {label}"),
            Some(span),
            "must be at least 1m: it is how long a job that keeps failing stays quiet after an \
             alert",
        );
    }
    let run_url = match &raw.run_url {
        None => None,
        Some(u) => {
            let example = u
                .get_ref()
                .replace("{run_id}", &uuid::Uuid::nil().to_string());
            if !u.get_ref().contains("{run_id}") || reqwest::Url::parse(&example).is_err() {
                c.push(
                    format!("invalid `on_failure.run_url` for {label}"),
                    Some(u.span()),
                    "must be a URL holding `{run_id}`, e.g. \
                     `https://grafana.example.com/explore?run={run_id}`",
                );
            }
            Some(u.get_ref().clone())
        }
    };
    (c.problems.len() == before).then_some(OnFailure {
        email,
        webhook,
        repeat_after,
        run_url,
    })
}

/// The longest time between two consecutive fires over the next 60 fires (a weekday-only
/// job waits from Friday to Monday).
fn longest_gap(trigger: &Trigger, tz: chrono_tz::Tz) -> Option<Duration> {
    let mut at = trigger.next_after(chrono::Utc::now(), tz)?;
    let mut longest = chrono::TimeDelta::zero();
    for _ in 0..60 {
        let next = trigger.next_after(at, tz)?;
        longest = longest.max(next - at);
        at = next;
    }
    longest.to_std().ok()
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

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
