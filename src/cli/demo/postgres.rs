//! The PostgreSQL demo: a throwaway cluster from the local binaries, archived, backed up, restored to
//! an instant, started, and checked.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use chrono::{DateTime, Utc};
use heirloom_backup::config::{Config, SourceConfig};
use heirloom_backup::engine::postgres;
use heirloom_backup::engine::postgres::server::{pg_program, running_as_root};
use heirloom_backup::jobs::{self, BackupRequest, JobContext, RestoreOptions};
use heirloom_backup::repo::source::SourceName;
use heirloom_backup::repo::RepoError;
use heirloom_backup::restore::point::{Instant as PointInTime, RestorePoint};
use tokio_postgres::NoTls;

use super::super::{Context, Exit};

const SCHEMA: &str = include_str!("../../../fixtures/notes-app/schema.sql");

fn pg_bin(program: &str) -> anyhow::Result<PathBuf> {
    pg_program(program, None)
        .context("the demo runs a throwaway PostgreSQL; `demo --stream` needs none")
}

/// PostgreSQL refuses to run as root: as root, the demo runs it as the `postgres` user.
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !running_as_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"postgres") && fields.len() > 3 {
            return Ok(Some((fields[2].parse()?, fields[3].parse()?)));
        }
    }
    bail!("running as root, and there is no postgres user to run PostgreSQL as (apt-get install postgresql)")
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

struct Server {
    data: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    running: bool,
}

