//! `overdue_escalation` (seed 002): one job per level. Level N goes to open invoices at least
//! `min_days_overdue` days past due whose last level sent is N-1, sent at least `min_interval`
//! ago; when every channel of an invoice went out, its `escalation_level` becomes N. A failed
//! channel keeps the level, and the next run sends only what failed. "Level 3 on Mon/Wed/Fri
//! only" is the job's cron (`0 12 * * 1,3,5`).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::sending::{SendingError, Tally};
use super::{Job, JobError, Outcome, RunContext};
use crate::billing::messages::{
    customer_today, date_shifts, invoice_context, invoice_messages, pay_url, sample_invoice_context,
};
use crate::jobs::invoice_reminders::offset;
use crate::notify::{ChannelKind, Fate, Notifier, NotifyError};
use crate::store::billing::Cursor;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverdueEscalationJob {
    pub level: i32,
    pub min_days_overdue: i64,
    /// Time since the previous level went out (level 1: ignored).
    #[serde(default, with = "crate::time::duration::option")]
    pub min_interval: Option<Duration>,
    #[serde(default = "super::sending::default_channels")]
    pub channels: Vec<ChannelKind>,
    /// Default: `escalation-<level>`.
    pub template: Option<String>,
    #[serde(default = "super::sending::default_batch")]
    pub batch_size: i64,
    pub pay_url: Option<String>,
}

impl OverdueEscalationJob {
    fn template(&self) -> String {
        self.template
            .clone()
            .unwrap_or_else(|| format!("escalation-{}", self.level))
    }
}

/// What is wrong with the parameters of an `overdue_escalation` job, or with what it sends;
/// each out-of-range variant carries the value found.
#[derive(Debug, thiserror::Error)]
pub enum OverdueEscalationError {
    #[error("`level` must be 1-9 (found {0})")]
    Level(i32),
    #[error("`min_days_overdue` must be 0-3650 days (found {0})")]
    MinDaysOverdue(i64),
    #[error(transparent)]
    Sending(#[from] SendingError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

impl Job for OverdueEscalationJob {
    type Invalid = OverdueEscalationError;

    fn validate(&self) -> Result<(), OverdueEscalationError> {
        if !(1..=9).contains(&self.level) {
            return Err(OverdueEscalationError::Level(self.level));
        }
        if !(0..=3650).contains(&self.min_days_overdue) {
            return Err(OverdueEscalationError::MinDaysOverdue(
                self.min_days_overdue,
            ));
        }
        super::sending::check_sending(&self.channels, self.batch_size)?;
        Ok(())
    }

    fn check(&self, notifier: &Notifier) -> Result<(), OverdueEscalationError> {
        Ok(notifier.check(
            &self.channels,
            &[self.template().as_str()],
            &sample_invoice_context(None, Some(self.level)),
        )?)
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        let today = ctx.today();
        // Days overdue count in each customer's own date (invariant 6), which may be a day
        // ahead of the job's: read as far as the customers' zones need, and keep the invoices
        // overdue enough by their customer's date.
        let zones = ctx.store.customer_zones().await?;
        let (_, ahead) = date_shifts(&zones, ctx.now, ctx.timezone);
        let due_before = offset(today, ahead - self.min_days_overdue);
        let escalated_before = match (self.level, self.min_interval) {
            (1, _) | (_, None) => None,
            (_, Some(gap)) => Some(ctx.now - chrono::Duration::from_std(gap).unwrap_or_default()),
        };
        let template = self.template();
        let mut tally = Tally::default();
        let mut raised = 0u64;
        let mut cursor = Cursor::start();
        loop {
            let page = ctx
                .store
                .escalation_candidates(
                    due_before,
                    self.level - 1,
                    escalated_before,
                    &cursor,
                    self.batch_size,
                )
                .await?;
            let Some(last) = page.last() else { break };
            cursor = Cursor::after(last);
            let full = page.len() as i64 >= self.batch_size;
            let page: Vec<_> = page
                .into_iter()
                .filter(|inv| {
                    let local = customer_today(inv, ctx.now, ctx.timezone);
                    (local - inv.due_date).num_days() >= self.min_days_overdue
                })
                .collect();
            let mut messages = vec![];
            for inv in &page {
                let context = invoice_context(
                    inv,
                    customer_today(inv, ctx.now, ctx.timezone),
                    None,
                    Some(self.level),
                    pay_url(self.pay_url.as_deref(), inv),
                );
                messages.extend(invoice_messages(
                    inv,
                    &self.channels,
                    &format!("escalation:{}", self.level),
                    &template,
                    context,
                ));
            }
            let fates = ctx.send(&mut messages).await?;
            // An invoice moves to this level when none of its messages failed.
            let mut complete: HashMap<&str, bool> = HashMap::new();
            for (m, fate) in messages.iter().zip(&fates) {
                let ok = !matches!(fate, Fate::Failed(_));
                let entry = complete
                    .entry(m.invoice_id.as_deref().unwrap_or(""))
                    .or_insert(true);
                *entry &= ok;
            }
            let ids: Vec<String> = complete
                .into_iter()
                .filter(|(_, ok)| *ok)
                .map(|(id, _)| id.to_string())
                .collect();
            if ctx.dry_run {
                raised += ids.len() as u64;
            } else {
                raised += ctx
                    .store
                    .raise_escalation(&ids, self.level, ctx.now)
                    .await?;
            }
            tally.record_invoices(&page, &messages, &fates);
            if !full {
                break;
            }
        }
        let mut outcome = Outcome::default();
        outcome.metadata.insert("level".into(), self.level.into());
        let key = if ctx.dry_run { "would_raise" } else { "raised" };
        outcome.metadata.insert(key.into(), raised.into());
        Ok(tally.into_outcome(outcome, ctx.dry_run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::assert_refused;

    #[test]
    fn bad_parameters_are_refused_with_what_to_write() {
        #[rustfmt::skip]
        let table = [
            ("level = 0\nmin_days_overdue = 1", "`level` must be 1-9 (found 0)"),
            ("level = 1\nmin_days_overdue = -1",
             "`min_days_overdue` must be 0-3650 days (found -1)"),
            ("level = 1\nmin_days_overdue = 1\nchannels = []",
             "`channels` must list at least one channel, e.g. `[\"email\"]`"),
            ("level = 1\nmin_days_overdue = 1\nbatch_size = 10001",
             "`batch_size` must be 1-10000 (found 10001)"),
        ];
        assert_refused::<OverdueEscalationJob>(&table);
        let job: OverdueEscalationJob = toml::from_str("level = 1\nmin_days_overdue = 1").unwrap();
        assert_eq!(
            job.check(&Notifier::empty()).unwrap_err().to_string(),
            "the channel `email` is not configured; add a `[channels.email]` section or remove \
             it from `channels`"
        );
    }
}
