//! The agent's metrics, in the Prometheus (OpenMetrics) text format: what each job did and when,
//! how far back and forward each source can be restored, how far each streamer is behind, and
//! what went to the store. Every name is documented in docs/OPERATIONS.md.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::config::Job;
use crate::context::Clock;
use crate::engine::StreamStatus;
use crate::jobs::Recoverability;
use crate::store::metered::{StoreMeter, OPERATIONS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    source: String,
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    source: String,
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<JobLabels, Histogram, fn() -> Histogram>;

/// How a run ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Not started: the previous run was still going.
    Skipped,
    /// Stopped at its deadline, or by the agent's shutdown.
    Cancelled,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Every metric the agent serves.
pub struct AgentMetrics {
    registry: Registry,
    runs: Family<OutcomeLabels, Counter>,
    running: Family<JobLabels, Gauge>,
    last_success: Family<JobLabels, FloatGauge>,
    last_failure: Family<JobLabels, FloatGauge>,
    durations: HistogramFamily,
    first_point: Family<SourceLabels, FloatGauge>,
    last_point: Family<SourceLabels, FloatGauge>,
    last_backup: Family<SourceLabels, FloatGauge>,
    backups: Family<SourceLabels, Gauge>,
    last_drill: Family<SourceLabels, FloatGauge>,
    last_drill_passed: Family<SourceLabels, Gauge>,
    last_passed_drill: Family<SourceLabels, FloatGauge>,
    stream_restarts: Family<SourceLabels, Counter>,
}

/// Job durations from a second to a day and a half, each bucket twice the one before.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 18))
}

