//! Snapshots of the segment `stream` is receiving: `wal-partial/<source>/<segment>/...`, whole or
//! as increments, and the longest gapless chain of them rebuilt into the segment so far.

use super::names::WalFileName;
use super::wal_object::{read_wal, seal_wal_object};
use super::PgError;
use crate::repo::layout::{ObjectKey, ObjectKind};
use crate::repo::{RepoError, Repository};

/// A snapshot of a segment still being written, taken by `stream`, named by how many bytes of the
/// segment hold WAL (`valid`). A whole snapshot (`from` 0) holds the segment as received,
/// zero-padded to its full size like pg_receivewal's `.partial` files; an increment holds only the
/// bytes from `from`, where the snapshot before it ended, to `valid`.
pub fn partial_key(source: &str, segment: &WalFileName, from: u64, valid: u64) -> String {
    ObjectKey::WalSnapshot {
        source: source.to_owned(),
        segment: segment.to_string(),
        valid,
        from,
    }
    .key()
}

/// Stores a snapshot of a partial segment: `bytes` are the whole zero-padded segment when `from`
/// is 0, else the bytes from `from` to `valid` (write-once; the same snapshot again is a no-op).
pub async fn put_partial(
    repo: &Repository,
    source: &str,
    segment: &WalFileName,
    bytes: Vec<u8>,
    from: u64,
    valid: u64,
) -> Result<(), PgError> {
    let key = partial_key(source, segment, from, valid);
    let digest = repo.keys().chunk_id(&bytes);
    let object = seal_wal_object(repo, &key, bytes, digest)
        .await
        .map_err(|e| PgError::io(&key, e))?;
    repo.store().put_if_absent(&key, object).await?;
    Ok(())
}

/// One stored snapshot of a partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialPiece {
    pub key: String,
    pub from: u64,
    pub valid: u64,
    pub size: u64,
}

/// The snapshots that rebuild a partial segment as far as it was received: a whole snapshot, then
/// increments each starting where the one before ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialChain {
    pub pieces: Vec<PartialPiece>,
}

impl PartialChain {
    /// How many bytes of the segment the chain holds.
    pub fn valid(&self) -> u64 {
        self.pieces.last().map_or(0, |p| p.valid)
    }

    /// Increments since the chain's whole snapshot.
    pub fn increments(&self) -> usize {
        self.pieces.len().saturating_sub(1)
    }

    /// Stored bytes of all its snapshots.
    pub fn size(&self) -> u64 {
        self.pieces.iter().map(|p| p.size).sum()
    }

    /// The longest chain among `pieces` (all of one segment), if any starts with a whole snapshot.
    pub fn longest(mut pieces: Vec<PartialPiece>) -> Option<Self> {
        pieces.sort_by_key(|p| (p.from, p.valid));
        // For each length reached: the chain reaching it (fewest pieces first, as sorted).
        let mut reached: std::collections::BTreeMap<u64, Vec<PartialPiece>> = Default::default();
        for piece in pieces {
            let chain = if piece.from == 0 {
                Some(vec![piece.clone()])
            } else {
                reached.get(&piece.from).map(|before| {
                    let mut chain = before.clone();
                    chain.push(piece.clone());
                    chain
                })
            };
            if let Some(chain) = chain {
                let better = reached
                    .get(&piece.valid)
                    .is_none_or(|known| known.len() > chain.len());
                if better {
                    reached.insert(piece.valid, chain);
                }
            }
        }
        let (_, pieces) = reached.into_iter().next_back()?;
        Some(Self { pieces })
    }
}

/// The longest chain of snapshots of every segment that has one, by segment.
pub async fn partial_chains(
    repo: &Repository,
    source: &str,
) -> Result<std::collections::BTreeMap<WalFileName, PartialChain>, PgError> {
    chains_under(repo, source, &ObjectKind::WalSnapshot.source_prefix(source)).await
}

/// The longest chain of snapshots of `segment`, if it has one.
pub async fn partial_chain(
    repo: &Repository,
    source: &str,
    segment: &WalFileName,
) -> Result<Option<PartialChain>, PgError> {
    let prefix = format!(
        "{}{segment}/",
        ObjectKind::WalSnapshot.source_prefix(source)
    );
    Ok(chains_under(repo, source, &prefix).await?.remove(segment))
}

