//! Notifications: the channels (email, SMS, WhatsApp, webhook), the templates, and the one
//! pipeline every job sends through. A message carries a dedup key; it is claimed in
//! `notification_log` before it is sent and marked `sent` or `failed` after, so a retried or
//! re-run job never sends it twice, and a failed one goes out with the next run (invariant 4).
//! A message whose provider call was cut short (a crash mid-send, a timeout after the request
//! left) stays `sending` or becomes `unknown`: tickler then does not know whether the provider
//! accepted it, and sends it at most once rather than twice. Claimed messages a cancelled run
//! never handed to a provider go back to `failed`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use crate::store::billing::Claimant;
use crate::store::billing::{NotificationAttempt, NotificationClaim, NotificationEnd};
use crate::store::{Store, StoreError};

pub mod blocks;
pub mod email;
pub mod ratelimit;
mod smtp;
pub mod sns;
pub mod templates;
pub mod twilio;
pub mod unsubscribe;
pub mod webhook;
pub mod window;

pub use templates::{Rendered, Templates};
pub use window::SendWindow;

/// A message's send windows never open together (within the search): e.g. disjoint hours.
#[derive(Debug, Clone, thiserror::Error)]
#[error("its send windows ({windows}) never open together in {zone}; widen one of them")]
pub struct NeverOpen {
    windows: String,
    zone: Tz,
}

/// A way to reach a person.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Sms,
    Whatsapp,
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::Email,
        ChannelKind::Sms,
        ChannelKind::Whatsapp,
        ChannelKind::Webhook,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Sms => "sms",
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Webhook => "webhook",
        }
    }
}

/// Why a job cannot send what it means to: a channel it names is not configured, or a
/// template it needs is missing or does not render.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "the channel `{name}` is not configured; add a `[channels.{name}]` section or remove it \
         from `channels`",
        name = .0.as_str()
    )]
    NotConfigured(ChannelKind),
    #[error(transparent)]
    Template(#[from] templates::TemplateError),
}

/// `[channels]` and `[templates]` of `config.toml`, as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChannelsRaw {
    pub email: Option<email::EmailConfig>,
    pub sms: Option<SmsConfig>,
    pub whatsapp: Option<twilio::TwilioConfig>,
    pub webhook: Option<webhook::WebhookConfig>,
}

impl ChannelsRaw {
    /// The `send_window` of each channel that has one.
    fn windows(&self) -> Vec<(ChannelKind, &window::WindowRaw)> {
        let sms = match &self.sms {
            Some(SmsConfig::Twilio(c)) => c.send_window.as_ref(),
            Some(SmsConfig::Sns(c)) => c.send_window.as_ref(),
            None => None,
        };
        [
            (
                ChannelKind::Email,
                self.email.as_ref().and_then(|c| c.send_window.as_ref()),
            ),
            (ChannelKind::Sms, sms),
            (
                ChannelKind::Whatsapp,
                self.whatsapp.as_ref().and_then(|c| c.send_window.as_ref()),
            ),
            (
                ChannelKind::Webhook,
                self.webhook.as_ref().and_then(|c| c.send_window.as_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(k, w)| Some((k, w?)))
        .collect()
    }
}

/// `[channels.sms]`: Twilio (the default, `provider = "twilio"`) or Amazon SNS
/// (`provider = "aws-sns"`), each with its own keys.
#[derive(Debug)]
pub enum SmsConfig {
    Twilio(twilio::TwilioConfig),
    Sns(sns::SnsConfig),
}

impl<'de> Deserialize<'de> for SmsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let provider = match table.remove("provider") {
            None => "twilio".to_string(),
            Some(toml::Value::String(p)) => p,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`[channels.sms]`: `provider` must be \"twilio\" or \"aws-sns\" (found {other})"
                )));
            }
        };
        let keys = |e: toml::de::Error| {
            D::Error::custom(format!(
                "`[channels.sms]` (provider \"{provider}\"): {}",
                e.message().trim()
            ))
        };
        match provider.as_str() {
            "twilio" => toml::Value::Table(table)
                .try_into()
                .map(SmsConfig::Twilio)
                .map_err(keys),
            "aws-sns" => toml::Value::Table(table)
                .try_into()
                .map(SmsConfig::Sns)
                .map_err(keys),
            other => Err(D::Error::custom(format!(
                "`[channels.sms]`: `provider` must be \"twilio\" or \"aws-sns\" (found \"{other}\")"
            ))),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TemplatesRaw {
    /// The directory of `*.j2` files, relative to the config file.
    pub dir: Option<std::path::PathBuf>,
    /// Values every template sees as `vars`, e.g. `company`.
    #[serde(default)]
    pub vars: Map<String, Value>,
}

/// Why one send failed.
#[derive(Debug, Clone)]
pub struct SendError {
    pub message: String,
    /// The request reached the provider and its answer was lost (a timeout): the message may
    /// have gone out, so it is recorded `unknown` and not sent again.
    pub ambiguous: bool,
}

impl SendError {
    pub fn new(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            ambiguous: false,
        }
    }
    pub fn ambiguous(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            ambiguous: true,
        }
    }
}

