//! A restore drill of MySQL/MariaDB: a dump loaded into a scratch server (an empty data directory
//! made with `mariadb-install-db`, a private port) and the binlog replayed into it, or a physical
//! backup prepared in a scratch directory with its binlog replayed and a server started on it; or
//! either into a target. Then checked: `CHECK TABLE` on every table of the restored databases, and
//! their rows counted. The scratch server is stopped and its directory removed afterwards.

use std::path::Path;
use std::time::Instant;

use mysql_async::prelude::Queryable;

use super::private_server::PrivateServer;
use super::server::MysqlUrl;
use super::MyError;
use crate::context::{JobContext, JobError};
use crate::engine::drill::{restore_into, DrillOutcome, DrillRequest};
use crate::engine::Source;
use crate::repo::drill_record::TableRows;
use crate::repo::manifest::{newest, BackupKind};
use crate::restore::point::RestorePoint;
use crate::restore::summary::PlanSummary;
use crate::restore::target::Destination;

/// Schemas of the server itself, never restored.
const SYSTEM: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// Carries the drill out; a step that fails ends it, recorded in the outcome.
pub(super) async fn drill(
    source: &dyn Source,
    ctx: &JobContext,
    request: &DrillRequest,
) -> DrillOutcome {
    let began = Instant::now();
    let mut out = DrillOutcome::new(match &request.into {
        None => "a scratch MariaDB server (removed afterwards)".to_owned(),
        Some(t) => t.given.clone(),
    });
    let result = match request.into.as_ref().map(|t| t.destination.clone()) {
        None => scratch(source, ctx, request, &mut out, began).await,
        Some(Destination::Directory(dir)) => {
            into_directory(source, ctx, request, &dir, &mut out, began).await
        }
        Some(Destination::Server(url)) => {
            let url = MysqlUrl::parse(&url);
            match url {
                Ok(url) => into_server(source, ctx, request, &url, &mut out, began).await,
                Err(e) => Err(e.into()),
            }
        }
    };
    if let Err(e) = result {
        out.fail(e.to_string());
    }
    out
}

/// Into a scratch server: the kind of the newest backup the point can start from decides whether
/// a dump is loaded into a fresh server or a physical backup is prepared.
async fn scratch(
    source: &dyn Source,
    ctx: &JobContext,
    request: &DrillRequest,
    out: &mut DrillOutcome,
    began: Instant,
) -> Result<(), JobError> {
    let manifests = ctx.repo.manifests(Some(source.name())).await?;
    let before = match &request.point {
        RestorePoint::Time(t) => Some(t.at),
        _ => None,
    };
    let kind = newest(manifests.iter().filter(|m| {
        matches!(m.kind, BackupKind::MysqlDump | BackupKind::MysqlPhysical)
            && before.is_none_or(|at| m.mysql.as_ref().is_some_and(|p| p.consistent_at <= at))
    }))
    .map(|m| m.kind)
    .unwrap_or(BackupKind::MysqlDump);
    let root = tempfile::Builder::new()
        .prefix("heirloom-drill-")
        .tempdir()
        .map_err(|e| MyError::io("a scratch directory", e))?;
    let data = root.path().join("data");
    if kind == BackupKind::MysqlPhysical {
        return into_directory(source, ctx, request, &data, out, began).await;
    }
    PrivateServer::initialize(&data).await?;
    let server = PrivateServer::start(&data).await?;
    let url = server.url.clone();
    let done = into_server(source, ctx, request, &url, out, began).await;
    let stopped = server.stop().await;
    done?;
    stopped?;
    Ok(())
}

/// A physical backup prepared in `dir`, its binlog replayed, then a server started on it.
async fn into_directory(
    source: &dyn Source,
    ctx: &JobContext,
    request: &DrillRequest,
    dir: &Path,
    out: &mut DrillOutcome,
    began: Instant,
) -> Result<(), JobError> {
    let destination = Destination::Directory(dir.to_owned());
    let summary = restore_into(source, ctx, request, destination, &request.options, out).await?;
    let server = match PrivateServer::start(dir).await {
        Ok(server) => server,
        Err(e) => {
            out.check("started", false, e.to_string());
            return Ok(());
        }
    };
    out.restored(began);
    out.check(
        "started",
        true,
        "a server started on the restored directory and answers",
    );
    let databases = restored_databases(&summary);
    let checked = check(&server.url, databases.as_deref(), out).await;
    out.checked(began);
    let stopped = server.stop().await;
    checked?;
    stopped?;
    Ok(())
}

