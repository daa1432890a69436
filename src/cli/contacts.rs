//! `tickler contacts block|unblock|list|import`: the opt-outs (`contact_blocks`) every send
//! checks. Each command checks its input first and writes nothing when it is wrong, then
//! returns the text it prints, so tests pin it.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::Utc;
use clap::Subcommand;

use super::Format;
use super::operate::cli_actor;
use crate::billing::import::{self, ImportError};
use crate::notify::blocks::{self, BlockError};
use crate::store::audit::{Action, Audit};
use crate::store::contacts::NewBlock;
use crate::store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Block an address: it gets nothing more on CHANNEL (`email`, `sms`, `whatsapp`, or `*`
    /// for every channel); its messages are recorded `suppressed`.
    Block {
        channel: String,
        address: String,
        /// Why, shown with every message it suppresses.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove a block. Messages suppressed meanwhile stay suppressed; later ones go out.
    Unblock { channel: String, address: String },
    /// List the blocks, oldest first.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Block every `channel,address,reason` row of a CSV file with a header row; a file with a
    /// bad row blocks nothing.
    Import { file: PathBuf },
}

/// A refused `tickler contacts` command.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("`{address}` is not blocked on `{channel}`; `tickler contacts list` shows the blocks")]
    NotBlocked { channel: String, address: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, ContactsError>;

/// `tickler contacts …`, returning what it prints.
pub async fn contacts_command(store: &Store, command: ContactsCommand) -> Result<String> {
    let now = Utc::now();
    match command {
        ContactsCommand::Block {
            channel,
            address,
            reason,
        } => {
            let channel = blocks::parse_channel(&channel)?;
            let address = blocks::normalize(channel, &address)?;
            let block = NewBlock {
                channel: channel.to_string(),
                address: address.clone(),
                reason: reason.trim().to_string(),
                source: "cli".to_string(),
            };
            let (actor, target) = (cli_actor(), format!("{channel}:{address}"));
            let audit = Audit {
                actor: &actor,
                action: Action::ContactBlock,
                target: &target,
                detail: Some(&reason),
            };
            let added = store.add_contact_blocks(&[block], now, Some(audit)).await?;
            if added.is_empty() {
                let since = store
                    .contact_block(channel, &address)
                    .await?
                    .map(|b| b.created_at.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                return Ok(format!(
                    "`{address}` is already blocked on `{channel}` (since {since})\n"
                ));
            }
            Ok(format!("blocked `{address}` on `{channel}`\n"))
        }
        ContactsCommand::Unblock { channel, address } => {
            let channel = blocks::parse_channel(&channel)?;
            let address = blocks::normalize(channel, &address)?;
            let (actor, target) = (cli_actor(), format!("{channel}:{address}"));
            let audit = Audit {
                actor: &actor,
                action: Action::ContactUnblock,
                target: &target,
                detail: None,
            };
            if !store
                .remove_contact_block(channel, &address, now, Some(audit))
                .await?
            {
                return Err(ContactsError::NotBlocked {
                    channel: channel.to_string(),
                    address,
                });
            }
            Ok(format!("unblocked `{address}` on `{channel}`\n"))
        }
        ContactsCommand::List { format } => {
            let all = store.contact_blocks().await?;
            if format == Format::Json {
                return Ok(serde_json::to_string_pretty(&all).unwrap_or_default() + "\n");
            }
            let mut out = format!(
                "{:<9} {:<32} {:<7} {:<10} REASON\n",
                "CHANNEL", "ADDRESS", "SOURCE", "SINCE"
            );
            for b in &all {
                let _ = writeln!(
                    out,
                    "{:<9} {:<32} {:<7} {:<10} {}",
                    b.channel,
                    b.address,
                    b.source,
                    b.created_at.format("%Y-%m-%d"),
                    b.reason
                );
            }
            Ok(out)
        }
        ContactsCommand::Import { file } => {
            let rows = import::contact_blocks(&file)?;
            // One row for the whole file, once its count is known.
            let added = store.add_contact_blocks(&rows, now, None).await?;
            let detail = format!("{} address(es) blocked", added.len());
            let target = file.display().to_string();
            store
                .audit(
                    &cli_actor(),
                    Action::ContactImport,
                    &target,
                    Some(&detail),
                    now,
                )
                .await?;
            Ok(format!(
                "blocked {} address(es) from `{}` ({} blocked already)\n",
                added.len(),
                file.display(),
                rows.len() - added.len()
            ))
        }
    }
}
