//! Every kind of object a repository holds, its key, and how a key is read back.
//!
//! Nothing else in the crate spells a folder name or formats a key: a new kind of object is a new
//! variant here, listed in [`ObjectKind::ALL`], described in `docs/FORMAT.md`. The repository knows
//! nothing of databases, so the names of log objects (WAL files, binlog segments) are carried as
//! text; their engines parse them.

use std::fmt;

use super::ids::PackId;
use super::manifest::BackupId;
use super::source::SourceName;

/// A kind of object, with the folder its keys start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// `heirloom.json`: the repository's parameters.
    Config,
    /// `keys/<16 hex>`: the master secret, wrapped by one passphrase or key file.
    Key,
    /// `data/<2 hex>/<64 hex>`: a pack of sealed chunks, named by the SHA-256 of its bytes.
    Pack,
    /// `index/<64 hex>`: where chunks are, named by the SHA-256 of its bytes.
    Index,
    /// `backups/<backup id>`: a backup's manifest.
    Manifest,
    /// `wal/<source>/<WAL file name>`: one archived PostgreSQL WAL file.
    Wal,
    /// `wal-partial/<source>/<segment>/<valid>[-<from>]`: a snapshot of a segment being streamed.
    WalSnapshot,
    /// `sources/<source>/postgres`: the cluster a source belongs to.
    SourceIdentity,
    /// `binlog/<source>/<segment name>`: a run of whole binlog events.
    BinlogSegment,
    /// `binlog-seq/<source>/<12 digits>`: the claim of a binlog chain number.
    BinlogClaim,
    /// `binlog-fill/<source>/<server id>-<file created>-<file>`: events a streamed file lacked.
    BinlogFill,
    /// `locks/<32 hex>`: a lease.
    Lease,
    /// `holds/<backup id>/<16 hex>`: a hold on a backup.
    Hold,
    /// `releases/<16 hex>`: the end of the hold of that id.
    Release,
    /// `prunes/<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`: what one prune deleted, and why.
    PruneRecord,
    /// `marks/<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`: packs found unneeded, to delete after a grace period.
    PackMark,
    /// `verifies/<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`: what one `verify` checked and found.
    VerifyRecord,
    /// `drills/<source>/<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`: one restore drill and its checks.
    DrillRecord,
}

impl ObjectKind {
    /// Every kind, in the order `docs/FORMAT.md` lists them.
    pub const ALL: [ObjectKind; 18] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Manifest,
        ObjectKind::Wal,
        ObjectKind::WalSnapshot,
        ObjectKind::SourceIdentity,
        ObjectKind::BinlogSegment,
        ObjectKind::BinlogClaim,
        ObjectKind::BinlogFill,
        ObjectKind::Lease,
        ObjectKind::Hold,
        ObjectKind::Release,
        ObjectKind::PruneRecord,
        ObjectKind::PackMark,
        ObjectKind::VerifyRecord,
        ObjectKind::DrillRecord,
    ];

    /// What a listing of every object of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            ObjectKind::Config => CONFIG,
            ObjectKind::Key => "keys/",
            ObjectKind::Pack => "data/",
            ObjectKind::Index => "index/",
            ObjectKind::Manifest => "backups/",
            ObjectKind::Wal => "wal/",
            ObjectKind::WalSnapshot => "wal-partial/",
            ObjectKind::SourceIdentity => "sources/",
            ObjectKind::BinlogSegment => "binlog/",
            ObjectKind::BinlogClaim => "binlog-seq/",
            ObjectKind::BinlogFill => "binlog-fill/",
            ObjectKind::Lease => "locks/",
            ObjectKind::Hold => "holds/",
            ObjectKind::Release => "releases/",
            ObjectKind::PruneRecord => "prunes/",
            ObjectKind::PackMark => "marks/",
            ObjectKind::VerifyRecord => "verifies/",
            ObjectKind::DrillRecord => "drills/",
        }
    }

    /// What a listing of this kind's objects of one source starts with (log kinds only).
    pub fn source_prefix(self, source: &str) -> String {
        format!("{}{source}/", self.prefix())
    }
}

const CONFIG: &str = "heirloom.json";

