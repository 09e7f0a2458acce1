//! The scheduled agent: which jobs run when, per source (`sources.NAME.schedules`), and what
//! `schedule` shows of it.

pub mod config;
pub mod http;
pub mod metrics;
pub mod refresh;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod streams;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use config::Job;
use schedule::jitter_offset;

/// The next runs of one job of one source.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedJob {
    pub source: String,
    pub job: Job,
    pub cron: String,
    pub zone: String,
    pub jitter_seconds: u64,
    /// This source's stable share of the jitter: every run is this much after its cron time.
    pub offset_seconds: i64,
    pub deadline_seconds: u64,
    pub runs: Vec<PlannedRun>,
}

/// One run: when, in UTC and on the schedule's wall clock.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRun {
    pub at: DateTime<Utc>,
    /// RFC 3339 with the zone's offset.
    pub local: String,
}

/// The next `count` runs after `after` of every job of every source (or of `source`), sorted by
/// source and job.
pub fn upcoming(
    config: &Config,
    source: Option<&str>,
    after: DateTime<Utc>,
    count: usize,
) -> Vec<PlannedJob> {
    let mut out = Vec::new();
    for (name, schedules) in &config.schedules {
        if source.is_some_and(|s| s != name.as_str()) {
            continue;
        }
        for (job, s) in &schedules.jobs {
            let offset = jitter_offset(name.as_str(), job.name(), s.jitter);
            // A run delayed by its offset: the cron times from `after - offset` on.
            let runs = s
                .cron
                .upcoming(after - offset, count)
                .into_iter()
                .map(|t| {
                    let at = t + offset;
                    PlannedRun {
                        at,
                        local: at
                            .with_timezone(&s.cron.zone())
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                    }
                })
                .collect();
            out.push(PlannedJob {
                source: name.to_string(),
                job: *job,
                cron: s.cron.text().to_owned(),
                zone: s.cron.zone().name().to_owned(),
                jitter_seconds: s.jitter.as_secs(),
                offset_seconds: offset.num_seconds(),
                deadline_seconds: s.deadline.as_secs(),
                runs,
            });
        }
    }
    out
}
