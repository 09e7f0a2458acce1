//! Delta restore: a physical backup laid over an existing data directory of the same cluster,
//! rewriting only what differs. Every file of the backup is read where it lies, chunk by chunk at
//! the offsets the backup's chunks have, and each piece is hashed with the repository's keyed
//! chunk id: a piece whose id is the backup's stays, any other is fetched and written in place.
//! Nothing is trusted by size or time. Files the backup does not have are removed, files it has
//! are cut to its sizes and given its modes, so the directory ends exactly as a full restore
//! leaves it, at a cost that follows what changed.
//!
//! Refused when the directory is not a PostgreSQL data directory, belongs to another cluster (its
//! `global/pg_control` names another system identifier), or has a server running (its
//! `postmaster.pid` names a live process), and for backups with tablespaces.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use super::target_dir::{chown, safe_relative, Owner};
use super::PgError;
use crate::pipeline::restore::{restore_files, FileSink};
use crate::pipeline::Concurrency;
use crate::progress::Progress;
use crate::repo::crypto::Keys;
use crate::repo::ids::ChunkId;
use crate::repo::index::Index;
use crate::repo::manifest::{FileEntry, Manifest};
use crate::repo::Repository;

/// What a delta restore found and did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeltaReport {
    /// Files of the backup already whole on disk.
    pub files_kept: u64,
    /// Files rewritten in part, or written whole (missing before).
    pub files_changed: u64,
    /// Files and directories removed: the backup does not have them.
    pub removed: u64,
    /// Bytes read and hashed on disk.
    pub bytes_checked: u64,
    /// Chunks fetched from the repository, and their bytes written.
    pub chunks_fetched: u64,
    pub bytes_written: u64,
}

/// One file's place in the backup: its chunks, each with its offset and length.
struct Layout {
    file: FileEntry,
    spans: Vec<(ChunkId, u64, u64)>,
}

