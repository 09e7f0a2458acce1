//! `binlog-push SOURCE`: closed binlog files read from the server's directory, for hosts where a
//! replica connection is not allowed; and `binlog-fetch`: a binlog file put back together from its
//! segments.
//!
//! Pushed files join the same chain as streamed ones, with the same segment metadata, continuing
//! exactly after the last stored event: by position on the same server, by GTID on another.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use tracing::{debug, info};

use super::binlog::{
    event_type, Boundary, Event, EventHeader, Events, GroupTracker, GtidPos, FLAG_IN_USE,
    HEADER_LEN, MAGIC,
};
use super::segment::{list_segments, read_segment};
use super::server::{client_program, MysqlUrl};
use super::stream::{Chain, Origin, Pending, StreamReport};
use super::MyError;
use crate::repo::crypto::MetaKind;
use crate::repo::layout::ObjectKey;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::{RepoError, Repository};
use crate::store::PutOutcome;

/// The closed binlog files of a server directory, in order, from its `.index` file (every file it
/// lists but the last, which the server is writing).
pub fn closed_files(dir: &Path) -> Result<Vec<PathBuf>, MyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| MyError::io(dir.display(), e))?;
    let mut indexes: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "index")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("relay"))
        })
        .collect();
    indexes.sort();
    let index = match indexes.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(MyError::Invalid(format!(
                "{}: no binlog index file (*.index): is this the server's log_bin directory?",
                dir.display()
            )))
        }
        _ => {
            return Err(MyError::Invalid(format!(
                "{}: several binlog index files ({}); point --dir at one server's binlog directory",
                dir.display(),
                indexes
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let text = std::fs::read_to_string(&index).map_err(|e| MyError::io(index.display(), e))?;
    let mut files: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let p = Path::new(l);
            let name = p
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| p.to_owned());
            dir.join(name)
        })
        .collect();
    files.pop(); // the file being written
    Ok(files)
}

fn file_number(name: &str) -> Option<u64> {
    name.rsplit('.').next()?.parse().ok()
}

