//! Base backups of MySQL/MariaDB: a `mariadb-dump` (or `mysqldump`) in one consistent snapshot,
//! streamed through the pipeline, with the binlog coordinates and GTID position the dump itself
//! states recorded in the manifest.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use crate::progress::Progress;
use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use tracing::info;

use super::binlog::GtidPos;
use super::server::{client_program, probe, require_binlog, MysqlUrl};
use super::MyError;
use crate::engine::process::ChildOutput;
use crate::pipeline::backup::{commit_backup, store_files, BackupSummary, Cutting, SourceFile};
use crate::pipeline::Concurrency;
use crate::repo::lease::{Lease, LeaseKind};
use crate::repo::manifest::{BackupKind, MysqlPoint};
use crate::repo::source::SourceName;
use crate::repo::{RepoError, Repository};

const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "sys", "performance_schema", "information_schema"];
const HEAD_KEEP: usize = 256 * 1024;
const TAIL_KEEP: usize = 64 * 1024;

/// The head and tail of a dump as it streams by: where the dump states its coordinates.
#[derive(Default)]
struct Sniffed {
    head: Vec<u8>,
    tail: Vec<u8>,
    coordinates_seen: Option<DateTime<Utc>>,
}

struct Sniffer<R> {
    inner: R,
    seen: Arc<Mutex<Sniffed>>,
}

impl<R: Read> Read for Sniffer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let data = &buf[..n];
        if seen.head.len() < HEAD_KEEP {
            let take = (HEAD_KEEP - seen.head.len()).min(n);
            seen.head.extend_from_slice(&data[..take]);
            if seen.coordinates_seen.is_none() && find(&seen.head, b"MASTER_LOG_POS=").is_some() {
                seen.coordinates_seen = Some(Utc::now());
            }
        }
        seen.tail.extend_from_slice(data);
        if seen.tail.len() > 2 * TAIL_KEEP {
            let cut = seen.tail.len() - TAIL_KEEP;
            seen.tail.drain(..cut);
        }
        Ok(n)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The binlog file and position a dump states (`CHANGE MASTER TO MASTER_LOG_FILE='f', MASTER_LOG_POS=n`).
pub fn dump_coordinates(head: &str) -> Option<(String, u64)> {
    let line = head
        .lines()
        .find(|l| l.contains("MASTER_LOG_FILE=") && l.contains("MASTER_LOG_POS="))?;
    let file_at = line.find("MASTER_LOG_FILE='")? + "MASTER_LOG_FILE='".len();
    let file_end = file_at + line[file_at..].find('\'')?;
    let pos_at = line.find("MASTER_LOG_POS=")? + "MASTER_LOG_POS=".len();
    let digits: String = line[pos_at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((line[file_at..file_end].to_owned(), digits.parse().ok()?))
}

/// The GTID position a MariaDB dump states (`SET GLOBAL gtid_slave_pos='0-1-42';`).
pub fn dump_gtid_pos(text: &str) -> Option<String> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("gtid_slave_pos='"))?;
    let at = line.find("gtid_slave_pos='")? + "gtid_slave_pos='".len();
    let end = at + line[at..].find('\'')?;
    Some(line[at..end].to_owned())
}

