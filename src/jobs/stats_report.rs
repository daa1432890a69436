//! `stats_report` (seed 002): the figures of the last full week (Monday to Sunday) or month, in
//! the job's zone: invoices issued, paid and overdue, amounts issued, collected and
//! outstanding per currency, the collection rate (invoices due in the period that are paid),
//! messages sent and failed per channel, and failed runs per job. They are kept in the run's
//! metadata and sent to `recipients` (email, text and HTML) and/or the webhook, once per period.
//! Its records processed are the messages sent (one per recipient and channel).

use chrono::{Datelike, Days, Months, NaiveDate, TimeZone};
use serde::Deserialize;
use serde_json::{Value, json};

use super::sending::Tally;
use super::{Job, JobError, Outcome, RunContext};
use crate::billing::messages::money;
use crate::notify::{ChannelKind, Message, Notifier, NotifyError};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Weekly,
    Monthly,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsReportJob {
    pub period: Period,
    /// Email addresses of the report's readers.
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default = "super::sending::default_channels")]
    pub channels: Vec<ChannelKind>,
    #[serde(default = "default_template")]
    pub template: String,
}

fn default_template() -> String {
    "stats-report".into()
}

/// The last full period before `today`: `[start, end)` as dates.
pub fn last_period(period: Period, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    match period {
        Period::Weekly => {
            let this_monday = today - Days::new(today.weekday().num_days_from_monday() as u64);
            (this_monday - Days::new(7), this_monday)
        }
        Period::Monthly => {
            let first = today.with_day(1).unwrap_or(today);
            (first - Months::new(1), first)
        }
    }
}

/// A sum in minor units as JSON: a number, or its decimal text when it exceeds 64 bits (JSON
/// readers lose precision beyond that).
fn minor(sum: i128) -> Value {
    i64::try_from(sum).map_or_else(|_| Value::String(sum.to_string()), Value::from)
}

fn sample_stats() -> Value {
    json!({
        "period": { "kind": "weekly", "start": "2026-11-16", "end": "2026-11-22",
                    "label": "week of 16 November 2026" },
        "invoices": { "issued": 40, "paid": 31, "overdue": 6, "open": 18 },
        "collection_rate": "87.5%",
        "currencies": [{ "currency": "ZAR", "issued_amount": "ZAR 480,000.00",
                         "collected_amount": "ZAR 372,000.00",
                         "outstanding_amount": "ZAR 216,000.00" }],
        "notifications": [{ "channel": "email", "sent": 120, "failed": 2 }],
        "job_failures": [{ "job_name": "create-invoices", "failures": 1 }],
        "generated_at": "2026-11-23 08:00 UTC",
    })
}

/// What is wrong with the parameters of a `stats_report` job, or with what it sends.
#[derive(Debug, thiserror::Error)]
pub enum StatsReportError {
    #[error("a report goes by `email` or `webhook`, not by SMS or WhatsApp")]
    TextChannel,
    #[error("`recipients` must list at least one email address, e.g. `[\"accounts@example.com\"]`")]
    NoRecipients,
    #[error("`recipients`: `{recipient}` is not an email address ({reason})")]
    Recipient {
        recipient: String,
        reason: lettre::address::AddressError,
    },
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

impl Job for StatsReportJob {
    type Invalid = StatsReportError;

    fn validate(&self) -> Result<(), StatsReportError> {
        if self.channels.contains(&ChannelKind::Sms)
            || self.channels.contains(&ChannelKind::Whatsapp)
        {
            return Err(StatsReportError::TextChannel);
        }
        if self.channels.contains(&ChannelKind::Email) && self.recipients.is_empty() {
            return Err(StatsReportError::NoRecipients);
        }
        for r in &self.recipients {
            r.parse::<lettre::Address>()
                .map_err(|reason| StatsReportError::Recipient {
                    recipient: r.clone(),
                    reason,
                })?;
        }
        Ok(())
    }