async fn chains_under(
    repo: &Repository,
    source: &str,
    listed: &str,
) -> Result<std::collections::BTreeMap<WalFileName, PartialChain>, PgError> {
    let prefix = ObjectKind::WalSnapshot.source_prefix(source);
    let mut pieces: std::collections::BTreeMap<WalFileName, Vec<PartialPiece>> = Default::default();
    for object in repo.store().list(listed).await? {
        let Some(rest) = object.key.strip_prefix(&prefix) else {
            continue;
        };
        let Some((segment, name)) = rest.split_once('/') else {
            continue;
        };
        let (valid, from) = name.split_once('-').unwrap_or((name, "0"));
        let (Ok(segment), Ok(valid), Ok(from)) = (
            segment.parse::<WalFileName>(),
            valid.parse::<u64>(),
            from.parse::<u64>(),
        ) else {
            continue;
        };
        if from >= valid && from != 0 {
            continue;
        }
        pieces.entry(segment).or_default().push(PartialPiece {
            key: object.key.clone(),
            from,
            valid,
            size: object.size,
        });
    }
    Ok(pieces
        .into_iter()
        .filter_map(|(segment, pieces)| Some((segment, PartialChain::longest(pieces)?)))
        .collect())
}

/// Rebuilds a partial segment from its chain: the whole snapshot with each increment laid over it.
pub async fn read_partial(repo: &Repository, chain: &PartialChain) -> Result<Vec<u8>, PgError> {
    let Some((first, rest)) = chain.pieces.split_first() else {
        return Err(PgError::Invalid("an empty chain of snapshots".into()));
    };
    let mut segment = read_wal(repo, &first.key).await?;
    let pieces = futures::future::try_join_all(rest.iter().map(|p| read_wal(repo, &p.key))).await?;
    for (piece, bytes) in rest.iter().zip(pieces) {
        let (from, valid) = (piece.from as usize, piece.valid as usize);
        if bytes.len() != valid - from || valid > segment.len() {
            return Err(PgError::Repo(RepoError::corrupt(
                &piece.key,
                format!(
                    "holds {} bytes for {from}..{valid} of a {}-byte segment",
                    bytes.len(),
                    segment.len()
                ),
            )));
        }
        segment[from..valid].copy_from_slice(&bytes);
    }
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(from: u64, valid: u64) -> PartialPiece {
        PartialPiece {
            key: format!("{valid}-{from}"),
            from,
            valid,
            size: valid - from,
        }
    }

    #[test]
    fn the_longest_chain_starts_whole_and_follows_increments_without_gaps() {
        // Whole at 100, increments to 250 and 400; a stray increment from 300 (its predecessor
        // lost) cannot be reached; a later whole snapshot at 260 and an increment from it to 500.
        let pieces = vec![
            piece(0, 100),
            piece(100, 250),
            piece(250, 400),
            piece(300, 900),
            piece(0, 260),
            piece(260, 500),
        ];
        let chain = PartialChain::longest(pieces).unwrap();
        assert_eq!(chain.valid(), 500);
        assert_eq!(
            chain
                .pieces
                .iter()
                .map(|p| (p.from, p.valid))
                .collect::<Vec<_>>(),
            vec![(0, 260), (260, 500)]
        );
        assert_eq!(chain.increments(), 1);
        // Increments alone rebuild nothing.
        assert_eq!(PartialChain::longest(vec![piece(100, 200)]), None);
        // The fewest pieces win among chains of one length.
        let chain =
            PartialChain::longest(vec![piece(0, 100), piece(100, 200), piece(0, 200)]).unwrap();
        assert_eq!(chain.pieces.len(), 1);
    }

    #[test]
    fn partial_keys_keep_whole_snapshots_as_before() {
        let segment: WalFileName = "000000010000000000000003".parse().unwrap();
        assert_eq!(
            partial_key("pg", &segment, 0, 4096),
            "wal-partial/pg/000000010000000000000003/000000004096"
        );
        assert_eq!(
            partial_key("pg", &segment, 4096, 8192),
            "wal-partial/pg/000000010000000000000003/000000008192-000000004096"
        );
    }
}
