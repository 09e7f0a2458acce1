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

use super::binlog::{Boundary, Events, GroupTracker, Gtid, GtidPos, FLAG_IN_USE, MAGIC};
use super::segment::{continues, list_segments, read_meta, read_segment, SegmentName};
use super::server::{client_program, MysqlUrl};
use super::MyError;
use crate::engine::process::{feed_file, WaitStderr};
use crate::pipeline::Concurrency;
use crate::repo::manifest::{BackupId, BackupKind, Manifest, MysqlPoint};
use crate::repo::Repository;

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MyTarget {
    /// Everything stored.
    Latest,
    /// The state as of this instant (binlog times are whole seconds: transactions logged in the
    /// second holding the instant, or later, are left out).
    Time(DateTime<Utc>),
    /// Up to and including this transaction.
    Gtid(Gtid),
    /// One dump, as it was taken.
    Backup(BackupId),
}

/// A restore, decided before anything is touched.
#[derive(Debug, Clone, Serialize)]
pub struct MyPlan {
    pub source: String,
    pub backup: BackupId,
    pub backup_consistent_at: DateTime<Utc>,
    pub backup_binlog: String,
    pub backup_gtid_pos: String,
    pub databases: Vec<String>,
    pub dump_bytes: u64,
    /// What the replay stops at, in words.
    pub stop: String,
    /// The segments to replay, in order.
    #[serde(skip)]
    pub segments: Vec<SegmentName>,
    pub segment_count: usize,
    /// The binlog range: first and last segment as `server:file:start-end`.
    pub binlog_from: Option<String>,
    pub binlog_to: Option<String>,
    pub binlog_bytes: u64,
    /// Where the stored binlog has holes between the dump and the target; a plan with gaps is
    /// refused.
    pub gaps: Vec<String>,
    /// Failovers inside the range where the new primary lacked transactions stored from the old
    /// one: those are not in the history the restore follows.
    pub forks: Vec<String>,
    /// Per chosen segment: the GTID position a later failover in the range continued from.
    #[serde(skip)]
    caps: Vec<Option<GtidPos>>,
    #[serde(skip)]
    target: MyTarget,
    #[serde(skip)]
    start_gtid: GtidPos,
    #[serde(skip)]
    start_file_pos: Option<(u32, String, u64)>,
}

impl MyPlan {
    pub fn is_complete(&self) -> bool {
        self.gaps.is_empty()
    }
}

fn describe(n: &SegmentName, at_start: bool) -> String {
    format!(
        "server {} {}:{}",
        n.server_id,
        n.file,
        if at_start { n.start } else { n.end }
    )
}

