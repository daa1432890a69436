//! `notify` (seeds 003, 004): a query picks the rows (on tickler's database or on another one,
//! `database_url_env`); each row renders the template and goes to the job's channels; `dedup`,
//! a template over the row, names the message so it goes out once, across runs and across
//! jobs that share it (a weekend catch-up job with the same `dedup` sends nothing twice). This
//! covers "sessions 23-25 h ahead", "bookings 24 h ahead", "assignments due in 24-48 h",
//! "leads contacted 3+ days ago" on the user's own tables.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::sending::{SendingError, Tally};
use super::{Job, JobError, Outcome, RunContext};
use crate::notify::templates::TemplateError;
use crate::notify::{ChannelKind, Fate, Message, Notifier, NotifyError};
use crate::secret::{DatabaseUrl, SecretError, SecretSource};
use crate::store::Store;
use crate::store::user::{RowStatement, bind_now};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyJob {
    /// SQL returning one row per message; `:now` is the run's time.
    pub query: String,
    /// The `[databases]` entry to query (and run `on_sent` on); tickler's own by default.
    pub database: Option<String>,
    /// Another database to query, from an environment variable or a file (before
    /// `[databases]`; `database` is the way now).
    pub database_url_env: Option<String>,
    pub database_url_file: Option<std::path::PathBuf>,
    #[serde(default = "super::sending::default_channels")]
    pub channels: Vec<ChannelKind>,
    pub template: String,
    /// The message's identity, e.g. `session-24h-{{ id }}`; the channel is appended.
    pub dedup: String,
    /// The address per channel, a template over the row. Defaults: `{{ email }}` for email,
    /// `{{ phone }}` for SMS and WhatsApp.
    #[serde(default)]
    pub to: BTreeMap<ChannelKind, String>,
    /// Rows read per run at most.
    #[serde(default = "ten_thousand")]
    pub limit: usize,
    /// Statements run in the query's database for each row whose message went out on every
    /// channel, in one transaction per row, with `:column` bound to the row's value: the
    /// application's sent-flags and in-app notifications. They run once per row, recorded in
    /// `notification_log.on_sent_at`: in the run that sends the row's last message, or, when
    /// they failed or the daemon died before they committed, in the next run that sees the
    /// row; a row done before gets nothing more (a query that does not filter on the flag picks
    /// it again). The dedup key is the guarantee that nothing goes out twice; these are for the
    /// application.
    #[serde(default)]
    pub on_sent: Vec<String>,
    #[serde(skip)]
    other: OnceCell<Store>,
}

impl std::fmt::Debug for NotifyJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyJob")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

fn ten_thousand() -> usize {
    10_000
}

