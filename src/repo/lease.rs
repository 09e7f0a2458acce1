//! Leases in `locks/`: locks with an expiry, created with conditional puts and renewed by writing a
//! new lease before the old one runs out (a lease object is never rewritten).
//!
//! Backups hold shared leases; work that deletes (prune) will hold an exclusive one. A lease whose
//! holder died simply expires.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::layout::{ObjectKey, ObjectKind};
use crate::store::{PutOutcome, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseKind {
    Shared,
    Exclusive,
}

impl LeaseKind {
    fn name(self) -> &'static str {
        match self {
            LeaseKind::Shared => "shared",
            LeaseKind::Exclusive => "exclusive",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub kind: LeaseKind,
    pub operation: String,
    pub host: String,
    pub pid: u32,
    /// Where `pid` means something ([`crate::host::pid_scope`]); absent in leases of older
    /// versions, and on systems without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_scope: Option<String>,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl LeaseRecord {
    /// Whether its holder has certainly died: it ran in this process's pid scope (this machine
    /// since its boot, this container) and no process has its pid any more. Such a lease binds
    /// nobody, whatever its expiry: a command killed outright (SIGKILL, the OOM killer) can be
    /// run again at once on the same machine.
    fn holder_ended(&self) -> bool {
        self.pid_scope
            .as_deref()
            .is_some_and(|scope| crate::host::process_ended(scope, self.pid))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the {operation} lease ran out at {expired} (renewals failed, or the process was suspended): garbage collection may have run since, so nothing is committed; run it again")]
    Lapsed {
        operation: String,
        expired: DateTime<Utc>,
    },
    #[error("repository is locked: {operation} on {host} (pid {pid}) holds a {} lease until {expires}", kind.name())]
    Conflict {
        kind: LeaseKind,
        operation: String,
        host: String,
        pid: u32,
        expires: DateTime<Utc>,
    },
}

/// The operations that write packs: while one of them holds a lease, garbage collection deletes
/// no pack (it may be about to reference one).
pub const PACK_WRITERS: &[&str] = &["backup"];

/// A held lease; renewed in the background until [`Lease::release`].
pub struct Lease {
    store: Store,
    operation: String,
    current: Arc<Mutex<String>>,
    /// The expiry of the newest lease object written.
    expires: Arc<Mutex<DateTime<Utc>>>,
    /// `None` once released.
    renewer: Option<JoinHandle<()>>,
    /// Tells the renewer to stop once the write it may be in has finished.
    stop: Arc<tokio::sync::Notify>,
}

fn new_key() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    ObjectKey::Lease { id: hex::encode(b) }.key()
}

/// How long a lease taken through `store` lasts unrenewed; also the room left for clocks that
/// disagree before someone else's expired lease counts as gone.
fn lease_ttl(store: &Store) -> chrono::Duration {
    chrono::Duration::from_std(store.lease_ttl()).unwrap_or(chrono::Duration::MAX)
}

fn record(
    kind: LeaseKind,
    operation: &str,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
) -> LeaseRecord {
    LeaseRecord {
        kind,
        operation: operation.to_owned(),
        host: crate::host::host_name(),
        pid: std::process::id(),
        pid_scope: crate::host::pid_scope(),
        created: now,
        expires: now + ttl,
    }
}

async fn write(store: &Store, key: &str, rec: &LeaseRecord) -> Result<(), StoreError> {
    let body = Bytes::from(serde_json::to_vec(rec).unwrap_or_default());
    match store.put_if_absent(key, body.clone()).await? {
        PutOutcome::Created => Ok(()),
        // A put retried after its answer was lost finds its own lease there, byte for byte.
        PutOutcome::AlreadyExists if store.get(key).await? == body => Ok(()),
        // 128 random bits collided: treat as a store fault rather than share someone's lease.
        PutOutcome::AlreadyExists => Err(StoreError::Backend {
            op: "put",
            store: store.location(),
            key: key.to_owned(),
            source: "lease key already exists".into(),
        }),
    }
}

impl Lease {
    /// Takes a lease, failing if a conflicting unexpired lease is held by someone else.
    pub async fn acquire(
        store: &Store,
        kind: LeaseKind,
        operation: &str,
        now: DateTime<Utc>,
    ) -> Result<Lease, LeaseError> {
        Self::take(store, kind, operation, now, false).await
    }

    /// Takes a shared lease that also excludes every other holder of a lease for the same
    /// `operation` (two prunes of one repository): at most one of them proceeds, the others fail
    /// naming it (two that start at the same moment may both give way). Backups, which hold
    /// shared leases, are not kept out.
    pub async fn acquire_sole(
        store: &Store,
        operation: &str,
        now: DateTime<Utc>,
    ) -> Result<Lease, LeaseError> {
        Self::take(store, LeaseKind::Shared, operation, now, true).await
    }

    async fn take(
        store: &Store,
        kind: LeaseKind,
        operation: &str,
        now: DateTime<Utc>,
        sole: bool,
    ) -> Result<Lease, LeaseError> {
        let key = new_key();
        let mine = record(kind, operation, now, lease_ttl(store));
        write(store, &key, &mine).await?;
        let sole = sole.then_some(&mine);
        if let Err(e) = check_conflicts(store, &key, kind, now, sole).await {
            let _ = store.delete(&key).await;
            return Err(e);
        }
        let current = Arc::new(Mutex::new(key));
        // By this machine's clock, whatever instant the caller works at (a simulated one).
        let expires = Arc::new(Mutex::new(Utc::now() + lease_ttl(store)));
        let stop = Arc::new(tokio::sync::Notify::new());
        let renewer = tokio::spawn(renew(
            store.clone(),
            stop.clone(),
            current.clone(),
            expires.clone(),
            kind,
            operation.to_owned(),
            mine.created,
        ));
        Ok(Lease {
            store: store.clone(),
            operation: operation.to_owned(),
            current,
            expires,
            renewer: Some(renewer),
            stop,
        })
    }

    /// Fails when the lease has run out by this machine's clock: whoever commits work under a
    /// lease checks it first, since once it has run out, garbage collection no longer waits for
    /// its holder.
    pub async fn ensure_held(&self) -> Result<(), LeaseError> {
        let expires = *self.expires.lock().await;
        if expires <= Utc::now() {
            return Err(LeaseError::Lapsed {
                operation: self.operation.clone(),
                expired: expires,
            });
        }
        Ok(())
    }

    pub async fn release(mut self) {
        // Stopped, not aborted: a renewal being written would land after the delete below (a
        // local write runs on a thread of its own) and keep backups' packs from collection until
        // it expired.
        self.stop.notify_one();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.await;
        }
        let key = self.current.lock().await.clone();
        if let Err(e) = self.store.delete(&key).await {
            warn!(%key, error = %e, "could not remove lease; it will expire");
        }
    }
}

/// A lease dropped unreleased (its holder's work was cancelled) stops being renewed, and expires.
impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

async fn check_conflicts(
    store: &Store,
    mine: &str,
    kind: LeaseKind,
    now: DateTime<Utc>,
    sole: Option<&LeaseRecord>,
) -> Result<(), LeaseError> {
    for obj in store.list(ObjectKind::Lease.prefix()).await? {
        if obj.key == mine {
            continue;
        }
        let Some(rec) = read(store, &obj.key).await? else {
            continue;
        };
        if rec.holder_ended() {
            match store.delete(&obj.key).await {
                Ok(()) => {
                    debug!(key = %obj.key, pid = rec.pid, "removed the lease of a process that has ended")
                }
                Err(e) => {
                    warn!(key = %obj.key, error = %e, "could not remove the lease of a process that has ended")
                }
            }
            continue;
        }
        if rec.expires <= now {
            // Its holder died or lost it. Once it is expired by a whole lease lifetime more (room
            // for clocks that disagree), nobody can still be renewing it: remove it, so locks/
            // holds live leases only.
            if rec.expires + lease_ttl(store) <= now {
                match store.delete(&obj.key).await {
                    Ok(()) => {
                        debug!(key = %obj.key, expired = %rec.expires, "removed an expired lease")
                    }
                    Err(e) => {
                        warn!(key = %obj.key, error = %e, "could not remove an expired lease")
                    }
                }
            } else {
                debug!(key = %obj.key, "ignoring expired lease");
            }
            continue;
        }
        // Any other holder of the same operation's lease, whatever its age: each writes before it
        // lists, so of two that overlap at least one sees the other and gives way, and at most
        // one proceeds (when both see each other, both give way, and the next run proceeds).
        let rival = sole.is_some_and(|me| rec.operation == me.operation);
        if kind == LeaseKind::Exclusive || rec.kind == LeaseKind::Exclusive || rival {
            return Err(LeaseError::Conflict {
                kind: rec.kind,
                operation: rec.operation,
                host: rec.host,
                pid: rec.pid,
                expires: rec.expires,
            });
        }
    }
    Ok(())
}

/// Writes a new lease every third of its lifetime, keeping the first one's `created`, and deletes
/// the one before.
async fn renew(
    store: Store,
    stop: Arc<tokio::sync::Notify>,
    current: Arc<Mutex<String>>,
    expires: Arc<Mutex<DateTime<Utc>>>,
    kind: LeaseKind,
    operation: String,
    created: DateTime<Utc>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(store.lease_ttl() / 3) => {}
            _ = stop.notified() => return,
        }
        let key = new_key();
        let mut next = record(kind, &operation, Utc::now(), lease_ttl(&store));
        next.created = created;
        match write(&store, &key, &next).await {
            Ok(()) => {
                let old = std::mem::replace(&mut *current.lock().await, key);
                // Only a lease that was still in force is extended: one that ran out meanwhile
                // stays run out for its holder, whatever was written since.
                let mut held = expires.lock().await;
                if *held > Utc::now() {
                    *held = next.expires;
                }
                drop(held);
                let _ = store.delete(&old).await;
            }
            Err(e) => warn!(error = %e, "could not renew lease; retrying"),
        }
    }
}

