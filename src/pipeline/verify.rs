//! Checking a repository: structure always (every index and manifest opens, every referenced chunk is
//! indexed, every indexed pack exists with its size); with `read_data`, every pack of the chosen subset
//! is downloaded, hashed against its name, and every chunk in it opened and re-hashed.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use futures::StreamExt;
use serde::Serialize;

use super::Concurrency;
use crate::repo::blob;
use crate::repo::ids::{ChunkId, PackId};
use crate::repo::index::Index;
use crate::repo::layout::{pack_key, ObjectKey, ObjectKind};
use crate::repo::pack::{read_pack, PackEntry};
use crate::repo::{RepoError, Repository};

/// Which packs `--read-data` reads: deterministic, so `1/T` … `T/T` together read every pack once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    All,
    /// The n-th of t parts (1-based).
    Part {
        n: u32,
        t: u32,
    },
    /// About this percentage of packs.
    Percent(f64),
}

impl FromStr for Subset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| format!("{s:?}: expected a percentage such as 10%"))?;
            if !(0.0..=100.0).contains(&p) || p == 0.0 {
                return Err(format!(
                    "{s:?}: the percentage must be above 0 and at most 100"
                ));
            }
            return Ok(Subset::Percent(p));
        }
        let (n, t) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected N/T (such as 2/7) or P% (such as 10%)"))?;
        let n: u32 = n.parse().map_err(|_| format!("{s:?}: N is not a number"))?;
        let t: u32 = t.parse().map_err(|_| format!("{s:?}: T is not a number"))?;
        if t == 0 || n == 0 || n > t {
            return Err(format!("{s:?}: need 1 <= N <= T"));
        }
        Ok(Subset::Part { n, t })
    }
}

/// As `--subset` takes it: `all`, `N/T`, `P%`.
impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subset::All => f.write_str("all"),
            Subset::Part { n, t } => write!(f, "{n}/{t}"),
            Subset::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Subset {
    /// For objects numbered in order (binlog segments): the same parts, by number.
    pub fn contains_number(&self, n: u64) -> bool {
        match *self {
            Subset::All => true,
            Subset::Part { n: part, t } => n % u64::from(t) == u64::from(part - 1),
            Subset::Percent(p) => {
                let spread = crc32fast::hash(&n.to_le_bytes());
                f64::from(spread) < p / 100.0 * 4_294_967_296.0
            }
        }
    }

    /// For objects named by key (WAL files): the same parts, by a hash of the key.
    pub fn contains_key(&self, key: &str) -> bool {
        self.contains_number(u64::from(crc32fast::hash(key.as_bytes())))
    }

    pub fn contains(&self, pack: &PackId) -> bool {
        match *self {
            Subset::All => true,
            Subset::Part { n, t } => pack.prefix_u32() % t == n - 1,
            Subset::Percent(p) => f64::from(pack.prefix_u32()) < p / 100.0 * 4_294_967_296.0,
        }
    }
}

/// One thing found wrong, naming the object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub object: String,
    pub problem: String,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub index_files: usize,
    pub packs: usize,
    pub backups: usize,
    /// Binlog segments checked for their place in their chain, and read whole.
    pub binlog_segments: usize,
    pub binlog_segments_read: usize,
    /// WAL files checked for their place in their archive, and read whole.
    pub wal_files: usize,
    pub wal_files_read: usize,
    pub packs_read: usize,
    pub chunks_read: usize,
    pub bytes_read: u64,
    /// Packs in the store that no index names: left by interrupted backups, harmless.
    pub unindexed_packs: usize,
    /// Objects whose keys are of no kind this format knows (`repo::layout`): not read, not
    /// counted as damage, listed so that someone looks.
    pub unknown_objects: Vec<String>,
    pub problems: Vec<Problem>,
    /// The record of this verify in the repository (`verifies/`), once written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Why the record could not be written (read-only credentials, say): the checks stand, but
    /// an audit will not see them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_failed: Option<String>,
    /// The manifests that opened, for the checks that follow (the WAL archive's).
    #[serde(skip)]
    pub manifests: Vec<crate::repo::manifest::Manifest>,
}

impl VerifyReport {
    pub fn add_problem(&mut self, object: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            problem: problem.into(),
        });
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, object: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            problem: problem.into(),
        });
    }
}