/// The key of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKey {
    Config,
    Key {
        id: String,
    },
    Pack(PackId),
    Index {
        hash: String,
    },
    Manifest(BackupId),
    Wal {
        source: String,
        name: String,
    },
    WalSnapshot {
        source: String,
        segment: String,
        /// Bytes of the segment valid in this snapshot.
        valid: u64,
        /// Where an increment starts; 0 for a whole snapshot.
        from: u64,
    },
    SourceIdentity {
        source: String,
        engine: String,
    },
    BinlogSegment {
        source: String,
        name: String,
    },
    BinlogClaim {
        source: String,
        seq: u64,
    },
    BinlogFill {
        source: String,
        name: String,
    },
    Lease {
        id: String,
    },
    Hold {
        backup: BackupId,
        id: String,
    },
    Release {
        id: String,
    },
    /// `name` is `<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`.
    PruneRecord {
        name: String,
    },
    /// `name` is `<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`.
    PackMark {
        name: String,
    },
    /// `name` is `<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`.
    VerifyRecord {
        name: String,
    },
    DrillRecord {
        source: String,
        name: String,
    },
}

impl ObjectKey {
    pub fn kind(&self) -> ObjectKind {
        match self {
            ObjectKey::Config => ObjectKind::Config,
            ObjectKey::Key { .. } => ObjectKind::Key,
            ObjectKey::Pack(_) => ObjectKind::Pack,
            ObjectKey::Index { .. } => ObjectKind::Index,
            ObjectKey::Manifest(_) => ObjectKind::Manifest,
            ObjectKey::Wal { .. } => ObjectKind::Wal,
            ObjectKey::WalSnapshot { .. } => ObjectKind::WalSnapshot,
            ObjectKey::SourceIdentity { .. } => ObjectKind::SourceIdentity,
            ObjectKey::BinlogSegment { .. } => ObjectKind::BinlogSegment,
            ObjectKey::BinlogClaim { .. } => ObjectKind::BinlogClaim,
            ObjectKey::BinlogFill { .. } => ObjectKind::BinlogFill,
            ObjectKey::Lease { .. } => ObjectKind::Lease,
            ObjectKey::Hold { .. } => ObjectKind::Hold,
            ObjectKey::Release { .. } => ObjectKind::Release,
            ObjectKey::PruneRecord { .. } => ObjectKind::PruneRecord,
            ObjectKey::PackMark { .. } => ObjectKind::PackMark,
            ObjectKey::VerifyRecord { .. } => ObjectKind::VerifyRecord,
            ObjectKey::DrillRecord { .. } => ObjectKind::DrillRecord,
        }
    }

