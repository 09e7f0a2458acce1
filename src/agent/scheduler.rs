//! What the agent starts and stops, decided from the schedules, what is running and an instant:
//! a state machine without a clock or tasks, which the agent's loop drives and tests drive with
//! any instants they like.
//!
//! - A job that falls due while its previous run is still going is not started a second time;
//!   the run that fell due is skipped (and said so).
//! - Runs missed while the loop was not looking (the machine slept) start once, for the newest.
//! - Prunes of one repository never run at once, even for different sources: a prune that falls
//!   due while another runs waits for it, then starts.
//! - A run still going at its deadline is to be cancelled.
//! - A verify with `read_data_parts: T` reads part 1 of T, then 2, … then 1 again.

use chrono::{DateTime, Duration, Utc};

use super::config::{Job, JobSchedule};
use super::schedule::jitter_offset;
use crate::config::Config;
use crate::repo::source::SourceName;

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Start(Run),
    /// Due while the previous run goes on: not started.
    Skip {
        source: SourceName,
        job: Job,
        scheduled: DateTime<Utc>,
        running_since: DateTime<Utc>,
    },
    /// Past its deadline: stop it.
    Cancel {
        source: SourceName,
        job: Job,
        started: DateTime<Utc>,
        deadline: DateTime<Utc>,
    },
}

/// A run to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub source: SourceName,
    pub job: Job,
    /// The instant it was due (its cron time plus the source's jitter offset).
    pub scheduled: DateTime<Utc>,
    /// When it must have finished.
    pub deadline: DateTime<Utc>,
    /// `verify`: the part of the data to read back, `(n, of)`.
    pub part: Option<(u32, u32)>,
    /// `drill`: an instant drawn from the windows rather than the latest state.
    pub random_in_window: bool,
}

struct Entry {
    source: SourceName,
    job: Job,
    schedule: JobSchedule,
    offset: Duration,
    /// Runs due up to here have been dealt with.
    checked: DateTime<Utc>,
    /// Due, and waiting for another prune of the repository to end.
    waiting: Option<DateTime<Utc>>,
    running: Option<(DateTime<Utc>, DateTime<Utc>)>,
    cancelled: bool,
    next_part: u32,
}

/// Every scheduled job of a config, and what is running.
pub struct Scheduler {
    entries: Vec<Entry>,
}

impl Scheduler {
    /// The schedules of `config`, as of `now`: runs due before it are history, not missed.
    pub fn new(config: &Config, now: DateTime<Utc>) -> Self {
        let entries = config
            .schedules
            .iter()
            .flat_map(|(source, s)| {
                s.jobs.iter().map(move |(job, schedule)| Entry {
                    source: source.clone(),
                    job: *job,
                    offset: jitter_offset(source.as_str(), job.name(), schedule.jitter),
                    schedule: schedule.clone(),
                    checked: now,
                    waiting: None,
                    running: None,
                    cancelled: false,
                    next_part: 1,
                })
            })
            .collect();
        Self { entries }
    }

    /// How many jobs are scheduled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What to start and stop at `now`. Each run started is running until [`Self::finished`].
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let mut out = Vec::new();
        for e in &mut self.entries {
            if let Some((started, deadline)) = e.running {
                if now >= deadline && !e.cancelled {
                    e.cancelled = true;
                    out.push(Decision::Cancel {
                        source: e.source.clone(),
                        job: e.job,
                        started,
                        deadline,
                    });
                }
            }
            if let Some(due) = e
                .schedule
                .cron
                .due(e.checked - e.offset, now - e.offset)
                .map(|t| t + e.offset)
            {
                match e.running {
                    Some((since, _)) => out.push(Decision::Skip {
                        source: e.source.clone(),
                        job: e.job,
                        scheduled: due,
                        running_since: since,
                    }),
                    None => e.waiting = Some(due),
                }
            }
            e.checked = now;
        }
        let mut prune_running = self
            .entries
            .iter()
            .any(|e| e.job == Job::Prune && e.running.is_some());
        for e in &mut self.entries {
            let Some(scheduled) = e.waiting else {
                continue;
            };
            if e.job == Job::Prune {
                if prune_running {
                    continue;
                }
                prune_running = true;
            }
            e.waiting = None;
            let deadline =
                now + Duration::from_std(e.schedule.deadline).unwrap_or_else(|_| Duration::days(1));
            e.running = Some((now, deadline));
            e.cancelled = false;
            let part = e
                .schedule
                .read_data_parts
                .filter(|_| e.job == Job::Verify)
                .map(|of| {
                    let n = e.next_part;
                    e.next_part = if n >= of { 1 } else { n + 1 };
                    (n, of)
                });
            out.push(Decision::Start(Run {
                source: e.source.clone(),
                job: e.job,
                scheduled,
                deadline,
                part,
                random_in_window: e.schedule.random_in_window,
            }));
        }
        out
    }

    /// The run of `job` of `source` has ended (finished, failed or cancelled).
    pub fn finished(&mut self, source: &SourceName, job: Job) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| &e.source == source && e.job == job)
        {
            e.running = None;
            e.cancelled = false;
        }
    }

    /// When something next falls due or runs out of time, after `now`: when the loop should
    /// look again.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .iter()
            .flat_map(|e| {
                let due = e
                    .schedule
                    .cron
                    .next_after(now.max(e.checked) - e.offset)
                    .map(|t| t + e.offset);
                let deadline = e.running.filter(|_| !e.cancelled).map(|(_, d)| d);
                due.into_iter().chain(deadline)
            })
            .min()
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
