//! What a running log streamer tells whoever watches it (the agent's metrics and readiness): how
//! far the store is complete, and whether the server is on the line.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A streamer's state, shared by every clone; a streamer nobody watches updates it for nobody.
#[derive(Debug, Clone, Default)]
pub struct StreamStatus(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Milliseconds since the epoch; 0 until the first flush.
    stored_through: AtomicI64,
    connected: AtomicBool,
}

impl StreamStatus {
    /// Everything the server had sent before `at` is durable in the store (a transaction still
    /// open at `at` excepted: it is not data yet).
    pub fn stored_through(&self, at: DateTime<Utc>) {
        self.0
            .stored_through
            .fetch_max(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// Whether the streamer is receiving from the server now.
    pub fn set_connected(&self, connected: bool) {
        self.0.connected.store(connected, Ordering::Relaxed);
    }

    /// The last instant the store is known complete to; `None` before the first flush.
    pub fn complete_to(&self) -> Option<DateTime<Utc>> {
        match self.0.stored_through.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.0.connected.load(Ordering::Relaxed)
    }

    /// How far the store is behind `now`: the data a crash at `now` could lose at most.
    pub fn lag(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.complete_to()
            .map(|t| (now - t).max(chrono::Duration::zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_complete_to_the_latest_flush_and_never_goes_back() {
        let status = StreamStatus::default();
        let t = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(status.lag(t), None);
        let watcher = status.clone();
        status.stored_through(t - chrono::Duration::seconds(4));
        status.stored_through(t - chrono::Duration::seconds(9));
        assert_eq!(watcher.lag(t), Some(chrono::Duration::seconds(4)));
        assert!(!watcher.is_connected());
        status.set_connected(true);
        assert!(watcher.is_connected());
    }
}
