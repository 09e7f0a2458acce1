//! `binlog-fill/` objects: the events MariaDB withheld from a streamed file (its `Annotate_rows`),
//! read back from the server once the file is closed, checked against what was stored, and kept
//! beside the segments so that `binlog-fetch` gives the file back byte for byte.

use std::collections::BTreeMap;

use tracing::info;

use super::binlog::{event_type, Event, EventHeader, Events, FLAG_IN_USE, MAGIC};
use super::segment::{list_segments, read_segment};
use super::server::{client_program, MysqlUrl};
use super::MyError;
use crate::repo::crypto::MetaKind;
use crate::repo::layout::ObjectKey;
use crate::repo::Repository;
use crate::store::PutOutcome;

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
    url.add_connection_args(&mut cmd, &program);
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

pub(super) async fn read_fill(
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
pub(super) fn merge_fill(
    meta: &super::segment::SegmentMeta,
    bytes: &[u8],
    fill: &BTreeMap<u64, Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
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
