//! `stream SOURCE` for PostgreSQL: WAL taken continuously over a replication slot by a supervised
//! `pg_receivewal`, completed segments archived as `wal-push` archives them, and the segment being
//! written stored as snapshots every flush interval, so the data-loss window is seconds.
//!
//! The slot keeps the server from recycling WAL the streamer has not received; the spool directory
//! keeps what was received but not yet stored, and `pg_receivewal` resumes from it after a restart.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tracing::{debug, info, warn};

use super::conninfo::ChildConnInfo;
use super::names::WalFileName;
use super::server::pg_program;
use super::server::{connect, sql};
use super::snapshot::{partial_chain, put_partial};
use super::wal::{ensure_identity, wal_push};
use super::PgError;
use crate::engine::private_dir::{default_private_dir, ensure_user_dir};
use crate::engine::StreamStatus;
use crate::redact::redact;
use crate::repo::Repository;

/// How the streamer behaves.
#[derive(Debug, Clone)]
pub struct PgStreamOptions {
    /// Store the segment being written at least this often (the data-loss window).
    pub flush_interval: Duration,
    /// Where received WAL waits until it is stored: a directory only this user may write
    /// (checked when streaming starts). `None`: `$TMPDIR/heirloom-<uid>/stream-<source>`.
    pub spool: Option<PathBuf>,
    /// The replication slot (created if missing).
    pub slot: String,
    /// Told after every snapshot how far the store is complete, and whether WAL is arriving.
    pub status: StreamStatus,
}

impl PgStreamOptions {
    pub fn new(source: &str) -> Self {
        Self {
            flush_interval: Duration::from_secs(5),
            spool: None,
            slot: slot_name(source),
            status: StreamStatus::default(),
        }
    }
}

/// `heirloom_<source>`, in the characters a slot name allows.
pub fn slot_name(source: &str) -> String {
    let mut name: String = format!("heirloom_{source}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(63);
    name
}

/// What a streaming run stored.
#[derive(Debug, Clone, Default)]
pub struct PgStreamReport {
    pub segments: u64,
    pub snapshots: u64,
}

/// The length of `bytes` up to its last non-zero byte: how much of a zero-padded partial segment
/// holds WAL.
pub fn valid_length(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i as u64 + 1)
}

