//! The timer loop's parts: each job's next slot in a heap, the slots due at a wake (with the
//! catch-up policy deciding what becomes of overdue ones), the fires started for them, and a
//! reload that swaps the schedule.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::runner::{self, Fire, ON_TIME, run_fire};
use super::shared::{NextFires, Shared, cell_of, publish};
use crate::config::{self, CatchUp, Config, JobSpec};
use crate::store::{NewRun, RunTrigger, Status};
use crate::time::MAX_SLEEP;

/// Slots older than `misfire_grace` get one `missed` row each, up to this many per job and
/// outage; past it (a frequent job down for days) the whole older range gets one `missed` row
/// that names where it ends (`metadata.missed_until`), so every slot is still accounted for.
pub(super) const MISSED_ONE_BY_ONE: usize = 10_000;

/// At most this many slots of one job within its grace are taken in one pass of the loop; the
/// loop goes round again at once for the rest.
pub(super) const MAX_SLOTS_PER_PASS: usize = 10_000;

pub(super) struct JobState {
    pub(super) spec: Arc<JobSpec>,
    pub(super) next: Option<DateTime<Utc>>,
    pub(super) generation: u64,
    /// Where `next` is published in `Scheduler::board` (`NO_CELL` until `board_for`).
    cell: usize,
}

const NO_CELL: usize = usize::MAX;

/// A heap entry: when, the job's generation when it was pushed, and the job.
pub(super) type Wake = Reverse<(DateTime<Utc>, u64, Arc<str>)>;

pub(super) struct Scheduler {
    pub(super) jobs: HashMap<Arc<str>, JobState>,
    /// Private with `counts`: `set` is the only push and `pop_due` the only pop, so the two
    /// cannot drift apart.
    heap: BinaryHeap<Wake>,
    generation: u64,
    /// Heap entries per instant (stale ones included until popped): how big a second is,
    /// known before it is popped, so it can be claimed early enough.
    counts: std::collections::BTreeMap<DateTime<Utc>, usize>,
    /// Each job's `next`, published for `/metrics` (`Shared::next_fires`).
    board: NextFires,
}

impl Scheduler {
    pub(super) fn new() -> Scheduler {
        Scheduler {
            jobs: HashMap::new(),
            heap: BinaryHeap::new(),
            generation: 0,
            counts: Default::default(),
            board: NextFires::default(),
        }
    }

    /// New cells for `jobs` (the running config's, in its order), holding their next fires,
    /// where `set` publishes from now on; to be installed with the jobs (`Shared::set_jobs`).
    pub(super) fn board_for(&mut self, jobs: &[Arc<JobSpec>]) -> NextFires {
        let board: NextFires = jobs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let state = self.jobs.get_mut(&spec.name);
                cell_of(state.and_then(|state| {
                    state.cell = i;
                    state.next
                }))
            })
            .collect();
        self.board = board.clone();
        board
    }

    pub(super) fn set(&mut self, spec: Arc<JobSpec>, next: Option<DateTime<Utc>>) {
        self.generation += 1;
        let next = if spec.enabled { next } else { None };
        if let Some(t) = next {
            self.heap
                .push(Reverse((t, self.generation, spec.name.clone())));
            *self.counts.entry(t).or_default() += 1;
        }
        match self.jobs.entry(spec.name.clone()) {
            Entry::Occupied(mut e) => {
                let state = e.get_mut();
                if let Some(cell) = self.board.get(state.cell) {
                    publish(cell, next);
                }
                state.spec = spec;
                state.next = next;
                state.generation = self.generation;
            }
            Entry::Vacant(e) => {
                e.insert(JobState {
                    spec,
                    next,
                    generation: self.generation,
                    cell: NO_CELL,
                });
            }
        }
    }

    pub(super) fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next instant something is due, and how long before it its fires are to be claimed
    /// ([`claim_ahead`]): a second ahead, more for a second so big its claims take longer.
    pub(super) fn next_wake_and_lead(&self) -> Option<(DateTime<Utc>, TimeDelta)> {
        let at = self.next_wake()?;
        let fires = self.counts.get(&at).copied().unwrap_or(1);
        let lead = (AHEAD_PER_FIRE * fires as u32).clamp(AHEAD, AHEAD_MAX);
        Some((at, TimeDelta::from_std(lead).unwrap_or_default()))
    }

    /// Pops every job due at `now` (stale heap entries are dropped).
    pub(super) fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<Arc<str>> {
        let mut due = vec![];
        while let Some(Reverse((t, generation, name))) = self.heap.peek().cloned() {
            if t > now {
                break;
            }
            self.heap.pop();
            if let Some(n) = self.counts.get_mut(&t) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&t);
                }
            }
            if self
                .jobs
                .get(&name)
                .is_some_and(|s| s.generation == generation)
            {
                due.push(name);
            }
        }
        due
    }
}