/// How one send ended.
enum Sent {
    Ok(String),
    Failed(String),
    Unknown(String),
}

/// A configured channel: where messages go and how fast.
pub enum Channel {
    Email(email::Email),
    Twilio(twilio::Twilio),
    Sns(sns::Sns),
    Webhook(webhook::Webhook),
}

impl Channel {
    async fn send(&self, to: &str, key: &str, message: &Rendered) -> Result<String, SendError> {
        match self {
            Channel::Email(c) => c.send(to, message, true).await,
            Channel::Twilio(c) => c.send(to, message).await,
            Channel::Sns(c) => c.send(to, message).await,
            Channel::Webhook(c) => c.send(key, message).await,
        }
    }
}

struct Lane {
    channel: Channel,
    limiter: ratelimit::RateLimiter,
    concurrency: usize,
    /// The channel's `send_window`.
    window: Option<Arc<SendWindow>>,
}

/// The channels and templates of one config; rebuilt on reload.
pub struct Notifier {
    pub templates: Templates,
    lanes: HashMap<ChannelKind, Lane>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.lanes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A send fails this many times in a row on one channel, and the rest of the run's messages
/// for that channel are left for the next run instead of waiting on a provider that is down.
pub const BREAKER: usize = 20;

/// One message a job wants to send.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique in `notification_log`; the same message always has the same key.
    pub key: String,
    pub channel: ChannelKind,
    /// `None`: the person has no address on this channel (recorded `skipped`).
    pub recipient: Option<String>,
    pub template: String,
    pub invoice_id: Option<String>,
    pub context: Value,
    /// The recipient's zone, in which send windows are read (`customers.timezone`); the
    /// sender's zone when `None` (see [`Message::within`]).
    pub zone: Option<Tz>,
    /// The sending job's or campaign's `send_window`, besides the channel's.
    pub window: Option<Arc<SendWindow>>,
}

impl Message {
    /// Sets the sender's zone where the recipient has none, and the sender's window.
    pub fn within(&mut self, zone: Tz, window: Option<&Arc<SendWindow>>) {
        self.zone.get_or_insert(zone);
        if self.window.is_none() {
            self.window = window.cloned();
        }
    }

    /// Its row in `notification_log`: `sending`, or `skipped` without an address.
    pub fn claim(&self) -> NotificationClaim {
        NotificationClaim {
            id: uuid::Uuid::now_v7().to_string(),
            key: self.key.clone(),
            channel: self.channel.as_str(),
            recipient: self.recipient.clone().unwrap_or_default(),
            template: self.template.clone(),
            invoice: self.invoice_id.clone(),
            status: if self.recipient.is_some() {
                "sending"
            } else {
                "skipped"
            },
            error: self.recipient.is_none().then(|| no_address(self.channel)),
            until: None,
        }
    }

    /// Its attempt, as the journal records it before the provider sees it: its key, and the
    /// invoice it is about (which must still be open then).
    pub fn attempt(&self) -> NotificationAttempt {
        NotificationAttempt {
            key: self.key.clone(),
            invoice: self.invoice_id.clone(),
        }
    }

    /// Its row in `notification_log` while it waits for its window: `deferred` until `at`.
    fn deferred(&self, at: DateTime<Utc>) -> NotificationClaim {
        NotificationClaim {
            status: "deferred",
            error: Some(format!(
                "outside its send window; goes out at {}",
                at.to_rfc3339()
            )),
            until: Some(crate::store::ts(at)),
            ..self.claim()
        }
    }

