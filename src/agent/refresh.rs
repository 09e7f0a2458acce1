//! Reading again, in the background, what each monitored source can be restored to, for the
//! metrics. Reads of one source are serialized, each applied before the next begins, so the last
//! applied is the last read: a slow read begun before a run ended cannot overwrite what a read
//! begun after it found.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::warn;

use super::metrics::AgentMetrics;
use crate::config::Config;
use crate::context::JobContext;
use crate::jobs;
use crate::repo::source::SourceName;

/// Starts the reads of the monitored sources.
pub struct Refresher {
    ctx: JobContext,
    config: Arc<Config>,
    metrics: Arc<AgentMetrics>,
    /// One lock per monitored source, held from the read to its metrics.
    sources: HashMap<SourceName, Arc<Mutex<()>>>,
}

impl Refresher {
    pub fn new(
        ctx: JobContext,
        config: Arc<Config>,
        metrics: Arc<AgentMetrics>,
        monitored: &[SourceName],
    ) -> Self {
        let sources = monitored
            .iter()
            .map(|s| (s.clone(), Arc::new(Mutex::new(()))))
            .collect();
        Refresher {
            ctx,
            config,
            metrics,
            sources,
        }
    }

    /// Reads every monitored source again.
    pub fn all(&self) {
        for source in self.sources.keys() {
            self.one(source);
        }
    }

    /// Reads `source` again, if it is monitored.
    pub fn one(&self, source: &SourceName) {
        let Some(lock) = self.sources.get(source) else {
            return;
        };
        let (ctx, config, metrics, source) = (
            self.ctx.clone(),
            self.config.clone(),
            self.metrics.clone(),
            source.clone(),
        );
        let lock = lock.clone();
        tokio::spawn(async move {
            let _turn = lock.lock().await;
            match jobs::recoverability(&ctx, &config, &source).await {
                Ok(r) => metrics.recoverability(source.as_str(), &r),
                Err(e) => warn!(
                    source = %source,
                    error = %e,
                    "cannot read what the source can be restored to"
                ),
            }
        });
    }
}
