//! Point-in-time restore into a data directory: the plan (which base backup, which WAL), then the
//! files laid down, verified, and the recovery settings that make PostgreSQL replay to the target.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::progress::Progress;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::info;

use super::names::{Lsn, WalFileName};
use super::wal::archived_with_sizes;
use super::PgError;
use crate::pipeline::restore::{restore_files, FileSink};
use crate::pipeline::Concurrency;
use crate::repo::manifest::{BackupId, BackupKind, FileEntry, Manifest};
use crate::repo::Repository;

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Target {
    /// Replay every archived WAL file.
    Latest,
    /// Stop just after the last transaction committed at or before this instant.
    Time(DateTime<Utc>),
    /// Restore this backup, replaying only what makes it consistent.
    Backup(BackupId),
    /// Stop just after this WAL location (`0/3000028`).
    Lsn(Lsn),
    /// Stop at the restore point made with `pg_create_restore_point(name)`.
    Name(String),
}

/// What a restore will do: `--dry-run` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub source: String,
    pub target: Target,
    pub backup: BackupId,
    pub backup_consistent_at: DateTime<Utc>,
    pub timeline: u32,
    /// The first WAL file recovery needs, and the one that makes the backup consistent.
    pub wal_start: String,
    pub wal_consistent: String,
    /// The last WAL file of an unbroken run from `wal_start` on the backup's timeline.
    pub wal_last: Option<String>,
    /// WAL files the backup cannot do without that are not in the archive.
    pub missing: Vec<String>,
    /// Archived WAL exists past this missing file, but recovery cannot reach it.
    pub gap_at: Option<String>,
    /// Why recovery cannot be shown to reach the target, when it cannot: such a plan is refused,
    /// and `--dry-run` exits 3, so a script never takes an unreachable instant for a restorable one.
    pub unreachable: Option<String>,
    pub backup_bytes: u64,
    pub wal_bytes: u64,
}

impl RestorePlan {
    /// The backup can be made consistent and the WAL reaches the target.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unreachable.is_none()
    }

    /// Why the plan cannot be carried out, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !self.missing.is_empty() {
            return Some(format!(
                "backup {} cannot be made consistent: WAL missing from the archive: {}",
                self.backup,
                self.missing.join(", ")
            ));
        }
        self.unreachable.clone()
    }
}

