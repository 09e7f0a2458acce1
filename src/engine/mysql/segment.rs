//! Binlog segments: runs of whole events of one binlog file, stored as one object each.
//!
//! Segments of a source form one chain, numbered in the order they were taken from the servers,
//! whichever server that was (a failover changes the server, not the chain). The key carries what a
//! planner needs without reading the object:
//!
//! `binlog/<source>/<seq:012>-<first event time>-<last event time>-<server id>-<start>-<end>-<file>`
//!
//! The object is `HLMBIN01`, a little-endian u32 header length, the sealed JSON header
//! ([`SegmentMeta`]), then the sealed zstd-compressed events. Both parts are sealed with the key
//! bound in, so a segment cannot be passed off under another name or position.

use std::fmt;
use std::io::Read;

use base64::Engine;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::binlog::{Events, Gtid, GtidPos};
use super::MyError;
use crate::repo::crypto::{Keys, MetaKind};
use crate::repo::layout::{ObjectKey, ObjectKind};
use crate::repo::Repository;
use crate::store::PutOutcome;

pub const SEGMENT_MAGIC: &[u8; 8] = b"HLMBIN01";
const MAX_HEADER: u32 = 1 << 20;
/// Event positions are 32-bit: no binlog file reaches past this.
const MAX_BINLOG_POSITION: u64 = u32::MAX as u64;

/// What a segment holds; sealed in its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentMeta {
    pub source: String,
    pub seq: u64,
    /// The server whose binlog file this is (`@@server_id`) and its version.
    pub server_id: u32,
    pub server_version: String,
    pub file: String,
    /// The timestamp of the file's format description event: with the server id and the file
    /// name, what tells two incarnations of `binlog.000001` apart.
    pub file_created: u32,
    /// File positions: the segment is the bytes `start..end` of the file.
    pub start: u64,
    pub end: u64,
    /// Bytes of `start..end` the server did not send (MariaDB withholds Annotate_rows events from
    /// replicas); the stored events are the rest, in order.
    #[serde(default)]
    pub withheld: u64,
    pub events: u64,
    /// Event times (binlog times have one-second resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_event_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_gtid: Option<Gtid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gtid: Option<Gtid>,
    /// The GTID position after the last event of this segment.
    pub gtid_pos: GtidPos,
    /// Whether events end in a CRC-32 (`binlog_checksum=CRC32`).
    pub checksummed: bool,
    /// The file's format description event (base64), needed to read events of a segment that does
    /// not start the file.
    pub format_description: String,
    /// How the run holding this segment began: `file` (by file and position) or `gtid`
    /// (by GTID position, after a failover or a purge).
    pub resumed_by: String,
    /// For a run begun by GTID: the position it asked the server for. Lower than the chain's
    /// position before it when the server did not have the chain's last transactions (a
    /// failover to a replica that had not received them): those are not in the new history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<GtidPos>,
    /// Set when the segment ends with the file's rotation: the name of the next file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
    pub stored_at: DateTime<Utc>,
}

impl SegmentMeta {
    pub fn format_description_bytes(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.format_description)
            .map_err(|e| format!("format description: {e}"))
    }

    pub fn name(&self) -> SegmentName {
        SegmentName {
            seq: self.seq,
            first_time: self.first_event_time.map_or(0, |t| t.timestamp()),
            last_time: self.last_event_time.map_or(0, |t| t.timestamp()),
            server_id: self.server_id,
            start: self.start,
            end: self.end,
            file: self.file.clone(),
        }
    }
}

/// A segment as its key describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    pub seq: u64,
    /// Unix seconds of the first and last events (0 when the segment has none).
    pub first_time: i64,
    pub last_time: i64,
    pub server_id: u32,
    pub start: u64,
    pub end: u64,
    pub file: String,
}

impl SegmentName {
    pub fn key(&self, source: &str) -> String {
        ObjectKey::BinlogSegment {
            source: source.to_owned(),
            name: self.to_string(),
        }
        .key()
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(7, '-');
        let mut next = || parts.next();
        let seq = next()?;
        if seq.len() != 12 {
            return None;
        }
        let name = Self {
            seq: seq.parse().ok()?,
            first_time: next()?.parse().ok()?,
            last_time: next()?.parse().ok()?,
            server_id: next()?.parse().ok()?,
            start: next()?.parse().ok()?,
            end: next()?.parse().ok()?,
            file: next()?.to_owned(),
        };
        (!name.file.is_empty() && !name.file.contains('/') && name.start <= name.end)
            .then_some(name)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:012}-{}-{}-{}-{}-{}-{}",
            self.seq,
            self.first_time,
            self.last_time,
            self.server_id,
            self.start,
            self.end,
            self.file
        )
    }
}

