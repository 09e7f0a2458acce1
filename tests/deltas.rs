//! Delta chunks (format 2): page files cut at fixed places, a changed chunk stored as a delta of the
//! chunk at its place in the previous backup; restored and verified exactly; a lost base is named.

mod support;

use chrono::Utc;
use heirloom_backup::pipeline::backup::{
    commit_backup, store_files, BackupSummary, Cutting, SourceFile,
};
use heirloom_backup::pipeline::verify::{verify, Subset};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::progress::Progress;
use heirloom_backup::repo::manifest::{BackupKind, Manifest};
use heirloom_backup::repo::Repository;
use support::repo::{restore, sha, small_params, LocalRepo};

const PAGE: usize = 8192;

/// Something like a table's pages: rows of a counter, a number that varies, and padding.
fn pages(count: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * PAGE);
    let mut x = seed | 1;
    while out.len() < count * PAGE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let row = format!(
            "{:>12}|{:>8}|{}\n",
            out.len() / 100,
            x % 100_000,
            " ".repeat(60)
        );
        out.extend_from_slice(row.as_bytes());
    }
    out.truncate(count * PAGE);
    out
}

/// A few bytes of every page changed, as updates and hint bits do.
fn touched(data: &[u8], round: u8) -> Vec<u8> {
    let mut out = data.to_vec();
    for (n, page) in out.chunks_mut(PAGE).enumerate() {
        for k in 0..6 {
            let at = (n * 977 + k * 1361 + usize::from(round) * 31) % PAGE;
            page[at] = page[at].wrapping_add(round + k as u8 + 1);
        }
    }
    out
}

/// A local repository with small chunks, whose files the tests can damage.
struct Setup(LocalRepo);

impl Setup {
    async fn new() -> Self {
        Self(LocalRepo::init(&small_params()).await)
    }

    async fn repo(&self) -> Repository {
        self.0.open().await
    }

    fn path(&self) -> &std::path::Path {
        self.0.dir.path()
    }
}

/// Backs up `files` as a page-file backup, with deltas against `previous`.
async fn back_up(
    repo: &Repository,
    files: &[(&str, Vec<u8>)],
    previous: Option<&Manifest>,
) -> (BackupSummary, Manifest) {
    let owned: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(p, d)| (p.to_string(), d.clone()))
        .collect();
    let source = Box::new(owned.into_iter().map(|(path, data)| {
        Ok(SourceFile {
            path,
            mode: Some(0o600),
            reader: Box::new(std::io::Cursor::new(data)),
        })
    }));
    let clock = std::time::Instant::now();
    let stored = store_files(
        repo,
        source,
        Concurrency::default(),
        Progress::none(),
        &Cutting::pages(previous),
    )
    .await
    .unwrap();
    let manifest = Manifest::new(
        &"db".parse().unwrap(),
        BackupKind::Stream,
        Default::default(),
        Utc::now(),
        heirloom_backup::repo::manifest::IdPrecision::Milliseconds,
    );
    let lease = heirloom_backup::repo::lease::Lease::acquire(
        repo.store(),
        heirloom_backup::repo::lease::LeaseKind::Shared,
        "backup",
        Utc::now(),
    )
    .await
    .unwrap();
    let summary = commit_backup(repo, &lease, manifest, stored, clock)
        .await
        .unwrap();
    lease.release().await;
    let manifest = repo.manifest(&summary.id).await.unwrap();
    (summary, manifest)
}

fn pack_files(setup: &Setup) -> Vec<std::path::PathBuf> {
    files_under(setup, "data")
}