/// Chooses the backup and checks the WAL, from the manifests and the archive listing alone.
pub fn plan(
    source: &str,
    manifests: &[Manifest],
    archived: &[(WalFileName, u64)],
    target: &Target,
) -> Result<RestorePlan, PgError> {
    let backups: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| {
            m.source == source && m.kind == BackupKind::PostgresPhysical && m.postgres.is_some()
        })
        .collect();
    let point = |m: &Manifest| m.postgres.as_ref().map(|p| p.consistent_at);
    let chosen = match target {
        Target::Latest => backups.iter().max_by_key(|m| point(m)),
        Target::Time(t) => backups
            .iter()
            .filter(|m| point(m).is_some_and(|c| c <= *t))
            .max_by_key(|m| point(m)),
        Target::Backup(id) => backups.iter().find(|m| &m.id == id),
        Target::Lsn(target) => {
            let target = *target;
            backups
                .iter()
                .filter(|m| {
                    m.postgres
                        .as_ref()
                        .and_then(|p| p.stop_lsn.parse::<Lsn>().ok())
                        .is_some_and(|stop| stop <= target)
                })
                .max_by_key(|m| point(m))
        }
        // Where a restore point lies is known only to the WAL: the newest backup, replayed to it.
        Target::Name(_) => backups.iter().max_by_key(|m| point(m)),
    }
    .copied();
    let Some(backup) = chosen else {
        let earliest = backups.iter().filter_map(|m| point(m)).min();
        return Err(PgError::Invalid(match (target, earliest) {
            (_, None) => format!("source {source} has no PostgreSQL base backup"),
            (Target::Time(t), Some(e)) => format!(
                "no backup of {source} is consistent at or before {}: the earliest is consistent at {}",
                t.to_rfc3339(),
                e.to_rfc3339()
            ),
            (Target::Backup(id), Some(_)) => format!("backup {id} is not a PostgreSQL backup of {source}"),
            (Target::Latest | Target::Name(_), Some(_)) => {
                format!("source {source} has no usable backup")
            }
            (Target::Lsn(lsn), Some(_)) => format!(
                "no backup of {source} is consistent at or before LSN {lsn}: the earliest ends after it"
            ),
        }));
    };
    let pg = backup
        .postgres
        .as_ref()
        .ok_or_else(|| PgError::Invalid("no PostgreSQL point".into()))?;
    let start: WalFileName = pg.start_wal.parse().map_err(PgError::Invalid)?;
    let consistent: WalFileName = pg.stop_wal.parse().map_err(PgError::Invalid)?;
    let sizes: std::collections::HashMap<&WalFileName, u64> =
        archived.iter().map(|(n, s)| (n, *s)).collect();

    // The unbroken run of segments from the start, on the backup's timeline.
    let mut missing = Vec::new();
    let mut wal_last = None;
    let mut wal_bytes = 0;
    let mut next = Some(start.clone());
    let mut gap_at = None;
    while let Some(name) = next {
        match sizes.get(&name) {
            Some(size) => {
                wal_bytes += size;
                wal_last = Some(name.to_string());
            }
            None => {
                if name <= consistent {
                    missing.push(name.to_string());
                } else {
                    let later = archived.iter().any(|(n, _)| {
                        matches!(n, WalFileName::Segment { timeline, .. } if *timeline == pg.timeline) && *n > name
                    });
                    if later {
                        gap_at = Some(name.to_string());
                    }
                    break;
                }
            }
        }
        next = name.next_segment(pg.segment_size);
        if name > consistent && matches!(target, Target::Backup(_)) {
            break;
        }
    }
    let unreachable = unreachable(
        target,
        gap_at.as_ref(),
        wal_last.as_deref(),
        pg.timeline,
        pg.segment_size,
        &backups,
    )?;
    Ok(RestorePlan {
        source: source.to_owned(),
        target: target.clone(),
        backup: backup.id.clone(),
        backup_consistent_at: pg.consistent_at,
        timeline: pg.timeline,
        wal_start: pg.start_wal.clone(),
        wal_consistent: pg.stop_wal.clone(),
        wal_last,
        missing,
        gap_at,
        unreachable,
        backup_bytes: backup.size(),
        wal_bytes,
    })
}

/// Why the WAL after the backup cannot be shown to carry recovery to `target`, if it cannot.
///
/// With no hole after the backup, recovery runs to the end of the archive, and PostgreSQL itself
/// stops with an error if a time or restore point lies beyond it. A hole (`gap`: a missing segment
/// with WAL archived after it) ends recovery early: for `--latest` that would silently drop what
/// follows; for an LSN the segment it lies in says which side of the hole it is; for a time, a
/// later backup of the timeline that ended after that time and before the hole proves the time
/// lies before it (WAL positions only grow with time on one timeline); otherwise nothing in the
/// archive tells, and the plan is refused rather than guessed.
fn unreachable(
    target: &Target,
    gap: Option<&String>,
    wal_last: Option<&str>,
    timeline: u32,
    segment_size: u64,
    backups: &[&Manifest],
) -> Result<Option<String>, PgError> {
    let gap_name = gap
        .map(|g| g.parse::<WalFileName>())
        .transpose()
        .map_err(PgError::Invalid)?;
    let advice =
        "restore an earlier instant, or --lsn up to the end of the last segment before the hole";
    Ok(match (target, &gap_name) {
        (Target::Backup(_), _) => None,
        (Target::Lsn(lsn), _) => {
            let lsn = *lsn;
            let needed = WalFileName::segment_of(timeline, lsn, segment_size);
            match (&gap_name, wal_last) {
                (Some(g), _) if needed >= *g => Some(format!(
                    "LSN {lsn} lies in WAL {needed}, past {g}, which is missing from the archive: recovery cannot reach it"
                )),
                (None, Some(last)) if needed.to_string().as_str() > last => Some(format!(
                    "LSN {lsn} lies in WAL {needed}, and the archive of timeline {timeline} ends at {last}"
                )),
                _ => None,
            }
        }
        (_, None) => None,
        (Target::Latest, Some(g)) => Some(format!(
            "WAL {g} is missing from the archive, and WAL was archived after it: recovery would stop at the hole and lose everything after it; {advice}"
        )),
        (Target::Name(name), Some(g)) => Some(format!(
            "WAL {g} is missing from the archive, and whether restore point {name:?} lies before it cannot be told: recovery would stop at the hole; {advice}"
        )),
        (Target::Time(t), Some(g)) => {
            let before_hole = backups.iter().any(|m| {
                m.postgres.as_ref().is_some_and(|p| {
                    p.timeline == timeline
                        && p.consistent_at > *t
                        && p.stop_wal.parse::<WalFileName>().is_ok_and(|stop| stop < *g)
                })
            });
            (!before_hole).then(|| format!(
                "WAL {g} is missing from the archive, with WAL archived after it, and nothing shows that {} lies before the hole: recovery could stop short of it; {advice}",
                t.to_rfc3339()
            ))
        }
    })
}

