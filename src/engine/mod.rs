//! Database engines: how a database is backed up into the repository and rebuilt from it.
//!
//! An engine knows its database and nothing of the command line; it talks to the repository only
//! through `repo` and `pipeline`. Every engine is a folder here that offers the same things: the
//! config of its sources and targets, and a [`Source`] opened from it that backs up, streams and
//! pushes its log, and plans restores ([`PlannedRestore`]) into the targets it takes. Jobs reach an
//! engine only through these, so a new engine is a new folder and one line in [`engines!`].

pub mod drill;
pub mod mysql;
pub mod postgres;
pub mod private_dir;
pub mod process;
pub mod retention;
mod stream_status;
mod url_query;

pub use stream_status::StreamStatus;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::context::{JobContext, JobError};
use crate::pipeline::backup::BackupSummary;
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::source::SourceName;
use crate::restore::point::RestorePoint;
use crate::restore::summary::PlanSummary;
use crate::restore::target::{Destination, RestoreTarget};

/// What a configured source can do.
#[async_trait]
pub trait Source: Send + Sync {
    fn name(&self) -> &SourceName;

    /// The engine's name, as `kind:` says it in the config.
    fn engine(&self) -> &'static str;

    /// A base backup, in the mode the config (and the request) say.
    async fn backup(
        &self,
        ctx: &JobContext,
        request: &BackupRequest,
    ) -> Result<BackupSummary, JobError>;

    /// Follows the source's log into the repository until `ctx.shutdown` is signalled (or, with
    /// `request.once`, until the end of what the server has).
    async fn stream(
        &self,
        ctx: &JobContext,
        request: &StreamRequest,
    ) -> Result<LogReport, JobError>;

    /// Stores log files the server has closed.
    async fn push(&self, ctx: &JobContext, request: &PushRequest) -> Result<LogReport, JobError>;

    /// What the repository holds of the source's log, as unbroken runs; `manifests` are the
    /// source's backups, already read by the caller (they date the runs where the log does not).
    async fn coverage(
        &self,
        ctx: &JobContext,
        manifests: &[&Manifest],
    ) -> Result<LogCoverage, JobError>;

    /// Which of the source's log objects the backups retention keeps need (`keep`), and which
    /// none does; nothing is deleted here. `manifests` are the source's backups, kept or not.
    async fn log_retention(
        &self,
        ctx: &JobContext,
        manifests: &[&Manifest],
        keep: &retention::LogKeep,
    ) -> Result<retention::LogRetention, JobError>;

    /// Reads what a restore of this source to `point` into `target` needs, and decides it: which
    /// backup, which log, every gap. Nothing is written.
    async fn plan_restore(
        &self,
        ctx: &JobContext,
        point: &RestorePoint,
        target: &RestoreTarget,
        options: &RestoreOptions,
    ) -> Result<Box<dyn PlannedRestore>, JobError>;

    /// Restores `request.point` into a server of the drill's own (or `request.into`), starts it
    /// and checks its data. A step that fails ends the drill, said in the outcome, never as an
    /// error: a failed drill is a result to record.
    async fn drill(&self, ctx: &JobContext, request: &drill::DrillRequest) -> drill::DrillOutcome;
}

/// A restore planned and not yet begun.
#[async_trait]
pub trait PlannedRestore: Send + Sync {
    fn summary(&self) -> &PlanSummary;

    /// Carries the plan out; refused, before anything is written, when the plan is incomplete.
    async fn run(self: Box<Self>, ctx: &JobContext) -> Result<RestoreReport, JobError>;
}

/// How to back a source up, beyond what the config says of it.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub labels: BTreeMap<String, String>,
    /// PostgreSQL: a logical backup (`pg_dump`) whatever the source's `mode`.
    pub logical: bool,
    /// PostgreSQL: how long a backup waits for its last WAL segment in the repository.
    pub archive_timeout: Duration,
}

impl Default for BackupRequest {
    fn default() -> Self {
        Self {
            labels: BTreeMap::new(),
            logical: false,
            archive_timeout: DEFAULT_ARCHIVE_TIMEOUT,
        }
    }
}