impl AgentMetrics {
    /// The metrics of an agent whose streamers report to `streams`, on a store counted by
    /// `store`; the streamers' lag is measured on `clock` when the metrics are read.
    pub fn new(
        streams: Vec<(String, StreamStatus)>,
        store: Option<Arc<StoreMeter>>,
        clock: Clock,
    ) -> Self {
        let mut registry = Registry::default();
        let runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "heirloom_job_runs",
            "Runs of each scheduled job by how they ended: success, failure, skipped (the previous run was still going), cancelled (deadline or shutdown)",
            runs.clone(),
        );
        let running = Family::<JobLabels, Gauge>::default();
        registry.register(
            "heirloom_job_running",
            "1 while a run of the job is going",
            running.clone(),
        );
        let last_success = Family::<JobLabels, FloatGauge>::default();
        registry.register_with_unit(
            "heirloom_job_last_success_timestamp",
            "When the job's last successful run ended, in seconds since the epoch",
            Unit::Seconds,
            last_success.clone(),
        );
        let last_failure = Family::<JobLabels, FloatGauge>::default();
        registry.register_with_unit(
            "heirloom_job_last_failure_timestamp",
            "When the job's last failed or cancelled run ended, in seconds since the epoch",
            Unit::Seconds,
            last_failure.clone(),
        );
        let durations: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "heirloom_job_duration",
            "How long the job's runs took, successful or not",
            Unit::Seconds,
            durations.clone(),
        );
        let first_point = Family::<SourceLabels, FloatGauge>::default();
        registry.register_with_unit(
            "heirloom_first_recoverability_point",
            "The earliest instant the source can be restored to, in seconds since the epoch",
            Unit::Seconds,
            first_point.clone(),
        );
        let last_point = Family::<SourceLabels, FloatGauge>::default();
        registry.register_with_unit(
            "heirloom_last_recoverability_point",
            "The latest instant the source can be restored to from what the repository holds, in seconds since the epoch",
            Unit::Seconds,
            last_point.clone(),
        );
        let last_backup = Family::<SourceLabels, FloatGauge>::default();
        registry.register_with_unit(
            "heirloom_last_available_backup_timestamp",
            "The consistency time of the source's newest backup, in seconds since the epoch",
            Unit::Seconds,
            last_backup.clone(),
        );
        let backups = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "heirloom_backups",
            "Backups of the source the repository holds",
            backups.clone(),
        );
        let last_drill = Family::<SourceLabels, FloatGauge>::default();
        registry.register_with_unit(
            "heirloom_last_drill_timestamp",
            "When the source's newest restore drill ended, passed or not, in seconds since the epoch",
            Unit::Seconds,
            last_drill.clone(),
        );
        let last_drill_passed = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "heirloom_last_drill_passed",
            "1 if the source's newest restore drill passed, 0 if it failed",
            last_drill_passed.clone(),
        );
        let last_passed_drill = Family::<SourceLabels, FloatGauge>::default();
        registry.register_with_unit(
            "heirloom_last_successful_drill_timestamp",
            "When the source's newest passing restore drill ended, in seconds since the epoch",
            Unit::Seconds,
            last_passed_drill.clone(),
        );
        let stream_restarts = Family::<SourceLabels, Counter>::default();
        registry.register(
            "heirloom_stream_restarts",
            "Times the source's log streamer ended and was started again",
            stream_restarts.clone(),
        );
        registry.register(
            "heirloom_build",
            "The agent's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(Live {
            streams,
            store,
            clock,
        }));
        Self {
            registry,
            runs,
            running,
            last_success,
            last_failure,
            durations,
            first_point,
            last_point,
            last_backup,
            backups,
            last_drill,
            last_drill_passed,
            last_passed_drill,
            stream_restarts,
        }
    }

    /// Every job the agent schedules shows from the start, with no runs yet.
    pub fn declare(&self, source: &str, job: Job) {
        let labels = job_labels(source, job);
        self.running.get_or_create(&labels).set(0);
        let _ = self.durations.get_or_create(&labels);
        for outcome in [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Skipped,
            Outcome::Cancelled,
        ] {
            let _ = self
                .runs
                .get_or_create(&outcome_labels(source, job, outcome));
        }
    }

    pub fn started(&self, source: &str, job: Job) {
        self.running.get_or_create(&job_labels(source, job)).set(1);
    }

    /// A run that started ended at `at` after `took`.
    pub fn ended(
        &self,
        source: &str,
        job: Job,
        outcome: Outcome,
        at: DateTime<Utc>,
        took: Duration,
    ) {
        let labels = job_labels(source, job);
        self.running.get_or_create(&labels).set(0);
        self.runs
            .get_or_create(&outcome_labels(source, job, outcome))
            .inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let seconds = epoch_seconds(at);
        match outcome {
            Outcome::Success => self.last_success.get_or_create(&labels).set(seconds),
            _ => self.last_failure.get_or_create(&labels).set(seconds),
        };
    }

    /// A run that was due did not start.
    pub fn skipped(&self, source: &str, job: Job) {
        self.runs
            .get_or_create(&outcome_labels(source, job, Outcome::Skipped))
            .inc();
    }

    /// What the repository holds of `source` now.
    pub fn recoverability(&self, source: &str, r: &Recoverability) {
        let labels = SourceLabels {
            source: source.to_owned(),
        };
        self.backups.get_or_create(&labels).set(r.backups as i64);
        match r.last_drill {
            Some((_, passed)) => {
                self.last_drill_passed
                    .get_or_create(&labels)
                    .set(i64::from(passed));
            }
            None => {
                self.last_drill_passed.remove(&labels);
            }
        }
        for (family, at) in [
            (&self.first_point, r.first_point),
            (&self.last_point, r.last_point),
            (&self.last_backup, r.last_backup),
            (&self.last_drill, r.last_drill.map(|(t, _)| t)),
            (&self.last_passed_drill, r.last_passed_drill),
        ] {
            match at {
                Some(at) => {
                    family.get_or_create(&labels).set(epoch_seconds(at));
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }

    pub fn stream_restarted(&self, source: &str) {
        self.stream_restarts
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    /// The text a scrape gets (OpenMetrics 1.0).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn job_labels(source: &str, job: Job) -> JobLabels {
    JobLabels {
        source: source.to_owned(),
        job: job.name().to_owned(),
    }
}

fn outcome_labels(source: &str, job: Job, outcome: Outcome) -> OutcomeLabels {
    OutcomeLabels {
        source: source.to_owned(),
        job: job.name().to_owned(),
        outcome: outcome.name().to_owned(),
    }
}

fn epoch_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// What is read when the metrics are: the streamers' state and the store's counts.
#[derive(Debug)]
struct Live {
    streams: Vec<(String, StreamStatus)>,
    store: Option<Arc<StoreMeter>>,
    clock: Clock,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.clock.now();
        let gauge = ConstGauge::new(0i64);
        let float = ConstGauge::new(0f64);
        if !self.streams.is_empty() {
            let mut up = encoder.encode_descriptor(
                "heirloom_stream_up",
                "1 while the source's log streamer is receiving from the server.",
                None,
                gauge.metric_type(),
            )?;
            for (source, status) in &self.streams {
                let labels = SourceLabels {
                    source: source.clone(),
                };
                ConstGauge::new(i64::from(status.is_connected()))
                    .encode(up.encode_family(&labels)?)?;
            }
            let seconds = Unit::Seconds;
            let mut lag = encoder.encode_descriptor(
                "heirloom_stream_lag",
                "How far the stored log is behind now: the time since everything the server had sent was last durable in the store (absent before the first flush).",
                Some(&seconds),
                float.metric_type(),
            )?;
            for (source, status) in &self.streams {
                if let Some(behind) = status.lag(now) {
                    let labels = SourceLabels {
                        source: source.clone(),
                    };
                    ConstGauge::new(behind.num_milliseconds() as f64 / 1000.0)
                        .encode(lag.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(meter) = &self.store {
            let counts = meter.counts();
            let counter = ConstCounter::new(0u64);
            for (name, help, values) in [
                (
                    "heirloom_store_requests",
                    "Requests to the object store, by operation.",
                    counts.requests,
                ),
                (
                    "heirloom_store_request_failures",
                    "Requests to the object store that failed after the client's own retries (a missing object is an answer, not a failure), by operation.",
                    counts.failures,
                ),
            ] {
                let mut family =
                    encoder.encode_descriptor(name, help, None, counter.metric_type())?;
                for (op, value) in OPERATIONS.iter().zip(values) {
                    let labels = OperationLabels {
                        operation: (*op).to_owned(),
                    };
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
            let bytes = Unit::Bytes;
            let written = encoder.encode_descriptor(
                "heirloom_store_written",
                "Bytes of objects created in the store (uploaded).",
                Some(&bytes),
                counter.metric_type(),
            )?;
            ConstCounter::new(counts.written).encode(written)?;
            let read = encoder.encode_descriptor(
                "heirloom_store_read",
                "Bytes read from the store.",
                Some(&bytes),
                counter.metric_type(),
            )?;
            ConstCounter::new(counts.read).encode(read)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
