//! What `/metrics` reports, in the OpenMetrics text format Prometheus scrapes. Counters and
//! histograms live in the daemon and count from its start (Prometheus handles the reset of a
//! restart); gauges are read when scraped: the last success, next fire and dead-man deadline of
//! each job, the age of the timer loop's last round, and the task queue by status. The
//! alerting rules and dashboard in `deploy/prometheus/` and `deploy/grafana/` use these names.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
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
    /// Runs ended, by job and status (`Status::ALL`'s order), of the jobs that have had one.
    runs: Mutex<HashMap<String, [u64; STATUSES]>>,
    durations: Histograms,
    lateness: Histograms,
    /// The last success of each job: read from the ledger at start, then kept by this daemon.
    last_success: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runs: Mutex::default(),
            durations: Family::new_with_constructor(duration_buckets),
            lateness: Family::new_with_constructor(lateness_buckets),
            last_success: Mutex::default(),
        }
    }
}

/// What a scrape reads besides the daemon's counts.
pub struct Snapshot {
    /// The jobs of the config now loaded: a job removed by a reload is no longer reported.
    pub jobs: HashSet<Arc<str>>,
    /// Each enabled job with its next fire.
    pub next_fires: Vec<(Arc<str>, Option<DateTime<Utc>>)>,
    /// Tasks by status (`None` when the database could not be read).
    pub queue: Option<Vec<(String, i64)>>,
    /// Messages `sending` and `unknown` in `notification_log` (with `queue`).
    pub messages: Option<Vec<(String, i64)>>,
    /// Each enabled job with an `expect_success_within`, and when this daemon first knew it
    /// (the reference of a job that has not succeeded since).
    pub deadlines: Vec<(Arc<str>, std::time::Duration, Option<DateTime<Utc>>)>,
    /// The paused jobs (`tickler pause`, as the daemon last read them): they have no deadline
    /// while paused.
    pub paused: Vec<String>,
    /// How long ago the timer loop last went round.
    pub loop_age: std::time::Duration,
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
        let mut runs = self.runs.lock().expect("metrics lock");
        match runs.get_mut(job) {
            Some(counts) => counts[status_index(status)] += 1,
            None => {
                let mut counts = [0; STATUSES];
                counts[status_index(status)] = 1;
                runs.insert(job.to_string(), counts);
            }
        }
        drop(runs);
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

    /// The whole exposition: counters, histograms, and `snapshot`'s gauges, written to `out`
    /// as it goes (a scrape's body: 57 MB at 100,000 jobs, never held whole).
    pub fn render(&self, snapshot: Snapshot, out: &mut impl fmt::Write) -> fmt::Result {
        let mut registry = Registry::with_prefix("tickler");
        // The series name their jobs by the config's own names (`Arc<str>`): a scrape of
        // 100,000 jobs copies none of them.
        let name = |job: &str| {
            snapshot
                .jobs
                .get(job)
                .cloned()
                .unwrap_or_else(|| Arc::from(job))
        };
        let mut runs: Vec<(Arc<str>, [u64; STATUSES])> =
            Vec::with_capacity(snapshot.next_fires.len());
        {
            let counted = self.runs.lock().expect("metrics lock");
            // Each enabled job's run counters exist from 0: a series that appears at 1 is
            // invisible to `increase()`, so a job's first failure would not fire
            // `TicklerJobFailing`. Written from the job list at each scrape, not kept: 100,000
            // jobs would hold 900,000 series.
            for (job, _) in &snapshot.next_fires {
                let counts = counted.get(&**job).copied().unwrap_or_default();
                runs.push((job.clone(), counts));
            }
            // And those of the jobs that had runs and are no longer enabled.
            if !counted.is_empty() {
                let enabled: HashSet<&str> =
                    snapshot.next_fires.iter().map(|(job, _)| &**job).collect();
                runs.extend(
                    counted
                        .iter()
                        .filter(|(job, _)| !enabled.contains(job.as_str()))
                        .map(|(job, counts)| (name(job), *counts)),
                );
            }
        }
        registry.register_collector(Box::new(RunCounts(runs)));
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
        let last: Vec<(Arc<str>, f64)> = self
            .last_success
            .lock()
            .expect("metrics lock")
            .iter()
            .filter_map(|(job, at)| Some((snapshot.jobs.get(job.as_str())?.clone(), seconds(*at))))
            .collect();
        registry.register_collector(Box::new(JobGauges {
            name: "job_last_success_timestamp_seconds",
            help: "When each job last succeeded or ended partial (Unix time).",
            values: last,
        }));
        let next = snapshot
            .next_fires
            .into_iter()
            .filter_map(|(job, at)| Some((job, seconds(at?))))
            .collect();
        registry.register_collector(Box::new(JobGauges {
            name: "job_next_fire_timestamp_seconds",
            help: "When each enabled job fires next (Unix time).",
            values: next,
        }));
        let mut due = vec![];
        {
            let paused: HashSet<&str> = snapshot.paused.iter().map(String::as_str).collect();
            let last = self.last_success.lock().expect("metrics lock");
            for (job, within, known) in snapshot.deadlines {
                if paused.contains(&*job) {
                    continue;
                }
                let last = last.get(&*job).copied();
                if let Some(at) = super::deadman::success_due(last, None, known, within) {
                    due.push((job, seconds(at)));
                }
            }
        }
        registry.register_collector(Box::new(JobGauges {
            name: "job_success_due_timestamp_seconds",
            help: "When each job with `expect_success_within` is overdue unless it succeeds (or \
                   ends partial) first: its last success, or when this daemon first knew it, \
                   plus `expect_success_within` (Unix time).",
            values: due,
        }));
        let paused = snapshot
            .paused
            .iter()
            .filter_map(|job| Some((snapshot.jobs.get(job.as_str())?.clone(), 1i64)))
            .collect();
        registry.register_collector(Box::new(JobGauges {
            name: "job_paused",
            help: "1 for each job paused by `tickler pause` or the console: its slots are \
                   recorded `paused`, not run, and it has no success deadline meanwhile.",
            values: paused,
        }));
        let loop_age: Gauge<f64, AtomicU64> = Gauge::default();
        loop_age.set(snapshot.loop_age.as_secs_f64());
        registry.register(
            "loop_tick_age_seconds",
            "How long ago the timer loop last went round (it wakes at least every 30 s; \
             `/healthz` calls it stalled after 75 s)",
            loop_age,
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
        encode(out, &registry)
    }
}

/// How many statuses a run has (`Status::ALL`), ended or not.
const STATUSES: usize = Status::ALL.len();

fn status_index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in Status::ALL")
}

