//! A job's run policy: `enabled`, `timeout`, `retry`, `overlap`, `catch_up`, `misfire_grace`,
//! `jitter`, `lane` and the alert keys, each from its `[[job]]` or else from `[defaults]`, checked and
//! with tickler's defaults filled in. The daemon acts on it; the job's kind never sees it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::lanes::unknown_lane;
use super::problems::Collector;
use super::{CatchUp, Overlap, alerts};
use crate::retry::RetryPolicy;
use crate::time::duration;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RetryRaw {
    attempts: Option<Spanned<i64>>,
    #[serde(default, with = "duration::option")]
    initial: Option<Duration>,
    factor: Option<Spanned<f64>>,
    #[serde(default, with = "duration::option")]
    max: Option<Duration>,
    jitter: Option<bool>,
}

/// The run policy keys, shared by `[defaults]` and each `[[job]]`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyRaw {
    enabled: Option<bool>,
    #[serde(default, with = "duration::option")]
    timeout: Option<Duration>,
    retry: Option<RetryRaw>,
    overlap: Option<Overlap>,
    catch_up: Option<CatchUp>,
    #[serde(default, with = "duration::option")]
    misfire_grace: Option<Duration>,
    #[serde(default, with = "duration::option")]
    jitter: Option<Duration>,
    on_failure: Option<alerts::OnFailureRaw>,
    #[serde(default, with = "duration::option")]
    expect_success_within: Option<Duration>,
    ping_url: Option<Spanned<String>>,
    lane: Option<Spanned<String>>,
}

pub(super) const POLICY_KEYS: &[&str] = &[
    "enabled",
    "timeout",
    "retry",
    "overlap",
    "catch_up",
    "misfire_grace",
    "jitter",
    "on_failure",
    "expect_success_within",
    "ping_url",
    "lane",
];

/// A job's run policy, checked, with its defaults filled in.
pub(super) struct RunPolicy {
    pub(super) enabled: bool,
    pub(super) timeout: Duration,
    pub(super) retry: RetryPolicy,
    pub(super) overlap: Overlap,
    pub(super) catch_up: CatchUp,
    pub(super) misfire_grace: Duration,
    pub(super) jitter: Duration,
    /// The `[lanes]` entry whose slots its runs take; `None`: `[daemon] max_concurrent`'s.
    pub(super) lane: Option<Arc<str>>,
}

impl PolicyRaw {
    /// The alert keys of the job whose keys these are; each replaces the one in `defaults`.
    pub(super) fn alert_keys<'a>(&'a self, defaults: &'a PolicyRaw) -> alerts::AlertKeys<'a> {
        alerts::AlertKeys {
            on_failure: self.on_failure.as_ref().or(defaults.on_failure.as_ref()),
            expect_success_within: self
                .expect_success_within
                .or(defaults.expect_success_within),
            ping_url: self.ping_url.as_ref().or(defaults.ping_url.as_ref()),
        }
    }

    /// Reports `[defaults] lane` when it names no lane (once, not for each job that takes it).
    pub(super) fn check_lane(&self, lanes: &BTreeMap<Arc<str>, usize>, c: &mut Collector<'_>) {
        if let Some(lane) = &self.lane
            && !lanes.contains_key(lane.get_ref().as_str())
        {
            c.push(
                format!("unknown lane `{}` in `[defaults]`", lane.get_ref()),
                Some(lane.span()),
                unknown_lane(lanes, lane.get_ref()),
            );
        }
    }
}

/// The run policy of `label` (the job at `span`) from its own keys and `defaults`; `None`
/// when a value is refused, each refusal pushed to `c`.
pub(super) fn run_policy(
    policy: &PolicyRaw,
    defaults: &PolicyRaw,
    lanes: &BTreeMap<Arc<str>, usize>,
    label: &str,
    span: Range<usize>,
    c: &mut Collector<'_>,
) -> Option<RunPolicy> {
    let lane = match policy.lane.as_ref().or(defaults.lane.as_ref()) {
        None => None,
        Some(l) => match lanes.get_key_value(l.get_ref().as_str()) {
            Some((name, _)) => Some(name.clone()),
            None if policy.lane.is_some() => {
                c.push(
                    format!("unknown lane `{}` for {label}", l.get_ref()),
                    Some(l.span()),
                    unknown_lane(lanes, l.get_ref()),
                );
                return None;
            }
            // `[defaults]`' own: reported once, by `check_lane`.
            None => return None,
        },
    };
    let retry = retry_policy(merge(&policy.retry, &defaults.retry), label, c);
    let timeout = merge(&policy.timeout, &defaults.timeout).unwrap_or(Duration::from_secs(3600));
    if timeout.is_zero() {
        c.push(
            format!("invalid `timeout` for {label}"),
            Some(span),
            "must be more than 0s",
        );
        return None;
    }
    Some(RunPolicy {
        enabled: merge(&policy.enabled, &defaults.enabled).unwrap_or(true),
        timeout,
        retry: retry?,
        overlap: merge(&policy.overlap, &defaults.overlap).unwrap_or(Overlap::Skip),
        catch_up: merge(&policy.catch_up, &defaults.catch_up).unwrap_or(CatchUp::Latest),
        misfire_grace: merge(&policy.misfire_grace, &defaults.misfire_grace)
            .unwrap_or(Duration::from_secs(3600)),
        jitter: merge(&policy.jitter, &defaults.jitter).unwrap_or(Duration::ZERO),
        lane,
    })
}

