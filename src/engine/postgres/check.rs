//! Checking the WAL archive for `verify`: every segment a restore may need is there, and (with
//! `--read-data`) every WAL object opens and matches its digest.
//!
//! Per source and timeline, the archive must run without a hole from the first segment any backup
//! of that timeline needs (its `start_wal`) to the newest segment archived or streamed; a timeline
//! with no backup of its own (one born of a promotion) must run from its first segment on. Every
//! backup's own range, `start_wal` to `stop_wal`, must be whole, and every timeline above 1 needs
//! its `.history` file. A hole is reported once, as the range of segments it spans.

use std::collections::{BTreeMap, BTreeSet};

use super::names::WalFileName;
use super::snapshot::{partial_chains, read_partial};
use super::wal::wal_key;
use super::wal_object::read_wal;
use super::PgError;
use crate::repo::layout::ObjectKind;
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::prune_record::DeletedLog;
use crate::repo::Repository;

/// What the WAL check found.
#[derive(Debug, Default)]
pub struct WalCheck {
    /// Sources with an archive, or with a physical backup that needs one.
    pub sources: usize,
    /// WAL files and streamed segments checked for their place in the archive.
    pub files: usize,
    /// Of those, read whole, decrypted and re-hashed.
    pub read: usize,
    /// (object, problem)
    pub problems: Vec<(String, String)>,
}

/// Checks every source's WAL archive. `manifests` are the repository's backups; `pruned` the log
/// prunes deleted on purpose (a hole they explain is not a problem); `read` chooses, by object
/// key, which objects are read whole.
pub async fn verify_wal(
    repo: &Repository,
    manifests: &[Manifest],
    pruned: &[DeletedLog],
    read: impl Fn(&str) -> bool,
) -> Result<WalCheck, PgError> {
    let mut check = WalCheck::default();
    // One listing of the whole archive: per source, the WAL files stored whole, with their sizes.
    let mut sources: BTreeMap<String, Vec<(WalFileName, u64)>> = BTreeMap::new();
    for object in repo.store().list(ObjectKind::Wal.prefix()).await? {
        let Some((source, name)) = object
            .key
            .strip_prefix(ObjectKind::Wal.prefix())
            .and_then(|rest| rest.split_once('/'))
        else {
            check
                .problems
                .push((object.key.clone(), "not a WAL object key".into()));
            continue;
        };
        let files = sources.entry(source.to_owned()).or_default();
        match name.parse::<WalFileName>() {
            Ok(name) => files.push((name, object.size)),
            Err(_) => check.problems.push((
                object.key.clone(),
                "not a WAL file name (segment, .history, .backup or .partial)".into(),
            )),
        }
    }
    for m in manifests {
        if m.kind == BackupKind::PostgresPhysical {
            sources.entry(m.source.to_string()).or_default();
        }
    }
    for (source, whole) in sources {
        check.sources += 1;
        let backups: Vec<&Manifest> = manifests
            .iter()
            .filter(|m| m.source == source.as_str() && m.kind == BackupKind::PostgresPhysical)
            .collect();
        let pruned: Vec<&DeletedLog> = pruned
            .iter()
            .filter(|d| d.source == source.as_str() && d.log == "WAL")
            .collect();
        check_source(repo, &source, whole, &backups, &pruned, &read, &mut check).await?;
    }
    Ok(check)
}

