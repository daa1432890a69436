//! The ledger writer: one task that commits slot claims and finished runs in batches (group
//! commit). When a thousand jobs come due in the same second, their claims go into the
//! database in a few statements instead of a thousand transactions, which is what keeps fire
//! lateness low on SQLite and PostgreSQL alike.
//!
//! While the database is unreachable (a restart, a failover, a network cut) the writer keeps
//! every claim and every finished run and retries with backoff until it is back, so no slot is
//! lost and none is run twice; only a shutdown ([`Ledger::give_up`]) ends the wait. A write the
//! database refuses outright is tried three times and then logged and dropped (finished runs
//! one by one, so one bad row does not take the others with it).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{Finish, NewRun, Store};

const BATCH: usize = 2000;
/// Finished runs wait behind claims until this many are pending...
const FINISH_BACKLOG: usize = 5000;
/// ... and behind the starts of a batch until this many (a moment: starting 100,000 bodies
/// takes about a second).
const STARTING_BACKLOG: usize = 200_000;

enum Op {
    /// Insert a row; the answer says whether this insert won the slot.
    Claim(NewRun, Option<oneshot::Sender<Option<bool>>>),
    ClaimMany(Vec<NewRun>, oneshot::Sender<Option<HashSet<Uuid>>>),
    Finish(Finish),
    /// The bodies of a started batch are being started: finished runs wait.
    BatchStarting,
    /// ... they all have: its pending rows are to turn `running`, and finished runs go in.
    BatchStarted(Uuid, DateTime<Utc>),
    Flush(oneshot::Sender<()>),
}

/// A handle on the writer task.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Op>,
    give_up: CancellationToken,
    store: Store,
}

impl Ledger {
    /// Starts the writer on `store`. It stops when every handle is dropped, after writing
    /// what it was given.
    pub fn start(store: Store) -> Ledger {
        let (tx, rx) = mpsc::unbounded_channel();
        let give_up = CancellationToken::new();
        tokio::spawn(writer(store.clone(), rx, give_up.clone()));
        Ledger { tx, give_up, store }
    }

    /// Starts a fire that waited with a `pending` row: `Some(true)` when the row was still
    /// ours and is now `running`, `Some(false)` when another daemon adopted it meanwhile (it
    /// runs there, not here), `None` when the database stayed away until a shutdown.
    pub async fn start_pending(&self, id: Uuid, instance: &str, at: DateTime<Utc>) -> Option<bool> {
        crate::retry::until_done("starting a waiting run", &self.give_up, || {
            self.store.start_run(id, instance, at)
        })
        .await
    }

    /// Stops waiting for an unreachable database: writes that fail from now on are logged
    /// and dropped (at shutdown, once the grace is over).
    pub fn give_up(&self) {
        self.give_up.cancel();
    }