    /// Its row in `notification_log` when its address is blocked: `suppressed`, final.
    fn suppressed(&self, why: &str) -> NotificationClaim {
        NotificationClaim {
            status: "suppressed",
            error: Some(why.to_string()),
            ..self.claim()
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone)]
pub enum Fate {
    Sent,
    /// The send or its rendering failed; the next run tries again.
    Failed(String),
    /// No address on this channel; recorded and not tried again.
    Skipped(String),
    /// The address is in `contact_blocks` (the block's reason and source); recorded
    /// `suppressed`, never sent, not tried again.
    Suppressed(String),
    /// Outside its send window: recorded `deferred`, sent by a `deliver_message` task at
    /// this instant (or by the next run after it).
    Deferred(DateTime<Utc>),
    /// Sent, skipped, suppressed, deferred or being sent by an earlier run: nothing to do.
    Done,
    /// `--dry-run`: what would be sent.
    Planned(Box<Rendered>),
}

impl Notifier {
    /// Builds the channels and loads the templates. `config_dir` anchors relative paths of
    /// `[templates]`; `state_dir` anchors the `file` email transport's directory.
    pub fn build(
        channels: ChannelsRaw,
        templates: TemplatesRaw,
        config_dir: &Path,
        state_dir: &Path,
    ) -> Result<Notifier, Vec<(String, String)>> {
        let mut problems = vec![];
        let explicit = templates.dir.is_some();
        let dir = templates
            .dir
            .map(|d| config_dir.join(d))
            .unwrap_or_else(|| config_dir.join("templates"));
        if explicit && !dir.is_dir() {
            problems.push((
                "invalid `[templates]` section".to_string(),
                format!(
                    "the templates directory `{}` does not exist; create it or fix `dir`",
                    dir.display()
                ),
            ));
        }
        let loaded = Templates::load(Some(&dir), &templates.vars);
        let mut lanes = HashMap::new();
        let mut windows = HashMap::new();
        for (kind, raw) in channels.windows() {
            match SendWindow::build(raw, |p| std::fs::read_to_string(config_dir.join(p))) {
                Ok(w) => {
                    windows.insert(kind, Arc::new(w));
                }
                Err(e) => problems.push((
                    format!("invalid `send_window` in `[channels.{}]`", kind.as_str()),
                    e.to_string(),
                )),
            }
        }
        if let Some(c) = channels.email {
            match email::Email::build(c, state_dir) {
                Ok((e, rate, concurrency)) => {
                    lanes.insert(
                        ChannelKind::Email,
                        Lane::new(Channel::Email(e), rate, concurrency),
                    );
                }
                Err(e) => problems.push(("invalid `[channels.email]`".to_string(), e.to_string())),
            }
        }
        let sms_twilio = match channels.sms {
            Some(SmsConfig::Sns(c)) => {
                match sns::Sns::build(c) {
                    Ok((t, rate, concurrency)) => {
                        lanes.insert(
                            ChannelKind::Sms,
                            Lane::new(Channel::Sns(t), rate, concurrency),
                        );
                    }
                    Err(e) => {
                        problems.push(("invalid `[channels.sms]`".to_string(), e.to_string()))
                    }
                }
                None
            }
            Some(SmsConfig::Twilio(c)) => Some(c),
            None => None,
        };
        for (kind, raw) in [
            (ChannelKind::Sms, sms_twilio),
            (ChannelKind::Whatsapp, channels.whatsapp),
        ] {
            if let Some(c) = raw {
                match twilio::Twilio::build(c, kind) {
                    Ok((t, rate, concurrency)) => {
                        lanes.insert(kind, Lane::new(Channel::Twilio(t), rate, concurrency));
                    }
                    Err(e) => problems.push((
                        format!("invalid `[channels.{}]`", kind.as_str()),
                        e.to_string(),
                    )),
                }
            }
        }
        if let Some(c) = channels.webhook {
            match webhook::Webhook::build(c) {
                Ok((w, rate, concurrency)) => {
                    lanes.insert(
                        ChannelKind::Webhook,
                        Lane::new(Channel::Webhook(w), rate, concurrency),
                    );
                }
                Err(e) => {
                    problems.push(("invalid `[channels.webhook]`".to_string(), e.to_string()))
                }
            }
        }
        for (kind, lane) in lanes.iter_mut() {
            lane.window = windows.remove(kind);
        }
        match loaded {
            Ok(templates) if problems.is_empty() => Ok(Notifier { templates, lanes }),
            Ok(_) => Err(problems),
            Err(errors) => {
                problems.extend(
                    errors
                        .into_iter()
                        .map(|e| ("invalid template".to_string(), e)),
                );
                Err(problems)
            }
        }
    }

