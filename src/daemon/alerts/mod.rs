//! Alerts: telling operators that something is wrong before a customer does.
//!
//! - `on_failure`: a run that ends `failed`, `timed_out` or `abandoned` sends an email and/or a
//!   webhook POST with the error and the run id. While the job keeps failing, at most one
//!   reminder per `repeat_after`; when it succeeds again, one "recovered" message.
//! - `expect_success_within`: the daemon checks every minute when each job last succeeded and
//!   alerts (at most once per `repeat_after`) when that is too long ago.
//! - `ping_url`: `/start` when a run starts, the URL itself on success, `/fail` (with the error
//!   as the body) otherwise, as healthchecks.io and its clones expect.
//!
//! Every alert has a dedup key derived from the ledger (the failure streak's first run, the
//! reminder window), claimed in `notification_log` before it is sent. So the decision is the
//! same after a restart and on every replica, and each alert goes out once (invariant 4).

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

pub mod state;

use super::shared::Shared;
use crate::config::JobSpec;
use crate::config::alerts::OnFailure;
use crate::notify::{Rendered, SendError};
use crate::secret::host_only;
use crate::store::billing::{NotificationAttempt, NotificationClaim, NotificationEnd};
use crate::store::{Status, Store};
use crate::time::duration::short;

/// How often the dead-man deadlines are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// One send (an email, a webhook POST, a ping) gives up after this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of a run's error goes into a ping body.
const PING_BODY: usize = 10_000;

/// How a run ended, as alerts need it.
pub struct Ended<'a> {
    pub id: Uuid,
    pub status: Status,
    pub slot: DateTime<Utc>,
    pub completed: DateTime<Utc>,
    pub error: Option<&'a str>,
    pub attempts: u32,
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Pings `ping_url/start` in the background; the end ping waits for it, so they arrive in order.
pub fn ping_start(spec: &JobSpec, run: Uuid) -> Option<tokio::task::JoinHandle<()>> {
    let url = spec.alerts.ping_url.clone()?;
    let job = spec.name.clone();
    Some(tokio::spawn(async move {
        ping(&job, &url, "/start", run, None).await;
    }))
}

/// After a run's end is recorded: the end ping, and a failure or recovery alert, at once.
pub async fn run_ended(
    shared: &Shared,
    spec: &JobSpec,
    run: Ended<'_>,
    started: Option<tokio::task::JoinHandle<()>>,
) {
    let end_ping = async {
        let Some(url) = &spec.alerts.ping_url else {
            return;
        };
        if let Some(h) = started {
            let _ = h.await;
        }
        let (suffix, body) = if run.status.is_success() {
            ("", None)
        } else {
            let error = run.error.unwrap_or(run.status.as_str());
            ("/fail", Some(format!("{}: {error}", run.status.as_str())))
        };
        ping(&spec.name, url, suffix, run.id, body).await;
    };
    let alert = async {
        let Some(on_failure) = spec.alerts.recipients() else {
            return;
        };
        if run.status.is_failure() {
            failure(shared, spec, on_failure, &run).await;
        } else if run.status.is_success() {
            recovery(shared, spec, on_failure, &run).await;
        }
    };
    tokio::join!(end_ping, alert);
}

/// How long an alert waits for an unreachable database (to read the job's last runs, or to
/// claim the alert): an outage is when failures happen, and their alerts matter most then.
const WAIT_FOR_DATABASE: Duration = Duration::from_secs(15 * 60);

/// Reads from (or writes to) the store for an alert. While the database is unreachable or busy
/// it tries again, 1 s doubling to 30 s apart, for up to [`WAIT_FOR_DATABASE`]; a shutdown ends
/// the wait.
async fn patiently<T, F, Fut>(shared: &Shared, read: F) -> crate::store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::Result<T>>,
{
    crate::retry::patiently(&shared.stopping, WAIT_FOR_DATABASE, read).await
}

