//! `invoice_reminders`: reminder windows before (or after) the due date, e.g.
//! `offsets = ["7d", "1d", "0d"]`. Window `7d` takes the open invoices due in 2..=7 days (the
//! days down to the next offset), so a day the daemon was down is caught up the next day
//! within the same window; the last window takes its exact day. Each invoice gets at most one
//! message per window and channel, whatever the number of runs (invariant 4).

use std::collections::BTreeMap;

use chrono::Days;
use serde::Deserialize;

use super::sending::{SendingError, Tally};
use super::{Job, JobError, Outcome, RunContext};
use crate::billing::messages::{
    customer_today, date_shifts, invoice_context, invoice_messages, pay_url, sample_invoice_context,
};
use crate::billing::{OffsetError, parse_offset};
use crate::notify::{ChannelKind, Notifier, NotifyError};
use crate::store::billing::Cursor;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceRemindersJob {
    #[serde(default = "default_offsets")]
    pub offsets: Vec<String>,
    #[serde(default = "super::sending::default_channels")]
    pub channels: Vec<ChannelKind>,
    /// The template of every window without its own in `templates`.
    pub template: Option<String>,
    /// A template per window, e.g. `{ "0d" = "firm" }`.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Invoices read and sent per round.
    #[serde(default = "super::sending::default_batch")]
    pub batch_size: i64,
    /// A payment link pattern, e.g. `https://pay.example.com/{number}`.
    pub pay_url: Option<String>,
}

fn default_offsets() -> Vec<String> {
    vec!["7d".into(), "1d".into(), "0d".into()]
}

/// The shipped tone for a window: friendly a week out, professional the day before, firm on
/// the day, urgent after it.
fn default_template(days: i64) -> &'static str {
    match days {
        2.. => "friendly",
        1 => "professional",
        0 => "firm",
        _ => "urgent",
    }
}

