//! The billing tables (`customers`, `subscriptions`, `invoices`) and `notification_log`: every
//! query the billing jobs, the notification pipeline, `tickler import` and `tickler demo` run.
//! Each query is written once, in PostgreSQL's notation, and adapted by [`Store::sql`]; every
//! selection is set-based (one query per page of rows, never one per invoice), and bulk writes
//! pass their rows as one JSON array.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;

use super::{Doing, Result, Store, json_text, ts, with_pool};

/// Where the sums of amounts are split (see [`Store::stats`]).
const SPLIT: i128 = 1_000_000_000;

/// An invoice with its customer, as the reminder and escalation jobs read it. Its fields are
/// in the order of [`INVOICE_VIEW`]'s columns, which [`PAGE_AS_JSON`] writes as an array.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct InvoiceView {
    pub id: String,
    pub number: String,
    pub description: String,
    pub amount_minor: i64,
    pub currency: String,
    pub issued_at: DateTime<Utc>,
    pub due_date: NaiveDate,
    pub status: String,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub escalation_level: i32,
    pub escalated_at: Option<DateTime<Utc>>,
    pub provider_ref: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub customer_id: String,
    pub customer_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub customer_timezone: Option<String>,
    pub locale: String,
    pub provider_customer_id: Option<String>,
}

/// The select of [`InvoiceView`]; public so the benchmark explains the very query text.
pub const INVOICE_VIEW: &str = "SELECT i.id::text AS id, i.number,
        COALESCE(s.description, '') AS description, i.amount_minor, i.currency, i.issued_at,
        i.due_date, i.status, i.period_start, i.period_end, i.escalation_level, i.escalated_at,
        i.provider_ref, i.paid_at, c.id::text AS customer_id, c.name AS customer_name, c.email,
        c.phone, c.timezone AS customer_timezone, c.locale, c.provider_customer_id
   FROM invoices i
   JOIN customers c ON c.id = i.customer_id
   LEFT JOIN subscriptions s ON s.id = i.subscription_id";

/// On SQLite, a page of [`INVOICE_VIEW`] rows as one JSON value (`{}`: the page's query), each
/// row an array of its columns in [`InvoiceView`]'s order. sqlx hands a row over by copying
/// each of its 21 values into memory of its own and looking each column up by name: on a page
/// of invoices that was about 40 % of the selection's instructions, nearly all of it
/// `malloc` and `free` (`bench/instructions.sh --bench journal`, README, stop 47).
const PAGE_AS_JSON: &str = "SELECT json_group_array(json_array(id, number, description,
        amount_minor, currency, issued_at, due_date, status, period_start, period_end,
        escalation_level, escalated_at, provider_ref, paid_at, customer_id, customer_name, email,
        phone, customer_timezone, locale, provider_customer_id) ORDER BY due_date, id)
   FROM ({})";

/// Reads a page of [`InvoiceView`] rows from `$text` (an [`INVOICE_VIEW`] query, adapted) with
/// these binds: on SQLite as one JSON value ([`PAGE_AS_JSON`]), or, when serde refuses it (a
/// value stored in a form sqlx reads and serde does not, say a date without its zone), as rows
/// again; on PostgreSQL as rows.
macro_rules! invoice_page {
    ($store:expr, $text:expr, $doing:expr, [$($bind:expr),*]) => {{
        let (text, doing) = ($text, $doing);
        let mut page: Option<Vec<InvoiceView>> = None;
        if let Store::Sqlite(lite) = $store {
            let json: String = sqlx::query_scalar(&PAGE_AS_JSON.replace("{}", &text))
                $(.bind($bind))*
                .fetch_one(lite.pool())
                .await
                .doing(doing)?;
            match serde_json::from_str(&json) {
                Ok(read) => page = Some(read),
                Err(e) => tracing::debug!("a page of invoices read again as rows: {e}"),
            }
        }
        match page {
            Some(page) => Ok(page),
            None => with_pool!($store, pool => sqlx::query_as::<_, InvoiceView>(&text)
                $(.bind($bind))*
                .fetch_all(pool)
                .await
                .doing(doing)),
        }
    }};
}

/// The page of [`Store::open_invoices_due`]: due in `[$1, $2]`, after the cursor `($3, $4)`.
pub const REMINDER_WHERE: &str = "
  WHERE i.status = 'open' AND i.due_date BETWEEN $1 AND $2
    AND (i.due_date > $3 OR (i.due_date = $3 AND i.id > $4::uuid))
  ORDER BY i.due_date, i.id LIMIT $5";

/// The page of [`Store::escalation_candidates`]: due by `$1`, at level `$2`, last raised by
/// `$3` (or never), after the cursor `($4, $5)`.
pub const ESCALATION_WHERE: &str = "
  WHERE i.status = 'open' AND i.due_date <= $1 AND i.escalation_level = $2
    AND ($3::timestamptz IS NULL OR i.escalated_at IS NULL OR i.escalated_at <= $3)
    AND (i.due_date > $4 OR (i.due_date = $4 AND i.id > $5::uuid))
  ORDER BY i.due_date, i.id LIMIT $6";

/// Where a page of invoices ends, for keyset pagination in `(due_date, id)` order, the order
/// of the `invoices_open_due` index.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub due_date: NaiveDate,
    pub id: String,
}

impl Cursor {
    pub fn start() -> Cursor {
        Cursor {
            due_date: NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default(),
            id: String::new(),
        }
    }
    pub fn after(invoice: &InvoiceView) -> Cursor {
        Cursor {
            due_date: invoice.due_date,
            id: invoice.id.clone(),
        }
    }
}

/// A subscription with automatic invoicing, as `create_invoices` reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: String,
    pub customer_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub interval: String,
    pub anchor_day: i32,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub payment_terms_days: i32,
}

/// An invoice to insert (from `create_invoices`, `tickler import` or `tickler demo`).
#[derive(Debug, Clone, Serialize)]
pub struct NewInvoice {
    pub id: String,
    /// Assigned from the `invoice` counter when empty.
    pub number: String,
    pub customer_id: String,
    pub subscription_id: Option<String>,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub amount_minor: i64,
    pub currency: String,
    pub issued_at: String,
    pub due_date: NaiveDate,
    pub status: String,
    pub paid_at: Option<String>,
    pub provider_ref: Option<String>,
    pub escalation_level: i32,
    pub escalated_at: Option<String>,
}

/// A customer to insert.
#[derive(Debug, Clone, Serialize)]
pub struct NewCustomer {
    pub id: String,
    pub org_id: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub locale: String,
    pub provider_customer_id: Option<String>,
}

/// A subscription to insert.
#[derive(Debug, Clone, Serialize)]
pub struct NewSubscription {
    pub id: String,
    pub customer_id: String,
    pub description: String,
    pub amount_minor: i64,
    pub currency: String,
    pub interval: String,
    pub anchor_day: i32,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub payment_terms_days: i32,
    pub auto_invoice: bool,
}