/// Checks one source's archive: `whole` are its WAL files stored whole (name, size).
async fn check_source(
    repo: &Repository,
    source: &str,
    whole: Vec<(WalFileName, u64)>,
    backups: &[&Manifest],
    pruned: &[&DeletedLog],
    read: &impl Fn(&str) -> bool,
    check: &mut WalCheck,
) -> Result<(), PgError> {
    // Segments streamed but not yet stored whole: their snapshots stand in for them (as in
    // `archived_with_sizes`, from the listing already made).
    let chains = partial_chains(repo, source).await?;
    let stored_whole: BTreeSet<WalFileName> = whole.iter().map(|(n, _)| n.clone()).collect();
    let mut archived = whole;
    for (segment, chain) in &chains {
        if !stored_whole.contains(segment) {
            archived.push((segment.clone(), chain.size()));
        }
    }
    archived.sort();
    let present: BTreeSet<&WalFileName> = archived.iter().map(|(n, _)| n).collect();
    let segment_size = super::retention::segment_size(backups.iter().copied());

    // Per timeline: the first segment needed, and the segments present.
    let mut timelines: BTreeMap<u32, (Option<WalFileName>, Vec<&WalFileName>)> = BTreeMap::new();
    for name in &present {
        if let WalFileName::Segment { timeline, .. } = name {
            timelines.entry(*timeline).or_default().1.push(name);
        }
    }
    for m in backups {
        let Some(p) = &m.postgres else { continue };
        let (Ok(start), Ok(stop)) = (
            p.start_wal.parse::<WalFileName>(),
            p.stop_wal.parse::<WalFileName>(),
        ) else {
            check.problems.push((
                m.id.key(),
                format!(
                    "names WAL {} .. {} that are not WAL file names",
                    p.start_wal, p.stop_wal
                ),
            ));
            continue;
        };
        let entry = timelines.entry(p.timeline).or_default();
        if entry.0.as_ref().is_none_or(|first| start < *first) {
            entry.0 = Some(start.clone());
        }
        // The backup's own range: without it, the backup cannot become consistent.
        let missing = missing_between(&start, &stop, segment_size, &present);
        if let Some(range) = describe(&missing) {
            check.problems.push((
                m.id.key(),
                format!("needs WAL {range}, which is not in the archive of source {source}: this backup cannot be restored"),
            ));
        }
    }
    for (timeline, (first_needed, names)) in &timelines {
        if *timeline > 1
            && !present.contains(&WalFileName::History {
                timeline: *timeline,
            })
        {
            let history = WalFileName::History {
                timeline: *timeline,
            };
            check.problems.push((
                wal_key(source, &history),
                format!("missing: timeline {timeline} has segments, but recovery cannot follow it without its history file"),
            ));
        }
        let (Some(first_present), Some(last)) = (names.first(), names.last()) else {
            continue;
        };
        let first = match first_needed {
            Some(f) if f < *first_present => f.clone(),
            _ => (*first_present).clone(),
        };
        // Holes inside the run from the first needed segment to the newest one. The ones inside a
        // backup's own range were named with the backup; these are named with the archive.
        let mut missing = missing_between(&first, last, segment_size, &present);
        missing.retain(|name| !pruned.iter().any(|d| deleted_by(d, name)));
        for run in runs(&missing, segment_size) {
            let (from, to) = (run[0], run[run.len() - 1]);
            let range = if run.len() == 1 {
                from.to_string()
            } else {
                format!("{from} .. {to} ({} segments)", run.len())
            };
            check.problems.push((
                wal_key(source, from),
                format!("missing from the archive of source {source} (timeline {timeline}): WAL {range}; recovery cannot replay past it to the WAL archived after it"),
            ));
        }
    }

    // Every object opens and matches its digest.
    for (name, _) in &archived {
        check.files += 1;
        let key = wal_key(source, name);
        let chain = chains.get(name);
        let stored_whole = stored_whole.contains(name);
        let selected = read(&key);
        if !selected {
            continue;
        }
        check.read += 1;
        let outcome = match (stored_whole, chain) {
            (true, _) => read_wal(repo, &key).await.map(|_| ()),
            (false, Some(chain)) => read_partial(repo, chain).await.map(|_| ()),
            (false, None) => Ok(()),
        };
        if let Err(e) = outcome {
            let object = match (stored_whole, chain) {
                (false, Some(chain)) => chain.pieces.first().map_or(key.clone(), |p| p.key.clone()),
                _ => key.clone(),
            };
            check.problems.push((object.clone(), strip(&e, &object)));
        }
    }
    Ok(())
}