    /// A notifier with the built-in templates and no channel (tests, `tickler check` of a
    /// config without `[channels]`).
    pub fn empty() -> Notifier {
        Notifier {
            templates: Templates::load(None, &Map::new())
                .unwrap_or_else(|e| panic!("the built-in templates must load: {e:?}")),
            lanes: HashMap::new(),
        }
    }

    /// Sends an already rendered email (an alert: no template, no job around it) through the
    /// email lane, within its `rate_limit` and `concurrency` like every other message.
    pub async fn send_email(
        &self,
        to: &str,
        key: &str,
        message: &Rendered,
    ) -> Result<String, SendError> {
        let Some(lane) = self.lanes.get(&ChannelKind::Email) else {
            return Err(SendError::new("`[channels.email]` is not configured"));
        };
        let _permit = lane.limiter.acquire().await;
        match &lane.channel {
            Channel::Email(e) => e.send(to, message, false).await,
            other => other.send(to, key, message).await,
        }
    }

    /// `[channels.email]`'s one-click unsubscribe links, when configured.
    pub fn unsubscribe(&self) -> Option<&unsubscribe::Unsubscribe> {
        match &self.lanes.get(&ChannelKind::Email)?.channel {
            Channel::Email(e) => e.unsubscribe(),
            _ => None,
        }
    }

    /// Where replies to the Twilio number of `kind` (`sms`, `whatsapp`) are checked, when its
    /// `inbound_url` is set.
    pub fn twilio_inbound(&self, kind: ChannelKind) -> Option<twilio::Inbound> {
        match &self.lanes.get(&kind)?.channel {
            Channel::Twilio(t) => t.inbound(),
            _ => None,
        }
    }

    pub fn has_channel(&self, kind: ChannelKind) -> bool {
        self.lanes.contains_key(&kind)
    }

    /// When `m` may go out, at `now` or later: `now` when every window that applies to it
    /// (its channel's, its sender's) is open, else the instant they next open together, in
    /// the recipient's zone.
    pub fn opens(&self, m: &Message, now: DateTime<Utc>) -> Result<DateTime<Utc>, NeverOpen> {
        let channel = self.lanes.get(&m.channel).and_then(|l| l.window.as_deref());
        let windows: Vec<&SendWindow> = channel.into_iter().chain(m.window.as_deref()).collect();
        if windows.is_empty() {
            return Ok(now);
        }
        let zone = m.zone.unwrap_or(chrono_tz::UTC);
        window::open_together(&windows, now, zone).ok_or_else(|| NeverOpen {
            windows: windows
                .iter()
                .map(|w| w.describe())
                .collect::<Vec<_>>()
                .join("; "),
            zone,
        })
    }

    /// Checks what a job needs: its channels configured, its templates rendering for them.
    pub fn check(
        &self,
        channels: &[ChannelKind],
        templates: &[&str],
        sample: &Value,
    ) -> Result<(), NotifyError> {
        if let Some(c) = channels.iter().find(|c| !self.has_channel(**c)) {
            return Err(NotifyError::NotConfigured(*c));
        }
        for t in templates {
            self.templates.check(t, channels, sample)?;
        }
        Ok(())
    }