pub async fn verify(
    repo: &Repository,
    read_data: Option<Subset>,
    concurrency: Concurrency,
) -> Result<VerifyReport, RepoError> {
    // Every object must be of a kind the format knows.
    let unknown_objects = repo
        .store()
        .list("")
        .await?
        .into_iter()
        .filter(|o| ObjectKey::parse(&o.key).is_none())
        .map(|o| o.key)
        .collect();
    let mut report = VerifyReport {
        unknown_objects,
        ..Default::default()
    };

    // Index files, one by one, so a bad one is named and the rest still count.
    let mut index = Index::default();
    for obj in repo.store().list(ObjectKind::Index.prefix()).await? {
        report.index_files += 1;
        let opened = match repo.store().get(&obj.key).await {
            Ok(bytes) => repo.open_index_file(&obj.key, &bytes),
            Err(e) => Err(e.into()),
        };
        match opened {
            Ok(packs) => packs.iter().for_each(|p| index.add_pack(p)),
            Err(e) => report.problem(&obj.key, strip_object(&e, &obj.key)),
        }
    }

    // Every delta's base must be indexed too, and be whole.
    let mut orphans: Vec<(String, String)> = index
        .deltas()
        .filter_map(|(delta, base)| {
            let problem = match index.get(base) {
                None => format!("chunk {delta} is a delta of chunk {base}, which is in no index"),
                Some(b) if b.base.is_some() => {
                    format!("chunk {delta} is a delta of chunk {base}, itself a delta")
                }
                Some(_) => return None,
            };
            let pack = index.get(delta).map_or_else(
                || ObjectKind::Index.prefix().to_owned(),
                |l| pack_key(&l.pack),
            );
            Some((pack, problem))
        })
        .collect();
    orphans.sort();
    for (object, problem) in orphans {
        report.problem(object, problem);
    }

    // Packs the index names must exist with the size it recorded.
    let stored: HashMap<PackId, u64> = repo.stored_packs().await?.into_iter().collect();
    let indexed: HashSet<PackId> = index.packs().iter().map(|(id, _)| *id).collect();
    report.packs = index.packs().len();
    report.unindexed_packs = stored.keys().filter(|id| !indexed.contains(id)).count();
    let mut present = Vec::new();
    for (id, size) in index.packs() {
        match stored.get(id) {
            None => report.problem(
                pack_key(id),
                "missing from the store, but the index names it",
            ),
            Some(s) if s != size => report.problem(
                pack_key(id),
                format!("size is {s} bytes, the index recorded {size} (truncated or replaced)"),
            ),
            Some(_) => present.push(*id),
        }
    }

    // Every chunk of every backup must be indexed.
    for id in repo.backup_ids().await? {
        report.backups += 1;
        match repo.manifest(&id).await {
            Ok(m) => {
                for file in &m.files {
                    let missing = file.chunks.iter().filter(|c| !index.contains(c)).count();
                    if missing > 0 {
                        report.problem(
                            id.key(),
                            format!("{missing} chunk(s) of {} are in no index", file.path),
                        );
                    }
                }
                report.manifests.push(m);
            }
            Err(e) => report.problem(id.key(), strip_object(&e, &id.key())),
        }
    }

    if let Some(subset) = read_data {
        let chosen: Vec<PackId> = present.into_iter().filter(|p| subset.contains(p)).collect();
        let mut results = futures::stream::iter(chosen)
            .map(|id| read_one_pack(repo, &index, id))
            .buffer_unordered(concurrency.io.max(1));
        while let Some(result) = results.next().await {
            let checked = result?;
            report.packs_read += 1;
            report.chunks_read += checked.chunks;
            report.bytes_read += checked.bytes;
            report.problems.extend(checked.problems);
        }
    }
    report.problems.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(report)
}

struct PackCheck {
    chunks: usize,
    bytes: u64,
    problems: Vec<Problem>,
}

async fn read_one_pack(
    repo: &Repository,
    index: &Index,
    id: PackId,
) -> Result<PackCheck, RepoError> {
    let key = pack_key(&id);
    let bytes = match repo.store().get(&key).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return Ok(PackCheck {
                chunks: 0,
                bytes: 0,
                problems: vec![Problem {
                    object: key,
                    problem: "missing from the store".into(),
                }],
            })
        }
        Err(e) => return Err(e.into()),
    };
    let keys = repo.keys().clone();
    let expected = index.entries_of(&id);
    let deltas = check_deltas(repo, index, &bytes, &expected).await?;
    let whole: Vec<_> = expected
        .iter()
        .filter(|e| e.base.is_none())
        .copied()
        .collect();
    let total = expected.len();
    tokio::task::spawn_blocking(move || {
        let mut check = PackCheck {
            chunks: 0,
            bytes: bytes.len() as u64,
            problems: Vec::new(),
        };
        let mut problem = |p: String| {
            check.problems.push(Problem {
                object: key.clone(),
                problem: p,
            })
        };
        if let Err(e) = read_pack(&keys, &id, &bytes) {
            problem(e.to_string());
        }
        // Check each chunk the index places here, even when the header is damaged: that names
        // exactly which chunks (and so which backups) are affected.
        let mut bad = deltas;
        for e in &whole {
            let sealed = bytes.get(e.offset as usize..(e.offset as usize + e.length as usize));
            let outcome = match sealed {
                None => Err("lies beyond the end of the pack".to_owned()),
                Some(s) => blob::open_chunk(&keys, &e.id, s, e.raw_len)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if let Err(why) = outcome {
                bad.push(format!("chunk {}: {why}", e.id));
            }
        }
        for b in bad {
            problem(b);
        }
        check.chunks = total;
        check
    })
    .await
    .map_err(|e| RepoError::Internal(format!("verify task failed: {e}")))
}