/// What is wrong with the parameters of a `notify` job, or with what it sends.
#[derive(Debug, thiserror::Error)]
pub enum NotifyJobError {
    #[error("`query` must be an SQL query returning one row per message")]
    NoQuery,
    /// An `on_sent` entry empty or holding several statements (its position, from 1).
    #[error("`on_sent` statement {0} must be one SQL statement, without `;`")]
    OnSent(usize),
    /// No channel (the text every sending job shares).
    #[error(transparent)]
    Sending(#[from] SendingError),
    #[error("`dedup` must name each message, e.g. `\"booking-24h-{{{{ id }}}}\"`")]
    NoDedup,
    /// A row limit out of range (the value found).
    #[error("`limit` must be 1-1000000 (found {0})")]
    Limit(usize),
    /// `to` sets an address for a channel the job does not send through.
    #[error("`to` sets the channel `{}`, which is not in `channels`", .0.as_str())]
    ToChannel(ChannelKind),
    /// `database_url_env` and `database_url_file` both set.
    #[error(transparent)]
    DatabaseUrl(#[from] SecretError),
    #[error("set either `database` or `database_url_env`/`database_url_file`, not both")]
    TwoDatabases,
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// `dedup`, a `to` template or the message's template does not parse or is missing.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl NotifyJob {
    fn recipient_template(&self, channel: ChannelKind) -> String {
        self.to.get(&channel).cloned().unwrap_or_else(|| {
            match channel {
                ChannelKind::Email => "{{ email }}",
                ChannelKind::Sms | ChannelKind::Whatsapp => "{{ phone }}",
                ChannelKind::Webhook => "webhook",
            }
            .to_string()
        })
    }

    /// The database the query runs on, for messages.
    fn database_label(&self) -> String {
        match (
            &self.database,
            &self.database_url_env,
            &self.database_url_file,
        ) {
            (Some(name), _, _) => format!("database `{name}`"),
            (None, Some(_), _) => "the database of `database_url_env`".to_string(),
            (None, None, Some(_)) => "the database of `database_url_file`".to_string(),
            (None, None, None) => "tickler's database".to_string(),
        }
    }

    async fn store<'a>(&'a self, ctx: &'a RunContext) -> Result<&'a Store, JobError> {
        let source = SecretSource::from_pair(
            "database_url",
            self.database_url_env.clone(),
            self.database_url_file.clone(),
        )
        .map_err(JobError::fatal)?;
        let Some(source) = source else {
            return ctx.database(self.database.as_deref()).await;
        };
        self.other
            .get_or_try_init(|| async {
                let url = source.read().map_err(JobError::fatal)?;
                Store::connect(&DatabaseUrl::new(url.expose()))
                    .await
                    .map_err(|e| JobError::retryable(e.to_string()))
            })
            .await
    }
}

impl NotifyJob {
    /// Whether each message went out: sent now, or by an earlier run (`sent` in the log; not
    /// a message skipped for want of an address, nor one whose fate is unknown); and which of
    /// them (their index in `chunk`) belong to a row whose `on_sent` ran already.
    async fn went_out(
        &self,
        ctx: &RunContext,
        chunk: &[Message],
        fates: &[Fate],
    ) -> Result<(Vec<bool>, Vec<usize>), JobError> {
        if self.on_sent.is_empty() {
            return Ok((
                fates.iter().map(|f| matches!(f, Fate::Sent)).collect(),
                vec![],
            ));
        }
        let earlier: Vec<String> = chunk
            .iter()
            .zip(fates)
            .filter(|(_, f)| matches!(f, Fate::Done))
            .map(|(m, _)| m.key.clone())
            .collect();
        let states = ctx
            .store
            .notification_states(&earlier)
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?;
        let done = ctx
            .store
            .on_sent_done(&earlier)
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?;
        let out = chunk
            .iter()
            .zip(fates)
            .map(|(m, f)| match f {
                Fate::Sent => true,
                Fate::Done => states.get(&m.key).is_some_and(|s| s == "sent"),
                _ => false,
            })
            .collect();
        let done = chunk
            .iter()
            .enumerate()
            .filter(|(_, m)| done.contains(&m.key))
            .map(|(j, _)| j)
            .collect();
        Ok((out, done))
    }
}

impl Job for NotifyJob {
    type Invalid = NotifyJobError;

    fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    fn sql(&self) -> Vec<(String, String)> {
        let on_sent = self.on_sent.iter().enumerate().map(|(i, s)| {
            (
                format!("`on_sent` statement {}", i + 1),
                RowStatement::parse(s).sql().to_string(),
            )
        });
        std::iter::once(("`query`".to_string(), bind_now(&self.query).0))
            .chain(on_sent)
            .collect()
    }

    fn validate(&self) -> Result<(), NotifyJobError> {
        if self.query.trim().is_empty() {
            return Err(NotifyJobError::NoQuery);
        }
        if self.channels.is_empty() {
            return Err(SendingError::NoChannels.into());
        }
        if self.dedup.trim().is_empty() {
            return Err(NotifyJobError::NoDedup);
        }
        if !(1..=1_000_000).contains(&self.limit) {
            return Err(NotifyJobError::Limit(self.limit));
        }
        if let Some(c) = self.to.keys().find(|c| !self.channels.contains(c)) {
            return Err(NotifyJobError::ToChannel(*c));
        }
        if let Some(i) = self
            .on_sent
            .iter()
            .position(|st| st.trim().is_empty() || st.trim().trim_end_matches(';').contains(';'))
        {
            return Err(NotifyJobError::OnSent(i + 1));
        }
        let url = SecretSource::from_pair(
            "database_url",
            self.database_url_env.clone(),
            self.database_url_file.clone(),
        )?;
        if url.is_some() && self.database.is_some() {
            return Err(NotifyJobError::TwoDatabases);
        }
        Ok(())
    }

    fn check(&self, notifier: &Notifier) -> Result<(), NotifyJobError> {
        // The columns are known only when the query runs, so the templates are checked for
        // their syntax and existence here, and rendered (strictly) per row at run time.
        notifier.check(&self.channels, &[], &Value::Null)?;
        if !notifier.templates.has(&self.template) {
            return Ok(notifier
                .templates
                .check(&self.template, &[], &Value::Null)?);
        }
        notifier.templates.check_str("`dedup`", &self.dedup)?;
        for c in &self.channels {
            notifier.templates.check_str(
                &format!("`to.{}`", c.as_str()),
                &self.recipient_template(*c),
            )?;
        }
        Ok(())
    }

    fn now_sql(&self) -> Vec<(String, String)> {
        let on_sent = self
            .on_sent
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("`on_sent` statement {}", i + 1), s.clone()));
        std::iter::once(("`query`".to_string(), self.query.clone()))
            .chain(on_sent)
            .collect()
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        let store = self.store(ctx).await?;
        // Before anything is sent: the data may have changed since `tickler check`.
        for (what, sql) in self.now_sql() {
            if let Err(e) = store.check_now_columns(&sql).await {
                let message = format!(
                    "job `{}`: {what} on {}: {e}",
                    ctx.job_name,
                    self.database_label()
                );
                return Err(if e.is_transient() {
                    JobError::retryable(message)
                } else {
                    JobError::fatal(message)
                });
            }
        }
        let rows = store
            .query_json(&self.query, ctx.now, self.limit)
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?;
        let mut tally = Tally::default();
        let mut messages = vec![];
        // The row of each message, and the rows with a message that could not be made.
        let mut row_of = vec![];
        let mut incomplete = std::collections::HashSet::new();
        let templates = &ctx.notifier.templates;
        for (n, row) in rows.iter().enumerate() {
            let mut context = row.clone();
            context.insert("row".into(), Value::Object(row.clone()));
            let context = Value::Object(context);
            let dedup = match templates.render_str("`dedup`", &self.dedup, &context) {
                Ok(d) if !d.is_empty() => d,
                Ok(_) => {
                    tally.error(format!("row {}: `dedup` rendered empty", n + 1));
                    incomplete.insert(n);
                    continue;
                }
                Err(e) => {
                    tally.error(format!("row {}: {e}", n + 1));
                    incomplete.insert(n);
                    continue;
                }
            };
            for c in &self.channels {
                let to = match templates.render_str(
                    &format!("`to.{}`", c.as_str()),
                    &self.recipient_template(*c),
                    &context,
                ) {
                    // A NULL column renders as `none`: no address.
                    Ok(to) => Some(to).filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("none")),
                    Err(e) => {
                        tally.error(format!("row {} ({dedup}): {e}", n + 1));
                        incomplete.insert(n);
                        continue;
                    }
                };
                row_of.push(n);
                messages.push(Message {
                    key: format!("{dedup}:{}", c.as_str()),
                    channel: *c,
                    recipient: to,
                    template: self.template.clone(),
                    invoice_id: None,
                    // A `timezone` column names the recipient's zone for send windows.
                    zone: context
                        .get("timezone")
                        .and_then(Value::as_str)
                        .and_then(|z| z.parse().ok()),
                    window: None,
                    context: context.clone(),
                });
            }
        }
        let mut went_out = Vec::with_capacity(messages.len());
        // The rows whose `on_sent` ran already (any of their messages says so).
        let mut on_sent_done = std::collections::HashSet::new();
        for (i, chunk) in messages.chunks_mut(500).enumerate() {
            let fates = ctx.send(chunk).await?;
            let (out, done) = self.went_out(ctx, chunk, &fates).await?;
            went_out.extend(out);
            on_sent_done.extend(done.into_iter().map(|j| row_of[i * 500 + j]));
            tally.record(chunk, &fates, |m| {
                let key = m.key.rsplit_once(':').map_or(m.key.as_str(), |(k, _)| k);
                format!("`{key}`")
            });
        }
        let mut outcome = Outcome::default();
        outcome.metadata.insert("rows".into(), rows.len().into());
        if !self.on_sent.is_empty() && !ctx.dry_run {
            for (n, _) in row_of.iter().zip(&went_out).filter(|(_, out)| !**out) {
                incomplete.insert(*n);
            }
            let statements: Vec<_> = self
                .on_sent
                .iter()
                .map(|s| RowStatement::parse(s))
                .collect();
            let mut done = 0;
            for (n, row) in rows.iter().enumerate() {
                if incomplete.contains(&n) || on_sent_done.contains(&n) || !row_of.contains(&n) {
                    continue;
                }
                if let Err(e) = store.execute_for_row(&statements, row, ctx.now).await {
                    tally.error(format!("row {}: {e}", n + 1));
                    continue;
                }
                done += 1;
                // Recorded after the application's commit: a daemon killed between the two
                // runs them again for this row at the next run (at least once, not at most).
                let keys: Vec<String> = row_of
                    .iter()
                    .zip(&messages)
                    .filter(|(r, _)| **r == n)
                    .map(|(_, m)| m.key.clone())
                    .collect();
                ctx.store
                    .mark_on_sent(&keys, ctx.now)
                    .await
                    .map_err(|e| JobError::retryable(e.to_string()))?;
            }
            outcome.metadata.insert("on_sent_rows".into(), done.into());
        }
        Ok(tally.into_outcome(outcome, ctx.dry_run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::assert_refused;

    #[test]
    fn bad_parameters_are_refused_with_what_to_write() {
        let base = "query = \"select 1\"\ntemplate = \"friendly\"\ndedup = \"d-{{ id }}\"\n";
        #[rustfmt::skip]
        let table = [
            ("query = \" \"\ntemplate = \"t\"\ndedup = \"d\"",
             "`query` must be an SQL query returning one row per message"),
            ("channels = []", "`channels` must list at least one channel, e.g. `[\"email\"]`"),
            ("query = \"q\"\ntemplate = \"t\"\ndedup = \" \"",
             "`dedup` must name each message, e.g. `\"booking-24h-{{ id }}\"`"),
            ("limit = 0", "`limit` must be 1-1000000 (found 0)"),
            ("to = { sms = \"{{ mobile }}\" }",
             "`to` sets the channel `sms`, which is not in `channels`"),
            ("database_url_env = \"U\"\ndatabase_url_file = \"u\"",
             "set only one of `database_url_env` and `database_url_file`, not both"),
            ("on_sent = [\"UPDATE s SET f = TRUE WHERE id = :id\", \"UPDATE a SET b = 1; DELETE FROM a\"]",
             "`on_sent` statement 2 must be one SQL statement, without `;`"),
            ("on_sent = [\" \"]", "`on_sent` statement 1 must be one SQL statement, without `;`"),
        ];
        // An entry that sets `query` stands alone; the others are added to a valid job.
        let table = table.map(|(params, message)| {
            let whole = params.starts_with("query");
            let params = if whole {
                params.into()
            } else {
                format!("{base}{params}")
            };
            (params, message)
        });
        assert_refused::<NotifyJob>(&table);
        let job: NotifyJob = toml::from_str(base).unwrap();
        assert_eq!(
            job.check(&Notifier::empty()).unwrap_err().to_string(),
            "the channel `email` is not configured; add a `[channels.email]` section or remove \
             it from `channels`"
        );
    }
}
