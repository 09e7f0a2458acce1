//! The repository: its format, keys and crypto, chunker, packs, index, manifests and leases.
//!
//! It knows nothing of databases. Everything it writes is write-once; `docs/FORMAT.md` describes each
//! object byte for byte.

pub mod blob;
pub mod chunker;
pub mod crypto;
pub mod drill_record;
mod error;
pub mod format;
pub mod gc;
pub mod holds;
pub mod ids;
pub mod index;
pub mod keys;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod object_lock;
pub mod pack;
pub mod prune_record;
mod sealed;
pub mod source;
pub mod stats;
pub mod verify_record;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use rand::RngCore;
use tracing::{debug, info};

pub use error::RepoError;

use crate::store::{PutOutcome, Store, StoreError};
use crypto::{Keys, MasterSecret, MetaKind};
use format::{InitParams, RepoConfig};
use ids::PackId;
use index::{Index, IndexedPack};
use keys::{EnvelopeError, KeyEnvelope, KeySource};
use layout::{ObjectKey, ObjectKind, CONFIG_KEY};
use manifest::{BackupId, Manifest};

/// How many metadata objects are fetched at once when loading the index or manifests.
const META_FETCH_CONCURRENCY: usize = 16;

/// An open repository: its store, its parameters and its unwrapped keys.
#[derive(Clone)]
pub struct Repository {
    store: Store,
    config: RepoConfig,
    keys: Arc<Keys>,
    key_id: String,
}

/// One key envelope as `key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub kind: keys::EnvelopeKind,
    pub host: String,
    pub created: DateTime<Utc>,
    /// The key this session opened the repository with.
    pub current: bool,
}

impl Repository {
    /// Creates a new repository in an empty location.
    pub async fn init(
        store: Store,
        source: &KeySource,
        params: &InitParams,
        now: DateTime<Utc>,
    ) -> Result<Self, RepoError> {
        Self::init_with_secret(store, source, params, now, MasterSecret::generate()).await
    }