    fn check(&self, notifier: &Notifier) -> Result<(), StatsReportError> {
        Ok(notifier.check(
            &self.channels,
            &[self.template.as_str()],
            &json!({ "stats": sample_stats() }),
        )?)
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        let today = ctx.today();
        let (start, end) = last_period(self.period, today);
        // Local midnight, or the first instant after it when a DST gap skips it.
        let at = |d: NaiveDate| {
            let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
            (0..=180)
                .find_map(|m| {
                    ctx.timezone
                        .from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                        .earliest()
                })
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or(ctx.now)
        };
        let s = ctx
            .store
            .stats(at(start), at(end), start, end, today)
            .await?;
        let last_day = end.pred_opt().unwrap_or(end);
        let label = match self.period {
            Period::Weekly => format!("week of {}", crate::time::calendar::long_date(start)),
            Period::Monthly => start.format("%B %Y").to_string(),
        };
        let rate = if s.due_in_period > 0 {
            format!(
                "{:.1}%",
                100.0 * s.due_in_period_paid as f64 / s.due_in_period as f64
            )
        } else {
            "n/a".into()
        };
        let stats = json!({
            "period": {
                "kind": match self.period { Period::Weekly => "weekly", Period::Monthly => "monthly" },
                "start": start.to_string(), "end": last_day.to_string(), "label": label,
            },
            "invoices": { "issued": s.issued, "paid": s.paid, "overdue": s.overdue, "open": s.open },
            "collection_rate": rate,
            "due_in_period": s.due_in_period,
            "due_in_period_paid": s.due_in_period_paid,
            "currencies": s.currencies.iter().map(|(c, issued, collected, outstanding)| json!({
                "currency": c,
                "issued_amount": money(*issued, c),
                "collected_amount": money(*collected, c),
                "outstanding_amount": money(*outstanding, c),
                "issued_minor": minor(*issued), "collected_minor": minor(*collected),
                "outstanding_minor": minor(*outstanding),
            })).collect::<Vec<_>>(),
            "notifications": s.notifications.iter().map(|(c, sent, failed)| json!({
                "channel": c, "sent": sent, "failed": failed,
            })).collect::<Vec<_>>(),
            "job_failures": s.job_failures.iter().map(|(j, n)| json!({
                "job_name": j, "failures": n,
            })).collect::<Vec<_>>(),
            "generated_at": ctx.now.format("%Y-%m-%d %H:%M UTC").to_string(),
        });
        let context = json!({ "stats": stats });
        let mut messages = vec![];
        for channel in &self.channels {
            let recipients: Vec<String> = match channel {
                ChannelKind::Email => self.recipients.clone(),
                _ => vec!["webhook".into()],
            };
            for to in recipients {
                messages.push(Message {
                    key: format!("stats:{}:{start}:{}:{to}", ctx.job_name, channel.as_str()),
                    channel: *channel,
                    recipient: Some(to),
                    template: self.template.clone(),
                    invoice_id: None,
                    context: context.clone(),
                    zone: None,
                    window: None,
                });
            }
        }
        let fates = ctx.send(&mut messages).await?;
        let mut tally = Tally::default();
        tally.record(&messages, &fates, |_| format!("the {label} report"));
        let mut outcome = Outcome::default();
        outcome.metadata.insert("stats".into(), stats);
        // Records processed: the messages sent, as every kind that sends counts them; a re-run
        // of a period already sent counts 0.
        Ok(tally.into_outcome(outcome, ctx.dry_run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::assert_refused;

    #[test]
    fn the_last_full_period_ends_before_today() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        // 2026-11-23 is a Monday.
        assert_eq!(
            last_period(Period::Weekly, d("2026-11-23")),
            (d("2026-11-16"), d("2026-11-23"))
        );
        assert_eq!(
            last_period(Period::Weekly, d("2026-11-29")),
            (d("2026-11-16"), d("2026-11-23"))
        );
        assert_eq!(
            last_period(Period::Monthly, d("2026-12-01")),
            (d("2026-11-01"), d("2026-12-01"))
        );
        assert_eq!(
            last_period(Period::Monthly, d("2026-01-15")),
            (d("2025-12-01"), d("2026-01-01"))
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_what_to_write() {
        #[rustfmt::skip]
        let table = [
            ("channels = [\"webhook\", \"sms\"]",
             "a report goes by `email` or `webhook`, not by SMS or WhatsApp"),
            ("recipients = []",
             "`recipients` must list at least one email address, e.g. \
              `[\"accounts@example.com\"]`"),
            ("recipients = [\"accounts\"]",
             "`recipients`: `accounts` is not an email address (Missing domain or user)"),
        ];
        let table =
            table.map(|(params, message)| (format!("period = \"weekly\"\n{params}"), message));
        assert_refused::<StatsReportJob>(&table);
        let job: StatsReportJob =
            toml::from_str("period = \"weekly\"\nchannels = [\"webhook\"]").unwrap();
        assert_eq!(
            job.check(&Notifier::empty()).unwrap_err().to_string(),
            "the channel `webhook` is not configured; add a `[channels.webhook]` section or \
             remove it from `channels`"
        );
    }
}
