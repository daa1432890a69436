//! `POST /payments/paystack` and `POST /payments/stripe`: a provider tells us a payment came in.
//! The signature is checked on the raw body before anything is parsed (Paystack: the
//! `x-paystack-signature` HMAC-SHA512 of the body with the secret key; Stripe: a `v1` HMAC-SHA256
//! of `t.body` with the endpoint's signing secret, `t` at most 5 minutes old); a bad or missing
//! one is 401 and writes nothing. The event is then read by `billing::providers` and applied by
//! `billing::payments::apply`, which records it once per provider event id.
//!
//! Answers: 200 once the event is committed (applied, a replay, an unknown invoice kept for a
//! person, an event type we do not use); 400 for a signed body that cannot be read (a person
//! must look: retrying will not help); 503 when the store or the secret is not there (the
//! provider retries, so nothing is lost); 404 for a provider without its `[payments.*]`.
//!
//! Verification lives here rather than in `billing/` because it is the listener's
//! authentication of a request, like the trigger's bearer token (DESIGN.md: `http/` holds auth);
//! what an event means for an invoice is billing's.

use std::time::Duration;

use crate::http::Body;
use hmac::{Hmac, Mac};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use sha2::{Sha256, Sha512};

use super::{HttpState, json_reply, not_found};
use crate::billing::payments::{self, Applied, InvoiceRef, PaymentError, PaymentEvent};
use crate::billing::providers::{self, Parsed};

/// The largest event body read: Paystack's and Stripe's events are a few kB.
const MAX_BODY: usize = 1 << 20;
/// How old a Stripe signature's timestamp may be (Stripe's own libraries' default).
pub const STRIPE_TOLERANCE: Duration = Duration::from_secs(300);
/// How long the store may take to apply an event before the provider is told to retry.
const STORE_PATIENCE: Duration = Duration::from_secs(10);

/// A provider with a payment webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provider {
    Paystack,
    Stripe,
}

impl Provider {
    /// The provider whose webhook `path` is.
    pub(super) fn of_path(path: &str) -> Option<Provider> {
        match path {
            "/payments/paystack" => Some(Provider::Paystack),
            "/payments/stripe" => Some(Provider::Stripe),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Provider::Paystack => "paystack",
            Provider::Stripe => "stripe",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Provider::Paystack => "x-paystack-signature",
            Provider::Stripe => "stripe-signature",
        }
    }
}

/// Why a webhook's signature is refused (401; the text is the answer's `error`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing `{0}` header: the request is not signed")]
    Missing(&'static str),
    #[error(
        "the `x-paystack-signature` header is not the HMAC-SHA512 of the body with the \
         secret key"
    )]
    Paystack,
    #[error("the `Stripe-Signature` header has no `t=` timestamp or no `v1=` signature")]
    StripeMalformed,
    #[error(
        "the `Stripe-Signature` timestamp is {age}s old, beyond the 5-minute tolerance: a \
         replayed request, or this server's clock is wrong"
    )]
    StripeStale { age: i64 },
    #[error(
        "no `v1` signature of the `Stripe-Signature` header is the endpoint's signing secret's"
    )]
    Stripe,
    #[error(
        "the `X-Twilio-Signature` header is not the HMAC-SHA1 of `inbound_url` and the \
         parameters with the auth token"
    )]
    Twilio,
}

/// Checks Paystack's `x-paystack-signature` (hex HMAC-SHA512 of `body` keyed by `secret`),
/// compared in constant time.
pub fn verify_paystack(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing("x-paystack-signature"))?;
    let presented = hex::decode(header.trim()).map_err(|_| SignatureError::Paystack)?;
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&presented)
        .map_err(|_| SignatureError::Paystack)
}

/// Checks Stripe's `Stripe-Signature` (`t=...,v1=...[,v1=...]`): some `v1` is the hex
/// HMAC-SHA256 of `t.body` keyed by `secret` (during a secret's rotation Stripe signs with
/// both), and `t` is at most [`STRIPE_TOLERANCE`] before `now` (Unix seconds).
pub fn verify_stripe(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing("stripe-signature"))?;
    let mut t = None;
    let mut v1 = vec![];
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", v)) if t.is_none() => t = Some(v),
            Some(("v1", v)) => v1.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::StripeMalformed)?;
    if v1.is_empty() {
        return Err(SignatureError::StripeMalformed);
    }
    let stamp: i64 = t.parse().map_err(|_| SignatureError::StripeMalformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let signed = v1.iter().any(|v| {
        hex::decode(v).is_ok_and(|presented| mac.clone().verify_slice(&presented).is_ok())
    });
    if !signed {
        return Err(SignatureError::Stripe);
    }
    // Checked after the signature, so that an unsigned caller learns nothing of our clock.
    let age = now.saturating_sub(stamp);
    if age > STRIPE_TOLERANCE.as_secs() as i64 {
        return Err(SignatureError::StripeStale { age });
    }
    Ok(())
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json_reply(status, json!({ "error": message.to_string() }))
}