    /// The key as the store holds it.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Reads a key back; `None` for anything that is not a key of this format.
    pub fn parse(key: &str) -> Option<ObjectKey> {
        if key == CONFIG {
            return Some(ObjectKey::Config);
        }
        let (folder, rest) = key.split_once('/')?;
        let source_and = |rest: &str| -> Option<(String, String)> {
            let (source, name) = rest.split_once('/')?;
            let source: SourceName = source.parse().ok()?;
            Some((source.to_string(), name.to_owned()))
        };
        let plain_name = |name: &str| !name.is_empty() && !name.contains('/');
        let parsed = match folder {
            "keys" => (rest.len() == 16 && is_lower_hex(rest)).then(|| ObjectKey::Key {
                id: rest.to_owned(),
            })?,
            "data" => {
                let (dir, name) = rest.split_once('/')?;
                let id: PackId = name.parse().ok()?;
                (dir.len() == 2 && name.starts_with(dir) && is_lower_hex(name))
                    .then_some(ObjectKey::Pack(id))?
            }
            "index" => (rest.len() == 64 && is_lower_hex(rest)).then(|| ObjectKey::Index {
                hash: rest.to_owned(),
            })?,
            "backups" => ObjectKey::Manifest(rest.parse().ok()?),
            "wal" => {
                let (source, name) = source_and(rest)?;
                plain_name(&name).then_some(ObjectKey::Wal { source, name })?
            }
            "wal-partial" => {
                let (source, rest) = source_and(rest)?;
                let (segment, piece) = rest.split_once('/')?;
                if !plain_name(segment) {
                    return None;
                }
                let (valid, from) = match piece.split_once('-') {
                    Some((v, f)) => (digits12(v)?, digits12(f)?),
                    None => (digits12(piece)?, 0),
                };
                if piece.contains('-') && (from == 0 || from >= valid) {
                    return None;
                }
                ObjectKey::WalSnapshot {
                    source,
                    segment: segment.to_owned(),
                    valid,
                    from,
                }
            }
            "sources" => {
                let (source, engine) = source_and(rest)?;
                (engine == "postgres").then_some(ObjectKey::SourceIdentity { source, engine })?
            }
            "binlog" => {
                let (source, name) = source_and(rest)?;
                plain_name(&name).then_some(ObjectKey::BinlogSegment { source, name })?
            }
            "binlog-seq" => {
                let (source, seq) = source_and(rest)?;
                ObjectKey::BinlogClaim {
                    source,
                    seq: digits12(&seq)?,
                }
            }
            "binlog-fill" => {
                let (source, name) = source_and(rest)?;
                plain_name(&name).then_some(ObjectKey::BinlogFill { source, name })?
            }
            "locks" => (rest.len() == 32 && is_lower_hex(rest)).then(|| ObjectKey::Lease {
                id: rest.to_owned(),
            })?,
            "holds" => {
                let (backup, id) = rest.split_once('/')?;
                if id.len() != 16 || !is_lower_hex(id) {
                    return None;
                }
                ObjectKey::Hold {
                    backup: backup.parse().ok()?,
                    id: id.to_owned(),
                }
            }
            "releases" => (rest.len() == 16 && is_lower_hex(rest)).then(|| ObjectKey::Release {
                id: rest.to_owned(),
            })?,
            "prunes" => is_record_name(rest).then(|| ObjectKey::PruneRecord {
                name: rest.to_owned(),
            })?,
            "marks" => is_record_name(rest).then(|| ObjectKey::PackMark {
                name: rest.to_owned(),
            })?,
            "verifies" => is_record_name(rest).then(|| ObjectKey::VerifyRecord {
                name: rest.to_owned(),
            })?,
            "drills" => {
                let (source, name) = source_and(rest)?;
                is_record_name(&name).then_some(ObjectKey::DrillRecord { source, name })?
            }
            _ => return None,
        };
        // Only the one spelling of a key counts: what parses must print back the same.
        (parsed.key() == key).then_some(parsed)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |kind: ObjectKind| kind.prefix();
        match self {
            ObjectKey::Config => f.write_str(CONFIG),
            ObjectKey::Key { id } => write!(f, "{}{id}", p(ObjectKind::Key)),
            ObjectKey::Pack(id) => {
                let hex = id.to_hex();
                write!(f, "{}{}/{hex}", p(ObjectKind::Pack), &hex[..2])
            }
            ObjectKey::Index { hash } => write!(f, "{}{hash}", p(ObjectKind::Index)),
            ObjectKey::Manifest(id) => write!(f, "{}{id}", p(ObjectKind::Manifest)),
            ObjectKey::Wal { source, name } => write!(f, "{}{source}/{name}", p(ObjectKind::Wal)),
            ObjectKey::WalSnapshot {
                source,
                segment,
                valid,
                from,
            } => {
                write!(
                    f,
                    "{}{source}/{segment}/{valid:012}",
                    p(ObjectKind::WalSnapshot)
                )?;
                if *from > 0 {
                    write!(f, "-{from:012}")?;
                }
                Ok(())
            }
            ObjectKey::SourceIdentity { source, engine } => {
                write!(f, "{}{source}/{engine}", p(ObjectKind::SourceIdentity))
            }
            ObjectKey::BinlogSegment { source, name } => {
                write!(f, "{}{source}/{name}", p(ObjectKind::BinlogSegment))
            }
            ObjectKey::BinlogClaim { source, seq } => {
                write!(f, "{}{source}/{seq:012}", p(ObjectKind::BinlogClaim))
            }
            ObjectKey::BinlogFill { source, name } => {
                write!(f, "{}{source}/{name}", p(ObjectKind::BinlogFill))
            }
            ObjectKey::Lease { id } => write!(f, "{}{id}", p(ObjectKind::Lease)),
            ObjectKey::Hold { backup, id } => write!(f, "{}{backup}/{id}", p(ObjectKind::Hold)),
            ObjectKey::Release { id } => write!(f, "{}{id}", p(ObjectKind::Release)),
            ObjectKey::PruneRecord { name } => write!(f, "{}{name}", p(ObjectKind::PruneRecord)),
            ObjectKey::PackMark { name } => write!(f, "{}{name}", p(ObjectKind::PackMark)),
            ObjectKey::VerifyRecord { name } => {
                write!(f, "{}{name}", p(ObjectKind::VerifyRecord))
            }
            ObjectKey::DrillRecord { source, name } => {
                write!(f, "{}{source}/{name}", p(ObjectKind::DrillRecord))
            }
        }
    }
}