    /// Claims a slot: `Some(true)` only if this process inserted the row, `None` when the
    /// claim was given up (a shutdown while the database was away, or a refused write).
    pub async fn claim(&self, run: NewRun) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Op::Claim(run, Some(tx))).ok()?;
        rx.await.ok().flatten()
    }

    /// Claims many slots at once; returns the ids whose rows this process inserted, or `None`
    /// when the claim was given up (as for [`Ledger::claim`]).
    pub async fn claim_many(&self, runs: Vec<NewRun>) -> Option<HashSet<Uuid>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Op::ClaimMany(runs, tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// Records a fire that does not run (`skipped`, `missed`), unless its slot is taken.
    pub fn record(&self, run: NewRun) {
        let _ = self.tx.send(Op::Claim(run, None));
    }

    pub fn finish(&self, finish: Finish) {
        let _ = self.tx.send(Op::Finish(finish));
    }

    /// Starts a batch of slots claimed ahead (see [`Store::start_batch`]): the one commit its
    /// bodies wait for. Returns the ids of the batch another daemon adopted meanwhile, or
    /// `None` when the database stayed away until a shutdown (nothing of the batch may start;
    /// its rows stay `pending` for the next daemon). Its rows turn `running` a moment later,
    /// in the background.
    pub async fn start_batch(
        &self,
        batch: Uuid,
        instance: &str,
        at: DateTime<Utc>,
    ) -> Option<HashSet<Uuid>> {
        let lost =
            crate::retry::until_done("starting a batch of claimed slots", &self.give_up, || {
                self.store.start_batch(batch, instance, at)
            })
            .await?;
        Some(lost.into_iter().collect())
    }

    /// While the bodies of a started batch are being started (each holding a clone of the
    /// guard until its task begins), the writer keeps its rows and finished runs back: on a
    /// small machine the database takes the cores those thousands of starts need. When the
    /// last clone goes, the batch's rows turn `running` and the writer goes on.
    pub fn batch_starting(&self, batch: Uuid, at: DateTime<Utc>) -> Arc<BatchStarting> {
        let _ = self.tx.send(Op::BatchStarting);
        Arc::new(BatchStarting {
            tx: self.tx.clone(),
            batch,
            at,
        })
    }

    /// Waits until everything sent before this call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// [`Ledger::flush`], for at most `within`: past it (the database is away), logs `lost`
    /// and gives up on what is not yet written.
    pub async fn flush_within(&self, within: std::time::Duration, lost: &str) {
        if tokio::time::timeout(within, self.flush()).await.is_err() {
            tracing::error!("{lost}");
            self.give_up();
            self.flush().await;
        }
    }
}

/// See [`Ledger::batch_starting`].
pub struct BatchStarting {
    tx: mpsc::UnboundedSender<Op>,
    batch: Uuid,
    at: DateTime<Utc>,
}

