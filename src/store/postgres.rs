//! The PostgreSQL backend: native `uuid`, `timestamptz` and `jsonb`, and the engine through
//! which several replicas coordinate: each claims a slot by inserting its ledger row, and only
//! the replica whose insert succeeded runs it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{Result, StoreError};
use crate::secret::DatabaseUrl;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections for the `sql` job kind, apart from the ledger's (so long job SQL cannot
    /// starve slot claims and heartbeats), opened on first use.
    jobs: PgPool,
    /// Connections for the writes of messages (claims, the journal), opened on first use, on
    /// which the planner looks rows up by their keys' unique index whatever its statistics say
    /// (`enable_seqscan` off): while a big first run fills a table last analyzed near empty,
    /// the statistics call it a few pages and each commit would scan all of it (4 ms at 12,000
    /// rows). A journal commit is then one statement, without `BEGIN`, `SET LOCAL` and
    /// `COMMIT`: one round trip instead of four.
    journal: PgPool,
    url: String,
}

impl PgStore {
    pub async fn connect(url: &DatabaseUrl) -> Result<PgStore> {
        PgStore::connect_sized(url, 8, 4).await
    }

    /// Opens with at most `ledger` connections for tickler's statements and `jobs` for the
    /// jobs' own SQL.
    pub async fn connect_sized(url: &DatabaseUrl, ledger: u32, jobs: u32) -> Result<PgStore> {
        let redacted = url.redacted();
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|source| StoreError::Connect {
                url: redacted.clone(),
                source,
            })?
            .application_name("tickler");
        let jobs = PgPoolOptions::new()
            .max_connections(jobs)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options.clone());
        let journal = PgPoolOptions::new()
            .max_connections(ledger.clamp(1, 4))
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options.clone().options([("enable_seqscan", "off")]));
        let pool = PgPoolOptions::new()
            .max_connections(ledger)
            .min_connections(0)
            // While PostgreSQL is away (a restart, a failover), a query fails after this and
            // its caller's retry logs the outage, instead of each waiting in silence.
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                url: redacted.clone(),
                source,
            })?;
        Ok(PgStore {
            pool,
            jobs,
            journal,
            url: redacted,
        })
    }

    pub(super) async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: self.url.clone(),
                source,
            })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool of job-supplied SQL, apart from the ledger's.
    pub fn jobs_pool(&self) -> &PgPool {
        &self.jobs
    }

    /// The writes of messages to `notification_log` (claims, the journal), on connections
    /// of their own (see the field).
    pub fn journal_pool(&self) -> &PgPool {
        &self.journal
    }

    pub async fn close(&self) {
        self.journal.close().await;
        self.jobs.close().await;
        self.pool.close().await;
    }

    /// Runs until dropped: calls `changed` for each `NOTIFY tickler_tasks` (any process
    /// inserting a task, or making a pending one due sooner), and after a lost connection,
    /// since notifications sent meanwhile are lost too. An idle LISTEN connection sends and
    /// receives nothing.
    pub async fn listen_tasks(&self, changed: fn()) {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for new tasks; trying again in 5s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen("tickler_tasks").await {
                tracing::warn!(error = %e, "cannot LISTEN for new tasks; trying again in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            // Whatever was notified while nothing listened.
            changed();
            loop {
                match listener.recv().await {
                    Ok(_) => changed(),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting");
                        changed();
                        break;
                    }
                }
            }
        }
    }
}