/// Checks `dir` may take a delta restore of `manifest`.
pub fn check_target(dir: &Path, manifest: &Manifest) -> Result<(), PgError> {
    let pg = manifest.postgres.as_ref().ok_or_else(|| {
        PgError::Invalid(format!("backup {} is not a PostgreSQL backup", manifest.id))
    })?;
    if manifest
        .directories
        .iter()
        .any(|d| d.starts_with("pg_tblspc/"))
    {
        return Err(PgError::Invalid(format!(
            "backup {} has tablespaces: --delta restores only backups without them; restore into an empty directory",
            manifest.id
        )));
    }
    let control = dir.join("global/pg_control");
    let bytes = fs::read(&control).map_err(|e| {
        PgError::Invalid(format!(
            "{}: not a PostgreSQL data directory ({}: {e}); --delta restores over a data directory of the same cluster",
            dir.display(),
            control.display()
        ))
    })?;
    let id = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_ne_bytes)
        .ok_or_else(|| PgError::Invalid(format!("{}: too short", control.display())))?;
    if id.to_string() != pg.system_identifier {
        return Err(PgError::Invalid(format!(
            "{} belongs to another cluster (system identifier {id}, the backup's is {}): --delta restores only over the same cluster",
            dir.display(),
            pg.system_identifier
        )));
    }
    let pid_file = dir.join("postmaster.pid");
    if let Ok(text) = fs::read_to_string(&pid_file) {
        let pid = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            if Path::new(&format!("/proc/{pid}")).exists() {
                return Err(PgError::Invalid(format!(
                    "{}: a server is running there (postmaster.pid names process {pid}); stop it first",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Brings `dir` to the files of `manifest`: removes what the backup lacks, keeps every chunk
/// already right, and fetches and writes the rest. The caller writes `backup_label` and the
/// recovery settings afterwards, as for any restore.
pub async fn restore_delta(
    repo: &Repository,
    manifest: &Manifest,
    dir: &Path,
    owner: Owner,
    concurrency: Concurrency,
    progress: Progress,
) -> Result<DeltaReport, PgError> {
    check_target(dir, manifest)?;
    let index = repo.load_index().await?;
    let layouts = layouts(manifest, &index)?;
    let mut report = DeltaReport {
        removed: remove_extra(dir, manifest)?,
        ..DeltaReport::default()
    };
    for d in &manifest.directories {
        let path = dir.join(safe_relative(d).map_err(|e| PgError::io(d, e))?);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(PgError::Invalid(format!(
                "{}: a symbolic link where the backup has a directory; --delta writes only inside the data directory",
                path.display()
            )));
        }
        fs::create_dir_all(&path).map_err(|e| PgError::io(path.display(), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .map_err(|e| PgError::io(path.display(), e))?;
        chown(&path, owner)?;
    }

    // Which chunks each file lacks, hashing files on as many threads as there are cores.
    let keys = repo.keys().clone();
    let checks = futures::stream::iter(layouts.into_iter().map(|layout| {
        let keys = keys.clone();
        let path = dir.join(&layout.file.path);
        tokio::task::spawn_blocking(move || {
            let missing = missing_chunks(&keys, &path, &layout.spans);
            (layout, missing)
        })
    }))
    .buffer_unordered(concurrency.cpu.max(1));
    let checked: Vec<_> = checks.collect().await;
    let mut patches = Vec::new();
    for joined in checked {
        let (layout, missing) =
            joined.map_err(|e| PgError::Invalid(format!("hashing task failed: {e}")))?;
        let (missing, read) = missing.map_err(|e| PgError::io(&layout.file.path, e))?;
        report.bytes_checked += read;
        let size_right = fs::metadata(dir.join(&layout.file.path))
            .is_ok_and(|m| m.is_file() && m.len() == layout.file.size);
        if missing.is_empty() && size_right {
            report.files_kept += 1;
        } else {
            report.files_changed += 1;
        }
        patches.push((layout, missing));
    }

    // Fetch only what is missing, written at its place; then every file gets its size and mode.
    let mut fetch = Vec::new();
    let mut spans = Vec::new();
    for (layout, missing) in &patches {
        if missing.is_empty() {
            continue;
        }
        let chunks: Vec<ChunkId> = missing.iter().map(|&i| layout.spans[i].0).collect();
        let places: Vec<(u64, u64)> = missing
            .iter()
            .map(|&i| (layout.spans[i].1, layout.spans[i].2))
            .collect();
        report.chunks_fetched += chunks.len() as u64;
        let bytes: u64 = places.iter().map(|p| p.1).sum();
        report.bytes_written += bytes;
        fetch.push(FileEntry {
            path: layout.file.path.clone(),
            size: bytes,
            mode: layout.file.mode,
            chunks,
        });
        spans.push(places);
    }
    if !fetch.is_empty() {
        let sink = PatchSink {
            root: dir.to_owned(),
            spans: spans.into(),
            current: None,
        };
        restore_files(repo, &index, manifest, &fetch, sink, concurrency, progress).await?;
    }
    for (layout, _) in &patches {
        let path = dir.join(&layout.file.path);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| PgError::io(path.display(), e))?;
        f.set_len(layout.file.size)
            .map_err(|e| PgError::io(path.display(), e))?;
        f.set_permissions(fs::Permissions::from_mode(
            layout.file.mode.unwrap_or(0o600) & 0o777,
        ))
        .map_err(|e| PgError::io(path.display(), e))?;
        f.sync_all().map_err(|e| PgError::io(path.display(), e))?;
        chown(&path, owner)?;
    }
    Ok(report)
}

/// Each file's chunks with their offsets, from the lengths the index gives.
fn layouts(manifest: &Manifest, index: &Index) -> Result<Vec<Layout>, PgError> {
    let mut out = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        safe_relative(&file.path).map_err(|e| PgError::io(&file.path, e))?;
        let mut at = 0u64;
        let mut spans = Vec::with_capacity(file.chunks.len());
        for id in &file.chunks {
            let location = index.get(id).ok_or_else(|| {
                PgError::Invalid(format!(
                    "backup {}: chunk {id} of {} is in no index",
                    manifest.id, file.path
                ))
            })?;
            let len = u64::from(location.raw_len);
            spans.push((*id, at, len));
            at += len;
        }
        if at != file.size {
            return Err(PgError::Invalid(format!(
                "backup {}: the chunks of {} add up to {at} bytes, not its {}",
                manifest.id, file.path, file.size
            )));
        }
        out.push(Layout {
            file: file.clone(),
            spans,
        });
    }
    Ok(out)
}

/// The indexes of the spans whose bytes on disk do not have their chunk's id, and the bytes read.
/// A missing file lacks them all.
fn missing_chunks(
    keys: &Arc<Keys>,
    path: &Path,
    spans: &[(ChunkId, u64, u64)],
) -> io::Result<(Vec<usize>, u64)> {
    let mut file = match fs::File::open(path) {
        Ok(f) if f.metadata()?.is_file() => f,
        Ok(_) => return Ok(((0..spans.len()).collect(), 0)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(((0..spans.len()).collect(), 0))
        }
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut missing = Vec::new();
    let mut buf = Vec::new();
    let mut read = 0u64;
    for (i, (id, at, size)) in spans.iter().enumerate() {
        if at + size > len {
            missing.push(i);
            continue;
        }
        buf.resize(*size as usize, 0);
        file.seek(SeekFrom::Start(*at))?;
        file.read_exact(&mut buf)?;
        read += size;
        if keys.chunk_id(&buf) != *id {
            missing.push(i);
        }
    }
    Ok((missing, read))
}

/// Removes every file, link and directory under `dir` that the backup does not have; returns
/// how many. Links are removed, never followed.
fn remove_extra(dir: &Path, manifest: &Manifest) -> Result<u64, PgError> {
    let files: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let dirs: BTreeSet<&str> = manifest.directories.iter().map(String::as_str).collect();
    let mut removed = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = fs::read_dir(&here).map_err(|e| PgError::io(here.display(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| PgError::io(here.display(), e))?;
            let rel = rel.join(entry.file_name());
            let name = rel.to_string_lossy().into_owned();
            let path = dir.join(&rel);
            let kind = entry
                .file_type()
                .map_err(|e| PgError::io(path.display(), e))?;
            if kind.is_dir() && dirs.contains(name.as_str()) {
                stack.push(rel);
            } else if kind.is_file() && files.contains(name.as_str()) {
                continue;
            } else {
                let gone = match kind.is_dir() {
                    true => fs::remove_dir_all(&path),
                    false => fs::remove_file(&path),
                };
                gone.map_err(|e| PgError::io(path.display(), e))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Writes fetched chunks at their places in the files, which are opened without truncation.
struct PatchSink {
    root: PathBuf,
    /// For each file to be opened, in order: where its chunks go.
    spans: VecDeque<Vec<(u64, u64)>>,
    current: Option<fs::File>,
}

impl FileSink for PatchSink {
    fn open(&mut self, file: &FileEntry) -> io::Result<Box<dyn Write + Send>> {
        let path = self.root.join(safe_relative(&file.path)?);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        let spans = self
            .spans
            .pop_front()
            .ok_or_else(|| io::Error::other("a patch for a file not planned"))?;
        self.current = Some(f.try_clone()?);
        Ok(Box::new(PatchWriter {
            file: f,
            spans: spans.into(),
            left: 0,
        }))
    }

    fn close(&mut self, _: &FileEntry, mut writer: Box<dyn Write + Send>) -> io::Result<()> {
        writer.flush()?;
        drop(writer);
        match self.current.take() {
            Some(f) => f.sync_all(),
            None => Ok(()),
        }
    }
}

/// Bytes written in order land in the spans in order: each span's bytes at its offset.
struct PatchWriter {
    file: fs::File,
    spans: VecDeque<(u64, u64)>,
    /// What is left of the span being written.
    left: u64,
}

impl Write for PatchWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let (at, len) = self
                .spans
                .pop_front()
                .ok_or_else(|| io::Error::other("more bytes than the patch's chunks"))?;
            self.file.seek(SeekFrom::Start(at))?;
            self.left = len;
        }
        let n = (buf.len() as u64).min(self.left) as usize;
        self.file.write_all(&buf[..n])?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_writes_each_chunk_at_its_place_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"aaaaaaaaaa").unwrap();
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut w = PatchWriter {
            file,
            spans: [(2, 3), (7, 2)].into(),
            left: 0,
        };
        w.write_all(b"XYZ").unwrap();
        w.write_all(b"QR").unwrap();
        w.flush().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"aaXYZaaQRa");
        assert!(w.write_all(b"!").is_err(), "a byte past the spans");
    }

    #[test]
    fn chunks_are_missing_where_the_bytes_differ_or_end() {
        let keys = Arc::new(Keys::new(crate::repo::crypto::MasterSecret::generate()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"0123456789abcdef").unwrap();
        let spans = vec![
            (keys.chunk_id(b"01234567"), 0, 8),
            (keys.chunk_id(b"89abcdeX"), 8, 8),
            (keys.chunk_id(b"tail"), 16, 4),
        ];
        let (missing, read) = missing_chunks(&keys, &path, &spans).unwrap();
        assert_eq!(missing, [1, 2]);
        assert_eq!(read, 16);
        let (missing, read) = missing_chunks(&keys, &dir.path().join("none"), &spans).unwrap();
        assert_eq!((missing, read), (vec![0, 1, 2], 0));
    }
}