/// Plans a restore of `source` from what the repository holds.
pub async fn plan_restore(
    repo: &Repository,
    source: &str,
    target: &Target,
) -> Result<(RestorePlan, Manifest), PgError> {
    let manifests = repo.manifests(Some(source)).await?;
    let archived = archived_with_sizes(repo, source).await?;
    let plan = plan(source, &manifests, &archived, target)?;
    let manifest = manifests
        .into_iter()
        .find(|m| m.id == plan.backup)
        .ok_or_else(|| PgError::Invalid(format!("backup {} vanished", plan.backup)))?;
    Ok((plan, manifest))
}

/// How the restored cluster will fetch WAL: the full `restore_command`, with `%f` and `%p`.
pub struct RestoreRequest<'a> {
    pub target_dir: &'a Path,
    pub restore_command: String,
    pub force: bool,
    /// Written as `port` in postgresql.auto.conf, for a copy beside its source.
    pub port: Option<u16>,
    pub concurrency: Concurrency,
}

/// Lays the backup of `plan` down in the target directory and writes the recovery settings. The
/// restored files take the owner of the target directory when it exists (create it owned by the
/// `postgres` user); starting the server is left to the caller.
pub async fn restore(
    repo: &Repository,
    plan: &RestorePlan,
    manifest: &Manifest,
    request: &RestoreRequest<'_>,
    progress: Progress,
) -> Result<(), PgError> {
    if let Some(problem) = plan.problem() {
        return Err(PgError::Unrestorable(problem));
    }
    let pg = manifest.postgres.as_ref().ok_or_else(|| {
        PgError::Invalid(format!("backup {} is not a PostgreSQL backup", manifest.id))
    })?;
    let dir = request.target_dir;
    let owner = prepare_target(dir, request.force)?;
    for d in &manifest.directories {
        let path = dir.join(safe_relative(d).map_err(|e| PgError::io(d, e))?);
        if let Some(oid) = tablespace_oid(d) {
            // A tablespace: its files go beside the data directory, in <dir>.tablespaces/<oid>,
            // linked from pg_tblspc/<oid> as PostgreSQL links tablespaces; never over the
            // source's own location.
            let home = tablespaces_home(dir).join(oid);
            if home.exists() {
                if !request.force {
                    return Err(PgError::Invalid(format!(
                        "{} exists: restore elsewhere, or --force to replace it",
                        home.display()
                    )));
                }
                fs::remove_dir_all(&home).map_err(|e| PgError::io(home.display(), e))?;
            }
            fs::create_dir_all(&home).map_err(|e| PgError::io(home.display(), e))?;
            for made in [home.parent().unwrap_or(&home), home.as_path()] {
                fs::set_permissions(made, fs::Permissions::from_mode(0o700))
                    .map_err(|e| PgError::io(made.display(), e))?;
                chown(made, owner)?;
            }
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| PgError::io(parent.display(), e))?;
            }
            std::os::unix::fs::symlink(&home, &path).map_err(|e| PgError::io(path.display(), e))?;
            continue;
        }
        fs::create_dir_all(&path).map_err(|e| PgError::io(path.display(), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .map_err(|e| PgError::io(path.display(), e))?;
        chown(&path, owner)?;
    }
    // Files are written by two writers at once: the kernel's copying and each file's fsync then
    // overlap, as they would not on one thread. Each fetches as many reads ahead as there are cores.
    let index = repo.load_index().await?;
    let writers = 2;
    let share = Concurrency {
        cpu: request.concurrency.cpu,
        io: 1,
    };
    let groups = balance(&manifest.files, writers);
    let jobs = groups.iter().map(|files| {
        let sink = DirSink {
            root: dir.to_owned(),
            owner,
            current: None,
        };
        restore_files(repo, &index, manifest, files, sink, share, progress.clone())
    });
    futures::future::try_join_all(jobs).await?;

    write_file(dir, "backup_label", pg.backup_label.as_bytes(), owner)?;
    // Tablespaces were linked above into <dir>.tablespaces/: no tablespace_map, which would make
    // PostgreSQL link them back to the source's locations.
    if pg.tablespace_map.is_some() {
        tracing::info!(home = %tablespaces_home(dir).display(), "tablespaces restored beside the data directory");
    }
    let mut settings =
        String::from("\n# Added by heirloom-backup restore: recovery from the archive.\n");
    settings += &format!(
        "restore_command = '{}'\n",
        request.restore_command.replace('\'', "''")
    );
    // A restored copy must never archive into its source's WAL stream.
    settings += "archive_mode = 'off'\n";
    settings += "recovery_target_timeline = 'latest'\n";
    if let Some(port) = request.port {
        settings += &format!("port = {port}\n");
    }
    match &plan.target {
        Target::Latest => {}
        Target::Time(t) => {
            settings += &format!(
                "recovery_target_time = '{}'\n",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00")
            );
            settings += "recovery_target_action = 'promote'\n";
        }
        Target::Backup(_) => {
            settings += "recovery_target = 'immediate'\n";
            settings += "recovery_target_action = 'promote'\n";
        }
        Target::Lsn(lsn) => {
            settings += &format!("recovery_target_lsn = '{lsn}'\n");
            settings += "recovery_target_action = 'promote'\n";
        }
        Target::Name(name) => {
            settings += &format!("recovery_target_name = '{}'\n", name.replace('\'', "''"));
            settings += "recovery_target_action = 'promote'\n";
        }
    }
    let auto = dir.join("postgresql.auto.conf");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&auto)
        .map_err(|e| PgError::io(auto.display(), e))?;
    file.write_all(settings.as_bytes())
        .map_err(|e| PgError::io(auto.display(), e))?;
    file.sync_all()
        .map_err(|e| PgError::io(auto.display(), e))?;
    chown(&auto, owner)?;
    write_file(dir, "recovery.signal", b"", owner)?;
    info!(backup = %plan.backup, dir = %dir.display(), "restored; start PostgreSQL to recover");
    Ok(())
}

