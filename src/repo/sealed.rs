//! Small metadata objects (holds, releases, prune records): JSON sealed with its key bound in,
//! written once, read back refusing a `version` newer than the reader knows.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::crypto::MetaKind;
use super::layout::{ObjectKey, ObjectKind};
use super::{put_new, RepoError, Repository};

impl Repository {
    /// Writes `value` once as JSON sealed with its key bound in.
    pub(crate) async fn put_sealed_json<T: Serialize>(
        &self,
        kind: MetaKind,
        key: &str,
        value: &T,
    ) -> Result<(), RepoError> {
        let json = serde_json::to_vec(value).map_err(|e| RepoError::Internal(e.to_string()))?;
        let sealed = self.keys().seal_named(kind, key, &json);
        put_new(self.store(), key, Bytes::from(sealed)).await
    }

    /// Reads JSON sealed with its key bound in, refusing a `version` above `newest`.
    pub(crate) async fn get_sealed_json<T: serde::de::DeserializeOwned>(
        &self,
        kind: MetaKind,
        key: &str,
        newest: u32,
    ) -> Result<T, RepoError> {
        let bytes = self.store().get(key).await?;
        let json = self
            .keys()
            .open_named(kind, key, &bytes)
            .map_err(|e| RepoError::corrupt(key, e.to_string()))?;
        let version: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| RepoError::corrupt(key, e.to_string()))?;
        if version["version"]
            .as_u64()
            .is_some_and(|v| v > u64::from(newest))
        {
            return Err(RepoError::corrupt(
                key,
                format!(
                    "version {} is newer than this build reads ({newest}): upgrade heirloom-backup",
                    version["version"]
                ),
            ));
        }
        serde_json::from_value(version).map_err(|e| RepoError::corrupt(key, e.to_string()))
    }

    /// Every sealed record of `kind` with its key, in key order (oldest first, for the kinds
    /// named by time), each opened as `meta` refusing a `version` above `newest`. Objects under
    /// the prefix whose names are not of the kind are left alone.
    pub(crate) async fn sealed_records<T: serde::de::DeserializeOwned>(
        &self,
        kind: ObjectKind,
        meta: MetaKind,
        newest: u32,
    ) -> Result<Vec<(String, T)>, RepoError> {
        let mut keys: Vec<String> = self
            .store()
            .list(kind.prefix())
            .await?
            .into_iter()
            .filter(|o| ObjectKey::parse(&o.key).is_some_and(|k| k.kind() == kind))
            .map(|o| o.key)
            .collect();
        keys.sort();
        futures::stream::iter(keys)
            .map(|key| async move {
                let record = self.get_sealed_json(meta, &key, newest).await?;
                Ok::<_, RepoError>((key, record))
            })
            .buffered(8)
            .try_collect()
            .await
    }
}
