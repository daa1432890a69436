//! `tickler import customers|subscriptions|invoices FILE.csv`: reads a CSV file with a header
//! row, checks every row (and the rows it refers to in the database), and reports every bad
//! row by its line; only a file without a single bad row is imported, in one transaction, so
//! nothing of a file is ever half-imported.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::notify::blocks;
use crate::store::billing::{NewCustomer, NewInvoice, NewSubscription};
use crate::store::contacts::NewBlock;
use crate::store::ts;
use crate::store::{Store, StoreError};

/// What can be imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    Customers,
    Subscriptions,
    Invoices,
}

impl Table {
    fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Customers => &[
                "id",
                "org_id",
                "name",
                "email",
                "phone",
                "timezone",
                "locale",
                "provider_customer_id",
            ],
            Table::Subscriptions => &[
                "id",
                "customer_id",
                "customer_email",
                "description",
                "amount",
                "amount_minor",
                "currency",
                "interval",
                "anchor_day",
                "start_date",
                "end_date",
                "payment_terms_days",
                "auto_invoice",
            ],
            Table::Invoices => &[
                "id",
                "number",
                "customer_id",
                "customer_email",
                "subscription_id",
                "period_start",
                "period_end",
                "amount",
                "amount_minor",
                "currency",
                "issued_at",
                "due_date",
                "status",
                "paid_at",
                "provider_ref",
                "escalation_level",
            ],
        }
    }
    fn required(self) -> &'static [&'static str] {
        match self {
            Table::Customers => &["name"],
            Table::Subscriptions => &["currency", "interval", "start_date"],
            Table::Invoices => &["currency", "due_date"],
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Subscriptions => "subscriptions",
            Table::Invoices => "invoices",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read `{file}`: {detail}")]
    Read { file: String, detail: String },
    #[error(
        "`{file}` has {count} bad row(s); nothing was imported. Fix them and import the file again:\n{lines}"
    )]
    BadRows {
        file: String,
        count: usize,
        lines: String,
    },
    #[error(
        "`--update` changes customers only (each found by its email); {table} are imported once, \
         so import {file} without it"
    )]
    UpdateOnlyCustomers { table: &'static str, file: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One CSV record with its line and header.
struct Record<'a> {
    line: u64,
    header: &'a HashMap<String, usize>,
    record: csv::StringRecord,
    errors: &'a mut Vec<String>,
}