/// Fires and records decided for one job's due slots.
#[derive(Default)]
pub(super) struct Decision {
    pub(super) run: Vec<(DateTime<Utc>, RunTrigger)>,
    pub(super) missed: Vec<(DateTime<Utc>, String)>,
}

/// Applies the catch-up policy to the due slots of a job (oldest first).
pub(super) fn decide(spec: &JobSpec, due: &[DateTime<Utc>], now: DateTime<Utc>) -> Decision {
    let grace = TimeDelta::from_std(spec.misfire_grace).unwrap_or(TimeDelta::MAX);
    let on_time_limit = TimeDelta::from_std(ON_TIME).unwrap_or(TimeDelta::MAX);
    let mut d = Decision::default();
    let (on_time, late): (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) =
        due.iter().partition(|s| now - **s <= on_time_limit);
    let latest_in_grace = late.iter().rev().find(|s| now - **s <= grace).copied();
    for slot in &late {
        let in_grace = now - *slot <= grace;
        let run = match spec.catch_up {
            CatchUp::None => false,
            CatchUp::Latest => on_time.is_empty() && Some(*slot) == latest_in_grace,
            CatchUp::All => in_grace,
        };
        if run {
            d.run.push((*slot, RunTrigger::CatchUp));
        } else {
            let why = if !in_grace {
                format!(
                    "missed: the slot is older than misfire_grace ({})",
                    humantime::format_duration(spec.misfire_grace)
                )
            } else {
                match spec.catch_up {
                    CatchUp::None => "missed: catch_up = \"none\"".to_string(),
                    _ => "missed: a later slot ran instead (catch_up = \"latest\")".to_string(),
                }
            };
            d.missed.push((*slot, why));
        }
    }
    d.run
        .extend(on_time.into_iter().map(|s| (s, RunTrigger::Schedule)));
    d
}

/// How many lines of one kind (a job's next fire, a job removed, a slot missed) a start, a
/// reload or a batch of fires logs one by one; the rest are counted in one line. journald
/// keeps at most 10,000 lines of a service in 30 s by default (`RateLimitBurst=`, times 4 to 6
/// with the free disk space of a usual host) and drops the rest: 100,000 `scheduled` lines at
/// start-up took the warnings that followed them with them.
const LISTED: usize = 100;

/// Counts the lines of one kind: the first [`LISTED`] are written, the rest counted in the
/// one line its `end_*` writes.
#[derive(Default)]
pub(super) struct Listed {
    listed: usize,
    more: usize,
}

impl Listed {
    /// Whether the next line is written; when not, it is counted.
    pub(super) fn one(&mut self) -> bool {
        if self.listed < LISTED {
            self.listed += 1;
            true
        } else {
            self.more += 1;
            false
        }
    }

    /// The line for the jobs whose next fire was not listed, if any.
    pub(super) fn end_scheduled(self) {
        if self.more > 0 {
            tracing::info!(
                more = self.more,
                "{} more jobs scheduled, not listed one by one; `tickler list` shows each one's \
                 next fires",
                self.more
            );
        }
    }

    /// The line for the jobs removed by a reload and not listed, if any.
    pub(super) fn end_removed(self) {
        if self.more > 0 {
            tracing::info!(
                more = self.more,
                "{} more jobs removed, not listed one by one; a run in flight finishes",
                self.more
            );
        }
    }

    /// The line for the missed slots not listed, if any (each is in the run history).
    pub(super) fn end_missed(self) {
        if self.more > 0 {
            tracing::warn!(
                more = self.more,
                "{} more slots recorded `missed`, not listed one by one; `tickler history \
                 --status missed` shows them",
                self.more
            );
        }
    }
}

/// Logs a job's next fire, unless [`LISTED`] were logged already.
pub(super) fn log_next_of(lines: &mut Listed, spec: &JobSpec, next: Option<DateTime<Utc>>) {
    if lines.one() {
        log_next(spec, next);
    }
}

fn log_next(spec: &JobSpec, next: Option<DateTime<Utc>>) {
    match next {
        Some(t) if spec.enabled => tracing::info!(
            job = %spec.name, kind = %spec.kind, trigger = %spec.trigger, timezone = %spec.timezone,
            next = %t.with_timezone(&spec.timezone).to_rfc3339(), "scheduled"
        ),
        _ => tracing::info!(job = %spec.name, enabled = spec.enabled, "not scheduled"),
    }
}