/// A run found `abandoned` (its daemon stopped mid-run): alerted like a failure.
pub async fn abandoned(
    shared: &Shared,
    spec: &JobSpec,
    orphan: &crate::store::Orphan,
    now: DateTime<Utc>,
) {
    let (Some(on_failure), Ok(id)) = (spec.alerts.recipients(), Uuid::parse_str(&orphan.id)) else {
        return;
    };
    let run = Ended {
        id,
        status: Status::Abandoned,
        slot: orphan.scheduled_for,
        completed: now,
        error: Some("the daemon running it stopped without finishing it"),
        attempts: 1,
    };
    failure(shared, spec, on_failure, &run).await;
}

/// The id of the streak's last success, or `never`.
fn last_success_id(streak: &crate::store::health::Streak) -> String {
    streak
        .last_success
        .as_ref()
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| "never".into())
}

fn run_link(on_failure: &OnFailure, id: Uuid) -> String {
    match &on_failure.run_url {
        Some(u) => u.replace("{run_id}", &id.to_string()),
        None => format!("`tickler history --run {id}`"),
    }
}

/// The streak `run` ends or continues; `None` (logged) when the ledger cannot be read.
async fn streak_of(
    shared: &Shared,
    spec: &JobSpec,
    run: &Ended<'_>,
) -> Option<crate::store::health::Streak> {
    let read = patiently(shared, || {
        shared.store.streak(&spec.name, run.id, run.completed)
    });
    match read.await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(job = %spec.name, run_id = %run.id, error = %e, "alert not sent: cannot read the job's last runs");
            None
        }
    }
}

async fn failure(shared: &Shared, spec: &JobSpec, on_failure: &OnFailure, run: &Ended<'_>) {
    let Some(streak) = streak_of(shared, spec, run).await else {
        return;
    };
    // The key names the streak by the last success before it (the same on every replica and
    // after a restart, even while an earlier failure's end is still being written); the
    // reminder window is counted from the streak's first failure.
    let anchor = last_success_id(&streak);
    let since = streak.first_failure.unwrap_or(run.completed);
    let failures = streak.failures + 1;
    let repeat = TimeDelta::from_std(on_failure.repeat_after).unwrap_or(TimeDelta::MAX);
    let window = ((run.completed - since).num_seconds() / repeat.num_seconds().max(1)).max(0);
    let what = match run.status {
        Status::TimedOut => "timed out",
        Status::Abandoned => "was abandoned",
        _ => "failed",
    };
    let subject = if window == 0 {
        format!("[tickler] {} {what}", spec.name)
    } else {
        format!(
            "[tickler] {} is still failing ({failures} failed runs since {})",
            spec.name,
            at(since)
        )
    };
    let error = run.error.unwrap_or("(no error message)");
    let link = run_link(on_failure, run.id);
    let last_success = streak
        .last_success
        .as_ref()
        .map(|(_, t)| at(*t))
        .unwrap_or_else(|| "never".into());
    let text = format!(
        "Job `{job}` {what} (status {status}, {attempts} attempt(s)).\n\n\
         Error: {error}\n\n\
         Run:           {link}\n\
         Scheduled for: {slot}\n\
         Ended:         {ended}\n\
         Failing since: {since} ({failures} failed run(s); last success: {last_success})\n\n\
         While it keeps failing you get at most one reminder every {repeat}, and one message \
         when it succeeds again.\n",
        job = spec.name,
        status = run.status.as_str(),
        attempts = run.attempts,
        slot = at(run.slot),
        ended = at(run.completed),
        since = at(since),
        repeat = short(on_failure.repeat_after),
    );
    let payload = json!({
        "event": "failure",
        "job": &*spec.name,
        "run_id": run.id.to_string(),
        "status": run.status.as_str(),
        "error": run.error,
        "run_url": on_failure.run_url.as_ref().map(|_| link.clone()),
        "failing_since": since,
        "failures": failures,
    });
    let alert = Alert {
        key: format!("alert:{}:failing:after:{anchor}:{window}", spec.name),
        short: format!("{subject}: {error} (run {link})"),
        subject,
        text,
        payload,
    };
    send(shared, spec, on_failure, alert, shared.clock.now()).await;
}

