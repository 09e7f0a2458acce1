//! A source's chain of binlog segments as a writer continues it: where it ends, and the binlog
//! being assembled into its next segment. Shared by the streamer and `binlog-push`.

use std::time::Instant;

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use tracing::debug;

use super::binlog::{event_type, Boundary, Event, EventHeader, Events, GroupTracker, GtidPos};
use super::segment::{last_claim, list_segments, put_segment, read_meta, writer_id, SegmentMeta};
use super::MyError;
use crate::repo::Repository;

/// What a streaming run stored.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub segments: u64,
    pub bytes: u64,
    pub transactions: u64,
    /// Where the chain ends now.
    pub last: Option<SegmentMeta>,
}

/// The server a binlog comes from.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub server_id: u32,
    pub version: String,
}

/// The binlog being assembled into the next segment.
pub(super) struct Pending {
    pub(super) file: String,
    pub(super) file_created: u32,
    pub(super) format_description: Vec<u8>,
    pub(super) checksummed: bool,
    /// File position of `buf[0]`; `None` until the first event of a run arrives.
    pub(super) start: Option<u64>,
    pub(super) buf: Vec<u8>,
    /// The file position after the last event in `buf`.
    pub(super) next_pos: u64,
    /// Bytes of `buf`, and the file position, at the last point between transactions.
    pub(super) committed: usize,
    pub(super) committed_pos: u64,
    pub(super) gtid_running: GtidPos,
    pub(super) gtid_committed: GtidPos,
    pub(super) tracker: GroupTracker,
    pub(super) resumed_by: String,
    pub(super) resumed_from: Option<GtidPos>,
    pub(super) since: Instant,
}

impl Pending {
    /// Appends an event at the end of the file read so far, and notes a point between
    /// transactions after it.
    pub(super) fn append(&mut self, ev: &Event<'_>) -> Boundary {
        self.buf.extend_from_slice(ev.bytes);
        self.next_pos = u64::from(ev.header.log_pos);
        if let Some((gtid, _)) = ev.mariadb_gtid() {
            self.gtid_running.apply(gtid);
        }
        if let Some(list) = ev.mariadb_gtid_list() {
            for gtid in list {
                if !self.gtid_running.contains_gtid(&gtid) {
                    self.gtid_running.apply(gtid);
                }
            }
        }
        let boundary = self.tracker.observe(ev, self.checksummed);
        if matches!(boundary, Boundary::Ends | Boundary::Outside) && self.tracker.between() {
            self.committed = self.buf.len();
            self.committed_pos = self.next_pos;
            self.gtid_committed = self.gtid_running.clone();
        }
        boundary
    }

    pub(super) fn position(&self) -> Option<u64> {
        if self.buf.is_empty() {
            self.start
        } else {
            Some(self.next_pos)
        }
    }
}

pub(super) struct Chain<'a> {
    pub(super) writer: String,
    pub(super) repo: &'a Repository,
    pub(super) source: &'a str,
    pub(super) next_seq: u64,
    pub(super) last: Option<SegmentMeta>,
    pub(super) report: StreamReport,
    pub(super) gtid: GtidPos,
}

impl<'a> Chain<'a> {
    /// The chain of `source` as stored: where it ends and what comes next.
    pub(super) async fn open(repo: &'a Repository, source: &'a str) -> Result<Self, MyError> {
        let names = list_segments(repo, source).await?;
        let last = match names.last() {
            Some(name) => Some(read_meta(repo, source, name).await?),
            None => None,
        };
        // Past every number claimed, too: a writer that stopped between its claim and its
        // segment leaves a number nobody will write.
        let claimed = last_claim(repo, source).await?;
        let next_seq = names
            .last()
            .map(|n| n.seq)
            .max(claimed)
            .map_or(0, |n| n + 1);
        Ok(Chain {
            repo,
            source,
            writer: writer_id(),
            next_seq,
            gtid: last
                .as_ref()
                .map(|m| m.gtid_pos.clone())
                .unwrap_or_default(),
            last,
            report: StreamReport::default(),
        })
    }

    /// Stores the committed part of `pending` as the next segment.
    pub(super) async fn flush(
        &mut self,
        pending: &mut Pending,
        server: &Origin,
    ) -> Result<(), MyError> {
        if pending.committed == 0 {
            return Ok(());
        }
        let Some(start) = pending.start else {
            return Ok(());
        };
        let bytes = &pending.buf[..pending.committed];
        let mut meta = SegmentMeta {
            source: self.source.to_owned(),
            seq: self.next_seq,
            server_id: server.server_id,
            server_version: server.version.clone(),
            file: pending.file.clone(),
            file_created: pending.file_created,
            start,
            end: pending.committed_pos,
            withheld: 0,
            events: 0,
            first_event_time: None,
            last_event_time: None,
            first_gtid: None,
            last_gtid: None,
            gtid_pos: pending.gtid_committed.clone(),
            checksummed: pending.checksummed,
            format_description: base64::engine::general_purpose::STANDARD
                .encode(&pending.format_description),
            resumed_by: pending.resumed_by.clone(),
            resumed_from: pending.resumed_from.clone(),
            rotated_to: None,
            stored_at: Utc::now(),
        };
        let mut transactions = 0;
        let mut events = Events::with_holes(bytes, start);
        for item in events.by_ref() {
            let (_, event) =
                item.map_err(|e| MyError::Invalid(format!("{}: {e}", pending.file)))?;
            meta.events += 1;
            let t = event_time(&event.header);
            if t.is_some() {
                meta.first_event_time = meta.first_event_time.or(t);
                meta.last_event_time = t;
            }
            if let Some((gtid, _)) = event.mariadb_gtid() {
                meta.first_gtid = meta.first_gtid.or(Some(gtid));
                meta.last_gtid = Some(gtid);
                transactions += 1;
            }
            if event.header.type_code == event_type::ROTATE && !event.header.is_artificial() {
                meta.rotated_to = event.rotate(pending.checksummed).map(|(name, _)| name);
            }
        }
        meta.withheld = events.skipped();
        if events.position() != meta.end {
            return Err(MyError::Invalid(format!(
                "{}: events end at {}, expected {}",
                pending.file,
                events.position(),
                meta.end
            )));
        }
        let key = put_segment(self.repo, &meta, bytes, &self.writer).await?;
        debug!(%key, "segment stored");
        self.report.segments += 1;
        self.report.bytes += bytes.len() as u64;
        self.report.transactions += transactions;
        self.next_seq += 1;
        self.gtid = meta.gtid_pos.clone();
        self.last = Some(meta.clone());
        self.report.last = Some(meta);
        pending.buf.drain(..pending.committed);
        pending.start = Some(pending.committed_pos);
        pending.committed = 0;
        pending.since = Instant::now();
        Ok(())
    }
}

fn event_time(header: &EventHeader) -> Option<DateTime<Utc>> {
    (header.timestamp != 0)
        .then(|| Utc.timestamp_opt(i64::from(header.timestamp), 0).single())
        .flatten()
}