impl BackupId {
    /// `backups/<id>`: the key of this backup's manifest.
    pub fn key(&self) -> String {
        ObjectKey::Manifest(self.clone()).key()
    }
}

/// `data/<2 hex>/<64 hex>`: the key of a pack.
pub fn pack_key(id: &PackId) -> String {
    ObjectKey::Pack(*id).key()
}

/// The pack a `data/` key names; `None` for any other key.
pub fn pack_id_from_key(key: &str) -> Option<PackId> {
    match ObjectKey::parse(key)? {
        ObjectKey::Pack(id) => Some(id),
        _ => None,
    }
}

/// `index/<64 hex>`: the key of an index file, the SHA-256 of its sealed bytes.
pub fn index_key(sealed: &[u8]) -> String {
    use sha2::Digest;
    ObjectKey::Index {
        hash: hex::encode(sha2::Sha256::digest(sealed)),
    }
    .key()
}

/// The key of `heirloom.json`.
pub const CONFIG_KEY: &str = CONFIG;

/// `<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`: a record's time to the millisecond and a random tail.
fn is_record_name(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 37
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..19)
        && b[19] == b'Z'
        && b[20] == b'-'
        && is_lower_hex(&s[21..])
}

/// The key of a new prune record written at `at`.
pub fn prune_record_key(at: chrono::DateTime<chrono::Utc>, tail: u64) -> String {
    ObjectKey::PruneRecord {
        name: record_name(at, tail),
    }
    .key()
}

/// `verifies/<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`.
pub fn verify_record_key(at: chrono::DateTime<chrono::Utc>, tail: u64) -> String {
    ObjectKey::VerifyRecord {
        name: record_name(at, tail),
    }
    .key()
}

/// `drills/<source>/<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`.
pub fn drill_record_key(source: &str, at: chrono::DateTime<chrono::Utc>, tail: u64) -> String {
    ObjectKey::DrillRecord {
        source: source.to_owned(),
        name: record_name(at, tail),
    }
    .key()
}

/// `marks/<YYYYMMDDTHHMMSS.mmmZ>-<16 hex>`.
pub fn pack_mark_key(at: chrono::DateTime<chrono::Utc>, tail: u64) -> String {
    ObjectKey::PackMark {
        name: record_name(at, tail),
    }
    .key()
}