pub(super) async fn dispatch_due(
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler,
    tracker: &TaskTracker,
    now: DateTime<Utc>,
) {
    let due = scheduler.pop_due(now);
    if due.is_empty() {
        return;
    }
    let mut fires = vec![];
    let mut missed = Listed::default();
    for name in due {
        let Some(state) = scheduler.jobs.get(&name) else {
            continue;
        };
        let spec = state.spec.clone();
        let (slots, next) = due_slots(shared, &spec, state.next, now);
        let decision = decide(&spec, &slots, now);
        for (slot, why) in decision.missed {
            if missed.one() {
                tracing::warn!(job = %spec.name, scheduled_for = %slot, "{why}");
            }
            runner::record_only(
                shared,
                &Fire::new(spec.clone(), slot, RunTrigger::CatchUp),
                Status::Missed,
                why,
            );
        }
        for (slot, trigger) in decision.run {
            fires.push(Fire::new(spec.clone(), slot, trigger));
        }
        scheduler.set(spec, next);
    }
    missed.end_missed();
    start_fires(shared, tracker, fires).await;
}

/// The due slots of a job from `next` up to `now`, oldest first, and the slot after them.
/// Slots older than the job's `misfire_grace` beyond [`MISSED_ONE_BY_ONE`] are recorded here,
/// as one `missed` row for their whole range; at most [`MAX_SLOTS_PER_PASS`] newer ones are
/// returned, and the loop takes the rest at once in its next pass.
pub(super) fn due_slots(
    shared: &Shared,
    spec: &Arc<JobSpec>,
    mut next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let grace = TimeDelta::from_std(spec.misfire_grace).unwrap_or(TimeDelta::MAX);
    let horizon = now
        .checked_sub_signed(grace)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut slots: Vec<DateTime<Utc>> = vec![];
    while let Some(slot) = next.filter(|s| *s < horizon) {
        if slots.len() == MISSED_ONE_BY_ONE {
            // Too many to write one by one: one row for all slots from the first up to the
            // horizon, then on from the first slot within the grace.
            let first = slots[0];
            let why = format!(
                "missed: every slot from {} up to {} (more than {MISSED_ONE_BY_ONE}) is older \
                 than misfire_grace ({}); this row stands for all of them",
                first.to_rfc3339(),
                horizon.to_rfc3339(),
                humantime::format_duration(spec.misfire_grace)
            );
            tracing::warn!(job = %spec.name, from = %first, until = %horizon, "{why}");
            shared
                .metrics
                .run_ended(&spec.name, Status::Missed, None, now);
            shared.ledger.record(NewRun {
                id: Uuid::now_v7(),
                job_name: spec.name.clone(),
                scheduled_for: first,
                trigger: RunTrigger::CatchUp,
                status: Status::Missed,
                started_at: now,
                instance: shared.instance.clone(),
                error_message: Some(why),
                metadata: Some(serde_json::json!({ "missed_until": horizon })),
                batch: None,
            });
            slots.clear();
            next = spec
                .trigger
                .next_after(horizon.max(slot) - TimeDelta::nanoseconds(1), spec.timezone);
            break;
        }
        slots.push(slot);
        next = spec.trigger.next_after(slot, spec.timezone);
    }
    let old = slots.len();
    while let Some(slot) = next.filter(|s| *s <= now) {
        if slots.len() - old >= MAX_SLOTS_PER_PASS {
            break;
        }
        slots.push(slot);
        next = spec.trigger.next_after(slot, spec.timezone);
    }
    (slots, next)
}

/// Starts fires: a single fire that can start at once is claimed `running` in one batch with
/// the others of this second (the fast path of the timer loop). A fire that has to wait (a
/// catch-up backlog, a queue, jitter, the concurrency bound) first gets a `pending` row, all
/// of them in one batch, so that a daemon stopped or killed before they ran leaves them for
/// the next one to adopt (invariant 3). Fires that hold a row already (adopted) keep it.
pub(super) async fn start_fires(shared: &Arc<Shared>, tracker: &TaskTracker, fires: Vec<Fire>) {
    if fires.is_empty() {
        return;
    }
    refresh_running_elsewhere(shared, &fires).await;
    let fires = without_paused(shared, fires).await;
    // Several fires of one job (a catch-up) run one after the other, oldest first.
    // In name order, so claim ids (time-ordered) and slot keys rise together.
    let mut by_job: std::collections::BTreeMap<Arc<str>, Vec<Fire>> = Default::default();
    for fire in fires {
        by_job.entry(fire.spec.name.clone()).or_default().push(fire);
    }
    let mut ready = vec![];
    let mut waiting = vec![];
    for (_, mut fires) in by_job {
        if fires.len() == 1 && fires[0].claim.is_none() {
            match runner::admit_now(shared, fires.pop().expect("one fire")) {
                runner::Admission::Ready(r) => ready.push(r),
                runner::Admission::Wait(fire) => fires.push(fire),
                runner::Admission::Skipped => {}
            }
        }
        if !fires.is_empty() {
            waiting.push(fires);
        }
    }
    if !waiting.is_empty() {
        hold_and_run(shared, tracker, waiting);
    }
    while !ready.is_empty() {
        let ready: Vec<runner::Ready> = ready.drain(..ready.len().min(250)).collect();
        let shared = shared.clone();
        let bodies = tracker.clone();
        tracker.spawn(async move {
            let rows = ready.iter().map(|r| r.claim_row(&shared)).collect();
            let asked = shared.clock.now();
            let Some(claimed) = shared.ledger.claim_many(rows).await else {
                ready.iter().for_each(runner::Ready::lost);
                return;
            };
            let now = shared.clock.now();
            for mut r in ready {
                // A claimed slot always runs (or is recorded `missed`): its row says `running`.
                if claimed.contains(&r.id()) {
                    r.claimed_at(asked, now);
                    bodies.spawn(runner::execute(shared.clone(), r));
                }
            }
        });
    }
}