/// The number a binlog file name ends in (`binlog.000042` → 42).
pub(super) fn file_number(file: &str) -> Option<u64> {
    file.rsplit('.').next()?.parse().ok()
}

/// Whether `b` continues `a` on its names alone: same file at the next position, or the next file
/// of the same server from its start.
pub(super) fn continues(a: &SegmentName, b: &SegmentName) -> bool {
    if a.server_id != b.server_id {
        return false;
    }
    if a.file == b.file {
        return b.start == a.end;
    }
    b.start == 4
        && matches!((file_number(&a.file), file_number(&b.file)), (Some(x), Some(y)) if y == x + 1)
}

pub fn segments_prefix(source: &str) -> String {
    ObjectKind::BinlogSegment.source_prefix(source)
}

/// Every segment of `source`, in chain order. Objects under the prefix that are not segments are
/// reported, not skipped silently.
pub async fn list_segments(repo: &Repository, source: &str) -> Result<Vec<SegmentName>, MyError> {
    let prefix = segments_prefix(source);
    let mut names = Vec::new();
    for info in repo.store().list(&prefix).await? {
        let rest = &info.key[prefix.len()..];
        let name = SegmentName::parse(rest).ok_or_else(|| MyError::CorruptSegment {
            key: info.key.clone(),
            why: "not a segment name".into(),
        })?;
        names.push(name);
    }
    names.sort_by_key(|n| n.seq);
    Ok(names)
}

/// Stores a segment. Refuses to replace anything: a segment with the same number written by
/// someone else means two writers for one source.
pub async fn put_segment(
    repo: &Repository,
    meta: &SegmentMeta,
    events: &[u8],
    writer: &str,
) -> Result<String, MyError> {
    claim(repo, &meta.source, meta.seq, writer).await?;
    let key = meta.name().key(&meta.source);
    let keys = repo.keys().clone();
    let level = repo.config().compression.level;
    let header = serde_json::to_vec(meta).map_err(|e| MyError::Invalid(e.to_string()))?;
    let events = events.to_vec();
    let sealing_key = key.clone();
    let object = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let compressed = zstd::bulk::compress(&events, level)?;
        let header = keys.seal_named(MetaKind::Binlog, &format!("{sealing_key}#header"), &header);
        let body = keys.seal_named(MetaKind::Binlog, &sealing_key, &compressed);
        let mut object = Vec::with_capacity(SEGMENT_MAGIC.len() + 4 + header.len() + body.len());
        object.extend_from_slice(SEGMENT_MAGIC);
        object.extend_from_slice(&(header.len() as u32).to_le_bytes());
        object.extend_from_slice(&header);
        object.extend_from_slice(&body);
        Ok(object)
    })
    .await
    .map_err(|e| MyError::Invalid(format!("sealing task failed: {e}")))?
    .map_err(|e| MyError::io(&key, e))?;
    let object = bytes::Bytes::from(object);
    match repo.store().put_if_absent(&key, object.clone()).await? {
        PutOutcome::Created => Ok(key),
        // A put retried after its answer was lost finds its own segment there, byte for byte.
        PutOutcome::AlreadyExists if repo.store().get(&key).await? == object => Ok(key),
        PutOutcome::AlreadyExists => Err(MyError::Invalid(format!(
            "{key} already exists: is another streamer or binlog-push running for source {}?",
            meta.source
        ))),
    }
}

/// The claim of chain number `seq`: whoever creates it first writes that segment. Two writers of
/// one source (two streamers, or a streamer and a push) meet here, and the second stops.
pub fn claim_key(source: &str, seq: u64) -> String {
    ObjectKey::BinlogClaim {
        source: source.to_owned(),
        seq,
    }
    .key()
}

/// A name for this writer: host, process and a random tail.
pub fn writer_id() -> String {
    format!(
        "{}:{}:{:08x}",
        crate::host::host_name(),
        std::process::id(),
        rand::random::<u32>()
    )
}

async fn claim(repo: &Repository, source: &str, seq: u64, writer: &str) -> Result<(), MyError> {
    let key = claim_key(source, seq);
    match repo
        .store()
        .put_if_absent(&key, writer.as_bytes().to_vec())
        .await?
    {
        PutOutcome::Created => Ok(()),
        PutOutcome::AlreadyExists => {
            let holder = repo.store().get(&key).await?;
            if holder.as_ref() == writer.as_bytes() {
                return Ok(()); // ours, from an attempt that failed after claiming
            }
            Err(MyError::Invalid(format!(
                "segment {seq} of source {source} was claimed by {}: another streamer or \
                 binlog-push writes this source; run one writer per source",
                String::from_utf8_lossy(&holder)
            )))
        }
    }
}