fn record_name(at: chrono::DateTime<chrono::Utc>, tail: u64) -> String {
    format!("{}-{tail:016x}", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Twelve decimal digits, as chain numbers and snapshot offsets are written.
fn digits12(s: &str) -> Option<u64> {
    (s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9._-]{0,20}"
    }

    fn key_strategy() -> impl Strategy<Value = ObjectKey> {
        let hex = |n: usize| proptest::collection::vec(any::<u8>(), n / 2).prop_map(hex::encode);
        prop_oneof![
            Just(ObjectKey::Config),
            hex(16).prop_map(|id| ObjectKey::Key { id }),
            any::<[u8; 32]>().prop_map(|b| ObjectKey::Pack(PackId(b))),
            hex(64).prop_map(|hash| ObjectKey::Index { hash }),
            (0i64..4_000_000_000_000, any::<bool>()).prop_map(|(ms, fine)| {
                let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                let precision = if fine {
                    super::super::manifest::IdPrecision::Milliseconds
                } else {
                    super::super::manifest::IdPrecision::Seconds
                };
                ObjectKey::Manifest(BackupId::new(t, precision))
            }),
            (source(), "[0-9A-F]{24}(\\.partial|\\.[0-9A-F]{8}\\.backup)?|[0-9A-F]{8}\\.history")
                .prop_map(|(source, name)| ObjectKey::Wal { source, name }),
            (source(), "[0-9A-F]{24}", 1u64..1 << 30, 0u64..1 << 30).prop_map(
                |(source, segment, valid, from)| ObjectKey::WalSnapshot {
                    source,
                    segment,
                    valid,
                    from: if from < valid { from } else { 0 },
                }
            ),
            source().prop_map(|source| ObjectKey::SourceIdentity {
                source,
                engine: "postgres".into()
            }),
            (source(), "[0-9]{12}-[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,5}-[0-9]{1,8}-[0-9]{1,8}-[a-z.0-9-]{1,20}")
                .prop_map(|(source, name)| ObjectKey::BinlogSegment { source, name }),
            (source(), 0u64..999_999_999_999)
                .prop_map(|(source, seq)| ObjectKey::BinlogClaim { source, seq }),
            (source(), "[0-9]{1,5}-[0-9]{1,10}-[a-z.0-9-]{1,20}")
                .prop_map(|(source, name)| ObjectKey::BinlogFill { source, name }),
            hex(32).prop_map(|id| ObjectKey::Lease { id }),
            (0i64..4_000_000_000_000, hex(16)).prop_map(|(ms, id)| {
                let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                let backup = BackupId::new(t, super::super::manifest::IdPrecision::Milliseconds);
                ObjectKey::Hold { backup, id }
            }),
            hex(16).prop_map(|id| ObjectKey::Release { id }),
            (0i64..4_000_000_000_000, any::<u64>()).prop_map(|(ms, tail)| {
                let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                ObjectKey::PruneRecord {
                    name: format!("{}-{tail:016x}", t.format("%Y%m%dT%H%M%S%.3fZ")),
                }
            }),
            (0i64..4_000_000_000_000, any::<u64>()).prop_map(|(ms, tail)| {
                let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                ObjectKey::PackMark {
                    name: format!("{}-{tail:016x}", t.format("%Y%m%dT%H%M%S%.3fZ")),
                }
            }),
            (0i64..4_000_000_000_000, any::<u64>()).prop_map(|(ms, tail)| {
                let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                ObjectKey::VerifyRecord {
                    name: format!("{}-{tail:016x}", t.format("%Y%m%dT%H%M%S%.3fZ")),
                }
            }),
            (source(), 0i64..4_000_000_000_000, any::<u64>()).prop_map(|(source, ms, tail)| {
                let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                ObjectKey::DrillRecord {
                    source,
                    name: format!("{}-{tail:016x}", t.format("%Y%m%dT%H%M%S%.3fZ")),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_key_parses_back_to_its_kind(key in key_strategy()) {
            let text = key.key();
            let back = ObjectKey::parse(&text);
            prop_assert_eq!(back.as_ref(), Some(&key), "{}", text);
            prop_assert!(text.starts_with(key.kind().prefix()));
        }
    }

    #[test]
    fn keys_of_no_kind_are_not_taken_for_one() {
        for stray in [
            "",
            "README",
            "heirloom.json.bak",
            "keys/xyz",
            "data/ab/cd",
            "data/00/ff00000000000000000000000000000000000000000000000000000000000000",
            "index/ABC",
            "backups/yesterday",
            "wal/../x/000000010000000000000001",
            "wal/pg/",
            "wal/pg/a/b",
            "wal-partial/pg/000000010000000000000001/000000004096-000000008192",
            "wal-partial/pg/000000010000000000000001/4096",
            "sources/pg/mysql",
            "binlog-seq/db/12",
            "locks/0123",
            "holds/20261120T140300.123Z-1a2b3c4d",
            "holds/yesterday/0123456789abcdef",
            "releases/XYZ",
            "prunes/20261120T140300Z-0123456789abcdef",
            "marks/20261120T140300.000Z-0123",
            "verifies/20261120T140300Z-0123456789abcdef",
            "drills/20261120T140300.000Z-0123456789abcdef",
            "drills/pg/20261120T140300Z-0123456789abcdef",
            ".tmp/x",
        ] {
            assert_eq!(ObjectKey::parse(stray), None, "{stray:?}");
        }
    }

    #[test]
    fn every_kind_has_its_own_prefix() {
        let mut prefixes: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.prefix()).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), ObjectKind::ALL.len());
    }
}
