//! `contact_blocks`: the opt-outs the notification pipeline checks before every send, and the
//! rows `tickler contacts` adds, removes and lists. Addresses arrive normalized (see
//! `notify::blocks`); a lookup is one query per batch of messages.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::audit::{Audit, audited, write_audit};
use super::{Doing, Result, Store, json_text, ts, with_pool};

/// One opt-out: `channel` is `email`, `sms`, `whatsapp` or `*` (every person channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ContactBlock {
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

/// A block to add.
#[derive(Debug, Clone, Serialize)]
pub struct NewBlock {
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub source: String,
}

const COLUMNS: &str = "b.channel, b.address, b.reason, b.source, b.created_at";

impl Store {
    /// The blocks that apply to these `(channel, address)` pairs: on that channel, or on `*`.
    /// One query for the whole batch.
    pub async fn contact_blocks_for(&self, wanted: &[(&str, String)]) -> Result<Vec<ContactBlock>> {
        if wanted.is_empty() {
            return Ok(vec![]);
        }
        let rows: Vec<Value> = wanted
            .iter()
            .map(|(c, a)| json!({ "c": c, "a": a }))
            .collect();
        let query = format!(
            "SELECT DISTINCT {COLUMNS} FROM contact_blocks b
               JOIN ROWS($1) ON b.address = r.value->>'a'
                AND (b.channel = r.value->>'c' OR b.channel = '*')"
        );
        let text = self.sql(&query);
        with_pool!(self, pool => sqlx::query_as::<_, ContactBlock>(&text)
            .bind(json_text(&rows))
            .fetch_all(pool)
            .await
            .doing("reading contact_blocks"))
    }

    /// Adds blocks in one statement; a pair blocked already keeps its row. Returns the pairs
    /// added.
    pub async fn add_contact_blocks(
        &self,
        blocks: &[NewBlock],
        now: DateTime<Utc>,
        audit: Option<Audit<'_>>,
    ) -> Result<Vec<(String, String)>> {
        if blocks.is_empty() {
            return Ok(vec![]);
        }
        let begin = self.begin_statement();
        let doing = "adding contact_blocks";
        let text = self.sql(
            "INSERT INTO contact_blocks (channel, address, reason, source, created_at)
             SELECT r.value->>'channel', r.value->>'address', r.value->>'reason',
                    r.value->>'source', $2::timestamptz
               FROM ROWS($1)
              WHERE TRUE
             ON CONFLICT (channel, address) DO NOTHING
             RETURNING channel, address",
        );
        let store = self;
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing(doing)?;
            let added = sqlx::query_as::<_, (String, String)>(&text)
                .bind(json_text(blocks))
                .bind(ts(now))
                .fetch_all(&mut *tx)
                .await
                .doing(doing)?;
            // Audited only when it blocked something.
            if !added.is_empty() {
                write_audit!(store, tx, audit, now, doing);
            }
            tx.commit().await.doing(doing)?;
            Ok(added)
        })
    }

    /// The block of exactly this pair, if any.
    pub async fn contact_block(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<ContactBlock>> {
        let text = format!(
            "SELECT {COLUMNS} FROM contact_blocks b WHERE b.channel = $1 AND b.address = $2"
        );
        with_pool!(self, pool => sqlx::query_as::<_, ContactBlock>(&text)
            .bind(channel)
            .bind(address)
            .fetch_optional(pool)
            .await
            .doing("reading contact_blocks"))
    }

    /// Removes the block of this pair; `false` when there was none.
    pub async fn remove_contact_block(
        &self,
        channel: &str,
        address: &str,
        now: DateTime<Utc>,
        audit: Option<Audit<'_>>,
    ) -> Result<bool> {
        let text = "DELETE FROM contact_blocks WHERE channel = $1 AND address = $2";
        audited!(self, audit, now, "removing a contact block", |q| {
            sqlx::query(text).bind(channel).bind(address)
        })
    }

    /// Every block, oldest first.
    pub async fn contact_blocks(&self) -> Result<Vec<ContactBlock>> {
        let text = format!(
            "SELECT {COLUMNS} FROM contact_blocks b ORDER BY b.created_at, b.channel, b.address"
        );
        with_pool!(self, pool => sqlx::query_as::<_, ContactBlock>(&text)
            .fetch_all(pool)
            .await
            .doing("listing contact_blocks"))
    }
}
