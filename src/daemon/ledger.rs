//! The ledger writer: one task that commits slot claims and finished runs in batches (group
//! commit). When a thousand jobs come due in the same second, their claims go into the
//! database in a few statements instead of a thousand transactions, which is what keeps fire
//! lateness low on SQLite and PostgreSQL alike.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::store::{Finish, NewRun, Store};

const BATCH: usize = 1000;

enum Op {
    /// Insert a row; the answer says whether this insert won the slot.
    Claim(NewRun, Option<oneshot::Sender<bool>>),
    Finish(Finish),
    Flush(oneshot::Sender<()>),
}

/// A handle on the writer task.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Op>,
}

impl Ledger {
    /// Starts the writer on `store`. It stops when every handle is dropped, after writing
    /// what it was given.
    pub fn start(store: Store) -> Ledger {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, rx));
        Ledger { tx }
    }

    /// Claims a slot: `true` only if this process inserted the row.
    pub async fn claim(&self, run: NewRun) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Claim(run, Some(tx))).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Records a fire that does not run (`skipped`, `missed`), unless its slot is taken.
    pub fn record(&self, run: NewRun) {
        let _ = self.tx.send(Op::Claim(run, None));
    }

    pub fn finish(&self, finish: Finish) {
        let _ = self.tx.send(Op::Finish(finish));
    }

    /// Waits until everything sent before this call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut ops = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut ops, BATCH).await > 0 {
        let mut claims = vec![];
        let mut waiters = vec![];
        let mut finishes = vec![];
        let mut flushes = vec![];
        for op in ops.drain(..) {
            match op {
                Op::Claim(run, waiter) => {
                    waiters.push((run.id, waiter));
                    claims.push(run);
                }
                Op::Finish(f) => finishes.push(f),
                Op::Flush(done) => flushes.push(done),
            }
        }
        if !claims.is_empty() {
            let inserted = retry("claiming slots", Duration::from_secs(30), || {
                store.insert_runs(&claims)
            })
            .await
            .unwrap_or_default();
            for (id, waiter) in waiters {
                if let Some(w) = waiter {
                    let _ = w.send(inserted.contains(&id));
                }
            }
        }
        if !finishes.is_empty() {
            // A finished run must reach the ledger: keep trying while the database is away.
            let ids: Vec<Uuid> = finishes.iter().map(|f| f.id).collect();
            if retry("recording finished runs", Duration::from_secs(300), || {
                store.finish_runs(&finishes)
            })
            .await
            .is_none()
            {
                tracing::error!(runs = ?ids, "gave up recording finished runs; they stay `running` \
                    and become `abandoned` when this daemon stops");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Retries a database write with backoff for up to `patience`.
async fn retry<T, F, Fut>(doing: &str, patience: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::Result<T>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) if start.elapsed() < patience => {
                tracing::warn!(error = %e, "{doing} failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, "{doing} failed; giving up after {patience:?}");
                return None;
            }
        }
    }
}
