//! `create_invoices` (seed 001): for subscriptions with `auto_invoice`, creates the invoices of
//! the billing periods that overlap today..today + `days_ahead` (the current period included, so
//! a day missed is caught up, unless `bill_past_periods = false`), in batches of `batch_size`.
//! Each is due `payment_terms_days` after its period starts, or after today when the period
//! is already under way: a new invoice is never born overdue. An invoice is unique per
//! (subscription, period), so re-runs create nothing twice (invariant 4). With `paystack`, each
//! new invoice gets a payment request, with the per-item retry policy `item_retry` (seed 001:
//! 3 attempts, 1 s .. 10 s, factor 2, jitter); an invoice whose request failed is tried again by
//! the next run.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Days;
use serde::Deserialize;

use super::paystack::{PaystackConfig, PaystackError};
use super::sending::MAX_ERRORS;
use super::{Job, JobError, Outcome, RunContext};
use crate::billing::periods;
use crate::retry::RetryPolicy;
use crate::store::billing::NewInvoice;
use crate::store::ts;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvoicesJob {
    #[serde(default = "thirty")]
    pub days_ahead: u32,
    #[serde(default = "hundred")]
    pub batch_size: i64,
    #[serde(default = "prefix")]
    pub number_prefix: String,
    pub paystack: Option<PaystackConfig>,
    #[serde(default)]
    pub item_retry: ItemRetry,
    /// Whether a period already under way today (the first run of a new subscription, or a
    /// run after days down) is billed. It is, by default, due `payment_terms_days` after
    /// today: an invoice is never born overdue. `false` skips such periods.
    #[serde(default = "yes")]
    pub bill_past_periods: bool,
}

/// The retry policy of one payment request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRetry {
    #[serde(default = "three")]
    pub attempts: u32,
    #[serde(default = "one_second", with = "crate::time::duration")]
    pub initial: Duration,
    #[serde(default = "ten_seconds", with = "crate::time::duration")]
    pub max: Duration,
    #[serde(default = "two")]
    pub factor: f64,
    #[serde(default = "yes")]
    pub jitter: bool,
}

impl Default for ItemRetry {
    fn default() -> Self {
        ItemRetry {
            attempts: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: true,
        }
    }
}

