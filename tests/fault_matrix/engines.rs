//! The matrix's database rows: a MariaDB server and a PostgreSQL cluster started once, each with
//! a sentinel row, backed up as configured sources (`notes`: MariaDB dump; `pgl`: PostgreSQL
//! logical) into the cells' repositories; and how a restored dump is judged whole.

use std::path::Path;
use std::process::{Command, Stdio};

use heirloom_backup::config::Config;
use heirloom_backup::jobs::{self, JobContext};
use heirloom_backup::repo::manifest::BackupId;
use heirloom_backup::repo::source::SourceName;

use crate::support;
use crate::support::mysql::MariaDb;
use crate::support::postgres::{bin_dir, PgCluster, PgWorld};

/// What every dump holds, and a restore of it must show.
pub const SENTINEL: &str = "fault-matrix-sentinel";

pub struct Databases {
    _my_dir: tempfile::TempDir,
    _mariadb: MariaDb,
    _pg_world: PgWorld,
    _pg: PgCluster,
    /// The sources `notes` and `pgl`, on the matrix's repository.
    pub config: Config,
}

impl Databases {
    pub async fn start(repo: &Path) -> Self {
        let my_dir = tempfile::tempdir().unwrap();
        let mariadb = MariaDb::start(my_dir.path(), "matrix", 1, true);
        mariadb.load_notes_app();
        mariadb.sql(&format!(
            "INSERT INTO notes.markers (name) VALUES ('{SENTINEL}')"
        ));
        let pg_world = PgWorld::new();
        let mut pg = pg_world.plain_cluster("matrix");
        pg.start();
        pg.client()
            .await
            .batch_execute(&format!(
                "CREATE TABLE markers (name text PRIMARY KEY); INSERT INTO markers VALUES ('{SENTINEL}');
                 CREATE TABLE filler AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g;"
            ))
            .await
            .unwrap();
        let sources = format!(
            "  notes: {{ kind: mysql, url: \"{}\" }}\n  pgl: {{ kind: postgres, url: \"{}\", mode: logical }}\n",
            mariadb.url(),
            pg.url()
        );
        let config = Config::parse(
            &support::config_text(repo, Path::new("/nonexistent-key"), &sources),
            "heirloom.yaml",
        )
        .unwrap();
        Self {
            _my_dir: my_dir,
            _mariadb: mariadb,
            _pg_world: pg_world,
            _pg: pg,
            config,
        }
    }

    /// `backup SOURCE` of a configured database source, through the job API.
    pub async fn backup(&self, ctx: &JobContext, source: &str) -> Result<BackupId, String> {
        let name: SourceName = source.parse()?;
        jobs::backup_source(ctx, &self.config, &name, &Default::default())
            .await
            .map(|summary| summary.id)
            .map_err(|e| e.to_string())
    }
}

/// Whether restored bytes are a database dump, and if so whether it is whole: a MariaDB dump
/// ends with mariadb-dump's completion line and holds the sentinel; a PostgreSQL custom-format
/// archive reads back through `pg_restore` (every data block decompressed) to SQL holding it.
/// `None` for bytes that are no dump.
pub fn judge_dump(bytes: &[u8]) -> Option<Result<(), String>> {
    if bytes.starts_with(b"PGDMP") {
        return Some(judge_pg_archive(bytes));
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
    if head.contains("MariaDB dump") || head.contains("MySQL dump") {
        let text = String::from_utf8_lossy(bytes);
        let whole = text.trim_end().lines().last().unwrap_or_default();
        return Some(
            match (
                whole.starts_with("-- Dump completed"),
                text.contains(SENTINEL),
            ) {
                (true, true) => Ok(()),
                (false, _) => Err(format!("the dump stops before its end: {whole:?}")),
                (_, false) => Err("the dump lacks the sentinel row".into()),
            },
        );
    }
    None
}

fn judge_pg_archive(bytes: &[u8]) -> Result<(), String> {
    let mut child = Command::new(bin_dir().join("pg_restore"))
        .args(["--file=-", "--data-only"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("pg_restore: {e}"))?;
    let mut input = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    let sql = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), sql.contains(SENTINEL)) {
        (true, true) => Ok(()),
        (false, _) => Err(format!(
            "pg_restore refuses the archive: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        (_, false) => Err("the archive lacks the sentinel row".into()),
    }
}