/// Reads one event from a binlog file; `None` at its end.
fn read_event(
    reader: &mut impl BufRead,
    path: &Path,
    pos: u64,
) -> Result<Option<Vec<u8>>, MyError> {
    if reader
        .fill_buf()
        .map_err(|e| MyError::io(path.display(), e))?
        .is_empty()
    {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .map_err(|e| MyError::io(format!("{} at {pos}", path.display()), e))?;
    let parsed = EventHeader::parse(&header).ok_or_else(|| {
        MyError::Invalid(format!("{} at {pos}: bad event header", path.display()))
    })?;
    let size = parsed.size as usize;
    if !(HEADER_LEN..=(1 << 30)).contains(&size) {
        return Err(MyError::Invalid(format!(
            "{} at {pos}: an event of {size} bytes",
            path.display()
        )));
    }
    let mut event = vec![0u8; size];
    event[..HEADER_LEN].copy_from_slice(&header);
    reader
        .read_exact(&mut event[HEADER_LEN..])
        .map_err(|e| MyError::io(format!("{} at {pos}", path.display()), e))?;
    Ok(Some(event))
}

/// Pushes every closed binlog file of `dir` the chain of `source` does not hold yet.
pub async fn binlog_push(
    repo: &Repository,
    source: &str,
    dir: &Path,
    flush_bytes: usize,
) -> Result<StreamReport, MyError> {
    let files = closed_files(dir)?;
    let mut chain = Chain::open(repo, source).await?;
    let lease = Lease::acquire(repo.store(), LeaseKind::Shared, "binlog-push", Utc::now())
        .await
        .map_err(RepoError::from)?;
    let mut result = Ok(());
    for path in &files {
        result = push_file(&mut chain, path, flush_bytes).await;
        if result.is_err() {
            break;
        }
    }
    lease.release().await;
    result.map(|()| chain.report.clone())
}

async fn push_file(chain: &mut Chain<'_>, path: &Path, flush_bytes: usize) -> Result<(), MyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| MyError::Invalid(format!("{}: no file name", path.display())))?;
    let file = File::open(path).map_err(|e| MyError::io(path.display(), e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|e| MyError::io(path.display(), e))?;
    if magic != MAGIC {
        return Err(MyError::Invalid(format!(
            "{}: not a binlog file",
            path.display()
        )));
    }
    let Some(fde) = read_event(&mut reader, path, 4)? else {
        return Ok(());
    };
    let fde_event = Event {
        header: EventHeader::parse(&fde).ok_or_else(|| {
            MyError::Invalid(format!("{}: no format description", path.display()))
        })?,
        bytes: &fde,
    };
    if fde_event.header.type_code != event_type::FORMAT_DESCRIPTION {
        return Err(MyError::Invalid(format!(
            "{}: does not start with a format description",
            path.display()
        )));
    }
    let origin = Origin {
        server_id: fde_event.header.server_id,
        version: fde
            .get(HEADER_LEN + 2..HEADER_LEN + 52)
            .map(|v| String::from_utf8_lossy(v).trim_end_matches('\0').to_owned())
            .unwrap_or_default(),
    };
    let created = fde_event.header.timestamp;

    // What of this file the chain holds already.
    enum From {
        Position(u64),
        Gtid(GtidPos),
        Skip,
    }
    let from = match &chain.last {
        None => From::Position(4),
        Some(last) if last.server_id == origin.server_id => {
            match (file_number(&last.file), file_number(&name)) {
                _ if last.file == name && last.file_created == created => {
                    if last.rotated_to.is_some() {
                        From::Skip
                    } else {
                        From::Position(last.end)
                    }
                }
                (Some(have), Some(this)) if this < have => From::Skip,
                (Some(have), Some(this)) if this == have + 1 => From::Position(4),
                _ => From::Gtid(last.gtid_pos.clone()),
            }
        }
        Some(last) => From::Gtid(last.gtid_pos.clone()),
    };
    let (resumed_by, resumed_from, skip_from) = match &from {
        From::Skip => return Ok(()),
        From::Position(p) => ("file", None, *p),
        From::Gtid(g) => ("gtid", Some(g.clone()), 0),
    };
    let checksummed = fde_event.checksum_alg() == Some(1);
    let mut pending = Pending {
        file: name.clone(),
        file_created: created,
        format_description: fde.clone(),
        checksummed,
        start: None,
        buf: Vec::new(),
        next_pos: 4,
        committed: 0,
        committed_pos: 4,
        gtid_running: chain.gtid.clone(),
        gtid_committed: chain.gtid.clone(),
        tracker: GroupTracker::default(),
        resumed_by: resumed_by.to_owned(),
        resumed_from: resumed_from.clone(),
        since: Instant::now(),
    };
    let mut tracker = GroupTracker::default();
    let mut pos = 4u64;
    let mut met_start = skip_from <= 4;
    let mut event = Some(fde);
    while let Some(bytes) = event.take() {
        let header = EventHeader::parse(&bytes).ok_or_else(|| {
            MyError::Invalid(format!("{} at {pos}: bad event header", path.display()))
        })?;
        let ev = Event {
            header,
            bytes: &bytes,
        };
        if header.log_pos != 0 && u64::from(header.log_pos) != pos + bytes.len() as u64 {
            return Err(MyError::Invalid(format!(
                "{} at {pos}: the event says it ends at {}",
                path.display(),
                header.log_pos
            )));
        }
        if !ev.verify_checksum(checksummed) {
            return Err(MyError::Invalid(format!(
                "{} at {pos}: checksum mismatch",
                path.display()
            )));
        }
        let boundary = tracker.observe(&ev, checksummed);
        met_start |= pos == skip_from;
        let take = match &resumed_from {
            None => pos >= skip_from,
            Some(_) if pending.start.is_some() => true,
            // By GTID: the transactions the chain holds are skipped; the run starts at the first
            // one it does not hold.
            Some(have) => {
                boundary == Boundary::Starts
                    && !ev
                        .mariadb_gtid()
                        .is_some_and(|(g, _)| have.contains_gtid(&g))
            }
        };
        if take {
            if pending.start.is_none() {
                pending.start = Some(pos);
            }
            pending.append(&ev);
            if pending.buf.len() >= flush_bytes {
                chain.flush(&mut pending, &origin).await?;
            }
        }
        pos += bytes.len() as u64;
        event = read_event(&mut reader, path, pos)?;
    }
    if !met_start {
        return Err(MyError::Invalid(format!(
            "{}: no event starts at {skip_from}, where the stored binlog of it ends: not the same file",
            path.display()
        )));
    }
    chain.flush(&mut pending, &origin).await?;
    if !pending.buf.is_empty() {
        return Err(MyError::Invalid(format!(
            "{}: ends inside a transaction; is it still being written?",
            path.display()
        )));
    }
    debug!(file = %name, "pushed");
    info!(file = %name, "binlog file stored");
    Ok(())
}

/// Writes binlog file `file` of server `server_id` back together from the stored segments.
/// Fails, naming what is missing, unless the store holds every byte of it.
pub async fn binlog_fetch(
    repo: &Repository,
    source: &str,
    file: &str,
    server_id: Option<u32>,
    out: &mut impl Write,
) -> Result<u64, MyError> {
    let names = list_segments(repo, source).await?;
    let mut parts: Vec<_> = names
        .iter()
        .filter(|n| n.file == file && server_id.is_none_or(|s| n.server_id == s))
        .collect();
    if parts.is_empty() {
        return Err(MyError::Invalid(format!(
            "no stored segment of {file} for source {source}"
        )));
    }
    let servers: std::collections::BTreeSet<u32> = parts.iter().map(|n| n.server_id).collect();
    if servers.len() > 1 {
        return Err(MyError::Invalid(format!(
            "{file} is stored from several servers ({servers:?}): choose one with --server-id"
        )));
    }
    parts.sort_by_key(|n| n.start);
    // A file whose last event closes it: the server cleared "in use" in its description then.
    let closed = match parts.last() {
        Some(last) => {
            let (meta, bytes) = read_segment(repo, source, last).await?;
            Events::with_holes(&bytes, meta.start)
                .filter_map(Result::ok)
                .last()
                .is_some_and(|(_, e)| {
                    matches!(e.header.type_code, event_type::ROTATE | event_type::STOP)
                })
        }
        None => false,
    };
    let mut expected = 4u64;
    let mut written = 4u64;
    out.write_all(&MAGIC)
        .map_err(|e| MyError::io("the output", e))?;
    for name in &parts {
        if name.start != expected {
            return Err(MyError::Gap {
                source_name: source.to_owned(),
                why: format!("{file}: bytes {expected}..{} are not stored", name.start),
            });
        }
        let (meta, mut bytes) = read_segment(repo, source, name).await?;
        if meta.withheld > 0 {
            if let Some(fill) = read_fill(repo, source, &meta).await? {
                bytes =
                    merge_fill(&meta, &bytes, &fill).ok_or_else(|| MyError::CorruptSegment {
                        key: fill_key(source, meta.server_id, meta.file_created, file),
                        why: format!("does not complete {}..{}", meta.start, meta.end),
                    })?;
            }
        }
        if (bytes.len() as u64) < meta.end - meta.start {
            return Err(MyError::Gap {
                source_name: source.to_owned(),
                why: format!(
                    "{file}: {} bytes of {}..{} were withheld by the server when it was streamed \
                     (MariaDB's Annotate_rows events); binlog-push stores closed files whole",
                    meta.withheld, meta.start, meta.end
                ),
            });
        }
        if closed && meta.start == 4 && bytes.len() > HEADER_LEN {
            bytes[17] &= !(FLAG_IN_USE as u8);
        }
        out.write_all(&bytes)
            .map_err(|e| MyError::io("the output", e))?;
        expected = meta.end;
        written += bytes.len() as u64;
    }
    Ok(written)
}

/// The object completing the streamed segments of one file with the events the server withheld.
pub fn fill_key(source: &str, server_id: u32, file_created: u32, file: &str) -> String {
    ObjectKey::BinlogFill {
        source: source.to_owned(),
        name: format!("{server_id}-{file_created}-{file}"),
    }
    .key()
}

fn encode_fill(events: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (pos, bytes) in events {
        out.extend_from_slice(&pos.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn decode_fill(key: &str, mut data: &[u8]) -> Result<BTreeMap<u64, Vec<u8>>, MyError> {
    let bad = || MyError::CorruptSegment {
        key: key.to_owned(),
        why: "malformed fill".into(),
    };
    let mut events = BTreeMap::new();
    while !data.is_empty() {
        let pos = u64::from_le_bytes(
            data.get(..8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let len = u32::from_le_bytes(
            data.get(8..12)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let bytes = data.get(12..12 + len).ok_or_else(bad)?;
        events.insert(pos, bytes.to_vec());
        data = &data[12 + len..];
    }
    Ok(events)
}

/// Completes the streamed segments of a closed file: reads the file whole from the server with
/// `mariadb-binlog --read-from-remote-server --raw` (which asks for every event), checks every
/// stored event against it, and stores the events the stream lacked. Returns the bytes filled.
pub async fn fill_withheld(
    repo: &Repository,
    source: &str,
    url: &MysqlUrl,
    server_id: u32,
    file: &str,
    file_created: u32,
) -> Result<u64, MyError> {
    let key = fill_key(source, server_id, file_created, file);
    let mut parts: Vec<_> = list_segments(repo, source)
        .await?
        .into_iter()
        .filter(|n| n.server_id == server_id && n.file == file)
        .collect();
    parts.sort_by_key(|n| n.start);
    let mut stored = Vec::new();
    for name in &parts {
        let (meta, bytes) = read_segment(repo, source, name).await?;
        if meta.file_created == file_created {
            stored.push((meta, bytes));
        }
    }
    if stored.iter().all(|(m, _)| m.withheld == 0) {
        return Ok(0);
    }
    let program = client_program("mariadb-binlog", "mysqlbinlog")?;
    let dir = tempfile::Builder::new()
        .prefix("heirloom-fill-")
        .tempdir()
        .map_err(|e| MyError::io("a temporary directory", e))?;
    let mut cmd = std::process::Command::new(&program);
    cmd.args(["--read-from-remote-server", "--raw"]);
    url.add_connection_args(&mut cmd);
    cmd.arg(format!("--result-file={}/", dir.path().display()))
        .arg(file)
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| MyError::Invalid(format!("mariadb-binlog task failed: {e}")))?
        .map_err(|e| MyError::io(program.display(), e))?;
    if !out.status.success() {
        return Err(MyError::Invalid(format!(
            "reading {file} from {} failed ({}): {}",
            url.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let raw_path = dir.path().join(file);
    let raw = std::fs::read(&raw_path).map_err(|e| MyError::io(raw_path.display(), e))?;
    if raw.get(..4) != Some(&MAGIC[..]) {
        return Err(MyError::Invalid(format!(
            "{file} from {}: not a binlog file",
            url.display()
        )));
    }
    let mut server_events = BTreeMap::new();
    for item in Events::new(&raw[4..], 4) {
        let (pos, event) = item.map_err(|e| MyError::Invalid(format!("{file}: {e}")))?;
        if pos == 4 && event.header.timestamp != file_created {
            return Err(MyError::Invalid(format!(
                "{file} on {} is not the file streamed (created {}, the stored one {file_created})",
                url.display(),
                event.header.timestamp
            )));
        }
        server_events.insert(pos, event.bytes.to_vec());
    }
    let mut fill: Vec<(u64, Vec<u8>)> = Vec::new();
    for (meta, bytes) in &stored {
        let mut expected = meta.start;
        let check = |from: u64, to: u64, fill: &mut Vec<(u64, Vec<u8>)>| -> Result<(), MyError> {
            let mut at = from;
            while at < to {
                let event = server_events.get(&at).ok_or_else(|| {
                    MyError::Invalid(format!(
                        "{file}: no event of the server's file starts at {at}"
                    ))
                })?;
                fill.push((at, event.clone()));
                at += event.len() as u64;
            }
            if at != to {
                return Err(MyError::Invalid(format!(
                    "{file}: the server's events do not fill {from}..{to}"
                )));
            }
            Ok(())
        };
        for item in Events::with_holes(bytes, meta.start) {
            let (pos, event) = item.map_err(|e| MyError::Invalid(e.to_string()))?;
            if pos > expected {
                check(expected, pos, &mut fill)?;
            }
            let theirs = server_events.get(&pos).ok_or_else(|| {
                MyError::Invalid(format!(
                    "{file}: no event of the server's file starts at {pos}"
                ))
            })?;
            let mut ours = event.bytes.to_vec();
            let mut theirs = theirs.clone();
            if event.header.type_code == event_type::FORMAT_DESCRIPTION && ours.len() > 18 {
                ours[17] &= !(FLAG_IN_USE as u8);
                theirs[17] &= !(FLAG_IN_USE as u8);
            }
            if ours != theirs {
                return Err(MyError::Invalid(format!(
                    "{file}: the stored event at {pos} differs from the server's"
                )));
            }
            expected = pos + event.bytes.len() as u64;
        }
        if expected < meta.end {
            check(expected, meta.end, &mut fill)?;
        }
    }
    let filled: u64 = fill.iter().map(|(_, b)| b.len() as u64).sum();
    let level = repo.config().compression.level;
    let compressed =
        zstd::bulk::compress(&encode_fill(&fill), level).map_err(|e| MyError::io(&key, e))?;
    let sealed = repo.keys().seal_named(MetaKind::Binlog, &key, &compressed);
    match repo.store().put_if_absent(&key, sealed).await? {
        PutOutcome::Created | PutOutcome::AlreadyExists => {}
    }
    info!(file, bytes = filled, "withheld events stored");
    Ok(filled)
}

async fn read_fill(
    repo: &Repository,
    source: &str,
    meta: &super::segment::SegmentMeta,
) -> Result<Option<BTreeMap<u64, Vec<u8>>>, MyError> {
    let (server_id, file_created, file) = (meta.server_id, meta.file_created, meta.file.as_str());
    let key = fill_key(source, server_id, file_created, file);
    let sealed = match repo.store().get(&key).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let corrupt = |why: String| MyError::CorruptSegment {
        key: key.clone(),
        why,
    };
    let compressed = repo
        .keys()
        .open_named(MetaKind::Binlog, &key, &sealed)
        .map_err(|e| corrupt(e.to_string()))?;
    let plain = zstd::stream::decode_all(&compressed[..]).map_err(|e| corrupt(e.to_string()))?;
    let events = decode_fill(&key, &plain)?;
    for (pos, bytes) in &events {
        let header =
            EventHeader::parse(bytes).ok_or_else(|| corrupt(format!("bad event at {pos}")))?;
        if u64::from(header.log_pos) != pos + bytes.len() as u64 {
            return Err(corrupt(format!(
                "event at {pos} does not end where it says"
            )));
        }
        let event = Event { header, bytes };
        if !event.verify_checksum(meta.checksummed) {
            return Err(corrupt(format!("event at {pos}: checksum mismatch")));
        }
    }
    Ok(Some(events))
}

/// A segment's events with the withheld ones put back in their places; `None` when the fill does
/// not close every hole exactly.
fn merge_fill(
    meta: &super::segment::SegmentMeta,
    bytes: &[u8],
    fill: &BTreeMap<u64, Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity((meta.end - meta.start) as usize);
    let mut expected = meta.start;
    let close = |from: u64, to: u64, out: &mut Vec<u8>| -> Option<()> {
        let mut at = from;
        while at < to {
            let event = fill.get(&at)?;
            out.extend_from_slice(event);
            at += event.len() as u64;
        }
        (at == to).then_some(())
    };
    for item in Events::with_holes(bytes, meta.start) {
        let (pos, event) = item.ok()?;
        if pos > expected {
            close(expected, pos, &mut out)?;
        }
        out.extend_from_slice(event.bytes);
        expected = pos + event.bytes.len() as u64;
    }
    if expected < meta.end {
        close(expected, meta.end, &mut out)?;
    }
    Some(out)
}