async fn recovery(shared: &Shared, spec: &JobSpec, on_failure: &OnFailure, run: &Ended<'_>) {
    let failed = patiently(shared, || {
        shared
            .store
            .last_outcome_failed(&spec.name, run.id, run.completed)
    });
    match failed.await {
        Ok(false) => return,
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(job = %spec.name, run_id = %run.id, error = %e, "recovery message not sent: cannot read the job's last runs");
            return;
        }
    }
    let Some(streak) = streak_of(shared, spec, run).await else {
        return;
    };
    let Some(since) = streak.first_failure else {
        return;
    };
    let anchor = last_success_id(&streak);
    let link = run_link(on_failure, run.id);
    let subject = format!("[tickler] {} recovered", spec.name);
    let text = format!(
        "Job `{job}` succeeded again at {ended} after {n} failed run(s) since {since}.\n\n\
         Run: {link}\n",
        job = spec.name,
        ended = at(run.completed),
        n = streak.failures,
        since = at(since),
    );
    let payload = json!({
        "event": "recovered",
        "job": &*spec.name,
        "run_id": run.id.to_string(),
        "status": run.status.as_str(),
        "failing_since": since,
        "failures": streak.failures,
    });
    let alert = Alert {
        key: format!("alert:{}:recovered:after:{anchor}", spec.name),
        short: format!(
            "{subject} after {} failed run(s) (run {link})",
            streak.failures
        ),
        subject,
        text,
        payload,
    };
    send(shared, spec, on_failure, alert, shared.clock.now()).await;
}

/// Checks every job's `expect_success_within` on `tracker`, unless a check is still going on
/// (then `false`: try again at the next pass).
pub fn check_deadlines(
    shared: std::sync::Arc<Shared>,
    tracker: &tokio_util::task::TaskTracker,
    now: DateTime<Utc>,
) -> bool {
    // No job with a deadline (as in most configs): nothing to read, and an idle daemon stays
    // asleep.
    if !shared
        .jobs_now()
        .iter()
        .any(|j| j.enabled && j.alerts.expect_success_within.is_some())
    {
        return true;
    }
    if shared.alerts.checking.swap(true, Ordering::AcqRel) {
        return false;
    }
    tracker.spawn(async move {
        let jobs = shared.jobs_now();
        // A paused job is expected not to succeed: no dead-man alert until it is resumed.
        let paused = shared.read_paused().await;
        for spec in jobs
            .iter()
            .filter(|j| j.enabled && !paused.contains_key(&*j.name))
        {
            if shared.stopping.is_cancelled() {
                break;
            }
            if let Some(within) = spec.alerts.expect_success_within {
                deadline(&shared, spec, within, now).await;
            }
        }
        shared.alerts.checking.store(false, Ordering::Release);
    });
    true
}

