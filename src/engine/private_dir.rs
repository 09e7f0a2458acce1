//! Directories that only this user may write: where received WAL waits before it is stored.
//!
//! A spool is trusted: what is in it is archived as the source's WAL, and a process id found in it
//! is stopped. One in a shared place (`/tmp`) that another user made first, or may write into, would
//! let that user feed WAL into the repository or have a process of theirs choosing stopped. So the
//! default spool lives under `$TMPDIR/heirloom-<uid>/` (mode 0700, ours), and any spool is refused
//! when another user owns it or others may write into it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use super::process::effective_uid;

/// `$TMPDIR/heirloom-<uid>/<name>`: a private default place for `name`, created 0700 with its
/// parent, both checked.
pub fn default_private_dir(name: &str) -> io::Result<PathBuf> {
    let uid = effective_uid()?;
    let base = std::env::temp_dir().join(format!("heirloom-{uid}"));
    ensure_private(&base, uid, Strict::OwnerOnly)?;
    let dir = base.join(name);
    ensure_private(&dir, uid, Strict::OwnerOnly)?;
    Ok(dir)
}

/// A directory the user named: created 0700 if missing; refused if another user owns it, if
/// others may write into it, or if it is a symbolic link.
pub fn ensure_user_dir(dir: &Path) -> io::Result<()> {
    let uid = effective_uid()?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    ensure_private(dir, uid, Strict::NotWritableByOthers)
}

#[derive(Clone, Copy, PartialEq)]
enum Strict {
    /// No permission at all for group or others (0700).
    OwnerOnly,
    /// Group and others may read, not write.
    NotWritableByOthers,
}

fn ensure_private(dir: &Path, uid: u32, strict: Strict) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may have taken bits away, never added them; set it exactly anyway.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Not followed: a link planted in /tmp would lead somewhere else entirely.
    let meta = fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}; refusing to use it", dir.display()),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("a symbolic link, not a directory".into());
    }
    if !meta.is_dir() {
        return refuse("not a directory".into());
    }
    if meta.uid() != uid {
        return refuse(format!(
            "owned by user id {}, not by this user ({uid}): another user made it",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    let open = match strict {
        Strict::OwnerOnly => mode & 0o077 != 0,
        Strict::NotWritableByOthers => mode & 0o022 != 0,
    };
    if open {
        return refuse(format!(
            "mode {mode:04o} lets other users in (run `chmod 700 {}`)",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_made_0700_and_an_open_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool");
        ensure_user_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Made by someone else first and left open for anyone to write.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_user_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("0777"), "{err}");
        // A link is never followed.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        let err = ensure_user_dir(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_dir_of_another_user_is_refused() {
        // Only root can hand a directory to another user; the tests run as root (TESTING.md).
        assert_eq!(effective_uid().unwrap(), 0, "this test must run as root");
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("theirs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        std::process::Command::new("chown")
            .arg("nobody")
            .arg(&dir)
            .status()
            .unwrap();
        let err = ensure_user_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("another user made it"), "{err}");
    }
}
