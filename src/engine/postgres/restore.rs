//! Point-in-time restore into a data directory: a plan's backup laid down, verified, and the
//! recovery settings that make PostgreSQL replay to the plan's point (`plan.rs` decides it).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::info;

use super::delta::{self, DeltaReport};
use super::plan::RestorePlan;
use super::target_dir::{chown, safe_relative, Owner};
use super::PgError;
use crate::pipeline::restore::{restore_files, FileSink};
use crate::pipeline::Concurrency;
use crate::progress::Progress;
use crate::repo::manifest::{FileEntry, Manifest, PostgresPoint};
use crate::repo::Repository;
use crate::restore::point::RestorePoint;

/// How the restored cluster will fetch WAL: the full `restore_command`, with `%f` and `%p`.
pub struct RestoreRequest<'a> {
    pub target_dir: &'a Path,
    pub restore_command: String,
    pub force: bool,
    /// Restore over the same cluster's data directory, rewriting only what differs.
    pub delta: bool,
    /// Written as `port` in postgresql.auto.conf, for a copy beside its source.
    pub port: Option<u16>,
    pub concurrency: Concurrency,
}

/// Lays the backup of `plan` down in the target directory and writes the recovery settings. The
/// restored files take the owner of the target directory when it exists (create it owned by the
/// `postgres` user); starting the server is left to the caller. With `delta`, the directory holds
/// the same cluster already and only what differs is rewritten (see [`delta`]); what it found and
/// did is returned.
pub async fn restore(
    repo: &Repository,
    plan: &RestorePlan,
    manifest: &Manifest,
    request: &RestoreRequest<'_>,
    progress: Progress,
) -> Result<Option<DeltaReport>, PgError> {
    if let Some(problem) = plan.problem() {
        return Err(PgError::Unrestorable(problem));
    }
    let pg = manifest.postgres.as_ref().ok_or_else(|| {
        PgError::Invalid(format!("backup {} is not a PostgreSQL backup", manifest.id))
    })?;
    let dir = request.target_dir;
    if request.delta {
        // Refused before anything in the directory changes.
        delta::check_target(dir, manifest)?;
    }
    let owner = prepare_target(dir, request.force, request.delta)?;
    let delta_report = match request.delta {
        true => Some(
            delta::restore_delta(
                repo,
                manifest,
                dir,
                owner,
                request.concurrency,
                progress.clone(),
            )
            .await?,
        ),
        false => {
            restore_whole(repo, manifest, dir, owner, request, progress).await?;
            None
        }
    };
    finish(plan, pg, dir, owner, request)?;
    Ok(delta_report)
}

/// Lays every directory and file of the backup down in an empty `dir`.
async fn restore_whole(
    repo: &Repository,
    manifest: &Manifest,
    dir: &Path,
    owner: Owner,
    request: &RestoreRequest<'_>,
    progress: Progress,
) -> Result<(), PgError> {
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
    Ok(())
}

/// Writes the backup's `backup_label` and the recovery settings that make PostgreSQL replay to
/// the plan's point.
fn finish(
    plan: &RestorePlan,
    pg: &PostgresPoint,
    dir: &Path,
    owner: Owner,
    request: &RestoreRequest<'_>,
) -> Result<(), PgError> {
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
    // A backup restored as it was stays on its own timeline; every other point follows the
    // archive's promotions, as the plan checked.
    settings += if matches!(plan.point, RestorePoint::Backup(_)) {
        "recovery_target_timeline = 'current'\n"
    } else {
        "recovery_target_timeline = 'latest'\n"
    };
    if let Some(port) = request.port {
        settings += &format!("port = {port}\n");
    }
    match &plan.point {
        RestorePoint::Latest | RestorePoint::Gtid(_) => {}
        RestorePoint::Time(t) => {
            settings += &format!(
                "recovery_target_time = '{}'\n",
                t.at.format("%Y-%m-%d %H:%M:%S%.6f+00")
            );
            settings += "recovery_target_action = 'promote'\n";
        }
        RestorePoint::Backup(_) => {
            settings += "recovery_target = 'immediate'\n";
            settings += "recovery_target_action = 'promote'\n";
        }
        RestorePoint::Lsn(lsn) => {
            settings += &format!("recovery_target_lsn = '{lsn}'\n");
            settings += "recovery_target_action = 'promote'\n";
        }
        RestorePoint::Name(name) => {
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

/// Checks the target directory is empty (or clears it with `force`, or keeps its contents with
/// `keep`, for a delta restore), creates it if needed, and returns the owner restored files
/// should take.
fn prepare_target(dir: &Path, force: bool, keep: bool) -> Result<Owner, PgError> {
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
            if !entries.is_empty() && !keep {
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
