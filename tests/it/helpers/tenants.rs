//! Tenants with open invoices, as the reminder tests and the fault drill seed them through the
//! store (`benches/drill.rs` includes this file, so it uses nothing else of the helpers).

use chrono::{Days, NaiveDate, TimeDelta, Utc};
use tickler::store::billing::{NewCustomer, NewInvoice};
use tickler::store::{Store, ts};

/// Tenant `i`: a customer with an email address of its own at `domain`.
pub fn tenant(i: usize, domain: &str) -> NewCustomer {
    NewCustomer {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: None,
        name: format!("Tenant {i}"),
        email: Some(format!("tenant{i}@{domain}")),
        phone: None,
        timezone: None,
        locale: "en".into(),
        provider_customer_id: None,
    }
}

/// An open invoice of ZAR 1,000.00 for `customer`, issued 20 days ago, due on `due`.
pub fn open_invoice(customer: &NewCustomer, number: String, due: NaiveDate) -> NewInvoice {
    NewInvoice {
        id: uuid::Uuid::now_v7().to_string(),
        number,
        customer_id: customer.id.clone(),
        subscription_id: None,
        period_start: None,
        period_end: None,
        amount_minor: 100_000,
        currency: "ZAR".into(),
        issued_at: ts(Utc::now() - TimeDelta::days(20)),
        due_date: due,
        status: "open".into(),
        paid_at: None,
        provider_ref: None,
        escalation_level: 0,
        escalated_at: None,
    }
}

/// `n` tenants at `domain`, each with one open invoice due in 7 days numbered `{prefix}{i}`,
/// imported in one transaction; returned in order.
pub async fn seed_tenants(
    store: &Store,
    n: usize,
    domain: &str,
    prefix: &str,
) -> Vec<(NewCustomer, NewInvoice)> {
    let due = Utc::now().date_naive() + Days::new(7);
    let customers: Vec<NewCustomer> = (0..n).map(|i| tenant(i, domain)).collect();
    let mut invoices: Vec<NewInvoice> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| open_invoice(c, format!("{prefix}{i}"), due))
        .collect();
    store
        .import(&customers, &[], &mut invoices, "INV-")
        .await
        .unwrap();
    customers.into_iter().zip(invoices).collect()
}
