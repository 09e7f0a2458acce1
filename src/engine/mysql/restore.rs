//! Point-in-time restore of MySQL/MariaDB: the newest dump before the target, loaded, then the
//! binlog from the dump's coordinates to the target replayed in one client session.
//!
//! Binlog segments are chosen by their recorded positions, event times and GTIDs, never by when
//! they were uploaded. Transactions are cut whole: the replay holds every transaction of the chain
//! after the dump and before the target, and nothing else.

use std::io::Write;
use std::process::Stdio;

use crate::progress::Progress;
use chrono::{DateTime, TimeZone, Utc};
use mysql_async::prelude::Queryable;
use serde::Serialize;
use tracing::info;

use super::binlog::{Boundary, Events, GroupTracker, Gtid, FLAG_IN_USE, MAGIC};
use super::plan::MyPlan;
use super::segment::read_segment;
use super::server::{client_program, MysqlUrl};
use super::MyError;
use crate::engine::process::{feed_file, WaitStderr};
use crate::pipeline::Concurrency;
use crate::repo::manifest::Manifest;
use crate::repo::Repository;
use crate::restore::point::RestorePoint;

/// Where to send the restore.
pub struct MyRestoreRequest<'a> {
    pub target: &'a MysqlUrl,
    pub force: bool,
    pub concurrency: Concurrency,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct MyRestoreReport {
    pub transactions: u64,
    pub events: u64,
    pub last_gtid: Option<String>,
    pub last_event_time: Option<DateTime<Utc>>,
    /// The largest transaction replayed, in binlog bytes.
    pub largest_transaction: u64,
    /// Transactions left out because a later failover's history does not hold them.
    pub superseded: u64,
}

/// Carries out a complete plan: checks the target, loads the dump, replays the binlog.
pub async fn restore(
    repo: &Repository,
    plan: &MyPlan,
    request: &MyRestoreRequest<'_>,
    progress: Progress,
) -> Result<MyRestoreReport, MyError> {
    if !plan.is_complete() {
        return Err(MyError::Gap {
            source_name: plan.source.clone(),
            why: plan.problem().unwrap_or_default(),
        });
    }
    // Every segment is read and checked before the target is touched.
    let workdir = tempfile::Builder::new()
        .prefix("heirloom-binlog-")
        .tempdir()
        .map_err(|e| MyError::io("a temporary directory", e))?;
    let (files, report) = assemble(repo, plan, workdir.path()).await?;
    let target = request.target;
    let mut conn = target.connect().await?;
    for db in &plan.databases {
        let tables: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?",
                (db,),
            )
            .await
            .map_err(|e| MyError::sql(target.display(), e))?;
        if tables.unwrap_or(0) > 0 {
            if !request.force {
                return Err(MyError::Invalid(format!(
                    "{}: database {db} already has tables; restore into an empty server, or --force to replace it",
                    target.display()
                )));
            }
            conn.query_drop(format!("DROP DATABASE `{}`", db.replace('`', "``")))
                .await
                .map_err(|e| MyError::sql(target.display(), e))?;
        }
    }
    // mariadb-binlog turns a transaction's row events into one statement of base64 text: the
    // server must accept a packet that large.
    let needed = report.largest_transaction * 4 / 3 + (1 << 20);
    let allowed: Option<u64> = conn
        .query_first("SELECT @@global.max_allowed_packet")
        .await
        .map_err(|e| MyError::sql(target.display(), e))?;
    if let Some(allowed) = allowed.filter(|a| *a < needed) {
        return Err(MyError::Invalid(format!(
            "{}: the binlog holds a transaction of {} MiB, which replays as one statement of {} MiB, \
             but the server's max_allowed_packet is {} MiB: SET GLOBAL max_allowed_packet = {} (or \
             start it with --max-allowed-packet) and restore again",
            target.display(),
            report.largest_transaction >> 20,
            needed >> 20,
            allowed >> 20,
            needed.next_power_of_two()
        )));
    }
    drop(conn);

    let manifest = repo.manifest(&plan.backup).await?;
    let client = client_program("mariadb", "mysql")?;
    load_dump(
        repo,
        &manifest,
        target,
        &client,
        request.concurrency,
        progress,
    )
    .await?;
    info!(backup = %plan.backup, "dump loaded");

    if files.is_empty() {
        return Ok(report);
    }
    replay(&files, target, &client).await?;
    info!(transactions = report.transactions, "binlog replayed");
    Ok(report)
}