/// Reads other replicas' running jobs once for a whole batch of fires (only PostgreSQL has
/// replicas), when one of the fires skips a job running elsewhere.
async fn refresh_running_elsewhere(shared: &Shared, fires: &[Fire]) {
    if !shared.store.has_replicas()
        || !fires
            .iter()
            .any(|f| f.spec.overlap == config::Overlap::Skip)
    {
        return;
    }
    // Bounded: the loop must go on while the database is away (the slot claim decides).
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        shared.store.running_jobs(&shared.instance),
    );
    match read.await {
        Ok(Ok(running)) => *shared.running_elsewhere.lock().expect("running lock") = running,
        Ok(Err(e)) => tracing::warn!(error = %e, "could not read runs of other daemons"),
        Err(_) => tracing::warn!("could not read runs of other daemons: no answer in 2s"),
    }
}

fn paused_why(p: &crate::store::audit::Pause, fire: &Fire) -> String {
    format!(
        "paused by {} at {}: {}; `tickler resume {}` runs its next slots again",
        p.paused_by,
        p.paused_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        if p.reason.is_empty() {
            "no reason given"
        } else {
            &p.reason
        },
        fire.spec.name
    )
}

/// Records each fire of a paused job (`tickler pause`, the console) `paused` instead of
/// running it: the pauses are read from the database before every batch, so every replica
/// obeys one from its next fire on.
async fn without_paused(shared: &Shared, fires: Vec<Fire>) -> Vec<Fire> {
    let paused = shared.read_paused().await;
    if paused.is_empty() {
        return fires;
    }
    fires
        .into_iter()
        .filter(|fire| match paused.get(&*fire.spec.name) {
            Some(p) if !fire.trigger.on_request() => {
                runner::record_only(shared, fire, Status::Paused, paused_why(p, fire));
                false
            }
            _ => true,
        })
        .collect()
}

/// Records a `pending` row for each fire without one (one batch), then runs each job's fires
/// one after the other. A fire whose row another replica inserted first is not run here.
pub(super) fn hold_and_run(shared: &Arc<Shared>, tracker: &TaskTracker, jobs: Vec<Vec<Fire>>) {
    let shared = shared.clone();
    let bodies = tracker.clone();
    tracker.spawn(async move {
        let mut rows = vec![];
        let mut jobs = jobs;
        for fire in jobs.iter_mut().flatten() {
            if fire.claim.is_none() {
                let id = Uuid::now_v7();
                rows.push(fire.pending_row(id, &shared));
                fire.claim = Some(id);
            }
        }
        let new: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
        let won = if rows.is_empty() {
            HashSet::new()
        } else {
            match shared.ledger.claim_many(rows).await {
                Some(won) => won,
                None => {
                    for fire in jobs.iter().flatten() {
                        if fire.claim.is_some_and(|id| new.contains(&id)) {
                            tracing::error!(
                                job = %fire.spec.name, scheduled_for = %fire.slot,
                                "fire not run: its slot could not be claimed before the daemon \
                                 stopped (the database is unreachable)"
                            );
                        }
                    }
                    HashSet::new()
                }
            }
        };
        for fires in jobs {
            // Adopted fires hold their row already; new ones run if their insert won.
            let fires: Vec<Fire> = fires
                .into_iter()
                .filter(|f| {
                    f.claim
                        .is_some_and(|id| !new.contains(&id) || won.contains(&id))
                })
                .collect();
            if fires.is_empty() {
                continue;
            }
            let shared = shared.clone();
            bodies.spawn(async move {
                for fire in fires {
                    run_fire(shared.clone(), fire).await;
                }
            });
        }
    });
}

/// How long before a second its fires are claimed (see [`claim_ahead`]), at least...
pub(super) const AHEAD: Duration = Duration::from_secs(1);
/// ... and for a big second, this per fire (100,000 rows take SQLite about 2.5 s to insert
/// on a small machine)...
const AHEAD_PER_FIRE: Duration = Duration::from_micros(30);
/// ... up to this.
const AHEAD_MAX: Duration = Duration::from_secs(10);
/// A second closer than this is claimed when it comes, as usual.
const AHEAD_AT_LEAST: Duration = Duration::from_millis(200);
/// Seconds with fewer fires than this are claimed when they come: one statement of a few rows
/// is quick, and a row written a second early would only show up early.
pub(super) const AHEAD_MIN_FIRES: usize = 64;

