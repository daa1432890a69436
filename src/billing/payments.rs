//! Payments in: a provider's event (Paystack, Stripe) or the application's own call, checked
//! and applied to the invoice it names. The store records each event once per provider and
//! applies it in one transaction with what the invoice's payment cancels (its pending tasks,
//! its campaign memberships); reminders and escalations read open invoices only, so a paid
//! invoice gets no more of them (invariant 6).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::store::payments::PaymentIn;
pub use crate::store::payments::PaymentOutcome as Applied;
use crate::store::{Store, StoreError};

/// A payment as a provider or the application reported it.
#[derive(Debug, Clone)]
pub struct PaymentEvent {
    /// `paystack`, `stripe` or `api`.
    pub provider: String,
    /// Unique per provider: the same event twice is applied once.
    pub event_id: String,
    pub invoice: InvoiceRef,
    /// In the currency's minor units.
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub paid_at: DateTime<Utc>,
    /// The provider's payment reference.
    pub reference: Option<String>,
    /// The event as received, kept with the payment.
    pub payload: Value,
}

/// How an event names its invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceRef {
    /// The invoice number (`INV-000123`).
    Number(String),
    /// `invoices.provider_ref`: where `create_invoices` keeps Paystack's payment request code.
    ProviderRef(String),
}

/// Why a payment is refused before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("`amount_minor` must be a whole number of minor units above 0 (found {0})")]
    Amount(i64),
    #[error("`currency` must be an ISO 4217 code such as `ZAR` (found `{0}`)")]
    Currency(String),
    #[error("the event has no id, so a replay could not be told from a new payment")]
    NoEventId,
    #[error("the event names no invoice (by number or payment reference)")]
    NoInvoice,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records `event` and applies it to its invoice (see [`Store::apply_payment`]); logs what
/// became of it: an event naming no invoice, or one that cannot take it, is a warning (it is
/// kept in `payments`, so nothing is lost).
pub async fn apply(
    store: &Store,
    event: &PaymentEvent,
    now: DateTime<Utc>,
) -> Result<Applied, PaymentError> {
    if event.amount_minor <= 0 {
        return Err(PaymentError::Amount(event.amount_minor));
    }
    let c = &event.currency;
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(PaymentError::Currency(c.clone()));
    }
    if event.event_id.trim().is_empty() {
        return Err(PaymentError::NoEventId);
    }
    let (number, provider_ref) = match &event.invoice {
        InvoiceRef::Number(n) if !n.trim().is_empty() => (Some(n.trim().to_string()), None),
        InvoiceRef::ProviderRef(r) if !r.trim().is_empty() => (None, Some(r.trim().to_string())),
        _ => return Err(PaymentError::NoInvoice),
    };
    let payment = PaymentIn {
        provider: event.provider.clone(),
        event_id: event.event_id.clone(),
        number,
        provider_ref,
        amount_minor: event.amount_minor,
        currency: c.clone(),
        paid_at: event.paid_at,
        reference: event.reference.clone(),
        payload: event.payload.clone(),
    };
    let applied = store.apply_payment(&payment, now).await?;
    let (provider, id) = (&event.provider, &event.event_id);
    match &applied {
        Applied::Paid { number } => {
            tracing::info!(
                provider,
                event = id,
                invoice = number,
                "payment: invoice paid"
            )
        }
        Applied::Partial {
            number,
            paid_minor,
            amount_minor,
        } => tracing::info!(
            provider,
            event = id,
            invoice = number,
            paid_minor,
            amount_minor,
            "payment: part of the invoice paid"
        ),
        Applied::Duplicate => {
            tracing::debug!(
                provider,
                event = id,
                "payment: event seen before; nothing changed"
            )
        }
        Applied::UnknownInvoice => tracing::warn!(
            provider, event = id, invoice = ?event.invoice,
            "payment: no such invoice; the event is kept in `payments` (tickler payments list)"
        ),
        Applied::NotApplied { number, why } => tracing::warn!(
            provider,
            event = id,
            invoice = number,
            "payment not applied: {why}; the event is kept in `payments`"
        ),
    }
    Ok(applied)
}