async fn deadline(shared: &Shared, spec: &JobSpec, within: Duration, now: DateTime<Utc>) {
    // Not waited for like a failure alert's reads: the check runs again in a minute, and an
    // outage is logged by the ledger already.
    let read = async {
        let streak = shared.store.streak(&spec.name, Uuid::nil(), now).await?;
        let first = match streak.last_success {
            Some(_) => None,
            None => shared.store.first_ended(&spec.name).await?,
        };
        Ok::<_, crate::store::StoreError>((streak, first))
    };
    let (streak, first) = match read.await {
        Ok(r) => r,
        Err(e) if e.is_transient() => return,
        Err(e) => {
            tracing::warn!(job = %spec.name, error = %e, "cannot check `expect_success_within`");
            return;
        }
    };
    let known = shared.alerts.known_since(&spec.name).unwrap_or(now);
    let last_success = streak.last_success.as_ref().map(|(_, t)| *t);
    let reference = last_success.unwrap_or_else(|| first.map_or(known, |f| f.min(known)));
    let within_td = TimeDelta::from_std(within).unwrap_or(TimeDelta::MAX);
    let Some(due) = super::deadman::success_due(last_success, first, Some(known), within) else {
        return;
    };
    if now <= due {
        return;
    }
    // A job that runs and fails is reported by its failure alerts (with their reminders).
    let failing_now = streak.last_failure.is_some_and(|t| now - t <= within_td)
        && spec.alerts.recipients().is_some();
    if failing_now {
        return;
    }
    let repeat = spec.alerts.repeat_after();
    let every = (repeat.as_secs() as i64).max(1);
    let window = if streak.last_success.is_none() && first.is_none() {
        // A job that never ended a run is overdue from when this process first knew it: its
        // windows are counted from the epoch instead, so a restart or another replica names
        // the same window and does not send it again.
        now.timestamp() / every
    } else {
        (now - due).num_seconds() / every
    };
    let last = streak
        .last_success
        .as_ref()
        .map(|(id, _)| id.as_str())
        .unwrap_or("never");
    let key = format!("alert:{}:overdue:{last}:{window}", spec.name);
    let since = match &streak.last_success {
        Some((_, t)) => format!("since {}", at(*t)),
        None => format!("since tickler started watching it ({})", at(reference)),
    };
    let subject = format!(
        "[tickler] {} has not succeeded in {}",
        spec.name,
        short(within)
    );
    let logged = shared
        .alerts
        .logged
        .lock()
        .expect("alerts lock")
        .insert(spec.name.to_string(), key.clone());
    if logged.as_ref() != Some(&key) {
        tracing::error!(
            job = %spec.name, last_success = %last, deadline = %due,
            "the job has not succeeded {since}; `expect_success_within` is {}", short(within)
        );
    }
    let Some(on_failure) = spec.alerts.recipients() else {
        return;
    };
    let text = format!(
        "Job `{job}` has not succeeded {since}; it is expected to succeed at least every \
         {within} (`expect_success_within`), so it was due by {due}.\n\n\
         Its last runs: `tickler history --job {job}`.\n\
         Until it succeeds you get at most one reminder every {repeat}.\n",
        job = spec.name,
        within = short(within),
        due = at(due),
        repeat = short(repeat),
    );
    let payload = json!({
        "event": "overdue",
        "job": &*spec.name,
        "last_success": streak.last_success.as_ref().map(|(_, t)| t),
        "last_success_run_id": streak.last_success.as_ref().map(|(id, _)| id),
        "due": due,
    });
    let alert = Alert {
        key,
        short: format!("{subject} ({since})"),
        subject,
        text,
        payload,
    };
    send(shared, spec, on_failure, alert, now).await;
}

struct Alert {
    /// The base of each recipient's dedup key.
    key: String,
    subject: String,
    /// The email body.
    text: String,
    /// The webhook's `text` (one line, for chat).
    short: String,
    /// Extra webhook fields.
    payload: Value,
}