/// A message about to be sent: its claim in `notification_log`.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationClaim {
    pub id: String,
    pub key: String,
    pub channel: &'static str,
    pub recipient: String,
    pub template: String,
    pub invoice: Option<String>,
    /// `sending`, `skipped` for a message that cannot be sent (no address), `suppressed`
    /// for one whose address is blocked (`contact_blocks`), or `deferred` for one due outside
    /// its send window (until `until`).
    pub status: &'static str,
    pub error: Option<String>,
    /// When a `deferred` message's window opens (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Who claims messages: the job (or task, or alert) sending them, the process that holds the
/// claims (`tickler_instances` id), and the run they belong to.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub job: &'a str,
    pub owner: &'a str,
    pub run: Option<uuid::Uuid>,
}

/// A claimed message about to be handed to its provider: its key, and the invoice it is
/// about (as claimed), whose status decides whether it still goes.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationAttempt {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "i")]
    pub invoice: Option<String>,
}

/// How a claimed message ended.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationEnd {
    pub key: String,
    /// `sent`, `failed`, or `unknown` (the provider may have taken it; not retried).
    pub status: &'static str,
    pub provider_id: Option<String>,
    pub error: Option<String>,
}

/// Figures for `stats_report`, over `[from, to)`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub issued: i64,
    pub paid: i64,
    pub overdue: i64,
    pub open: i64,
    /// Invoices due in the period, and how many of them are paid.
    pub due_in_period: i64,
    pub due_in_period_paid: i64,
    /// Per currency: issued, collected (paid in the period), outstanding (open now), in minor
    /// units; 128-bit, as a sum of many 64-bit amounts may not fit in 64 bits.
    pub currencies: Vec<(String, i128, i128, i128)>,
    /// Per channel: sent, failed.
    pub notifications: Vec<(String, i64, i64)>,
    /// Per job: failed, timed out, abandoned runs.
    pub job_failures: Vec<(String, i64)>,
}

/// Reserves `$1` invoice numbers; returns the last one.
const NEXT_NUMBERS: &str = "INSERT INTO tickler_counters (name, value) VALUES ('invoice', $1)
             ON CONFLICT (name) DO UPDATE SET value = tickler_counters.value + excluded.value
             RETURNING value";

/// Inserts the invoices of the JSON array `$1`, created at `$2`.
const INSERT_INVOICES: &str =
    "INSERT INTO invoices (id, number, customer_id, subscription_id, period_start,
                    period_end, amount_minor, currency, issued_at, due_date, status, paid_at,
                    provider_ref, escalation_level, escalated_at, created_at, updated_at)
             SELECT (r.value->>'id')::uuid, r.value->>'number', (r.value->>'customer_id')::uuid,
                    (r.value->>'subscription_id')::uuid, (r.value->>'period_start')::date,
                    (r.value->>'period_end')::date, (r.value->>'amount_minor')::bigint,
                    r.value->>'currency', (r.value->>'issued_at')::timestamptz,
                    (r.value->>'due_date')::date, r.value->>'status',
                    (r.value->>'paid_at')::timestamptz, r.value->>'provider_ref',
                    (r.value->>'escalation_level')::integer,
                    (r.value->>'escalated_at')::timestamptz, $2::timestamptz, $2::timestamptz
               FROM ROWS($1)";

/// Numbers the invoices without a number from the `invoice` counter, inside the transaction
/// `$tx`. A number already taken (by an imported invoice, or another row of the same import)
/// moves the counter past the highest number of that prefix, and those invoices are numbered
/// again, so a collision never aborts the insert.
macro_rules! number_invoices {
    ($tx:ident, $invoices:ident, $prefix:ident, $counter:ident, $taken:ident, $highest:ident, $bump:ident) => {{
        let explicit: HashSet<String> = $invoices
            .iter()
            .filter(|i| !i.number.is_empty())
            .map(|i| i.number.clone())
            .collect();
        let mut todo: Vec<usize> = $invoices
            .iter()
            .enumerate()
            .filter(|(_, i)| i.number.is_empty())
            .map(|(n, _)| n)
            .collect();
        for round in 0.. {
            if todo.is_empty() {
                break;
            }
            if round > 0 {
                // Skip past the highest number with this prefix.
                let top: Option<String> = sqlx::query_scalar(&$highest)
                    .bind(format!("{}%", $prefix))
                    .fetch_optional(&mut *$tx)
                    .await
                    .doing("numbering invoices")?;
                let top = top
                    .and_then(|t| t.strip_prefix(AsRef::<str>::as_ref(&$prefix)).and_then(|n| n.parse::<i64>().ok()))
                    .unwrap_or(0)
                    .max(explicit.iter().filter_map(|t| t.strip_prefix(AsRef::<str>::as_ref(&$prefix))?.parse::<i64>().ok()).max().unwrap_or(0));
                sqlx::query(&$bump)
                    .bind(top)
                    .execute(&mut *$tx)
                    .await
                    .doing("numbering invoices")?;
            }
            if round > 3 {
                return Err(super::StoreError::Query {
                    doing: "numbering invoices",
                    source: sqlx::Error::Protocol(format!(
                        "no free invoice number with the prefix `{}`",
                        $prefix
                    )),
                });
            }
            let k = todo.len() as i64;
            let last: i64 = sqlx::query_scalar(&$counter)
                .bind(k)
                .fetch_one(&mut *$tx)
                .await
                .doing("numbering invoices")?;
            let mut n = last - k;
            for &i in &todo {
                n += 1;
                $invoices[i].number = format!("{}{n:06}", $prefix);
            }
            let keys: Vec<Value> = todo.iter().map(|&i| json!({ "k": $invoices[i].number })).collect();
            let used: Vec<String> = sqlx::query_scalar(&$taken)
                .bind(json_text(&keys))
                .fetch_all(&mut *$tx)
                .await
                .doing("numbering invoices")?;
            let used: HashSet<String> = used.into_iter().collect();
            todo.retain(|&i| used.contains(&$invoices[i].number) || explicit.contains(&$invoices[i].number));
        }
    }};
}

impl Store {
    /// The distinct `customers.timezone` values (`None`: customers without one), so that a
    /// billing job knows how far its customers' dates can be from its own.
    pub async fn customer_zones(&self) -> Result<Vec<Option<String>>> {
        let text = self.sql("SELECT DISTINCT timezone FROM customers");
        with_pool!(self, pool => sqlx::query_scalar(&text)
            .fetch_all(pool)
            .await
            .doing("reading the zones of customers"))
    }

    /// Open invoices due in `[from, to]`, after `cursor`, in `(due_date, id)` order.
    pub async fn open_invoices_due(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        cursor: &Cursor,
        limit: i64,
    ) -> Result<Vec<InvoiceView>> {
        let text = format!("{INVOICE_VIEW}{REMINDER_WHERE}");
        let text = self.sql(&text);
        let cursor_id = if cursor.id.is_empty() {
            uuid::Uuid::nil().to_string()
        } else {
            cursor.id.clone()
        };
        invoice_page!(
            self,
            text,
            "reading open invoices by due date",
            [from, to, cursor.due_date, &cursor_id, limit]
        )
    }

