//! file:// repositories: atomic, durable, create-if-absent writes on a local (or mounted) file system.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::RngCore;

use super::{Backend, ObjectInfo, PutOutcome, PutPayload, StoreError};

/// A repository in a local directory.
///
/// A put writes a temporary file in `.tmp/` at the repository's root, fsyncs it, then hard-links it
/// into place: the link fails if the target exists, which gives create-if-absent without a race, and
/// a crash leaves either no object or the whole object (plus a temporary file that listings never
/// show). The first put of a process removes temporaries nobody has written to for
/// [`STALE_TEMPORARY`]: those of writers that were killed.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    swept: Arc<OnceLock<()>>,
    /// Folders whose temporaries beside their objects this process has swept already.
    swept_beside: Arc<Mutex<HashSet<PathBuf>>>,
}

/// Temporaries of earlier versions sat beside their target, named `.<name>.tmp-<random>`.
const TMP_MARKER: &str = ".tmp-";
/// The folder of temporaries, at the root. Not an object: listings skip it.
const TMP_DIR: &str = ".tmp";
/// A temporary not written for this long belongs to a writer that died. A live writer finishing
/// after its temporary was removed only fails its put (the hard link finds nothing), so the
/// threshold protects availability, never correctness.
pub const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            swept: Arc::new(OnceLock::new()),
            swept_beside: Arc::default(),
        }
    }

    /// Removes the temporaries of dead writers (see [`STALE_TEMPORARY`]) from `.tmp/`; returns
    /// how many.
    pub fn sweep_temporaries(&self, older_than: Duration) -> io::Result<usize> {
        sweep_dir(&self.root.join(TMP_DIR), older_than, |_| true)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn io_error(&self, op: &'static str, key: &str, source: io::Error) -> StoreError {
        if source.kind() == io::ErrorKind::NotFound {
            return StoreError::NotFound {
                store: self.location(),
                key: key.to_owned(),
            };
        }
        StoreError::Io {
            op,
            store: self.location(),
            key: key.to_owned(),
            source,
        }
    }

    fn put_blocking(&self, key: &str, data: &PutPayload) -> io::Result<PutOutcome> {
        let target = self.path(key);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        if target.exists() {
            return Ok(PutOutcome::AlreadyExists);
        }
        let tmp_dir = self.root.join(TMP_DIR);
        if self.swept.get().is_none() {
            if let Err(e) =
                fs::create_dir_all(&tmp_dir).and_then(|()| self.sweep_temporaries(STALE_TEMPORARY))
            {
                tracing::debug!(error = %e, dir = %tmp_dir.display(), "could not remove old temporaries");
            }
            let _ = self.swept.set(());
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tail = rand::thread_rng().next_u64();
        // In .tmp/ when this user may write there; else beside the target, as earlier versions
        // did (PostgreSQL's wal-push runs as another user than a root backup, and each must be
        // able to write the folders it writes). Beside the target too when the link from .tmp/
        // would cross file systems (a folder of the repository mounted on its own).
        let preferred = tmp_dir.join(format!("{name}-{tail:016x}"));
        match write_and_link(&preferred, &target, &dir, data) {
            Err(Failed::Temporary(_)) | Err(Failed::Link(_, true)) => {}
            Ok(outcome) => return Ok(outcome),
            Err(Failed::Link(e, false)) => return Err(e),
        }
        // This folder may hold temporaries of killed writers of the same kind: sweep it once
        // per process (a folder of WAL can hold many objects).
        let first = self
            .swept_beside
            .lock()
            .map(|mut swept| swept.insert(dir.clone()))
            .unwrap_or(false);
        if first {
            let _ = sweep_dir(&dir, STALE_TEMPORARY, is_beside_temporary);
        }
        let beside = dir.join(format!(".{name}{TMP_MARKER}{tail:016x}"));
        write_and_link(&beside, &target, &dir, data).map_err(Failed::into_io)
    }

    fn list_blocking(&self, prefix: &str) -> io::Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        // Walk from the deepest directory the prefix names, then filter on the full prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = self.root.join(dir_part);
        if !start.exists() {
            return Ok(out);
        }
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let file_type = entry.file_type()?;
                let path = entry.path();
                if file_type.is_dir() {
                    if dir == self.root && entry.file_name() == TMP_DIR {
                        continue;
                    }
                    stack.push(path);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_beside_temporary(&name) {
                    continue;
                }
                let Some(key) = relative_key(&self.root, &path) else {
                    continue;
                };
                if key.starts_with(prefix) {
                    let meta = entry.metadata()?;
                    out.push(ObjectInfo {
                        key,
                        size: meta.len(),
                        last_modified: meta.modified().ok().map(chrono::DateTime::from),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Why a write through a temporary failed.
enum Failed {
    /// The temporary could not be created or written.
    Temporary(io::Error),
    /// Linking it into place failed; `true` when the link would cross file systems.
    Link(io::Error, bool),
}

impl Failed {
    fn into_io(self) -> io::Error {
        match self {
            Failed::Temporary(e) | Failed::Link(e, _) => e,
        }
    }
}

/// Writes `data` to the new file `tmp`, syncs it, and hard-links it to `target` (in `dir`);
/// removes `tmp` whatever happens.
fn write_and_link(
    tmp: &Path,
    target: &Path,
    dir: &Path,
    data: &PutPayload,
) -> Result<PutOutcome, Failed> {
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)?;
        for part in data.iter() {
            file.write_all(part)?;
        }
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(tmp);
        return Err(Failed::Temporary(e));
    }
    let linked = match fs::hard_link(tmp, target) {
        Ok(()) => sync_dir(dir)
            .map(|()| PutOutcome::Created)
            .map_err(|e| Failed::Link(e, false)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
        Err(e) => {
            let cross = e.kind() == io::ErrorKind::CrossesDevices;
            Err(Failed::Link(e, cross))
        }
    };
    let _ = fs::remove_file(tmp);
    linked
}

/// Removes the files of `dir` that `is_temporary` picks and nobody has written to for
/// `older_than`; returns how many.
fn sweep_dir(
    dir: &Path,
    older_than: Duration,
    is_temporary: impl Fn(&str) -> bool,
) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !is_temporary(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let idle = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if idle.is_some_and(|idle| idle >= older_than) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, dir = %dir.display(), "removed temporaries of interrupted writers");
    }
    Ok(removed)
}

/// A temporary of the kind written beside its target: `.<name>.tmp-<16 hex>`.
fn is_beside_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(TMP_MARKER)
}

fn relative_key(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Backend for LocalBackend {
    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put_if_absent(&self, key: &str, data: PutPayload) -> Result<PutOutcome, StoreError> {
        let this = self.clone();
        let owned_key = key.to_owned();
        tokio::task::spawn_blocking(move || this.put_blocking(&owned_key, &data))
            .await
            .map_err(|e| self.io_error("put", key, io::Error::other(e)))?
            .map_err(|e| self.io_error("put", key, e))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| self.io_error("get", key, e))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        let want = range.end.saturating_sub(range.start);
        let read = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut file = fs::File::open(path)?;
            file.seek(SeekFrom::Start(range.start))?;
            let mut buf = Vec::with_capacity(want as usize);
            file.take(want).read_to_end(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(|e| self.io_error("get", key, io::Error::other(e)))?
        .map_err(|e| self.io_error("get", key, e))?;
        if read.len() as u64 != want {
            return Err(StoreError::Truncated {
                store: self.location(),
                key: key.to_owned(),
                expected: want,
                got: read.len() as u64,
            });
        }
        Ok(Bytes::from(read))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let this = self.clone();
        let owned = prefix.to_owned();
        tokio::task::spawn_blocking(move || this.list_blocking(&owned))
            .await
            .map_err(|e| self.io_error("list", prefix, io::Error::other(e)))?
            .map_err(|e| self.io_error("list", prefix, e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error("delete", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_never_listed_and_stale_ones_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let put = |key: &str| {
            backend
                .put_blocking(key, &PutPayload::from(b"x".to_vec()))
                .unwrap()
        };
        assert_eq!(put("wal/pg/a"), PutOutcome::Created);
        // What a killed writer leaves: a temporary in .tmp/ and, from older versions, one beside
        // its target.
        let fresh = dir.path().join(TMP_DIR).join("b-1");
        let stale = dir.path().join(TMP_DIR).join("c-2");
        fs::write(&fresh, b"partial").unwrap();
        fs::write(&stale, b"partial").unwrap();
        fs::write(dir.path().join("wal/pg/.d.tmp-3"), b"partial").unwrap();
        let old = std::time::SystemTime::now() - STALE_TEMPORARY - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let keys: Vec<String> = backend
            .list_blocking("")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["wal/pg/a"]);
        // The next process's first put removes the stale one and leaves a live writer's.
        let next = LocalBackend::new(dir.path());
        next.put_blocking("keys/k", &PutPayload::from(b"k".to_vec()))
            .unwrap();
        assert!(fresh.exists());
        assert!(!stale.exists());
        // Temporaries beside their targets are swept by their own rule.
        let beside_stale = dir.path().join("wal/pg/.e.tmp-0000000000000004");
        fs::write(&beside_stale, b"partial").unwrap();
        fs::File::options()
            .write(true)
            .open(&beside_stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let removed = sweep_dir(
            &dir.path().join("wal/pg"),
            STALE_TEMPORARY,
            is_beside_temporary,
        )
        .unwrap();
        assert_eq!(removed, 1);
        assert!(!beside_stale.exists());
        assert!(dir.path().join("wal/pg/a").exists());
        assert!(dir.path().join("wal/pg/.d.tmp-3").exists());
    }
}