/// Claims the alert for each recipient in `notification_log`, sends the claimed ones, and
/// records how each send ended. Each send's attempt is committed before it is handed over, so
/// a crash mid-send leaves it `unknown` (never resent), and a crash before it leaves it to be
/// released and claimed again (invariant 4). A send that failed for sure (refused,
/// unreachable, an error answer) is recorded `failed` and tried again after each of
/// [`RETRY_AFTER`], in the background, claiming it again first; a send that may have gone out
/// (a timeout) is not repeated. A send still failed after that is claimed again by the next
/// alert of the same window; a sent one is never sent again.
async fn send(shared: &Shared, spec: &JobSpec, to: &OnFailure, alert: Alert, now: DateTime<Utc>) {
    let mut targets: Vec<(String, Target)> = vec![];
    for addr in &to.email {
        targets.push((
            format!("{}:email:{addr}", alert.key),
            Target::Email(addr.clone()),
        ));
    }
    for url in &to.webhook {
        // Named by a hash of the URL: stable when the list is reordered, and not the secret.
        let key = format!("{}:webhook:{:016x}", alert.key, fnv1a(url));
        targets.push((key, Target::Webhook(url.clone())));
    }
    let delivery = Delivery {
        store: shared.store.clone(),
        job: spec.name.clone(),
        owner: shared.instance.clone(),
        notifier: spec.notifier.clone(),
        alert,
        clock: shared.clock.clone(),
        stopping: shared.stopping.clone(),
    };
    let claims = delivery.claims(&targets);
    let claimant = delivery.claimant();
    let claim = patiently(shared, || {
        shared.store.claim_notifications(&claimant, &claims, now)
    });
    let claimed = match claim.await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(job = %spec.name, error = %e, "alert not sent: cannot claim it in notification_log");
            return;
        }
    };
    targets.retain(|(k, _)| claimed.contains(k));
    let failed = delivery.attempt(targets, false).await;
    if failed.is_empty() {
        return;
    }
    shared.alerts.retries.spawn(async move {
        let mut failed = failed;
        for (i, delay) in RETRY_AFTER.iter().enumerate() {
            tokio::select! {
                _ = tokio::time::sleep(*delay) => {}
                _ = delivery.stopping.cancelled() => {}
            }
            let last = i + 1 == RETRY_AFTER.len() || delivery.stopping.is_cancelled();
            // Claimed again: while it waited it was `failed`, and another process (the next
            // failure of the window, another replica) may have taken it.
            let claims = delivery.claims(&failed);
            let now = delivery.clock.now();
            let claimant = delivery.claimant();
            let again =
                crate::retry::until_done("claiming an alert again", &delivery.stopping, || {
                    delivery.store.claim_notifications(&claimant, &claims, now)
                })
                .await
                .unwrap_or_default();
            failed.retain(|(k, _)| again.contains(k));
            failed = delivery.attempt(failed, last).await;
            if failed.is_empty() {
                break;
            }
        }
    });
}

/// How long a send that failed for sure waits before each new try.
const RETRY_AFTER: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];

/// One alert's sends, owned so that their retries can outlive the run that caused them.
struct Delivery {
    store: Store,
    job: std::sync::Arc<str>,
    /// This daemon: the owner of the alert's claims.
    owner: std::sync::Arc<str>,
    notifier: std::sync::Arc<crate::notify::Notifier>,
    alert: Alert,
    /// What `sent_at` is read from, when a retry gets through.
    clock: std::sync::Arc<dyn super::Clock>,
    /// The daemon is stopping: the retries make their last try.
    stopping: tokio_util::sync::CancellationToken,
}