/// Splits files into `n` groups of about equal bytes (largest first, each to the lightest group).
fn balance(files: &[FileEntry], n: usize) -> Vec<Vec<FileEntry>> {
    let mut order: Vec<&FileEntry> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.size));
    let mut groups: Vec<(u64, Vec<FileEntry>)> = vec![(0, Vec::new()); n.max(1)];
    for file in order {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            lightest.0 += file.size.max(1);
            lightest.1.push(file.clone());
        }
    }
    groups
        .into_iter()
        .map(|(_, g)| g)
        .filter(|g| !g.is_empty())
        .collect()
}

type Owner = Option<(u32, u32)>;

/// Checks the target directory is empty (or clears it with `force`), creates it if needed, and
/// returns the owner restored files should take.
fn prepare_target(dir: &Path, force: bool) -> Result<Owner, PgError> {
    use std::os::unix::fs::MetadataExt;
    let me = crate::engine::process::effective_uid().map_err(|e| PgError::io("/proc/self", e))?;
    match fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(PgError::Invalid(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            // Restored files belong to the directory's owner, the user PostgreSQL will run as.
            // Only root can give files away; anyone else restores into a directory of their own,
            // and the files keep their own user and group (PostgreSQL ignores the group). Checked
            // before anything is written or removed.
            if me != 0 && meta.uid() != me {
                return Err(PgError::Invalid(format!(
                    "{} belongs to user id {}, and this restore runs as user id {me}, which cannot give the restored files to that user: run the restore as that user (the one PostgreSQL runs as), or as root, or `chown {me} {}` first",
                    dir.display(),
                    meta.uid(),
                    dir.display()
                )));
            }
            if me != 0 && meta.permissions().mode() & 0o200 == 0 {
                return Err(PgError::Invalid(format!(
                    "{} is not writable by its owner (mode {:04o}): `chmod 700 {}` first",
                    dir.display(),
                    meta.permissions().mode() & 0o7777,
                    dir.display()
                )));
            }
            let entries: Vec<_> = fs::read_dir(dir)
                .map_err(|e| PgError::io(dir.display(), e))?
                .collect::<Result<_, _>>()
                .map_err(|e| PgError::io(dir.display(), e))?;
            if !entries.is_empty() {
                if !force {
                    return Err(PgError::Invalid(format!(
                        "target directory {} is not empty ({} entries); use --force to replace its contents",
                        dir.display(),
                        entries.len()
                    )));
                }
                for e in entries {
                    let p = e.path();
                    let removed = if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    removed.map_err(|err| PgError::io(p.display(), err))?;
                }
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| PgError::io(dir.display(), e))?;
            Ok((me == 0).then_some((meta.uid(), meta.gid())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| PgError::io(dir.display(), e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| PgError::io(dir.display(), e))?;
            Ok(None)
        }
        Err(e) => Err(PgError::io(dir.display(), e)),
    }
}

fn chown(path: &Path, owner: Owner) -> Result<(), PgError> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| PgError::io(path.display(), e))?;
    }
    Ok(())
}

