//! Garbage collection of packs, in two phases, so that a backup running meanwhile never loses a
//! chunk it counts on.
//!
//! Phase one marks (`marks/`) the packs nothing needs now: no manifest references a chunk of
//! theirs, or no index names them (left by an interrupted backup), or their live chunks were just
//! copied into new packs (repacking a pack that is mostly dead). Phase two, in a later collection,
//! deletes a marked pack once the grace period has passed since its mark, if it is still unneeded
//! and no pack writer holds a lease; a marked pack needed again (a backup that began before the
//! mark finished and referenced it) is revived: its mark is dropped. Before deleting, the index
//! files naming the packs are rewritten without them, and the leases are checked once more; a
//! writer that appeared in between gets the index entries back and the deletion waits.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::crypto::MetaKind;
use super::ids::{ChunkId, PackId};
use super::index::IndexedPack;
use super::layout::{self, pack_key, pack_mark_key, ObjectKind};
use super::lease::{self, PACK_WRITERS};
use super::object_lock::ObjectLock;
use super::pack::{read_pack, PackWriter};
use super::prune_record::{DeletedPack, Deletions};
use super::{RepoError, Repository};

/// How collection treats packs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcOptions {
    /// How long a pack stays marked before it may be deleted.
    pub grace: chrono::Duration,
    /// A pack at least this much dead (a fraction of its bytes) is repacked; above 1, never.
    pub repack_dead: f64,
    /// The bucket's Object Lock: a pack it still locks, or named by an index file it still
    /// locks, is not deleted yet.
    pub lock: Option<ObjectLock>,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: chrono::Duration::hours(24),
            repack_dead: 0.5,
            lock: None,
        }
    }
}

/// Why a pack was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkReason {
    /// No manifest references a chunk of it.
    Unreferenced,
    /// No index file names it.
    Unindexed,
    /// Its live chunks were copied into new packs.
    Repacked,
}

/// One pack a mark names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkedPack {
    /// The pack id, 64 hex digits.
    pub pack: String,
    pub bytes: u64,
    pub why: MarkReason,
}

/// `marks/<at>-<16 hex>`: packs found unneeded at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRecord {
    pub version: u32,
    pub at: DateTime<Utc>,
    pub host: String,
    pub packs: Vec<MarkedPack>,
}

const MARK_VERSION: u32 = 1;

/// A mark as stored.
#[derive(Debug, Clone)]
pub struct Mark {
    pub key: String,
    pub record: MarkRecord,
}

/// What collection reads of the repository.
#[derive(Debug, Default)]
pub struct Holdings {
    /// Every pack stored, with its size.
    pub stored: Vec<(PackId, u64)>,
    /// Every index file: its key and the packs it names.
    pub index_files: Vec<(String, Vec<IndexedPack>)>,
    /// The chunks some manifest references, with the bases of the delta chunks among them.
    pub live: HashSet<ChunkId>,
    pub marks: Vec<Mark>,
    /// When each pack and index file was written, by key, as the store says (Object Lock counts
    /// from it).
    pub written: HashMap<String, DateTime<Utc>>,
}

/// What collection decides, before it does anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcPlan {
    /// Packs to mark now.
    pub mark: Vec<MarkedPack>,
    /// Packs whose live chunks are copied into new packs (and which are then marked).
    pub repack: Vec<MarkedPack>,
    /// Marked at least the grace period ago and still unneeded: deleted now.
    pub delete: Vec<MarkedPack>,
    /// Marked, but needed again: their marks are dropped.
    pub revive: Vec<MarkedPack>,
    /// Marked, still inside the grace period: each with the instant it may go.
    pub waiting: Vec<(MarkedPack, DateTime<Utc>)>,
    /// Due, but the bucket's Object Lock still locks it or an index file naming it: each with
    /// the instant the last of those locks ends. It stays marked.
    pub locked: Vec<(MarkedPack, DateTime<Utc>)>,
    /// Marked packs no longer stored (deleted before their mark was updated).
    #[serde(skip)]
    pub gone: Vec<String>,
}