    /// [`Repository::init`] with a master secret the caller made instead of a fresh random one:
    /// for a test that needs the same chunk ids and object sizes on every run. A secret that is
    /// not random weakens every object the repository will hold.
    pub async fn init_with_secret(
        store: Store,
        source: &KeySource,
        params: &InitParams,
        now: DateTime<Utc>,
        secret: MasterSecret,
    ) -> Result<Self, RepoError> {
        params.validate().map_err(RepoError::Invalid)?;
        match store.get(CONFIG_KEY).await {
            Ok(_) => {
                return Err(RepoError::AlreadyInitialized {
                    location: store.location(),
                })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let config = RepoConfig::new(hex::encode(id), params, now);
        let envelope = KeyEnvelope::wrap(&secret, source, &config.id, now)
            .map_err(|e| RepoError::Internal(format!("wrapping the master key: {e}")))?;
        let key_id = envelope.id.clone();
        put_json(&store, &key_object(&key_id), &envelope).await?;
        let config_bytes =
            serde_json::to_vec_pretty(&config).map_err(|e| RepoError::Internal(e.to_string()))?;
        let config_bytes = Bytes::from(config_bytes);
        if store.put_if_absent(CONFIG_KEY, config_bytes.clone()).await? == PutOutcome::AlreadyExists
            // A put retried after its answer was lost finds its own config there: byte for byte
            // ours (its id is random), and the repository is ours.
            && store.get(CONFIG_KEY).await? != config_bytes
        {
            // Someone initialised the same location concurrently; take our key back out.
            let _ = store.delete(&key_object(&key_id)).await;
            return Err(RepoError::AlreadyInitialized {
                location: store.location(),
            });
        }
        info!(location = %store.location(), id = %config.id, "repository created");
        Ok(Self {
            store,
            config,
            keys: Arc::new(Keys::new(secret)),
            key_id,
        })
    }

    /// Opens an existing repository, refusing a format newer than this build.
    pub async fn open(store: Store, source: &KeySource) -> Result<Self, RepoError> {
        let config = read_config(&store).await?;
        let envelopes = read_envelopes(&store).await?;
        let candidates: Vec<_> = envelopes
            .iter()
            .filter(|e| e.kind == source.kind())
            .collect();
        let mut newer = None;
        for envelope in &candidates {
            match envelope.unwrap_secret(source, &config.id) {
                Ok(secret) => {
                    debug!(key = %envelope.id, "repository unlocked");
                    return Ok(Self {
                        store,
                        config,
                        keys: Arc::new(Keys::new(secret)),
                        key_id: envelope.id.clone(),
                    });
                }
                Err(EnvelopeError::Malformed(why)) => {
                    return Err(RepoError::corrupt(key_object(&envelope.id), why))
                }
                Err(e @ EnvelopeError::TooNew(_)) => {
                    newer = Some(format!("{}: {e}", key_object(&envelope.id)));
                }
                Err(_) => continue,
            }
        }
        if let Some(why) = newer {
            return Err(RepoError::Invalid(format!(
                "no key of this build's envelope version opens the repository at {}; {why}",
                store.location()
            )));
        }
        Err(RepoError::WrongKey {
            location: store.location(),
            tried_with: source.describe(),
            candidates: candidates.len(),
            others: envelopes.len() - candidates.len(),
            kind: match source.kind() {
                keys::EnvelopeKind::Passphrase => "passphrase",
                keys::EnvelopeKind::KeyFile => "key-file",
            },
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the repository's config object again: the store answers, and still holds this
    /// repository (not another one, nor nothing, under the same URL).
    pub async fn probe(&self) -> Result<(), RepoError> {
        let config = read_config(&self.store).await?;
        if config.id != self.config.id {
            return Err(RepoError::Invalid(format!(
                "{} now holds repository {}, not {}, which this process opened",
                self.store.location(),
                config.id,
                self.config.id
            )));
        }
        Ok(())
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, RepoError> {
        Ok(read_envelopes(&self.store)
            .await?
            .into_iter()
            .map(|e| KeyInfo {
                current: e.id == self.key_id,
                id: e.id,
                kind: e.kind,
                host: e.host,
                created: e.created,
            })
            .collect())
    }

    /// Wraps the master secret for another passphrase or key file. Returns the new key's id.
    pub async fn add_key(
        &self,
        source: &KeySource,
        now: DateTime<Utc>,
    ) -> Result<String, RepoError> {
        let envelope = KeyEnvelope::wrap(self.keys.secret(), source, &self.config.id, now)
            .map_err(|e| RepoError::Internal(format!("wrapping the master key: {e}")))?;
        put_json(&self.store, &key_object(&envelope.id), &envelope).await?;
        Ok(envelope.id)
    }

    /// Removes a key envelope; never the last one.
    pub async fn remove_key(&self, id: &str) -> Result<(), RepoError> {
        let envelopes = read_envelopes(&self.store).await?;
        if !envelopes.iter().any(|e| e.id == id) {
            return Err(RepoError::KeyNotFound {
                location: self.store.location(),
                id: id.to_owned(),
            });
        }
        if envelopes.len() <= 1 {
            return Err(RepoError::LastKey { id: id.to_owned() });
        }
        self.store.delete(&key_object(id)).await?;
        Ok(())
    }

    /// Writes one index file for packs that are already durable.
    pub async fn save_index(&self, packs: &[IndexedPack]) -> Result<String, RepoError> {
        let sealed = self.keys.seal_meta(MetaKind::Index, &index::encode(packs));
        let key = layout::index_key(&sealed);
        self.store.put_if_absent(&key, Bytes::from(sealed)).await?;
        Ok(key)
    }

    /// Reads every index file into one [`Index`].
    pub async fn load_index(&self) -> Result<Index, RepoError> {
        let files = self.store.list(ObjectKind::Index.prefix()).await?;
        let mut index = Index::default();
        let mut fetched = futures::stream::iter(files)
            .map(|obj| async move {
                let bytes = self.store.get(&obj.key).await?;
                Ok::<_, RepoError>((obj.key, bytes))
            })
            .buffer_unordered(META_FETCH_CONCURRENCY);
        while let Some((key, bytes)) = fetched.try_next().await? {
            for pack in self.open_index_file(&key, &bytes)? {
                index.add_pack(&pack);
            }
        }
        Ok(index)
    }

    /// Decrypts and parses one index file, checking it against its name.
    pub fn open_index_file(&self, key: &str, bytes: &[u8]) -> Result<Vec<IndexedPack>, RepoError> {
        if layout::index_key(bytes) != key {
            return Err(RepoError::corrupt(
                key,
                "SHA-256 of its bytes does not match its name",
            ));
        }
        let plain = self
            .keys
            .open_meta(MetaKind::Index, bytes)
            .map_err(|e| RepoError::corrupt(key, e.to_string()))?;
        index::decode(&plain).map_err(|why| RepoError::corrupt(key, why))
    }

    /// A manifest for a backup of `source` starting at `started`, without files yet, its id in the
    /// repository format's precision.
    pub fn new_manifest(
        &self,
        source: &source::SourceName,
        kind: manifest::BackupKind,
        labels: std::collections::BTreeMap<String, String>,
        started: DateTime<Utc>,
    ) -> Manifest {
        Manifest::new(source, kind, labels, started, self.config.id_precision())
    }

    pub async fn save_manifest(&self, manifest: &Manifest) -> Result<(), RepoError> {
        if manifest.version < manifest.needed_version() {
            return Err(RepoError::Internal(format!(
                "manifest {} is marked version {} but needs {}",
                manifest.id,
                manifest.version,
                manifest.needed_version()
            )));
        }
        let json = serde_json::to_vec(manifest).map_err(|e| RepoError::Internal(e.to_string()))?;
        let compressed = zstd::bulk::compress(&json, 3).map_err(RepoError::Output)?;
        let sealed = self.keys.seal_meta(MetaKind::Manifest, &compressed);
        put_new(&self.store, &manifest.id.key(), Bytes::from(sealed)).await
    }

    fn open_manifest(&self, key: &str, bytes: &[u8]) -> Result<Manifest, RepoError> {
        let compressed = self
            .keys
            .open_meta(MetaKind::Manifest, bytes)
            .map_err(|e| RepoError::corrupt(key, e.to_string()))?;
        let json = zstd::stream::decode_all(&compressed[..])
            .map_err(|e| RepoError::corrupt(key, format!("decompression: {e}")))?;
        // The version first: a newer manifest may hold fields this build does not know.
        #[derive(serde::Deserialize)]
        struct Versioned {
            version: u32,
        }
        let versioned: Versioned =
            serde_json::from_slice(&json).map_err(|e| RepoError::corrupt(key, e.to_string()))?;
        if versioned.version > manifest::MANIFEST_VERSION {
            return Err(RepoError::corrupt(
                key,
                format!(
                    "manifest version {} is newer than this build reads ({}): upgrade heirloom-backup",
                    versioned.version,
                    manifest::MANIFEST_VERSION
                ),
            ));
        }
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| RepoError::corrupt(key, e.to_string()))?;
        if manifest.id.key() != key {
            return Err(RepoError::corrupt(
                key,
                format!("it names itself {}", manifest.id),
            ));
        }
        Ok(manifest)
    }

    /// Every backup id, oldest first, without reading the manifests.
    pub async fn backup_ids(&self) -> Result<Vec<BackupId>, RepoError> {
        Ok(self
            .store
            .list(ObjectKind::Manifest.prefix())
            .await?
            .into_iter()
            .filter_map(|o| match ObjectKey::parse(&o.key)? {
                ObjectKey::Manifest(id) => Some(id),
                _ => None,
            })
            .collect())
    }

    /// Every manifest (optionally of one source), oldest first (see [`manifest::newest`]).
    pub async fn manifests(&self, source: Option<&str>) -> Result<Vec<Manifest>, RepoError> {
        let ids = self.backup_ids().await?;
        let mut out: Vec<Manifest> = futures::stream::iter(ids)
            .map(|id| async move { self.manifest(&id).await })
            .buffer_unordered(META_FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        out.retain(|m| source.is_none_or(|s| m.source == s));
        out.sort_by(Manifest::age_order);
        Ok(out)
    }

    pub async fn manifest(&self, id: &BackupId) -> Result<Manifest, RepoError> {
        let key = id.key();
        let bytes = match self.store.get(&key).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(RepoError::BackupNotFound(id.to_string())),
            Err(e) => return Err(e.into()),
        };
        self.open_manifest(&key, &bytes)
    }

    /// Resolves a full backup id, a unique prefix of one, or `latest`: the newest backup by the
    /// manifests' times ([`manifest::newest`]). With `source`, only that source's backups count,
    /// and an id of another source's backup is refused.
    pub async fn resolve_backup(
        &self,
        text: &str,
        source: Option<&str>,
    ) -> Result<BackupId, RepoError> {
        let what = || match source {
            Some(s) => format!("{text} of source {s}"),
            None => text.to_owned(),
        };
        if text == "latest" {
            let manifests = self.manifests(source).await?;
            return manifest::newest(&manifests)
                .map(|m| m.id.clone())
                .ok_or_else(|| RepoError::BackupNotFound(what()));
        }
        let ids = self.backup_ids().await?;
        let matches: Vec<&BackupId> = ids
            .iter()
            .filter(|id| id.as_str().starts_with(text))
            .collect();
        let id = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(RepoError::BackupNotFound(what())),
            many => {
                return Err(RepoError::AmbiguousBackup {
                    prefix: text.to_owned(),
                    matches: many
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        };
        if let Some(source) = source {
            let m = self.manifest(&id).await?;
            if m.source != source {
                return Err(RepoError::Invalid(format!(
                    "backup {id} is of source {}, not {source}",
                    m.source
                )));
            }
        }
        Ok(id)
    }

    /// Removes one backup on purpose: its manifest goes, so nothing lists or restores it any more.
    /// Its chunks stay until garbage collection finds that nothing else refers to them. Returns the
    /// manifest that was removed.
    pub async fn forget(&self, id: &BackupId) -> Result<Manifest, RepoError> {
        // Read it first: a damaged or foreign object is reported, not deleted unseen.
        let manifest = self.manifest(id).await?;
        self.store.delete(&id.key()).await?;
        info!(id = %id, source = %manifest.source, "backup forgotten");
        Ok(manifest)
    }

    /// Lists the packs present in the store with their sizes.
    pub async fn stored_packs(&self) -> Result<Vec<(PackId, u64)>, RepoError> {
        Ok(self
            .store
            .list(ObjectKind::Pack.prefix())
            .await?
            .into_iter()
            .filter_map(|o| Some((layout::pack_id_from_key(&o.key)?, o.size)))
            .collect())
    }
}

async fn put_json<T: serde::Serialize>(
    store: &Store,
    key: &str,
    value: &T,
) -> Result<(), RepoError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| RepoError::Internal(e.to_string()))?;
    put_new(store, key, Bytes::from(bytes)).await
}

/// Writes an object that must not exist yet. A put whose answer was lost and that was retried finds
/// its own object there: identical bytes count as success, anything else is refused.
pub(crate) async fn put_new(store: &Store, key: &str, bytes: Bytes) -> Result<(), RepoError> {
    match store.put_if_absent(key, bytes.clone()).await? {
        PutOutcome::Created => Ok(()),
        PutOutcome::AlreadyExists if store.get(key).await? == bytes => Ok(()),
        PutOutcome::AlreadyExists => Err(RepoError::Conflict(key.to_owned())),
    }
}

/// `keys/<id>`.
fn key_object(id: &str) -> String {
    ObjectKey::Key { id: id.to_owned() }.key()
}

async fn read_config(store: &Store) -> Result<RepoConfig, RepoError> {
    let bytes = match store.get(CONFIG_KEY).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            // A missing object, or a missing bucket: a listing tells them apart.
            return Err(match store.list(ObjectKind::Key.prefix()).await {
                Ok(_) => RepoError::NotARepository {
                    location: store.location(),
                    key: CONFIG_KEY,
                },
                Err(StoreError::NotFound { .. } | StoreError::NoBucket { .. }) => {
                    StoreError::NoBucket {
                        store: store.location(),
                        source: Box::new(e),
                    }
                    .into()
                }
                Err(other) => other.into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    RepoConfig::parse(&bytes).map_err(|source| RepoError::Config {
        location: store.location(),
        key: CONFIG_KEY,
        source,
    })
}

async fn read_envelopes(store: &Store) -> Result<Vec<KeyEnvelope>, RepoError> {
    let mut out = Vec::new();
    for obj in store.list(ObjectKind::Key.prefix()).await? {
        let bytes = store.get(&obj.key).await?;
        let envelope: KeyEnvelope = serde_json::from_slice(&bytes)
            .map_err(|e| RepoError::corrupt(&obj.key, format!("not a key envelope: {e}")))?;
        out.push(envelope);
    }
    Ok(out)
}
