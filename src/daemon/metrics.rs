//! What `/metrics` reports, in the OpenMetrics text format Prometheus scrapes. Counters and
//! histograms live in the daemon and count from its start (Prometheus handles the reset of a
//! restart); gauges are read when scraped: the last success and next fire of each job, and the
//! task queue by status.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::Status;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn duration_buckets() -> Histogram {
    // 10 ms .. about 45 min.
    Histogram::new(exponential_buckets(0.01, 4.0, 10))
}

fn lateness_buckets() -> Histogram {
    // 1 ms .. about 65 s.
    Histogram::new(exponential_buckets(0.001, 4.0, 9))
}

/// The daemon's own counts (one per daemon process).
pub struct Metrics {
    runs: Family<Labels, Counter>,
    durations: Histograms,
    lateness: Histograms,
    /// The last success of each job: read from the ledger at start, then kept by this daemon.
    last_success: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runs: Family::default(),
            durations: Family::new_with_constructor(duration_buckets),
            lateness: Family::new_with_constructor(lateness_buckets),
            last_success: Mutex::default(),
        }
    }
}

/// What a scrape reads besides the daemon's counts.
pub struct Snapshot {
    /// The jobs of the config now loaded: a job removed by a reload is no longer reported.
    pub jobs: std::collections::HashSet<String>,
    /// Each enabled job with its next fire.
    pub next_fires: Vec<(String, Option<DateTime<Utc>>)>,
    /// Tasks by status (`None` when the database could not be read).
    pub queue: Option<Vec<(String, i64)>>,
    /// Messages `sending` and `unknown` in `notification_log` (with `queue`).
    pub messages: Option<Vec<(String, i64)>>,
}

impl Metrics {
    pub fn seed_last_success(&self, known: Vec<(String, DateTime<Utc>)>) {
        self.last_success
            .lock()
            .expect("metrics lock")
            .extend(known);
    }

    pub fn run_started(&self, job: &str, lateness_seconds: f64) {
        self.lateness
            .get_or_create(&vec![("job", job.to_string())])
            .observe(lateness_seconds.max(0.0));
    }

    /// A run ended with `status`; `seconds` is how long its body ran (`None` for a fire that
    /// did not run: skipped, missed, interrupted before it started).
    pub fn run_ended(&self, job: &str, status: Status, seconds: Option<f64>, at: DateTime<Utc>) {
        self.runs
            .get_or_create(&vec![
                ("job", job.to_string()),
                ("status", status.as_str().to_string()),
            ])
            .inc();
        if let Some(seconds) = seconds {
            self.durations
                .get_or_create(&vec![("job", job.to_string())])
                .observe(seconds.max(0.0));
        }
        if status.is_success() {
            self.last_success
                .lock()
                .expect("metrics lock")
                .insert(job.to_string(), at);
        }
    }

    /// The whole exposition: counters, histograms, and `snapshot`'s gauges.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let mut registry = Registry::with_prefix("tickler");
        registry.register("runs", "Runs ended, by job and status", self.runs.clone());
        registry.register(
            "run_duration_seconds",
            "How long runs took, by job",
            self.durations.clone(),
        );
        registry.register(
            "run_lateness_seconds",
            "From a run's scheduled time to its start, by job",
            self.lateness.clone(),
        );
        let last: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
        for (job, at) in self.last_success.lock().expect("metrics lock").iter() {
            if snapshot.jobs.contains(job) {
                last.get_or_create(&vec![("job", job.clone())])
                    .set(seconds(*at));
            }
        }
        registry.register(
            "job_last_success_timestamp_seconds",
            "When each job last succeeded or ended partial (Unix time)",
            last,
        );
        let next: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
        for (job, at) in snapshot.next_fires {
            if let Some(at) = at {
                next.get_or_create(&vec![("job", job)]).set(seconds(at));
            }
        }
        registry.register(
            "job_next_fire_timestamp_seconds",
            "When each enabled job fires next (Unix time)",
            next,
        );
        let up: Gauge = Gauge::default();
        up.set(snapshot.queue.is_some() as i64);
        // Left out while the database is unreachable: zeros would look like an empty queue.
        if let Some(counts) = snapshot.queue {
            let queue: Family<Labels, Gauge> = Family::default();
            for status in crate::queue::STATUSES {
                queue
                    .get_or_create(&vec![("status", status.to_string())])
                    .set(0);
            }
            for (status, n) in counts {
                queue.get_or_create(&vec![("status", status)]).set(n);
            }
            registry.register("queue_tasks", "Tasks in scheduled_tasks, by status", queue);
        }
        if let Some(counts) = snapshot.messages {
            let messages: Family<Labels, Gauge> = Family::default();
            for status in ["sending", "unknown"] {
                messages
                    .get_or_create(&vec![("status", status.to_string())])
                    .set(0);
            }
            for (status, n) in counts {
                messages.get_or_create(&vec![("status", status)]).set(n);
            }
            registry.register(
                "notifications",
                "Messages in notification_log being sent, and `unknown` ones (they may have \
                 reached the provider before their sender stopped; they are never resent)",
                messages,
            );
        }
        registry.register(
            "database_up",
            "1 when the last read of the database for this scrape worked",
            up,
        );
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String");
        out
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}
