//! Holds: a backup kept whatever a retention policy says, until a time or until it is released.
//! A hold and its release are objects of their own, each written once (`holds/<backup>/<id>`,
//! `releases/<id>`), so holds work on write-once buckets, and nothing is ever rewritten to end one.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::crypto::MetaKind;
use super::layout::{ObjectKey, ObjectKind};
use super::manifest::{BackupId, Manifest};
use super::source::SourceName;
use super::{RepoError, Repository};

/// The version of hold and release objects this build writes and reads.
pub const HOLD_VERSION: u32 = 1;

/// A hold on one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRecord {
    pub version: u32,
    /// 16 lower-case hex digits.
    pub id: String,
    pub backup: BackupId,
    pub source: SourceName,
    pub reason: String,
    /// When the hold ends by itself; `None`: only a release ends it.
    pub until: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub host: String,
}

/// The end of a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRecord {
    pub version: u32,
    pub hold: String,
    pub backup: BackupId,
    pub released: DateTime<Utc>,
    pub host: String,
}

/// A hold and, if it has been released, its release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldState {
    pub hold: HoldRecord,
    pub release: Option<ReleaseRecord>,
}

impl HoldState {
    /// The hold keeps its backup at `now`: made by then, not ended by its time, not released.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.hold.created <= now
            && self.hold.until.is_none_or(|u| u > now)
            && self.release.as_ref().is_none_or(|r| r.released > now)
    }
}

fn host() -> String {
    crate::host::host_name()
}