fn files_under(setup: &Setup, dir: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![setup.path().join("repo").join(dir)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_pages_are_stored_as_small_deltas_and_restored_exactly() {
    let setup = Setup::new().await;
    let repo = setup.repo().await;
    let table = pages(400, 7); // 3.1 MiB: 13 fixed chunks of 256 KiB (the average size)
    let other = pages(40, 9);
    let (first, m1) = back_up(
        &repo,
        &[
            ("base/1/16384", table.clone()),
            ("base/1/1259", other.clone()),
        ],
        None,
    )
    .await;
    assert_eq!(first.delta_chunks, 0);
    assert_eq!(m1.files[0].chunks.len(), 13, "fixed 256 KiB chunks");
    let packs_of_first = pack_files(&setup);
    let index_of_first = files_under(&setup, "index");

    // Every page of the table changed a little; the other file did not change at all; a new file.
    let table2 = touched(&table, 1);
    let fresh = pages(10, 11);
    let (second, m2) = back_up(
        &repo,
        &[
            ("base/1/16384", table2.clone()),
            ("base/1/1259", other.clone()),
            ("base/1/16390", fresh.clone()),
        ],
        Some(&m1),
    )
    .await;
    assert_eq!(second.delta_chunks, 13, "{second:?}");
    assert_eq!(
        second.new_chunks, 14,
        "the table's chunks and the new file's"
    );
    assert!(
        second.added_bytes * 4 < first.added_bytes,
        "deltas add {} bytes, the first backup {}",
        second.added_bytes,
        first.added_bytes
    );

    // A third round: deltas are taken against the same whole bases, never against deltas.
    let table3 = touched(&table2, 2);
    let (third, m3) = back_up(&repo, &[("base/1/16384", table3.clone())], Some(&m2)).await;
    assert_eq!(third.delta_chunks, 13);
    let index = repo.load_index().await.unwrap();
    for id in &m3.files[0].chunks {
        let base = index.base_of(id).expect("a delta");
        assert!(
            m1.files[0].chunks.contains(&base),
            "bases are the first backup's chunks"
        );
        assert_eq!(index.base_of(&base), None);
    }

    for (manifest, expected) in [
        (&m1, [table.clone(), other.clone()].concat()),
        (&m2, [table2.clone(), other.clone(), fresh.clone()].concat()),
        (&m3, table3.clone()),
    ] {
        let restored = restore(&repo, &manifest.id).await.unwrap();
        assert_eq!(sha(&restored), sha(&expected), "{}", manifest.id);
    }
    let report = verify(&repo, Some(Subset::All), Concurrency::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    // The bases' pack goes missing: the restore fails naming it, verify names each delta and base.
    for pack in &packs_of_first {
        std::fs::rename(pack, pack.with_extension("gone")).unwrap();
    }
    let (err, written) = restore(&repo, &m3.id).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("missing from the store"), "{message}");
    assert!(
        packs_of_first
            .iter()
            .any(|p| message.contains(p.file_name().unwrap().to_str().unwrap())),
        "{message}"
    );
    assert!(written.is_empty() || written.len() < table3.len());
    let report = verify(&repo, Some(Subset::All), Concurrency::default())
        .await
        .unwrap();
    let delta_problems: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.problem.contains("its base") && p.problem.contains("cannot be read"))
        .collect();
    assert_eq!(delta_problems.len(), 26, "{:?}", report.problems);

    // And the index file naming them: the deltas' bases are in no index, which verify's structure
    // check and the restore plan both say.
    for (n, file) in index_of_first.iter().enumerate() {
        std::fs::rename(file, setup.path().join(format!("index-{n}"))).unwrap();
    }
    let report = verify(&repo, None, Concurrency::default()).await.unwrap();
    let orphans = report
        .problems
        .iter()
        .filter(|p| {
            p.problem.contains("is a delta of chunk") && p.problem.ends_with("which is in no index")
        })
        .count();
    assert_eq!(orphans, 26, "{:?}", report.problems);
    let (err, _) = restore(&repo, &m3.id).await.unwrap_err();
    assert!(err.to_string().contains("is a delta of chunk"), "{err}");
    assert!(err.to_string().contains("which is in no index"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_format_1_repository_is_read_and_written_without_deltas() {
    let setup = Setup::new().await;
    let config = setup.path().join("repo/heirloom.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    json["version"] = 1.into();
    std::fs::write(&config, serde_json::to_vec(&json).unwrap()).unwrap();
    let repo = setup.repo().await;
    let table = pages(100, 3);
    let (_, m1) = back_up(&repo, &[("t", table.clone())], None).await;
    let table2 = touched(&table, 1);
    let (second, m2) = back_up(&repo, &[("t", table2.clone())], Some(&m1)).await;
    assert_eq!(
        second.delta_chunks, 0,
        "format 1 readers could not read deltas"
    );
    assert_eq!(second.new_chunks, m2.files[0].chunks.len());
    assert_eq!(sha(&restore(&repo, &m2.id).await.unwrap()), sha(&table2));
    let report = verify(&repo, Some(Subset::All), Concurrency::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_base_costs_the_delta_not_the_backup() {
    let setup = Setup::new().await;
    let repo = setup.repo().await;
    let table = pages(200, 5);
    let (_, m1) = back_up(&repo, &[("t", table.clone())], None).await;
    for (n, pack) in pack_files(&setup).iter().enumerate() {
        std::fs::rename(pack, setup.path().join(format!("pack-{n}"))).unwrap();
    }
    let table2 = touched(&table, 1);
    let (second, m2) = back_up(&repo, &[("t", table2.clone())], Some(&m1)).await;
    assert_eq!(second.delta_chunks, 0, "{second:?}");
    assert_eq!(second.new_chunks, m2.files[0].chunks.len());
    assert_eq!(sha(&restore(&repo, &m2.id).await.unwrap()), sha(&table2));
}
