//! Talking to a MySQL or MariaDB server: its URL, what it is, and its client programs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::binlog::{Gtid, GtidPos};
use super::tls::{self, SslMode, Tls};
use super::MyError;
use crate::redact::redact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A server to back up from or restore into, from a `mysql://user:password@host:port/db` URL,
/// with its TLS settings in the query (`?ssl-mode=verify_identity&ssl-ca=/etc/ca.pem`: see
/// [`tls`]).
#[derive(Clone)]
pub struct MysqlUrl {
    /// The session's options, with TLS as asked for.
    opts: Opts,
    /// For `ssl-mode=preferred`: the options without TLS, used when the server offers none.
    plain: Option<Opts>,
    tls: Tls,
    /// `user@host:port`, never the password: for messages.
    display: String,
    /// The URL as given, password and all: only ever passed on as a target.
    given: String,
}

impl std::fmt::Debug for MysqlUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl MysqlUrl {
    pub fn parse(url: &str) -> Result<Self, MyError> {
        let normalized = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        let (rest, library) =
            crate::engine::url_query::take_query_params(&normalized, &tls::LIBRARY_PARAMS);
        if let Some(name) = library.keys().next() {
            return Err(MyError::Invalid(format!(
                "{}: {name} is not taken here; TLS is set with ssl-mode (disabled, preferred, required, verify_ca, verify_identity) and ssl-ca",
                redact(url)
            )));
        }
        let (rest, params) = crate::engine::url_query::take_query_params(&rest, &tls::PARAMS);
        let tls =
            Tls::new(&params).map_err(|e| MyError::Invalid(format!("{}: {e}", redact(url))))?;
        Self::with_tls(url, &rest, tls)
    }

    /// A server this program started itself on 127.0.0.1, spoken to without TLS.
    pub fn local_plain(port: u16) -> Result<Self, MyError> {
        let url = format!("mysql://root@127.0.0.1:{port}?ssl-mode=disabled");
        Self::with_tls(
            &url,
            &format!("mysql://root@127.0.0.1:{port}"),
            Tls::disabled(),
        )
    }

    fn with_tls(given: &str, url: &str, tls: Tls) -> Result<Self, MyError> {
        let opts = Opts::from_url(url).map_err(|e| {
            MyError::Invalid(format!(
                "{}: not a MySQL URL (mysql://user:password@host:port/database): {e}",
                redact(given)
            ))
        })?;
        let plain: Opts = OptsBuilder::from_opts(opts).prefer_socket(false).into();
        let opts: Opts = OptsBuilder::from_opts(plain.clone())
            .ssl_opts(tls.ssl_opts())
            .into();
        let plain = (tls.mode() == SslMode::Preferred).then_some(plain);
        let url = given;
        let display = format!(
            "{}@{}:{}",
            opts.user().unwrap_or("root"),
            opts.ip_or_hostname(),
            opts.tcp_port()
        );
        Ok(Self {
            opts,
            plain,
            tls,
            display,
            given: url.to_owned(),
        })
    }

    /// The URL as it was given (with its password: never for messages).
    pub fn as_url(&self) -> &str {
        &self.given
    }

    pub fn database(&self) -> Option<&str> {
        self.opts.db_name().filter(|d| !d.is_empty())
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// Connects, within a bounded time. With `ssl-mode=preferred`, a server that offers no TLS is
    /// spoken to without it; any other failure stands.
    pub async fn connect(&self) -> Result<Conn, MyError> {
        match (self.connect_with(&self.opts).await, &self.plain) {
            (
                Err(MyError::Sql {
                    source:
                        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer),
                    ..
                }),
                Some(plain),
            ) => self.connect_with(plain).await,
            (result, _) => result,
        }
    }