    /// Sends `messages` through the pipeline: claim, render, send (rate-limited, several at
    /// once per channel), record. Returns each message's fate, in order. With `dry_run`,
    /// renders what would be sent and changes nothing.
    pub async fn deliver(
        &self,
        store: &Store,
        claimant: &Claimant<'_>,
        messages: &[Message],
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fate>, StoreError> {
        let mut fates: Vec<Option<Fate>> = vec![None; messages.len()];
        // Opt-outs first, for the whole batch in one query: a blocked message is never sent.
        let blocked = blocks::blocked(store, messages).await?;
        // Then the send windows: a message due outside them waits (invariant 6).
        let mut later: HashMap<usize, DateTime<Utc>> = HashMap::new();
        let mut closed: HashMap<usize, String> = HashMap::new();
        for (i, m) in messages.iter().enumerate() {
            if blocked.contains_key(&i) || m.recipient.is_none() {
                continue;
            }
            match self.opens(m, now) {
                Ok(at) if at > now => {
                    later.insert(i, at);
                }
                Ok(_) => {}
                Err(e) => {
                    closed.insert(i, e.to_string());
                }
            }
        }
        if dry_run {
            let keys: Vec<String> = messages.iter().map(|m| m.key.clone()).collect();
            let states = store.notification_states(&keys).await?;
            for (i, m) in messages.iter().enumerate() {
                fates[i] = Some(match states.get(&m.key).map(|s| s.as_str()) {
                    Some(
                        "sent" | "skipped" | "suppressed" | "sending" | "unknown" | "cancelled",
                    ) => Fate::Done,
                    _ if blocked.contains_key(&i) => Fate::Suppressed(blocked[&i].clone()),
                    _ if later.contains_key(&i) => Fate::Deferred(later[&i]),
                    _ if closed.contains_key(&i) => Fate::Failed(closed[&i].clone()),
                    _ => match &m.recipient {
                        None => Fate::Skipped(no_address(m.channel)),
                        Some(_) => {
                            match self.templates.render(&m.template, m.channel, &m.context) {
                                Ok(r) => Fate::Planned(Box::new(r)),
                                Err(e) => Fate::Failed(e.to_string()),
                            }
                        }
                    },
                });
            }
            return Ok(fates.into_iter().map(|f| f.unwrap_or(Fate::Done)).collect());
        }

        // A key twice in one batch (a query returning a row twice) is one message.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<bool> = messages
            .iter()
            .map(|m| seen.insert(m.key.as_str()))
            .collect();
        let claims: Vec<NotificationClaim> = messages
            .iter()
            .enumerate()
            .filter(|(i, _)| firsts[*i])
            .filter(|(i, _)| !closed.contains_key(i))
            .map(|(i, m)| match (blocked.get(&i), later.get(&i)) {
                (Some(why), _) => m.suppressed(why),
                (None, Some(at)) => m.deferred(*at),
                (None, None) => m.claim(),
            })
            .collect();
        let deferred: Vec<(String, crate::store::queue::NewTask)> = later
            .iter()
            .filter(|(i, _)| firsts[**i])
            .map(|(i, at)| {
                let m = &messages[*i];
                (m.key.clone(), window::deferred_task(m, claimant.job, *at))
            })
            .collect();
        let claimed = store
            .claim_notifications_deferring(claimant, &claims, &deferred, now)
            .await?;

        let mut work = vec![];
        for (i, m) in messages.iter().enumerate() {
            if let Some(why) = closed.get(&i) {
                fates[i] = Some(Fate::Failed(why.clone()));
            } else if !firsts[i] || !claimed.contains(&m.key) {
                fates[i] = Some(Fate::Done);
            } else if let Some(at) = later.get(&i) {
                fates[i] = Some(Fate::Deferred(*at));
            } else if let Some(why) = blocked.get(&i) {
                fates[i] = Some(Fate::Suppressed(why.clone()));
            } else if m.recipient.is_none() {
                fates[i] = Some(Fate::Skipped(no_address(m.channel)));
            } else {
                work.push(i);
            }
        }
        if work.is_empty() {
            return Ok(fates.into_iter().map(|f| f.unwrap_or(Fate::Done)).collect());
        }

        let failures: HashMap<ChannelKind, AtomicUsize> = ChannelKind::ALL
            .iter()
            .map(|k| (*k, AtomicUsize::new(0)))
            .collect();
        let total: usize = self
            .lanes
            .values()
            .map(|l| l.concurrency)
            .sum::<usize>()
            .max(1);
        // If the run is cut short (a timeout, a shutdown), its claims go back: unattempted
        // messages to `failed` for the next run, those in a provider's hands to `unknown`.
        let guard = CutShort::new(
            store,
            claimant.owner,
            work.iter().map(|i| messages[*i].key.clone()).collect(),
        );
        let (journal, written) = Journal::start(store, claimant.owner);
        let results: Vec<(usize, Fate)> = futures_util::stream::iter(work)
            .map(|i| {
                let m = &messages[i];
                let failures = &failures[&m.channel];
                let journal = &journal;
                async move { (i, self.send_one(m, failures, journal).await) }
            })
            .buffer_unordered(total)
            .collect()
            .await;
        for (i, fate) in results {
            fates[i] = Some(fate);
        }
        // Every end is written before the run reports them.
        drop(journal);
        let written = written
            .await
            .unwrap_or_else(|e| Err(journal_lost(format!("the writer stopped: {e}"))));
        // When the record failed, the guard gives the claims up as it drops (unsent ones to
        // `failed`, those in a provider's hands to `unknown`) rather than leave them `sending`.
        if written.is_ok() {
            guard.disarm();
        }
        written?;
        Ok(fates.into_iter().map(|f| f.unwrap_or(Fate::Done)).collect())
    }

    /// One message: render, wait for the lane, record the attempt, send, record the end.
    async fn send_one(&self, m: &Message, failures: &AtomicUsize, journal: &Journal) -> Fate {
        let Some(lane) = self.lanes.get(&m.channel) else {
            let e = format!("the channel `{}` is not configured", m.channel.as_str());
            return journal.end(&m.key, Sent::Failed(e));
        };
        let rendered = match self.templates.render(&m.template, m.channel, &m.context) {
            Ok(r) => r,
            Err(e) => return journal.end(&m.key, Sent::Failed(e.to_string())),
        };
        if failures.load(Ordering::Relaxed) >= BREAKER {
            let e = format!(
                "not attempted: `{}` failed {BREAKER} times in a row in this run; the next run \
                 tries again",
                m.channel.as_str()
            );
            return journal.end(&m.key, Sent::Failed(e));
        }
        let _permit = lane.limiter.acquire().await;
        // The attempt is committed before the provider sees the message: if this process
        // dies from here on, the message is `unknown`, never sent twice.
        if !journal.attempt(m).await {
            return Fate::Done;
        }
        let to = m.recipient.as_deref().unwrap_or_default();
        let sent = match lane.channel.send(to, &m.key, &rendered).await {
            Ok(id) => {
                failures.store(0, Ordering::Relaxed);
                Sent::Ok(id)
            }
            Err(e) => {
                failures.fetch_add(1, Ordering::Relaxed);
                if e.ambiguous {
                    Sent::Unknown(e.message)
                } else {
                    Sent::Failed(e.message)
                }
            }
        };
        journal.end(&m.key, sent)
    }
}

/// The group-commit writer of one delivery's `notification_log` updates: attempts (each
/// sender waits until its attempt is committed, so a crash after it leaves the message
/// `unknown`, never resent) and ends (written with the next commit, so a message the provider
/// accepted is recorded `sent` within one round trip, not at the end of a page). Sends that
/// are in flight together share one transaction.
struct Journal {
    tx: tokio::sync::mpsc::UnboundedSender<JournalOp>,
}

enum JournalOp {
    Attempt(NotificationAttempt, tokio::sync::oneshot::Sender<bool>),
    End(NotificationEnd),
}

impl Journal {
    /// Starts the writer; the handle returned ends with the writer, after the last op sent
    /// before the journal was dropped is written.
    fn start(
        store: &Store,
        owner: &str,
    ) -> (Journal, tokio::task::JoinHandle<Result<(), StoreError>>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let written = tokio::spawn(journal_writer(store.clone(), owner.to_string(), rx));
        (Journal { tx }, written)
    }