fn merge<T: Clone>(job: &Option<T>, defaults: &Option<T>) -> Option<T> {
    job.clone().or_else(|| defaults.clone())
}

fn retry_policy(raw: Option<RetryRaw>, label: &str, c: &mut Collector<'_>) -> Option<RetryPolicy> {
    let raw = raw.unwrap_or_default();
    let attempts = match &raw.attempts {
        None => 1,
        Some(a) if (1..=100).contains(a.get_ref()) => *a.get_ref() as u32,
        Some(a) => {
            c.push(
                format!("invalid `retry.attempts` for {label}"),
                Some(a.span()),
                format!(
                    "must be 1-100, counting the first attempt (found {})",
                    a.get_ref()
                ),
            );
            return None;
        }
    };
    let factor = match &raw.factor {
        None => 2.0,
        Some(f) if *f.get_ref() >= 1.0 && f.get_ref().is_finite() => *f.get_ref(),
        Some(f) => {
            c.push(
                format!("invalid `retry.factor` for {label}"),
                Some(f.span()),
                format!("must be 1.0 or more (found {})", f.get_ref()),
            );
            return None;
        }
    };
    Some(RetryPolicy {
        attempts,
        initial: raw.initial.unwrap_or(Duration::from_secs(1)),
        factor,
        max: raw.max.unwrap_or(Duration::from_secs(600)),
        jitter: raw.jitter.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::parse;
    use crate::config::tests::errors;

    #[test]
    fn timeout_and_retry_factor_are_checked() {
        let job = "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\n";
        assert_eq!(
            errors(&format!("{job}timeout = \"0s\"\n")),
            "invalid `timeout` for job `x` (config.toml line 1, column 1): must be more than 0s"
        );
        assert_eq!(
            errors(&format!("{job}retry = {{ factor = 0.5 }}\n")),
            "invalid `retry.factor` for job `x` (config.toml line 5, column 20): must be 1.0 or \
             more (found 0.5)"
        );
    }

    #[test]
    fn alert_defaults_apply_per_job() {
        let config = parse(
            Path::new("c.toml"),
            r#"
[defaults]
on_failure = { webhook = ["https://hooks.test/T/B/s"], repeat_after = "1h" }
ping_url = "https://hc-ping.test/key/{job}"
[[job]]
name = "a"
kind = "noop"
every = "10m"
expect_success_within = "1h"
[[job]]
name = "b"
kind = "noop"
every = "10m"
on_failure = {}
"#,
        )
        .unwrap();
        let a = &config.job("a").unwrap().alerts;
        let on_failure = a.on_failure.as_ref().unwrap();
        assert_eq!(on_failure.webhook, ["https://hooks.test/T/B/s"]);
        assert_eq!(on_failure.repeat_after, Duration::from_secs(3600));
        assert_eq!(a.ping_url.as_deref(), Some("https://hc-ping.test/key/a"));
        assert_eq!(a.expect_success_within, Some(Duration::from_secs(3600)));
        let b = &config.job("b").unwrap().alerts;
        assert!(!b.on_failure.as_ref().unwrap().has_recipients());
        assert_eq!(b.ping_url.as_deref(), Some("https://hc-ping.test/key/b"));
        // Webhook and ping URLs are secrets: Debug shows neither.
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("hooks.test") && !shown.contains("hc-ping"),
            "{shown}"
        );
    }

    #[test]
    fn defaults_apply_and_jobs_override() {
        let config = parse(
            Path::new("c.toml"),
            r#"
[daemon]
timezone = "Africa/Johannesburg"
[defaults]
timeout = "5m"
retry = { attempts = 3, initial = "1s", factor = 2, max = "10s", jitter = true }
overlap = "queue"
[[job]]
name = "a"
kind = "noop"
every = "10m"
[[job]]
name = "b"
kind = "noop"
schedule = "0 7 * * *"
timezone = "Europe/Berlin"
timeout = "30s"
overlap = "allow"
catch_up = "all"
"#,
        )
        .unwrap();
        let a = config.job("a").unwrap();
        assert_eq!(a.timezone, chrono_tz::Africa::Johannesburg);
        assert_eq!(a.timeout, Duration::from_secs(300));
        assert_eq!(a.overlap, Overlap::Queue);
        assert_eq!(a.catch_up, CatchUp::Latest);
        assert_eq!(a.retry.attempts, 3);
        assert_eq!(a.retry.max, Duration::from_secs(10));
        let b = config.job("b").unwrap();
        assert_eq!(b.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(b.timeout, Duration::from_secs(30));
        assert_eq!(b.overlap, Overlap::Allow);
        assert_eq!(b.catch_up, CatchUp::All);
    }

    #[test]
    fn retry_values_are_checked() {
        assert_eq!(
            errors(
                "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\nretry = { attempts = 0 }\n"
            ),
            "invalid `retry.attempts` for job `x` (config.toml line 5, column 22): must be \
             1-100, counting the first attempt (found 0)"
        );
    }
}