/// Applies a checked payment and answers with what became of it: 200 with the outcome once it
/// is recorded (a replay is `duplicate`); 503 when the store fails or is slow (the caller
/// retries, and the retry is applied once); 400 for an event the store refuses to take.
async fn record(
    state: &HttpState,
    event: &PaymentEvent,
    now: chrono::DateTime<chrono::Utc>,
    name: &str,
) -> Response<Body> {
    let applied = tokio::time::timeout(
        STORE_PATIENCE,
        payments::apply(&state.shared.store, event, now),
    )
    .await;
    let outcome = match applied {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(PaymentError::Store(e))) => {
            tracing::error!(provider = name, event = %event.event_id, error = %e,
                "payment webhook: the store failed; the provider will retry");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the payment could not be recorded now; retry later",
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(provider = name, event = %event.event_id, error = %e,
                "payment webhook: event refused");
            return error(StatusCode::BAD_REQUEST, e);
        }
        Err(_) => {
            tracing::error!(provider = name, event = %event.event_id,
                "payment webhook: the store took over 10s; the provider will retry");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the payment could not be recorded now; retry later",
            );
        }
    };
    let body = match outcome {
        Applied::Paid { number } => json!({"outcome": "paid", "invoice": number}),
        Applied::Partial {
            number,
            paid_minor,
            amount_minor,
        } => json!({"outcome": "partial", "invoice": number, "paid_minor": paid_minor,
                    "amount_minor": amount_minor}),
        Applied::Duplicate => json!({"outcome": "duplicate"}),
        Applied::UnknownInvoice => json!({"outcome": "unknown_invoice"}),
        Applied::NotApplied { number, why } => {
            json!({"outcome": "not_applied", "invoice": number, "why": why})
        }
    };
    json_reply(StatusCode::OK, body)
}