impl Repository {
    /// Puts a hold on `manifest`'s backup.
    pub async fn add_hold(
        &self,
        manifest: &Manifest,
        reason: &str,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<HoldRecord, RepoError> {
        if reason.trim().is_empty() {
            return Err(RepoError::Invalid(
                "a hold needs a reason (--reason): it is what an auditor reads".into(),
            ));
        }
        if let Some(u) = until.filter(|u| *u <= now) {
            return Err(RepoError::Invalid(format!(
                "--until {} is not in the future",
                u.to_rfc3339()
            )));
        }
        let id = format!("{:016x}", rand::rngs::OsRng.next_u64());
        let hold = HoldRecord {
            version: HOLD_VERSION,
            id: id.clone(),
            backup: manifest.id.clone(),
            source: manifest.source.clone(),
            reason: reason.to_owned(),
            until,
            created: now,
            host: host(),
        };
        let key = ObjectKey::Hold {
            backup: manifest.id.clone(),
            id,
        }
        .key();
        self.put_sealed(&key, &hold).await?;
        Ok(hold)
    }

    /// Ends every hold on `backup` active at `now`; returns the releases written.
    pub async fn release_holds(
        &self,
        backup: &BackupId,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleaseRecord>, RepoError> {
        let mut released = Vec::new();
        for state in self.holds().await? {
            if &state.hold.backup != backup || !state.active_at(now) {
                continue;
            }
            let release = ReleaseRecord {
                version: HOLD_VERSION,
                hold: state.hold.id.clone(),
                backup: backup.clone(),
                released: now,
                host: host(),
            };
            let key = ObjectKey::Release {
                id: state.hold.id.clone(),
            }
            .key();
            self.put_sealed(&key, &release).await?;
            released.push(release);
        }
        Ok(released)
    }

    /// Every hold the repository holds, with its release if it has one, oldest first.
    pub async fn holds(&self) -> Result<Vec<HoldState>, RepoError> {
        let mut holds = Vec::new();
        for info in self.store().list(ObjectKind::Hold.prefix()).await? {
            if let Some(ObjectKey::Hold { backup, id }) = ObjectKey::parse(&info.key) {
                let hold: HoldRecord = self.get_sealed(&info.key).await?;
                if hold.backup != backup || hold.id != id {
                    return Err(RepoError::corrupt(
                        &info.key,
                        format!("holds {} {}, not what its key says", hold.backup, hold.id),
                    ));
                }
                holds.push(hold);
            }
        }
        let mut releases = std::collections::BTreeMap::new();
        for info in self.store().list(ObjectKind::Release.prefix()).await? {
            if let Some(ObjectKey::Release { id }) = ObjectKey::parse(&info.key) {
                let release: ReleaseRecord = self.get_sealed(&info.key).await?;
                if release.hold != id {
                    return Err(RepoError::corrupt(&info.key, "releases another hold"));
                }
                releases.insert(id, release);
            }
        }
        holds.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(holds
            .into_iter()
            .map(|hold| HoldState {
                release: releases.remove(&hold.id),
                hold,
            })
            .collect())
    }

    async fn put_sealed<T: Serialize>(&self, key: &str, value: &T) -> Result<(), RepoError> {
        self.put_sealed_json(MetaKind::Hold, key, value).await
    }

    async fn get_sealed<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, RepoError> {
        self.get_sealed_json(MetaKind::Hold, key, HOLD_VERSION)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::format::InitParams;
    use crate::repo::keys::KeySource;
    use crate::repo::manifest::BackupKind;

    async fn repo() -> Repository {
        let store = crate::store::open_store("memory://", &Default::default()).unwrap();
        let key = KeySource::passphrase("hold test");
        Repository::init(store, &key, &InitParams::default(), Utc::now())
            .await
            .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// A stream backup's manifest (not saved: holds only need its id and source).
    fn manifest(repo: &Repository) -> Manifest {
        repo.new_manifest(
            &"notes".parse().unwrap(),
            BackupKind::Stream,
            Default::default(),
            at("2026-01-01T00:00:00Z"),
        )
    }

    #[tokio::test]
    async fn holds_are_written_once_and_end_by_time_or_release() {
        let repo = repo().await;
        let m = manifest(&repo);
        let now = at("2026-02-01T00:00:00Z");
        let case = repo.add_hold(&m, "legal case 42", None, now).await.unwrap();
        let audit = repo
            .add_hold(&m, "audit", Some(at("2026-03-01T00:00:00Z")), now)
            .await
            .unwrap();
        let holds = repo.holds().await.unwrap();
        assert_eq!(holds.len(), 2);
        assert!(holds
            .iter()
            .all(|h| h.active_at(at("2026-02-15T00:00:00Z"))));
        let after_audit = at("2026-03-02T00:00:00Z");
        let active: Vec<_> = holds.iter().filter(|h| h.active_at(after_audit)).collect();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].hold.id, case.id);
        assert_ne!(case.id, audit.id);
        // A release ends the hold from its time on; the hold object itself stays.
        let released = repo
            .release_holds(&m.id, at("2026-04-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(released.len(), 1, "only the hold still active is released");
        let holds = repo.holds().await.unwrap();
        let case_state = holds.iter().find(|h| h.hold.id == case.id).unwrap();
        assert!(case_state.active_at(at("2026-03-31T00:00:00Z")));
        assert!(!case_state.active_at(at("2026-04-02T00:00:00Z")));
        // Releasing again writes nothing.
        assert!(repo
            .release_holds(&m.id, at("2026-05-01T00:00:00Z"))
            .await
            .unwrap()
            .is_empty());
        // Bad requests.
        assert!(repo.add_hold(&m, " ", None, now).await.is_err());
        assert!(repo
            .add_hold(&m, "late", Some(at("2026-01-15T00:00:00Z")), now)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_hold_moved_to_another_key_does_not_open() {
        let repo = repo().await;
        let m = manifest(&repo);
        let hold = repo
            .add_hold(&m, "x", None, at("2026-01-02T00:00:00Z"))
            .await
            .unwrap();
        let key = ObjectKey::Hold {
            backup: m.id.clone(),
            id: hold.id.clone(),
        }
        .key();
        let bytes = repo.store().get(&key).await.unwrap();
        let other = ObjectKey::Hold {
            backup: m.id.clone(),
            id: "0000000000000000".into(),
        }
        .key();
        repo.store().put_if_absent(&other, bytes).await.unwrap();
        let err = repo.holds().await.unwrap_err();
        assert!(
            err.is_integrity() && err.to_string().contains(&other),
            "{err}"
        );
    }
}