async fn load_dump(
    repo: &Repository,
    manifest: &Manifest,
    target: &MysqlUrl,
    client: &std::path::Path,
    concurrency: Concurrency,
    progress: Progress,
) -> Result<(), MyError> {
    let index = repo.load_index().await?;
    for file in &manifest.files {
        let child = target
            .command(client)
            .arg("--init-command=SET SESSION sql_log_bin=0")
            .arg("--binary-mode")
            .arg("--max-allowed-packet=1G")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| MyError::io(client.display(), e))?;
        let fed = feed_file(
            repo,
            &index,
            manifest,
            file,
            child,
            concurrency,
            progress.clone(),
        )
        .await
        .map_err(|e| MyError::io(client.display(), e))?;
        let (status, stderr) = (fed.status, fed.stderr);
        if !status.success() {
            return Err(MyError::Invalid(format!(
                "loading {} of {} into {} failed ({status}): {}",
                file.path,
                manifest.id,
                target.display(),
                stderr.trim()
            )));
        }
        fed.read?;
    }
    Ok(())
}

/// Writes the transactions to replay as binlog files, one per run of one server's file: the
/// file's format description, then the chosen transactions byte for byte.
pub(super) async fn assemble(
    repo: &Repository,
    plan: &MyPlan,
    dir: &std::path::Path,
) -> Result<(Vec<std::path::PathBuf>, MyRestoreReport), MyError> {
    let mut files = Vec::new();
    let mut report = MyRestoreReport {
        transactions: 0,
        events: 0,
        last_gtid: None,
        last_event_time: None,
        largest_transaction: 0,
        superseded: 0,
    };
    let stop_second = plan.point.time().map(|t| t.timestamp());
    let mut out: Option<(std::fs::File, (u32, String, u32))> = None;
    let mut applied = plan.start_gtid().clone();
    let mut done = false;
    for (index, name) in plan.segments.iter().enumerate() {
        if done {
            break;
        }
        let cap = plan.caps.get(index).cloned().flatten();
        let (meta, bytes) = read_segment(repo, &plan.source, name).await?;
        let key = name.key(&plan.source);
        let file_id = (meta.server_id, meta.file.clone(), meta.file_created);
        // A group is gathered whole, then written or dropped.
        let mut group: Vec<u8> = Vec::new();
        let mut group_time: Option<u32> = None;
        let mut group_gtid: Option<Gtid> = None;
        let mut group_start: u64 = 0;
        let mut group_events = 0u64;
        let mut tracker = GroupTracker::default();
        for item in Events::with_holes(&bytes, meta.start) {
            let (pos, event) = item.map_err(|e| MyError::CorruptSegment {
                key: key.clone(),
                why: e.to_string(),
            })?;
            let boundary = tracker.observe(&event, meta.checksummed);
            match boundary {
                Boundary::Outside => continue,
                Boundary::Starts => {
                    group.clear();
                    group_events = 0;
                    group_time = Some(event.header.timestamp);
                    group_gtid = event.mariadb_gtid().map(|(g, _)| g);
                    group_start = pos;
                }
                Boundary::Inside | Boundary::Ends => {
                    if group_time.is_none() {
                        // A lone statement with no GTID (old servers): its own group.
                        group.clear();
                        group_events = 0;
                        group_time = Some(event.header.timestamp);
                        group_start = pos;
                    }
                }
            }
            group.extend_from_slice(event.bytes);
            group_events += 1;
            if boundary != Boundary::Ends {
                continue;
            }
            let time = group_time.take().unwrap_or(event.header.timestamp);
            let gtid = group_gtid.take();
            // Already applied: in the dump, or met before (a failover's overlap).
            let done_before = match gtid {
                Some(g) => applied.contains_gtid(&g),
                None => match &plan.start_file_pos {
                    Some((server, file, pos)) => {
                        *server == meta.server_id && *file == meta.file && group_start < *pos
                    }
                    None => false,
                },
            };
            if done_before {
                continue;
            }
            // The point reached already (a GTID the dump or the replay so far holds).
            if let RestorePoint::Gtid(target) = &plan.point {
                if applied.contains_gtid(target) {
                    done = true;
                    break;
                }
            }
            // Not in the history after a later failover in the range.
            if let (Some(g), Some(cap)) = (gtid, &cap) {
                if !cap.contains_gtid(&g) {
                    report.superseded += 1;
                    continue;
                }
            }
            if stop_second.is_some_and(|s| i64::from(time) >= s) {
                done = true;
                break;
            }
            if out.as_ref().map(|(_, id)| id) != Some(&file_id) {
                let path = dir.join(format!("{:04}-{}", files.len(), meta.file));
                let mut file =
                    std::fs::File::create(&path).map_err(|e| MyError::io(path.display(), e))?;
                let mut fde =
                    meta.format_description_bytes()
                        .map_err(|why| MyError::CorruptSegment {
                            key: key.clone(),
                            why,
                        })?;
                if fde.len() > 18 {
                    // The description of a file still open says so; the copy here is complete.
                    fde[17] &= !(FLAG_IN_USE as u8);
                }
                file.write_all(&MAGIC)
                    .and_then(|()| file.write_all(&fde))
                    .map_err(|e| MyError::io(path.display(), e))?;
                files.push(path);
                out = Some((file, file_id.clone()));
            }
            if let Some((file, _)) = out.as_mut() {
                file.write_all(&group)
                    .map_err(|e| MyError::io("the replay file", e))?;
            }
            report.transactions += 1;
            report.events += group_events;
            report.largest_transaction = report.largest_transaction.max(group.len() as u64);
            if let Some(g) = gtid {
                applied.apply(g);
                report.last_gtid = Some(g.to_string());
            }
            report.last_event_time = Utc.timestamp_opt(i64::from(time), 0).single();
            if let RestorePoint::Gtid(target) = &plan.point {
                if gtid == Some(*target) || applied.contains_gtid(target) {
                    done = true;
                    break;
                }
            }
        }
    }
    if let Some((file, _)) = out.take() {
        file.sync_all()
            .map_err(|e| MyError::io("the replay file", e))?;
    }
    Ok((files, report))
}