    /// Open invoices due on or before `due_before` whose last escalation level is
    /// `previous_level` and, when set, was sent on or before `escalated_before`.
    pub async fn escalation_candidates(
        &self,
        due_before: NaiveDate,
        previous_level: i32,
        escalated_before: Option<DateTime<Utc>>,
        cursor: &Cursor,
        limit: i64,
    ) -> Result<Vec<InvoiceView>> {
        let text = format!("{INVOICE_VIEW}{ESCALATION_WHERE}");
        let text = self.sql(&text);
        let cursor_id = if cursor.id.is_empty() {
            uuid::Uuid::nil().to_string()
        } else {
            cursor.id.clone()
        };
        invoice_page!(
            self,
            text,
            "reading overdue invoices",
            [
                due_before,
                previous_level,
                escalated_before,
                cursor.due_date,
                &cursor_id,
                limit
            ]
        )
    }

    /// Records that escalation `level` went out for these invoices.
    pub async fn raise_escalation(
        &self,
        invoice_ids: &[String],
        level: i32,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        if invoice_ids.is_empty() {
            return Ok(0);
        }
        let rows: Vec<Value> = invoice_ids.iter().map(|id| json!({ "id": id })).collect();
        let text = self.sql(
            "UPDATE invoices SET escalation_level = $2, escalated_at = $3, updated_at = $3
              WHERE id IN (SELECT (r.value->>'id')::uuid FROM ROWS($1))
                AND escalation_level < $2",
        );
        with_pool!(self, pool => sqlx::query(&text)
            .bind(json_text(&rows))
            .bind(level)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .doing("raising escalation levels"))
    }