/// `tickler_runs_total` by job and by each status a run can end with (a fire left `pending`
/// or `running` is not over), written straight from the counts.
#[derive(Debug)]
struct RunCounts(Vec<(Arc<str>, [u64; STATUSES])>);

impl Collector for RunCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "runs",
            "Runs ended, by job and status.",
            None,
            MetricType::Counter,
        )?;
        for (job, counts) in &self.0 {
            for (status, n) in Status::ALL.iter().zip(counts) {
                if status.is_open() {
                    continue;
                }
                let labels = [("job", &**job), ("status", status.as_str())];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A gauge by job, written straight from its values.
#[derive(Debug)]
struct JobGauges<V> {
    name: &'static str,
    /// With its final full stop (`Registry::register` adds one; the encoder does not).
    help: &'static str,
    values: Vec<(Arc<str>, V)>,
}

impl<V: EncodeGaugeValue + Copy + fmt::Debug + Send + Sync + 'static> Collector for JobGauges<V> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // Like an empty `Family`, nothing: not even the family's description.
        if self.values.is_empty() {
            return Ok(());
        }
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (job, value) in &self.values {
            ConstGauge::new(*value).encode(family.encode_family(&[("job", &**job)])?)?;
        }
        Ok(())
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::{Metrics, Snapshot};
    use crate::store::Status;
    use chrono::{DateTime, Utc};
    use std::sync::Arc;
    use std::time::Duration;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn render(m: &Metrics, snapshot: Snapshot) -> String {
        let mut text = String::new();
        m.render(snapshot, &mut text).unwrap();
        text
    }

    fn snapshot(deadlines: Vec<(Arc<str>, Duration, Option<DateTime<Utc>>)>) -> Snapshot {
        paused_snapshot(deadlines, vec![])
    }

    fn paused_snapshot(
        deadlines: Vec<(Arc<str>, Duration, Option<DateTime<Utc>>)>,
        paused: Vec<String>,
    ) -> Snapshot {
        Snapshot {
            jobs: ["ok", "never", "unknown", "failing"].map(Arc::from).into(),
            next_fires: vec![("ok".into(), None), ("failing".into(), None)],
            queue: None,
            messages: None,
            deadlines,
            paused,
            loop_age: Duration::from_millis(2500),
        }
    }

    #[test]
    fn a_paused_job_has_no_success_deadline_and_is_shown_paused() {
        let m = Metrics::default();
        let hour = Duration::from_secs(3600);
        let known = Some(utc("2026-11-23T08:00:00Z"));
        let text = render(
            &m,
            paused_snapshot(
                vec![("ok".into(), hour, known), ("never".into(), hour, known)],
                vec!["never".into()],
            ),
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("tickler_job_success_due_timestamp_seconds{job=\"ok\"}")),
            "{text}"
        );
        assert!(!text.contains("tickler_job_success_due_timestamp_seconds{job=\"never\"}"));
        assert!(
            text.lines()
                .any(|l| l == "tickler_job_paused{job=\"never\"} 1"),
            "{text}"
        );
        assert!(!text.contains("tickler_job_paused{job=\"ok\"}"), "{text}");
    }

    #[test]
    fn the_success_deadline_counts_from_the_last_success_or_from_when_the_job_was_known() {
        let m = Metrics::default();
        let known = utc("2026-11-23T08:00:00Z");
        m.seed_last_success(vec![("ok".into(), utc("2026-11-23T09:00:00Z"))]);
        // A partial run counts as a success; a failure moves nothing.
        m.run_ended(
            "ok",
            Status::Partial,
            Some(1.0),
            utc("2026-11-23T10:00:00Z"),
        );
        m.run_ended(
            "failing",
            Status::Failed,
            Some(1.0),
            utc("2026-11-23T10:00:00Z"),
        );
        let hour = Duration::from_secs(3600);
        let text = render(
            &m,
            snapshot(vec![
                ("ok".into(), hour, Some(known)),
                ("never".into(), 2 * hour, Some(known)),
                ("failing".into(), hour, Some(known)),
                ("unknown".into(), hour, None),
            ]),
        );
        let due = |job: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!(
                        "tickler_job_success_due_timestamp_seconds{{job=\"{job}\"}} "
                    ))
                })
                .map(|v| v.parse::<f64>().unwrap())
        };
        let at = |s: &str| utc(s).timestamp() as f64;
        assert_eq!(due("ok"), Some(at("2026-11-23T11:00:00Z")), "{text}");
        assert_eq!(due("never"), Some(at("2026-11-23T10:00:00Z")), "{text}");
        assert_eq!(due("failing"), Some(at("2026-11-23T09:00:00Z")), "{text}");
        assert_eq!(due("unknown"), None, "no reference, no deadline: {text}");
        assert!(
            text.lines()
                .any(|l| l == "tickler_loop_tick_age_seconds 2.5"),
            "{text}"
        );
        assert!(text.lines().any(|l| l == "tickler_database_up 0"), "{text}");
        // Every enabled job's counters are there from 0 (so `increase()` sees a first failure).
        for line in [
            "tickler_runs_total{job=\"ok\",status=\"partial\"} 1",
            "tickler_runs_total{job=\"ok\",status=\"failed\"} 0",
            "tickler_runs_total{job=\"ok\",status=\"timed_out\"} 0",
            "tickler_runs_total{job=\"failing\",status=\"failed\"} 1",
            "tickler_runs_total{job=\"failing\",status=\"abandoned\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(!text.contains("tickler_queue_tasks{"), "{text}");
    }

    /// Each scrape writes the run counters of every enabled job, from 0 where it has had no
    /// run (nothing is kept for them), and those of a job no longer enabled that has had runs.
    #[test]
    fn a_job_new_to_a_later_scrape_gets_its_counters_from_0() {
        let m = Metrics::default();
        let zero = |job: &str| format!("tickler_runs_total{{job=\"{job}\",status=\"failed\"}} 0");
        let first = render(&m, paused_snapshot(vec![], vec![]));
        assert!(first.lines().any(|l| l == zero("ok")), "{first}");
        assert!(!first.contains("job=\"never\""), "{first}");
        let mut later = paused_snapshot(vec![], vec![]);
        later.next_fires.push(("never".into(), None));
        let later = render(&m, later);
        for job in ["ok", "failing", "never"] {
            assert!(later.lines().any(|l| l == zero(job)), "{job} in {later}");
        }
        m.run_ended("gone", Status::Failed, None, utc("2026-11-23T10:00:00Z"));
        let text = render(&m, paused_snapshot(vec![], vec![]));
        for line in [
            "tickler_runs_total{job=\"gone\",status=\"failed\"} 1",
            "tickler_runs_total{job=\"gone\",status=\"succeeded\"} 0",
            "tickler_runs_total{job=\"ok\",status=\"abandoned\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(!text.contains("status=\"pending\""), "{text}");
    }
}
