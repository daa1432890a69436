//! `tickler payments list`: the payments tickler received (provider webhooks, the application's
//! `POST /invoices/NUMBER/payments`), newest first, with what became of each: `paid`,
//! `partial`, `unknown_invoice` (kept, naming no invoice), `not_applied` (kept: the invoice was
//! paid already, void, or in another currency).

use std::fmt::Write as _;

use clap::Subcommand;

use super::Format;
use crate::billing::messages::money;
use crate::store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum PaymentsCommand {
    /// List payments, newest first.
    List {
        /// Only the payments of this invoice.
        #[arg(long)]
        invoice: Option<String>,
        /// At most this many (1-100000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Runs a `tickler payments` command; returns what it prints.
pub async fn payments_command(
    store: &Store,
    command: PaymentsCommand,
) -> Result<String, StoreError> {
    let PaymentsCommand::List {
        invoice,
        limit,
        format,
    } = command;
    let rows = store.payments(invoice.as_deref(), limit).await?;
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n");
    }
    let mut out = format!(
        "{:<20} {:<9} {:<28} {:<14} {:>16} {:<15} DETAIL\n",
        "RECEIVED", "PROVIDER", "EVENT", "INVOICE", "AMOUNT", "OUTCOME"
    );
    for p in &rows {
        let invoice = p.number.clone().unwrap_or_else(|| p.invoice_ref.clone());
        let _ = writeln!(
            out,
            "{:<20} {:<9} {:<28} {:<14} {:>16} {:<15} {}",
            p.created_at.format("%Y-%m-%d %H:%M:%S"),
            p.provider,
            p.event_id,
            invoice,
            money(p.amount_minor, &p.currency),
            p.outcome,
            p.detail.as_deref().unwrap_or("")
        );
    }
    if rows.is_empty() {
        out.push_str("(no payments)\n");
    }
    Ok(out)
}