impl Record<'_> {
    fn get(&self, column: &str) -> Option<String> {
        let i = *self.header.get(column)?;
        self.record
            .get(i)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
    fn bad(&mut self, column: &str, detail: impl std::fmt::Display) {
        self.errors
            .push(format!("line {}, column `{column}`: {detail}", self.line));
    }
    fn required(&mut self, column: &str) -> String {
        match self.get(column) {
            Some(v) => v,
            None => {
                self.bad(column, "is required");
                String::new()
            }
        }
    }
    fn uuid(&mut self, column: &str) -> Option<String> {
        let v = self.get(column)?;
        match Uuid::parse_str(&v) {
            Ok(u) => Some(u.to_string()),
            Err(_) => {
                self.bad(column, format!("`{v}` is not a UUID"));
                None
            }
        }
    }
    fn date(&mut self, column: &str) -> Option<NaiveDate> {
        let v = self.get(column)?;
        match v.parse::<NaiveDate>() {
            Ok(d) => Some(d),
            Err(_) => {
                self.bad(column, format!("`{v}` is not a date; write YYYY-MM-DD"));
                None
            }
        }
    }
    fn time(&mut self, column: &str) -> Option<DateTime<Utc>> {
        let v = self.get(column)?;
        if let Ok(t) = DateTime::parse_from_rfc3339(&v) {
            return Some(t.with_timezone(&Utc));
        }
        match v.parse::<NaiveDate>() {
            Ok(d) => Some(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()),
            Err(_) => {
                self.bad(
                    column,
                    format!("`{v}` is not a time; write YYYY-MM-DD or 2025-01-31T09:00:00Z"),
                );
                None
            }
        }
    }
    fn int(&mut self, column: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let v = self.get(column)?;
        match v.parse::<i64>() {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.bad(
                    column,
                    format!(
                        "`{v}` must be a whole number {}-{}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }
    fn currency(&mut self) -> String {
        let c = self.required("currency");
        let iso = c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase());
        if !c.is_empty() && !iso {
            self.bad(
                "currency",
                format!("`{c}` is not an ISO 4217 code such as `ZAR` or `USD`"),
            );
        }
        c
    }
    /// `amount_minor` (cents), or `amount` in major units (`1250.00`).
    fn amount(&mut self, currency: &str) -> i64 {
        if let Some(minor) = self.int("amount_minor", 0..=i64::MAX / 2) {
            return minor;
        }
        let Some(v) = self.get("amount") else {
            if self.get("amount_minor").is_none() {
                self.bad("amount", "is required (or `amount_minor` in cents)");
            }
            return 0;
        };
        let digits = super::messages::minor_digits(currency) as usize;
        let (whole, frac) = v.split_once('.').unwrap_or((&v, ""));
        let valid = !whole.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && frac.len() <= digits
            && frac.chars().all(|c| c.is_ascii_digit());
        let parsed = valid
            .then(|| {
                let w: i64 = whole.parse().ok()?;
                let f: i64 = if frac.is_empty() {
                    0
                } else {
                    format!("{frac:0<digits$}").parse().ok()?
                };
                w.checked_mul(10i64.pow(digits as u32))?.checked_add(f)
            })
            .flatten();
        match parsed {
            Some(n) => n,
            None => {
                self.bad(
                    "amount",
                    format!(
                        "`{v}` is not an amount of {currency} (a positive number with at most {digits} decimals, no currency sign or thousands separator)"
                    ),
                );
                0
            }
        }
    }
    /// The customer a subscription or invoice row names, by `customer_id` or `customer_email`.
    fn customer_ref(&mut self) -> CustomerRef {
        let customer = CustomerRef {
            line: self.line,
            id: self.uuid("customer_id"),
            email: self.get("customer_email"),
        };
        if customer.id.is_none() && customer.email.is_none() {
            self.bad("customer_id", "is required (or `customer_email`)");
        }
        customer
    }

    fn id(&mut self) -> String {
        self.uuid("id")
            .unwrap_or_else(|| Uuid::now_v7().to_string())
    }
}

/// The rows of an import, checked.
pub struct Checked {
    pub customers: Vec<NewCustomer>,
    pub subscriptions: Vec<NewSubscription>,
    pub invoices: Vec<NewInvoice>,
    /// Under `--update`: customers whose email names one stored already, with its id.
    pub updates: Vec<NewCustomer>,
    /// The columns those updates set: the file's, of those a customer row can change.
    pub update_columns: Vec<&'static str>,
}

/// The columns of a customers file that `--update` writes over a stored customer (`email`
/// finds it; `id` must be its own).
const UPDATABLE: &[&str] = &[
    "name",
    "phone",
    "timezone",
    "locale",
    "org_id",
    "provider_customer_id",
];

/// A customer reference of a row: by id or by email, with the row's line.
struct CustomerRef {
    line: u64,
    id: Option<String>,
    email: Option<String>,
}

/// Reads and checks `file`; the database is read (never written) to check references.
pub async fn check(
    store: &Store,
    table: Table,
    file: &Path,
    update: bool,
) -> Result<Checked, ImportError> {
    let shown = file.display().to_string();
    if update && table != Table::Customers {
        return Err(ImportError::UpdateOnlyCustomers {
            table: table.name(),
            file: shown,
        });
    }
    let mut errors: Vec<String> = vec![];
    let (mut reader, header) = open(
        file,
        csv::Trim::Headers,
        (table.name(), table.columns(), table.required()),
        &mut errors,
    )?;
    if update && !header.contains_key("email") {
        errors.push(
            "line 1: `--update` finds each customer by `email`, and the column is missing"
                .to_string(),
        );
    }
    if !errors.is_empty() {
        return Err(bad(&shown, errors));
    }

    let mut out = Checked {
        customers: vec![],
        subscriptions: vec![],
        invoices: vec![],
        updates: vec![],
        update_columns: UPDATABLE
            .iter()
            .copied()
            .filter(|c| header.contains_key(*c))
            .collect(),
    };
    let mut given_ids: HashSet<String> = HashSet::new();
    let mut refs: Vec<CustomerRef> = vec![];
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut numbers: HashMap<String, u64> = HashMap::new();
    let mut subscription_refs: Vec<(u64, String)> = vec![];
    let mut invoice_lines: Vec<u64> = vec![];
    let mut customer_emails: HashMap<String, u64> = HashMap::new();
    let now = Utc::now();
    for result in reader.records() {
        let (line, record) = match numbered(result) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut r = Record {
            line,
            header: &header,
            record,
            errors: &mut errors,
        };
        let id = r.id();
        if r.get("id").is_some() {
            given_ids.insert(id.clone());
        }
        if let Some(first) = ids.insert(id.clone(), line) {
            r.bad("id", format!("`{id}` is also on line {first}"));
        }
        match table {
            Table::Customers => {
                let name = r.required("name");
                let email = r.get("email");
                if let Some(e) = &email
                    && e.parse::<lettre::Address>().is_err()
                {
                    r.bad("email", format!("`{e}` is not an email address"));
                }
                let phone = r.get("phone").map(|p| p.replace([' ', '-', '(', ')'], ""));
                if let Some(p) = &phone
                    && !crate::notify::blocks::valid_phone(p)
                {
                    r.bad(
                        "phone",
                        format!("`{p}` is not an international number such as +27821234567"),
                    );
                }
                let timezone = r.get("timezone");
                if let Some(tz) = &timezone
                    && let Err(e) = crate::time::zone::parse_timezone(tz)
                {
                    r.bad("timezone", e);
                }
                if let Some(e) = &email
                    && let Some(first) = customer_emails.insert(e.to_lowercase(), line)
                {
                    r.bad("email", format!("`{e}` is also on line {first}"));
                }
                let org_id = r.uuid("org_id");
                out.customers.push(NewCustomer {
                    id,
                    org_id,
                    name,
                    email,
                    phone,
                    timezone,
                    locale: r.get("locale").unwrap_or_else(|| "en".into()),
                    provider_customer_id: r.get("provider_customer_id"),
                });
            }
            Table::Subscriptions => {
                refs.push(r.customer_ref());
                let currency = r.currency();
                let amount_minor = r.amount(&currency);
                let interval = r.required("interval");
                if !interval.is_empty() && !super::INTERVALS.contains(&interval.as_str()) {
                    r.bad(
                        "interval",
                        format!("`{interval}` must be monthly, weekly or yearly"),
                    );
                }
                r.required("start_date");
                let start_date = r.date("start_date");
                let end_date = r.date("end_date");
                if let (Some(s), Some(e)) = (start_date, end_date)
                    && e < s
                {
                    r.bad("end_date", format!("`{e}` is before `start_date` `{s}`"));
                }
                let max_anchor = if interval == "weekly" { 7 } else { 31 };
                let anchor_day = r.int("anchor_day", 1..=max_anchor).unwrap_or_else(|| {
                    use chrono::Datelike;
                    start_date.map_or(1, |d| {
                        if interval == "weekly" {
                            d.weekday().number_from_monday() as i64
                        } else {
                            d.day() as i64
                        }
                    })
                });
                let auto_invoice = match r.get("auto_invoice").map(|v| v.to_ascii_lowercase()) {
                    None => true,
                    Some(v) if ["true", "yes", "1"].contains(&v.as_str()) => true,
                    Some(v) if ["false", "no", "0"].contains(&v.as_str()) => false,
                    Some(v) => {
                        r.bad("auto_invoice", format!("`{v}` must be true or false"));
                        true
                    }
                };
                out.subscriptions.push(NewSubscription {
                    id,
                    customer_id: String::new(),
                    description: r.get("description").unwrap_or_default(),
                    amount_minor,
                    currency,
                    interval,
                    anchor_day: anchor_day as i32,
                    start_date: start_date.unwrap_or_default(),
                    end_date,
                    payment_terms_days: r.int("payment_terms_days", 0..=365).unwrap_or(7) as i32,
                    auto_invoice,
                });
            }
            Table::Invoices => {
                invoice_lines.push(line);
                refs.push(r.customer_ref());
                let number = r.get("number").unwrap_or_default();
                if !number.is_empty()
                    && let Some(first) = numbers.insert(number.clone(), line)
                {
                    r.bad("number", format!("`{number}` is also on line {first}"));
                }
                let subscription_id = r.uuid("subscription_id");
                if let Some(s) = &subscription_id {
                    subscription_refs.push((line, s.clone()));
                }
                let currency = r.currency();
                let amount_minor = r.amount(&currency);
                let status = r.get("status").unwrap_or_else(|| "open".into());
                if !["open", "paid", "void"].contains(&status.as_str()) {
                    r.bad("status", format!("`{status}` must be open, paid or void"));
                }
                let paid_at = r.time("paid_at");
                if status == "paid" && paid_at.is_none() {
                    r.bad("paid_at", "is required when `status` is paid");
                }
                r.required("due_date");
                let due_date = r.date("due_date");
                let (period_start, period_end) = (r.date("period_start"), r.date("period_end"));
                if let (Some(s), Some(e)) = (period_start, period_end)
                    && e < s
                {
                    r.bad(
                        "period_end",
                        format!("`{e}` is before `period_start` `{s}`"),
                    );
                }
                out.invoices.push(NewInvoice {
                    id,
                    number,
                    customer_id: String::new(),
                    subscription_id,
                    period_start,
                    period_end,
                    amount_minor,
                    currency,
                    issued_at: ts(r.time("issued_at").unwrap_or(now)),
                    due_date: due_date.unwrap_or_default(),
                    status,
                    paid_at: paid_at.map(ts),
                    provider_ref: r.get("provider_ref"),
                    escalation_level: r.int("escalation_level", 0..=9).unwrap_or(0) as i32,
                    escalated_at: None,
                });
            }
        }
    }

    // A customer is one person per email: a file imported twice would double everyone, so a
    // row whose email is stored already is refused, or under `--update` changes that customer.
    let emails: Vec<String> = out
        .customers
        .iter()
        .filter_map(|c| c.email.clone())
        .collect();
    let taken = store.customers_by_email(&emails).await?;
    let mut updated_ids: HashSet<String> = HashSet::new();
    let mut fresh = vec![];
    for mut c in std::mem::take(&mut out.customers) {
        let Some(stored) = c.email.as_ref().and_then(|e| taken.get(e)) else {
            fresh.push(c);
            continue;
        };
        let email = c.email.clone().unwrap_or_default();
        let line = customer_emails
            .get(&email.to_lowercase())
            .copied()
            .unwrap_or(0);
        if !update {
            errors.push(format!(
                "line {line}, column `email`: a customer with the email `{email}` exists \
                 already; remove the rows imported before (a file is imported once), or import \
                 with `--update` to change the stored customers"
            ));
        } else if stored.len() > 1 {
            errors.push(format!(
                "line {line}, column `email`: {} customers have the email `{email}`, so \
                 `--update` cannot tell which to change; give each its own email first",
                stored.len()
            ));
        } else if given_ids.contains(&c.id) && c.id != stored[0] {
            errors.push(format!(
                "line {line}, column `id`: the customer with the email `{email}` is `{}`, not \
                 `{}`; leave `id` out or give that one",
                stored[0], c.id
            ));
        } else {
            c.id = stored[0].clone();
            updated_ids.insert(c.id.clone());
            out.updates.push(c);
        }
    }
    out.customers = fresh;
    // References and uniqueness against the database: one query per kind, never per row.
    let all_ids: Vec<String> = ids
        .keys()
        .filter(|id| !updated_ids.contains(*id))
        .cloned()
        .collect();
    for (id, line) in store
        .existing(table.name(), "id", &all_ids)
        .await?
        .into_iter()
        .map(|id| {
            let line = ids.get(&id).copied().unwrap_or(0);
            (id, line)
        })
    {
        errors.push(format!(
            "line {line}, column `id`: `{id}` already exists in {}",
            table.name()
        ));
    }
    let all_numbers: Vec<String> = numbers.keys().cloned().collect();
    for n in store.existing("invoices", "number", &all_numbers).await? {
        let line = numbers.get(&n).copied().unwrap_or(0);
        errors.push(format!(
            "line {line}, column `number`: invoice `{n}` already exists"
        ));
    }
    // One invoice per (subscription, period): within the file and against the database.
    let mut periods: HashMap<(String, NaiveDate), u64> = HashMap::new();
    for (inv, line) in out.invoices.iter().zip(invoice_lines.iter()) {
        if let (Some(sub), Some(start)) = (&inv.subscription_id, inv.period_start)
            && let Some(first) = periods.insert((sub.clone(), start), *line)
        {
            errors.push(format!(
                "line {line}, column `period_start`: subscription `{sub}` has the period {start} on line {first} too"
            ));
        }
    }
    let pairs: Vec<(String, NaiveDate)> = periods.keys().cloned().collect();
    for pair in store.invoiced_periods(&pairs).await? {
        let line = periods.get(&pair).copied().unwrap_or(0);
        errors.push(format!(
            "line {line}, column `period_start`: subscription `{}` already has an invoice for the period {}",
            pair.0, pair.1
        ));
    }
    let sub_ids: Vec<String> = subscription_refs.iter().map(|(_, s)| s.clone()).collect();
    let found = store.existing("subscriptions", "id", &sub_ids).await?;
    for (line, s) in &subscription_refs {
        if !found.contains(s) {
            errors.push(format!(
                "line {line}, column `subscription_id`: no subscription `{s}`"
            ));
        }
    }
    let by_id: Vec<String> = refs.iter().filter_map(|r| r.id.clone()).collect();
    let known: HashSet<String> = store.existing("customers", "id", &by_id).await?;
    // Each email once, however many rows name it (two invoices of one customer are two rows).
    let emails: Vec<String> = refs
        .iter()
        .filter_map(|r| r.email.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let by_email = store.customers_by_email(&emails).await?;
    let mut resolved = vec![];
    for r in &refs {
        let id = match (&r.id, &r.email) {
            (Some(id), email) => {
                if !known.contains(id) {
                    errors.push(format!("line {}, column `customer_id`: no customer `{id}`; import the customers first", r.line));
                } else if let Some(email) = email
                    && !by_email.get(email).is_some_and(|ids| ids.contains(id))
                {
                    errors.push(format!(
                        "line {}, column `customer_email`: `{email}` is not the email of the \
                         customer `{id}` (`customer_id`); give one of the two, or make them agree",
                        r.line
                    ));
                }
                id.clone()
            }
            (None, Some(email)) => {
                match by_email.get(email).map(|v| v.as_slice()) {
                    Some([one]) => one.clone(),
                    Some(many) => {
                        errors.push(format!(
                        "line {}, column `customer_email`: {} customers have the email `{email}`; use `customer_id`",
                        r.line,
                        many.len()
                    ));
                        String::new()
                    }
                    None => {
                        errors.push(format!("line {}, column `customer_email`: no customer with the email `{email}`", r.line));
                        String::new()
                    }
                }
            }
            (None, None) => String::new(),
        };
        resolved.push(id);
    }
    for (s, id) in out.subscriptions.iter_mut().zip(&resolved) {
        s.customer_id = id.clone();
    }
    for (i, id) in out.invoices.iter_mut().zip(&resolved) {
        i.customer_id = id.clone();
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(bad(&shown, errors))
    }
}

/// Opens a CSV file with a header row, `trim`med, and reads its header for `what` files
/// (their name, the columns they take, those required): each column once, by lower-case
/// name. A header problem is pushed to `errors`, by line and column as every import says it.
fn open(
    file: &Path,
    trim: csv::Trim,
    (what, columns, required): (&str, &[&str], &[&str]),
    errors: &mut Vec<String>,
) -> Result<(csv::Reader<std::fs::File>, HashMap<String, usize>), ImportError> {
    let read_err = |detail: String| ImportError::Read {
        file: file.display().to_string(),
        detail,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(trim)
        .from_path(file)
        .map_err(|e| read_err(e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| read_err(e.to_string()))?
        .clone();
    let mut header: HashMap<String, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let name = h.to_ascii_lowercase();
        if let Some(first) = header.get(&name) {
            errors.push(format!(
                "line 1: the column `{name}` is there twice (columns {} and {}); keep one",
                first + 1,
                i + 1
            ));
        } else {
            header.insert(name, i);
        }
    }
    for h in header.keys() {
        if !columns.contains(&h.as_str()) {
            errors.push(format!(
                "line 1: unknown column `{h}`; {what} files take: {}",
                columns.join(", ")
            ));
        }
    }
    for r in required {
        if !header.contains_key(*r) {
            errors.push(format!("line 1: the required column `{r}` is missing"));
        }
    }
    Ok((reader, header))
}

/// A record with its line number, or the error the CSV reader met there (with its line).
fn numbered(result: csv::Result<csv::StringRecord>) -> Result<(u64, csv::StringRecord), String> {
    match result {
        Ok(r) => Ok((r.position().map(|p| p.line()).unwrap_or(0), r)),
        Err(e) => Err(format!(
            "line {}: {e}",
            e.position().map(|p| p.line()).unwrap_or(0)
        )),
    }
}

/// Reads a `channel,address,reason` CSV file (`tickler contacts import`; header row first,
/// `reason` optional) into blocks with `source` `import`, each checked as `contacts block`
/// checks it. Every row is checked; one bad row refuses the whole file.
pub fn contact_blocks(file: &Path) -> Result<Vec<NewBlock>, ImportError> {
    let shown = file.display().to_string();
    let mut errors = vec![];
    let (mut reader, column) = open(
        file,
        csv::Trim::All,
        (
            "contact",
            &["channel", "address", "reason"],
            &["channel", "address"],
        ),
        &mut errors,
    )?;
    let mut blocks = vec![];
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    if errors.is_empty() {
        for result in reader.records() {
            let (line, record) = match numbered(result) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let get = |c: &str| {
                column
                    .get(c)
                    .and_then(|i| record.get(*i))
                    .unwrap_or("")
                    .to_string()
            };
            let (channel, address) = (get("channel"), get("address"));
            let channel = match blocks::parse_channel(&channel) {
                Ok(c) => c,
                Err(_) if channel.is_empty() => {
                    errors.push(format!("line {line}, column `channel`: is required"));
                    continue;
                }
                Err(e) => {
                    errors.push(format!("line {line}, column `channel`: {e}"));
                    continue;
                }
            };
            let address = match blocks::normalize(channel, &address) {
                Ok(a) => a,
                Err(_) if address.is_empty() => {
                    errors.push(format!("line {line}, column `address`: is required"));
                    continue;
                }
                Err(e) => {
                    errors.push(format!("line {line}, column `address`: {e}"));
                    continue;
                }
            };
            if let Some(first) = seen.insert((channel.to_string(), address.clone()), line) {
                errors.push(format!(
                    "line {line}, column `address`: `{address}` on `{channel}` is also on line {first}"
                ));
                continue;
            }
            blocks.push(NewBlock {
                channel: channel.to_string(),
                address,
                reason: get("reason"),
                source: "import".to_string(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(bad(&shown, errors));
    }
    Ok(blocks)
}

fn bad(file: &str, mut errors: Vec<String>) -> ImportError {
    errors.sort_by_key(|e| {
        e.strip_prefix("line ")
            .and_then(|r| r.split([',', ':']).next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    });
    let count = errors
        .iter()
        .map(|e| e.split([',', ':']).next().unwrap_or("").to_string())
        .collect::<HashSet<_>>()
        .len();
    let mut lines: Vec<String> = errors
        .iter()
        .take(50)
        .map(|e| format!("  {file} {e}"))
        .collect();
    if count > 50 {
        lines.push(format!("  … and {} more", count - 50));
    }
    ImportError::BadRows {
        file: file.to_string(),
        count,
        lines: lines.join("\n"),
    }
}

/// Imports `file` into `table`: all rows or none. With `update` (customers only), a row whose
/// email names a stored customer changes that customer's columns given in the file instead of
/// being refused. Returns how many rows were inserted and how many updated.
pub async fn import(
    store: &Store,
    table: Table,
    file: &Path,
    prefix: &str,
    update: bool,
) -> Result<(u64, u64), ImportError> {
    let mut checked = check(store, table, file, update).await?;
    let (c, s, i, u) = store
        .import_updating(
            &checked.customers,
            &checked.subscriptions,
            &mut checked.invoices,
            prefix,
            (&checked.updates, &checked.update_columns),
        )
        .await?;
    Ok((c + s + i, u))
}
