//! `demo`: the tool at work on a throwaway PostgreSQL. A cluster with the notes-app fixture is backed
//! up into a throwaway local repository while its WAL is archived, more notes are written over a few
//! seconds, and a restore to an instant in between is started and checked: every note from before the
//! instant, none from after.
//!
//! `demo --stream` needs no database: a generated dump is backed up, changed and backed up again, read
//! back and compared byte for byte, and every stored byte verified.

mod postgres;

use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context as _};
use chrono::Utc;
use clap::Args;
use heirloom_backup::pipeline::backup::{backup_stream, BackupOptions};
use heirloom_backup::pipeline::restore::restore_file;
use heirloom_backup::pipeline::verify::{verify, Subset};
use heirloom_backup::repo::format::InitParams;
use heirloom_backup::repo::keys::KeySource;
use heirloom_backup::repo::stats::stats;
use heirloom_backup::repo::{RepoError, Repository};
use heirloom_backup::store::open_store;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::{human_bytes, Context, Exit};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The stream demo, without PostgreSQL
    #[arg(long)]
    stream: bool,
    /// Size of the generated dump in MiB
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Keep the repository in this directory instead of a temporary one
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// The directory the demo works in: `keep`, or a temporary one (removed when the guard drops).
fn workspace(
    keep: Option<&std::path::Path>,
) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    match keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            Ok((None, d.to_owned()))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("heirloom-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            let dir = temp.path().to_owned();
            Ok((Some(temp), dir))
        }
    }
}

/// A new repository in `dir/repository`, with a new key file `dir/repository.key`.
async fn demo_repository(dir: &std::path::Path) -> anyhow::Result<(Repository, PathBuf, PathBuf)> {
    let repo_dir = dir.join("repository");
    let key_path = dir.join("repository.key");
    let key = KeySource::create_key_file(&key_path)?;
    let store = open_store(
        repo_dir.to_str().context("non-UTF-8 path")?,
        &Default::default(),
    )?;
    let repo = Repository::init(store, &key, &InitParams::default(), Utc::now()).await?;
    Ok((repo, repo_dir, key_path))
}

/// A notes-app dump: mostly SQL text, with some incompressible attachments.
fn generate_dump(size: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "heirloom",
        "recipe",
        "grandmother",
        "garden",
        "letter",
        "summer",
        "harbour",
        "violin",
        "quince",
        "lantern",
        "orchard",
        "winter",
        "ledger",
        "atlas",
        "thimble",
        "saffron",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"COPY public.notes (id, author, created_at, body) FROM stdin;\n");
    let mut id = 0u64;
    while out.len() < size {
        id += 1;
        if id.is_multiple_of(5000) {
            // an attachment: random bytes, base64-free, as a bytea export would not compress either
            let n = (64 * 1024).min(size - out.len());
            out.extend((0..n).map(|_| rng.gen::<u8>()));
            continue;
        }
        let words: Vec<&str> = (0..rng.gen_range(5..30))
            .map(|_| WORDS[rng.gen_range(0..16)])
            .collect();
        let line = format!(
            "{id}\tauthor{}\t2026-{:02}-{:02} {:02}:{:02}:00+00\t{}\n",
            rng.gen_range(1..500),
            rng.gen_range(1..13),
            rng.gen_range(1..29),
            rng.gen_range(0..24),
            rng.gen_range(0..60),
            words.join(" ")
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(size);
    out
}

/// A writer that only hashes.
#[derive(Clone, Default)]
struct HashWriter(Arc<Mutex<Sha256>>);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("hasher poisoned"))?
            .update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn demo(ctx: &Context, args: &DemoArgs) -> anyhow::Result<Exit> {
    if args.stream {
        stream_demo(ctx, args).await
    } else {
        postgres::demo(ctx, args.keep.as_deref()).await
    }
}

async fn stream_demo(ctx: &Context, args: &DemoArgs) -> anyhow::Result<Exit> {
    let (_temp, dir) = workspace(args.keep.as_deref())?;
    let (repo, repo_dir, key_path) = demo_repository(&dir).await?;
    outln!(
        "1. created an encrypted repository in {}",
        repo_dir.display()
    );

    let size = (args.size_mib.max(1) * 1024 * 1024) as usize;
    let first = generate_dump(size, 1);
    let mut second = first.clone();
    for at in [size / 5, size / 2, size * 4 / 5] {
        for b in &mut second[at..(at + 4096).min(size)] {
            *b = b.wrapping_add(1);
        }
    }
    let options = BackupOptions {
        source: "notes-app".parse().map_err(RepoError::Invalid)?,
        labels: Default::default(),
        concurrency: ctx.concurrency,
        allow_empty: false,
        time: None,
    };
    let mut ids = Vec::new();
    for (n, data) in [&first, &second].into_iter().enumerate() {
        let s = backup_stream(
            &repo,
            Cursor::new(data.clone()),
            &options,
            heirloom_backup::progress::Progress::none(),
            Utc::now(),
        )
        .await?;
        outln!(
            "{}. backed up a {} dump as {}: {} new of {} chunks, {} stored, {:.0} MB/s",
            n + 2,
            human_bytes(s.size),
            s.id,
            s.new_chunks,
            s.chunks,
            human_bytes(s.added_bytes),
            s.size as f64 / 1e6 / s.seconds.max(1e-9)
        );
        ids.push(s.id);
    }

    let index = repo.load_index().await?;
    for (id, data) in ids.iter().zip([&first, &second]) {
        let manifest = repo.manifest(id).await?;
        let hasher = HashWriter::default();
        for file in &manifest.files {
            restore_file(
                &repo,
                &index,
                &manifest,
                file,
                hasher.clone(),
                ctx.concurrency,
                heirloom_backup::progress::Progress::none(),
            )
            .await?;
        }
        let restored = hasher
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("hasher poisoned"))?
            .clone()
            .finalize();
        ensure!(
            restored[..] == Sha256::digest(data)[..],
            "backup {id} did not read back identically"
        );
    }
    outln!("4. read both backups back: SHA-256 identical to the originals");

    let report = verify(&repo, Some(Subset::All), ctx.concurrency).await?;
    ensure!(report.ok(), "verify found problems: {:?}", report.problems);
    outln!(
        "5. verified every stored byte: {} packs, {} chunks decrypted and re-hashed",
        report.packs_read,
        report.chunks_read
    );
    let s = stats(&repo).await?;
    outln!(
        "6. {} of backups stored in {}: deduplication {:.2}x, compression {:.2}x",
        human_bytes(s.logical_bytes),
        human_bytes(s.total_bytes),
        s.dedup_ratio,
        s.compression_ratio
    );
    if args.keep.is_some() {
        outln!(
            "the repository is kept: heirloom-backup --repo {} --key-file {} list",
            repo_dir.display(),
            key_path.display()
        );
    }
    Ok(Exit::Ok)
}
