//! What a payment provider's webhook event means for our invoices: Paystack's
//! `charge.success` and `paymentrequest.success`, Stripe's `invoice.paid`,
//! `checkout.session.completed` and `payment_intent.succeeded`, each read into a
//! [`PaymentEvent`] that `billing::payments::apply` records once. Pure functions of the
//! event's JSON: the signature is checked before (by `http::payments`), the store after.

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use super::payments::{InvoiceRef, PaymentEvent};

/// What an event asks of us.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// A payment to apply to the invoice it names.
    Payment(PaymentEvent),
    /// Nothing to apply (an event type we do not use, a payment naming no invoice of ours, a
    /// checkout not yet paid); `why` is logged.
    Ignored { kind: String, why: &'static str },
}

/// Why an event whose signature was right cannot be read (answered 400: the provider shows it
/// on its dashboard and a person looks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the body is not a JSON object with a string `{0}`")]
    NotAnEvent(&'static str),
    #[error("`{event}` event without `{field}`")]
    Missing { event: String, field: &'static str },
    #[error("`{event}` event: `{field}` is not {expected} (found `{found}`)")]
    Invalid {
        event: String,
        field: &'static str,
        expected: &'static str,
        found: String,
    },
}

type Result<T> = std::result::Result<T, EventError>;

/// Reads a Paystack event (`{"event": "...", "data": {...}}`).
///
/// `charge.success` is a transaction (`data.id`) and names our invoice by
/// `data.metadata.invoice_number` (metadata may come as a JSON string) or else by its
/// `reference`; `paymentrequest.success` names the payment request we created
/// (`data.request_code`, kept in the invoice's `provider_ref`).
pub fn paystack_event(body: &Value) -> Result<Parsed> {
    let kind = str_at(body, "event").ok_or(EventError::NotAnEvent("event"))?;
    let data = &body["data"];
    let invoice = match kind {
        "charge.success" => {
            let metadata = match &data["metadata"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                v => v.clone(),
            };
            match non_empty(str_at(&metadata, "invoice_number")) {
                Some(n) => InvoiceRef::Number(n.to_string()),
                None => match non_empty(str_at(data, "reference")) {
                    Some(r) => InvoiceRef::Number(r.to_string()),
                    None => {
                        return Ok(Parsed::Ignored {
                            kind: kind.to_string(),
                            why: "the charge names no invoice (no `metadata.invoice_number`, \
                                  no `reference`)",
                        });
                    }
                },
            }
        }
        "paymentrequest.success" => {
            let code = non_empty(str_at(data, "request_code"))
                .ok_or_else(|| missing(kind, "data.request_code"))?;
            InvoiceRef::ProviderRef(code.to_string())
        }
        other => {
            return Ok(Parsed::Ignored {
                kind: other.to_string(),
                why: "an event type tickler does not use",
            });
        }
    };
    let event_id = match &data["id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return Err(missing(kind, "data.id")),
    };
    let reference = match kind {
        "charge.success" => str_at(data, "reference"),
        _ => str_at(data, "offline_reference"),
    }
    .map(str::to_string);
    let paid_at = match str_at(data, "paid_at").or_else(|| str_at(data, "paidAt")) {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| invalid(kind, "data.paid_at", "an RFC 3339 time", t))?,
        None => return Err(missing(kind, "data.paid_at")),
    };
    Ok(Parsed::Payment(PaymentEvent {
        provider: "paystack".into(),
        event_id,
        invoice,
        amount_minor: amount(data, "amount", kind)?,
        currency: currency(data, kind)?,
        paid_at,
        reference,
        payload: body.clone(),
    }))
}

