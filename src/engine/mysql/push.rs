//! `binlog-push SOURCE`: closed binlog files read from the server's directory, for hosts where a
//! replica connection is not allowed; and `binlog-fetch`: a binlog file put back together from its
//! segments.
//!
//! Pushed files join the same chain as streamed ones, with the same segment metadata, continuing
//! exactly after the last stored event: by position on the same server, by GTID on another.

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
use super::chain::{Chain, Origin, Pending, StreamReport};
use super::fill::{fill_key, merge_fill, read_fill};
use super::segment::{file_number, list_segments, read_segment};
use super::MyError;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::{RepoError, Repository};

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