/// The longest the timer loop sleeps on its own timer, for the interval of the daemon's beat
/// (`startup::beat_interval`, read at start-up; a reload keeps it). Beats at least every
/// `MAX_SLEEP` wake an idle loop (`Shared::beat`, from a task that waits on nothing but its
/// timerfd), and it reads the wall clock with each: its own timer is then only a backstop
/// twice as long (still under `LOOP_STALE`), set again at each beat, long before tokio's wheel
/// steps it down a level (it wakes for it only where the 60 s cross one of the wheel's 262 s
/// boundaries, about once in four minutes), so the beat is all but the one wakeup of an idle
/// daemon. Rarer beats leave it `MAX_SLEEP`.
pub(super) fn idle_cap(beat_interval: Duration) -> Duration {
    if beat_interval <= MAX_SLEEP {
        2 * MAX_SLEEP
    } else {
        MAX_SLEEP
    }
}

/// Whether the loop, at `now`, should claim the fires of `at` ahead (it has not yet), and
/// when it should wake otherwise to do so.
pub(super) fn ahead_wake(
    (at, ahead): (DateTime<Utc>, TimeDelta),
    now: DateTime<Utc>,
    done_for: Option<DateTime<Utc>>,
) -> (bool, DateTime<Utc>) {
    let lead = at - now;
    let at_least = TimeDelta::from_std(AHEAD_AT_LEAST).unwrap_or_default();
    if done_for == Some(at) || lead < at_least {
        return (false, at);
    }
    // A little slack: a timer may wake a hair before the instant it was set for.
    if lead <= ahead + TimeDelta::milliseconds(50) {
        (true, at)
    } else {
        (false, at - ahead)
    }
}

/// Claims ahead the fires due at `at`, a second that has not come yet (a second away, more
/// for a big one: see [`Scheduler::next_wake_and_lead`]),
/// when there are at least [`AHEAD_MIN_FIRES`] of them: a thousand jobs due at the same
/// second are inserted `pending`, as one batch (`batch_id`), while the second is still to
/// come, and when it comes a single committed row (`fire_batches`) starts them all, so no
/// body waits for thousands of rows to be written (invariant 1 holds: each body starts after
/// its slot's row is committed, and after the commit that makes the row count as running).
///
/// Fires that would have to wait or be skipped, and the jobs paused now, are left for the
/// second itself, as are all of a second with fewer fires. A daemon stopped or killed before
/// the second leaves the rows `pending`: the next daemon adopts them, and runs them when the
/// second comes. Killed after it, the rows of the started batch are `abandoned`, never run
/// again.
pub(super) async fn claim_ahead(
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler,
    tracker: &TaskTracker,
    at: DateTime<Utc>,
    stale: TimeDelta,
) {
    let due = scheduler.pop_due(at);
    let specs: Vec<Arc<JobSpec>> = due
        .iter()
        .filter_map(|name| scheduler.jobs.get(name))
        .map(|state| state.spec.clone())
        .collect();
    let park = |scheduler: &mut Scheduler, spec: Arc<JobSpec>| scheduler.set(spec, Some(at));
    // Only jobs whose one slot due is `at` (a backlog is caught up when it comes).
    let (single, mut later): (Vec<_>, Vec<_>) = specs.into_iter().partition(|spec| {
        scheduler
            .jobs
            .get(&spec.name)
            .is_some_and(|s| s.next == Some(at))
    });
    if single.len() < AHEAD_MIN_FIRES {
        later.extend(single);
        later.into_iter().for_each(|spec| park(scheduler, spec));
        return;
    }
    let fires: Vec<Fire> = single
        .into_iter()
        .map(|spec| Fire::new(spec, at, RunTrigger::Schedule))
        .collect();
    refresh_running_elsewhere(shared, &fires).await;
    let paused = shared.read_paused().await;
    let mut ready = vec![];
    for fire in fires {
        if paused.contains_key(&*fire.spec.name) {
            park(scheduler, fire.spec);
            continue;
        }
        let spec = fire.spec.clone();
        match runner::admit_ahead(shared, fire) {
            runner::Admission::Ready(r) => {
                let next = spec.trigger.next_after(at, spec.timezone);
                scheduler.set(spec, next);
                ready.push(r);
            }
            runner::Admission::Wait(_) => park(scheduler, spec),
            // Not answered ahead today; recorded if it ever is: the slot is done.
            runner::Admission::Skipped => {
                let next = spec.trigger.next_after(at, spec.timezone);
                scheduler.set(spec, next);
            }
        }
    }
    later.into_iter().for_each(|spec| park(scheduler, spec));
    if ready.is_empty() {
        return;
    }
    // In name order, so claim ids (time-ordered) and slot keys rise together.
    ready.sort_unstable_by(|a, b| a.fire().spec.name.cmp(&b.fire().spec.name));
    let claimed_under = shared.jobs_now();
    let batch = Uuid::now_v7();
    let shared = shared.clone();
    let bodies = tracker.clone();
    tracker.spawn(async move {
        let rows = ready.iter().map(|r| r.ahead_row(&shared, batch)).collect();
        let Some(won) = shared.ledger.claim_many(rows).await else {
            ready.iter().for_each(runner::Ready::lost);
            return;
        };
        // Slots another replica claimed first are its to run.
        ready.retain(|r| won.contains(&r.id()));
        while shared.clock.now() < at {
            tokio::select! {
                _ = shared.clock.sleep_until(at, crate::time::MAX_SLEEP) => {}
                // The rows stay `pending`: the next daemon adopts them.
                _ = shared.stopping.cancelled() => return,
            }
        }
        // A pause made in the last second still counts.
        let paused = shared.read_paused().await;
        let (now_paused, ready): (Vec<_>, Vec<_>) = ready
            .into_iter()
            .partition(|r| paused.contains_key(&*r.fire().spec.name));
        for r in now_paused {
            let fire = r.into_held();
            if let Some(p) = paused.get(&*fire.spec.name) {
                runner::record_only(&shared, &fire, Status::Paused, paused_why(p, &fire));
            }
        }
        // So does a reload.
        let mut ready = as_reloaded(&shared, &claimed_under, ready, at);
        // Another daemon judges this one gone by its heartbeat (`stale`): with a beat that
        // old, one row cannot speak for the batch; each row is started on its own instead,
        // which checks it is still this daemon's.
        let beat_age = shared.last_beat.lock().expect("beat lock").elapsed();
        if TimeDelta::from_std(beat_age).unwrap_or(TimeDelta::MAX) > stale / 2 {
            let held = ready.into_iter().map(|r| vec![r.into_held()]).collect();
            hold_and_run(&shared, &bodies, held);
            return;
        }
        let asked = shared.clock.now();
        let Some(lost) = shared
            .ledger
            .start_batch(batch, &shared.instance, asked)
            .await
        else {
            ready.iter().for_each(runner::Ready::lost);
            return;
        };
        let now = shared.clock.now();
        let starting = shared.ledger.batch_starting(batch, asked);
        for mut r in ready.drain(..) {
            if lost.contains(&r.id()) {
                tracing::info!(job = %r.fire().spec.name, scheduled_for = %at, "a slot claimed ahead was adopted by another daemon; it runs there");
                continue;
            }
            r.claimed_at(asked, now);
            let (shared, starting) = (shared.clone(), starting.clone());
            bodies.spawn(async move {
                drop(starting);
                runner::execute(shared, r).await
            });
        }
    });
}