/// The PostgreSQL archive's default wait for a backup's last WAL segment, as pgBackRest's.
pub const DEFAULT_ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// How to stream, beyond what the config says of the source. `None` takes each engine's default.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// Store what has arrived at least this often: the window of data a crash can lose.
    pub flush_interval: Option<Duration>,
    /// MySQL: store as soon as this many bytes of whole transactions wait.
    pub flush_bytes: Option<usize>,
    /// MySQL: the heartbeat asked of the server.
    pub heartbeat: Option<Duration>,
    /// MySQL: the server id to register as a replica with.
    pub replica_server_id: Option<u32>,
    /// MySQL: stop at the end of what the server has now.
    pub once: bool,
    /// PostgreSQL: where received WAL waits until it is stored.
    pub spool: Option<PathBuf>,
    /// PostgreSQL: the replication slot.
    pub slot: Option<String>,
    /// Where the streamer says how far the store is complete, and whether it is connected.
    pub status: StreamStatus,
}

/// Which closed log files to store.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    /// PostgreSQL: the WAL file (`%p`); MySQL: the binlog directory [default: the source's
    /// `data_dir`].
    pub path: Option<PathBuf>,
    /// PostgreSQL: also push up to this many later segments the server has marked ready.
    pub ahead: usize,
    /// MySQL: split files into segments of at most this many bytes of whole transactions.
    pub segment_bytes: Option<usize>,
}

/// What a stream or push stored.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    /// `WAL` or `binlog`.
    pub log: &'static str,
    /// Whole log objects stored (WAL segments, binlog segments).
    pub segments: u64,
    /// Snapshots of a WAL segment still being written.
    pub snapshots: u64,
    /// Bytes of log stored, when counted.
    pub bytes: u64,
    /// Transactions stored, when the engine counts them.
    pub transactions: Option<u64>,
    /// Where the stored log ends, in words.
    pub end: Option<String>,
    /// Nothing was stored because the repository already held exactly this.
    pub already_stored: bool,
    /// The engine's own report.
    pub detail: serde_json::Value,
}

/// A source's stored log as unbroken runs, oldest first: between two runs the log has a hole, and
/// no instant in it can be restored by replay.
#[derive(Debug, Clone, Serialize)]
pub struct LogCoverage {
    /// `WAL` or `binlog`.
    pub log: &'static str,
    pub runs: Vec<LogRun>,
    /// Where the log breaks: `gaps[i]` lies between `runs[i]` and `runs[i + 1]`.
    pub gaps: Vec<LogGap>,
}

/// A break between two runs of the log: what is missing, and why as far as the repository tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogGap {
    /// The last object before it and the first after it, as their names say.
    pub after: String,
    pub before: String,
    /// What is missing, in the log's own terms (WAL file names; binlog files and positions).
    pub missing: String,
    pub cause: String,
}

/// One unbroken run of log objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogRun {
    /// The first and last object, as their names say (a WAL segment; a binlog file and position).
    pub first: String,
    pub last: String,
    pub objects: u64,
    pub bytes: u64,
    /// The times of its first and last events, where they are known: binlog segments record
    /// them; for WAL, the consistency points of the first and last backups that start in the run.
    pub first_event: Option<chrono::DateTime<chrono::Utc>>,
    pub last_event: Option<chrono::DateTime<chrono::Utc>>,
    /// Timeline switches or failovers inside the run, where the history goes on unbroken.
    pub crossings: Vec<String>,
    /// The run the log is still growing at: the newest object stored is its last.
    pub open: bool,
}