/// What is wrong with the windows of an `invoice_reminders` job, or what it sends.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceRemindersError {
    #[error("`offsets` must list at least one window, e.g. `[\"7d\", \"1d\", \"0d\"]`")]
    NoOffsets,
    #[error(transparent)]
    Offset(#[from] OffsetError),
    /// Two offsets for the same day (as written).
    #[error("`offsets` lists the same window twice (`{0}` and `{1}`)")]
    SameWindow(String, String),
    #[error("`templates` names the window `{0}`, which is not in `offsets`")]
    UnknownWindow(String),
    #[error(transparent)]
    Sending(#[from] SendingError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

struct Window {
    label: String,
    days: i64,
    /// Due dates covered, as days from today: `lo..=hi`.
    lo: i64,
    hi: i64,
    template: String,
}

impl InvoiceRemindersJob {
    fn windows(&self) -> Result<Vec<Window>, InvoiceRemindersError> {
        let mut parsed = vec![];
        for o in &self.offsets {
            parsed.push((o.clone(), parse_offset(o)?));
        }
        parsed.sort_by_key(|(_, d)| -d);
        for pair in parsed.windows(2) {
            if pair[0].1 == pair[1].1 {
                return Err(InvoiceRemindersError::SameWindow(
                    pair[0].0.clone(),
                    pair[1].0.clone(),
                ));
            }
        }
        if let Some(key) = self.templates.keys().find(|k| !self.offsets.contains(k)) {
            return Err(InvoiceRemindersError::UnknownWindow(key.clone()));
        }
        Ok(parsed
            .iter()
            .enumerate()
            .map(|(i, (label, days))| {
                let lo = parsed.get(i + 1).map_or(*days, |(_, next)| next + 1);
                let template = self
                    .templates
                    .get(label)
                    .or(self.template.as_ref())
                    .cloned()
                    .unwrap_or_else(|| default_template(*days).to_string());
                Window {
                    label: label.clone(),
                    days: *days,
                    lo,
                    hi: *days,
                    template,
                }
            })
            .collect())
    }
}

impl Job for InvoiceRemindersJob {
    type Invalid = InvoiceRemindersError;

    fn validate(&self) -> Result<(), InvoiceRemindersError> {
        if self.offsets.is_empty() {
            return Err(InvoiceRemindersError::NoOffsets);
        }
        super::sending::check_sending(&self.channels, self.batch_size)?;
        self.windows().map(|_| ())
    }

    fn check(&self, notifier: &Notifier) -> Result<(), InvoiceRemindersError> {
        for w in self.windows()? {
            notifier.check(
                &self.channels,
                &[w.template.as_str()],
                &sample_invoice_context(Some(w.days), None),
            )?;
        }
        Ok(())
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        let today = ctx.today();
        let mut tally = Tally::default();
        let mut invoices = 0i64;
        let mut per_window = serde_json::Map::new();
        let windows = self.windows().map_err(|e| JobError::fatal(e.to_string()))?;
        // Days count in each customer's own date (invariant 6), which may be a day from the
        // job's: read as many days more on each side as the customers' zones need, and keep
        // the invoices whose due date falls in the window by their customer's date.
        let zones = ctx.store.customer_zones().await?;
        let (behind, ahead) = date_shifts(&zones, ctx.now, ctx.timezone);
        for w in windows {
            let from = offset(today, w.lo + behind);
            let to = offset(today, w.hi + ahead);
            let mut cursor = Cursor::start();
            let before = tally.sent_total();
            loop {
                let page = ctx
                    .store
                    .open_invoices_due(from, to, &cursor, self.batch_size)
                    .await?;
                let Some(last) = page.last() else { break };
                cursor = Cursor::after(last);
                let full = page.len() as i64 >= self.batch_size;
                let page: Vec<_> = page
                    .into_iter()
                    .filter(|inv| {
                        let local = customer_today(inv, ctx.now, ctx.timezone);
                        let days = (inv.due_date - local).num_days();
                        (w.lo..=w.hi).contains(&days)
                    })
                    .collect();
                invoices += page.len() as i64;
                let mut messages = Vec::with_capacity(page.len() * self.channels.len());
                for inv in &page {
                    let context = invoice_context(
                        inv,
                        customer_today(inv, ctx.now, ctx.timezone),
                        Some((&w.label, w.days)),
                        None,
                        pay_url(self.pay_url.as_deref(), inv),
                    );
                    messages.extend(invoice_messages(
                        inv,
                        &self.channels,
                        &format!("reminder:{}", w.label),
                        &w.template,
                        context,
                    ));
                }
                let fates = ctx.send(&mut messages).await?;
                tally.record_invoices(&page, &messages, &fates);
                if !full {
                    break;
                }
            }
            per_window.insert(w.label.clone(), (tally.sent_total() - before).into());
        }
        let mut outcome = Outcome::default();
        outcome.metadata.insert("invoices".into(), invoices.into());
        outcome
            .metadata
            .insert("per_window".into(), serde_json::Value::Object(per_window));
        Ok(tally.into_outcome(outcome, ctx.dry_run))
    }
}

/// `today` moved by `days` (negative: back).
pub fn offset(today: chrono::NaiveDate, days: i64) -> chrono::NaiveDate {
    if days >= 0 {
        today + Days::new(days as u64)
    } else {
        today - Days::new(days.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::assert_refused;

    #[test]
    fn windows_reach_down_to_the_next_offset() {
        let job: InvoiceRemindersJob = toml::from_str(
            "offsets = [\"0d\", \"7d\", \"1d\", \"-3d\"]\ntemplates = { \"0d\" = \"urgent\" }",
        )
        .unwrap();
        let w = job.windows().unwrap();
        let spans: Vec<(i64, i64, &str)> = w
            .iter()
            .map(|w| (w.lo, w.hi, w.template.as_str()))
            .collect();
        assert_eq!(
            spans,
            [
                (2, 7, "friendly"),
                (1, 1, "professional"),
                (-2, 0, "urgent"),
                (-3, -3, "urgent")
            ]
        );
        let bad: InvoiceRemindersJob =
            toml::from_str("offsets = [\"1d\"]\ntemplates = { \"2d\" = \"firm\" }").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "`templates` names the window `2d`, which is not in `offsets`"
        );
    }

    #[test]
    fn bad_windows_are_refused_with_what_to_write() {
        #[rustfmt::skip]
        let table = [
            ("offsets = []",
             "`offsets` must list at least one window, e.g. `[\"7d\", \"1d\", \"0d\"]`"),
            ("channels = []", "`channels` must list at least one channel, e.g. `[\"email\"]`"),
            ("batch_size = 0", "`batch_size` must be 1-10000 (found 0)"),
            ("offsets = [\"7\"]",
             "invalid offset `7`: write days before the due date as `7d`, `1d`, `0d` (the due \
              date) or `-3d` (3 days after it)"),
            ("offsets = [\"1d\", \"01d\"]", "`offsets` lists the same window twice (`1d` and `01d`)"),
        ];
        assert_refused::<InvoiceRemindersJob>(&table);
        let job: InvoiceRemindersJob = toml::from_str("channels = [\"sms\"]").unwrap();
        assert_eq!(
            job.check(&Notifier::empty()).unwrap_err().to_string(),
            "the channel `sms` is not configured; add a `[channels.sms]` section or remove it \
             from `channels`"
        );
    }
}