impl Drop for BatchStarting {
    fn drop(&mut self) {
        let _ = self.tx.send(Op::BatchStarted(self.batch, self.at));
    }
}

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Op>, give_up: CancellationToken) {
    // Claim rows per transaction, and transactions in flight at once (see `claim_batching`).
    let (chunk_size, _) = store.claim_batching();
    let mut ops = Vec::with_capacity(BATCH);
    let mut finishes: Vec<Finish> = vec![];
    let mut batches: Vec<(Uuid, DateTime<Utc>)> = vec![];
    let mut flushes: Vec<oneshot::Sender<()>> = vec![];
    // Batches whose bodies are being started (see `Ledger::batch_starting`).
    let mut starting = 0usize;
    let mut closed = false;
    loop {
        // Wait for work only when nothing is pending (or held back); otherwise take what has
        // arrived.
        if (finishes.is_empty() && flushes.is_empty()) || starting > 0 {
            if rx.recv_many(&mut ops, BATCH).await == 0 {
                if finishes.is_empty() && batches.is_empty() {
                    return;
                }
                // Nothing more can come: write what is left, then stop.
                (starting, closed) = (0, true);
            }
        } else {
            while ops.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
        }
        // Claims are committed in chunks of about CLAIM_CHUNK rows, and each request is
        // answered as soon as its chunk is in, so the first fires of a big second start early.
        let mut units = vec![];
        let mut chunk: Vec<NewRun> = vec![];
        let mut answers: Vec<Answer> = vec![];
        for op in ops.drain(..) {
            match op {
                Op::Claim(run, waiter) => {
                    answers.push(Answer::One(run.id, waiter));
                    chunk.push(run);
                }
                Op::ClaimMany(runs, waiter) => {
                    answers.push(Answer::Many(runs.iter().map(|r| r.id).collect(), waiter));
                    chunk.extend(runs);
                }
                Op::Finish(f) => finishes.push(f),
                Op::BatchStarting => starting += 1,
                Op::BatchStarted(batch, at) => {
                    starting = starting.saturating_sub(1);
                    batches.push((batch, at));
                }
                Op::Flush(done) => flushes.push(done),
            }
            if chunk.len() >= chunk_size {
                units.push((std::mem::take(&mut chunk), std::mem::take(&mut answers)));
            }
        }
        if !chunk.is_empty() {
            units.push((chunk, answers));
        }
        let claimed_any = !units.is_empty();
        commit_claims(&store, units, &give_up).await;
        // Started batches are marked already (`fire_batches`): turning their rows `running`
        // is bookkeeping, kept ahead of finished runs so the two rarely cross.
        let started = if starting == 0 {
            std::mem::take(&mut batches)
        } else {
            vec![]
        };
        for (batch, at) in started {
            if crate::retry::until_done("recording a started batch of runs", &give_up, || {
                store.batch_running(batch, at)
            })
            .await
            .is_none()
            {
                tracing::warn!(%batch, "a started batch of runs stays `pending` in the ledger \
                    until the runs end (the database is unreachable)");
            }
        }
        // Claims first: a fire waits for its claim, while a finished run is already done.
        let held = if starting > 0 {
            STARTING_BACKLOG
        } else {
            FINISH_BACKLOG
        };
        if (claimed_any || starting > 0) && finishes.len() < held && flushes.is_empty() {
            continue;
        }
        if !finishes.is_empty() {
            // A finished run must reach the ledger: keep trying while the database is away.
            if crate::retry::until_done("recording finished runs", &give_up, || {
                store.finish_runs(&finishes)
            })
            .await
            .is_none()
            {
                // One by one, so a row the database refuses does not keep the others out.
                for f in &finishes {
                    if give_up.is_cancelled()
                        || store.finish_runs(std::slice::from_ref(f)).await.is_err()
                    {
                        tracing::error!(run_id = %f.id, "gave up recording a finished run; it stays \
                            `running` and becomes `abandoned` when this daemon stops");
                    }
                }
            }
            finishes.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

enum Answer {
    One(Uuid, Option<oneshot::Sender<Option<bool>>>),
    Many(Vec<Uuid>, oneshot::Sender<Option<HashSet<Uuid>>>),
}

/// Commits chunks of claims and answers each request as soon as its chunk is in: one after the
/// other, or several at once where the database takes them in parallel.
async fn commit_claims(
    store: &Store,
    units: Vec<(Vec<NewRun>, Vec<Answer>)>,
    give_up: &CancellationToken,
) {
    let (_, lanes) = store.claim_batching();
    if lanes <= 1 {
        for (chunk, answers) in units {
            commit_chunk(store, chunk, answers, give_up).await;
        }
        return;
    }
    let lanes = Arc::new(Semaphore::new(lanes));
    let mut tasks = Vec::with_capacity(units.len());
    for (chunk, answers) in units {
        let (store, lanes, give_up) = (store.clone(), lanes.clone(), give_up.clone());
        tasks.push(tokio::spawn(async move {
            let _lane = lanes.acquire_owned().await;
            commit_chunk(&store, chunk, answers, &give_up).await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn commit_chunk(
    store: &Store,
    chunk: Vec<NewRun>,
    answers: Vec<Answer>,
    give_up: &CancellationToken,
) {
    let inserted =
        crate::retry::until_done("claiming slots", give_up, || store.insert_runs(&chunk)).await;
    for answer in answers {
        match answer {
            Answer::One(id, Some(w)) => {
                let _ = w.send(inserted.as_ref().map(|i| i.contains(&id)));
            }
            Answer::One(id, None) if inserted.is_none() => {
                if let Some(run) = chunk.iter().find(|r| r.id == id) {
                    tracing::error!(
                        job = %run.job_name, scheduled_for = %run.scheduled_for,
                        status = run.status.as_str(),
                        "could not record a fire: the database is unreachable"
                    );
                }
            }
            Answer::One(_, None) => {}
            Answer::Many(ids, w) => {
                let mine = inserted
                    .as_ref()
                    .map(|i| ids.into_iter().filter(|id| i.contains(id)).collect());
                let _ = w.send(mine);
            }
        }
    }
}