/// The highest chain number claimed for `source`, if any.
pub async fn last_claim(repo: &Repository, source: &str) -> Result<Option<u64>, MyError> {
    let prefix = ObjectKind::BinlogClaim.source_prefix(source);
    Ok(repo
        .store()
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|o| o.key[prefix.len()..].parse::<u64>().ok())
        .max())
}

/// What `verify` found in the binlog chains.
#[derive(Debug, Default)]
pub struct ChainCheck {
    pub segments: usize,
    pub read: usize,
    /// (object, problem)
    pub problems: Vec<(String, String)>,
}

/// Checks every source's binlog chain: every object a segment, each following the one before it
/// (by position, or by GTID after a resume), and the segments `read` selects read whole and every
/// event checked.
pub async fn verify_chains(
    repo: &Repository,
    read: impl Fn(u64) -> bool,
) -> Result<ChainCheck, MyError> {
    let mut check = ChainCheck::default();
    let mut sources: Vec<String> = repo
        .store()
        .list(ObjectKind::BinlogSegment.prefix())
        .await?
        .iter()
        .filter_map(|o| {
            o.key
                .strip_prefix(ObjectKind::BinlogSegment.prefix())?
                .split('/')
                .next()
                .map(str::to_owned)
        })
        .collect();
    sources.sort();
    sources.dedup();
    for source in sources {
        let prefix = segments_prefix(&source);
        let mut names = Vec::new();
        for info in repo.store().list(&prefix).await? {
            match SegmentName::parse(&info.key[prefix.len()..]) {
                Some(n) => names.push(n),
                None => check
                    .problems
                    .push((info.key.clone(), "not a segment name".into())),
            }
        }
        names.sort_by_key(|n| n.seq);
        for (i, name) in names.iter().enumerate() {
            check.segments += 1;
            let key = name.key(&source);
            if i > 0 && !continues(&names[i - 1], name) {
                match read_meta(repo, &source, name).await {
                    Ok(meta) if meta.resumed_by == "gtid" => {}
                    Ok(_) => check.problems.push((
                        key.clone(),
                        format!(
                            "does not follow {}: the binlog between them is not stored",
                            names[i - 1].key(&source)
                        ),
                    )),
                    Err(e) => check.problems.push((key.clone(), e.to_string())),
                }
            }
            if read(name.seq) {
                check.read += 1;
                if let Err(e) = read_segment(repo, &source, name).await {
                    check.problems.push((key, e.to_string()));
                }
            }
        }
    }
    Ok(check)
}

fn corrupt(key: &str, why: impl Into<String>) -> MyError {
    MyError::CorruptSegment {
        key: key.to_owned(),
        why: why.into(),
    }
}

fn open_header(keys: &Keys, key: &str, bytes: &[u8]) -> Result<(SegmentMeta, usize), MyError> {
    if bytes.len() < 12 || &bytes[..8] != SEGMENT_MAGIC {
        return Err(corrupt(key, "not a binlog segment object (bad magic)"));
    }
    let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if header_len > MAX_HEADER {
        return Err(corrupt(key, format!("header of {header_len} bytes")));
    }
    let header_len = header_len as usize;
    let sealed = bytes
        .get(12..12 + header_len)
        .ok_or_else(|| corrupt(key, "header cut short"))?;
    let plain = keys
        .open_named(MetaKind::Binlog, &format!("{key}#header"), sealed)
        .map_err(|e| corrupt(key, format!("header: {e}")))?;
    let meta: SegmentMeta =
        serde_json::from_slice(&plain).map_err(|e| corrupt(key, format!("header: {e}")))?;
    Ok((meta, 12 + header_len))
}

/// Reads only a segment's header.
/// Reads the headers of `names` into `metas`, as the planner asked for them; asking again for
/// headers it has is a planner defect, reported rather than looped on.
pub async fn read_metas(
    repo: &Repository,
    source: &str,
    names: Vec<SegmentName>,
    metas: &mut std::collections::BTreeMap<u64, SegmentMeta>,
) -> Result<(), MyError> {
    if names.iter().all(|n| metas.contains_key(&n.seq)) {
        return Err(MyError::Invalid(
            "the binlog planner asked again for headers it has".into(),
        ));
    }
    let read: Vec<SegmentMeta> = futures::stream::iter(names)
        .map(|name| async move { read_meta(repo, source, &name).await })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for meta in read {
        metas.insert(meta.seq, meta);
    }
    Ok(())
}