/// Serves one webhook request of `provider`.
pub(super) async fn webhook(
    req: Request<Incoming>,
    provider: Provider,
    state: &HttpState,
) -> Response<Body> {
    let name = provider.name();
    let source = match provider {
        Provider::Paystack => state.payments.paystack.as_ref(),
        Provider::Stripe => state.payments.stripe.as_ref(),
    };
    let Some(source) = source else {
        return not_found();
    };
    let header = req
        .headers()
        .get(provider.header())
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match super::body_within(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let secret = match source.read() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                provider = name, error = %e,
                "payment webhook refused: cannot read its `[payments.{name}]` secret; the \
                 provider will retry"
            );
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "payments are not set up: the signing secret cannot be read",
            );
        }
    };
    let secret = secret.expose().as_bytes();
    let now = state.shared.clock.now();
    let verified = match provider {
        Provider::Paystack => verify_paystack(secret, &body, header.as_deref()),
        Provider::Stripe => verify_stripe(secret, &body, header.as_deref(), now.timestamp()),
    };
    if let Err(e) = verified {
        tracing::warn!(provider = name, error = %e, "payment webhook refused");
        return error(StatusCode::UNAUTHORIZED, e);
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(provider = name, error = %e, "payment webhook: signed body is not JSON");
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let parsed = match provider {
        Provider::Paystack => providers::paystack_event(&value),
        Provider::Stripe => providers::stripe_event(&value),
    };
    let event = match parsed {
        Ok(Parsed::Payment(event)) => event,
        Ok(Parsed::Ignored { kind, why }) => {
            tracing::debug!(
                provider = name,
                event = kind,
                "payment webhook ignored: {why}"
            );
            return json_reply(StatusCode::OK, json!({ "ignored": why }));
        }
        Err(e) => {
            tracing::warn!(provider = name, error = %e, "payment webhook: unreadable event");
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    record(state, &event, now, name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> String {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
        m.update(data);
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn paystack_signatures_are_the_hmac_sha512_of_the_raw_body() {
        let body = br#"{"event":"charge.success","data":{"id":1}}"#;
        let good = hex_mac::<Hmac<Sha512>>(b"sk_test_1", body);
        assert_eq!(verify_paystack(b"sk_test_1", body, Some(&good)), Ok(()));
        for (secret, body, header, err) in [
            (
                &b"sk_test_1"[..],
                &b"{}"[..],
                Some(good.as_str()),
                SignatureError::Paystack,
            ),
            (
                b"sk_test_2",
                body,
                Some(good.as_str()),
                SignatureError::Paystack,
            ),
            (b"sk_test_1", body, Some("zz"), SignatureError::Paystack),
            (
                b"sk_test_1",
                body,
                Some(&good[..64]),
                SignatureError::Paystack,
            ),
            (
                b"sk_test_1",
                body,
                None,
                SignatureError::Missing("x-paystack-signature"),
            ),
        ] {
            assert_eq!(verify_paystack(secret, body, header), Err(err));
        }
    }

    #[test]
    fn stripe_signatures_sign_the_timestamp_and_body_and_expire_after_five_minutes() {
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_795_000_000_i64;
        let sig = |secret: &[u8], t: i64| {
            hex_mac::<Hmac<Sha256>>(
                secret,
                format!("{t}.{}", std::str::from_utf8(body).unwrap()).as_bytes(),
            )
        };
        let good = format!("t={t},v1={}", sig(b"whsec_new", t));
        assert_eq!(verify_stripe(b"whsec_new", body, Some(&good), t), Ok(()));
        assert_eq!(
            verify_stripe(b"whsec_new", body, Some(&good), t + 300),
            Ok(())
        );
        // While the secret rotates, Stripe signs with the old and the new one.
        let rotating = format!(
            "t={t},v1={},v1={},v0=abc",
            sig(b"whsec_old", t),
            sig(b"whsec_new", t)
        );
        assert_eq!(
            verify_stripe(b"whsec_new", body, Some(&rotating), t),
            Ok(())
        );
        let message = |header: Option<&str>, now: i64| {
            verify_stripe(b"whsec_new", body, header, now)
                .unwrap_err()
                .to_string()
        };
        for (header, now, text) in [
            (
                Some(good.clone()),
                t + 301,
                "the `Stripe-Signature` timestamp is 301s old, beyond the 5-minute tolerance: a \
              replayed request, or this server's clock is wrong",
            ),
            (
                Some(format!("t={},v1={}", t + 1, sig(b"whsec_new", t))),
                t,
                "no `v1` signature of the `Stripe-Signature` header is the endpoint's signing \
              secret's",
            ),
            (
                Some(format!("t={t},v1={}", sig(b"whsec_old", t))),
                t,
                "no `v1` signature of the `Stripe-Signature` header is the endpoint's signing \
              secret's",
            ),
            (
                Some(format!("t={t},v0={}", sig(b"whsec_new", t))),
                t,
                "the `Stripe-Signature` header has no `t=` timestamp or no `v1=` signature",
            ),
            (
                Some(format!("v1={}", sig(b"whsec_new", t))),
                t,
                "the `Stripe-Signature` header has no `t=` timestamp or no `v1=` signature",
            ),
            (
                None,
                t,
                "missing `stripe-signature` header: the request is not signed",
            ),
        ] {
            assert_eq!(message(header.as_deref(), now), text, "{header:?}");
        }
        // A tampered body fails even with a fresh, well-formed header.
        assert_eq!(
            verify_stripe(b"whsec_new", br#"{"id":"evt_2"}"#, Some(&good), t),
            Err(SignatureError::Stripe)
        );
    }
}

/// The body of `POST /invoices/NUMBER/payments`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiPayment {
    amount_minor: i64,
    /// Your id of the payment: the same reference twice is applied once.
    reference: String,
    /// RFC 3339; default now.
    paid_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Default the invoice's.
    currency: Option<String>,
}

/// `POST /invoices/NUMBER/payments` with the `[http]` bearer token: the application reports a
/// payment of its own (`{"amount_minor", "reference", "paid_at"?, "currency"?}`), applied as a
/// provider's is, once per `reference`. An invoice that does not exist is 404 and nothing is
/// kept (the caller can correct it); a body that does not read is 400.
pub(super) async fn invoice_payment(
    req: Request<Incoming>,
    number: &str,
    state: &HttpState,
) -> Response<Body> {
    if let Some(refused) =
        super::unauthorized_unless_token(&req, state, "POST /invoices/NUMBER/payments")
    {
        return refused;
    }
    let body = match super::body_within(req.into_body(), 64 << 10).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    // Read once: the payment from the JSON, which is kept with it as received.
    let read = serde_json::from_slice::<serde_json::Value>(&body).and_then(|value| {
        use serde::Deserialize;
        ApiPayment::deserialize(&value).map(|p| (p, value))
    });
    let (payment, payload) = match read {
        Ok(read) => read,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON like {{\"amount_minor\": 150000, \"reference\": \
                     \"your payment id\", \"paid_at\": \"2026-11-30T10:00:00Z\"}}: {e}"
                ),
            );
        }
    };
    let found =
        tokio::time::timeout(STORE_PATIENCE, state.shared.store.invoice_by_number(number)).await;
    let invoice = match found {
        Ok(Ok(Some(invoice))) => invoice,
        Ok(Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no invoice numbered `{number}`"),
            );
        }
        Ok(Err(e)) => {
            tracing::error!(invoice = number, error = %e, "POST /invoices/NUMBER/payments: the store failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the payment could not be recorded now; retry later",
            );
        }
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the payment could not be recorded now; retry later",
            );
        }
    };
    let now = state.shared.clock.now();
    let event = PaymentEvent {
        provider: "api".into(),
        event_id: payment.reference.clone(),
        invoice: InvoiceRef::Number(number.to_string()),
        amount_minor: payment.amount_minor,
        currency: payment.currency.unwrap_or(invoice.currency),
        paid_at: payment.paid_at.unwrap_or(now),
        reference: Some(payment.reference),
        payload,
    };
    record(state, &event, now, "api").await
}