    /// Records that `m` is about to be handed to its provider; `false` when the claim is no
    /// longer this process's, its invoice is no longer open (or the record could not be
    /// written): then it must not be sent.
    async fn attempt(&self, m: &Message) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(JournalOp::Attempt(m.attempt(), tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Records how a send ended (in the writer's next commit); returns the message's fate.
    fn end(&self, key: &str, sent: Sent) -> Fate {
        let (status, provider_id, error, fate) = match sent {
            Sent::Ok(id) => ("sent", Some(id), None, Fate::Sent),
            Sent::Failed(e) => ("failed", None, Some(e.clone()), Fate::Failed(e)),
            Sent::Unknown(e) => {
                let e = format!("{e} (it may have been sent; it is not sent again)");
                ("unknown", None, Some(e.clone()), Fate::Failed(e))
            }
        };
        let _ = self.tx.send(JournalOp::End(NotificationEnd {
            key: key.to_string(),
            status,
            provider_id,
            error,
        }));
        fate
    }
}

/// Writes journal ops in batches until every handle is gone. A passing database error is
/// waited out (the sends happened: their outcome must reach the log); a write the database
/// refuses fails the delivery, and the attempts waiting on it are not sent.
async fn journal_writer(
    store: Store,
    owner: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<JournalOp>,
) -> Result<(), StoreError> {
    let never = tokio_util::sync::CancellationToken::new();
    let mut ops = Vec::with_capacity(256);
    let mut outcome = Ok(());
    while rx.recv_many(&mut ops, 1024).await > 0 {
        let mut attempts = vec![];
        let mut waiting = vec![];
        let mut ends = vec![];
        for op in ops.drain(..) {
            match op {
                JournalOp::Attempt(attempt, answer) => {
                    attempts.push(attempt);
                    waiting.push(answer);
                }
                JournalOp::End(end) => ends.push(end),
            }
        }
        let written = crate::retry::until_done("recording messages sent", &never, || {
            store.journal_notifications(&owner, &attempts, &ends, Utc::now())
        })
        .await;
        if written.is_none() {
            // Refused three times (and logged by `retry`): these attempts are not sent, and
            // the run reports the failure.
            outcome = Err(journal_lost("the database refused the record".into()));
        }
        let mine = written.unwrap_or_default();
        for (attempt, answer) in attempts.iter().zip(waiting) {
            let _ = answer.send(mine.contains(&attempt.key));
        }
    }
    outcome
}

fn journal_lost(why: String) -> StoreError {
    StoreError::Query {
        doing: "recording sent messages in notification_log",
        source: sqlx::Error::Protocol(why),
    }
}

/// The keys a delivery claimed; when dropped before [`CutShort::disarm`] (the run's future
/// was cancelled: a timeout, a shutdown), the claims still `sending` are given up: never
/// attempted ones go back to `failed`, attempted ones become `unknown`.
struct CutShort {
    store: Store,
    owner: String,
    keys: Vec<String>,
    armed: std::sync::atomic::AtomicBool,
}

impl CutShort {
    fn new(store: &Store, owner: &str, keys: Vec<String>) -> Self {
        CutShort {
            store: store.clone(),
            owner: owner.to_string(),
            keys,
            armed: std::sync::atomic::AtomicBool::new(true),
        }
    }
    fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

impl Drop for CutShort {
    fn drop(&mut self) {
        if !self.armed.load(Ordering::Relaxed) || self.keys.is_empty() {
            return;
        }
        let (store, owner, keys) = (
            self.store.clone(),
            std::mem::take(&mut self.owner),
            std::mem::take(&mut self.keys),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let why = "the run was cut short";
                if let Err(e) = store
                    .release_notifications(&owner, &keys, why, Utc::now())
                    .await
                {
                    tracing::warn!(error = %e, "could not release the messages of a cut-short run");
                }
            });
        }
    }
}

impl Lane {
    fn new(channel: Channel, rate: f64, concurrency: usize) -> Lane {
        Lane {
            channel,
            limiter: ratelimit::RateLimiter::new(rate, concurrency),
            concurrency,
            window: None,
        }
    }
}

fn no_address(channel: ChannelKind) -> String {
    match channel {
        ChannelKind::Email => "no email address".into(),
        ChannelKind::Sms | ChannelKind::Whatsapp => "no phone number".into(),
        ChannelKind::Webhook => "no webhook URL".into(),
    }
}

/// Shared, cheaply cloned.
pub type SharedNotifier = Arc<Notifier>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_needs_its_channels_configured_and_its_templates() {
        let n = Notifier::empty();
        assert_eq!(
            n.check(&[ChannelKind::Whatsapp], &[], &Value::Null)
                .unwrap_err()
                .to_string(),
            "the channel `whatsapp` is not configured; add a `[channels.whatsapp]` section or \
             remove it from `channels`"
        );
        let err = n
            .check(&[], &["nope"], &Value::Null)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no template named `nope`; add `nope.j2` to the templates directory"),
            "{err}"
        );
    }
}
