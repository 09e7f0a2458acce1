//! Progress of long work as the library reports it: bytes done, to whoever listens.
//!
//! The library never draws: the command line turns this into bars on a terminal, the agent will
//! turn it into metrics, and tests pass [`Progress::none`].

use std::fmt;
use std::sync::Arc;

/// Something that wants to know how far work has come.
pub trait ProgressSink: Send + Sync + 'static {
    /// Work named `what` begins; `total` bytes of it when that is known.
    fn begin(&self, _what: &str, _total: Option<u64>) {}
    /// `bytes` more are done.
    fn advance(&self, bytes: u64);
    /// The work is over (done or failed).
    fn finish(&self) {}
}

/// A cheap, clonable handle on a [`ProgressSink`], or on nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn ProgressSink>>);

impl Progress {
    /// Reports to nobody.
    pub fn none() -> Self {
        Self(None)
    }

    pub fn new(sink: impl ProgressSink) -> Self {
        Self(Some(Arc::new(sink)))
    }

    /// Work named `what` begins; `total` bytes of it when that is known.
    pub fn begin(&self, what: &str, total: Option<u64>) {
        if let Some(sink) = &self.0 {
            sink.begin(what, total);
        }
    }

    /// `bytes` more are done.
    pub fn inc(&self, bytes: u64) {
        if let Some(sink) = &self.0 {
            sink.advance(bytes);
        }
    }

    /// The work is over.
    pub fn finish(&self) {
        if let Some(sink) = &self.0 {
            sink.finish();
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(reported)"
        } else {
            "Progress(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Count(Arc<AtomicU64>);

    impl ProgressSink for Count {
        fn advance(&self, bytes: u64) {
            self.0.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[test]
    fn clones_report_to_the_same_sink_and_none_to_nobody() {
        let done = Arc::new(AtomicU64::new(0));
        let p = Progress::new(Count(done.clone()));
        p.inc(3);
        p.clone().inc(4);
        Progress::none().inc(100);
        assert_eq!(done.load(Ordering::Relaxed), 7);
    }
}