/// A dump loaded into the running server at `url` and the binlog replayed into it.
async fn into_server(
    source: &dyn Source,
    ctx: &JobContext,
    request: &DrillRequest,
    url: &MysqlUrl,
    out: &mut DrillOutcome,
    began: Instant,
) -> Result<(), JobError> {
    let destination = Destination::Server(url.as_url().to_owned());
    let summary = restore_into(source, ctx, request, destination, &request.options, out).await?;
    out.restored(began);
    out.check(
        "started",
        true,
        format!("the restore into {} completed", url.display()),
    );
    let databases = restored_databases(&summary);
    check(url, databases.as_deref(), out).await?;
    out.checked(began);
    Ok(())
}

/// The databases the plan restores; `None` for all of them (a physical backup names none).
fn restored_databases(summary: &PlanSummary) -> Option<Vec<String>> {
    summary
        .detail
        .get("databases")
        .and_then(|d| serde_json::from_value::<Vec<String>>(d.clone()).ok())
        .filter(|d| !d.is_empty())
}

/// `CHECK TABLE` and a row count on every base table of `databases` (every database but the
/// server's own when the plan does not say).
async fn check(
    url: &MysqlUrl,
    databases: Option<&[String]>,
    out: &mut DrillOutcome,
) -> Result<(), MyError> {
    let mut conn = url.connect().await?;
    let sql = |e| MyError::sql(url.display(), e);
    let tables: Vec<(String, String)> = conn
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' ORDER BY table_schema, table_name",
        )
        .await
        .map_err(sql)?;
    let tables: Vec<(String, String)> = tables
        .into_iter()
        .filter(|(schema, _)| match databases {
            Some(wanted) => wanted.iter().any(|d| d == schema),
            None => !SYSTEM.contains(&schema.as_str()),
        })
        .collect();
    let mut damaged = Vec::new();
    let mut unreadable = Vec::new();
    for (schema, table) in &tables {
        let name = format!(
            "`{}`.`{}`",
            schema.replace('`', "``"),
            table.replace('`', "``")
        );
        let what = format!("{schema}.{table}");
        let results: Vec<(String, String, String, String)> = conn
            .query(format!("CHECK TABLE {name}"))
            .await
            .map_err(sql)?;
        // The last row is the verdict; an `error` row anywhere says what is wrong.
        let ok = results
            .last()
            .is_some_and(|(_, _, kind, text)| kind == "status" && text == "OK")
            && !results.iter().any(|(_, _, kind, _)| kind == "error");
        if !ok {
            let said: Vec<String> = results
                .iter()
                .map(|(_, _, kind, text)| format!("{kind}: {text}"))
                .collect();
            damaged.push(format!("{what}: {}", said.join("; ")));
        }
        match conn
            .query_first::<u64, _>(format!("SELECT COUNT(*) FROM {name}"))
            .await
        {
            Ok(rows) => out.tables.push(TableRows {
                table: what,
                rows: rows.unwrap_or(0),
            }),
            Err(e) => unreadable.push(format!("{what}: {e}")),
        }
    }
    let _ = conn.disconnect().await;
    let schemas = {
        let mut s: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
        s.dedup();
        s.len()
    };
    out.check(
        "CHECK TABLE",
        damaged.is_empty(),
        if damaged.is_empty() {
            format!("{} tables in {schemas} databases: OK", tables.len())
        } else {
            damaged.join("\n")
        },
    );
    let rows: u64 = out.tables.iter().map(|t| t.rows).sum();
    let detail = format!("{} tables read through, {rows} rows", out.tables.len());
    if unreadable.is_empty() {
        out.check("row counts", true, detail);
    } else {
        out.check(
            "row counts",
            false,
            format!("{detail}; unreadable: {}", unreadable.join("; ")),
        );
    }
    Ok(())
}
