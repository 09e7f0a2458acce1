//! Running PostgreSQL's own programs: finding them, and starting a restored cluster until it is out
//! of recovery.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};
use tracing::debug;

use super::PgError;
use crate::redact::redact;

/// A PostgreSQL program: from `HEIRLOOM_PG_BIN`, else `/usr/lib/postgresql/<major>/bin` (the given
/// major version, or the newest present), else the PATH.
pub fn pg_program(program: &str, major: Option<u32>) -> Result<PathBuf, PgError> {
    if let Some(dir) = std::env::var_os("HEIRLOOM_PG_BIN") {
        return Ok(PathBuf::from(dir).join(program));
    }
    if let Some(major) = major {
        let path = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/{program}"));
        if path.exists() {
            return Ok(path);
        }
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let e = e.ok()?;
                    let version = e.file_name().to_str()?.parse().ok()?;
                    Some((version, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|(_, d)| d.join(program).exists());
    dirs.sort();
    if let Some((_, dir)) = dirs.pop() {
        return Ok(dir.join(program));
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(program)).find(|p| p.exists()))
        .ok_or_else(|| {
            PgError::Invalid(format!(
                "{program} not found: install PostgreSQL's server programs (apt-get install postgresql) or set HEIRLOOM_PG_BIN"
            ))
        })
}

/// A command that runs as the owner of `dir` when we are root (PostgreSQL refuses to run as root).
pub fn as_owner_of(dir: &Path, program: PathBuf) -> Result<Command, PgError> {
    let meta = std::fs::metadata(dir).map_err(|e| PgError::io(dir.display(), e))?;
    let mut cmd = Command::new(program);
    if running_as_root() && meta.uid() != 0 {
        cmd.uid(meta.uid()).gid(meta.gid());
    }
    Ok(cmd)
}

pub use crate::engine::process::running_as_root;

/// Starts the cluster in `dir` with `pg_ctl`, then waits until recovery has ended (the control file
/// says "in production"). Blocking.
pub fn start_and_wait(dir: &Path, major: Option<u32>, timeout: Duration) -> Result<(), PgError> {
    let log = dir.join("heirloom-restore.log");
    let out = as_owner_of(dir, pg_program("pg_ctl", major)?)?
        .arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", &timeout.as_secs().max(1).to_string(), "start"])
        .output()
        .map_err(|e| PgError::io("pg_ctl", e))?;
    if !out.status.success() {
        return Err(PgError::Invalid(format!(
            "PostgreSQL did not start in {}: {}; see {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            log.display()
        )));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let out = as_owner_of(dir, pg_program("pg_controldata", major)?)?
            .arg("-D")
            .arg(dir)
            .output()
            .map_err(|e| PgError::io("pg_controldata", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text
            .lines()
            .any(|l| l.starts_with("Database cluster state:") && l.ends_with("in production"))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(PgError::Invalid(format!(
                "{} is still recovering after {}s; see {}",
                dir.display(),
                timeout.as_secs(),
                log.display()
            )));
        }
        // A server that stopped (recovery failed) will never get there.
        let status = as_owner_of(dir, pg_program("pg_ctl", major)?)?
            .arg("-D")
            .arg(dir)
            .arg("status")
            .output()
            .map_err(|e| PgError::io("pg_ctl", e))?;
        if !status.status.success() {
            return Err(PgError::Invalid(format!(
                "PostgreSQL in {} stopped during recovery; see {}",
                dir.display(),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Stops the cluster in `dir` (fast shutdown), as the directory's owner.
pub fn stop(dir: &Path, major: Option<u32>) -> Result<(), PgError> {
    let out = as_owner_of(dir, pg_program("pg_ctl", major)?)?
        .arg("-D")
        .arg(dir)
        .args(["-m", "fast", "-w", "stop"])
        .output()
        .map_err(|e| PgError::io("pg_ctl", e))?;
    if !out.status.success() {
        return Err(PgError::Invalid(format!(
            "stopping PostgreSQL in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A session with the server, its connection driven in the background, over TLS as the
/// connection string's `sslmode` asks (see [`super::tls`]).
pub(crate) async fn connect(conninfo: &str) -> Result<Client, PgError> {
    let server = redact(conninfo);
    let (rest, params) = super::conninfo::take_params(conninfo, &super::tls::PARAMS);
    let tls = super::tls::Tls::new(&params, |var| std::env::var(var).ok())?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|source| PgError::Sql {
        server: server.clone(),
        source,
    })?;
    config.ssl_mode(tls.ssl_mode());
    let sql = |source| PgError::Sql {
        server: server.clone(),
        source,
    };
    // PostgreSQL has no TLS on its Unix sockets; a socket is reached without a connector.
    let sockets_only = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
    let client = if sockets_only {
        let (client, connection) = config.connect(NoTls).await.map_err(sql)?;
        drive(connection);
        client
    } else {
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls.client_config()?);
        let (client, connection) = config.connect(connector).await.map_err(sql)?;
        drive(connection);
        client
    };
    Ok(client)
}

/// Drives a session's connection in the background until it ends.
fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "PostgreSQL connection ended");
        }
    });
}

/// Names `server` (redacted) in a failed query's error.
pub(crate) fn sql(server: &str) -> impl Fn(tokio_postgres::Error) -> PgError + '_ {
    move |source| PgError::Sql {
        server: server.to_owned(),
        source,
    }
}
