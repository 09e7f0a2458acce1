//! A restore drill of PostgreSQL: the restore carried out into a scratch cluster (a temporary
//! directory, a private port, reachable only through its own socket) or a target, the server
//! started until recovery ends, then checked: out of recovery, every table of every database read
//! through and counted, `pg_amcheck` over every heap and B-tree index. The scratch cluster is
//! stopped and removed afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::scratch::{free_port, scratch_dir};
use super::server::{as_owner_of, connect, pg_program, start_and_wait, stop};
use super::PgError;
use crate::context::{JobContext, JobError};
use crate::engine::drill::{restore_into, DrillOutcome, DrillRequest};
use crate::engine::process::last_lines;
use crate::engine::{RestoreOptions, Source};
use crate::redact::redact;
use crate::repo::drill_record::TableRows;
use crate::restore::target::Destination;

/// Carries the drill out; a step that fails ends it, recorded in the outcome.
pub(super) async fn drill(
    source: &dyn Source,
    source_url: Option<&str>,
    ctx: &JobContext,
    request: &DrillRequest,
) -> DrillOutcome {
    let began = Instant::now();
    let mut out = DrillOutcome::new(match &request.into {
        None => "a scratch PostgreSQL cluster (removed afterwards)".to_owned(),
        Some(t) => t.given.clone(),
    });
    let result = match request.into.as_ref().map(|t| &t.destination) {
        None => match scratch_dir("heirloom-drill-") {
            Ok(dir) => {
                into_directory(
                    source,
                    source_url,
                    ctx,
                    request,
                    dir.path(),
                    &mut out,
                    began,
                )
                .await
            }
            Err(e) => Err(e.into()),
        },
        Some(Destination::Directory(dir)) => {
            into_directory(source, source_url, ctx, request, dir, &mut out, began).await
        }
        Some(Destination::Server(url)) => {
            into_server(source, ctx, request, url, &mut out, began).await
        }
    };
    if let Err(e) = result {
        out.fail(e.to_string());
    }
    out
}

/// Restores into `dir`, starts a private server on it, checks it, and stops it.
async fn into_directory(
    source: &dyn Source,
    source_url: Option<&str>,
    ctx: &JobContext,
    request: &DrillRequest,
    dir: &Path,
    out: &mut DrillOutcome,
    began: Instant,
) -> Result<(), JobError> {
    let port = free_port()?;
    let options = RestoreOptions {
        port: Some(port),
        start: false,
        ..request.options.clone()
    };
    let destination = Destination::Directory(dir.to_owned());
    let summary = restore_into(source, ctx, request, destination, &options, out).await?;
    let major = ctx
        .repo
        .manifest(&summary.backup)
        .await?
        .postgres
        .map(|p| p.server_version / 10000);
    make_private(dir)?;
    let start_dir = dir.to_owned();
    let timeout = request.options.start_timeout;
    let started = tokio::task::spawn_blocking(move || start_and_wait(&start_dir, major, timeout))
        .await
        .map_err(|e| PgError::Invalid(format!("starting the restored cluster: {e}")))?;
    if let Err(e) = started {
        let log = std::fs::read_to_string(dir.join("heirloom-restore.log")).unwrap_or_default();
        out.check("started", false, format!("{e}\n{}", last_lines(&log, 10)));
        // A server that started and then failed recovery may still be running.
        let _ = stop(dir, major);
        return Ok(());
    }
    out.restored(began);
    out.check(
        "started",
        true,
        "the restored cluster started and recovery ended",
    );
    let user = source_url
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.username().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres".to_owned());
    let reach = Reach::Socket {
        dir: dir.to_owned(),
        port,
        user,
    };
    check(&reach, major, out).await;
    out.checked(began);
    let stop_dir = dir.to_owned();
    let stopped = tokio::task::spawn_blocking(move || stop(&stop_dir, major))
        .await
        .map_err(|e| PgError::Invalid(format!("stopping the restored cluster: {e}")))?;
    stopped?;
    Ok(())
}

/// Restores into a running server, then checks the database restored there.
async fn into_server(
    source: &dyn Source,
    ctx: &JobContext,
    request: &DrillRequest,
    url: &str,
    out: &mut DrillOutcome,
    began: Instant,
) -> Result<(), JobError> {
    let destination = Destination::Server(url.to_owned());
    restore_into(source, ctx, request, destination, &request.options, out).await?;
    out.restored(began);
    out.check("started", true, format!("restored into {}", redact(url)));
    check(&Reach::Url(url.to_owned()), None, out).await;
    out.checked(began);
    Ok(())
}

/// How the checks reach the restored server.
enum Reach {
    /// A private cluster: its own socket directory, trusted, every database.
    Socket {
        dir: PathBuf,
        port: u16,
        user: String,
    },
    /// A target server: its URL, the database it names.
    Url(String),
}