/// The fires claimed ahead for `at` under the config `claimed_under`, as the running config
/// has them now: a reload between the claim and the second is obeyed as it would be had the
/// slot been claimed when it came. A job removed or disabled, or whose new schedule does not
/// have `at`, is recorded `skipped` with the reason; the others run as the new config says.
fn as_reloaded(
    shared: &Shared,
    claimed_under: &Arc<Vec<Arc<JobSpec>>>,
    ready: Vec<runner::Ready>,
    at: DateTime<Utc>,
) -> Vec<runner::Ready> {
    let now = shared.jobs_now();
    if Arc::ptr_eq(claimed_under, &now) {
        return ready;
    }
    let jobs: HashMap<&str, &Arc<JobSpec>> = now.iter().map(|j| (&*j.name, j)).collect();
    let mut kept = Vec::with_capacity(ready.len());
    for r in ready {
        let old = &r.fire().spec;
        let why = match jobs.get(&*old.name) {
            None => {
                "skipped: the job was removed from the config by a reload after its slot \
                 was claimed"
            }
            Some(new) if !new.enabled => {
                "skipped: the job was disabled by a reload after its slot was claimed"
            }
            Some(new) if !same_schedule(old, new) && !has_slot(new, at) => {
                "skipped: a reload after its slot was claimed changed the job's schedule, \
                 which no longer has this slot"
            }
            Some(new) => {
                kept.push(r.with_spec(Arc::clone(new)));
                continue;
            }
        };
        runner::record_only(shared, &r.into_held(), Status::Skipped, why.into());
    }
    kept
}

/// Whether two versions of a job fire at the same instants: a reload keeps such a job's next
/// slot, and a slot claimed ahead for it.
fn same_schedule(old: &JobSpec, new: &JobSpec) -> bool {
    old.trigger == new.trigger && old.timezone == new.timezone
}

/// Whether `at` is one of `spec`'s slots.
fn has_slot(spec: &JobSpec, at: DateTime<Utc>) -> bool {
    spec.trigger
        .next_after(at - TimeDelta::milliseconds(1), spec.timezone)
        == Some(at)
}