/// The segments from `from` to `to` (both included) that are not `present`.
/// Whether a prune's deleted stretch holds the segment `name` (a stretch lies within one
/// timeline, and its ends are WAL file names, a snapshot's followed by a note).
fn deleted_by(d: &DeletedLog, name: &WalFileName) -> bool {
    let name = name.to_string();
    match (d.first.get(..24), d.last.get(..24)) {
        (Some(first), Some(last)) => {
            first[..8] == name[..8] && first <= name.as_str() && name.as_str() <= last
        }
        _ => false,
    }
}

fn missing_between(
    from: &WalFileName,
    to: &WalFileName,
    segment_size: u64,
    present: &BTreeSet<&WalFileName>,
) -> Vec<WalFileName> {
    let mut missing = Vec::new();
    let mut cursor = Some(from.clone());
    while let Some(name) = cursor {
        if name > *to {
            break;
        }
        if !present.contains(&name) {
            missing.push(name.clone());
        }
        cursor = name.next_segment(segment_size);
    }
    missing
}

/// Missing segments grouped into runs of consecutive ones.
fn runs(missing: &[WalFileName], segment_size: u64) -> Vec<Vec<&WalFileName>> {
    let mut out: Vec<Vec<&WalFileName>> = Vec::new();
    for name in missing {
        match out.last_mut() {
            Some(run)
                if run
                    .last()
                    .and_then(|l| l.next_segment(segment_size))
                    .as_ref()
                    == Some(name) =>
            {
                run.push(name)
            }
            _ => out.push(vec![name]),
        }
    }
    out
}

/// `A` or `A .. B (n segments)`, for a set of missing segments.
fn describe(missing: &[WalFileName]) -> Option<String> {
    match missing {
        [] => None,
        [one] => Some(one.to_string()),
        [first, .., last] => Some(format!(
            "{first} .. {last} ({} segments missing)",
            missing.len()
        )),
    }
}

/// An error's message without repeating the object it is about.
fn strip(e: &PgError, object: &str) -> String {
    match e {
        PgError::Repo(crate::repo::RepoError::Corrupt { object: o, why }) if o == object => {
            why.clone()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::retention::DEFAULT_SEGMENT_SIZE;
    use super::*;

    fn seg(n: u32) -> WalFileName {
        WalFileName::Segment {
            timeline: 1,
            log: 0,
            seg: n,
        }
    }

    #[test]
    fn holes_are_found_and_grouped_into_ranges() {
        let names: Vec<WalFileName> = [1, 2, 4, 7, 8].into_iter().map(seg).collect();
        let present: BTreeSet<&WalFileName> = names.iter().collect();
        let missing = missing_between(&seg(1), &seg(8), DEFAULT_SEGMENT_SIZE, &present);
        assert_eq!(missing, vec![seg(3), seg(5), seg(6)]);
        let grouped = runs(&missing, DEFAULT_SEGMENT_SIZE);
        assert_eq!(grouped, vec![vec![&seg(3)], vec![&seg(5), &seg(6)]]);
        assert_eq!(
            describe(&missing).unwrap(),
            "000000010000000000000003 .. 000000010000000000000006 (3 segments missing)"
        );
        // Across a log boundary (256 segments of 16 MiB per log file).
        let far = WalFileName::Segment {
            timeline: 1,
            log: 1,
            seg: 0,
        };
        let last = WalFileName::Segment {
            timeline: 1,
            log: 0,
            seg: 255,
        };
        let names = [last.clone(), far.clone()];
        let present: BTreeSet<&WalFileName> = names.iter().collect();
        assert!(missing_between(&last, &far, DEFAULT_SEGMENT_SIZE, &present).is_empty());
    }
}