/// Reads a Stripe event (`{"id": "evt_...", "type": "...", "created": 1700000000,
/// "data": {"object": {...}}}`); only payments whose object carries `metadata.invoice_number`
/// are ours.
pub fn stripe_event(body: &Value) -> Result<Parsed> {
    let kind = str_at(body, "type").ok_or(EventError::NotAnEvent("type"))?;
    let object = &body["data"]["object"];
    let (amount_field, reference) = match kind {
        "invoice.paid" => (
            "amount_paid",
            str_at(object, "payment_intent").or(str_at(object, "id")),
        ),
        "checkout.session.completed" => {
            // An asynchronous method (a bank debit) completes the session unpaid; its
            // `checkout.session.async_payment_succeeded` is not applied here.
            if str_at(object, "payment_status") != Some("paid") {
                return Ok(Parsed::Ignored {
                    kind: kind.to_string(),
                    why: "the checkout session is completed but not paid",
                });
            }
            (
                "amount_total",
                str_at(object, "payment_intent").or(str_at(object, "id")),
            )
        }
        "payment_intent.succeeded" => ("amount_received", str_at(object, "id")),
        other => {
            return Ok(Parsed::Ignored {
                kind: other.to_string(),
                why: "an event type tickler does not use",
            });
        }
    };
    let Some(number) = non_empty(str_at(&object["metadata"], "invoice_number")) else {
        return Ok(Parsed::Ignored {
            kind: kind.to_string(),
            why: "the payment carries no `metadata.invoice_number`",
        });
    };
    let event_id = non_empty(str_at(body, "id")).ok_or_else(|| missing(kind, "id"))?;
    // When the invoice says when it was paid, that; otherwise when the event happened.
    let paid_at = object["status_transitions"]["paid_at"]
        .as_i64()
        .or_else(|| body["created"].as_i64())
        .ok_or_else(|| missing(kind, "created"))?;
    let paid_at = DateTime::from_timestamp(paid_at, 0)
        .ok_or_else(|| invalid(kind, "created", "a Unix time", &paid_at.to_string()))?;
    Ok(Parsed::Payment(PaymentEvent {
        provider: "stripe".into(),
        event_id: event_id.to_string(),
        invoice: InvoiceRef::Number(number.to_string()),
        amount_minor: amount(object, amount_field, kind)?,
        currency: currency(object, kind)?,
        paid_at,
        reference: reference.map(str::to_string),
        payload: body.clone(),
    }))
}

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key)?.as_str()
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

fn missing(event: &str, field: &'static str) -> EventError {
    EventError::Missing {
        event: event.to_string(),
        field,
    }
}

fn invalid(event: &str, field: &'static str, expected: &'static str, found: &str) -> EventError {
    EventError::Invalid {
        event: event.to_string(),
        field,
        expected,
        found: found.to_string(),
    }
}

/// A positive whole amount in minor units.
fn amount(object: &Value, field: &'static str, event: &str) -> Result<i64> {
    match object.get(field) {
        None | Some(Value::Null) => Err(missing(event, field)),
        Some(v) => v.as_i64().filter(|a| *a > 0).ok_or_else(|| {
            invalid(
                event,
                field,
                "a positive whole amount in minor units",
                &v.to_string(),
            )
        }),
    }
}