/// Re-reads the config; a file that does not validate changes nothing.
pub(super) fn reload(
    current: &Config,
    scheduler: &mut Scheduler,
    shared: &Arc<Shared>,
    now: DateTime<Utc>,
) -> Option<Config> {
    tracing::info!(config = %current.path.display(), "reloading the config");
    let new = match config::load(&current.path) {
        Ok(new) => new,
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!("reload refused: the running schedule is unchanged");
            return None;
        }
    };
    if new.daemon.database_url != current.daemon.database_url
        || new.daemon.state_dir != current.daemon.state_dir
    {
        tracing::warn!("`database_url` and `state_dir` changes take effect at the next restart");
    }
    let (old, new_d) = (&current.daemon, &new.daemon);
    if old.heartbeat_interval != new_d.heartbeat_interval
        || old.history_retention != new_d.history_retention
        || old.failure_retention != new_d.failure_retention
        || old.shutdown_grace != new_d.shutdown_grace
    {
        tracing::warn!(
            "`heartbeat_interval`, `history_retention`, `failure_retention` and `shutdown_grace` \
             changes take effect at the next restart"
        );
    }
    let http_key = |c: &Config| {
        c.http
            .as_ref()
            .map(|h| (h.listen, h.token.clone(), h.max_connections))
    };
    if http_key(current) != http_key(&new) {
        tracing::warn!("`[http]` changes take effect at the next restart");
    }
    shared.set_pools(new.daemon.max_concurrent, &new.lanes);
    let new_names: HashSet<&str> = new.jobs.iter().map(|j| &*j.name).collect();
    let removed: Vec<Arc<str>> = scheduler
        .jobs
        .keys()
        .filter(|n| !new_names.contains(&***n))
        .cloned()
        .collect();
    let mut lines = Listed::default();
    for name in removed {
        scheduler.jobs.remove(&name);
        if lines.one() {
            tracing::info!(job = %name, "removed; a run in flight finishes");
        }
    }
    lines.end_removed();
    // The jobs whose schedule the reload changed (new ones, enabled or disabled ones too) are
    // logged; the others keep their next fire and say nothing.
    let mut lines = Listed::default();
    for spec in &new.jobs {
        let same = scheduler
            .jobs
            .get(&spec.name)
            .filter(|old| same_schedule(&old.spec, spec));
        let keep = same.filter(|old| old.spec.enabled).map(|old| old.next);
        let changed = same.is_none_or(|old| old.spec.enabled != spec.enabled);
        let next = match keep {
            Some(next) => next,
            None => spec.trigger.next_after(now, spec.timezone),
        };
        scheduler.set(spec.clone(), next);
        if changed {
            log_next_of(&mut lines, spec, next);
        }
    }
    lines.end_scheduled();
    tracing::info!(jobs = new.jobs.len(), "config reloaded");
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_loop_leans_on_the_beat_only_when_beats_come_within_its_cap() {
        assert_eq!(idle_cap(Duration::from_secs(30)), 2 * MAX_SLEEP);
        assert_eq!(idle_cap(Duration::from_secs(1)), 2 * MAX_SLEEP);
        assert_eq!(idle_cap(Duration::from_secs(31)), MAX_SLEEP);
        // Either way a loop that stops turning is only judged stuck after its cap.
        assert!(idle_cap(Duration::from_secs(1)) < crate::daemon::shared::LOOP_STALE);
    }

    fn spec(catch_up: &str, grace: &str) -> Arc<JobSpec> {
        let text = format!(
            "[[job]]\nname = \"j\"\nkind = \"noop\"\nevery = \"1m\"\ncatch_up = \"{catch_up}\"\nmisfire_grace = \"{grace}\"\n"
        );
        config::parse(Path::new("t.toml"), &text).unwrap().jobs[0].clone()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn slots() -> Vec<DateTime<Utc>> {
        // Five slots, 10:00 .. 10:04; "now" is 10:04:05, so only 10:04 is on time.
        (0..5)
            .map(|m| t("2025-01-01T10:00:00Z") + TimeDelta::minutes(m))
            .collect()
    }

    #[test]
    fn a_big_second_is_claimed_ahead_once_and_earlier_the_bigger_it_is() {
        let at = t("2025-01-01T10:00:00Z");
        let lead = |n: usize| {
            let mut s = Scheduler::new();
            let job = spec("none", "1h");
            // Entries per instant are counted, not jobs: one spec pushed n times will do.
            for _ in 0..n {
                s.set(job.clone(), Some(at));
            }
            s.next_wake_and_lead().unwrap()
        };
        assert_eq!(lead(10), (at, TimeDelta::seconds(1)));
        assert_eq!(lead(100_000), (at, TimeDelta::seconds(3)));
        let next = lead(10);
        // Far off: wake a second before; within the second: claim now, once; too close: no.
        assert_eq!(
            ahead_wake(next, at - TimeDelta::seconds(5), None),
            (false, at - TimeDelta::seconds(1))
        );
        assert_eq!(
            ahead_wake(next, at - TimeDelta::milliseconds(990), None),
            (true, at)
        );
        assert_eq!(
            ahead_wake(next, at - TimeDelta::milliseconds(990), Some(at)),
            (false, at)
        );
        assert_eq!(
            ahead_wake(next, at - TimeDelta::milliseconds(100), None),
            (false, at)
        );
    }

    #[test]
    fn the_counts_per_instant_follow_the_heap_through_sets_and_pops() {
        let at = t("2025-01-01T10:00:00Z");
        let later = at + TimeDelta::seconds(1);
        let mut s = Scheduler::new();
        let job = spec("none", "1h");
        for _ in 0..5 {
            s.set(job.clone(), Some(at));
        }
        for _ in 0..3 {
            s.set(job.clone(), Some(later));
        }
        // Every entry is counted, the stale ones (the same job set again) included.
        assert_eq!(s.counts.values().sum::<usize>(), s.heap.len());
        // Only the latest `set` of the job is due; the stale entries go with the pop.
        assert!(s.pop_due(at).is_empty());
        assert_eq!(s.counts, [(later, 3)].into_iter().collect());
        assert_eq!(s.pop_due(later).len(), 1);
        assert!(s.counts.is_empty() && s.heap.is_empty());
        assert_eq!(s.next_wake_and_lead(), None);
    }

    #[test]
    fn each_next_fire_is_published_in_the_order_of_the_jobs_as_they_are_scheduled() {
        let cells = |board: &NextFires| {
            board
                .iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        let micros = |t: DateTime<Utc>| t.timestamp_micros();
        let (a, b) = (named("a"), named("b"));
        let at = t("2025-01-01T10:00:00Z");
        let later = at + TimeDelta::milliseconds(61_250);
        let mut s = Scheduler::new();
        s.set(a.clone(), Some(at));
        s.set(b.clone(), None);
        let board = s.board_for(&[b.clone(), a.clone()]);
        assert_eq!(cells(&board), [i64::MIN, micros(at)]);
        s.set(a.clone(), Some(later));
        s.set(b.clone(), Some(at));
        assert_eq!(cells(&board), [micros(at), micros(later)]);
        // A reload: `b` removed, `c` added; the old cells still take the sets until the new
        // ones are made, and only the new ones take them after.
        s.jobs.remove("b");
        let c = named("c");
        s.set(c.clone(), Some(at));
        s.set(a.clone(), Some(at));
        assert_eq!(cells(&board), [micros(at), micros(at)]);
        let new = s.board_for(&[a.clone(), c]);
        assert_eq!(cells(&new), [micros(at), micros(at)]);
        s.set(a, Some(later));
        assert_eq!(cells(&new), [micros(later), micros(at)]);
        assert_eq!(cells(&board), [micros(at), micros(at)]);
    }

    fn named(name: &str) -> Arc<JobSpec> {
        let text = format!("[[job]]\nname = \"{name}\"\nkind = \"noop\"\nevery = \"1m\"\n");
        config::parse(Path::new("t.toml"), &text).unwrap().jobs[0].clone()
    }

    #[test]
    fn catch_up_none_runs_only_on_time_slots() {
        let d = decide(&spec("none", "1h"), &slots(), t("2025-01-01T10:04:05Z"));
        assert_eq!(d.run, [(t("2025-01-01T10:04:00Z"), RunTrigger::Schedule)]);
        assert_eq!(d.missed.len(), 4);
        assert_eq!(d.missed[0].1, "missed: catch_up = \"none\"");
    }

    #[test]
    fn catch_up_latest_coalesces() {
        // With an on-time slot the misses are superseded by it.
        let d = decide(&spec("latest", "1h"), &slots(), t("2025-01-01T10:04:05Z"));
        assert_eq!(d.run, [(t("2025-01-01T10:04:00Z"), RunTrigger::Schedule)]);
        assert_eq!(d.missed.len(), 4);
        // Without one, the latest missed slot within grace runs once.
        let d = decide(&spec("latest", "1h"), &slots(), t("2025-01-01T10:10:00Z"));
        assert_eq!(d.run, [(t("2025-01-01T10:04:00Z"), RunTrigger::CatchUp)]);
        assert_eq!(d.missed.len(), 4);
    }

    #[test]
    fn catch_up_all_runs_each_slot_within_grace() {
        let d = decide(&spec("all", "7m"), &slots(), t("2025-01-01T10:08:30Z"));
        let ran: Vec<_> = d
            .run
            .iter()
            .map(|(s, _)| s.format("%H:%M").to_string())
            .collect();
        assert_eq!(ran, ["10:02", "10:03", "10:04"]);
        assert_eq!(d.missed.len(), 2);
        assert_eq!(
            d.missed[0].1,
            "missed: the slot is older than misfire_grace (7m)"
        );
    }
}