fn thirty() -> u32 {
    30
}
fn hundred() -> i64 {
    100
}
fn prefix() -> String {
    "INV-".into()
}
fn three() -> u32 {
    3
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn two() -> f64 {
    2.0
}
fn yes() -> bool {
    true
}

/// What is wrong with the parameters of a `create_invoices` job; each out-of-range variant
/// carries the value found.
#[derive(Debug, thiserror::Error)]
pub enum CreateInvoicesError {
    #[error("`days_ahead` must be 0-366 (found {0})")]
    DaysAhead(u32),
    #[error("`batch_size` must be 1-10000 (found {0})")]
    BatchSize(i64),
    #[error("`item_retry.attempts` must be 1-10 (found {0})")]
    Attempts(u32),
    #[error("`item_retry.factor` must be 1.0 or more")]
    Factor,
    #[error(transparent)]
    Paystack(#[from] PaystackError),
}

impl Job for CreateInvoicesJob {
    type Invalid = CreateInvoicesError;

    fn validate(&self) -> Result<(), CreateInvoicesError> {
        if self.days_ahead > 366 {
            return Err(CreateInvoicesError::DaysAhead(self.days_ahead));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(CreateInvoicesError::BatchSize(self.batch_size));
        }
        if !(1..=10).contains(&self.item_retry.attempts) {
            return Err(CreateInvoicesError::Attempts(self.item_retry.attempts));
        }
        if !(self.item_retry.factor >= 1.0 && self.item_retry.factor.is_finite()) {
            return Err(CreateInvoicesError::Factor);
        }
        if let Some(p) = &self.paystack {
            p.validate()?;
        }
        Ok(())
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        let today = ctx.today();
        let horizon = today + Days::new(self.days_ahead as u64);
        let mut outcome = Outcome::default();
        let mut created = vec![];
        let mut after = String::new();
        loop {
            let subs = ctx
                .store
                .auto_invoice_subscriptions(today, horizon, &after, self.batch_size)
                .await?;
            let Some(last) = subs.last() else { break };
            after = last.id.clone();
            let mut candidates = vec![];
            for s in &subs {
                let terms = Days::new(s.payment_terms_days.max(0) as u64);
                for (start, end) in periods(s, today, horizon) {
                    if start < today && !self.bill_past_periods {
                        continue;
                    }
                    candidates.push(NewInvoice {
                        id: uuid::Uuid::now_v7().to_string(),
                        number: String::new(),
                        customer_id: s.customer_id.clone(),
                        subscription_id: Some(s.id.clone()),
                        period_start: Some(start),
                        period_end: Some(end),
                        amount_minor: s.amount_minor,
                        currency: s.currency.clone(),
                        issued_at: ts(ctx.now),
                        // Terms run from the period's start, or from today for a period
                        // already under way.
                        due_date: start.max(today) + terms,
                        status: "open".into(),
                        paid_at: None,
                        provider_ref: None,
                        escalation_level: 0,
                        escalated_at: None,
                    });
                }
            }
            let pairs: Vec<_> = candidates
                .iter()
                .filter_map(|c| Some((c.subscription_id.clone()?, c.period_start?)))
                .collect();
            let existing = ctx.store.invoiced_periods(&pairs).await?;
            let mut fresh: Vec<NewInvoice> = candidates
                .into_iter()
                .filter(|c| {
                    !existing.contains(&(
                        c.subscription_id.clone().unwrap_or_default(),
                        c.period_start.unwrap_or_default(),
                    ))
                })
                .collect();
            if ctx.dry_run {
                created.extend(fresh);
            } else if !fresh.is_empty() {
                created.extend(
                    ctx.store
                        .insert_invoices(&mut fresh, &self.number_prefix)
                        .await?,
                );
            }
            if (subs.len() as i64) < self.batch_size {
                break;
            }
        }
        outcome.records = created.len() as i64;
        let key = if ctx.dry_run {
            "would_create"
        } else {
            "created"
        };
        outcome.metadata.insert(key.into(), created.len().into());
        let sample: Vec<serde_json::Value> = created
            .iter()
            .take(50)
            .map(|i| {
                serde_json::json!({
                    "number": i.number, "customer_id": i.customer_id,
                    "period_start": i.period_start, "amount_minor": i.amount_minor,
                    "currency": i.currency, "due_date": i.due_date,
                })
            })
            .collect();
        outcome.metadata.insert("invoices".into(), sample.into());
        if !created.is_empty() {
            tracing::info!(job = %ctx.job_name, count = created.len(), dry_run = ctx.dry_run, "created invoices");
        }

        if let Some(paystack) = &self.paystack {
            self.payment_requests(ctx, paystack, &mut outcome).await?;
        }
        Ok(outcome)
    }
}

impl CreateInvoicesJob {
    /// Creates the missing payment requests, one invoice at a time with the per-item retry
    /// policy; a failed one is an error of this run and is tried again by the next. The
    /// retries are counted in the run's metadata, so a run that needed them says so.
    async fn payment_requests(
        &self,
        ctx: &RunContext,
        paystack: &PaystackConfig,
        outcome: &mut Outcome,
    ) -> Result<(), JobError> {
        let policy = RetryPolicy {
            attempts: self.item_retry.attempts,
            initial: self.item_retry.initial,
            factor: self.item_retry.factor,
            max: self.item_retry.max,
            jitter: self.item_retry.jitter,
        };
        let mut tried: HashSet<String> = HashSet::new();
        let (mut requested, mut failed, mut retries) = (0i64, 0i64, 0i64);
        loop {
            let pending = ctx
                .store
                .invoices_without_provider_ref(self.batch_size + tried.len() as i64)
                .await?;
            let todo: Vec<_> = pending
                .into_iter()
                .filter(|i| !tried.contains(&i.id))
                .collect();
            if todo.is_empty() {
                break;
            }
            for invoice in todo {
                tried.insert(invoice.id.clone());
                if ctx.dry_run {
                    requested += 1;
                    continue;
                }
                let mut attempt = 1;
                let result = loop {
                    let request = async {
                        let customer = paystack.customer_code(&invoice).await?;
                        if invoice.provider_customer_id.is_none() {
                            ctx.store
                                .set_provider_customer_id(&invoice.customer_id, &customer)
                                .await
                                .map_err(|e| (true, e.to_string()))?;
                        }
                        paystack.payment_request(&invoice, &customer).await
                    };
                    match request.await {
                        Ok(code) => break Ok(code),
                        Err((true, e)) if attempt < policy.attempts => {
                            attempt += 1;
                            retries += 1;
                            tracing::warn!(invoice = %invoice.number, attempt, error = %e, "payment request failed; retrying");
                            tokio::time::sleep(policy.delay_before(attempt)).await;
                        }
                        Err((_, e)) => break Err(e),
                    }
                };
                match result {
                    Ok(code) => {
                        ctx.store.set_provider_ref(&invoice.id, &code).await?;
                        requested += 1;
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(invoice = %invoice.number, error = %e, "payment request failed");
                        if outcome.errors.len() < MAX_ERRORS {
                            outcome.errors.push(format!(
                                "invoice {}: payment request failed after {attempt} attempt(s): {e}",
                                invoice.number
                            ));
                        }
                    }
                }
            }
        }
        let key = if ctx.dry_run {
            "would_request_payment"
        } else {
            "payment_requests"
        };
        outcome.metadata.insert(key.into(), requested.into());
        outcome
            .metadata
            .insert("payment_requests_failed".into(), failed.into());
        outcome
            .metadata
            .insert("payment_request_retries".into(), retries.into());
        Ok(())
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
            ("days_ahead = 400", "`days_ahead` must be 0-366 (found 400)"),
            ("batch_size = 0", "`batch_size` must be 1-10000 (found 0)"),
            ("item_retry = { attempts = 11 }", "`item_retry.attempts` must be 1-10 (found 11)"),
            ("item_retry = { factor = 0.5 }", "`item_retry.factor` must be 1.0 or more"),
            ("paystack = { base_url = \"nope\", secret_key_env = \"K\" }",
             "invalid `paystack.base_url` `nope`: relative URL without a base"),
            ("paystack = {}", "`paystack` needs `secret_key_env` or `secret_key_file`"),
            ("paystack = { secret_key_env = \"K\", secret_key_file = \"k\" }",
             "set only one of `paystack.secret_key_env` and `paystack.secret_key_file`, not both"),
        ];
        assert_refused::<CreateInvoicesJob>(&table);
    }
}