/// A lease as stored; `None` when it is gone (released meanwhile) or unreadable (logged).
async fn read(store: &Store, key: &str) -> Result<Option<LeaseRecord>, StoreError> {
    match store.get(key).await {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                warn!(%key, error = %e, "ignoring unreadable lease");
                Ok(None)
            }
        },
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The leases of `operations` that may still be in force at `now`: not expired, or expired less
/// than a lease lifetime ago (room for clocks that disagree, as for removal).
pub async fn held(
    store: &Store,
    operations: &[&str],
    now: DateTime<Utc>,
) -> Result<Vec<LeaseRecord>, StoreError> {
    let mut out = Vec::new();
    for obj in store.list(ObjectKind::Lease.prefix()).await? {
        let Some(rec) = read(store, &obj.key).await? else {
            continue;
        };
        if operations.contains(&rec.operation.as_str())
            && rec.expires + lease_ttl(store) > now
            && !rec.holder_ended()
        {
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open_store;

    /// Renewals that fail for longer than the lease lasts: the holder is told, and a renewal that
    /// succeeds afterwards does not bring the lease back.
    #[tokio::test]
    async fn a_lease_whose_renewals_fail_runs_out_for_its_holder() {
        use crate::store::faults::{FaultPlan, FaultyBackend};
        let dir = tempfile::tempdir().unwrap();
        let inner = crate::store::LocalBackend::new(dir.path().to_owned());
        let faulty = FaultyBackend::new(
            std::sync::Arc::new(inner),
            FaultPlan {
                fail_puts_after: Some(1),
                only_prefix: Some("locks/".into()),
                ..Default::default()
            },
        );
        let store = Store::new(std::sync::Arc::new(faulty))
            .with_lease_ttl(std::time::Duration::from_secs(3));
        let lease = Lease::acquire(&store, LeaseKind::Shared, "backup", Utc::now())
            .await
            .unwrap();
        lease.ensure_held().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
        let err = lease.ensure_held().await.unwrap_err();
        assert!(matches!(err, LeaseError::Lapsed { .. }), "{err}");
        assert!(err.to_string().contains("ran out"), "{err}");
        // Others see it run out too: past its expiry and the room for clocks, nobody holds it.
        let later = Utc::now() + chrono::Duration::seconds(3);
        assert!(held(&store, &["backup"], later).await.unwrap().is_empty());
        assert_eq!(
            held(&store, &["backup"], Utc::now()).await.unwrap().len(),
            1
        );
        lease.release().await;
    }

    #[tokio::test]
    async fn a_sole_lease_excludes_its_own_operation_only_and_never_lets_two_through() {
        let store = open_store("memory://", &Default::default()).unwrap();
        let now = Utc::now();
        let backup = Lease::acquire(&store, LeaseKind::Shared, "backup", now)
            .await
            .unwrap();
        // A backup does not keep a prune out, nor the prune a backup.
        let prune = Lease::acquire_sole(&store, "prune", now).await.unwrap();
        let another_backup = Lease::acquire(&store, LeaseKind::Shared, "backup", now)
            .await
            .unwrap();
        // A second prune is refused, naming the first.
        let err = Lease::acquire_sole(&store, "prune", now + chrono::Duration::seconds(1))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("prune"), "{err}");
        prune.release().await;
        // Two at once, many times over: never both.
        for _ in 0..50 {
            let (a, b) = tokio::join!(
                Lease::acquire_sole(&store, "prune", now),
                Lease::acquire_sole(&store, "prune", now)
            );
            assert!(
                !(a.is_ok() && b.is_ok()),
                "two prunes at once both proceeded"
            );
            for won in [a, b].into_iter().flatten() {
                won.release().await;
            }
        }
        // On its own again, a prune proceeds.
        Lease::acquire_sole(&store, "prune", now)
            .await
            .unwrap()
            .release()
            .await;
        backup.release().await;
        another_backup.release().await;
        assert!(store.list("locks/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn exclusive_leases_exclude_and_expired_ones_do_not() {
        let store = open_store("memory://", &Default::default()).unwrap();
        let now = Utc::now();
        let shared = Lease::acquire(&store, LeaseKind::Shared, "backup", now)
            .await
            .unwrap();
        let second = Lease::acquire(&store, LeaseKind::Shared, "backup", now)
            .await
            .unwrap();
        let err = Lease::acquire(&store, LeaseKind::Exclusive, "prune", now)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("backup"), "{err}");
        // The refused lease left nothing behind.
        assert_eq!(store.list("locks/").await.unwrap().len(), 2);
        let later =
            now + chrono::Duration::seconds(crate::store::DEFAULT_LEASE_TTL.as_secs() as i64 + 1);
        let ex = Lease::acquire(&store, LeaseKind::Exclusive, "prune", later)
            .await
            .unwrap();
        ex.release().await;
        shared.release().await;
        second.release().await;
        assert!(store.list("locks/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn taking_a_lease_removes_long_expired_ones() {
        let store = open_store("memory://leases-expired", &Default::default()).unwrap();
        let now = Utc::now();
        for _ in 0..3 {
            // Holders that died: their leases are never released.
            let dead = Lease::acquire(&store, LeaseKind::Shared, "backup", now)
                .await
                .unwrap();
            // Dropped unreleased: no longer renewed, and never deleted.
            drop(dead);
        }
        let ttl = chrono::Duration::seconds(crate::store::DEFAULT_LEASE_TTL.as_secs() as i64);
        // Just expired: kept (another host's clock may be behind ours).
        let soon = Lease::acquire(&store, LeaseKind::Shared, "backup", now + ttl)
            .await
            .unwrap();
        assert_eq!(store.list("locks/").await.unwrap().len(), 4);
        soon.release().await;
        // Expired a whole lifetime ago: removed by the next taker.
        let later = Lease::acquire(&store, LeaseKind::Exclusive, "prune", now + ttl * 2)
            .await
            .unwrap();
        assert_eq!(store.list("locks/").await.unwrap().len(), 1);
        later.release().await;
        assert!(store.list("locks/").await.unwrap().is_empty());
    }
}