impl Server {
    fn command(&self, program: &str) -> anyhow::Result<Command> {
        let mut cmd = Command::new(pg_bin(program)?);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        Ok(cmd)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = self.data.with_extension("log");
        let out = self
            .command("pg_ctl")?
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {}",
                self.port,
                self.data.parent().unwrap_or(Path::new("/tmp")).display()
            ))
            .arg("start")
            .output()?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.running = true;
        Ok(())
    }

    fn stop(&mut self) {
        if self.running {
            if let Ok(mut cmd) = self.command("pg_ctl") {
                let _ = cmd
                    .arg("-D")
                    .arg(&self.data)
                    .args(["-m", "fast", "-w", "stop"])
                    .output();
            }
            self.running = false;
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url(), NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn demo(ctx: &Context, keep: Option<&Path>) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let (_temp, dir) = super::workspace(keep)?;
    let owner = server_user()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;

    // The repository, and this program where the server may run it as archive_command.
    let exe = dir.join("heirloom-backup");
    let me = std::env::current_exe()?;
    if std::fs::hard_link(&me, &exe).is_err() {
        std::fs::copy(&me, &exe).context("copying this program for archive_command")?;
    }
    let (repo, repo_dir, key_path) = super::demo_repository(&dir).await?;
    chown_tree(&dir, owner)?;
    outln!(
        "1. created an encrypted repository in {}",
        repo_dir.display()
    );

    // A throwaway cluster whose WAL is archived into it.
    let data = dir.join("source");
    std::fs::create_dir_all(&data)?;
    chown_tree(&data, owner)?;
    let mut source = Server {
        data: data.clone(),
        port: free_port()?,
        owner,
        running: false,
    };
    let out = source
        .command("initdb")?
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
        .output()?;
    ensure!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = format!(
        "'{} -q --repo file://{} --key-file {} wal-push --source notes %p'",
        exe.display(),
        repo_dir.display(),
        key_path.display()
    );
    let conf = format!(
        "\nlisten_addresses = '127.0.0.1'\narchive_mode = on\narchive_command = {archive}\nfsync = off\n"
    );
    let conf_path = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf_path)?;
    text.push_str(&conf);
    std::fs::write(&conf_path, text)?;
    source.start()?;
    let client = source.client().await?;
    client.batch_execute(SCHEMA).await?;
    client
        .batch_execute(
            "INSERT INTO notes (author_id, title, body) \
             SELECT 1 + i % 5, 'note ' || i, repeat('a line worth keeping. ', 20) FROM generate_series(1, 5000) i",
        )
        .await?;
    outln!(
        "2. started PostgreSQL on port {} with the notes app: 5000 notes",
        source.port
    );

    // The source as heirloom.yaml would describe it, backed up and restored through the same
    // library jobs the command line and the agent call.
    let notes: SourceName = "notes".parse().map_err(RepoError::Invalid)?;
    let mut config = Config::default();
    config.sources.insert(
        notes.clone(),
        SourceConfig::Postgres(postgres::SourceConfig {
            url: Some(source.url()),
            data_dir: Some(data.clone()),
            mode: None,
        }),
    );
    let job = JobContext::new(repo.clone(), ctx.concurrency);
    let summary = jobs::backup_source(&job, &config, &notes, &BackupRequest::default()).await?;
    outln!(
        "3. base backup {} while the server runs: {} in {} chunks",
        summary.id,
        super::super::human_bytes(summary.size),
        summary.chunks
    );

    // More notes over a few seconds; the target instant lies in the middle.
    let write = |tag: &'static str| {
        let client = &client;
        async move {
            for _ in 0..5 {
                client
                    .execute(
                        "INSERT INTO notes (author_id, title, body) VALUES (2, $1, 'written live')",
                        &[&tag],
                    )
                    .await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, tokio_postgres::Error>(())
        }
    };
    write("before").await?;
    let target: DateTime<Utc> = client
        .query_one("SELECT clock_timestamp()", &[])
        .await?
        .get(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    write("after").await?;
    let total: i64 = client
        .query_one("SELECT count(*) FROM notes", &[])
        .await?
        .get(0);
    let current: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await?
        .get(0);
    client.execute("SELECT pg_switch_wal()", &[]).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let archived: Option<String> = client
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await?
            .get(0);
        if archived.is_some_and(|a| a.len() == 24 && a >= current) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "WAL was not archived within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    source.stop();
    outln!(
        "4. wrote 5 notes, then at {} the target instant, then 5 more ({total} notes in all); WAL archived",
        target.format("%H:%M:%S%.3f")
    );

    // Restore to the instant, start it, and look.
    let restored_dir = dir.join("restored");
    std::fs::create_dir_all(&restored_dir)?;
    chown_tree(&restored_dir, owner)?;
    let restore_command = format!(
        "{} -q --repo file://{} --key-file {} wal-fetch --source notes %f %p",
        exe.display(),
        repo_dir.display(),
        key_path.display()
    );
    let options = RestoreOptions {
        restore_command: Ok(restore_command),
        ..RestoreOptions::default()
    };
    let to = restored_dir.to_string_lossy();
    let point = RestorePoint::Time(PointInTime::utc(target));
    let planned = jobs::plan_restore(&job, &config, &notes, &to, &point, &options).await?;
    let plan = planned.summary().clone();
    planned.run(&job).await?;
    let mut copy = Server {
        data: restored_dir.clone(),
        port: free_port()?,
        owner,
        running: false,
    };
    copy.start()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        if let Ok(client) = copy.client().await {
            if !client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await?
                .get::<_, bool>(0)
            {
                break client;
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the restored copy did not finish recovery within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let before: i64 = client
        .query_one("SELECT count(*) FROM notes WHERE title = 'before'", &[])
        .await?
        .get(0);
    let after: i64 = client
        .query_one("SELECT count(*) FROM notes WHERE title = 'after'", &[])
        .await?
        .get(0);
    let all: i64 = client
        .query_one("SELECT count(*) FROM notes", &[])
        .await?
        .get(0);
    drop(client);
    copy.stop();
    outln!(
        "5. restored to {} from backup {} and {} WAL segments, and started it: {all} notes, {before} of the 5 written before the instant, {after} of the 5 after",
        target.format("%H:%M:%S%.3f"),
        plan.backup,
        plan.log.as_ref().map_or(0, |l| l.objects)
    );
    ensure!(
        before == 5 && after == 0 && all == 5005,
        "the restored copy is not the source at the instant"
    );
    outln!(
        "proved: a point-in-time restore gives back every note written before the instant and none after ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    if keep.is_some() {
        outln!("kept in {}", dir.display());
    }
    Ok(Exit::Ok)
}