/// Decides collection: a pure function of what the repository holds, `now` and the options.
pub fn plan_gc(h: &Holdings, now: DateTime<Utc>, options: &GcOptions) -> GcPlan {
    let stored: HashMap<PackId, u64> = h.stored.iter().copied().collect();
    let mut indexed: HashMap<PackId, &IndexedPack> = HashMap::new();
    for (_, packs) in &h.index_files {
        for p in packs {
            indexed.entry(p.id).or_insert(p);
        }
    }
    // Where each live chunk can be read.
    let mut homes: HashMap<ChunkId, Vec<PackId>> = HashMap::new();
    for p in indexed.values() {
        for e in p.entries.iter().filter(|e| h.live.contains(&e.id)) {
            homes.entry(e.id).or_default().push(p.id);
        }
    }
    let homeless = h.live.iter().any(|c| !homes.contains_key(c));
    // The earliest mark of each pack.
    let mut marked: HashMap<PackId, (DateTime<Utc>, MarkedPack)> = HashMap::new();
    let mut plan = GcPlan::default();
    for mark in &h.marks {
        for mp in &mark.record.packs {
            let Ok(id) = mp.pack.parse::<PackId>() else {
                continue;
            };
            if !stored.contains_key(&id) {
                plan.gone.push(mp.pack.clone());
                continue;
            }
            let entry = marked.entry(id).or_insert((mark.record.at, mp.clone()));
            if mark.record.at < entry.0 {
                *entry = (mark.record.at, mp.clone());
            }
        }
    }
    let live_bytes = |p: &IndexedPack| -> u64 {
        p.entries
            .iter()
            .filter(|e| h.live.contains(&e.id))
            .map(|e| u64::from(e.length))
            .sum()
    };
    // Mostly dead packs, not marked yet: repacked.
    let mut repack: HashSet<PackId> = HashSet::new();
    for p in indexed.values() {
        let live = live_bytes(p);
        if live > 0
            && !marked.contains_key(&p.id)
            && stored.contains_key(&p.id)
            && (p.size.saturating_sub(live)) as f64 >= options.repack_dead * p.size as f64
        {
            repack.insert(p.id);
            plan.repack.push(MarkedPack {
                pack: p.id.to_hex(),
                bytes: p.size,
                why: MarkReason::Repacked,
            });
        }
    }
    // A marked pack holding a live chunk that no pack outside the marked (and repacked) ones
    // holds is needed: revive it, and look again, since its copies now count. (A chunk whose
    // other home is being repacked revives the marked pack even though the repack copies the
    // chunk: a redundant copy is kept, never a chunk lost.)
    let mut condemned: HashSet<PackId> = marked.keys().copied().collect();
    loop {
        // One at a time: reviving one pack may make another's chunks safe.
        let needed: Option<PackId> = condemned
            .iter()
            .copied()
            .filter(|id| match indexed.get(id) {
                Some(p) => p.entries.iter().any(|e| {
                    h.live.contains(&e.id)
                        && homes[&e.id]
                            .iter()
                            .all(|home| condemned.contains(home) || repack.contains(home))
                }),
                // Unindexed: it may hold a chunk the index lost track of.
                None => homeless,
            })
            .min();
        let Some(id) = needed else {
            break;
        };
        condemned.remove(&id);
        if let Some((_, mp)) = marked.get(&id) {
            plan.revive.push(mp.clone());
        }
    }
    // The index files naming each pack: deleting a pack rewrites them.
    let mut naming: HashMap<PackId, Vec<&str>> = HashMap::new();
    for (key, packs) in &h.index_files {
        for p in packs {
            naming.entry(p.id).or_default().push(key);
        }
    }
    let locked_until = |id: &PackId| -> Option<DateTime<Utc>> {
        let lock = options.lock?;
        let pack = pack_key(id);
        std::iter::once(pack.as_str())
            .chain(naming.get(id).into_iter().flatten().copied())
            .filter_map(|key| lock.locked_until(h.written.get(key).copied(), now))
            .max()
    };
    for id in &condemned {
        let (at, mp) = &marked[id];
        let due = *at + options.grace;
        if due > now {
            plan.waiting.push((mp.clone(), due));
        } else if let Some(until) = locked_until(id) {
            plan.locked.push((mp.clone(), until));
        } else {
            plan.delete.push(mp.clone());
        }
    }
    // Phase one: what nothing needs now and is not marked yet.
    for (id, size) in &h.stored {
        if marked.contains_key(id) {
            continue;
        }
        let why = match indexed.get(id) {
            None => MarkReason::Unindexed,
            Some(p) if live_bytes(p) == 0 => MarkReason::Unreferenced,
            Some(_) => continue,
        };
        plan.mark.push(MarkedPack {
            pack: id.to_hex(),
            bytes: *size,
            why,
        });
    }
    for list in [
        &mut plan.mark,
        &mut plan.repack,
        &mut plan.delete,
        &mut plan.revive,
    ] {
        list.sort_by(|a, b| a.pack.cmp(&b.pack));
    }
    for list in [&mut plan.waiting, &mut plan.locked] {
        list.sort_by(|a, b| (a.1, &a.0.pack).cmp(&(b.1, &b.0.pack)));
    }
    plan
}

