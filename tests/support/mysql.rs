//! MariaDB servers for tests: mariadb-install-db and mariadbd in a temp dir on a free port, with
//! the binlog on (ROW format, GTID strict mode), and a world holding a repository, a key and a
//! config that name them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::free_port;

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is needed: apt-get install mariadb-server mariadb-client mariadb-backup (scripts/test installs them)")
}

/// One MariaDB server.
pub struct MariaDb {
    pub dir: PathBuf,
    pub port: u16,
    pub server_id: u32,
    log_bin: bool,
    extra: Vec<String>,
    child: Option<Child>,
}

impl MariaDb {
    /// Creates a data directory under `root` and starts the server.
    pub fn start(root: &Path, name: &str, server_id: u32, log_bin: bool) -> Self {
        Self::start_with(root, name, server_id, log_bin, &[])
    }

    /// `start` with more server options.
    pub fn start_with(
        root: &Path,
        name: &str,
        server_id: u32,
        log_bin: bool,
        extra: &[&str],
    ) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // Installing is occasionally refused under a heavily loaded machine; a fresh try works.
        let mut failures = String::new();
        for _ in 0..3 {
            let data = dir.join("data");
            let _ = std::fs::remove_dir_all(&data);
            // The bootstrap server cleans its tmpdir too: not the shared /tmp (see `restart`).
            let tmpdir = dir.join("tmp");
            std::fs::create_dir_all(&tmpdir).unwrap();
            let out = Command::new(program("mariadb-install-db"))
                .args([
                    "--no-defaults",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                ])
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmpdir.display()))
                .output()
                .unwrap();
            if out.status.success() {
                failures.clear();
                break;
            }
            failures.push_str(&format!(
                "mariadb-install-db failed ({}): {}{}\n",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        assert!(failures.is_empty(), "{failures}");
        let mut server = Self {
            dir,
            port: free_port(),
            server_id,
            log_bin,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts a server on a data directory that exists already (`<root>/<name>/data`).
    pub fn adopt(root: &Path, name: &str, server_id: u32) -> Self {
        let mut server = Self {
            dir: root.join(name),
            port: free_port(),
            server_id,
            log_bin: true,
            extra: Vec::new(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the server on its data directory again (after `stop` or `kill`).
    pub fn restart(&mut self) {
        let mut cmd = Command::new(program("mariadbd"));
        // Its own tmpdir: a starting mariadbd deletes every `#sql*` file in its tmpdir, which in
        // a shared /tmp are the temporary tables of the other tests' servers.
        let tmpdir = self.dir.join("tmp");
        std::fs::create_dir_all(&tmpdir).unwrap();
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--tmpdir={}", tmpdir.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!(
                "--log-error={}",
                self.dir.join("error.log").display()
            ))
            .arg("--user=root")
            .arg(format!("--server-id={}", self.server_id))
            .args([
                "--gtid-strict-mode=1",
                "--binlog-format=ROW",
                "--log-slave-updates=1",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=48M",
                "--max-connections=200",
                "--max-allowed-packet=256M",
                "--skip-name-resolve",
            ]);
        if self.log_bin {
            cmd.arg(format!(
                "--log-bin={}",
                self.dir.join("data/binlog").display()
            ));
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(program("mariadb"))
                .args(self.client_args())
                .args(["-e", "SELECT 1"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mariadbd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn client_args(&self) -> Vec<String> {
        vec![
            "--no-defaults".into(),
            "--protocol=TCP".into(),
            "--host=127.0.0.1".into(),
            format!("--port={}", self.port),
            "--user=root".into(),
        ]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    pub fn binlog_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs SQL with the `mariadb` client.
    pub fn sql(&self, sql: &str) -> String {
        let out = self.try_sql(sql);
        assert!(
            out.status.success(),
            "SQL failed on port {}: {sql}: {}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn try_sql(&self, sql: &str) -> Output {
        Command::new(program("mariadb"))
            .args(self.client_args())
            .args(["--batch", "--skip-column-names", "-e", sql])
            .output()
            .unwrap()
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url()).await.unwrap()
    }

    /// Loads the notes-app fixture into database `notes`.
    pub fn load_notes_app(&self) {
        let schema = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/notes-app/mysql.sql"),
        )
        .unwrap();
        self.sql(&format!("CREATE DATABASE notes; USE notes; {schema}"));
    }

    /// A checksum of every table of `notes`, row by row, in one consistent snapshot.
    /// The names in `notes.markers`, sorted: which of a test's marked moments a server holds.
    pub fn markers(&self) -> Vec<String> {
        self.sql("SELECT name FROM notes.markers ORDER BY name")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn notes_checksums(&self) -> String {
        checksums_sql(self, "notes")
    }

    /// Stops the server cleanly.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server without letting it shut down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's binlog files, in order.
    pub fn binlog_files(&self) -> Vec<String> {
        self.sql("SHOW BINARY LOGS")
            .lines()
            .filter_map(|l| l.split('\t').next().map(str::to_owned))
            .collect()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Row checksums of every table of `db`, read in one snapshot: `table count crc` lines.
pub fn checksums_sql(server: &MariaDb, db: &str) -> String {
    let tables = server.sql(&format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' ORDER BY table_name"
    ));
    let mut sql = String::from("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION WITH CONSISTENT SNAPSHOT;");
    for table in tables.lines() {
        let cols = server.sql(&format!(
            "SELECT GROUP_CONCAT(CONCAT('`', column_name, '`') ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = '{db}' AND table_name = '{table}'"
        ));
        let cols = cols.trim();
        sql.push_str(&format!(
            "SELECT '{table}', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', {cols}))), 0) FROM `{db}`.`{table}`;"
        ));
    }
    sql.push_str("COMMIT;");
    server.sql(&sql)
}

/// A test world for MySQL work: a repository, a key, this build's binary and a config.
pub struct MyWorld {
    pub root: tempfile::TempDir,
}

impl MyWorld {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("heirloom-my-")
            .tempdir()
            .unwrap();
        let world = Self { root };
        super::write_key(&world.key(), &[9u8; 32]);
        std::fs::create_dir_all(world.repo()).unwrap();
        world.write_config("");
        let out = world.cli(&["init"]);
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        world
    }

    pub fn path(&self) -> &Path {
        self.root.path()
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

    /// Writes heirloom.yaml with these `sources:` lines.
    pub fn write_config(&self, sources: &str) {
        std::fs::write(
            self.config(),
            super::config_text(&self.repo(), &self.key(), sources),
        )
        .unwrap();
    }

    /// Points source `name` at `url`.
    pub fn use_source(&self, name: &str, url: &str) {
        self.write_config(&format!("  {name}: {{ kind: mysql, url: \"{url}\" }}\n"));
    }

    /// A library job context on this world's repository.
    #[allow(dead_code)] // not every test binary that shares this module uses it
    pub async fn job(&self) -> heirloom_backup::jobs::JobContext {
        super::job_context(&self.repo(), &self.key()).await
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("heirloom-backup"));
        cmd.arg("--config").arg(self.config()).args(args);
        cmd.env_remove("HEIRLOOM_PASSPHRASE");
        cmd
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "heirloom-backup {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `stream SOURCE` in the background.
    pub fn start_streamer(&self, source: &str) -> Child {
        self.command(&[
            "stream",
            source,
            "--flush-interval",
            "500ms",
            "--heartbeat",
            "1s",
        ])
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(self.path().join(format!("stream-{}.log", rand_suffix())))
                .unwrap(),
        )
        .spawn()
        .unwrap()
    }

    /// Stops a streamer with SIGTERM (it stores what it holds) and waits for it.
    pub fn stop_streamer(&self, mut child: Child) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "the streamer failed: {status}; {}",
            self.streamer_logs()
        );
    }

    pub fn streamer_logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("stream-") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Writers of the notes app: `writers` connections inserting and updating notes until stopped.
pub struct Workload {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Workload {
    pub async fn start(server: &MariaDb, writers: usize) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let url = format!("{}/notes", server.url());
            let stop = stop.clone();
            let paused = paused.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let Ok(mut conn) = mysql_async::Conn::from_url(url).await else {
                    return 0;
                };
                while !stop.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let author = (n % 5) + 1;
                    let ok = async {
                        let mut tx = conn
                            .start_transaction(mysql_async::TxOpts::default())
                            .await?;
                        tx.exec_drop(
                            "INSERT INTO notes (author_id, title, body) VALUES (?, ?, ?)",
                            (author, format!("note {w}-{n}"), "x".repeat(200 + (n as usize % 300))),
                        )
                        .await?;
                        tx.exec_drop(
                            "UPDATE notes SET body = CONCAT(body, '!') WHERE author_id = ? ORDER BY id DESC LIMIT 1",
                            (author,),
                        )
                        .await?;
                        tx.commit().await?;
                        Ok::<_, mysql_async::Error>(())
                    }
                    .await;
                    if ok.is_err() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        // The server went away (a failover test): stop writing.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                n
            }));
        }
        Self {
            stop,
            paused,
            tasks,
        }
    }

    /// Holds every writer between transactions.
    pub async fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
        // A writer in the middle of a transaction finishes it first.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    pub fn resume(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops the writers; returns the transactions they committed.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut total = 0;
        for t in self.tasks {
            total += t.await.unwrap_or(0);
        }
        total
    }
}

pub async fn open_repo(world: &MyWorld) -> heirloom_backup::repo::Repository {
    let store = heirloom_backup::store::open_store(
        &format!("file://{}", world.repo().display()),
        &heirloom_backup::store::StoreOptions::default(),
    )
    .unwrap();
    let key = heirloom_backup::repo::keys::KeySource::KeyFile {
        path: world.key(),
        key: zeroize::Zeroizing::new([9u8; 32]),
    };
    heirloom_backup::repo::Repository::open(store, &key)
        .await
        .unwrap()
}

/// Every event the server wrote, file by file, compared with the stored chain: each stored event
/// byte for byte equal to the server's at the same position, in order, none missing but the
/// Annotate_rows events MariaDB withholds from replicas, none twice.
pub async fn assert_chain_matches_server(world: &MyWorld, server: &MariaDb, source: &str) {
    let repo = open_repo(world).await;
    let names = heirloom_backup::engine::mysql::segment::list_segments(&repo, source)
        .await
        .unwrap();
    assert!(!names.is_empty(), "nothing stored");
    let mut stored: Vec<(String, u64, Vec<u8>)> = Vec::new();
    for name in &names {
        let (meta, bytes) =
            heirloom_backup::engine::mysql::segment::read_segment(&repo, source, name)
                .await
                .unwrap();
        if meta.server_id != server.server_id {
            continue;
        }
        for item in heirloom_backup::engine::mysql::binlog::Events::with_holes(&bytes, meta.start) {
            let (pos, event) = item.unwrap();
            stored.push((meta.file.clone(), pos, event.bytes.to_vec()));
        }
    }
    let mut expected: Vec<(String, u64, Vec<u8>)> = Vec::new();
    for file in server.binlog_files() {
        let bytes = std::fs::read(server.binlog_dir().join(&file)).unwrap();
        for item in heirloom_backup::engine::mysql::binlog::Events::new(&bytes[4..], 4) {
            let (pos, event) = item.unwrap();
            if event.header.type_code == 160 {
                continue; // Annotate_rows: not sent to replicas
            }
            let mut b = event.bytes.to_vec();
            if event.header.type_code
                == heirloom_backup::engine::mysql::binlog::event_type::FORMAT_DESCRIPTION
            {
                b[17] &= !1; // "in use" while the file is open
            }
            expected.push((file.clone(), pos, b));
        }
    }
    for s in &mut stored {
        if s.2[4] == heirloom_backup::engine::mysql::binlog::event_type::FORMAT_DESCRIPTION {
            s.2[17] &= !1;
        }
    }
    // The stored chain starts at the first file the server still has.
    let first = expected.first().map(|e| e.0.clone()).unwrap();
    stored.retain(|s| s.0 >= first);
    assert_eq!(
        stored.len(),
        expected.len(),
        "stored {} events, the server wrote {}",
        stored.len(),
        expected.len()
    );
    for (s, e) in stored.iter().zip(&expected) {
        assert_eq!((&s.0, s.1), (&e.0, e.1), "event out of place");
        assert!(
            s.2 == e.2,
            "event at {}:{} differs from the server's",
            e.0,
            e.1
        );
    }
}