fn write_file(dir: &Path, name: &str, bytes: &[u8], owner: Owner) -> Result<(), PgError> {
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| PgError::io(path.display(), e))?;
    f.write_all(bytes)
        .map_err(|e| PgError::io(path.display(), e))?;
    f.sync_all().map_err(|e| PgError::io(path.display(), e))?;
    chown(&path, owner)
}

/// Writes restored files under a directory, with their modes and the directory's owner; each file
/// is synced to disk when it is complete.
struct DirSink {
    root: PathBuf,
    owner: Owner,
    current: Option<(PathBuf, fs::File)>,
}

impl FileSink for DirSink {
    fn open(&mut self, file: &FileEntry) -> io::Result<Box<dyn Write + Send>> {
        let path = self.root.join(safe_relative(&file.path)?);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(file.mode.unwrap_or(0o600) & 0o777)
            .open(&path)?;
        self.current = Some((path, f.try_clone()?));
        Ok(Box::new(f))
    }

    fn close(&mut self, _: &FileEntry, writer: Box<dyn Write + Send>) -> io::Result<()> {
        drop(writer);
        if let Some((path, f)) = self.current.take() {
            f.sync_all()?;
            chown(&path, self.owner).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// A manifest path must stay inside the target: no absolute paths, no `..`.
fn safe_relative(path: &str) -> io::Result<&Path> {
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

/// `pg_tblspc/<oid>`: the directory of a tablespace in a physical backup.
fn tablespace_oid(path: &str) -> Option<&str> {
    let oid = path.strip_prefix("pg_tblspc/")?;
    (!oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit())).then_some(oid)
}

/// Where a restore into `dir` puts tablespaces: `<dir>.tablespaces`.
pub fn tablespaces_home(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".tablespaces");
    PathBuf::from(name)
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
