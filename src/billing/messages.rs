//! How billing is shown to a customer: money in minor units as a person reads it, the invoice
//! context every invoice template sees (documented in `templates/README.md`), and the messages
//! of one invoice, one per channel, with its payment link.

use chrono::Utc;
use serde_json::{Value, json};

use crate::notify::{ChannelKind, Message};
use crate::store::billing::InvoiceView;
use crate::time::calendar::{iso_date, long_date};

/// The minor-unit exponent of a currency (ISO 4217): 2 for most, 0 or 3 for a few.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Formats an amount in minor units, e.g. `ZAR 1,250.00`; a total of many amounts may exceed
/// 64 bits, so any integer up to 128 bits is taken.
pub fn money(amount_minor: impl Into<i128>, currency: &str) -> String {
    let amount_minor: i128 = amount_minor.into();
    let digits = minor_digits(currency) as usize;
    // The decimal digits of the amount, most significant first, written from the right: in
    // 64-bit arithmetic once the rest fits (every invoice's amount does), 128-bit before.
    let mut buf = [0u8; 40];
    let mut at = buf.len();
    let mut rest = amount_minor.unsigned_abs();
    loop {
        let (next, digit) = match u64::try_from(rest) {
            Ok(small) => (u128::from(small / 10), small % 10),
            Err(_) => (rest / 10, (rest % 10) as u64),
        };
        at -= 1;
        buf[at] = b'0' + digit as u8;
        rest = next;
        if rest == 0 {
            break;
        }
    }
    // At least one whole digit: `0.05`.
    while buf.len() - at <= digits {
        at -= 1;
        buf[at] = b'0';
    }
    let decimal = &buf[at..];
    let whole = decimal.len() - digits;
    let mut text = String::with_capacity(currency.len() + 3 + decimal.len() + whole / 3);
    text.push_str(currency);
    text.push(' ');
    if amount_minor < 0 {
        text.push('-');
    }
    for (i, &d) in decimal.iter().enumerate() {
        if i == whole {
            text.push('.');
        } else if i > 0 && i < whole && (whole - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(char::from(d));
    }
    text
}

/// The variables an invoice message's template sees (`customer`, `invoice`, and `window` or
/// `level`), documented in `templates/README.md`.
pub fn invoice_context(
    inv: &InvoiceView,
    today: chrono::NaiveDate,
    window: Option<(&str, i64)>,
    level: Option<i32>,
    pay_url: Option<String>,
) -> Value {
    let first_name = inv
        .customer_name
        .split_whitespace()
        .next()
        .unwrap_or(&inv.customer_name)
        .to_string();
    let until = (inv.due_date - today).num_days();
    // Each map built from its members in key order: serde_json's map (a BTreeMap) is then
    // made in one pass instead of a search and an insert for each member.
    fn map<const N: usize>(members: [(&str, Value); N]) -> Value {
        Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
    let customer = map([
        ("email", inv.email.clone().into()),
        ("first_name", first_name.into()),
        ("name", inv.customer_name.clone().into()),
        ("phone", inv.phone.clone().into()),
    ]);
    let invoice = map([
        ("amount", money(inv.amount_minor, &inv.currency).into()),
        ("amount_minor", inv.amount_minor.into()),
        ("currency", inv.currency.clone().into()),
        ("days_overdue", (-until).max(0).into()),
        ("days_until_due", until.into()),
        ("description", inv.description.clone().into()),
        ("due_date", iso_date(inv.due_date).into()),
        ("due_date_long", long_date(inv.due_date).into()),
        ("escalation_level", inv.escalation_level.into()),
        ("issued_date", iso_date(inv.issued_at.date_naive()).into()),
        ("number", inv.number.clone().into()),
        ("pay_url", pay_url.into()),
        ("period_end", inv.period_end.map(iso_date).into()),
        ("period_start", inv.period_start.map(iso_date).into()),
    ]);
    let mut ctx = map([("customer", customer), ("invoice", invoice)]);
    if let Some((offset, days)) = window {
        ctx["window"] = json!({ "offset": offset, "days": days });
    }
    if let Some(level) = level {
        ctx["level"] = json!(level);
    }
    ctx
}

/// A sample invoice context, for `tickler check` and tests.
pub fn sample_invoice_context(window_days: Option<i64>, level: Option<i32>) -> Value {
    let (inv, today) = sample_invoice(window_days, level);
    let window = window_days.map(|d| (format!("{d}d"), d));
    invoice_context(
        &inv,
        today,
        window.as_ref().map(|(o, d)| (o.as_str(), *d)),
        level,
        None,
    )
}

/// The sample invoice and the day it is read on.
fn sample_invoice(
    window_days: Option<i64>,
    level: Option<i32>,
) -> (InvoiceView, chrono::NaiveDate) {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap_or_default();
    let inv = InvoiceView {
        id: uuid::Uuid::nil().to_string(),
        number: "INV-000123".into(),
        description: "Flat 4B, Long Street".into(),
        amount_minor: 1_250_000,
        currency: "ZAR".into(),
        issued_at: Utc::now(),
        due_date: today + chrono::Days::new(window_days.unwrap_or(0).max(0) as u64),
        status: "open".into(),
        period_start: Some(today),
        period_end: Some(today + chrono::Days::new(29)),
        escalation_level: level.unwrap_or(0),
        escalated_at: None,
        provider_ref: None,
        paid_at: None,
        customer_id: uuid::Uuid::nil().to_string(),
        customer_name: "Thandi Mokoena".into(),
        email: Some("thandi@example.com".into()),
        phone: Some("+27821234567".into()),
        customer_timezone: None,
        locale: "en".into(),
        provider_customer_id: None,
    };
    (inv, today)
}

/// The messages of one invoice, one per channel: the address comes from the customer
/// (`email` for email, `phone` for SMS and WhatsApp). The last message takes `context`; the
/// others get copies (one channel, the usual case: no copy of the tree).
pub fn invoice_messages(
    invoice: &InvoiceView,
    channels: &[ChannelKind],
    key_prefix: &str,
    template: &str,
    mut context: Value,
) -> Vec<Message> {
    channels
        .iter()
        .enumerate()
        .map(|(i, c)| Message {
            key: format!("{key_prefix}:{}:{}", invoice.id, c.as_str()),
            channel: *c,
            recipient: match c {
                ChannelKind::Email => invoice.email.clone(),
                ChannelKind::Sms | ChannelKind::Whatsapp => invoice.phone.clone(),
                ChannelKind::Webhook => Some("webhook".into()),
            }
            .filter(|a| !a.trim().is_empty()),
            template: template.to_string(),
            invoice_id: Some(invoice.id.clone()),
            context: if i + 1 < channels.len() {
                context.clone()
            } else {
                std::mem::take(&mut context)
            },
            zone: customer_zone(invoice),
            window: None,
        })
        .collect()
}

/// The customer's zone (`customers.timezone`), when it names one.
pub fn customer_zone(invoice: &InvoiceView) -> Option<chrono_tz::Tz> {
    invoice.customer_timezone.as_deref()?.parse().ok()
}

/// The customer's date at `now`: in their zone, else in `fallback` (the job's). Reminder
/// windows and days overdue count in it (invariant 6).
pub fn customer_today(
    invoice: &InvoiceView,
    now: chrono::DateTime<chrono::Utc>,
    fallback: chrono_tz::Tz,
) -> chrono::NaiveDate {
    now.with_timezone(&customer_zone(invoice).unwrap_or(fallback))
        .date_naive()
}

/// How many days the customers' dates can be from `fallback`'s (the job's) at `now`: the
/// least and the most, over `zones` (`None`: the job's zone). `(0, 0)` when every customer
/// is on the job's date, so that a job reads exactly its own dates' invoices.
pub fn date_shifts(
    zones: &[Option<String>],
    now: chrono::DateTime<chrono::Utc>,
    fallback: chrono_tz::Tz,
) -> (i64, i64) {
    let own = now.with_timezone(&fallback).date_naive();
    zones
        .iter()
        .map(|z| {
            let tz = z
                .as_deref()
                .and_then(|z| z.parse().ok())
                .unwrap_or(fallback);
            (now.with_timezone(&tz).date_naive() - own).num_days()
        })
        .fold((0, 0), |(lo, hi), s| (lo.min(s), hi.max(s)))
}

/// An invoice's payment link from a `pay_url` pattern with `{number}`, `{id}` and
/// `{provider_ref}`.
pub fn pay_url(pattern: Option<&str>, invoice: &InvoiceView) -> Option<String> {
    let p = pattern?;
    if p.contains("{provider_ref}") && invoice.provider_ref.is_none() {
        return None;
    }
    Some(
        p.replace("{number}", &invoice.number)
            .replace("{id}", &invoice.id)
            .replace(
                "{provider_ref}",
                invoice.provider_ref.as_deref().unwrap_or(""),
            ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_in_minor_units() {
        assert_eq!(money(1_250_000, "ZAR"), "ZAR 12,500.00");
        assert_eq!(money(5, "USD"), "USD 0.05");
        assert_eq!(money(-123_456_789, "EUR"), "EUR -1,234,567.89");
        assert_eq!(money(1500, "JPY"), "JPY 1,500");
        assert_eq!(money(1234, "KWD"), "KWD 1.234");
        assert_eq!(money(0, "USD"), "USD 0.00");
        assert_eq!(money(i128::MIN, "JPY"), money_by_format(i128::MIN, "JPY"));
        // As the formatting it replaced wrote them: around every power of ten and its group
        // commas, both signs, each number of minor digits, in 64 and in 128 bits.
        let mut amounts = vec![
            i128::MIN,
            i128::MAX,
            i128::from(u64::MAX),
            i128::from(i64::MIN),
        ];
        for power in 0..39 {
            let p = 10i128.pow(power);
            amounts.extend([
                p - 1,
                p,
                p + 1,
                p.saturating_mul(7) - 3,
                -(p - 1),
                -p,
                -(p + 1),
            ]);
        }
        for amount in amounts {
            for currency in ["USD", "JPY", "KWD"] {
                assert_eq!(money(amount, currency), money_by_format(amount, currency));
            }
        }
    }

    /// The context is the one `templates/README.md` documents, member for member, with its
    /// optional values present and absent.
    #[test]
    fn an_invoices_context_holds_every_documented_member() {
        let (mut inv, today) = sample_invoice(Some(7), Some(2));
        inv.issued_at = "2026-11-01T09:30:00Z".parse().unwrap();
        let url = Some("https://pay.example/i/1".to_string());
        let full = invoice_context(&inv, today, Some(("7d", 7)), Some(2), url);
        let want = json!({
            "customer": {"name": "Thandi Mokoena", "first_name": "Thandi",
                         "email": "thandi@example.com", "phone": "+27821234567"},
            "invoice": {"number": "INV-000123", "amount": "ZAR 12,500.00",
                        "amount_minor": 1_250_000, "currency": "ZAR", "due_date": "2026-11-30",
                        "due_date_long": "30 November 2026", "issued_date": "2026-11-01",
                        "period_start": "2026-11-23", "period_end": "2026-12-22",
                        "days_until_due": 7, "days_overdue": 0, "escalation_level": 2,
                        "pay_url": "https://pay.example/i/1",
                        "description": "Flat 4B, Long Street"},
            "window": {"offset": "7d", "days": 7},
            "level": 2,
        });
        assert_eq!(full, want);
        (inv.email, inv.phone, inv.period_start, inv.period_end) = (None, None, None, None);
        inv.customer_name = "Cher".into();
        let bare = invoice_context(&inv, today + chrono::Days::new(9), None, None, None);
        let mut want = want;
        want["customer"] = json!({"name": "Cher", "first_name": "Cher", "email": null,
                                  "phone": null});
        for (key, value) in [
            ("period_start", json!(null)),
            ("period_end", json!(null)),
            ("pay_url", json!(null)),
            ("days_until_due", json!(-2)),
            ("days_overdue", json!(2)),
        ] {
            want["invoice"][key] = value;
        }
        let want = json!({"customer": want["customer"], "invoice": want["invoice"]});
        assert_eq!(bare, want);
    }

    /// The formatting `money` replaced, kept as its reference.
    fn money_by_format(amount_minor: impl Into<i128>, currency: &str) -> String {
        let amount_minor: i128 = amount_minor.into();
        let digits = minor_digits(currency);
        let scale = 10u128.pow(digits);
        let sign = if amount_minor < 0 { "-" } else { "" };
        let abs = amount_minor.unsigned_abs();
        let whole = (abs / scale).to_string();
        let mut grouped = String::new();
        for (i, ch) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if digits == 0 {
            format!("{currency} {sign}{grouped}")
        } else {
            let frac = abs % scale;
            format!(
                "{currency} {sign}{grouped}.{frac:0width$}",
                width = digits as usize
            )
        }
    }

    #[test]
    fn customers_dates_are_read_only_as_far_as_their_zones_need() {
        let utc: chrono_tz::Tz = "UTC".parse().unwrap();
        // 2026-12-01 05:00 UTC: Los Angeles is on Nov 30, Tokyo and Johannesburg on Dec 1.
        let now = "2026-12-01T05:00:00Z".parse().unwrap();
        let z = |names: &[Option<&str>]| -> Vec<Option<String>> {
            names.iter().map(|n| n.map(str::to_string)).collect()
        };
        assert_eq!(date_shifts(&z(&[None]), now, utc), (0, 0));
        assert_eq!(
            date_shifts(
                &z(&[Some("Asia/Tokyo"), Some("Africa/Johannesburg")]),
                now,
                utc
            ),
            (0, 0)
        );
        assert_eq!(
            date_shifts(
                &z(&[None, Some("America/Los_Angeles"), Some("Nowhere/City")]),
                now,
                utc
            ),
            (-1, 0)
        );
        // 23:30 UTC: Tokyo is already on the next day.
        let late = "2026-12-01T23:30:00Z".parse().unwrap();
        assert_eq!(
            date_shifts(
                &z(&[Some("Asia/Tokyo"), Some("America/Los_Angeles")]),
                late,
                utc
            ),
            (0, 1)
        );
    }

    /// Each channel's message carries the whole context, the last one taking it.
    #[test]
    fn every_channels_message_carries_the_context() {
        let (inv, _) = sample_invoice(Some(7), None);
        let context = sample_invoice_context(Some(7), None);
        let channels = [ChannelKind::Email, ChannelKind::Sms, ChannelKind::Whatsapp];
        let messages =
            invoice_messages(&inv, &channels, "reminder:7d", "friendly", context.clone());
        assert_eq!(messages.len(), 3);
        for (m, c) in messages.iter().zip(channels) {
            assert_eq!(m.channel, c);
            assert_eq!(m.context, context, "{}", m.key);
        }
        let one = invoice_messages(
            &inv,
            &[ChannelKind::Email],
            "r",
            "friendly",
            context.clone(),
        );
        assert_eq!(one[0].context, context);
    }
}