/// Chooses the dump and the binlog segments for `target`.
pub async fn plan(
    repo: &Repository,
    source: &str,
    target: &MyTarget,
    kind: BackupKind,
) -> Result<MyPlan, MyError> {
    let manifests = repo.manifests(Some(source)).await?;
    let dumps: Vec<(&Manifest, &MysqlPoint)> = manifests
        .iter()
        .filter(|m| m.kind == kind)
        .filter_map(|m| Some((m, m.mysql.as_ref()?)))
        .collect();
    if dumps.is_empty() {
        return Err(MyError::Invalid(match kind {
            BackupKind::MysqlPhysical => format!(
                "source {source} has no physical backups to restore into a directory: run \
                 `heirloom-backup backup {source}` with mode: physical, or restore into a server URL"
            ),
            _ => format!(
                "source {source} has no MySQL dumps to restore into a server: run \
                 `heirloom-backup backup {source}` first"
            ),
        }));
    }
    let chosen = match target {
        MyTarget::Backup(id) => dumps.iter().find(|(m, _)| &m.id == id).copied().ok_or_else(|| {
            MyError::Invalid(format!("{id} is not a MySQL dump of source {source}"))
        })?,
        MyTarget::Latest => newest(dumps.clone())
            .ok_or_else(|| MyError::Invalid(format!("source {source} has no MySQL dumps")))?,
        MyTarget::Time(t) => newest(
            dumps
                .iter()
                .filter(|(_, p)| p.consistent_at <= *t)
                .copied()
                .collect(),
        )
        .ok_or_else(|| {
            let first = dumps
                .iter()
                .map(|(_, p)| p.consistent_at)
                .min()
                .unwrap_or(*t);
            MyError::Invalid(format!(
                "{} is before the first dump of source {source} (consistent at {}): nothing to restore from",
                t.to_rfc3339(),
                first.to_rfc3339()
            ))
        })?,
        MyTarget::Gtid(g) => newest(
            dumps
                .iter()
                .filter(|(_, p)| {
                    GtidPos::parse(&p.gtid_pos)
                        .map(|pos| pos.0.get(&g.domain).is_none_or(|have| have.seq <= g.seq))
                        .unwrap_or(false)
                })
                .copied()
                .collect(),
        )
        .ok_or_else(|| {
            MyError::Invalid(format!(
                "every dump of source {source} is past GTID {g}: nothing to restore from"
            ))
        })?,
    };
    let (chosen, p) = chosen;
    let p = p.clone();
    let start_gtid = GtidPos::parse(&p.gtid_pos).map_err(MyError::Invalid)?;
    let mut plan = MyPlan {
        source: source.to_owned(),
        backup: chosen.id.clone(),
        backup_consistent_at: p.consistent_at,
        backup_binlog: format!("{}:{}", p.binlog_file, p.binlog_pos),
        backup_gtid_pos: p.gtid_pos.clone(),
        databases: p.databases.clone(),
        dump_bytes: chosen.size(),
        stop: String::new(),
        segments: Vec::new(),
        segment_count: 0,
        binlog_from: None,
        binlog_to: None,
        binlog_bytes: 0,
        gaps: Vec::new(),
        forks: Vec::new(),
        caps: Vec::new(),
        target: target.clone(),
        start_gtid,
        start_file_pos: Some((p.server_id, p.binlog_file.clone(), p.binlog_pos)),
    };
    if matches!(target, MyTarget::Backup(_)) {
        plan.stop = format!(
            "the dump itself (consistent at {})",
            p.consistent_at.to_rfc3339()
        );
        return Ok(plan);
    }

    let names = list_segments(repo, source).await?;
    // Where the dump's point falls in the chain: by file and position on the dumped server, else
    // by GTID position.
    let by_pos = names.iter().position(|n| {
        n.server_id == p.server_id
            && n.file == p.binlog_file
            && n.start <= p.binlog_pos
            && p.binlog_pos < n.end
    });
    let first = match by_pos {
        Some(i) => Some(i),
        None => {
            // The dump's point is at the end of a segment, or on another server: the first
            // segment whose GTID position goes past the dump's.
            let mut found = names
                .iter()
                .position(|n| {
                    n.server_id == p.server_id && n.file == p.binlog_file && n.end == p.binlog_pos
                })
                .map(|i| i + 1);
            if found.is_none() && !plan.start_gtid.is_empty() {
                // The chain's GTID position only grows (but at a failover that lost
                // transactions): the first segment whose end holds the dump's position, found by
                // bisection over the headers.
                let (mut lo, mut hi) = (0usize, names.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let meta = read_meta(repo, source, &names[mid]).await?;
                    if meta.gtid_pos.contains(&plan.start_gtid) {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                if lo < names.len() {
                    let meta = read_meta(repo, source, &names[lo]).await?;
                    // Ending exactly at the dump's position, it holds nothing to replay.
                    found = Some(if meta.gtid_pos == plan.start_gtid {
                        lo + 1
                    } else {
                        lo
                    });
                }
            }
            found
        }
    };
    let stop_second = match target {
        MyTarget::Time(t) => Some(t.timestamp()),
        _ => None,
    };
    let Some(first) = first.filter(|&i| i < names.len()) else {
        // Nothing stored after the dump.
        match target {
            MyTarget::Latest => {
                plan.stop = "the end of the dump: no binlog stored after it".into();
                return Ok(plan);
            }
            _ => {
                plan.gaps.push(format!(
                    "no binlog stored after the dump's point ({} / GTID {}){}",
                    plan.backup_binlog,
                    p.gtid_pos,
                    names
                        .last()
                        .map(|n| format!("; the stored binlog ends at {}", describe(n, false)))
                        .unwrap_or_default()
                ));
                plan.stop = describe_stop(target);
                return Ok(plan);
            }
        }
    };
    let mut chosen_names = Vec::new();
    let mut forks: Vec<(usize, GtidPos)> = Vec::new();
    let mut reached = false;
    for (k, name) in names[first..].iter().enumerate() {
        if k > 0 {
            let prev = &names[first + k - 1];
            if !continues(prev, name) {
                let meta = read_meta(repo, source, name).await?;
                if meta.resumed_by != "gtid" {
                    plan.gaps.push(format!(
                        "between {} and {}",
                        describe(prev, false),
                        describe(name, true)
                    ));
                }
                if let Some(from) = meta.resumed_from {
                    let before = read_meta(repo, source, prev).await?.gtid_pos;
                    if !from.contains(&before) {
                        plan.forks.push(format!(
                            "server {} continued from GTID {from}, not {before}: transactions \
                             stored after {from} from server {} are not in its history",
                            name.server_id, prev.server_id
                        ));
                    }
                    forks.push((k, from));
                }
            }
        }
        chosen_names.push(name.clone());
        match target {
            MyTarget::Time(_) if stop_second.is_some_and(|s| name.last_time >= s) => {
                reached = true;
                break;
            }
            MyTarget::Gtid(g) => {
                let meta = read_meta(repo, source, name).await?;
                if meta.gtid_pos.contains_gtid(g) {
                    reached = true;
                    break;
                }
            }
            _ => {}
        }
    }
    if !reached && !matches!(target, MyTarget::Latest) {
        let end = names.last().map(|n| describe(n, false)).unwrap_or_default();
        let last_time = names
            .last()
            .and_then(|n| Utc.timestamp_opt(n.last_time, 0).single())
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        plan.gaps.push(format!(
            "the stored binlog ends at {end} (last event {last_time}), before the target; \
             restore --latest, or wait for the streamer to store more"
        ));
    }
    plan.binlog_bytes = chosen_names.iter().map(|n| n.end - n.start).sum();
    plan.binlog_from = chosen_names.first().map(|n| describe(n, true));
    plan.binlog_to = chosen_names.last().map(|n| describe(n, false));
    plan.segment_count = chosen_names.len();
    plan.caps = vec![None; chosen_names.len()];
    let mut cap: Option<GtidPos> = None;
    for i in (0..chosen_names.len()).rev() {
        plan.caps[i] = cap.clone();
        if let Some((_, from)) = forks.iter().find(|(k, _)| *k == i) {
            cap = Some(match cap {
                None => from.clone(),
                Some(c) => lower(&c, from),
            });
        }
    }
    plan.segments = chosen_names;
    plan.stop = describe_stop(target);
    Ok(plan)
}

/// Per domain, the lower of two positions (a domain missing from either is missing).
fn lower(a: &GtidPos, b: &GtidPos) -> GtidPos {
    let mut out = GtidPos::default();
    for (d, ga) in &a.0 {
        if let Some(gb) = b.0.get(d) {
            out.apply(if ga.seq <= gb.seq { *ga } else { *gb });
        }
    }
    out
}

fn describe_stop(target: &MyTarget) -> String {
    match target {
        MyTarget::Latest => "the end of the stored binlog".into(),
        MyTarget::Time(t) => format!(
            "before the first transaction logged at or after {} (binlog times are whole seconds)",
            Utc.timestamp_opt(t.timestamp(), 0)
                .single()
                .unwrap_or(*t)
                .to_rfc3339()
        ),
        MyTarget::Gtid(g) => format!("after transaction {g}"),
        MyTarget::Backup(id) => format!("the dump {id}"),
    }
}

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
            why: plan.gaps.join("; "),
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
    client: &std::path::PathBuf,
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
    let stop_second = match &plan.target {
        MyTarget::Time(t) => Some(t.timestamp()),
        _ => None,
    };
    let mut out: Option<(std::fs::File, (u32, String, u32))> = None;
    let mut applied = plan.start_gtid.clone();
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
            if let MyTarget::Gtid(target) = &plan.target {
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
    client: &std::path::PathBuf,
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

fn newest<'a>(
    candidates: Vec<(&'a Manifest, &'a MysqlPoint)>,
) -> Option<(&'a Manifest, &'a MysqlPoint)> {
    candidates.into_iter().max_by_key(|(_, p)| p.consistent_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(seq: u64, server: u32, file: &str, start: u64, end: u64) -> SegmentName {
        SegmentName {
            seq,
            first_time: 0,
            last_time: 0,
            server_id: server,
            start,
            end,
            file: file.into(),
        }
    }

    #[test]
    fn continuity_on_names() {
        let a = name(0, 1, "binlog.000001", 4, 900);
        assert!(continues(&a, &name(1, 1, "binlog.000001", 900, 1000)));
        assert!(!continues(&a, &name(1, 1, "binlog.000001", 950, 1000)));
        assert!(continues(&a, &name(1, 1, "binlog.000002", 4, 100)));
        assert!(!continues(&a, &name(1, 1, "binlog.000003", 4, 100)));
        assert!(!continues(&a, &name(1, 2, "binlog.000001", 900, 1000)));
    }
}
