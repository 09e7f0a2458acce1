//! `sources.NAME.schedules` in `heirloom.yaml`: which jobs the agent runs for a source, and when.
//!
//! ```yaml
//! sources:
//!   prod-pg:
//!     kind: postgres
//!     schedules:
//!       zone: Europe/Berlin                    # the zone of this source's schedules (UTC by default)
//!       backup: "0 2 * * *"                    # a cron expression alone
//!       prune: { cron: "30 3 * * *", jitter: 10m, deadline: 2h }
//!       verify: { cron: "0 4 * * *", read_data_parts: 7 }   # a rolling seventh of the data each run
//!       audit: { cron: "0 6 * * 1", zone: UTC }
//!       drill: { cron: "0 5 * * 0", random_in_window: true }
//!       stream: { flush_interval: 5s }        # or `true`: the log streamer, kept running
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::schedule::Cron;

/// A job the agent schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Backup,
    Prune,
    Verify,
    Audit,
    Drill,
}

impl Job {
    pub const ALL: [Job; 5] = [Job::Backup, Job::Prune, Job::Verify, Job::Audit, Job::Drill];

    pub fn name(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::Prune => "prune",
            Job::Verify => "verify",
            Job::Audit => "audit",
            Job::Drill => "drill",
        }
    }

    /// How long a run may take when the schedule says nothing.
    pub fn default_deadline(self) -> Duration {
        Duration::from_secs(match self {
            Job::Backup | Job::Verify => 12 * 3600,
            Job::Prune | Job::Drill => 6 * 3600,
            Job::Audit => 3600,
        })
    }
}

/// One job's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSchedule {
    pub cron: Cron,
    /// Every run is delayed by a stable offset below this (0: none).
    pub jitter: Duration,
    /// A run still going after this long is cancelled.
    pub deadline: Duration,
    /// `verify`: read back the data in this many parts, one part per run, in turn.
    pub read_data_parts: Option<u32>,
    /// `drill`: restore an instant drawn from the windows rather than the latest state.
    pub random_in_window: bool,
}

/// A source's schedules, by job, and its log streamer if the agent keeps one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedules {
    pub jobs: BTreeMap<Job, JobSchedule>,
    pub stream: Option<StreamSettings>,
}

/// `stream: true`, or a map of how: the agent keeps the source's log streamer running.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamSettings {
    pub flush_interval: Option<Duration>,
    pub heartbeat: Option<Duration>,
    pub replica_server_id: Option<u32>,
    pub spool: Option<std::path::PathBuf>,
    pub slot: Option<String>,
}

impl StreamSettings {
    /// The request the streamer runs with.
    pub fn request(&self) -> crate::engine::StreamRequest {
        crate::engine::StreamRequest {
            flush_interval: self.flush_interval,
            heartbeat: self.heartbeat,
            replica_server_id: self.replica_server_id,
            spool: self.spool.clone(),
            slot: self.slot.clone(),
            ..Default::default()
        }
    }
}

const STREAM_FIELDS: [&str; 5] = [
    "flush_interval",
    "heartbeat",
    "replica_server_id",
    "spool",
    "slot",
];

fn parse_stream(value: &Value) -> Result<Option<StreamSettings>, (String, String)> {
    let map = match value {
        Value::Bool(false) => return Ok(None),
        Value::Bool(true) => return Ok(Some(StreamSettings::default())),
        Value::Object(map) => map,
        _ => {
            return Err((
                String::new(),
                format!(
                    "true, or a map of how to stream ({})",
                    STREAM_FIELDS.join(", ")
                ),
            ))
        }
    };
    if let Some(unknown) = map.keys().find(|k| !STREAM_FIELDS.contains(&k.as_str())) {
        return Err((
            unknown.clone(),
            format!("unknown field; a stream has {}", STREAM_FIELDS.join(", ")),
        ));
    }
    let text = |field: &str| -> Result<Option<&str>, (String, String)> {
        match map.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .filter(|t| !t.is_empty())
                .map(Some)
                .ok_or_else(|| (field.to_owned(), "a non-empty string".to_owned())),
        }
    };
    let duration = |field: &str| -> Result<Option<Duration>, (String, String)> {
        text(field)?
            .map(|t| crate::store::parse_duration(t).map_err(|why| (field.to_owned(), why)))
            .transpose()
    };
    let replica_server_id = match map.get("replica_server_id") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    (
                        "replica_server_id".to_owned(),
                        "a server id from 1 to 4294967295".to_owned(),
                    )
                })?,
        ),
    };
    Ok(Some(StreamSettings {
        flush_interval: duration("flush_interval")?,
        heartbeat: duration("heartbeat")?,
        replica_server_id,
        spool: text("spool")?.map(std::path::PathBuf::from),
        slot: text("slot")?.map(str::to_owned),
    }))
}