pub async fn read_meta(
    repo: &Repository,
    source: &str,
    name: &SegmentName,
) -> Result<SegmentMeta, MyError> {
    let key = name.key(source);
    let missing = |e: crate::store::StoreError| -> MyError {
        if e.is_not_found() {
            corrupt(&key, "missing")
        } else {
            e.into()
        }
    };
    let prefix = repo.store().get_range(&key, 0..12).await.map_err(missing)?;
    if prefix.len() < 12 || &prefix[..8] != SEGMENT_MAGIC {
        return Err(corrupt(&key, "not a binlog segment object (bad magic)"));
    }
    let header_len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    if header_len > MAX_HEADER {
        return Err(corrupt(&key, format!("header of {header_len} bytes")));
    }
    let rest = repo
        .store()
        .get_range(&key, 12..12 + u64::from(header_len))
        .await
        .map_err(missing)?;
    let head = [&prefix[..], &rest[..]].concat();
    let (meta, _) = open_header(repo.keys(), &key, &head)?;
    check_meta(&key, name, &meta, source)?;
    Ok(meta)
}

fn check_meta(
    key: &str,
    name: &SegmentName,
    meta: &SegmentMeta,
    source: &str,
) -> Result<(), MyError> {
    if &meta.name() != name || meta.source != source {
        return Err(corrupt(key, "its header does not match its name"));
    }
    Ok(())
}

/// Reads a segment whole and checks every event in it: positions, sizes and checksums.
pub async fn read_segment(
    repo: &Repository,
    source: &str,
    name: &SegmentName,
) -> Result<(SegmentMeta, Vec<u8>), MyError> {
    let key = name.key(source);
    let bytes = match repo.store().get(&key).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Err(corrupt(&key, "missing")),
        Err(e) => return Err(e.into()),
    };
    open_segment(repo.keys(), source, name, &bytes)
}

/// Opens a segment object read whole from `name`'s key under `source`, and checks every event in
/// it against its header. The events are decompressed one byte past the length the header's
/// positions give (at most a binlog file's 4 GiB), so a body cannot make a reader allocate more.
pub fn open_segment(
    keys: &Keys,
    source: &str,
    name: &SegmentName,
    bytes: &[u8],
) -> Result<(SegmentMeta, Vec<u8>), MyError> {
    let key = name.key(source);
    let (meta, body_at) = open_header(keys, &key, bytes)?;
    check_meta(&key, name, &meta, source)?;
    let compressed = keys
        .open_named(MetaKind::Binlog, &key, &bytes[body_at..])
        .map_err(|e| corrupt(&key, format!("events: {e}")))?;
    if meta.end > MAX_BINLOG_POSITION {
        return Err(corrupt(
            &key,
            format!("ends at position {}, past a binlog file's end", meta.end),
        ));
    }
    let expected = meta
        .end
        .checked_sub(meta.start)
        .and_then(|n| n.checked_sub(meta.withheld))
        .ok_or_else(|| corrupt(&key, "its positions do not add up"))?;
    let mut events = Vec::new();
    zstd::stream::read::Decoder::new(&compressed[..])
        .and_then(|d| d.take(expected + 1).read_to_end(&mut events))
        .map_err(|e| corrupt(&key, format!("events: {e}")))?;
    if events.len() as u64 != expected {
        return Err(corrupt(
            &key,
            format!(
                "{} bytes of events, the header says {expected}",
                events.len()
            ),
        ));
    }
    let mut count = 0u64;
    let mut reader = Events::with_holes(&events, meta.start);
    for item in reader.by_ref() {
        let (pos, event) = item.map_err(|e| corrupt(&key, e.to_string()))?;
        if !event.verify_checksum(meta.checksummed) {
            return Err(corrupt(
                &key,
                format!("event at position {pos}: checksum mismatch"),
            ));
        }
        count += 1;
    }
    if reader.position() != meta.end || reader.skipped() != meta.withheld {
        return Err(corrupt(
            &key,
            format!(
                "events end at {} with {} bytes withheld; the header says {} and {}",
                reader.position(),
                reader.skipped(),
                meta.end,
                meta.withheld
            ),
        ));
    }
    if count != meta.events {
        return Err(corrupt(
            &key,
            format!("{count} events, the header says {}", meta.events),
        ));
    }
    Ok((meta, events))
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
