//! The agent keeps each source's log streamer running: a streamer that ends or fails is started
//! again after a pause that doubles each time up to a cap, and falls back to the first pause once
//! a streamer has run healthily for a while. On shutdown the streamer stores what it holds and ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::config::StreamSettings;
use super::metrics::AgentMetrics;
use crate::config::Config;
use crate::context::JobContext;
use crate::engine::StreamStatus;
use crate::jobs;
use crate::repo::source::SourceName;

/// How long to wait before starting a streamer again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure, and after a healthy run.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
    /// A streamer that ran this long was healthy: the pause starts again from `first`.
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(300),
            healthy_after: Duration::from_secs(600),
        }
    }
}

/// The pauses of one streamer, run after run.
#[derive(Debug, Clone)]
pub struct Pauses {
    policy: Backoff,
    next: Duration,
}

impl Pauses {
    pub fn new(policy: Backoff) -> Self {
        Self {
            policy,
            next: policy.first,
        }
    }

    /// The pause before the next start, after a run that lasted `ran`.
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= self.policy.healthy_after {
            self.next = self.policy.first;
        }
        let pause = self.next.min(self.policy.max);
        self.next = (self.next * 2).min(self.policy.max);
        pause
    }
}

/// Runs the streamer of `source` until `ctx.shutdown`, starting it again whenever it ends;
/// returns how many times it was restarted.
pub async fn keep_streaming(
    ctx: JobContext,
    config: Arc<Config>,
    source: SourceName,
    settings: StreamSettings,
    status: StreamStatus,
    metrics: Arc<AgentMetrics>,
    backoff: Backoff,
) -> u64 {
    let mut pauses = Pauses::new(backoff);
    let mut restarts = 0;
    let mut request = settings.request();
    request.status = status.clone();
    loop {
        info!(event = "stream started", source = %source);
        let began = Instant::now();
        let result = jobs::stream_source(&ctx, &config, &source, &request).await;
        status.set_connected(false);
        if ctx.shutdown.is_signalled() {
            match result {
                Ok(report) => info!(
                    event = "stream stopped",
                    source = %source,
                    segments = report.segments,
                    snapshots = report.snapshots,
                    "what it held is stored"
                ),
                Err(e) => error!(event = "stream stopped", source = %source, error = %e),
            }
            return restarts;
        }
        let pause = pauses.after(began.elapsed());
        match result {
            Ok(_) => warn!(
                event = "stream ended",
                source = %source,
                retry_in_seconds = pause.as_secs_f64(),
                "the streamer ended by itself; starting it again"
            ),
            Err(e) => error!(
                event = "stream failed",
                source = %source,
                error = %e,
                retry_in_seconds = pause.as_secs_f64(),
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.shutdown.signalled() => return restarts,
        }
        restarts += 1;
        metrics.stream_restarted(source.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_the_cap_and_start_over_after_a_healthy_run() {
        let mut pauses = Pauses::new(Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(60),
        });
        let quick = Duration::from_secs(2);
        let seen: Vec<u64> = (0..6).map(|_| pauses.after(quick).as_secs()).collect();
        assert_eq!(seen, [1, 2, 4, 8, 10, 10]);
        assert_eq!(pauses.after(Duration::from_secs(60)).as_secs(), 1);
        assert_eq!(pauses.after(quick).as_secs(), 2);
    }
}