/// Dumps the server `url` names (its database, or every database but the system schemas) into the
/// repository.
#[allow(clippy::too_many_arguments)]
pub async fn dump_backup(
    repo: &Repository,
    source: &SourceName,
    url: &MysqlUrl,
    labels: BTreeMap<String, String>,
    concurrency: Concurrency,
    progress: Progress,
    now: DateTime<Utc>,
) -> Result<BackupSummary, MyError> {
    let clock = std::time::Instant::now();
    let mut conn = url.connect().await?;
    let info = probe(url, &mut conn).await?;
    require_binlog(url, &info)?;
    let databases: Vec<String> = match url.database() {
        Some(db) => vec![db.to_owned()],
        None => {
            let all: Vec<String> = conn
                .query("SELECT schema_name FROM information_schema.schemata ORDER BY schema_name")
                .await
                .map_err(|e| MyError::sql(url.display(), e))?;
            all.into_iter()
                .filter(|d| !SYSTEM_SCHEMAS.contains(&d.to_ascii_lowercase().as_str()))
                .collect()
        }
    };
    drop(conn);
    if databases.is_empty() {
        return Err(MyError::Invalid(format!(
            "{}: no databases to dump (only system schemas)",
            url.display()
        )));
    }
    let program = if info.is_mariadb {
        client_program("mariadb-dump", "mysqldump")?
    } else {
        client_program("mysqldump", "mariadb-dump")?
    };

    let lease = Lease::acquire(repo.store(), LeaseKind::Shared, "backup", now)
        .await
        .map_err(RepoError::from)?;
    let seen = Arc::new(Mutex::new(Sniffed::default()));
    let result = async {
        let mut cmd = url.command(&program);
        cmd.args([
            "--single-transaction",
            "--master-data=2",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--quick",
        ]);
        if info.is_mariadb {
            cmd.arg("--gtid");
        }
        cmd.arg("--databases").args(&databases);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let sniffed = seen.clone();
        let program_name = program.display().to_string();
        let files = Box::new(std::iter::once_with(move || {
            let mut child = cmd
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("running {program_name}: {e}")))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("the dump has no stdout"))?;
            Ok(SourceFile {
                path: "dump.sql".to_owned(),
                mode: None,
                reader: Box::new(Sniffer {
                    inner: ChildOutput::new(child, stdout, program_name),
                    seen: sniffed,
                }),
            })
        }));
        let stored = store_files(repo, files, concurrency, progress, &Cutting::default()).await?;
        let (head, tail, consistent_at) = {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            (
                String::from_utf8_lossy(&s.head).into_owned(),
                String::from_utf8_lossy(&s.tail).into_owned(),
                s.coordinates_seen,
            )
        };
        let (binlog_file, binlog_pos) = dump_coordinates(&head).ok_or_else(|| {
            MyError::Invalid(format!(
                "{}: the dump states no binlog coordinates (CHANGE MASTER TO ... MASTER_LOG_POS)",
                url.display()
            ))
        })?;
        let gtid_pos = if info.is_mariadb {
            let text = dump_gtid_pos(&tail).ok_or_else(|| {
                MyError::Invalid(format!(
                    "{}: the dump states no GTID position (gtid_slave_pos)",
                    url.display()
                ))
            })?;
            GtidPos::parse(&text).map_err(MyError::Invalid)?
        } else {
            GtidPos::default()
        };
        let mut manifest = repo.new_manifest(source, BackupKind::MysqlDump, labels, now);
        manifest.mysql = Some(MysqlPoint {
            server_id: info.server_id,
            server_version: info.version.clone(),
            binlog_file,
            binlog_pos,
            gtid_pos,
            consistent_at: consistent_at.unwrap_or(now),
            databases: databases.clone(),
        });
        let summary = commit_backup(repo, &lease, manifest, stored, clock).await?;
        info!(id = %summary.id, databases = databases.len(), "MySQL dump complete");
        Ok(summary)
    }
    .await;
    lease.release().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_are_read_from_the_dump() {
        let head = "-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n\
                    -- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=943;\n";
        assert_eq!(
            dump_coordinates(head),
            Some(("binlog.000001".to_owned(), 943))
        );
        assert_eq!(dump_coordinates("-- nothing here\n"), None);
        let tail = "-- Preferably use GTID to start replication from GTID position:\n\n\
                    -- SET GLOBAL gtid_slave_pos='0-1-3';\n";
        assert_eq!(dump_gtid_pos(tail), Some("0-1-3".to_owned()));
        assert_eq!(
            dump_gtid_pos("SET GLOBAL gtid_slave_pos='';"),
            Some(String::new())
        );
    }
}
