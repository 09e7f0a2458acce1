//! PostgreSQL clusters for tests: initdb in a temp dir as the `postgres` user, a free port, archiving
//! through this build of heirloom-backup into a file:// repository.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The directory of PostgreSQL's programs.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEIRLOOM_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|d| d.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is needed: apt-get install postgresql (scripts/test installs it), or set HEIRLOOM_PG_BIN")
    })
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(bin_dir().join(program));
    cmd
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn chown_postgres(path: &Path) {
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .output()
        .unwrap();
    check(out, "chown");
}

/// A test world: a root directory the `postgres` user can reach, a repository in it, a key, a
/// config, and this build's binary linked in (PostgreSQL runs it for archive_command).
pub struct PgWorld {
    pub root: tempfile::TempDir,
}

impl PgWorld {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("heirloom-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let world = Self { root };
        let built = assert_cmd::cargo::cargo_bin("heirloom-backup");
        if std::fs::hard_link(&built, world.bin()).is_err() {
            std::fs::copy(&built, world.bin()).unwrap();
        }
        super::write_key(&world.key(), &[7u8; 32]);
        // Sockets and server logs: somewhere the postgres user may write.
        std::fs::create_dir_all(world.path().join("run")).unwrap();
        chown_postgres(&world.path().join("run"));
        std::fs::create_dir_all(world.repo()).unwrap();
        world.write_config("");
        world.cli(&["init"]).success();
        chown_postgres(&world.repo());
        chown_postgres(&world.key());
        world
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn bin(&self) -> PathBuf {
        self.path().join("heirloom-backup")
    }

    pub fn key(&self) -> PathBuf {
        self.path().join("key")
    }

    pub fn repo(&self) -> PathBuf {
        self.path().join("repo")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("heirloom.yaml")
    }

    /// Writes heirloom.yaml with `sources` (YAML lines under `sources:`), keeping the repository.
    pub fn write_config(&self, sources: &str) {
        std::fs::write(
            self.config(),
            super::config_text(&self.repo(), &self.key(), sources),
        )
        .unwrap();
        chown_postgres(&self.config());
    }

    /// A directory owned by the postgres user, as a user would prepare one to restore into.
    pub fn restore_dir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        chown_postgres(&dir);
        dir
    }

    /// Starts `stream pg` (flushing every 300 ms) in its own process group, so that a test can
    /// kill it with its pg_receivewal; it logs to run/streamer.log.
    pub fn start_wal_streamer(&self, spool: &Path) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(self.bin())
            .arg("--config")
            .arg(self.config())
            .args(["stream", "pg", "--flush-interval", "300ms", "--spool"])
            .arg(spool)
            .env_remove("HEIRLOOM_PASSPHRASE")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.path().join("run/streamer.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    /// Stops a streamer as a supervisor would (SIGTERM) and insists it ended cleanly.
    pub fn stop_wal_streamer(&self, mut streamer: std::process::Child) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(streamer.id().to_string())
            .status();
        let status = streamer.wait().unwrap();
        assert!(
            status.success(),
            "the streamer failed: {}",
            std::fs::read_to_string(self.path().join("run/streamer.log")).unwrap_or_default()
        );
    }

    /// Makes `cluster` the config's physical source `pg` (url and data_dir).
    pub fn use_physical_source(&self, cluster: &PgCluster) {
        self.write_config(&format!(
            "  pg: {{ kind: postgres, url: \"{}\", data_dir: {} }}\n",
            cluster.url(),
            cluster.data.display()
        ));
    }

    /// A library job context on this world's repository and config, as the agent has them.
    #[allow(dead_code)] // not every test binary that shares this module uses it
    pub async fn job(
        &self,
    ) -> (
        heirloom_backup::jobs::JobContext,
        heirloom_backup::config::Config,
    ) {
        let config = heirloom_backup::config::Config::load(&self.config()).unwrap();
        (super::job_context(&self.repo(), &self.key()).await, config)
    }

    /// Runs the CLI with this world's config.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        let out = Command::new(self.bin())
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("HEIRLOOM_REPO")
            .env_remove("HEIRLOOM_KEY_FILE")
            .env_remove("HEIRLOOM_PASSPHRASE")
            .output()
            .unwrap();
        CliRun {
            out,
            args: args.join(" "),
        }
    }

    /// `restore pg --to <restore_dir(name)> POINT... --start --port <free>`: the restored server,
    /// started and past recovery.
    pub fn restore_started(&self, name: &str, point: &[&str]) -> PgCluster {
        let dir = self.restore_dir(name);
        let port = free_port().to_string();
        let mut args = vec!["restore", "pg", "--to", dir.to_str().unwrap()];
        args.extend_from_slice(point);
        args.extend_from_slice(&["--start", "--port", &port]);
        self.cli(&args).success();
        PgCluster::started_by_restore(self.path(), dir, port.parse().unwrap())
    }

    /// A new cluster that archives nothing (its WAL is streamed, or not kept).
    pub fn plain_cluster(&self, name: &str) -> PgCluster {
        PgCluster::init(self.path(), name, "wal_level = replica\n")
    }

    /// A new cluster whose WAL is archived into this world's repository as `source`.
    pub fn cluster(&self, name: &str, source: &str) -> PgCluster {
        let archive = format!(
            "'{} -q --config {} wal-push --source {} %p'",
            self.bin().display(),
            self.config().display(),
            source
        );
        PgCluster::init(
            self.path(),
            name,
            &format!("archive_mode = on\narchive_command = {archive}\nwal_level = replica\narchive_timeout = 0\n"),
        )
    }
}

