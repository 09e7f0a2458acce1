//! A MariaDB server of heirloom-backup's own, on a directory it restored: loopback, a free port,
//! no grant checks, no binlog of its own; for a binlog replay into a restored directory and for
//! drills. It is stopped before the caller returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::server::{client_program, MysqlUrl};
use super::MyError;

/// A MariaDB server started on a restored directory for the replay only: loopback, a free port,
/// no grant checks, no binlog of its own.
pub struct PrivateServer {
    child: std::process::Child,
    pub url: MysqlUrl,
    _run: tempfile::TempDir,
}

impl PrivateServer {
    /// Creates an empty data directory at `dir` (`mariadb-install-db`), for a dump to be loaded
    /// into a server started on it.
    pub async fn initialize(dir: &Path) -> Result<(), MyError> {
        let install = ["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| client_program("mariadb-install-db", "mysql_install_db").ok())
            .ok_or_else(|| {
                MyError::Invalid(
                    "mariadb-install-db is needed to create a scratch server: apt-get install mariadb-server"
                        .into(),
                )
            })?;
        let tmpdir = dir.with_extension("tmp");
        std::fs::create_dir_all(&tmpdir).map_err(|e| MyError::io(tmpdir.display(), e))?;
        let mut cmd = tokio::process::Command::new(&install);
        cmd.arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--datadir={}", dir.display()))
            .arg(format!("--tmpdir={}", tmpdir.display()));
        if crate::engine::process::running_as_root() {
            cmd.arg("--user=root");
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| MyError::io(install.display(), e))?;
        let _ = std::fs::remove_dir_all(&tmpdir);
        if !out.status.success() {
            return Err(MyError::Invalid(format!(
                "{} --datadir={} failed ({}): {}",
                install.display(),
                dir.display(),
                out.status,
                crate::engine::process::last_lines(
                    &format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                    10
                )
            )));
        }
        Ok(())
    }

    pub async fn start(dir: &Path) -> Result<Self, MyError> {
        let mariadbd = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld", "/usr/local/sbin/mariadbd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| client_program("mariadbd", "mysqld").ok())
            .ok_or_else(|| {
                MyError::Invalid(
                    "mariadbd is needed to start a server on a restored directory: apt-get install mariadb-server"
                        .into(),
                )
            })?;
        let run = tempfile::Builder::new()
            .prefix("heirloom-mariadbd-")
            .tempdir()
            .map_err(|e| MyError::io("a temporary directory", e))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| MyError::io("a free port", e))?;
        // A tmpdir of its own: at start-up mariadbd deletes every `#sql*` file in its tmpdir, and
        // in a shared /tmp those are the temporary tables of the host's running servers.
        let tmpdir = run.path().join("tmp");
        std::fs::create_dir(&tmpdir).map_err(|e| MyError::io(tmpdir.display(), e))?;
        let mut cmd = Command::new(&mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.display()))
            .arg(format!("--tmpdir={}", tmpdir.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", run.path().join("sock").display()))
            .arg(format!("--pid-file={}", run.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                run.path().join("error.log").display()
            ))
            .args([
                "--skip-grant-tables",
                "--skip-log-bin",
                "--skip-slave-start",
                "--max-allowed-packet=1G",
            ]);
        if crate::engine::process::running_as_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| MyError::io(mariadbd.display(), e))?;
        let url = MysqlUrl::local_plain(port)?;
        let mut server = Self {
            child,
            url,
            _run: run,
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if server.url.connect().await.is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server._run.path().join("error.log"))
                    .unwrap_or_default();
                return Err(MyError::Invalid(format!(
                    "the private server started on {} exited ({status}): {}",
                    dir.display(),
                    log.lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                )));
            }
            if Instant::now() > deadline {
                let _ = server.child.kill();
                return Err(MyError::Invalid(format!(
                    "the private server started on {} did not answer within 5 minutes",
                    dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn stop(mut self) -> Result<(), MyError> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => {
                    let _ = self.child.kill();
                    return Err(MyError::Invalid(
                        "the private server did not shut down within 5 minutes".into(),
                    ));
                }
            }
        }
    }
}
