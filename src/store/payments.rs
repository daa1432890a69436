//! Payments in: an invoice marked paid by hand (`tickler invoice mark-paid`) or paid by a
//! provider's event (`payments`, each event once per provider). Either way the invoice's
//! status, its pending tasks and its campaign memberships change in one transaction, so a paid
//! invoice gets nothing more (invariant 6).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::audit::{Audit, write_audit};
use super::queue::settle_campaign;
use super::{Doing, Result, Store, ts, with_pool};

/// Inside a transaction, after invoice `$id` (numbered `$number`) became paid at `$at`: cancels
/// its pending tasks, ends its campaign memberships and completes the campaigns left without
/// an invoice.
macro_rules! invoice_paid {
    ($tx:ident, $store:ident, $id:expr, $number:expr, $at:expr) => {{
        let why = format!("cancelled: invoice {} was paid", $number);
        sqlx::query(&$store.sql(
            "UPDATE scheduled_tasks SET status = 'cancelled', updated_at = $2,
                    error_message = $3
              WHERE status = 'pending' AND invoice_id = $1::uuid",
        ))
        .bind($id)
        .bind($at)
        .bind(&why)
        .execute(&mut *$tx)
        .await
        .doing("cancelling the tasks of a paid invoice")?;
        // Its messages waiting for their send window: their tasks were just cancelled.
        sqlx::query(&$store.sql(
            "UPDATE notification_log SET status = 'cancelled', updated_at = $2::timestamptz,
                    error = $3
              WHERE status = 'deferred' AND invoice_id = $1::uuid",
        ))
        .bind($id)
        .bind(ts($at))
        .bind(&why)
        .execute(&mut *$tx)
        .await
        .doing("cancelling the deferred messages of a paid invoice")?;
        let campaigns: Vec<String> = sqlx::query_scalar(&$store.sql(
            "UPDATE campaign_invoices SET status = 'paid', ended_at = $2
              WHERE invoice_id = $1::uuid AND status = 'active'
             RETURNING campaign_id::text",
        ))
        .bind($id)
        .bind($at)
        .fetch_all(&mut *$tx)
        .await
        .doing("ending the campaigns of a paid invoice")?;
        for campaign in &campaigns {
            settle_campaign!($tx, $store, campaign.as_str(), $at);
        }
    }};
}

/// A provider's payment to record and apply.
#[derive(Debug, Clone)]
pub struct PaymentIn {
    /// `paystack`, `stripe`, `api`.
    pub provider: String,
    /// The provider's id of the event: the same id twice is applied once.
    pub event_id: String,
    /// The invoice by number, or else by `invoices.provider_ref`.
    pub number: Option<String>,
    pub provider_ref: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub paid_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub payload: Value,
}

/// What a payment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// The invoice is paid in full now.
    Paid { number: String },
    /// Added to what the invoice has been paid; not yet all of it.
    Partial {
        number: String,
        paid_minor: i64,
        amount_minor: i64,
    },
    /// This provider's event, or another event of the same payment (its reference), was
    /// recorded before: nothing changed.
    Duplicate,
    /// No invoice by that number or reference: the event is kept (`unknown_invoice`).
    UnknownInvoice,
    /// The invoice cannot take it (paid already, void, another currency): kept, not applied.
    NotApplied { number: String, why: String },
}

/// One row of `payments`, for `tickler payments list`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: String,
    pub provider: String,
    pub event_id: String,
    pub invoice_ref: String,
    pub number: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub paid_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The invoice a payment names, as read inside its transaction.
#[derive(sqlx::FromRow)]
struct Target {
    id: String,
    number: String,
    status: String,
    currency: String,
    amount_minor: i64,
}

