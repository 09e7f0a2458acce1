//! What every job runs with, and how a job fails: one context for the command line, the agent and
//! tests alike.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::pipeline::Concurrency;
use crate::progress::Progress;
use crate::repo::{RepoError, Repository};

/// The open repository, how much to do at once, where progress goes, what time it is, and when
/// to stop.
#[derive(Clone)]
pub struct JobContext {
    pub repo: Repository,
    pub concurrency: Concurrency,
    pub progress: Progress,
    pub clock: Clock,
    pub shutdown: Shutdown,
}

impl JobContext {
    /// A context on the system clock that is never asked to stop and reports progress to nobody.
    pub fn new(repo: Repository, concurrency: Concurrency) -> Self {
        Self {
            repo,
            concurrency,
            progress: Progress::none(),
            clock: Clock::system(),
            shutdown: Shutdown::never(),
        }
    }

    /// The same context, reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The same context, reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same context, stopping long jobs when `shutdown` is signalled.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// What time it is, as a job sees it: the system's, or one a test sets.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that always says `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Arc::new(move || at))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now().to_rfc3339())
    }
}

/// A request to stop, seen by every clone: long jobs (streaming) end cleanly when it comes.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Signals a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A shutdown and the trigger that signals it.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A shutdown that never comes.
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // The sender leaves: `signalled` then waits forever, as it should.
        drop(tx);
        Self(rx)
    }

    /// A shutdown that comes when `signal` resolves (SIGTERM, a test's timer).
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let (trigger, shutdown) = Self::new();
        tokio::spawn(async move {
            signal.await;
            trigger.signal();
        });
        shutdown
    }

    pub fn is_signalled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the shutdown is signalled; never when it cannot be.
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            if rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl ShutdownTrigger {
    pub fn signal(&self) {
        let _ = self.0.send(true);
    }
}

/// How a job fails, classified for exit codes and the agent's metrics.
#[derive(Debug)]
pub enum JobError {
    Repo(RepoError),
    /// The config or the request asks for something that cannot be (exit code 2).
    Usage(String),
    /// An engine's own failure.
    Engine(Box<dyn EngineFailure>),
}

impl From<RepoError> for JobError {
    fn from(e: RepoError) -> Self {
        JobError::Repo(e)
    }
}

/// Says what the error inside says, as `#[error(transparent)]` would.
impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Repo(e) => fmt::Display::fmt(e, f),
            JobError::Usage(why) => f.write_str(why),
            JobError::Engine(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JobError::Repo(e) => e.source(),
            JobError::Usage(_) => None,
            JobError::Engine(e) => e.source(),
        }
    }
}

/// An engine's error, with what the caller must know of it.
pub trait EngineFailure: std::error::Error + Send + Sync + 'static {
    /// Stored data is damaged or missing (exit code 3).
    fn is_integrity(&self) -> bool;
    /// A misuse rather than a failure (exit code 2).
    fn is_usage(&self) -> bool {
        false
    }
}

impl JobError {
    /// True when stored data is damaged or missing (exit code 3).
    pub fn is_integrity(&self) -> bool {
        match self {
            JobError::Repo(e) => e.is_integrity(),
            JobError::Engine(e) => e.is_integrity(),
            JobError::Usage(_) => false,
        }
    }

    /// True for a misuse rather than a failure (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            JobError::Usage(_) | JobError::Repo(RepoError::Invalid(_)) => true,
            JobError::Engine(e) => e.is_usage(),
            JobError::Repo(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shutdown_reaches_every_clone_and_never_never_comes() {
        let (trigger, shutdown) = Shutdown::new();
        let copy = shutdown.clone();
        let waiting = tokio::spawn(copy.signalled());
        assert!(!shutdown.is_signalled());
        trigger.signal();
        waiting.await.unwrap();
        assert!(shutdown.is_signalled());
        let never = Shutdown::never();
        let timed = tokio::time::timeout(std::time::Duration::from_millis(50), never.signalled());
        assert!(timed.await.is_err());
    }

    #[test]
    fn a_fixed_clock_says_its_time() {
        let t = DateTime::parse_from_rfc3339("2029-02-28T23:59:59Z")
            .unwrap()
            .to_utc();
        assert_eq!(Clock::fixed(t).now(), t);
    }
}