pub struct CliRun {
    pub out: Output,
    args: String,
}

impl CliRun {
    pub fn success(self) -> Self {
        assert!(
            self.out.status.success(),
            "heirloom-backup {} failed ({}): {}{}",
            self.args,
            self.out.status,
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        );
        self
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
}

/// A cluster in `<root>/<name>`; stopped when dropped.
pub struct PgCluster {
    pub data: PathBuf,
    pub port: u16,
    log: PathBuf,
    running: bool,
}

impl PgCluster {
    pub fn init(root: &Path, name: &str, extra_conf: &str) -> Self {
        let data = root.join(name);
        std::fs::create_dir_all(&data).unwrap();
        chown_postgres(&data);
        let out = as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--data-checksums",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .unwrap();
        check(out, "initdb");
        let cluster = Self::adopt(root, data);
        let conf = data_conf(&cluster, extra_conf);
        let path = cluster.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
        cluster
    }

    /// A data directory laid down by a restore: given its own port before it starts.
    pub fn adopt(root: &Path, data: PathBuf) -> Self {
        let port = free_port();
        let log = root.join("run").join(format!(
            "{}.log",
            data.file_name().unwrap().to_string_lossy()
        ));
        let cluster = Self {
            data,
            port,
            log,
            running: false,
        };
        let auto = cluster.data.join("postgresql.auto.conf");
        if auto.exists() {
            let mut text = std::fs::read_to_string(&auto).unwrap();
            text.push_str(&format!(
                "port = {port}\nunix_socket_directories = '{}'\n",
                root.join("run").display()
            ));
            std::fs::write(&auto, text).unwrap();
            chown_postgres(&auto);
        }
        cluster
    }

    /// A cluster something else started (e.g. `restore --start`) on `port`; stopped when dropped.
    pub fn started_by_restore(root: &Path, data: PathBuf, port: u16) -> Self {
        let log = data.join("heirloom-restore.log");
        let _ = root;
        Self {
            data,
            port,
            log,
            running: true,
        }
    }

    pub fn start(&mut self) {
        if !self.try_start() {
            panic!("pg_ctl start failed:\n{}", self.log());
        }
    }

    /// Starts the server and waits until it accepts connections; false if it did not come up.
    pub fn try_start(&mut self) -> bool {
        let out = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "120", "start"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        self.running = out.status.success();
        self.running
    }

    pub fn stop(&mut self) {
        if self.running {
            let _ = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"])
                .output();
            self.running = false;
        }
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: every process quits at
    /// once, with no checkpoint; the next start recovers from the WAL).
    pub fn crash(&mut self) {
        let out = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop -m immediate failed");
        self.running = false;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The ids in table `markers`, sorted: which of a test's marked moments a cluster holds.
    pub async fn markers(&self) -> Vec<i32> {
        self.client()
            .await
            .query("SELECT id FROM markers ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}\n{}", self.url(), self.log()));
        tokio::spawn(conn);
        client
    }

    /// Runs one of PostgreSQL's programs against this cluster (as root: they only connect).
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        Command::new(bin_dir().join(program))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits until recovery is over and the server accepts writes.
    pub async fn wait_promoted(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((client, conn)) =
                tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    if !row.get::<_, bool>(0) {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "recovery did not finish within 120 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn data_conf(cluster: &PgCluster, extra: &str) -> String {
    format!(
        "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nfull_page_writes = on\n{extra}",
        cluster.port,
        cluster.data.parent().unwrap().join("run").display(),
    )
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// Waits until every WAL segment up to the current one is archived (after switching segments).
pub async fn archive_everything(client: &tokio_postgres::Client) {
    let current: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .unwrap()
        .get(0);
    client.execute("SELECT pg_switch_wal()", &[]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = client
            .query_one("SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver", &[])
            .await
            .unwrap();
        let archived: String = row.get(0);
        if archived.len() == 24 && archived >= current {
            return;
        }
        let failed: i64 = row.get(1);
        assert!(
            Instant::now() < deadline,
            "WAL up to {current} was not archived within 120 s (last archived {archived:?}, {failed} failures, last failed {:?})",
            row.get::<_, String>(2)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn assert_amcheck_clean(cluster: &PgCluster) {
    let out = cluster.tool(
        "pg_amcheck",
        &["--install-missing", "--heapallindexed", "-d", "postgres"],
    );
    assert!(
        out.status.success(),
        "pg_amcheck found problems: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn pgbench(cluster: &PgCluster, args: &[&str]) -> std::process::Child {
    Command::new(bin_dir().join("pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The rows of the test tables as pg_dump writes them, sorted (row order is not data), without
/// pg_dump's per-run `\restrict` keys.
pub fn dump_data(cluster: &PgCluster) -> Vec<String> {
    let out = cluster.tool(
        "pg_dump",
        &[
            "--data-only",
            "--no-comments",
            "-t",
            "markers",
            "-t",
            "pgbench_*",
            "-d",
            "postgres",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Compares two dumps (from `dump_data`) without printing 200,000 lines when they differ.
pub fn assert_same_rows(source: &[String], restored: &[String]) {
    assert!(
        source.len() > 200_000,
        "only {} dump lines: the tables are missing",
        source.len()
    );
    let differing: Vec<_> = source
        .iter()
        .zip(restored)
        .filter(|(a, b)| a != b)
        .take(3)
        .collect();
    assert!(
        restored.len() == source.len() && differing.is_empty(),
        "the restored data differs from the source's: {} vs {} lines, first differences {differing:?}",
        restored.len(),
        source.len()
    );
}
