//! `tickler import`, `tickler invoice` and `tickler demo`: billing data in and out of the store.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::{finish, open_store, parse_rfc3339};
use crate::billing::import::{self, Table};
use crate::config::Config;
use crate::store::Store;
use crate::store::audit::{Action, Audit};

#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// Record that an open invoice is paid: reminders and escalations stop for it.
    MarkPaid {
        /// The invoice number, e.g. `INV-000123`.
        number: String,
        /// When it was paid (RFC 3339); default now.
        #[arg(long, value_parser = parse_rfc3339)]
        paid_at: Option<DateTime<Utc>>,
        /// The payment's reference (e.g. the bank or Paystack reference).
        #[arg(long)]
        reference: Option<String>,
    },
}

/// `tickler import TABLE FILE`.
pub async fn import(
    config: &Config,
    table: Table,
    file: &Path,
    number_prefix: &str,
    update: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let result = import::import(&store, table, file, number_prefix, update).await;
    store.close().await;
    let (n, updated) = result?;
    let text = if update {
        format!(
            "imported {n} {} and updated {updated} from {}\n",
            table.name(),
            file.display()
        )
    } else {
        format!("imported {n} {} from {}\n", table.name(), file.display())
    };
    finish(&text, ExitCode::SUCCESS)
}

/// `tickler invoice …`.
pub async fn invoice(config: &Config, command: InvoiceCommand) -> anyhow::Result<ExitCode> {
    let InvoiceCommand::MarkPaid {
        number,
        paid_at,
        reference,
    } = command;
    let store = open_store(config).await?;
    let result = mark_paid(&store, &number, paid_at.unwrap_or_else(Utc::now), reference).await;
    store.close().await;
    finish(&(result? + "\n"), ExitCode::SUCCESS)
}

/// `tickler demo`.
pub async fn demo(config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let today = Utc::now()
        .with_timezone(&config.daemon.timezone)
        .date_naive();
    let result = crate::billing::demo::fill(&store, today).await;
    store.close().await;
    let (c, s, i) = result.map_err(anyhow::Error::msg)?;
    let text = format!(
        "demo data in {}: {c} customers, {s} subscriptions, {i} invoices\n",
        config.daemon.database_url
    );
    finish(&text, ExitCode::SUCCESS)
}

/// `tickler invoice mark-paid`.
async fn mark_paid(
    store: &Store,
    number: &str,
    paid_at: DateTime<Utc>,
    reference: Option<String>,
) -> anyhow::Result<String> {
    let Some(invoice) = store.invoice_by_number(number).await? else {
        anyhow::bail!(
            "no invoice numbered `{number}`; `tickler history` and SQL on `invoices` list them"
        );
    };
    match invoice.status.as_str() {
        "open" => {}
        "paid" => anyhow::bail!(
            "invoice `{number}` is already paid (on {}); nothing changed",
            invoice
                .paid_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "an unknown date".into())
        ),
        other => {
            anyhow::bail!("invoice `{number}` is {other}; only an open invoice can be marked paid")
        }
    }
    let actor = super::operate::cli_actor();
    let audit = Audit {
        actor: &actor,
        action: Action::InvoiceMarkPaid,
        target: number,
        detail: reference.as_deref(),
    };
    if !store
        .mark_paid(number, paid_at, reference.as_deref(), Some(audit))
        .await?
    {
        anyhow::bail!("invoice `{number}` changed meanwhile; look at it again");
    }
    Ok(format!(
        "invoice {number} ({}, {}) marked paid at {}",
        invoice.customer_name,
        crate::billing::messages::money(invoice.amount_minor, &invoice.currency),
        paid_at.to_rfc3339()
    ))
}
