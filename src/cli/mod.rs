//! The command line: clap definitions and thin commands that call the library and print.
//!
//! Exit codes (docs/OPERATIONS.md): 0 ok, 1 failure, 2 usage or configuration error, 3 integrity error
//! (damaged or missing data), 4 policy violation.

/// `println!` that reports a failed write (a closed pipe: `list | head -1`) as an error instead of
/// panicking; `main` treats a closed pipe as a normal end.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(heirloom_backup::repo::RepoError::Output)?
    }};
}

mod agent;
mod audit;
mod backup;
mod binlog;
mod demo;
mod holds;
mod maintenance;
mod prune;
mod repository;
mod restore;
mod schedule;
mod stream;
mod wal;
mod wal_fetch_command;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use heirloom_backup::config::{self, Config, ConfigError, RepoSettings};
use heirloom_backup::engine::mysql::MyError;
use heirloom_backup::engine::postgres::PgError;
use heirloom_backup::engine::LogReport;
use heirloom_backup::jobs::{JobContext, JobError};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::progress::{Progress, ProgressSink};
use heirloom_backup::repo::{RepoError, Repository};
use heirloom_backup::store::{open_store, Store, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use wal_fetch_command::restore_command;

#[derive(Debug, Parser)]
#[command(
    name = "heirloom-backup",
    version,
    about = "Backup and point-in-time restore for PostgreSQL and MySQL/MariaDB into encrypted, deduplicated object storage"
)]
pub struct Cli {
    /// Config file [default: ./heirloom.yaml when present]
    #[arg(long, global = true, value_name = "FILE", env = "HEIRLOOM_CONFIG")]
    config: Option<PathBuf>,

    /// Repository URL (file:// s3:// gs:// az:// memory:// or a path); overrides the config and HEIRLOOM_REPO
    #[arg(long, global = true, value_name = "URL")]
    repo: Option<String>,

    /// Key file that unlocks the repository; overrides the config and HEIRLOOM_KEY_FILE
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Option<PathBuf>,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HEIRLOOM_LOG_FORMAT")]
    log_format: LogFormat,

    /// More logging (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Only errors; no progress bars
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Chunks compressed, encrypted or verified at once [default: the number of cores]
    #[arg(long, global = true, value_name = "N")]
    jobs: Option<usize>,

    /// Objects uploaded or downloaded at once [default: 3]
    #[arg(long, global = true, value_name = "N")]
    transfers: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a repository
    Init(repository::InitArgs),
    /// Manage the keys that unlock the repository
    #[command(subcommand)]
    Key(repository::KeyCommand),
    /// Back up a stream piped to stdin
    Backup(backup::BackupArgs),
    /// List backups
    List(backup::ListArgs),
    /// Show one backup's manifest
    Show(backup::ShowArgs),
    /// Write a backup's bytes to stdout, verified
    Cat(backup::CatArgs),
    /// Remove one backup (its data stays until garbage collection); refused while it is held
    Forget(backup::ForgetArgs),
    /// Keep a backup whatever the retention policy says, until a time or until released
    Hold(holds::HoldArgs),
    /// End the holds on a backup
    Release(holds::ReleaseArgs),
    /// Apply the retention policies: show what each keeps and why, delete the backups none keeps
    Prune(prune::PruneArgs),
    /// Archive a WAL file (PostgreSQL's archive_command: `heirloom-backup wal-push %p`)
    WalPush(wal::WalPushArgs),
    /// Fetch an archived WAL file (restore_command: `heirloom-backup wal-fetch %f %p`)
    WalFetch(wal::WalFetchArgs),
    /// Stream a MySQL/MariaDB binlog (as a replica) or PostgreSQL WAL (over a slot) into the repository
    Stream(stream::StreamArgs),
    /// Store the closed binlog files of a MySQL/MariaDB data directory (no replica connection)
    BinlogPush(binlog::BinlogPushArgs),
    /// Write a stored binlog file back together, byte for byte
    BinlogFetch(binlog::BinlogFetchArgs),
    /// Restore a source at an instant into a target
    Restore(restore::RestoreArgs),
    /// Restore a source into a scratch server, start it and check its data: recorded proof that backups restore
    Drill(restore::DrillArgs),
    /// Check the repository's structure, and with --read-data every stored byte
    Verify(maintenance::VerifyArgs),
    /// Per source what is restorable, from when to when, and whether its retention policy holds (exit 4 when not)
    Audit(audit::AuditArgs),
    /// Run every source's scheduled jobs (sources.NAME.schedules) until SIGTERM
    Agent(agent::AgentArgs),
    /// The next runs of every scheduled job (sources.NAME.schedules), in its zone and in UTC
    Schedule(schedule::ScheduleArgs),
    /// Sizes, object counts, deduplication and compression
    Stats(maintenance::StatsArgs),
    /// Back up a generated stream into a throwaway local repository and restore it, to show the tool at work
    Demo(demo::DemoArgs),
}

