//! `tickler demo`: fills an empty database with a realistic sample, dated from today, so every
//! billing job of the shipped config has real work: 36 tenants with monthly leases, two months
//! of paid invoices each, and a current invoice at every stage (due in a week, tomorrow, today,
//! overdue at each escalation level, paid, void), some tenants without an email address.

use chrono::{Datelike, Days, Months, NaiveDate, Utc};
use uuid::Uuid;

use crate::store::billing::{NewCustomer, NewInvoice, NewSubscription};
use crate::store::ts;
use crate::store::{Store, StoreError};

const TENANTS: &[(&str, &str)] = &[
    ("Thandi Mokoena", "Flat 4B, 12 Long Street"),
    ("Sipho Dlamini", "Unit 7, Vilakazi Court"),
    ("Aisha Patel", "23 Jan Smuts Avenue"),
    ("Johan van der Merwe", "Cottage 2, Oak Lane"),
    ("Lerato Khumalo", "Flat 12, Bree Mansions"),
    ("Michael Naidoo", "5 Protea Close"),
    ("Nomvula Sithole", "Unit 3, Parkview Gardens"),
    ("Pieter Botha", "Flat 9A, Harbour View"),
    ("Zanele Ndlovu", "14 Jacaranda Street"),
    ("David Cohen", "Penthouse, 1 Loop Street"),
    ("Fatima Hendricks", "Unit 21, The Willows"),
    ("Kagiso Molefe", "Flat 2, Rosebank Heights"),
    ("Anele Mthembu", "8 Fig Tree Road"),
    ("Charlotte Smith", "Flat 6, Kloof Nek Place"),
    ("Themba Zulu", "Unit 15, Riverside Lofts"),
    ("Priya Govender", "31 Marine Drive"),
    ("Bongani Nkosi", "Flat 1C, Station Square"),
    ("Elize du Plessis", "3 Vine Street"),
    ("Mandla Mahlangu", "Unit 11, Sunset Ridge"),
    ("Grace Adeyemi", "Flat 18, Melville Court"),
    ("Ruan Steyn", "22 Koppie Road"),
    ("Naledi Mabaso", "Unit 4, Acacia Park"),
    ("Yusuf Ebrahim", "Flat 7, Greenpoint Towers"),
    ("Sarah Jacobs", "9 Orchard Crescent"),
    ("Lwazi Ngcobo", "Unit 30, Berea Heights"),
    ("Megan O'Connor", "Flat 3, Seaview Terrace"),
    ("Tumelo Phiri", "17 Baobab Avenue"),
    ("Ayanda Cele", "Unit 5, Midrand Place"),
    ("Hannah Fourie", "Flat 10, Church Square"),
    ("Kwame Mensah", "6 Bluegum Lane"),
    ("Refilwe Tau", "Unit 8, Lakeside Villas"),
    ("Jacques Pretorius", "Flat 14, Sea Point Mews"),
    ("Busisiwe Shabalala", "27 Mimosa Road"),
    ("Imran Moosa", "Unit 19, Fordsburg Court"),
    ("Chloe Williams", "Flat 5, Newlands Gate"),
    ("Sibusiso Mkhize", "12 Aloe Street"),
];

/// The current invoice's stage: (days from today to its due date, status, escalation level
/// already sent, days since that level went out).
fn stage(i: usize) -> (i64, &'static str, i32, i64) {
    match i % 12 {
        0 | 1 => (6, "open", 0, 0), // a week out: the 7-day reminder
        2 => (3, "open", 0, 0),     // in the 7-day window, caught up
        3 => (1, "open", 0, 0),     // tomorrow
        4 => (0, "open", 0, 0),     // today
        5 => (-2, "open", 0, 0),    // overdue: escalation level 1
        6 => (-9, "open", 1, 7),    // level 1 a week ago: level 2
        7 => (-17, "open", 2, 6),   // level 2 six days ago: level 3
        8 => (-4, "paid", 0, 0),    // paid late
        9 => (12, "open", 0, 0),    // not due for a while
        10 => (-1, "paid", 0, 0),   // paid on time
        _ => (-5, "void", 0, 0),    // cancelled
    }
}