    /// One invoice by number, with its customer.
    pub async fn invoice_by_id(&self, id: &str) -> Result<Option<InvoiceView>> {
        let text = format!("{INVOICE_VIEW} WHERE i.id = $1::uuid");
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, InvoiceView>(&text)
            .bind(id)
            .fetch_optional(pool)
            .await
            .doing("reading an invoice"))
    }

    pub async fn invoice_by_number(&self, number: &str) -> Result<Option<InvoiceView>> {
        let text = format!("{INVOICE_VIEW} WHERE i.number = $1");
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, InvoiceView>(&text)
            .bind(number)
            .fetch_optional(pool)
            .await
            .doing("reading an invoice"))
    }

    /// Subscriptions with automatic invoicing that are active on some day of
    /// `[from, to]`, after `after_id`, in id order.
    pub async fn auto_invoice_subscriptions(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<SubscriptionRow>> {
        let text = self.sql(
            "SELECT id::text AS id, customer_id::text AS customer_id, amount_minor, currency,
                    \"interval\", anchor_day, start_date, end_date, payment_terms_days
               FROM subscriptions
              WHERE auto_invoice = TRUE AND start_date <= $2
                AND (end_date IS NULL OR end_date >= $1) AND id > $3::uuid
              ORDER BY id LIMIT $4",
        );
        let after = if after_id.is_empty() {
            uuid::Uuid::nil().to_string()
        } else {
            after_id.to_string()
        };
        with_pool!(self, pool => sqlx::query_as::<_, SubscriptionRow>(&text)
            .bind(from)
            .bind(to)
            .bind(&after)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("reading subscriptions with automatic invoicing"))
    }

    /// Which of these `(subscription, period_start)` pairs already have an invoice.
    pub async fn invoiced_periods(
        &self,
        pairs: &[(String, NaiveDate)],
    ) -> Result<HashSet<(String, NaiveDate)>> {
        if pairs.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<Value> = pairs
            .iter()
            .map(|(s, d)| json!({ "s": s, "d": d }))
            .collect();
        let text = self.sql(
            "SELECT i.subscription_id::text AS s, i.period_start AS d
               FROM invoices i
               JOIN ROWS($1) ON i.subscription_id = (r.value->>'s')::uuid
                            AND i.period_start = (r.value->>'d')::date",
        );
        let found: Vec<(String, NaiveDate)> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(json_text(&rows))
            .fetch_all(pool)
            .await
            .doing("looking up invoiced periods"))?;
        Ok(found.into_iter().collect())
    }

    /// Inserts invoices in one transaction, numbering those without a number as
    /// `{prefix}{n:06}` from the `invoice` counter. An invoice whose (subscription, period)
    /// exists already is left out (invariant 4); returns the invoices inserted.
    pub async fn insert_invoices(
        &self,
        invoices: &mut [NewInvoice],
        prefix: &str,
    ) -> Result<Vec<NewInvoice>> {
        if invoices.is_empty() {
            return Ok(vec![]);
        }
        let unnumbered = invoices.iter().filter(|i| i.number.is_empty()).count() as i64;
        let (counter, taken, highest, bump) = self.numbering_sql();
        let insert = format!(
            "{INSERT_INVOICES}
              WHERE TRUE
             ON CONFLICT (subscription_id, period_start) WHERE subscription_id IS NOT NULL
             DO NOTHING
             RETURNING id::text"
        );
        let insert = self.sql(&insert);
        let now = ts(Utc::now());
        let begin = self.begin_statement();
        let inserted: Vec<String> = with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("creating invoices")?;
            if unnumbered > 0 {
                number_invoices!(tx, invoices, prefix, counter, taken, highest, bump);
            }
            let ids: Vec<String> = sqlx::query_scalar(&insert)
                .bind(json_text(invoices))
                .bind(&now)
                .fetch_all(&mut *tx)
                .await
                .doing("creating invoices")?;
            tx.commit().await.doing("creating invoices")?;
            ids
        });
        let inserted: HashSet<String> = inserted.into_iter().collect();
        Ok(invoices
            .iter()
            .filter(|i| inserted.contains(&i.id))
            .cloned()
            .collect())
    }

    /// Open invoices of subscriptions that have no payment request at the provider yet.
    pub async fn invoices_without_provider_ref(&self, limit: i64) -> Result<Vec<InvoiceView>> {
        let text = format!(
            "{INVOICE_VIEW} WHERE i.status = 'open' AND i.provider_ref IS NULL
                AND i.subscription_id IS NOT NULL ORDER BY i.due_date, i.id LIMIT $1"
        );
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, InvoiceView>(&text)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("reading invoices without a payment request"))
    }

    /// Keeps a customer's payment provider code (e.g. Paystack's `CUS_...`), where it has none.
    pub async fn set_provider_customer_id(&self, customer_id: &str, code: &str) -> Result<()> {
        let text = self.sql(
            "UPDATE customers SET provider_customer_id = $2
              WHERE id = $1::uuid AND provider_customer_id IS NULL",
        );
        with_pool!(self, pool => sqlx::query(&text)
            .bind(customer_id)
            .bind(code)
            .execute(pool)
            .await
            .map(|_| ())
            .doing("recording a customer's provider code"))?;
        Ok(())
    }

    pub async fn set_provider_ref(&self, invoice_id: &str, reference: &str) -> Result<()> {
        let text =
            self.sql("UPDATE invoices SET provider_ref = $2, updated_at = $3 WHERE id = $1::uuid");
        with_pool!(self, pool => sqlx::query(&text)
            .bind(invoice_id)
            .bind(reference)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|_| ())
            .doing("recording a payment request"))?;
        Ok(())
    }

    /// The keys among these whose row's `on_sent` statements ran already (a `notify` job's).
    pub async fn on_sent_done(&self, keys: &[String]) -> Result<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<Value> = keys.iter().map(|k| json!({ "k": k })).collect();
        let text = self.sql(
            "SELECT n.dedup_key FROM notification_log n
               JOIN ROWS($1) ON n.dedup_key = r.value->>'k'
              WHERE n.on_sent_at IS NOT NULL",
        );
        let found: Vec<(String,)> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(json_text(&rows))
            .fetch_all(pool)
            .await
            .doing("reading notification_log"))?;
        Ok(found.into_iter().map(|(k,)| k).collect())
    }

    /// Records that the `on_sent` statements of the row these messages belong to ran.
    pub async fn mark_on_sent(&self, keys: &[String], now: DateTime<Utc>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let rows: Vec<Value> = keys.iter().map(|k| json!({ "k": k })).collect();
        let text = self.sql(
            "UPDATE notification_log SET on_sent_at = $2::timestamptz
              WHERE dedup_key IN (SELECT r.value->>'k' FROM ROWS($1))",
        );
        with_pool!(self, pool => sqlx::query(&text)
            .bind(json_text(&rows))
            .bind(ts(now))
            .execute(pool)
            .await
            .map(|_| ())
            .doing("recording on_sent in notification_log"))?;
        Ok(())
    }

    /// The states of these dedup keys in `notification_log`.
    pub async fn notification_states(&self, keys: &[String]) -> Result<HashMap<String, String>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<Value> = keys.iter().map(|k| json!({ "k": k })).collect();
        let text = self.sql(
            "SELECT n.dedup_key, n.status FROM notification_log n
               JOIN ROWS($1) ON n.dedup_key = r.value->>'k'",
        );
        let found: Vec<(String, String)> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(json_text(&rows))
            .fetch_all(pool)
            .await
            .doing("reading notification_log"))?;
        Ok(found.into_iter().collect())
    }

    /// Claims messages for `owner` (a `tickler_instances` id): a key new to
    /// `notification_log`, or one whose last send failed, is inserted (or set back to
    /// `sending`, not yet attempted) and returned; a key sent, skipped, unknown or being sent
    /// is not. Only the returned keys may be sent, and only after [`Store::journal_notifications`]
    /// recorded the attempt (invariant 4).
    pub async fn claim_notifications(
        &self,
        claimant: &Claimant<'_>,
        claims: &[NotificationClaim],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        self.claim_notifications_deferring(claimant, claims, &[], now)
            .await
    }

    /// Claims messages as [`claim_notifications`](Self::claim_notifications) does, and, in
    /// the same transaction, inserts the task of each `deferred` claim that was taken
    /// (`deferred`: the claim's key and the task that sends it when its window opens). A row
    /// is taken when it is new, `failed`, or `deferred` with its window open by `now`: a
    /// message deferred already and not yet due keeps its row and its one task.
    pub async fn claim_notifications_deferring(
        &self,
        claimant: &Claimant<'_>,
        claims: &[NotificationClaim],
        deferred: &[(String, super::queue::NewTask)],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        if claims.is_empty() {
            return Ok(HashSet::new());
        }
        let doing = "claiming messages in notification_log";
        let text = self.sql(
            "INSERT INTO notification_log (id, dedup_key, job_name, channel, recipient, template,
                    invoice_id, status, error, attempts, created_at, updated_at, owner, run_id,
                    deferred_until)
             SELECT (r.value->>'id')::uuid, r.value->>'key', $2, r.value->>'channel',
                    r.value->>'recipient', r.value->>'template', (r.value->>'invoice')::uuid,
                    r.value->>'status', r.value->>'error', 1, $3::timestamptz, $3::timestamptz,
                    $4, $5::uuid, (r.value->>'until')::timestamptz
               FROM ROWS($1)
              WHERE TRUE
             ON CONFLICT (dedup_key) DO UPDATE
                SET status = excluded.status, attempts = notification_log.attempts + 1,
                    recipient = excluded.recipient, job_name = excluded.job_name,
                    error = excluded.error, updated_at = excluded.updated_at,
                    owner = excluded.owner, run_id = excluded.run_id, attempted_at = NULL,
                    deferred_until = excluded.deferred_until
              WHERE notification_log.status = 'failed'
                 OR (notification_log.status = 'deferred'
                     AND notification_log.deferred_until <= $3::timestamptz)
             RETURNING dedup_key",
        );
        let begin = self.begin_statement();
        let store = self;
        let keys: (Vec<String>, bool) = with_pool!(self, journal_pool, pool => {
            let mut tx = pool.begin_with(begin).await.doing(doing)?;
            let keys: Vec<String> = sqlx::query_scalar(&text)
                .bind(json_text(claims))
                .bind(claimant.job)
                .bind(ts(now))
                .bind(claimant.owner)
                .bind(claimant.run.map(|r| r.to_string()))
                .fetch_all(&mut *tx)
                .await
                .doing(doing)?;
            let taken: HashSet<&str> = keys.iter().map(String::as_str).collect();
            let tasks: Vec<super::queue::NewTask> = deferred
                .iter()
                .filter(|(k, _)| taken.contains(k.as_str()))
                .map(|(_, t)| t.clone())
                .collect();
            super::queue::insert_tasks!(tx, store, tasks, now);
            tx.commit().await.doing(doing)?;
            (keys, !tasks.is_empty())
        });
        let (keys, inserted) = keys;
        if inserted {
            super::queue::tasks_inserted();
        }
        Ok(keys.into_iter().collect())
    }

    /// The messages waiting for their send windows, per job: how many, and when the first
    /// goes out (`tickler list`).
    pub async fn deferred_by_job(&self) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        let text = self.sql(
            "SELECT COALESCE(job_name, ''), CAST(count(*) AS BIGINT),
                    min(deferred_until)
               FROM notification_log WHERE status = 'deferred'
              GROUP BY job_name ORDER BY job_name",
        );
        with_pool!(self, pool => sqlx::query_as(&text)
            .fetch_all(pool)
            .await
            .doing("reading deferred messages"))
    }

    /// Ends a message that waited for its send window without sending it (its invoice was
    /// paid or voided meanwhile): `cancelled`, with `why`.
    pub async fn cancel_deferred_notification(
        &self,
        key: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let text = self.sql(
            "UPDATE notification_log SET status = 'cancelled', error = $2,
                    updated_at = $3::timestamptz
              WHERE dedup_key = $1 AND status = 'deferred'",
        );
        with_pool!(self, pool => sqlx::query(&text)
            .bind(key)
            .bind(why)
            .bind(ts(now))
            .execute(pool)
            .await
            .map(drop)
            .doing("cancelling a deferred message"))
    }

    /// Writes, in one transaction, what `owner` is about to hand to providers (`attempts`)
    /// and how earlier sends ended (`ends`). Returns the attempted keys that are still
    /// `owner`'s to send: a key whose claim was released or taken over meanwhile (this
    /// process was taken for dead) must not be sent, nor one whose invoice is no longer open
    /// (recorded `cancelled`). An end is written only while `owner`
    /// holds the row; it also replaces an `unknown` set by another process in between.
    pub async fn journal_notifications(
        &self,
        owner: &str,
        attempts: &[NotificationAttempt],
        ends: &[NotificationEnd],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let doing = "recording messages handed to providers in notification_log";
        let texts = journal_statements(matches!(self, Store::Postgres(_)));
        let marked: HashSet<String> = match self {
            // One statement, its own transaction: the attempts and the ends commit together in
            // one round trip, on the journal's connections, where the planner takes the unique
            // index of keys whatever its statistics say (see `PgStore`). A key is never in both
            // lists of one commit: its end is sent after its attempt was committed.
            Store::Postgres(pg) => {
                let rows: Vec<(String, String)> = sqlx::query_as(&texts[0])
                    .bind(json_text(attempts))
                    .bind(owner)
                    .bind(ts(now))
                    .bind(json_text(ends))
                    .fetch_all(pg.journal_pool())
                    .await
                    .doing(doing)?;
                rows.into_iter()
                    .filter(|(_, status)| status == "sending")
                    .map(|(key, _)| key)
                    .collect()
            }
            // Up to three statements in one transaction. The attempts whose invoice is open
            // (nearly all) are marked by a statement that sets no indexed column, so their rows
            // are rewritten and no index is touched; only when some attempt is left over does
            // a second statement cancel those whose invoice is not open.
            Store::Sqlite(lite) => {
                let (mark, cancel, end) = (&texts[0], &texts[1], &texts[2]);
                let pool = lite.journal_pool();
                let mut tx = pool.begin_with(self.begin_statement()).await.doing(doing)?;
                let marked: HashSet<String> = if attempts.is_empty() {
                    HashSet::new()
                } else {
                    sqlx::query_scalar(mark)
                        .bind(json_text(attempts))
                        .bind(owner)
                        .bind(ts(now))
                        .fetch_all(&mut *tx)
                        .await
                        .doing(doing)?
                        .into_iter()
                        .collect()
                };
                if marked.len() < attempts.len() {
                    let rest: Vec<&NotificationAttempt> = attempts
                        .iter()
                        .filter(|a| !marked.contains(&a.key))
                        .collect();
                    sqlx::query(cancel)
                        .bind(json_text(&rest))
                        .bind(owner)
                        .bind(ts(now))
                        .execute(&mut *tx)
                        .await
                        .doing(doing)?;
                }
                if !ends.is_empty() {
                    sqlx::query(end)
                        .bind(json_text(ends))
                        .bind(owner)
                        .bind(ts(now))
                        .execute(&mut *tx)
                        .await
                        .doing(doing)?;
                }
                tx.commit().await.doing(doing)?;
                marked
            }
        };
        Ok(marked)
    }

    /// Gives up `owner`'s claims on `keys` (a delivery cut short, a task reclaimed from a dead
    /// daemon): a message never handed to a provider goes back to `failed`, so the next run or
    /// attempt sends it; one that may have been handed over becomes `unknown`, never resent.
    pub async fn release_notifications(
        &self,
        owner: &str,
        keys: &[String],
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<super::claims::Released> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<Value> = keys.iter().map(|k| json!({ "k": k })).collect();
        let text = self.sql(
            "UPDATE notification_log
                SET status = CASE WHEN attempted_at IS NULL THEN 'failed' ELSE 'unknown' END,
                    error = CASE WHEN attempted_at IS NULL THEN 'not attempted: ' || $3
                        ELSE $3 || ' while it was being sent; it may have been sent, so it is \
                              not sent again' END,
                    updated_at = $4::timestamptz
              WHERE dedup_key IN (SELECT r.value->>'k' FROM ROWS($1))
                AND owner = $2 AND status = 'sending'
             RETURNING status",
        );
        let statuses: Vec<String> = with_pool!(self, pool => sqlx::query_scalar(&text)
            .bind(json_text(&rows))
            .bind(owner)
            .bind(why)
            .bind(ts(now))
            .fetch_all(pool)
            .await
            .doing("releasing claimed messages"))?;
        Ok(super::claims::Released::count(&statuses))
    }

    /// The figures of a stats report over `[from, to)`; `today` decides what is overdue.
    /// Amounts are summed without overflow, however large (each is at most `i64::MAX`).
    pub async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        from_date: NaiveDate,
        to_date: NaiveDate,
        today: NaiveDate,
    ) -> Result<Stats> {
        let counts = self.sql(
            "SELECT
               (SELECT COUNT(*) FROM invoices WHERE issued_at >= $1::timestamptz AND issued_at < $2::timestamptz),
               (SELECT COUNT(*) FROM invoices WHERE status = 'paid'
                   AND paid_at >= $1::timestamptz AND paid_at < $2::timestamptz),
               (SELECT COUNT(*) FROM invoices WHERE status = 'open' AND due_date < $3),
               (SELECT COUNT(*) FROM invoices WHERE status = 'open'),
               (SELECT COUNT(*) FROM invoices WHERE status <> 'void'
                   AND due_date >= $4 AND due_date < $5),
               (SELECT COUNT(*) FROM invoices WHERE status = 'paid'
                   AND due_date >= $4 AND due_date < $5)",
        );
        // Each sum in two parts (amounts over and under 10^9), so no sum overflows a 64-bit
        // integer before some two billion invoices, whatever the amounts; put back together
        // as 128-bit integers.
        let sums = [
            "issued_at >= $1::timestamptz AND issued_at < $2::timestamptz",
            "status = 'paid' AND paid_at >= $1::timestamptz AND paid_at < $2::timestamptz",
            "status = 'open'",
        ]
        .iter()
        .map(|when| {
            format!(
                "SUM(CASE WHEN {when} THEN amount_minor / {SPLIT} ELSE 0 END)::bigint,
                 SUM(CASE WHEN {when} THEN amount_minor % {SPLIT} ELSE 0 END)::bigint"
            )
        })
        .collect::<Vec<_>>()
        .join(",\n");
        let currencies = self
            .sql(&format!(
                "SELECT currency, {sums} FROM invoices GROUP BY currency ORDER BY currency"
            ))
            .into_owned();
        let notifications = self.sql(
            "SELECT channel,
                    SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END)::bigint,
                    SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)::bigint
               FROM notification_log WHERE created_at >= $1::timestamptz AND created_at < $2::timestamptz
              GROUP BY channel ORDER BY channel",
        );
        let failures = self.sql(
            "SELECT job_name, COUNT(*) FROM job_execution_logs
              WHERE started_at >= $1::timestamptz AND started_at < $2::timestamptz
                AND status IN ('failed', 'timed_out', 'abandoned')
              GROUP BY job_name ORDER BY job_name",
        );
        let (f, t) = (ts(from), ts(to));
        with_pool!(self, pool => {
            let row = sqlx::query(&counts)
                .bind(&f)
                .bind(&t)
                .bind(today)
                .bind(from_date)
                .bind(to_date)
                .fetch_one(pool)
                .await
                .doing("counting invoices for a report")?;
            let parts: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(&currencies)
                .bind(&f)
                .bind(&t)
                .fetch_all(pool)
                .await
                .doing("summing amounts for a report")?;
            let whole = |high: i64, low: i64| i128::from(high) * SPLIT + i128::from(low);
            let currencies = parts
                .into_iter()
                .map(|(c, ih, il, ch, cl, oh, ol)| {
                    (c, whole(ih, il), whole(ch, cl), whole(oh, ol))
                })
                .collect();
            let notifications: Vec<(String, i64, i64)> = sqlx::query_as(&notifications)
                .bind(&f)
                .bind(&t)
                .fetch_all(pool)
                .await
                .doing("counting messages for a report")?;
            let job_failures: Vec<(String, i64)> = sqlx::query_as(&failures)
                .bind(&f)
                .bind(&t)
                .fetch_all(pool)
                .await
                .doing("counting failed runs for a report")?;
            Ok(Stats {
                issued: row.try_get(0).doing("reading a report")?,
                paid: row.try_get(1).doing("reading a report")?,
                overdue: row.try_get(2).doing("reading a report")?,
                open: row.try_get(3).doing("reading a report")?,
                due_in_period: row.try_get(4).doing("reading a report")?,
                due_in_period_paid: row.try_get(5).doing("reading a report")?,
                currencies,
                notifications,
                job_failures,
            })
        })
    }

    /// The queries of [`number_invoices`]: reserve, find taken, find the highest, skip past.
    fn numbering_sql(&self) -> (String, String, String, String) {
        (
            self.sql(NEXT_NUMBERS).into_owned(),
            self.sql("SELECT i.number FROM invoices i JOIN ROWS($1) ON i.number = r.value->>'k'")
                .into_owned(),
            "SELECT number FROM invoices WHERE number LIKE $1
              ORDER BY length(number) DESC, number DESC LIMIT 1"
                .to_string(),
            "UPDATE tickler_counters SET value = $1 WHERE name = 'invoice' AND value < $1"
                .to_string(),
        )
    }

    /// How many rows each billing table holds (for `tickler demo` and `import`).
    pub async fn billing_counts(&self) -> Result<(i64, i64, i64)> {
        let text = "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM subscriptions),
                           (SELECT COUNT(*) FROM invoices)";
        with_pool!(self, pool => sqlx::query_as(text)
            .fetch_one(pool)
            .await
            .doing("counting billing rows"))
    }

    /// Which of `ids` exist in `table` (`customers`, `subscriptions` or `invoices`, by `id`;
    /// or `invoices` by `number` when `column` is `number`).
    pub async fn existing(
        &self,
        table: &str,
        column: &str,
        ids: &[String],
    ) -> Result<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<Value> = ids.iter().map(|k| json!({ "k": k })).collect();
        let cast = if column == "id" { "::uuid" } else { "" };
        let text = format!(
            "SELECT t.{column}::text FROM {table} t JOIN ROWS($1) ON t.{column} = (r.value->>'k'){cast}"
        );
        let text = self.sql(&text);
        let found: Vec<String> = with_pool!(self, pool => sqlx::query_scalar(&text)
            .bind(json_text(&rows))
            .fetch_all(pool)
            .await
            .doing("looking up existing rows"))?;
        Ok(found.into_iter().collect())
    }

    /// Customer ids by email, for imports that name customers by email.
    pub async fn customers_by_email(
        &self,
        emails: &[String],
    ) -> Result<HashMap<String, Vec<String>>> {
        if emails.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<Value> = emails.iter().map(|k| json!({ "k": k })).collect();
        let text = self.sql(
            "SELECT c.email, c.id::text FROM customers c JOIN ROWS($1) ON c.email = r.value->>'k'",
        );
        let found: Vec<(String, String)> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(json_text(&rows))
            .fetch_all(pool)
            .await
            .doing("looking up customers by email"))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (email, id) in found {
            out.entry(email).or_default().push(id);
        }
        Ok(out)
    }

    /// Inserts customers, subscriptions and invoices in one transaction: all or nothing.
    pub async fn import(
        &self,
        customers: &[NewCustomer],
        subscriptions: &[NewSubscription],
        invoices: &mut [NewInvoice],
        invoice_prefix: &str,
    ) -> Result<(u64, u64, u64)> {
        let (c, s, i, _) = self
            .import_updating(
                customers,
                subscriptions,
                invoices,
                invoice_prefix,
                (&[], &[]),
            )
            .await?;
        Ok((c, s, i))
    }

    /// [`Store::import`], and in the same transaction changes the `columns` of the stored
    /// customers in `updates` (by id); the fourth count is the customers changed.
    pub async fn import_updating(
        &self,
        customers: &[NewCustomer],
        subscriptions: &[NewSubscription],
        invoices: &mut [NewInvoice],
        invoice_prefix: &str,
        (updates, columns): (&[NewCustomer], &[&str]),
    ) -> Result<(u64, u64, u64, u64)> {
        let now = ts(Utc::now());
        // Only the columns of the file: one it does not have keeps the stored value.
        let set: Vec<String> = columns
            .iter()
            .map(|c| match *c {
                "org_id" => "org_id = (r.value->>'org_id')::uuid".to_string(),
                "locale" => "locale = COALESCE(r.value->>'locale', 'en')".to_string(),
                c => format!("{c} = r.value->>'{c}'"),
            })
            .collect();
        let update_text = format!(
            "UPDATE customers SET {} FROM ROWS($1) WHERE customers.id = (r.value->>'id')::uuid",
            if set.is_empty() {
                "id = id".to_string()
            } else {
                set.join(", ")
            }
        );
        let update_sql = self.sql(&update_text);
        let customers_sql = self.sql(
            "INSERT INTO customers (id, org_id, name, email, phone, timezone, locale,
                    provider_customer_id, created_at)
             SELECT (r.value->>'id')::uuid, (r.value->>'org_id')::uuid, r.value->>'name',
                    r.value->>'email', r.value->>'phone', r.value->>'timezone',
                    r.value->>'locale', r.value->>'provider_customer_id', $2::timestamptz
               FROM ROWS($1)",
        );
        let subscriptions_sql = self.sql(
            "INSERT INTO subscriptions (id, customer_id, description, amount_minor, currency,
                    \"interval\", anchor_day, start_date, end_date, payment_terms_days,
                    auto_invoice, created_at)
             SELECT (r.value->>'id')::uuid, (r.value->>'customer_id')::uuid,
                    r.value->>'description', (r.value->>'amount_minor')::bigint,
                    r.value->>'currency', r.value->>'interval',
                    (r.value->>'anchor_day')::integer, (r.value->>'start_date')::date,
                    (r.value->>'end_date')::date, (r.value->>'payment_terms_days')::integer,
                    (r.value->>'auto_invoice')::boolean, $2::timestamptz
               FROM ROWS($1)",
        );
        let (counter, taken, highest, bump) = self.numbering_sql();
        let invoices_sql = self.sql(INSERT_INVOICES);
        let unnumbered = invoices.iter().filter(|i| i.number.is_empty()).count() as i64;
        let begin = self.begin_statement();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("importing")?;
            let mut counts = (0, 0, 0, 0);
            for chunk in updates.chunks(2000) {
                counts.3 += sqlx::query(&update_sql)
                    .bind(json_text(chunk))
                    .execute(&mut *tx)
                    .await
                    .doing("updating customers")?
                    .rows_affected();
            }
            for chunk in customers.chunks(2000) {
                counts.0 += sqlx::query(&customers_sql)
                    .bind(json_text(chunk))
                    .bind(&now)
                    .execute(&mut *tx)
                    .await
                    .doing("importing customers")?
                    .rows_affected();
            }
            for chunk in subscriptions.chunks(2000) {
                counts.1 += sqlx::query(&subscriptions_sql)
                    .bind(json_text(chunk))
                    .bind(&now)
                    .execute(&mut *tx)
                    .await
                    .doing("importing subscriptions")?
                    .rows_affected();
            }
            if unnumbered > 0 {
                number_invoices!(tx, invoices, invoice_prefix, counter, taken, highest, bump);
            }
            for chunk in invoices.chunks(2000) {
                counts.2 += sqlx::query(&invoices_sql)
                    .bind(json_text(chunk))
                    .bind(&now)
                    .execute(&mut *tx)
                    .await
                    .doing("importing invoices")?
                    .rows_affected();
            }
            tx.commit().await.doing("importing")?;
            Ok(counts)
        })
    }
}