/// How to carry a restore out, beyond where and to what point.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Replace the contents of a non-empty target directory.
    pub force: bool,
    /// PostgreSQL: restore over a data directory of the same cluster, rewriting only what differs
    /// from the backup.
    pub delta: bool,
    /// PostgreSQL: the port the restored server listens on.
    pub port: Option<u16>,
    /// PostgreSQL: start the restored server and wait until recovery ends.
    pub start: bool,
    /// How long recovery may take, when the restore waits for it.
    pub start_timeout: Duration,
    /// PostgreSQL: how the restored server fetches WAL (`restore_command`, with `%f` and `%p`):
    /// this program's `wal-fetch`, reaching this repository; or why the caller could not make one
    /// (a restore that recovers then fails with it, before writing anything).
    pub restore_command: Result<String, String>,
    /// The source's own connection URL, when the config does not give it (a scratch server's
    /// database and user come from it).
    pub source_url: Option<String>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            force: false,
            delta: false,
            port: None,
            start: false,
            start_timeout: Duration::from_secs(600),
            restore_command: Err(
                "no restore_command was given: a restore that recovers needs one to fetch WAL"
                    .into(),
            ),
            source_url: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// One sentence: what is where now, and what is left to do.
    pub done: String,
    /// Log transactions replayed, when the engine counts them.
    pub transactions: Option<u64>,
    /// The restored server was started and runs.
    pub started: bool,
    /// The commit time of the last transaction replayed, when the engine knows it.
    pub last_event: Option<chrono::DateTime<chrono::Utc>>,
}

/// A restore target as the engines take one: a running server's URL, or a directory to restore
/// into; exactly one of them.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerOrDirectory {
    pub url: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl ServerOrDirectory {
    /// Exactly one of `url` and `data_dir`, the URL of one of the engine's `schemes`.
    pub fn check(&self, engine: &str, schemes: &[&str]) -> Result<(), FieldError> {
        match (&self.url, &self.data_dir) {
            (Some(url), None) => check_url(url, engine, schemes).map_err(|why| ("url".into(), why)),
            (None, Some(_)) => Ok(()),
            (None, None) => Err((
                String::new(),
                "needs url (a running server) or data_dir (a directory to restore into)".into(),
            )),
            (Some(_), Some(_)) => Err((
                String::new(),
                "give url (a running server) or data_dir (a directory to restore into), not both"
                    .into(),
            )),
        }
    }

    pub fn destination(&self) -> Destination {
        match (&self.url, &self.data_dir) {
            (Some(url), _) => Destination::Server(url.clone()),
            (None, Some(dir)) => Destination::Directory(dir.clone()),
            (None, None) => Destination::Directory(PathBuf::new()),
        }
    }
}

/// Reports `work` to the context's progress as one task of `total` bytes named `what`, ended
/// whether it succeeds or fails.
pub async fn reporting<T>(
    ctx: &JobContext,
    what: &str,
    total: u64,
    work: impl std::future::Future<Output = T>,
) -> T {
    ctx.progress.begin(what, Some(total));
    let out = work.await;
    ctx.progress.finish();
    out
}

/// A field of the config and what is wrong with it: `("url", "...")` under `sources.NAME`.
pub type FieldError = (String, String);