impl Delivery {
    fn claimant(&self) -> crate::notify::Claimant<'_> {
        crate::notify::Claimant {
            job: &self.job,
            owner: &self.owner,
            run: None,
        }
    }

    /// The rows that claim the alert for `targets` in `notification_log`.
    fn claims(&self, targets: &[(String, Target)]) -> Vec<NotificationClaim> {
        targets
            .iter()
            .map(|(key, target)| NotificationClaim {
                id: Uuid::now_v7().to_string(),
                key: key.clone(),
                channel: target.channel(),
                recipient: target.shown(),
                template: "alert".into(),
                invoice: None,
                status: "sending",
                error: None,
                until: None,
            })
            .collect()
    }

    /// Writes what is about to be sent or how a send ended; waits out an outage (a row left
    /// `sending` would be `unknown` once this daemon stops). `None`: given up at shutdown.
    async fn journal(
        &self,
        attempt: Option<&str>,
        end: Option<NotificationEnd>,
    ) -> Option<std::collections::HashSet<String>> {
        let attempts: Vec<NotificationAttempt> = attempt
            .map(|key| NotificationAttempt {
                key: key.to_string(),
                invoice: None,
            })
            .into_iter()
            .collect();
        let ends: Vec<NotificationEnd> = end.into_iter().collect();
        let now = self.clock.now();
        crate::retry::until_done("recording an alert send", &self.stopping, || {
            self.store
                .journal_notifications(&self.owner, &attempts, &ends, now)
        })
        .await
    }

    /// Sends to each claimed target once and records each send as it ends; returns the ones
    /// that failed for sure and may be tried again (none when `last`).
    async fn attempt(&self, targets: Vec<(String, Target)>, last: bool) -> Vec<(String, Target)> {
        let alert = &self.alert;
        let mut again = vec![];
        for (key, target) in targets {
            // Committed before the send; not ours any more (released, taken over): not sent.
            let mine = self.journal(Some(&key), None).await;
            if !mine.is_some_and(|m| m.contains(&key)) {
                continue;
            }
            let result = self.one(&key, &target).await;
            let (status, provider_id, error) = match result {
                Ok(id) => {
                    tracing::info!(job = %self.job, to = %target.shown(), "alert sent: {}", alert.subject);
                    ("sent", Some(id), None)
                }
                Err(e) if !e.ambiguous && !last => {
                    tracing::warn!(job = %self.job, to = %target.shown(), error = %e.message, "alert not sent yet, will try again: {}", alert.subject);
                    again.push((key.clone(), target));
                    ("failed", None, Some(e.message))
                }
                Err(e) => {
                    tracing::error!(job = %self.job, to = %target.shown(), error = %e.message, "alert not sent: {}", alert.subject);
                    let status = if e.ambiguous { "unknown" } else { "failed" };
                    (status, None, Some(e.message))
                }
            };
            self.journal(
                None,
                Some(NotificationEnd {
                    key,
                    status,
                    provider_id,
                    error,
                }),
            )
            .await;
        }
        again
    }

    async fn one(&self, key: &str, target: &Target) -> Result<String, SendError> {
        let alert = &self.alert;
        match target {
            Target::Email(addr) => {
                let rendered = Rendered {
                    subject: alert.subject.clone(),
                    text: alert.text.clone(),
                    html: None,
                };
                // Bounded by the channel: its connection and its send each within `timeout`.
                self.notifier.send_email(addr, key, &rendered).await
            }
            Target::Webhook(url) => {
                let mut body = alert.payload.clone();
                body["text"] = json!(alert.short);
                body["subject"] = json!(alert.subject);
                body["key"] = json!(key);
                let shown = host_only(url);
                crate::notify::webhook::post_json(url, &shown, SEND_TIMEOUT, None, &body).await
            }
        }
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across builds and Rust versions.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

enum Target {
    Email(String),
    Webhook(String),
}

impl Target {
    fn channel(&self) -> &'static str {
        match self {
            Target::Email(_) => "email",
            Target::Webhook(_) => "webhook",
        }
    }
    /// What the log and `notification_log` show: a webhook URL holds a token, so its host only.
    fn shown(&self) -> String {
        match self {
            Target::Email(a) => a.clone(),
            Target::Webhook(u) => host_only(u),
        }
    }
}

/// One monitor ping: `url` + `suffix`, with the run id as `rid` (healthchecks.io pairs a start
/// with its end by it). Tried three times; a ping never fails a run.
async fn ping(job: &str, url: &str, suffix: &str, run: Uuid, body: Option<String>) {
    let mut target = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(_) => return,
    };
    let path = format!("{}{suffix}", target.path().trim_end_matches('/'));
    target.set_path(if path.is_empty() { "/" } else { &path });
    target
        .query_pairs_mut()
        .append_pair("rid", &run.to_string());
    let body = body
        .map(|b| crate::net::tail(&b, PING_BODY))
        .unwrap_or_default();
    let shown = host_only(url);
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        let sent = crate::net::http_client()
            .post(target.clone())
            .timeout(SEND_TIMEOUT)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().is_client_error() => {
                last = format!("HTTP {}", r.status().as_u16());
                break;
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = e.without_url().to_string(),
        }
    }
    tracing::warn!(job = %job, run_id = %run, ping = %format!("{shown}{suffix}"), error = %last, "monitor ping failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_url_is_shown_by_its_host_only() {
        assert_eq!(
            host_only("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            Target::Webhook("http://127.0.0.1:9/hook?token=abc".into()).shown(),
            "http://127.0.0.1/***"
        );
        assert_eq!(
            Target::Email("ops@acme.test".into()).shown(),
            "ops@acme.test"
        );
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(short(Duration::from_secs(26 * 3600)), "26h");
        assert_eq!(short(Duration::from_secs(30 * 60)), "30m");
        assert_eq!(short(Duration::from_secs(90)), "90s");
    }
}