impl Store {
    /// Marks an open invoice paid and, in the same transaction, ends its campaign memberships,
    /// cancels its pending tasks and completes campaigns left without invoices. Returns false
    /// when it was not open.
    pub async fn mark_paid(
        &self,
        number: &str,
        paid_at: DateTime<Utc>,
        reference: Option<&str>,
        audit: Option<Audit<'_>>,
    ) -> Result<bool> {
        let begin = self.begin_statement();
        let store = self;
        let paid = self.sql(
            "UPDATE invoices SET status = 'paid', paid_at = $2, updated_at = $2,
                    paid_minor = amount_minor, provider_ref = COALESCE($3, provider_ref)
              WHERE number = $1 AND status = 'open'
             RETURNING id::text",
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("marking an invoice paid")?;
            let Some(id) = sqlx::query_scalar::<_, String>(&paid)
                .bind(number)
                .bind(paid_at)
                .bind(reference)
                .fetch_optional(&mut *tx)
                .await
                .doing("marking an invoice paid")?
            else {
                tx.rollback().await.doing("marking an invoice paid")?;
                return Ok(false);
            };
            invoice_paid!(tx, store, &id, number, paid_at);
            write_audit!(store, tx, audit, paid_at, "marking an invoice paid");
            tx.commit().await.doing("marking an invoice paid")?;
        });
        Ok(true)
    }

    /// Records a provider's payment and applies it, in one transaction: the `payments` row
    /// (once per provider and event id, and per provider and payment reference: a replay, or a
    /// second event of the same payment, changes nothing), the invoice's `paid_minor`,
    /// and, when that reaches its amount, the invoice `paid` with what was pending for it
    /// cancelled. An event that names no invoice, or one that cannot take it, is kept with its
    /// outcome and changes no invoice.
    pub async fn apply_payment(&self, p: &PaymentIn, now: DateTime<Utc>) -> Result<PaymentOutcome> {
        let begin = self.begin_statement();
        let store = self;
        let invoice_ref = match (&p.number, &p.provider_ref) {
            (Some(n), _) => format!("number:{n}"),
            (None, Some(r)) => format!("provider_ref:{r}"),
            (None, None) => "none".to_string(),
        };
        let record = self.sql(
            "INSERT INTO payments (id, provider, event_id, invoice_ref, amount_minor, currency,
                    paid_at, reference, outcome, payload, created_at)
             VALUES ($1::uuid, $2, $3, $4, $5, $6, $7::timestamptz, $8, 'unknown_invoice',
                    $9::jsonb, $10::timestamptz)
             ON CONFLICT DO NOTHING",
        );
        let find = self.sql(
            "SELECT id::text AS id, number, status, currency, amount_minor
               FROM invoices
              WHERE ($1::text IS NOT NULL AND number = $1)
                 OR ($1::text IS NULL AND $2::text IS NOT NULL AND provider_ref = $2)
              ORDER BY created_at LIMIT 1",
        );
        let add = self.sql(
            "UPDATE invoices SET paid_minor = paid_minor + $2, updated_at = $3
              WHERE id = $1::uuid AND status = 'open'
             RETURNING paid_minor",
        );
        let paid = self.sql(
            "UPDATE invoices SET status = 'paid', paid_at = $2, updated_at = $3,
                    provider_ref = COALESCE(provider_ref, $4)
              WHERE id = $1::uuid AND status = 'open'",
        );
        let outcome = self.sql(
            "UPDATE payments SET outcome = $3, detail = $4, invoice_id = $5::uuid
              WHERE provider = $1 AND event_id = $2",
        );
        let id = uuid::Uuid::now_v7().to_string();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("recording a payment")?;
            let inserted = sqlx::query(&record)
                .bind(&id)
                .bind(&p.provider)
                .bind(&p.event_id)
                .bind(&invoice_ref)
                .bind(p.amount_minor)
                .bind(&p.currency)
                .bind(ts(p.paid_at))
                .bind(&p.reference)
                .bind(p.payload.to_string())
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .doing("recording a payment")?
                .rows_affected();
            if inserted == 0 {
                tx.rollback().await.doing("recording a payment")?;
                return Ok(PaymentOutcome::Duplicate);
            }
            let target: Option<Target> = sqlx::query_as(&find)
                .bind(&p.number)
                .bind(&p.provider_ref)
                .fetch_optional(&mut *tx)
                .await
                .doing("finding a payment's invoice")?;
            let (result, detail, invoice_id) = match target {
                None => (PaymentOutcome::UnknownInvoice, None, None),
                Some(t) if t.status != "open" || t.currency != p.currency => {
                    let why = if t.status != "open" {
                        format!("invoice {} is {} already", t.number, t.status)
                    } else {
                        format!(
                            "invoice {} is in {}, the payment in {}",
                            t.number, t.currency, p.currency
                        )
                    };
                    let outcome = PaymentOutcome::NotApplied {
                        number: t.number.clone(),
                        why: why.clone(),
                    };
                    (outcome, Some(why), Some(t.id))
                }
                Some(t) => {
                    // `None`: another payment made it paid since it was read (PostgreSQL).
                    let now_paid: Option<i64> = sqlx::query_scalar(&add)
                        .bind(&t.id)
                        .bind(p.amount_minor)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await
                        .doing("adding a payment to its invoice")?;
                    match now_paid {
                    None => {
                        let why = format!("invoice {} is paid already", t.number);
                        let outcome = PaymentOutcome::NotApplied {
                            number: t.number.clone(),
                            why: why.clone(),
                        };
                        (outcome, Some(why), Some(t.id))
                    }
                    Some(now_paid) if now_paid >= t.amount_minor => {
                        sqlx::query(&paid)
                            .bind(&t.id)
                            .bind(p.paid_at)
                            .bind(now)
                            .bind(&p.reference)
                            .execute(&mut *tx)
                            .await
                            .doing("marking an invoice paid")?;
                        invoice_paid!(tx, store, &t.id, &t.number, now);
                        (PaymentOutcome::Paid { number: t.number }, None, Some(t.id))
                    }
                    Some(now_paid) => {
                        let detail = format!("{now_paid} of {} paid", t.amount_minor);
                        let outcome = PaymentOutcome::Partial {
                            number: t.number,
                            paid_minor: now_paid,
                            amount_minor: t.amount_minor,
                        };
                        (outcome, Some(detail), Some(t.id))
                    }
                    }
                }
            };
            let name = match &result {
                PaymentOutcome::Paid { .. } => "paid",
                PaymentOutcome::Partial { .. } => "partial",
                PaymentOutcome::NotApplied { .. } => "not_applied",
                _ => "unknown_invoice",
            };
            sqlx::query(&outcome)
                .bind(&p.provider)
                .bind(&p.event_id)
                .bind(name)
                .bind(detail)
                .bind(invoice_id)
                .execute(&mut *tx)
                .await
                .doing("recording a payment")?;
            tx.commit().await.doing("recording a payment")?;
            Ok(result)
        })
    }

    /// The newest `limit` payments, newest first; of one invoice when `number` is given.
    pub async fn payments(&self, number: Option<&str>, limit: i64) -> Result<Vec<PaymentRow>> {
        let text = self.sql(
            "SELECT p.id::text AS id, p.provider, p.event_id, p.invoice_ref, i.number,
                    p.amount_minor, p.currency, p.paid_at, p.reference, p.outcome, p.detail,
                    p.created_at
               FROM payments p LEFT JOIN invoices i ON i.id = p.invoice_id
              WHERE $1::text IS NULL OR i.number = $1
              ORDER BY p.created_at DESC, p.id DESC LIMIT $2",
        );
        with_pool!(self, pool => sqlx::query_as::<_, PaymentRow>(&text)
            .bind(number)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("reading payments"))
    }
}