/// The journal's statements ([`Store::journal_notifications`]), adapted to the backend and
/// built once per backend, not at each commit: on PostgreSQL one, the ends' and the attempts'
/// updates in one `WITH`; on SQLite three: the marking of attempts, the cancelling of those
/// left over, and the ends.
fn journal_statements(postgres: bool) -> &'static [String] {
    static POSTGRES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    static SQLITE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let cell = if postgres { &POSTGRES } else { &SQLITE };
    cell.get_or_init(|| {
        // Both look each row up by its key (the unique index): `status || ''` keeps the
        // planners from walking the index of open rows instead, which holds the whole page a
        // delivery claimed, once per commit of a few messages.
        // PostgreSQL guesses 100 rows from the function and plans the join as a scan of the
        // whole table (7 ms at 20,000 rows, growing with it); the extra `= ANY` on the key
        // makes it look each row up in the unique index whatever its guess (0.4 ms).
        let by_key = |field: &str, param: &str| {
            if postgres {
                format!(
                    " AND notification_log.dedup_key = ANY (ARRAY(SELECT x.value->>'{field}' \
                   FROM jsonb_array_elements({param}::jsonb) AS x(value)))"
                )
            } else {
                String::new()
            }
        };
        // A message about an invoice goes out only while the invoice is open (invariant 6): one
        // claimed before a payment and not yet handed over is `cancelled` here, in the same
        // transaction as its attempt would be, so a payment committed before it is obeyed
        // however long the message waited for its lane (a page under a rate limit: minutes).
        // The invoice is looked up once per message, by the id the attempt names; the row's
        // own `invoice_id` must be that one, or the message is not open (it never goes on a
        // wrong hint).
        let open = "(notification_log.invoice_id IS NULL \
                     OR COALESCE(i.id = notification_log.invoice_id AND i.status = 'open', FALSE))";
        // The attempts' rows, each message by its key, its invoice by the id the attempt names.
        let joined = "FROM ROWS($1) LEFT JOIN invoices i ON i.id = (r.value->>'i')::uuid
              WHERE notification_log.dedup_key = r.value->>'k'
                AND notification_log.owner = $2 AND (notification_log.status || '') = 'sending'";
        let why = "'cancelled: its invoice is ' || CASE
                            WHEN i.id = notification_log.invoice_id THEN i.status ELSE 'gone' END";
        // The ends' rows: `$1` on SQLite (a statement of their own), `$4` on PostgreSQL.
        let end_param = if postgres { "$4" } else { "$1" };
        let end_text = format!(
            "UPDATE notification_log
                SET status = r.value->>'status', provider_message_id = r.value->>'provider_id',
                    error = r.value->>'error', updated_at = $3::timestamptz,
                    sent_at = CASE WHEN r.value->>'status' = 'sent' THEN $3::timestamptz END
               FROM ROWS({end_param})
              WHERE notification_log.dedup_key = r.value->>'key'
                AND notification_log.owner = $2
                AND (notification_log.status || '') IN ('sending', 'unknown'){}",
            by_key("key", end_param)
        );
        let texts = if postgres {
            let mark_text = format!(
                "UPDATE notification_log
                    SET attempted_at = CASE WHEN {open} THEN $3::timestamptz END,
                        status = CASE WHEN {open} THEN notification_log.status ELSE 'cancelled' END,
                        error = CASE WHEN {open} THEN notification_log.error ELSE {why} END,
                        updated_at = $3::timestamptz
                   {joined}{}
                 RETURNING notification_log.dedup_key, notification_log.status",
                by_key("k", "$1")
            );
            vec![format!(
                "WITH ended AS ({end_text}), marked AS ({mark_text})
                 SELECT dedup_key, status FROM marked"
            )]
        } else {
            // SQLite: the attempts whose invoice is open, marked without a change to an
            // indexed column (`status` stays `sending`); then, for the attempts left over, the
            // cancellation of those whose invoice is not open (a row no longer this owner's
            // `sending` one is left as it is).
            vec![
                format!(
                    "UPDATE notification_log
                        SET attempted_at = $3::timestamptz, updated_at = $3::timestamptz
                       {joined} AND {open}
                     RETURNING notification_log.dedup_key"
                ),
                format!(
                    "UPDATE notification_log
                        SET status = 'cancelled', attempted_at = NULL, error = {why},
                            updated_at = $3::timestamptz
                       {joined} AND NOT {open}"
                ),
                end_text,
            ]
        };
        texts
            .iter()
            .map(|t| super::adapt(postgres, t).into_owned())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::{
        Cursor, ESCALATION_WHERE, INVOICE_VIEW, InvoiceView, PAGE_AS_JSON, REMINDER_WHERE, Store,
        journal_statements,
    };
    use crate::secret::DatabaseUrl;
    use chrono::NaiveDate;

    /// A migrated store on a new SQLite file in `dir`.
    async fn migrated_sqlite(dir: &std::path::Path) -> Store {
        let url = format!("sqlite://{}/tickler.db", dir.display());
        let store = Store::connect(&DatabaseUrl::new(url)).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// On the embedded SQLite (the version tickler ships), each of the journal's statements
    /// takes the rows it is given first (read through a subquery, see `adapt`) and finds each
    /// message by its key, in the unique index, and its invoice by id: never a walk of a
    /// table. Planned on a fresh schema, without statistics.
    #[tokio::test]
    async fn the_journal_finds_each_message_by_its_key_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated_sqlite(dir.path()).await;
        let Store::Sqlite(lite) = &store else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        for text in journal_statements(false) {
            let plan: Vec<String> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {text}"))
                .fetch_all(lite.journal_pool())
                .await
                .unwrap()
                .into_iter()
                .map(|(_, _, _, detail): (i64, i64, i64, String)| detail)
                .collect();
            let at = |what: &str| plan.iter().position(|d| d.starts_with(what));
            let (rows, message) = (
                at("SCAN r"),
                at(
                    "SEARCH notification_log USING INDEX sqlite_autoindex_notification_log_2 \
                    (dedup_key=?)",
                ),
            );
            assert!(
                rows.is_some() && rows < message,
                "the rows first, then each message by its key:\n{text}\n{plan:#?}"
            );
            assert!(
                plan.iter()
                    .filter(|d| d.contains(" notification_log") || d.contains(" i "))
                    .all(|d| d.starts_with("SEARCH ")),
                "a walk of a table:\n{text}\n{plan:#?}"
            );
        }
    }

    /// On SQLite a page of invoices is read as one JSON value: it must hold what the rows
    /// hold, value for value (quotes, a newline, accents, NULLs, the largest amount, dates with
    /// and without fractions), in the same order, for the reminders' page and the
    /// escalations'. A date stored in a form serde does not read (no zone) is read as rows.
    #[tokio::test]
    async fn a_page_of_invoices_read_as_json_on_sqlite_is_the_page_read_as_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated_sqlite(dir.path()).await;
        let Store::Sqlite(lite) = &store else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        let at = "2026-12-01T08:00:00+00:00";
        for sql in [
            format!(
                "INSERT INTO customers (id, name, email, phone, timezone, locale,
                     provider_customer_id, created_at)
                 VALUES ('c1', 'Zoë \"Q\" O''Neil' || char(10) || 'Jr', NULL, '+27821234567',
                         'Africa/Johannesburg', 'af', 'CUS_1', '{at}'),
                        ('c2', 'Plain', 'p@example.com', NULL, NULL, 'en', NULL, '{at}')"
            ),
            format!(
                "INSERT INTO subscriptions (id, customer_id, description, amount_minor, currency,
                     \"interval\", anchor_day, start_date, created_at)
                 VALUES ('s1', 'c1', 'Flat 5, \"Long\" Street ✓', 100, 'ZAR', 'monthly', 1,
                         '2026-01-01', '{at}')"
            ),
            format!(
                "INSERT INTO invoices (id, number, customer_id, subscription_id, period_start,
                     period_end, amount_minor, currency, issued_at, due_date, status, paid_at,
                     provider_ref, escalation_level, escalated_at, created_at, updated_at)
                 VALUES
                 ('11111111-0000-0000-0000-000000000001', 'INV-1', 'c1', 's1', '2026-12-01',
                  '2026-12-31', 9223372036854775807, 'ZAR', '{at}', '2026-12-10', 'open', NULL,
                  'PRQ_1', 2, '2026-12-02T09:30:00.123456+00:00', '{at}', '{at}'),
                 ('11111111-0000-0000-0000-000000000002', 'INV-2', 'c2', NULL, NULL, NULL, -5,
                  'USD', '2026-12-01T08:00:00Z', '2026-12-10', 'open', NULL, NULL, 2, NULL,
                  '{at}', '{at}'),
                 ('11111111-0000-0000-0000-000000000003', 'INV-3', 'c2', NULL, NULL, NULL, 7,
                  'USD', '{at}', '2026-12-09', 'open', NULL, NULL, 0, NULL, '{at}', '{at}'),
                 ('11111111-0000-0000-0000-000000000004', 'INV-4', 'c2', NULL, NULL, NULL, 7,
                  'USD', '{at}', '2026-12-10', 'paid', '{at}', NULL, 2, NULL, '{at}', '{at}')"
            ),
        ] {
            sqlx::query(&sql).execute(lite.pool()).await.unwrap();
        }
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        // The binds of each page's query, as the store passes them.
        macro_rules! bound {
            ($query:expr, $where_:expr) => {{
                let query = if $where_ == REMINDER_WHERE {
                    $query.bind(day(1)).bind(day(31))
                } else {
                    $query.bind(day(31)).bind(2).bind(None::<String>)
                };
                query
                    .bind(day(1))
                    .bind(uuid::Uuid::nil().to_string())
                    .bind(10i64)
            }};
        }
        let text = |where_: &str| store.sql(&format!("{INVOICE_VIEW}{where_}")).into_owned();
        let rows = |where_: &'static str| {
            let text = text(where_);
            async move {
                let page = bound!(sqlx::query_as::<_, InvoiceView>(&text), where_)
                    .fetch_all(lite.pool())
                    .await
                    .unwrap();
                format!("{page:#?}")
            }
        };
        let cursor = Cursor::start();
        for (round, as_json) in [
            ("every date with its zone", true),
            ("a date stored without its zone", false),
        ] {
            // Which way the reminders' page went: as one JSON value, or as rows again.
            let query = PAGE_AS_JSON.replace("{}", &text(REMINDER_WHERE));
            let json: String = bound!(sqlx::query_scalar(&query), REMINDER_WHERE)
                .fetch_one(lite.pool())
                .await
                .unwrap();
            assert_eq!(
                serde_json::from_str::<Vec<InvoiceView>>(&json).is_ok(),
                as_json,
                "{round}: {json}"
            );
            let reminders = store
                .open_invoices_due(day(1), day(31), &cursor, 10)
                .await
                .unwrap();
            let escalations = store
                .escalation_candidates(day(31), 2, None, &cursor, 10)
                .await
                .unwrap();
            assert_eq!(reminders.len(), 3, "{round}: the three open invoices");
            assert_eq!(
                escalations.len(),
                2,
                "{round}: the two open invoices at level 2"
            );
            assert_eq!(
                format!("{reminders:#?}"),
                rows(REMINDER_WHERE).await,
                "{round}"
            );
            assert_eq!(
                format!("{escalations:#?}"),
                rows(ESCALATION_WHERE).await,
                "{round}"
            );
            // sqlx reads a date without its zone as UTC; serde refuses it as JSON.
            sqlx::query(
                "UPDATE invoices SET issued_at = '2026-12-01 08:00:00' WHERE number = 'INV-3'",
            )
            .execute(lite.pool())
            .await
            .unwrap();
        }
    }
}