    async fn connect_with(&self, opts: &Opts) -> Result<Conn, MyError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts.clone())).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) if self.tls.mode() == SslMode::VerifyCa && is_name_mismatch(&e) => {
                Err(MyError::Invalid(format!(
                    "MySQL server {}: {e} (ssl-mode=verify_ca checks the certificate's name too: connect by a name it holds)",
                    self.display
                )))
            }
            Ok(Err(e)) => Err(MyError::sql(&self.display, e)),
            Err(_) => Err(MyError::Invalid(format!(
                "MySQL server {}: no answer within {}s",
                self.display,
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A client program (`mariadb`, `mariadb-dump`, ...) with this server's host, port, user and
    /// TLS settings; the password goes through the environment, never the command line.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        self.add_connection_args(&mut cmd, program);
        cmd
    }

    /// Adds this server's host, port, user and TLS settings to the arguments of `program` (a
    /// MariaDB or a MySQL client program: their TLS options differ), and its password to the
    /// program's environment.
    pub fn add_connection_args(&self, cmd: &mut Command, program: &Path) {
        cmd.arg(format!("--host={}", self.opts.ip_or_hostname()))
            .arg(format!("--port={}", self.opts.tcp_port()))
            .arg("--protocol=TCP")
            .args(self.tls.program_args(is_mariadb_program(program)));
        if let Some(user) = self.opts.user() {
            cmd.arg(format!("--user={user}"));
        }
        match self.opts.pass() {
            Some(pass) => cmd.env("MYSQL_PWD", pass),
            None => cmd.env_remove("MYSQL_PWD"),
        };
    }
}

/// What a backup needs to know about a server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server_id: u32,
    pub version: String,
    pub is_mariadb: bool,
    pub log_bin: bool,
    pub binlog_format: String,
    pub checksummed: bool,
    pub gtid_binlog_pos: GtidPos,
    /// `@@gtid_binlog_state`: the last GTID of every (domain, server) pair in the binlog.
    pub gtid_binlog_state: Vec<Gtid>,
}

/// Reads what the server is and how its binlog is set.
pub async fn probe(url: &MysqlUrl, conn: &mut Conn) -> Result<ServerInfo, MyError> {
    let sql = |e| MyError::sql(url.display(), e);
    let row: Option<(u32, String, u32, String, String)> = conn
        .query_first("SELECT @@server_id, @@version, @@log_bin, @@binlog_format, @@binlog_checksum")
        .await
        .map_err(sql)?;
    let (server_id, version, log_bin, binlog_format, checksum) =
        row.ok_or_else(|| MyError::Invalid(format!("{}: no server variables", url.display())))?;
    let is_mariadb = version.contains("MariaDB");
    let (gtid_binlog_pos, gtid_binlog_state) = if is_mariadb {
        let row: Option<(String, String)> = conn
            .query_first("SELECT @@gtid_binlog_pos, @@gtid_binlog_state")
            .await
            .map_err(sql)?;
        let (pos, state) = row.unwrap_or_default();
        let state = state
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Gtid>, _>>()
            .map_err(MyError::Invalid)?;
        (GtidPos::parse(&pos).map_err(MyError::Invalid)?, state)
    } else {
        (GtidPos::default(), Vec::new())
    };
    Ok(ServerInfo {
        server_id,
        version,
        is_mariadb,
        log_bin: log_bin != 0,
        binlog_format,
        checksummed: checksum.eq_ignore_ascii_case("CRC32"),
        gtid_binlog_pos,
        gtid_binlog_state,
    })
}

/// Fails unless the server writes a binlog: without one there is nothing to stream or replay.
pub fn require_binlog(url: &MysqlUrl, info: &ServerInfo) -> Result<(), MyError> {
    if !info.log_bin {
        return Err(MyError::BinlogOff {
            server: url.display().to_owned(),
        });
    }
    if info.server_id == 0 {
        return Err(MyError::Invalid(format!(
            "{}: server_id is 0; give the server a unique server_id so its binlog can be streamed",
            url.display()
        )));
    }
    Ok(())
}

/// The client program for the server: MariaDB's names first, MySQL's as the fallback.
pub fn client_program(mariadb_name: &str, mysql_name: &str) -> Result<PathBuf, MyError> {
    for name in [mariadb_name, mysql_name] {
        if let Some(path) = find_in_path(name) {
            return Ok(path);
        }
    }
    Err(MyError::Invalid(format!(
        "{mariadb_name} (or {mysql_name}) is not installed: apt-get install mariadb-client"
    )))
}

/// Whether a connection failed on a certificate that does not name the host.
fn is_name_mismatch(e: &mysql_async::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(rustls::Error::InvalidCertificate(cert)) = err.downcast_ref::<rustls::Error>() {
            return matches!(
                cert,
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            );
        }
        source = err.source();
    }
    e.to_string().contains("not valid for name")
}

/// Whether a client program is MariaDB's: by the name it resolves to (Debian's `mysqldump` is a
/// link to `mariadb-dump`), else by what `--version` says.
fn is_mariadb_program(program: &Path) -> bool {
    let resolved = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_owned());
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("mariadb") || name.starts_with("mariabackup") {
        return true;
    }
    Command::new(program)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("MariaDB"))
        .unwrap_or(false)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
