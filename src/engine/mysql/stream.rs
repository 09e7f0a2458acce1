//! `stream SOURCE`: the binlog taken as a replica takes it, event by event, and stored as segments
//! of whole transactions every few seconds, so the data-loss window is the flush interval.
//!
//! On a restart the chain continues exactly after its last stored event: by file and position on
//! the same server, by GTID position on another one (a promoted replica after a failover), so
//! nothing is missed and nothing is stored twice.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use mysql_async::binlog::BinlogVersion;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Row};
use tracing::{debug, info, warn};

use super::binlog::{event_type, Boundary, Event, EventHeader, GroupTracker};
pub use super::chain::StreamReport;
use super::chain::{Chain, Origin, Pending};
use super::fill::fill_withheld;
use super::resume::{choose_start, history_meets, Meet, StartAt};
use super::server::{probe, require_binlog, MysqlUrl};
use super::MyError;
use crate::engine::StreamStatus;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::{RepoError, Repository};

/// How the streamer behaves.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Store what has arrived at least this often (the data-loss window).
    pub flush_interval: Duration,
    /// ... or as soon as this many bytes of whole transactions are waiting.
    pub flush_bytes: usize,
    /// The heartbeat period asked of the server; a link silent for three periods is dead.
    pub heartbeat: Duration,
    /// The server id this streamer registers with: unique among the server's replicas.
    pub replica_server_id: u32,
    /// Stop at the end of the binlog the server has now, instead of waiting for more.
    pub once: bool,
    /// After a lost connection, keep trying for this long before giving up.
    pub reconnect_for: Duration,
    /// Told after every flush how far the store is complete, and whether the server is on the line.
    pub status: StreamStatus,
}

impl StreamOptions {
    pub fn new(source: &str) -> Self {
        Self {
            flush_interval: Duration::from_secs(2),
            flush_bytes: 8 << 20,
            heartbeat: Duration::from_secs(5),
            replica_server_id: default_replica_id(source),
            once: false,
            reconnect_for: Duration::from_secs(300),
            status: StreamStatus::default(),
        }
    }
}

/// A server id derived from the source name, in a range real servers rarely use.
pub fn default_replica_id(source: &str) -> u32 {
    0x7000_0000 | (crc32fast::hash(source.as_bytes()) & 0x0fff_ffff)
}

/// Streams the binlog of the server `url` names into the chain of `source` until `shutdown`
/// resolves (or, with `once`, until the end of what the server has).
pub async fn stream(
    repo: &Repository,
    source: &str,
    url: &MysqlUrl,
    options: &StreamOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<StreamReport, MyError> {
    let mut chain = Chain::open(repo, source).await?;
    let lease = Lease::acquire(repo.store(), LeaseKind::Shared, "stream", Utc::now())
        .await
        .map_err(RepoError::from)?;
    tokio::pin!(shutdown);
    let mut started = false;
    let mut failing_since: Option<Instant> = None;
    let result = loop {
        let ended = session(&mut chain, url, options, &mut shutdown).await;
        options.status.set_connected(false);
        match ended {
            Ok(Ended::Shutdown | Ended::Caught) => break Ok(()),
            Ok(Ended::Lost(e)) => {
                started = true;
                failing_since = None;
                warn!(error = %e, "binlog stream interrupted; reconnecting");
            }
            // A first connection that fails is a configuration to fix, not a network to wait for.
            Err(e) if !started || !retryable(&e) => break Err(e),
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > options.reconnect_for {
                    break Err(e);
                }
                warn!(error = %e, "cannot reach the server; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut shutdown => break Ok(()),
        }
    };
    lease.release().await;
    result.map(|()| chain.report)
}

fn mark_stored(status: &StreamStatus, last_heard: Option<chrono::DateTime<Utc>>) {
    if let Some(at) = last_heard {
        status.stored_through(at);
    }
}

fn retryable(e: &MyError) -> bool {
    match e {
        MyError::Behind { .. } => true,
        MyError::Sql { source, .. } => matches!(
            source,
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)
        ),
        MyError::Invalid(why) => why.contains("no answer within"),
        _ => false,
    }
}

enum Ended {
    Shutdown,
    /// `once`: the end of the server's binlog was reached.
    Caught,
    /// The link was lost after the session had started; what arrived whole is stored.
    Lost(MyError),
}

async fn binary_logs(url: &MysqlUrl, conn: &mut Conn) -> Result<Vec<(String, u64)>, MyError> {
    let rows: Vec<Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| MyError::sql(url.display(), e))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.get::<String, _>(0)?, row.get::<u64, _>(1)?)))
        .collect())
}