/// The engines this build has: each line is the variant name for `kind:` (lower-cased) and the
/// module that holds the engine. The module offers `NAME`, `SCHEMES`, `SourceConfig`,
/// `TargetConfig` (each with `check`, the target with `destination`), `open` and `owns`.
macro_rules! engines {
    ($($variant:ident => $module:ident),+ $(,)?) => {
        /// A source in `heirloom.yaml`, by its `kind:`.
        #[derive(Debug, Clone)]
        pub enum SourceConfig {
            $($variant($module::SourceConfig),)+
        }

        /// A restore target in `heirloom.yaml`, by its `kind:`.
        #[derive(Debug, Clone)]
        pub enum TargetConfig {
            $($variant($module::TargetConfig),)+
        }

        impl SourceConfig {
            /// Reads a source's YAML (as a value): its `kind` picks the engine, whose own type
            /// takes the rest; an error names the field.
            pub fn from_value(value: serde_json::Value) -> Result<Self, FieldError> {
                let (kind, rest) = split_kind(value)?;
                $(if kind == $module::NAME {
                    return typed(rest).map(SourceConfig::$variant);
                })+
                Err(unknown_kind(&kind))
            }

            pub fn engine(&self) -> &'static str {
                match self {
                    $(SourceConfig::$variant(_) => $module::NAME,)+
                }
            }

            /// What the engine needs of it, named by field.
            pub fn check(&self) -> Result<(), FieldError> {
                match self {
                    $(SourceConfig::$variant(c) => c.check(),)+
                }
            }
        }

        impl TargetConfig {
            /// Reads a target's YAML (as a value), as [`SourceConfig::from_value`] does.
            pub fn from_value(value: serde_json::Value) -> Result<Self, FieldError> {
                let (kind, rest) = split_kind(value)?;
                $(if kind == $module::NAME {
                    return typed(rest).map(TargetConfig::$variant);
                })+
                Err(unknown_kind(&kind))
            }

            pub fn engine(&self) -> &'static str {
                match self {
                    $(TargetConfig::$variant(_) => $module::NAME,)+
                }
            }

            pub fn check(&self) -> Result<(), FieldError> {
                match self {
                    $(TargetConfig::$variant(c) => c.check(),)+
                }
            }

            pub fn destination(&self) -> Destination {
                match self {
                    $(TargetConfig::$variant(c) => c.destination(),)+
                }
            }
        }

        /// Opens the source `name` as `config` describes it.
        pub fn open(name: &SourceName, config: &SourceConfig) -> Box<dyn Source> {
            match config {
                $(SourceConfig::$variant(c) => $module::open(name, c),)+
            }
        }

        /// Opens a source the config does not describe by the backups the repository holds of
        /// it (restores and the archive commands need no more).
        pub fn open_by_kind(name: &SourceName, kind: BackupKind) -> Option<Box<dyn Source>> {
            $(if $module::owns(kind) {
                return Some($module::open(name, &$module::SourceConfig::default()));
            })+
            None
        }

        /// Opens a source of the engine named `engine` that the config does not describe.
        pub fn open_unconfigured(engine: &str, name: &SourceName) -> Option<Box<dyn Source>> {
            $(if $module::NAME == engine {
                return Some($module::open(name, &$module::SourceConfig::default()));
            })+
            None
        }

        /// The engine whose connection URLs start `scheme://`.
        pub fn engine_for_scheme(scheme: &str) -> Option<&'static str> {
            $(if $module::SCHEMES.contains(&scheme) {
                return Some($module::NAME);
            })+
            None
        }

        /// Every engine's URL schemes, for messages.
        pub fn schemes() -> Vec<String> {
            let mut all = Vec::new();
            $(all.extend($module::SCHEMES.iter().map(|s| format!("{s}://")));)+
            all
        }

        /// Every engine's name.
        pub const ENGINES: &[&str] = &[$($module::NAME),+];
    };
}

engines! {
    Postgres => postgres,
    Mysql => mysql,
}

/// A config entry's `kind`, and the rest of it.
fn split_kind(value: serde_json::Value) -> Result<(String, serde_json::Value), FieldError> {
    let serde_json::Value::Object(mut map) = value else {
        return Err((
            String::new(),
            format!("expected a map with kind: ({})", ENGINES.join(" | ")),
        ));
    };
    match map.remove("kind") {
        Some(serde_json::Value::String(kind)) => Ok((kind, serde_json::Value::Object(map))),
        Some(other) => Err(("kind".into(), format!("{other} is not an engine name"))),
        None => Err((
            "kind".into(),
            format!("missing: say which engine ({})", ENGINES.join(" | ")),
        )),
    }
}

fn unknown_kind(kind: &str) -> FieldError {
    (
        "kind".into(),
        format!(
            "unknown kind {kind:?}: this build has {}",
            ENGINES.join(", ")
        ),
    )
}

/// An engine's config type from the rest of an entry, an error naming the field that did not fit.
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.inner().to_string())
    })
}

/// Checks a source's or target's `url` is one of its engine's schemes.
pub fn check_url(url: &str, engine: &str, schemes: &[&str]) -> Result<(), String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("{:?} is not a URL: {e}", crate::redact::redact(url)))?;
    if schemes.contains(&parsed.scheme()) {
        return Ok(());
    }
    Err(format!(
        "scheme {:?} does not fit kind {engine} (expected {}://)",
        parsed.scheme(),
        schemes.first().copied().unwrap_or("?")
    ))
}

/// A usage error for a restore point an engine does not take.
pub fn unsupported_point(engine: &str, point: &RestorePoint, takes: &str) -> JobError {
    JobError::Usage(format!(
        "{} is not for {engine} sources; they take {takes}",
        point.flag()
    ))
}