fn email(name: &str) -> String {
    let local: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
        .collect();
    format!("{}@example.com", local.replace("..", "."))
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Why `tickler demo` filled nothing.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The database has billing data of its own, which the demo must not mix with.
    #[error(
        "the database already has {customers} customer(s) and {invoices} invoice(s); `tickler \
         demo` fills only an empty one (point `[daemon].database_url` at a new file)"
    )]
    NotEmpty { customers: i64, invoices: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fills the billing tables; refuses a database that already has customers.
pub async fn fill(store: &Store, today: NaiveDate) -> Result<(u64, u64, u64), DemoError> {
    let (customers, _, invoices) = store.billing_counts().await?;
    if customers > 0 || invoices > 0 {
        return Err(DemoError::NotEmpty {
            customers,
            invoices,
        });
    }
    let now = Utc::now();
    let mut cs = vec![];
    let mut subs = vec![];
    let mut invs = vec![];
    for (i, (name, place)) in TENANTS.iter().enumerate() {
        let customer_id = Uuid::now_v7().to_string();
        let has_email = i % 9 != 4;
        cs.push(NewCustomer {
            id: customer_id.clone(),
            org_id: None,
            name: name.to_string(),
            email: has_email.then(|| email(name)),
            phone: Some(format!("+2782555{:04}", 1000 + i)),
            timezone: Some("Africa/Johannesburg".into()),
            locale: "en".into(),
            provider_customer_id: Some(format!("CUS_demo{:04}", i)),
        });
        let (days, status, level, since) = stage(i);
        let due = if days >= 0 {
            today + Days::new(days as u64)
        } else {
            today - Days::new(days.unsigned_abs())
        };
        let period = first_of_month(due);
        let terms = (due - period).num_days();
        let amount = 650_000 + (i as i64 % 8) * 150_000;
        let sub_id = Uuid::now_v7().to_string();
        subs.push(NewSubscription {
            id: sub_id.clone(),
            customer_id: customer_id.clone(),
            description: format!("Lease: {place}"),
            amount_minor: amount,
            currency: "ZAR".into(),
            interval: "monthly".into(),
            anchor_day: 1,
            start_date: period - Months::new(6),
            end_date: None,
            payment_terms_days: terms as i32,
            auto_invoice: true,
        });
        // Two earlier months, paid a day before their due date.
        for back in [2u32, 1] {
            let start = period - Months::new(back);
            let end = (start + Months::new(1)).pred_opt().unwrap_or(start);
            let due = start + Days::new(terms as u64);
            let paid = due
                .pred_opt()
                .unwrap_or(due)
                .and_hms_opt(10, 30, 0)
                .unwrap_or_default()
                .and_utc();
            invs.push(NewInvoice {
                id: Uuid::now_v7().to_string(),
                number: String::new(),
                customer_id: customer_id.clone(),
                subscription_id: Some(sub_id.clone()),
                period_start: Some(start),
                period_end: Some(end),
                amount_minor: amount,
                currency: "ZAR".into(),
                issued_at: ts(start.and_hms_opt(7, 0, 0).unwrap_or_default().and_utc()),
                due_date: due,
                status: "paid".into(),
                paid_at: Some(ts(paid)),
                provider_ref: None,
                escalation_level: 0,
                escalated_at: None,
            });
        }
        let end = (period + Months::new(1)).pred_opt().unwrap_or(period);
        let escalated = (level > 0).then(|| now - chrono::Duration::days(since));
        invs.push(NewInvoice {
            id: Uuid::now_v7().to_string(),
            number: String::new(),
            customer_id,
            subscription_id: Some(sub_id),
            period_start: Some(period),
            period_end: Some(end),
            amount_minor: amount,
            currency: "ZAR".into(),
            issued_at: ts(period.and_hms_opt(7, 0, 0).unwrap_or_default().and_utc()),
            due_date: due,
            status: status.into(),
            paid_at: (status == "paid").then(|| ts(now - chrono::Duration::hours(20))),
            provider_ref: None,
            escalation_level: level,
            escalated_at: escalated.map(ts),
        });
    }
    Ok(store.import(&cs, &subs, &mut invs, "INV-").await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::DatabaseUrl;

    #[tokio::test]
    async fn only_an_empty_database_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("demo.db").display());
        let store = Store::connect(&DatabaseUrl::new(url)).await.unwrap();
        store.migrate().await.unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let (customers, subscriptions, invoices) = fill(&store, today).await.unwrap();
        assert_eq!((customers, subscriptions, invoices), (36, 36, 108));
        assert_eq!(
            fill(&store, today).await.unwrap_err().to_string(),
            "the database already has 36 customer(s) and 108 invoice(s); `tickler demo` fills \
             only an empty one (point `[daemon].database_url` at a new file)"
        );
        store.close().await;
    }
}