/// A command used wrongly: exit code 2, like a bad flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit codes.
#[derive(Debug, Clone, Copy)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    Integrity = 3,
    /// A policy the repository must meet is not met (`audit`).
    Policy = 4,
    /// `wal-fetch` of a damaged WAL file: PostgreSQL aborts recovery on exit codes above 125.
    AbortRecovery = 126,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Runs the command and turns its outcome into an exit code, printing any error on stderr.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heirloom-backup: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(err) => {
            if is_broken_pipe(&err) {
                return Exit::Ok.into(); // `cat | head`, `list | head -1`: the reader had enough
            }
            // Whatever an error quotes (a connection string, a server's answer) loses its
            // passwords here, the one way out.
            eprintln!(
                "heirloom-backup: error: {}",
                heirloom_backup::redact::redact(&format!("{err:#}"))
            );
            exit_code_for(&err).into()
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<RepoError>()
            .is_some_and(RepoError::is_broken_pipe)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn exit_code_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some()
            || cause.downcast_ref::<UsageError>().is_some()
        {
            return Exit::Usage;
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            if e.is_integrity() {
                return Exit::Integrity;
            }
            if matches!(
                e,
                RepoError::Invalid(_)
                    | RepoError::Store(StoreError::BadUrl { .. })
                    | RepoError::Store(StoreError::BadOption { .. })
            ) {
                return Exit::Usage;
            }
        }
        if let Some(StoreError::BadUrl { .. } | StoreError::BadOption { .. }) =
            cause.downcast_ref::<StoreError>()
        {
            return Exit::Usage;
        }
        if let Some(e) = cause.downcast_ref::<MyError>() {
            if e.is_integrity() {
                return Exit::Integrity;
            }
        }
        if let Some(e) = cause.downcast_ref::<JobError>() {
            if e.is_integrity() {
                return Exit::Integrity;
            }
            if e.is_usage() {
                return Exit::Usage;
            }
        }
        if let Some(e) = cause.downcast_ref::<PgError>() {
            if e.is_integrity() {
                return Exit::Integrity;
            }
        }
    }
    Exit::Failure
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let ctx = Context::new(&cli)?;
    match &cli.command {
        Command::Init(args) => repository::init(&ctx, args).await,
        Command::Key(cmd) => repository::key(&ctx, cmd).await,
        Command::Backup(args) => backup::backup(&ctx, args).await,
        Command::List(args) => backup::list(&ctx, args).await,
        Command::Show(args) => backup::show(&ctx, args).await,
        Command::Cat(args) => backup::cat(&ctx, args).await,
        Command::Forget(args) => backup::forget(&ctx, args).await,
        Command::Hold(args) => holds::hold(&ctx, args).await,
        Command::Release(args) => holds::release(&ctx, args).await,
        Command::Prune(args) => prune::prune(&ctx, args).await,
        Command::WalPush(args) => wal::push(&ctx, args).await,
        Command::WalFetch(args) => wal::fetch(&ctx, args).await,
        Command::Stream(args) => stream::run(&ctx, args).await,
        Command::BinlogPush(args) => binlog::push(&ctx, args).await,
        Command::BinlogFetch(args) => binlog::fetch(&ctx, args).await,
        Command::Restore(args) => restore::run(&ctx, args).await,
        Command::Drill(args) => restore::drill(&ctx, args).await,
        Command::Verify(args) => maintenance::verify(&ctx, args).await,
        Command::Audit(args) => audit::audit(&ctx, args).await,
        Command::Agent(args) => agent::agent(&ctx, args).await,
        Command::Schedule(args) => schedule::schedule(&ctx, args).await,
        Command::Stats(args) => maintenance::stats(&ctx, args).await,
        Command::Demo(args) => demo::demo(&ctx, args).await,
    }
}

/// What every command may need: the config, resolved lazily so that `demo` needs none.
pub struct Context {
    config: Config,
    config_path: Option<PathBuf>,
    repo_flag: Option<String>,
    key_file_flag: Option<PathBuf>,
    concurrency: Concurrency,
    progress: bool,
}