/// Reads `schedules` of a source; an error is `(field under schedules, why)`.
pub fn parse_schedules(value: &Value) -> Result<Schedules, (String, String)> {
    let map = value.as_object().ok_or_else(|| {
        (
            String::new(),
            "a map of jobs (backup, prune, verify, audit, drill, stream) to their schedules"
                .to_owned(),
        )
    })?;
    let zone = match map.get("zone") {
        None => chrono_tz::UTC,
        Some(z) => parse_zone(z).map_err(|why| ("zone".to_owned(), why))?,
    };
    let mut jobs = BTreeMap::new();
    let mut stream = None;
    for (key, value) in map {
        if key == "zone" {
            continue;
        }
        if key == "stream" {
            stream = parse_stream(value).map_err(prefixed(key))?;
            continue;
        }
        let Some(job) = Job::ALL.into_iter().find(|j| j.name() == key) else {
            return Err((
                key.clone(),
                "not a job: the jobs are backup, prune, verify, audit and drill (and stream)"
                    .into(),
            ));
        };
        let schedule = parse_job(job, value, zone).map_err(prefixed(key))?;
        jobs.insert(job, schedule);
    }
    Ok(Schedules { jobs, stream })
}

/// An error of a field under `key`, named from `key` on.
fn prefixed(key: &str) -> impl Fn((String, String)) -> (String, String) + '_ {
    move |(field, why)| {
        let at = if field.is_empty() {
            key.to_owned()
        } else {
            format!("{key}.{field}")
        };
        (at, why)
    }
}

fn parse_zone(value: &Value) -> Result<chrono_tz::Tz, String> {
    let name = value
        .as_str()
        .ok_or("a time zone's name, such as Europe/Berlin")?;
    name.parse().map_err(|_| {
        format!("{name:?} is not a time zone: use an IANA name such as UTC or Europe/Berlin")
    })
}

fn parse_job(
    job: Job,
    value: &Value,
    zone: chrono_tz::Tz,
) -> Result<JobSchedule, (String, String)> {
    let cron_at = |text: &str, zone| Cron::parse(text, zone).map_err(|why| (String::new(), why));
    if let Some(text) = value.as_str() {
        return Ok(JobSchedule {
            cron: cron_at(text, zone)?,
            jitter: Duration::ZERO,
            deadline: job.default_deadline(),
            read_data_parts: None,
            random_in_window: false,
        });
    }
    let map = value.as_object().ok_or_else(|| {
        (
            String::new(),
            "a cron expression, or a map with cron (and zone, jitter, deadline)".to_owned(),
        )
    })?;
    let allowed: &[&str] = match job {
        Job::Verify => &["cron", "zone", "jitter", "deadline", "read_data_parts"],
        Job::Drill => &["cron", "zone", "jitter", "deadline", "random_in_window"],
        _ => &["cron", "zone", "jitter", "deadline"],
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err((
            unknown.clone(),
            format!(
                "unknown field; a {} schedule has {}",
                job.name(),
                allowed.join(", ")
            ),
        ));
    }
    let zone = match map.get("zone") {
        None => zone,
        Some(z) => parse_zone(z).map_err(|why| ("zone".to_owned(), why))?,
    };
    let text = map.get("cron").and_then(Value::as_str).ok_or_else(|| {
        (
            "cron".to_owned(),
            "missing: a cron expression such as \"0 2 * * *\"".to_owned(),
        )
    })?;
    let cron = Cron::parse(text, zone).map_err(|why| ("cron".to_owned(), why))?;
    let duration = |field: &str| -> Result<Option<Duration>, (String, String)> {
        match map.get(field) {
            None => Ok(None),
            Some(v) => {
                let text = v
                    .as_str()
                    .ok_or_else(|| (field.to_owned(), "a duration such as 10m or 2h".to_owned()))?;
                crate::store::parse_duration(text)
                    .map(Some)
                    .map_err(|why| (field.to_owned(), why))
            }
        }
    };
    let jitter = duration("jitter")?.unwrap_or(Duration::ZERO);
    let deadline = duration("deadline")?.unwrap_or(job.default_deadline());
    if deadline.is_zero() {
        return Err(("deadline".into(), "0 leaves no time to run".into()));
    }
    let read_data_parts = match map.get("read_data_parts") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=10_000).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    (
                        "read_data_parts".to_owned(),
                        "a whole number from 1 (all the data every run) to 10000".to_owned(),
                    )
                })?,
        ),
    };
    let random_in_window = match map.get("random_in_window") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ("random_in_window".to_owned(), "true or false".to_owned()))?,
    };
    Ok(JobSchedule {
        cron,
        jitter,
        deadline,
        read_data_parts,
        random_in_window,
    })
}