/// What a collection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub plan: GcPlan,
    /// New packs written by repacking.
    pub packs_written: usize,
    pub packs_deleted: usize,
    pub bytes_deleted: u64,
    /// Why the deletions of phase two wait for another collection, when they do.
    pub deferred: Option<String>,
    /// The record written before packs were deleted.
    pub record: Option<String>,
}

impl Repository {
    /// Reads what collection needs: packs stored, index files, manifests' chunks and marks.
    pub async fn gc_holdings(&self) -> Result<Holdings, RepoError> {
        let packs = self.store().list(ObjectKind::Pack.prefix()).await?;
        let files = self.store().list(ObjectKind::Index.prefix()).await?;
        let written: HashMap<String, DateTime<Utc>> = packs
            .iter()
            .chain(&files)
            .filter_map(|o| Some((o.key.clone(), o.last_modified?)))
            .collect();
        let stored: Vec<(PackId, u64)> = packs
            .iter()
            .filter_map(|o| Some((layout::pack_id_from_key(&o.key)?, o.size)))
            .collect();
        let index_files: Vec<(String, Vec<IndexedPack>)> = futures::stream::iter(files)
            .map(|obj| async move {
                let bytes = self.store().get(&obj.key).await?;
                let packs = self.open_index_file(&obj.key, &bytes)?;
                Ok::<_, RepoError>((obj.key, packs))
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let mut live = HashSet::new();
        for m in self.manifests(None).await? {
            for f in &m.files {
                live.extend(f.chunks.iter().copied());
            }
        }
        // A delta chunk needs its base.
        let bases: Vec<ChunkId> = index_files
            .iter()
            .flat_map(|(_, packs)| packs.iter())
            .flat_map(|p| p.entries.iter())
            .filter(|e| live.contains(&e.id))
            .filter_map(|e| e.base)
            .collect();
        live.extend(bases);
        let marks = self
            .sealed_records(ObjectKind::PackMark, MetaKind::PackMark, MARK_VERSION)
            .await?
            .into_iter()
            .map(|(key, record)| Mark { key, record })
            .collect();
        Ok(Holdings {
            stored,
            index_files,
            live,
            marks,
            written,
        })
    }

    /// Collects garbage as of `now` (see the module's documentation); the caller holds the
    /// prune lease.
    pub async fn collect_garbage(
        &self,
        now: DateTime<Utc>,
        options: &GcOptions,
        concurrency: usize,
    ) -> Result<GcReport, RepoError> {
        let holdings = self.gc_holdings().await?;
        let plan = plan_gc(&holdings, now, options);
        let mut report = GcReport::default();
        let mut mark = plan.mark.clone();
        if !plan.repack.is_empty() {
            report.packs_written = self.repack(&holdings, &plan.repack).await?;
            mark.extend(plan.repack.iter().cloned());
        }
        if !mark.is_empty() {
            self.write_mark(now, mark).await?;
        }
        let mut resolved: HashSet<String> = plan.gone.iter().cloned().collect();
        resolved.extend(plan.revive.iter().map(|p| p.pack.clone()));
        if !plan.delete.is_empty() {
            match self
                .delete_marked(&holdings, &plan.delete, now, concurrency)
                .await?
            {
                Deletion::Done { record } => {
                    report.packs_deleted = plan.delete.len();
                    report.bytes_deleted = plan.delete.iter().map(|p| p.bytes).sum();
                    report.record = Some(record);
                    resolved.extend(plan.delete.iter().map(|p| p.pack.clone()));
                }
                Deletion::Deferred(why) => report.deferred = Some(why),
            }
        }
        self.settle_marks(&holdings.marks, &resolved).await?;
        info!(
            marked = plan.mark.len(),
            repacked = plan.repack.len(),
            deleted = report.packs_deleted,
            revived = plan.revive.len(),
            waiting = plan.waiting.len(),
            "garbage collected"
        );
        report.plan = plan;
        Ok(report)
    }

    async fn write_mark(&self, at: DateTime<Utc>, packs: Vec<MarkedPack>) -> Result<(), RepoError> {
        let key = pack_mark_key(at, rand::rngs::OsRng.next_u64());
        let record = MarkRecord {
            version: MARK_VERSION,
            at,
            host: crate::host::host_name(),
            packs,
        };
        self.put_sealed_json(MetaKind::PackMark, &key, &record)
            .await
    }

    /// Copies the live chunks of `packs` that no other pack outside them holds into new packs,
    /// and indexes those; returns how many packs it wrote.
    async fn repack(&self, h: &Holdings, packs: &[MarkedPack]) -> Result<usize, RepoError> {
        let leaving: HashSet<String> = packs.iter().map(|p| p.pack.clone()).collect();
        let mut elsewhere: HashSet<ChunkId> = HashSet::new();
        for (_, files) in &h.index_files {
            for p in files.iter().filter(|p| !leaving.contains(&p.id.to_hex())) {
                elsewhere.extend(p.entries.iter().map(|e| e.id));
            }
        }
        let target = self.config().pack.target_size as usize;
        let mut writer = PackWriter::new();
        let mut written = Vec::new();
        let mut copied: HashSet<ChunkId> = HashSet::new();
        for mp in packs {
            let Ok(id) = mp.pack.parse::<PackId>() else {
                continue;
            };
            let key = pack_key(&id);
            let bytes = self.store().get(&key).await?;
            let entries = read_pack(self.keys(), &id, &bytes)
                .map_err(|e| RepoError::corrupt(&key, e.to_string()))?;
            for e in entries {
                if !h.live.contains(&e.id) || elsewhere.contains(&e.id) || !copied.insert(e.id) {
                    continue;
                }
                let range = e.offset as usize..(e.offset as usize + e.length as usize);
                let sealed = bytes
                    .get(range)
                    .ok_or_else(|| RepoError::corrupt(&key, "a chunk lies past the pack's end"))?;
                writer.add(e.id, Bytes::copy_from_slice(sealed), e.raw_len, e.base);
                if writer.len() >= target {
                    let full = std::mem::take(&mut writer);
                    written.push(self.put_pack(full).await?);
                }
            }
        }
        if !writer.is_empty() {
            written.push(self.put_pack(writer).await?);
        }
        if !written.is_empty() {
            self.save_index(&written).await?;
        }
        Ok(written.len())
    }

    async fn put_pack(&self, writer: PackWriter) -> Result<IndexedPack, RepoError> {
        let pack = writer.finish(self.keys());
        let key = pack_key(&pack.id);
        self.store()
            .put_if_absent(
                &key,
                pack.parts.into_iter().collect::<crate::store::PutPayload>(),
            )
            .await?;
        Ok(IndexedPack {
            id: pack.id,
            size: pack.size,
            entries: pack.entries,
        })
    }

    /// Phase two: records, unindexes and deletes `packs`, unless a pack writer holds a lease.
    async fn delete_marked(
        &self,
        h: &Holdings,
        packs: &[MarkedPack],
        now: DateTime<Utc>,
        concurrency: usize,
    ) -> Result<Deletion, RepoError> {
        if let Some(why) = writers(self, now).await? {
            return Ok(Deletion::Deferred(why));
        }
        let going: HashSet<String> = packs.iter().map(|p| p.pack.clone()).collect();
        let record = self
            .record_prune(
                now,
                Deletions {
                    packs: packs
                        .iter()
                        .map(|p| DeletedPack {
                            pack: p.pack.clone(),
                            bytes: p.bytes,
                            why: p.why,
                        })
                        .collect(),
                    ..Deletions::default()
                },
            )
            .await?;
        // The index files naming them, rewritten without them: one new file for what they
        // named besides, then the old files go.
        let mut survivors = Vec::new();
        let mut leaving = Vec::new();
        let mut rewritten = Vec::new();
        for (key, files) in &h.index_files {
            if !files.iter().any(|p| going.contains(&p.id.to_hex())) {
                continue;
            }
            rewritten.push(key.clone());
            for p in files {
                if going.contains(&p.id.to_hex()) {
                    leaving.push(p.clone());
                } else {
                    survivors.push(p.clone());
                }
            }
        }
        if !survivors.is_empty() {
            self.save_index(&survivors).await?;
        }
        for key in &rewritten {
            self.store().delete(key).await?;
        }
        // A writer that began meanwhile may have read the old index: it gets the entries back.
        if let Some(why) = writers(self, now).await? {
            if !leaving.is_empty() {
                self.save_index(&leaving).await?;
            }
            return Ok(Deletion::Deferred(why));
        }
        let keys: Vec<String> = packs
            .iter()
            .filter_map(|p| p.pack.parse::<PackId>().ok())
            .map(|id| pack_key(&id))
            .collect();
        self.store().delete_many(&keys, concurrency).await?;
        Ok(Deletion::Done { record })
    }

    /// Drops what is resolved from the marks: a mark all of whose packs are resolved goes, one
    /// with some left is written again with those (keeping its time) before the old one goes.
    async fn settle_marks(
        &self,
        marks: &[Mark],
        resolved: &HashSet<String>,
    ) -> Result<(), RepoError> {
        for mark in marks {
            let left: Vec<MarkedPack> = mark
                .record
                .packs
                .iter()
                .filter(|p| !resolved.contains(&p.pack))
                .cloned()
                .collect();
            if left.len() == mark.record.packs.len() {
                continue;
            }
            if !left.is_empty() {
                self.write_mark(mark.record.at, left).await?;
            }
            if let Err(e) = self.store().delete(&mark.key).await {
                warn!(key = %mark.key, error = %e, "could not remove a settled mark");
            }
        }
        Ok(())
    }
}

enum Deletion {
    Done { record: String },
    Deferred(String),
}

/// Who writes packs now, in words; `None` when nobody does.
async fn writers(repo: &Repository, now: DateTime<Utc>) -> Result<Option<String>, RepoError> {
    let held = lease::held(repo.store(), PACK_WRITERS, now).await?;
    Ok(held.first().map(|l| {
        format!(
            "{} on {} (pid {}) holds a lease until {}: packs are deleted only while no backup runs",
            l.operation, l.host, l.pid, l.expires
        )
    }))
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