impl Context {
    fn new(cli: &Cli) -> anyhow::Result<Self> {
        let config_path = match &cli.config {
            Some(path) => Some(path.clone()),
            None if Path::new("heirloom.yaml").exists() => Some(PathBuf::from("heirloom.yaml")),
            None => None,
        };
        let config = match &config_path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let mut concurrency = Concurrency::default();
        if let Some(j) = cli.jobs {
            concurrency.cpu = j.max(1);
        }
        if let Some(t) = cli.transfers {
            concurrency.io = t.max(1);
        }
        Ok(Self {
            config,
            config_path,
            repo_flag: cli.repo.clone(),
            key_file_flag: cli.key_file.clone(),
            concurrency,
            progress: !cli.quiet && std::io::stderr().is_terminal(),
        })
    }

    fn settings(&self) -> Result<RepoSettings, ConfigError> {
        config::resolve(
            &self.config,
            self.repo_flag.as_deref(),
            self.key_file_flag.as_deref(),
            |k| std::env::var(k).ok(),
        )
    }

    fn store(&self) -> anyhow::Result<(Store, RepoSettings)> {
        let settings = self.settings()?;
        let store = open_store(&settings.url, &settings.options)?;
        Ok((store, settings))
    }

    /// Opens the repository with the configured key.
    async fn open(&self) -> anyhow::Result<Repository> {
        let (store, settings) = self.store()?;
        let key = settings.load_key()?;
        let location = store.location();
        Repository::open(store, &key)
            .await
            .with_context(|| format!("opening the repository at {location}"))
    }

    /// A byte-counting progress bar on a terminal; hidden otherwise.
    fn progress(&self, what: &str, total: Option<u64>) -> Bar {
        Bar(self.progress_bar(what, total))
    }

    /// The context a library job runs in, on `repo`: its progress goes to a bar (on a terminal),
    /// which a job that knows its total turns from a spinner into a bar.
    fn job(&self, repo: Repository, what: &str) -> (JobContext, Bar) {
        let bar = self.progress(what, None);
        let job = JobContext::new(repo, self.concurrency).with_progress(bar.handle());
        (job, bar)
    }

    fn progress_bar(&self, what: &str, total: Option<u64>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let template = match total {
            Some(_) => "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            None => "{msg} {spinner} {bytes} {bytes_per_sec} {elapsed}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }
}

/// A progress bar of the command line, and the library's handle on it.
struct Bar(ProgressBar);

impl Bar {
    /// What the library reports progress to.
    fn handle(&self) -> Progress {
        Progress::new(BarSink(self.0.clone()))
    }

    fn finish_and_clear(&self) {
        self.0.finish_and_clear();
    }
}

struct BarSink(ProgressBar);

impl ProgressSink for BarSink {
    fn begin(&self, what: &str, total: Option<u64>) {
        if let Some(total) = total {
            self.0.set_length(total);
            self.0.set_position(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                self.0.set_style(style);
            }
        }
        self.0.set_message(what.to_owned());
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    // The agent's run events (started, finished) are info: a daemon's log is its record.
    let daemon = matches!(cli.command, Command::Agent(_));
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) if daemon => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_env("HEIRLOOM_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("heirloom_backup={default},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| heirloom_backup::redact::RedactingWriter(std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Prints `value` as pretty JSON on stdout.
/// A `--policy` flag: a shipped policy's name or a policy file; a bad one is a usage error.
fn policy_flag(
    flag: Option<&str>,
) -> anyhow::Result<Option<heirloom_backup::retention::policy::Policy>> {
    Ok(flag
        .map(heirloom_backup::retention::policy::Policy::named_or_file)
        .transpose()
        .map_err(|e| UsageError(e.to_string()))?)
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// What `stream`, `binlog-push` and `wal-push` stored; the text names where the log ends when it
/// is known.
fn print_log_report(source: &str, report: &LogReport, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::json!({
            "source": source,
            "log": report.log,
            "segments": report.segments,
            "snapshots": report.snapshots,
            "bytes": report.bytes,
            "transactions": report.transactions,
            "end": report.end,
        });
        if let (Some(map), serde_json::Value::Object(detail)) =
            (value.as_object_mut(), &report.detail)
        {
            for (k, v) in detail {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        return print_json(&value);
    }
    match report.log {
        "WAL" => outln!(
            "stored {} complete segments and {} snapshots of the segment being written",
            report.segments,
            report.snapshots
        ),
        _ => outln!(
            "stored {} segments, {} of {}, {} transactions{}",
            report.segments,
            human_bytes(report.bytes),
            report.log,
            report.transactions.unwrap_or(0),
            report
                .end
                .as_ref()
                .map(|e| format!(", chain ends at {e}"))
                .unwrap_or_default()
        ),
    }
    Ok(())
}

/// `1.5 GiB`-style sizes for people.
fn human_bytes(n: u64) -> String {
    heirloom_backup::units::binary_bytes(n, 1)
}