/// Opens the delta chunks among `entries` with their bases, a few megabytes of bases at a time;
/// returns what is wrong, per chunk.
async fn check_deltas(
    repo: &Repository,
    index: &Index,
    bytes: &bytes::Bytes,
    entries: &[PackEntry],
) -> Result<Vec<String>, RepoError> {
    const BATCH_PLAIN: u64 = 16 * 1024 * 1024;
    let mut bad = Vec::new();
    let deltas: Vec<(PackEntry, ChunkId)> = entries
        .iter()
        .filter_map(|e| e.base.map(|b| (*e, b)))
        .collect();
    let mut rest = &deltas[..];
    while !rest.is_empty() {
        let mut plain = 0u64;
        let mut batch = 0;
        let mut bases = Vec::new();
        while batch < rest.len() && (batch == 0 || plain < BATCH_PLAIN) {
            let (e, base) = &rest[batch];
            plain += 2 * u64::from(e.raw_len);
            match index.get(base) {
                Some(l) if !bases.iter().any(|(b, _)| b == base) => bases.push((*base, l)),
                Some(_) => {}
                None => bad.push(format!("chunk {}: its base {base} is in no index", e.id)),
            }
            batch += 1;
        }
        let (now, later) = rest.split_at(batch);
        rest = later;
        let opened = match super::restore::read_bases(repo.store(), repo.keys(), &bases).await {
            Ok(opened) => opened,
            Err(e) => {
                for (d, base) in now {
                    bad.push(format!(
                        "chunk {}: its base {base} cannot be read: {e}",
                        d.id
                    ));
                }
                continue;
            }
        };
        let keys = repo.keys().clone();
        let bytes = bytes.clone();
        let now = now.to_vec();
        let found = tokio::task::spawn_blocking(move || {
            let mut bad = Vec::new();
            for (e, base) in &now {
                let Some(plain) = opened.get(base) else {
                    continue; // reported above: the base is in no index
                };
                let sealed = bytes.get(e.offset as usize..(e.offset as usize + e.length as usize));
                let outcome = match sealed {
                    None => Err("lies beyond the end of the pack".to_owned()),
                    Some(s) => {
                        blob::open_chunk_with(&keys, &e.id, s, e.raw_len, Some((base, plain)))
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                };
                if let Err(why) = outcome {
                    bad.push(format!("chunk {}: {why}", e.id));
                }
            }
            bad
        })
        .await
        .map_err(|e| RepoError::Internal(format!("verify task failed: {e}")))?;
        bad.extend(found);
    }
    Ok(bad)
}

/// The message of an error about `object`, without repeating the object's name.
fn strip_object(e: &RepoError, object: &str) -> String {
    match e {
        RepoError::Corrupt { object: o, why } if o == object => why.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_partition() {
        assert_eq!(
            "2/7".parse::<Subset>().unwrap(),
            Subset::Part { n: 2, t: 7 }
        );
        assert_eq!("10%".parse::<Subset>().unwrap(), Subset::Percent(10.0));
        assert!("0/7".parse::<Subset>().is_err());
        assert!("8/7".parse::<Subset>().is_err());
        assert!("x".parse::<Subset>().is_err());
        let packs: Vec<PackId> = (0..200u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                PackId(b)
            })
            .collect();
        for p in &packs {
            let parts = (1..=3)
                .filter(|n| Subset::Part { n: *n, t: 3 }.contains(p))
                .count();
            assert_eq!(parts, 1);
        }
        let some = packs
            .iter()
            .filter(|p| Subset::Percent(50.0).contains(p))
            .count();
        assert!((60..140).contains(&some), "{some}");
    }
}