/// The ISO 4217 code, upper case (Stripe writes it lower case).
fn currency(object: &Value, event: &str) -> Result<String> {
    let c = str_at(object, "currency").ok_or_else(|| missing(event, "currency"))?;
    if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
        Ok(c.to_ascii_uppercase())
    } else {
        Err(invalid(
            event,
            "currency",
            "a three-letter currency code",
            c,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payment(p: Result<Parsed>) -> PaymentEvent {
        match p.unwrap() {
            Parsed::Payment(e) => e,
            other => panic!("not a payment: {other:?}"),
        }
    }

    fn ignored(p: Result<Parsed>) -> &'static str {
        match p.unwrap() {
            Parsed::Ignored { why, .. } => why,
            other => panic!("not ignored: {other:?}"),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn paystack_charge_success_names_the_invoice_by_metadata_or_reference() {
        let body = json!({"event": "charge.success", "data": {
            "id": 302961, "status": "success", "reference": "T123456789",
            "amount": 150000, "currency": "NGN", "paid_at": "2026-11-20T09:15:01.000Z",
            "metadata": {"invoice_number": "INV-2026-0042"}}});
        let e = payment(paystack_event(&body));
        assert_eq!(e.provider, "paystack");
        assert_eq!(e.event_id, "302961");
        assert_eq!(e.invoice, InvoiceRef::Number("INV-2026-0042".into()));
        assert_eq!(e.amount_minor, 150000);
        assert_eq!(e.currency, "NGN");
        assert_eq!(e.paid_at, at("2026-11-20T09:15:01Z"));
        assert_eq!(e.reference.as_deref(), Some("T123456789"));
        assert_eq!(e.payload, body);

        // Paystack sends metadata set as a string as that string; a reference alone names
        // the invoice.
        let mut body = body;
        body["data"]["metadata"] = json!("{\"invoice_number\":\"INV-7\"}");
        assert_eq!(
            payment(paystack_event(&body)).invoice,
            InvoiceRef::Number("INV-7".into())
        );
        body["data"]["metadata"] = json!("");
        body["data"]["reference"] = json!("INV-8");
        assert_eq!(
            payment(paystack_event(&body)).invoice,
            InvoiceRef::Number("INV-8".into())
        );
        body["data"]["reference"] = json!("");
        assert_eq!(
            ignored(paystack_event(&body)),
            "the charge names no invoice (no `metadata.invoice_number`, no `reference`)"
        );
    }

    #[test]
    fn paystack_payment_request_success_names_our_request_code() {
        let body = json!({"event": "paymentrequest.success", "data": {
            "id": 1089700, "request_code": "PRQ_y0paeo93jh99mho", "amount": 10000000,
            "currency": "NGN", "paid": true, "paid_at": "2019-06-14T07:46:42.000Z",
            "offline_reference": "3365451089700", "metadata": null}});
        let e = payment(paystack_event(&body));
        assert_eq!(e.event_id, "1089700");
        assert_eq!(
            e.invoice,
            InvoiceRef::ProviderRef("PRQ_y0paeo93jh99mho".into())
        );
        assert_eq!(e.amount_minor, 10_000_000);
        assert_eq!(e.reference.as_deref(), Some("3365451089700"));
        assert_eq!(e.paid_at, at("2019-06-14T07:46:42Z"));
        assert_eq!(
            ignored(paystack_event(
                &json!({"event": "transfer.success", "data": {}})
            )),
            "an event type tickler does not use"
        );
    }

    #[test]
    fn stripe_payments_carrying_our_invoice_number_are_read() {
        let invoice = json!({"id": "evt_1", "type": "invoice.paid", "created": 1795000000,
            "data": {"object": {"id": "in_1", "amount_paid": 4999, "currency": "usd",
                "payment_intent": "pi_1", "status_transitions": {"paid_at": 1794999990},
                "metadata": {"invoice_number": "INV-1"}}}});
        let e = payment(stripe_event(&invoice));
        assert_eq!(e.provider, "stripe");
        assert_eq!(e.event_id, "evt_1");
        assert_eq!(e.invoice, InvoiceRef::Number("INV-1".into()));
        assert_eq!((e.amount_minor, e.currency.as_str()), (4999, "USD"));
        assert_eq!(e.paid_at.timestamp(), 1794999990);
        assert_eq!(e.reference.as_deref(), Some("pi_1"));

        let session = json!({"id": "evt_2", "type": "checkout.session.completed",
            "created": 1795000000, "data": {"object": {"id": "cs_1", "amount_total": 2000,
                "currency": "eur", "payment_status": "paid", "payment_intent": "pi_2",
                "metadata": {"invoice_number": "INV-2"}}}});
        let e = payment(stripe_event(&session));
        assert_eq!((e.event_id.as_str(), e.amount_minor), ("evt_2", 2000));
        assert_eq!(e.paid_at.timestamp(), 1795000000);
        assert_eq!(e.reference.as_deref(), Some("pi_2"));

        let intent = json!({"id": "evt_3", "type": "payment_intent.succeeded",
            "created": 1795000001, "data": {"object": {"id": "pi_3", "amount": 500,
                "amount_received": 500, "currency": "gbp",
                "metadata": {"invoice_number": "INV-3"}}}});
        let e = payment(stripe_event(&intent));
        assert_eq!(
            (e.invoice, e.currency.as_str()),
            (InvoiceRef::Number("INV-3".into()), "GBP")
        );
        assert_eq!(e.reference.as_deref(), Some("pi_3"));

        let mut unpaid = session.clone();
        unpaid["data"]["object"]["payment_status"] = json!("unpaid");
        assert_eq!(
            ignored(stripe_event(&unpaid)),
            "the checkout session is completed but not paid"
        );
        let mut foreign = intent.clone();
        foreign["data"]["object"]["metadata"] = json!({});
        assert_eq!(
            ignored(stripe_event(&foreign)),
            "the payment carries no `metadata.invoice_number`"
        );
        assert_eq!(
            ignored(stripe_event(
                &json!({"id": "evt_4", "type": "customer.created"})
            )),
            "an event type tickler does not use"
        );
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let charge = |data: Value| json!({"event": "charge.success", "data": data});
        let good = json!({"id": 1, "reference": "INV-1", "amount": 100, "currency": "NGN",
            "paid_at": "2026-11-20T09:15:01Z"});
        let with = |key: &str, v: Value| {
            let mut d = good.clone();
            d[key] = v;
            charge(d)
        };
        let without = |key: &str| {
            let mut d = good.clone();
            d.as_object_mut().unwrap().remove(key);
            charge(d)
        };
        let stripe = json!({"id": "evt_1", "type": "invoice.paid",
            "data": {"object": {"amount_paid": 1, "currency": "usd",
                "metadata": {"invoice_number": "INV-1"}}}});
        for (body, message) in [
            (
                json!([1, 2]),
                "the body is not a JSON object with a string `event`",
            ),
            (
                json!({"event": 3}),
                "the body is not a JSON object with a string `event`",
            ),
            (without("id"), "`charge.success` event without `data.id`"),
            (without("amount"), "`charge.success` event without `amount`"),
            (
                with("amount", json!(-5)),
                "`charge.success` event: `amount` is not a positive whole amount in minor \
                 units (found `-5`)",
            ),
            (
                with("amount", json!("100")),
                "`charge.success` event: `amount` is not a positive whole amount in minor \
                 units (found `\"100\"`)",
            ),
            (
                with("currency", json!("naira")),
                "`charge.success` event: `currency` is not a three-letter currency code \
                 (found `naira`)",
            ),
            (
                without("paid_at"),
                "`charge.success` event without `data.paid_at`",
            ),
            (
                with("paid_at", json!("yesterday")),
                "`charge.success` event: `data.paid_at` is not an RFC 3339 time (found \
                 `yesterday`)",
            ),
            (
                json!({"event": "paymentrequest.success", "data": {"id": 1}}),
                "`paymentrequest.success` event without `data.request_code`",
            ),
        ] {
            assert_eq!(
                paystack_event(&body).unwrap_err().to_string(),
                message,
                "{body}"
            );
        }
        for (body, message) in [
            (
                json!({"id": "evt_1"}),
                "the body is not a JSON object with a string `type`",
            ),
            (stripe.clone(), "`invoice.paid` event without `created`"),
        ] {
            assert_eq!(
                stripe_event(&body).unwrap_err().to_string(),
                message,
                "{body}"
            );
        }
        let mut no_id = stripe;
        no_id.as_object_mut().unwrap().remove("id");
        assert_eq!(
            stripe_event(&no_id).unwrap_err().to_string(),
            "`invoice.paid` event without `id`"
        );
    }
}
