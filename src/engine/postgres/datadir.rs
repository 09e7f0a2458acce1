//! What of a data directory a physical backup copies: every file, but for those PostgreSQL
//! documents as safe to leave out (its WAL, temporary and unlogged relations, runtime files).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::PgError;

/// Directories whose contents PostgreSQL recreates at start-up; the directories themselves are kept.
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];

/// Files of the data directory's top level that are never copied.
const SKIPPED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postgresql.auto.conf.tmp",
];

/// What a data directory holds to back up: directories, and files with their modes, as relative paths.
pub(super) struct DataDirListing {
    pub(super) directories: Vec<String>,
    pub(super) files: Vec<(String, u32)>,
}

/// Lists the directories and files of a data directory to back up.
pub(super) fn walk(root: &Path) -> Result<DataDirListing, PgError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let entries = match fs::read_dir(&abs) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.as_os_str().is_empty() => {
                continue
            }
            Err(e) => return Err(PgError::io(abs.display(), e)),
        };
        let mut names: Vec<(String, fs::FileType, u32)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PgError::io(abs.display(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(PgError::io(entry.path().display(), e)),
            };
            names.push((name, meta.file_type(), meta.permissions().mode() & 0o7777));
        }
        let unlogged: Vec<String> = names
            .iter()
            .filter_map(|(n, _, _)| n.strip_suffix("_init").map(str::to_owned))
            .collect();
        let top = rel.as_os_str().is_empty();
        for (name, kind, mode) in names {
            let path = rel.join(&name);
            let text = path.to_string_lossy().into_owned();
            if name.starts_with("pgsql_tmp") || name == "pg_internal.init" {
                continue;
            }
            if kind.is_symlink() {
                if rel == Path::new("pg_tblspc") {
                    // A tablespace: its files are stored under pg_tblspc/<oid>/ and restored
                    // there as an in-place tablespace, never written to the original location.
                    dirs.push(text.clone());
                    stack.push(path);
                    continue;
                }
                warn!(path = %text, "skipping a symbolic link");
                continue;
            }
            if kind.is_dir() {
                dirs.push(text.clone());
                if top && EMPTY_DIRS.contains(&name.as_str()) {
                    if name == "pg_wal" {
                        dirs.push("pg_wal/archive_status".into());
                    }
                    continue;
                }
                stack.push(path);
                continue;
            }
            if top && SKIPPED_FILES.contains(&name.as_str()) {
                continue;
            }
            if is_relation_dir(&rel)
                && (is_temp_relation(&name) || is_unlogged_fork(&name, &unlogged))
            {
                continue;
            }
            files.push((text, mode));
        }
    }
    dirs.sort();
    files.sort();
    Ok(DataDirListing {
        directories: dirs,
        files,
    })
}

fn is_relation_dir(rel: &Path) -> bool {
    rel.starts_with("base") || rel.starts_with("pg_tblspc")
}

/// `t<backend>_<relfilenode>[...]`: temporary relations, which no one will ever read again.
fn is_temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let mut parts = rest.splitn(2, '_');
    let backend = parts.next().unwrap_or("");
    let node = parts.next().unwrap_or("");
    !backend.is_empty()
        && backend.bytes().all(|b| b.is_ascii_digit())
        && node.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// A fork of an unlogged relation other than its init fork: reset from the init fork at start-up.
fn is_unlogged_fork(name: &str, unlogged: &[String]) -> bool {
    if name.ends_with("_init") {
        return false;
    }
    let node: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    !node.is_empty() && unlogged.contains(&node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_names_are_classified() {
        assert!(is_temp_relation("t3_16384"));
        assert!(is_temp_relation("t3_16384_fsm"));
        assert!(!is_temp_relation("16384"));
        assert!(!is_temp_relation("tablespace"));
        let unlogged = vec!["16390".to_owned()];
        assert!(is_unlogged_fork("16390", &unlogged));
        assert!(is_unlogged_fork("16390.1", &unlogged));
        assert!(is_unlogged_fork("16390_fsm", &unlogged));
        assert!(!is_unlogged_fork("16390_init", &unlogged));
        assert!(!is_unlogged_fork("16391", &unlogged));
    }
}