/// One connection: from choosing where to start to the end of the link.
async fn session(
    chain: &mut Chain<'_>,
    url: &MysqlUrl,
    options: &StreamOptions,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Ended, MyError> {
    let sql = |e| MyError::sql(url.display(), e);
    let mut conn = url.connect().await?;
    let info = probe(url, &mut conn).await?;
    require_binlog(url, &info)?;
    let origin = Origin {
        server_id: info.server_id,
        version: info.version.clone(),
    };
    if info.server_id == options.replica_server_id {
        return Err(MyError::Invalid(format!(
            "{}: the server's id {} is the streamer's replica id; set another replica_server_id",
            url.display(),
            info.server_id
        )));
    }
    let logs = binary_logs(url, &mut conn).await?;
    let mut start = choose_start(chain.last.as_ref(), info.server_id, info.is_mariadb, &logs)?;
    if let StartAt::Gtid(state) = &start {
        match history_meets(state, &info.gtid_binlog_state) {
            Meet::Holds => {}
            Meet::Behind => {
                return Err(MyError::Behind {
                    server: url.display().to_owned(),
                    has: info.gtid_binlog_pos.to_string(),
                    stored: state.to_string(),
                });
            }
            Meet::Forks(fork) => {
                // A primary without the chain's last transactions: promoted before it received
                // them. Its history meets the chain at `fork`.
                warn!(
                    server = url.display(),
                    stored = %state,
                    server_has = %info.gtid_binlog_pos,
                    continuing_from = %fork,
                    "the server's history does not hold the last transactions stored from the previous \
                     primary (lost in the failover); the stored binlog continues from where the histories meet"
                );
                start = StartAt::Gtid(fork);
            }
            Meet::Unknown => {
                return Err(MyError::Gap {
                    source_name: chain.source.to_owned(),
                    why: format!(
                        "{} (binlog state {}) has no transaction of the server the stored binlog \
                         ends with (GTID {state}): is log_slave_updates off? take a new base backup",
                        url.display(),
                        info.gtid_binlog_pos
                    ),
                });
            }
        }
    }
    info!(
        source = chain.source,
        server = url.display(),
        server_id = info.server_id,
        ?start,
        "streaming binlog"
    );
    if info.is_mariadb {
        // Without this MariaDB replaces its own events (GTIDs, annotations) with dummies.
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .map_err(sql)?;
    }
    conn.query_drop(format!(
        "SET @master_heartbeat_period = {}",
        options.heartbeat.as_nanos()
    ))
    .await
    .map_err(sql)?;
    let (file_name, pos, resumed_by, expect_start) = match &start {
        StartAt::Oldest(file) => (file.clone(), 4, "file", Some(4)),
        StartAt::File { file, pos } => (file.clone(), *pos, "file", Some(*pos)),
        StartAt::Gtid(gtid) => {
            conn.query_drop(format!("SET @slave_connect_state = '{gtid}'"))
                .await
                .map_err(sql)?;
            conn.query_drop("SET @slave_gtid_strict_mode = 1")
                .await
                .map_err(sql)?;
            conn.query_drop("SET @slave_gtid_ignore_duplicates = 0")
                .await
                .map_err(sql)?;
            (String::new(), 4, "gtid", None)
        }
    };
    let mut request = BinlogStreamRequest::new(options.replica_server_id)
        .with_filename(file_name.as_bytes())
        .with_pos(pos);
    if options.once {
        request = request.with_non_blocking();
    }
    let mut stream = conn.get_binlog_stream(request).await.map_err(sql)?;

    let base_gtid = match &start {
        StartAt::Gtid(g) => g.clone(),
        _ => chain.gtid.clone(),
    };
    let mut pending = Pending {
        file: file_name.clone(),
        file_created: 0,
        format_description: Vec::new(),
        checksummed: info.checksummed,
        start: expect_start,
        buf: Vec::new(),
        next_pos: 0,
        committed: 0,
        committed_pos: 0,
        gtid_running: base_gtid.clone(),
        gtid_committed: base_gtid,
        tracker: GroupTracker::default(),
        resumed_by: resumed_by.to_owned(),
        resumed_from: match &start {
            StartAt::Gtid(g) => Some(g.clone()),
            _ => None,
        },
        since: Instant::now(),
    };
    // The file whose events come next, as the server's rotations tell it.
    let mut next_file: Option<(String, u64)> = None;
    let mut may_jump = resumed_by == "gtid";
    let mut file_withheld = false;
    let mut completed: std::collections::HashSet<(String, u32)> = Default::default();
    let mut fills: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let silence = options.heartbeat * 3;
    // When the server last sent an event or a heartbeat: after a flush, the store holds every
    // transaction it had committed by then.
    let mut last_heard: Option<chrono::DateTime<Utc>> = None;
    options.status.set_connected(true);
    let mut ticker = tokio::time::interval(options.flush_interval.min(Duration::from_secs(1)));
    let outcome = loop {
        let item = tokio::select! {
            _ = &mut *shutdown => break Ended::Shutdown,
            _ = ticker.tick() => {
                if pending.since.elapsed() >= options.flush_interval {
                    chain.flush(&mut pending, &origin).await?;
                    mark_stored(&options.status, last_heard);
                }
                continue;
            }
            item = tokio::time::timeout(silence, stream.next()) => item,
        };
        let event = match item {
            Err(_) => {
                break Ended::Lost(MyError::Invalid(format!(
                    "{}: no event or heartbeat for {}s",
                    url.display(),
                    silence.as_secs()
                )))
            }
            Ok(None) => {
                if options.once {
                    break Ended::Caught;
                }
                break Ended::Lost(MyError::Invalid(format!(
                    "{}: the server ended the binlog stream",
                    url.display()
                )));
            }
            Ok(Some(Err(e))) => {
                let e = sql(e);
                if is_purged(&e) {
                    return Err(MyError::Gap {
                        source_name: chain.source.to_owned(),
                        why: format!(
                            "the server no longer has the binlog after the stored position ({start:?}): \
                             it was purged before it was streamed ({e}); take a new base backup"
                        ),
                    });
                }
                break Ended::Lost(e);
            }
            Ok(Some(Ok(event))) => {
                last_heard = Some(Utc::now());
                event
            }
        };
        let mut raw = Vec::with_capacity(event.header().event_size() as usize);
        event
            .write(BinlogVersion::Version4, &mut raw)
            .map_err(|e| MyError::Invalid(format!("re-encoding a binlog event: {e}")))?;
        let Some(header) = EventHeader::parse(&raw) else {
            continue;
        };
        let ev = Event {
            header,
            bytes: &raw,
        };
        if let Some(original) = event.checksum() {
            if raw.len() >= 4 && raw[raw.len() - 4..] != original {
                break Ended::Lost(MyError::Invalid(format!(
                    "{}: a binlog event of type {} arrived with a bad checksum",
                    url.display(),
                    header.type_code
                )));
            }
        }
        match header.type_code {
            event_type::HEARTBEAT => continue,
            event_type::ROTATE if header.is_artificial() || header.log_pos == 0 => {
                if let Some((name, pos)) = ev.rotate(pending.checksummed) {
                    debug!(file = %name, pos, "server rotates the stream");
                    next_file = Some((name, pos));
                }
                continue;
            }
            event_type::FORMAT_DESCRIPTION => {
                let at = u64::from(header.log_pos).checked_sub(raw.len() as u64);
                let real_start = header.log_pos != 0 && !header.is_artificial() && at == Some(4);
                match next_file.take() {
                    Some((name, _)) if name != pending.file || real_start => {
                        chain.flush(&mut pending, &origin).await?;
                        if !pending.file.is_empty()
                            && pending.file != name
                            && pending.file_created != 0
                        {
                            // The file before is closed (a rotation, or a restart that ended it).
                            complete_file(
                                chain,
                                url,
                                &origin,
                                &pending.file.clone(),
                                pending.file_created,
                                &mut completed,
                                &mut fills,
                            );
                        }
                        if !pending.buf.is_empty() {
                            return Err(MyError::Invalid(format!(
                                "{}: {} ended inside a transaction",
                                url.display(),
                                pending.file
                            )));
                        }
                        pending.file = name;
                        pending.start = real_start.then_some(4);
                        pending.tracker = GroupTracker::default();
                    }
                    Some(_) => {}
                    None if real_start => {
                        return Err(MyError::Invalid(format!(
                            "{}: a new binlog file began without the rotation naming it",
                            url.display()
                        )))
                    }
                    None => {}
                }
                pending.file_created = header.timestamp;
                pending.format_description = raw.clone();
                pending.checksummed = ev.checksum_alg() == Some(1);
                if let Some(stored) = chain.last.as_ref() {
                    if resumed_by == "file"
                        && stored.server_id == info.server_id
                        && stored.file == pending.file
                        && stored.file_created != header.timestamp
                    {
                        return Err(MyError::Invalid(format!(
                            "{}: {} is not the file the stored binlog continues (created {} here, {} in the store)",
                            url.display(),
                            pending.file,
                            header.timestamp,
                            stored.file_created
                        )));
                    }
                }
                if !real_start {
                    // Sent again to describe a file read from the middle: not part of the file here.
                    continue;
                }
            }
            _ => {}
        }
        if header.log_pos == 0 || header.is_artificial() {
            continue;
        }
        let at = u64::from(header.log_pos)
            .checked_sub(raw.len() as u64)
            .ok_or_else(|| {
                MyError::Invalid(format!("{}: event ends before it starts", url.display()))
            })?;
        match pending.position() {
            None => pending.start = Some(at),
            Some(expected) if at == expected => {}
            // Resumed by GTID: the server skips what the chain has; the run starts at the first
            // transaction it sends.
            Some(expected) if may_jump && at > expected => {
                pending.buf.clear();
                pending.committed = 0;
                pending.start = Some(at);
            }
            // Inside a transaction: an event the server withheld (MariaDB's Annotate_rows).
            Some(expected) if at > expected && !pending.tracker.between() => {
                debug!(at, expected, "event withheld by the server");
                file_withheld = true;
            }
            Some(expected) if at < expected => {
                debug!(at, expected, "event already stored; skipped");
                continue;
            }
            Some(expected) => {
                return Err(MyError::Gap {
                    source_name: chain.source.to_owned(),
                    why: format!(
                        "{}: the server sent {} from position {at}, but the stored binlog ends at {expected}",
                        url.display(),
                        pending.file
                    ),
                })
            }
        }
        if pending.format_description.is_empty() {
            return Err(MyError::Invalid(format!(
                "{}: events before any format description",
                url.display()
            )));
        }
        let boundary = pending.append(&ev);
        if boundary == Boundary::Starts {
            may_jump = false;
        }
        if header.type_code == event_type::ROTATE {
            // The file is complete.
            chain.flush(&mut pending, &origin).await?;
            mark_stored(&options.status, last_heard);
            if std::mem::take(&mut file_withheld) {
                complete_file(
                    chain,
                    url,
                    &origin,
                    &pending.file,
                    pending.file_created,
                    &mut completed,
                    &mut fills,
                );
            }
            if let Some((name, pos)) = ev.rotate(pending.checksummed) {
                next_file = Some((name, pos));
            }
            continue;
        }
        if pending.buf.len() >= options.flush_bytes
            || pending.since.elapsed() >= options.flush_interval
        {
            chain.flush(&mut pending, &origin).await?;
            mark_stored(&options.status, last_heard);
        }
    };
    // Whatever arrived whole is kept; a transaction cut by the end of the link is taken again.
    chain.flush(&mut pending, &origin).await?;
    if let Ended::Lost(e) = &outcome {
        if !pending.buf.is_empty() {
            debug!(
                bytes = pending.buf.len(),
                "incomplete transaction dropped; it is read again"
            );
        }
        debug!(error = %e, "session ended");
    }
    let _ = stream.close().await;
    // Files closed during the session are completed before it ends.
    for task in fills {
        let _ = task.await;
    }
    Ok(outcome)
}

/// Stores the events of a closed file that the stream lacked, once per file and session, in the
/// background so the stream goes on meanwhile; a failure is a warning (restores do not need them;
/// `binlog-fetch` of the file says what lacks).
fn complete_file(
    chain: &Chain<'_>,
    url: &MysqlUrl,
    origin: &Origin,
    file: &str,
    created: u32,
    completed: &mut std::collections::HashSet<(String, u32)>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    if !completed.insert((file.to_owned(), created)) {
        return;
    }
    let repo = chain.repo.clone();
    let source = chain.source.to_owned();
    let url = url.clone();
    let server_id = origin.server_id;
    let file = file.to_owned();
    tasks.retain(|t| !t.is_finished());
    tasks.push(tokio::spawn(async move {
        let key = super::fill::fill_key(&source, server_id, created, &file);
        if repo.store().get_range(&key, 0..1).await.is_ok() {
            return;
        }
        if let Err(e) = fill_withheld(&repo, &source, &url, server_id, &file, created).await {
            warn!(
                file,
                error = %e,
                "the events the server withheld from the stream of a closed file could not be \
                 stored; binlog-fetch of it will say so (restores do not need them)"
            );
        }
    }));
}

fn is_purged(e: &MyError) -> bool {
    match e {
        MyError::Sql {
            source: mysql_async::Error::Server(s),
            ..
        } => s.code == 1236,
        _ => false,
    }
}
