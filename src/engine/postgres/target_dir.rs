//! What every restore into a data directory shares: the owner its files take, and the rule that a
//! manifest's paths stay inside it.

use std::io;
use std::path::Path;

use super::PgError;

/// The user and group restored files take (the target directory's), when ours may give them.
pub type Owner = Option<(u32, u32)>;

pub fn chown(path: &Path, owner: Owner) -> Result<(), PgError> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| PgError::io(path.display(), e))?;
    }
    Ok(())
}

/// A manifest path must stay inside the target: no absolute paths, no `..`.
pub fn safe_relative(path: &str) -> io::Result<&Path> {
    let p = Path::new(path);
    let ok = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok && !path.is_empty() {
        Ok(p)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unsafe path {path:?} in the manifest"),
        ))
    }
}