impl Reach {
    fn conninfo(&self, database: &str) -> String {
        match self {
            Reach::Socket { dir, port, user } => format!(
                "host='{}' port={port} user='{}' dbname='{}'",
                quote(&dir.to_string_lossy()),
                quote(user),
                quote(database)
            ),
            Reach::Url(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    u.set_path(database);
                    u.to_string()
                }
                Err(_) => url.clone(),
            },
        }
    }

    fn default_database(&self) -> String {
        match self {
            Reach::Socket { .. } => "postgres".into(),
            Reach::Url(url) => url::Url::parse(url)
                .ok()
                .map(|u| u.path().trim_start_matches('/').to_owned())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "postgres".into()),
        }
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The settings that make a restored cluster private to the drill: no TCP at all, a socket in
/// its own directory that trusts its local users, no SSL (its certificates stayed on the source).
fn make_private(dir: &Path) -> Result<(), PgError> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir).map_err(|e| PgError::io(dir.display(), e))?;
    let hba = dir.join("heirloom-drill-hba.conf");
    std::fs::write(
        &hba,
        "# Written by heirloom-backup drill: only this directory's socket, trusted.\nlocal all all trust\n",
    )
    .map_err(|e| PgError::io(hba.display(), e))?;
    let auto = dir.join("postgresql.auto.conf");
    let dir_text = dir.to_string_lossy().replace('\'', "''");
    let settings = format!(
        "\n# Added by heirloom-backup drill: a private server.\nlisten_addresses = ''\nunix_socket_directories = '{dir_text}'\nhba_file = '{dir_text}/heirloom-drill-hba.conf'\nssl = off\n"
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&auto)
        .map_err(|e| PgError::io(auto.display(), e))?;
    file.write_all(settings.as_bytes())
        .map_err(|e| PgError::io(auto.display(), e))?;
    for path in [&hba, &auto] {
        std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
            .map_err(|e| PgError::io(path.display(), e))?;
    }
    Ok(())
}

/// Runs the checks, recording each in `out`.
async fn check(reach: &Reach, major: Option<u32>, out: &mut DrillOutcome) {
    let first = reach.default_database();
    let client = match connect(&reach.conninfo(&first)).await {
        Ok(c) => c,
        Err(e) => {
            out.check("connect", false, e.to_string());
            return;
        }
    };
    match client
        .query_one(
            "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp(), \
             (SELECT rolname FROM pg_roles WHERE oid = 10)",
            &[],
        )
        .await
    {
        Ok(row) => {
            let recovering: bool = row.get(0);
            out.reached = row.get::<_, Option<DateTime<Utc>>>(1);
            out.check(
                "recovery ended",
                !recovering,
                if recovering {
                    "the server is still in recovery"
                } else {
                    "pg_is_in_recovery() is false"
                },
            );
        }
        Err(e) => out.check("recovery ended", false, e.to_string()),
    }
    let databases: Vec<String> = match reach {
        Reach::Url(_) => vec![first.clone()],
        Reach::Socket { .. } => match client
            .query(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
                &[],
            )
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => {
                out.check("databases", false, e.to_string());
                return;
            }
        },
    };
    drop(client);
    count_rows(reach, &databases, out).await;
    amcheck(reach, major, out).await;
}

/// Reads every table of every database through, counting its rows.
async fn count_rows(reach: &Reach, databases: &[String], out: &mut DrillOutcome) {
    let mut failed = Vec::new();
    for database in databases {
        let client = match connect(&reach.conninfo(database)).await {
            Ok(c) => c,
            Err(e) => {
                failed.push(format!("{database}: {e}"));
                continue;
            }
        };
        let tables = match client
            .query(
                "SELECT n.nspname::text, c.relname::text, \
                        quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'm') AND n.nspname <> 'information_schema' \
                   AND n.nspname NOT LIKE 'pg\\_%' \
                 ORDER BY 1, 2",
                &[],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                failed.push(format!("{database}: {e}"));
                continue;
            }
        };
        for table in tables {
            let (schema, name, quoted): (String, String, String) =
                (table.get(0), table.get(1), table.get(2));
            let what = format!("{database}.{schema}.{name}");
            match client
                .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
                .await
            {
                Ok(row) => out.tables.push(TableRows {
                    table: what,
                    rows: row.get::<_, i64>(0).max(0) as u64,
                }),
                Err(e) => failed.push(format!("{what}: {e}")),
            }
        }
    }
    let rows: u64 = out.tables.iter().map(|t| t.rows).sum();
    let detail = format!(
        "{} tables in {} databases read through, {rows} rows",
        out.tables.len(),
        databases.len()
    );
    if failed.is_empty() {
        out.check("row counts", true, detail);
    } else {
        out.check(
            "row counts",
            false,
            format!("{detail}; unreadable: {}", failed.join("; ")),
        );
    }
}

/// `pg_amcheck` over every database reached: heaps and B-tree indexes, installing the `amcheck`
/// extension where it is missing.
async fn amcheck(reach: &Reach, major: Option<u32>, out: &mut DrillOutcome) {
    let ran = (|| -> Result<std::process::Output, PgError> {
        let program = pg_program("pg_amcheck", major)?;
        let mut cmd = match reach {
            Reach::Socket { dir, port, user } => {
                let mut cmd = as_owner_of(dir, program)?;
                cmd.arg("--host")
                    .arg(dir)
                    .arg(format!("--port={port}"))
                    .arg(format!("--username={user}"))
                    .arg("--all");
                cmd
            }
            Reach::Url(url) => {
                // The password goes in the environment, never on a command line others can read.
                let mut cmd = Command::new(program);
                match url::Url::parse(url) {
                    Ok(mut u) => {
                        if let Some(password) = u.password() {
                            let password = percent_decode(password);
                            cmd.env("PGPASSWORD", password);
                            let _ = u.set_password(None);
                        }
                        cmd.arg(u.as_str());
                    }
                    Err(_) => {
                        cmd.arg(url);
                    }
                }
                cmd
            }
        };
        cmd.args(["--install-missing", "--no-password"])
            .output()
            .map_err(|e| PgError::io("pg_amcheck", e))
    })();
    match ran {
        Ok(output) if output.status.success() => out.check(
            "pg_amcheck",
            true,
            "every heap and B-tree index checked, no corruption",
        ),
        Ok(output) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            out.check(
                "pg_amcheck",
                false,
                format!("{}: {}", output.status, redact(&last_lines(&text, 20))),
            );
        }
        Err(e) => out.check("pg_amcheck", false, e.to_string()),
    }
}