/// Streams the WAL of the server `conninfo` names until `shutdown` resolves.
pub async fn stream_wal(
    repo: &Repository,
    source: &str,
    conninfo: &str,
    options: &PgStreamOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<PgStreamReport, PgError> {
    // The spool first: a local refusal needs no server.
    let spool = match &options.spool {
        Some(dir) => {
            ensure_user_dir(dir).map_err(|e| PgError::io(dir.display(), e))?;
            dir.clone()
        }
        None => default_private_dir(&format!("stream-{source}"))
            .map_err(|e| PgError::io("the default spool", e))?,
    };
    let spool = spool.as_path();
    let server = redact(conninfo);
    let client = connect(conninfo).await?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
                    current_setting('server_version_num')::int4",
            &[],
        )
        .await
        .map_err(sql(&server))?;
    let system_identifier: String = row.get(0);
    let major = row.get::<_, i32>(1) as u32 / 10000;
    drop(client);
    ensure_identity(repo, source, &system_identifier, &server).await?;
    let receivewal = pg_program("pg_receivewal", Some(major))?;

    let created = Command::new(&receivewal)
        .args(["--create-slot", "--if-not-exists", "--no-password"])
        .arg(format!("--slot={}", options.slot))
        .arg(ChildConnInfo::new(conninfo).dbname_arg())
        .envs(ChildConnInfo::new(conninfo).env())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| PgError::io(receivewal.display(), e))?;
    if !created.status.success() {
        return Err(PgError::Invalid(format!(
            "creating replication slot {} on {server} failed: {}",
            options.slot,
            String::from_utf8_lossy(&created.stderr).trim()
        )));
    }
    stop_stale_receiver(spool).await;

    tokio::pin!(shutdown);
    let mut report = PgStreamReport::default();
    let mut snapshot_of: Option<LastSnapshot> = None;
    let mut child: Option<Child> = None;
    let mut ticker = tokio::time::interval(options.flush_interval.min(Duration::from_secs(1)));
    // None until the first pass, which stores the spool at once. (Subtracting the interval from
    // now would panic on a host up for less than the interval.)
    let mut last_snapshot: Option<Instant> = None;
    let mut restarts = 0u32;
    let result = loop {
        if child.is_none() {
            match start_receiver(&receivewal, conninfo, options, spool) {
                Ok(c) => {
                    info!(source, server, slot = %options.slot, "receiving WAL");
                    child = Some(c);
                }
                Err(e) => break Err(e),
            }
        }
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = ticker.tick() => {}
        }
        // With `--synchronous`, a receiver alive now has written to the spool all the server has
        // sent; once this pass stores the spool, the store is complete to here.
        let pass = chrono::Utc::now();
        let state = child.as_mut().map(Child::try_wait);
        let receiving = matches!(state, Some(Ok(None)));
        options.status.set_connected(receiving);
        if let Some(Ok(Some(status))) = state {
            restarts += 1;
            warn!(%status, "pg_receivewal ended; restarting it");
            child = None;
            if restarts > 300 {
                break Err(PgError::Invalid(format!(
                    "pg_receivewal for {server} keeps ending ({status}); see its messages above"
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Err(e) = store_complete(repo, source, spool, &mut report).await {
            break Err(e);
        }
        if last_snapshot.is_none_or(|t| t.elapsed() >= options.flush_interval) {
            last_snapshot = Some(Instant::now());
            if let Err(e) = store_partial(repo, source, spool, &mut snapshot_of, &mut report).await
            {
                break Err(e);
            }
            if receiving {
                options.status.stored_through(pass);
            }
        }
    };
    options.status.set_connected(false);
    if let Some(mut c) = child {
        // pg_receivewal flushes what it has on SIGTERM.
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        let _ = c.kill().await;
    }
    let _ = std::fs::remove_file(spool.join(PID_FILE));
    if result.is_ok() {
        store_complete(repo, source, spool, &mut report).await?;
        store_partial(repo, source, spool, &mut snapshot_of, &mut report).await?;
    }
    result.map(|()| report)
}

const PID_FILE: &str = "heirloom-receiver.pid";

/// A `pg_receivewal` left running by a streamer that was killed holds the slot: stop it, so the
/// one started now can take over the spool.
async fn stop_stale_receiver(spool: &Path) {
    let Ok(text) = std::fs::read_to_string(spool.join(PID_FILE)) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("pg_receivewal") {
        return;
    }
    warn!(
        pid,
        "stopping the pg_receivewal a previous streamer left running"
    );
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_receiver(
    receivewal: &Path,
    conninfo: &str,
    options: &PgStreamOptions,
    spool: &Path,
) -> Result<Child, PgError> {
    let conn = ChildConnInfo::new(conninfo);
    let child = Command::new(receivewal)
        .arg(format!("--directory={}", spool.display()))
        .arg(format!("--slot={}", options.slot))
        .arg(conn.dbname_arg())
        .envs(conn.env())
        .args([
            "--no-loop",
            "--no-password",
            "--synchronous",
            "--status-interval=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| PgError::io(receivewal.display(), e))?;
    if let Some(pid) = child.id() {
        let _ = std::fs::write(spool.join(PID_FILE), pid.to_string());
    }
    Ok(child)
}

/// Archives the segments and history files pg_receivewal has completed, oldest first, and removes
/// them from the spool once they are durable in the store.
async fn store_complete(
    repo: &Repository,
    source: &str,
    spool: &Path,
    report: &mut PgStreamReport,
) -> Result<(), PgError> {
    let mut done: Vec<(WalFileName, PathBuf)> = std::fs::read_dir(spool)
        .map_err(|e| PgError::io(spool.display(), e))?
        .filter_map(|e| {
            let e = e.ok()?;
            let name: WalFileName = e.file_name().to_str()?.parse().ok()?;
            matches!(
                name,
                WalFileName::Segment { .. } | WalFileName::History { .. }
            )
            .then(|| (name, e.path()))
        })
        .collect();
    done.sort();
    for (name, path) in done {
        wal_push(repo, source, &path).await?;
        debug!(%name, "streamed segment archived");
        if matches!(name, WalFileName::Segment { .. }) {
            report.segments += 1;
            std::fs::remove_file(&path).map_err(|e| PgError::io(path.display(), e))?;
        }
    }
    Ok(())
}

/// After this many increments, a snapshot is stored whole again: a restore reads at most this many
/// more objects for the last segment, and a quiet segment's snapshots cost a few times its size.
const MAX_INCREMENTS: usize = 32;

/// The last snapshot stored: its segment, how far it reached, and increments since a whole one.
#[derive(Debug, Clone)]
pub(crate) struct LastSnapshot {
    segment: String,
    valid: u64,
    increments: usize,
}

/// Stores a snapshot of the segment being received, when it has grown since the last one: only the
/// bytes received since then, or the whole segment every `MAX_INCREMENTS` snapshots.
async fn store_partial(
    repo: &Repository,
    source: &str,
    spool: &Path,
    last: &mut Option<LastSnapshot>,
    report: &mut PgStreamReport,
) -> Result<(), PgError> {
    let partials: Vec<PathBuf> = std::fs::read_dir(spool)
        .map_err(|e| PgError::io(spool.display(), e))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            path.file_name()?
                .to_str()?
                .ends_with(".partial")
                .then_some(path)
        })
        .collect();
    for path in partials {
        let Some(segment) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<WalFileName>().ok())
        else {
            continue;
        };
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| PgError::io(path.display(), e))?;
        let valid = valid_length(&bytes);
        let name = segment.to_string();
        if valid == 0 {
            continue;
        }
        if last.as_ref().is_none_or(|l| l.segment != name) {
            // A new segment, or a restart: continue the chain already stored, if any.
            *last = partial_chain(repo, source, &segment)
                .await?
                .map(|chain| LastSnapshot {
                    segment: name.clone(),
                    valid: chain.valid(),
                    increments: chain.increments(),
                });
        }
        let (from, increments) = match last.as_ref().filter(|l| l.segment == name) {
            Some(l) if l.valid >= valid => continue,
            Some(l) if l.increments < MAX_INCREMENTS => (l.valid, l.increments + 1),
            _ => (0, 0),
        };
        let piece = match from {
            0 => bytes,
            _ => bytes[from as usize..valid as usize].to_vec(),
        };
        put_partial(repo, source, &segment, piece, from, valid).await?;
        debug!(segment = %name, from, valid, "snapshot of the segment being received stored");
        report.snapshots += 1;
        *last = Some(LastSnapshot {
            segment: name,
            valid,
            increments,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_and_valid_lengths() {
        assert_eq!(slot_name("prod-pg"), "heirloom_prod_pg");
        assert_eq!(valid_length(&[1, 2, 0, 3, 0, 0]), 4);
        assert_eq!(valid_length(&[0, 0]), 0);
    }
}