/// `mariadb-binlog FILE... | mariadb`: one client session for the whole replay.
pub(super) async fn replay(
    files: &[std::path::PathBuf],
    target: &MysqlUrl,
    client: &std::path::Path,
) -> Result<(), MyError> {
    let binlog = client_program("mariadb-binlog", "mysqlbinlog")?;
    let mut reader = std::process::Command::new(&binlog);
    reader.arg("--verify-binlog-checksum");
    reader.args(files);
    reader.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut reader = reader
        .spawn()
        .map_err(|e| MyError::io(binlog.display(), e))?;
    let stdout = reader
        .stdout
        .take()
        .ok_or_else(|| MyError::Invalid("mariadb-binlog has no stdout".into()))?;
    let mut writer = target
        .command(client)
        .arg("--init-command=SET SESSION sql_log_bin=0")
        .arg("--binary-mode")
        .arg("--max-allowed-packet=1G")
        .stdin(Stdio::from(stdout))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| MyError::io(client.display(), e))?;
    let (reader_out, writer_out) = tokio::task::spawn_blocking(move || {
        let w = writer.wait_with_output_stderr();
        let r = reader.wait_with_output_stderr();
        (r, w)
    })
    .await
    .map_err(|e| MyError::Invalid(format!("replay task failed: {e}")))?;
    let (rs, rerr) = reader_out.map_err(|e| MyError::io(binlog.display(), e))?;
    let (ws, werr) = writer_out.map_err(|e| MyError::io(client.display(), e))?;
    // The client's failure first: the reader dies of a closed pipe when the client gives up.
    if !ws.success() {
        return Err(MyError::Invalid(format!(
            "replaying the binlog into {} failed ({ws}): {}",
            target.display(),
            werr.trim()
        )));
    }
    if !rs.success() {
        return Err(MyError::Invalid(format!(
            "{} failed ({rs}): {}",
            binlog.display(),
            rerr.trim()
        )));
    }
    Ok(())
}
