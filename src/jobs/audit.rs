//! `audit`: the facts the repository holds about each source (backups, retention, log, windows,
//! drills, verifies, storage), gathered in one pass of reads, then judged by `audit::checks`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::retention::plan_retention_of;
use super::{backup_time, described_by, JobContext, JobError};
use crate::audit::checks::{self, RepositoryFacts, SourceFacts};
use crate::audit::storage::{backup_bytes, growth};
use crate::audit::windows::windows;
use crate::audit::{
    Audit, BackupAudit, DrillEntry, Drills, FullRead, GapEntry, HoldEntry, LogAudit, NewestLog,
    PolicySummary, RepositoryAudit, SourceAudit, Storage, Verifies, VerifyEntry, AUDIT_SCHEMA,
    AUDIT_VERSION,
};
use crate::config::Config;
use crate::engine::LogCoverage;
use crate::repo::drill_record::DrillRecord;
use crate::repo::layout::{ObjectKey, ObjectKind};
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::prune_record::DeletedLog;
use crate::repo::source::SourceName;
use crate::repo::verify_record::VerifyRecord;
use crate::retention::policy::{Policy, Span};
use crate::store::ObjectInfo;

/// What to audit, and as of when.
#[derive(Debug, Clone, Default)]
pub struct AuditRequest {
    /// One source, or every source the repository or the config knows.
    pub source: Option<SourceName>,
    /// One policy for every source instead of the config's.
    pub policy: Option<Policy>,
    /// The instant judged at; `None`: the context's clock.
    pub at: Option<DateTime<Utc>>,
    /// How the report names the repository; `None`: the store's location.
    pub location: Option<String>,
}

/// The kinds whose objects the format seals, and those it does not (which hold no backed-up data).
fn sealed(kind: ObjectKind) -> bool {
    !matches!(
        kind,
        ObjectKind::Config | ObjectKind::Key | ObjectKind::Lease | ObjectKind::BinlogClaim
    )
}

/// Gathers and judges: reads every manifest, hold, record and index file once and lists the store
/// once. Fails only when the repository cannot be read; what it finds wrong is in the checks.
pub async fn audit(
    ctx: &JobContext,
    config: &Config,
    request: &AuditRequest,
) -> Result<Audit, JobError> {
    let at = request.at.unwrap_or_else(|| ctx.now());
    let repo = &ctx.repo;
    let source = request.source.as_ref();
    let manifests = repo.manifests(source.map(|s| s.as_str())).await?;
    let mut plans =
        plan_retention_of(ctx, config, &manifests, source, request.policy.as_ref(), at).await?;
    // Configured sources with no backup yet are audited too (and fail: nothing protects them).
    if source.is_none() {
        for name in config.source_names() {
            if !plans.iter().any(|p| &p.source == name) {
                plans.extend(
                    plan_retention_of(ctx, config, &[], Some(name), request.policy.as_ref(), at)
                        .await?,
                );
            }
        }
        plans.sort_by(|a, b| a.source.cmp(&b.source));
    }
    let holds = repo.holds().await?;
    let verify_records = repo.verify_records().await?;
    let drill_records = repo.drill_records(source).await?;
    let prunes = repo.prune_records().await?;
    let index = repo.load_index().await?;
    let listing = repo
        .store()
        .list("")
        .await
        .map_err(crate::repo::RepoError::from)?;
    let all: Vec<&Manifest> = manifests.iter().collect();
    let bytes = backup_bytes(&all, &index);
    let verifies = verifies(&verify_records, at);

    let mut sources = Vec::new();
    let mut verify_within: Option<Span> = None;
    for plan in &plans {
        let policy = match &request.policy {
            Some(p) => p.clone(),
            None => config
                .policy_for(&plan.source)
                .map_err(|e| JobError::Usage(e.to_string()))?,
        };
        let limit = policy.audit.verify_within;
        if verify_within.is_none_or(|v| checks::span_length(limit) < checks::span_length(v)) {
            verify_within = Some(limit);
        }
        let mine: Vec<&Manifest> = manifests
            .iter()
            .filter(|m| m.source == plan.source)
            .collect();
        let engine = if mine.iter().all(|m| m.kind == BackupKind::Stream)
            && !config.declares(&plan.source)
        {
            "stream".to_owned()
        } else {
            described_by(config, &plan.source, mine.iter().copied())?
                .engine()
                .to_owned()
        };
        let backups: Vec<BackupAudit> = mine
            .iter()
            .map(|m| {
                backup_audit(
                    m,
                    plan,
                    &holds,
                    &verify_records,
                    bytes.get(&m.id).copied(),
                    at,
                )
            })
            .collect();
        let first_backup = mine
            .iter()
            .map(|m| backup_time(m))
            .chain(
                prunes
                    .iter()
                    .flat_map(|r| r.deleted.iter())
                    .filter(|d| d.source == plan.source)
                    .map(|d| d.backup_time),
            )
            .min();
        let windows = plan
            .coverage
            .as_ref()
            .map(|c| windows(c, &mine))
            .unwrap_or_default();
        let pruned: Vec<(DateTime<Utc>, &DeletedLog)> = prunes
            .iter()
            .flat_map(|r| r.logs.iter().map(move |l| (r.at, l)))
            .filter(|(_, l)| l.source == plan.source)
            .collect();
        let log = plan
            .coverage
            .as_ref()
            .map(|c| log_audit(c, &plan.source, &listing, &pruned, at));
        let drills = drills(
            drill_records
                .iter()
                .filter(|(_, r)| r.source == plan.source && r.finished <= at)
                .map(|(_, r)| r),
        );
        let checks = checks::source_checks(&SourceFacts {
            at,
            policy: &policy,
            first_backup,
            backups: &backups,
            windows: &windows,
            window: plan.selection.window.as_ref(),
            log: log.as_ref(),
            drills: &drills,
            immutability_unmet: plan.immutability_unmet.as_deref(),
            object_lock: config.repository.object_lock,
        });
        sources.push(SourceAudit {
            source: plan.source.to_string(),
            engine,
            policy: policy_summary(&policy),
            first_backup,
            growth: growth(&backups, policy.zone),
            backups,
            log,
            windows,
            drills,
            checks,
        });
    }

    let mut by_kind: BTreeMap<&'static str, (u64, bool)> = ObjectKind::ALL
        .iter()
        .map(|k| (k.prefix(), (0, sealed(*k))))
        .collect();
    let mut unknown = Vec::new();
    for o in &listing {
        match ObjectKey::parse(&o.key) {
            Some(k) => {
                if let Some(entry) = by_kind.get_mut(k.kind().prefix()) {
                    entry.0 += 1;
                }
            }
            None => unknown.push(o.key.clone()),
        }
    }
    let objects_by_kind: Vec<(String, u64, bool)> = by_kind
        .into_iter()
        .map(|(k, (n, s))| (k.to_owned(), n, s))
        .collect();
    let format_version = repo.config().version;
    let repository_checks = checks::repository_checks(&RepositoryFacts {
        at,
        verify_within: verify_within.unwrap_or(Span::Days(7)),
        verifies: &verifies,
        objects_by_kind: &objects_by_kind,
        unknown_objects: &unknown,
        format_version,
    });
    let sum = |kinds: &[ObjectKind]| -> u64 {
        listing
            .iter()
            .filter(|o| kinds.iter().any(|k| o.key.starts_with(k.prefix())))
            .map(|o| o.size)
            .sum()
    };
    let logical_bytes: u64 = manifests.iter().map(|m| m.size()).sum();
    let unique_bytes = index.unique_raw_bytes();
    let stored_chunk_bytes = index.unique_stored_bytes();
    let storage = Storage {
        objects: listing.len() as u64,
        bytes: listing.iter().map(|o| o.size).sum(),
        logical_bytes,
        unique_bytes,
        stored_chunk_bytes,
        pack_bytes: sum(&[ObjectKind::Pack]),
        log_bytes: sum(&[
            ObjectKind::Wal,
            ObjectKind::WalSnapshot,
            ObjectKind::BinlogSegment,
            ObjectKind::BinlogFill,
        ]),
        dedup_ratio: ratio(logical_bytes, unique_bytes),
        compression_ratio: ratio(unique_bytes, stored_chunk_bytes),
    };
    let mut failed: Vec<String> = repository_checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| format!("repository: {}", c.id))
        .collect();
    for s in &sources {
        failed.extend(
            s.checks
                .iter()
                .filter(|c| c.failed())
                .map(|c| format!("{}: {}", s.source, c.id)),
        );
    }
    Ok(Audit {
        schema: AUDIT_SCHEMA.to_owned(),
        version: AUDIT_VERSION,
        at,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        passed: failed.is_empty(),
        failed,
        repository: RepositoryAudit {
            location: request
                .location
                .clone()
                .unwrap_or_else(|| repo.store().location()),
            format_version,
            storage,
            verifies,
            checks: repository_checks,
        },
        sources,
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        return 0.0;
    }
    // Two decimals, so that the JSON is the same on every platform.
    ((a as f64 / b as f64) * 100.0).round() / 100.0
}

fn policy_summary(p: &Policy) -> PolicySummary {
    let k = &p.keep;
    let keep: Vec<String> = [
        ("last", k.last),
        ("hourly", k.hourly),
        ("daily", k.daily),
        ("weekly", k.weekly),
        ("monthly", k.monthly),
        ("yearly", k.yearly),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(r, n)| format!("{r} {n}"))
    .collect();
    PolicySummary {
        name: p.name.clone(),
        description: p.description.clone(),
        zone: p.zone.name().to_owned(),
        point_in_time: p.point_in_time.map(|s| s.to_string()),
        keep: keep.join(", "),
        immutability: p.immutability.map(|i| i.to_string()),
        max_backup_age: p.audit.max_backup_age.to_string(),
        verify_within: p.audit.verify_within.to_string(),
        drill_within: p.audit.drill_within.to_string(),
        max_log_age: p.audit.max_log_age.map(|s| s.to_string()),
    }
}

fn backup_audit(
    m: &Manifest,
    plan: &super::SourcePlan,
    holds: &[crate::repo::holds::HoldState],
    verifies: &[(String, VerifyRecord)],
    bytes: Option<crate::audit::storage::BackupBytes>,
    at: DateTime<Utc>,
) -> BackupAudit {
    let verdict = plan.selection.verdicts.iter().find(|v| v.id == m.id);
    let locked = plan.locked.iter().find(|l| l.backup == m.id);
    let (status, kept_by) = match (verdict, locked) {
        (Some(v), _) if v.kept() => ("kept", v.reasons.iter().map(ToString::to_string).collect()),
        (_, Some(l)) => (
            "locked",
            vec![format!(
                "the bucket's Object Lock, until {}",
                l.until.to_rfc3339()
            )],
        ),
        _ => ("expires", Vec::new()),
    };
    let id = m.id.as_str();
    let last_verified = verifies
        .iter()
        .filter(|(_, v)| v.started >= m.finished && v.finished <= at)
        .filter(|(_, v)| !v.problems.iter().any(|p| p.object.contains(id)))
        .map(|(_, v)| v.finished)
        .max();
    let bytes = bytes.unwrap_or_default();
    BackupAudit {
        id: id.to_owned(),
        kind: m.kind.to_string(),
        started: m.started,
        finished: m.finished,
        consistent_at: backup_time(m),
        files: m.files.len() as u64,
        logical_bytes: m.size(),
        stored_bytes: bytes.stored,
        added_bytes: bytes.added,
        status: status.to_owned(),
        kept_by,
        holds: holds
            .iter()
            .filter(|h| h.hold.backup == m.id && h.hold.created <= at)
            .map(|h| HoldEntry {
                reason: h.hold.reason.clone(),
                created: h.hold.created,
                until: h.hold.until,
                released: h.release.as_ref().map(|r| r.released).filter(|r| *r <= at),
                active: h.active_at(at),
            })
            .collect(),
        last_verified,
    }
}

/// The log of `source`: its runs, the gaps between them dated by the runs around them, and its
/// newest object: WAL as the store dates the newest object (WAL carries no time the repository
/// reads), binlog by the last event its newest segment records.
fn log_audit(
    coverage: &LogCoverage,
    source: &SourceName,
    listing: &[ObjectInfo],
    pruned: &[(DateTime<Utc>, &DeletedLog)],
    at: DateTime<Utc>,
) -> LogAudit {
    let gaps = coverage
        .gaps
        .iter()
        .enumerate()
        .map(|(i, gap)| {
            let mut gap = gap.clone();
            // A stretch a prune record says it deleted, beginning inside the gap, is its cause.
            let by_prune: Vec<String> = pruned
                .iter()
                .filter(|(_, l)| l.first > gap.after && l.first < gap.before)
                .map(|(when, l)| {
                    format!(
                        "deleted by the prune of {} ({} .. {}: {})",
                        crate::units::utc_seconds(*when),
                        l.first,
                        l.last,
                        l.why
                    )
                })
                .collect();
            let pruned = !by_prune.is_empty();
            if pruned {
                gap.cause = by_prune.join("; ");
            }
            GapEntry {
                gap,
                pruned,
                from: coverage.runs.get(i).and_then(|r| r.last_event),
                to: coverage.runs.get(i + 1).and_then(|r| r.first_event),
            }
        })
        .collect();
    let newest = if coverage.log == "WAL" {
        let prefixes = [
            ObjectKind::Wal.source_prefix(source.as_str()),
            ObjectKind::WalSnapshot.source_prefix(source.as_str()),
        ];
        listing
            .iter()
            .filter(|o| prefixes.iter().any(|p| o.key.starts_with(p.as_str())))
            .filter_map(|o| Some((o.last_modified?, &o.key)))
            .filter(|(t, _)| *t <= at)
            .max()
            .map(|(t, key)| (t, key.clone()))
    } else {
        coverage
            .runs
            .iter()
            .filter_map(|r| Some((r.last_event?, &r.last)))
            .filter(|(t, _)| *t <= at)
            .max()
            .map(|(t, last)| (t, last.clone()))
    };
    LogAudit {
        log: coverage.log.to_owned(),
        objects: coverage.runs.iter().map(|r| r.objects).sum(),
        bytes: coverage.runs.iter().map(|r| r.bytes).sum(),
        runs: coverage.runs.clone(),
        gaps,
        newest: newest.map(|(t, object)| NewestLog {
            object,
            at: t,
            age_seconds: (at - t).num_seconds(),
        }),
    }
}

/// The drills of one source (oldest first), newest first, and the last that passed.
fn drills<'a>(records: impl Iterator<Item = &'a DrillRecord>) -> Drills {
    let mut history: Vec<DrillEntry> = records
        .map(|r| DrillEntry {
            started: r.started,
            finished: r.finished,
            point: match r.point.at {
                Some(t) => crate::units::utc_seconds(t),
                None => "latest".into(),
            },
            backup: r.backup.as_ref().map(|b| b.to_string()),
            reached: r.reached,
            restore_seconds: r.restore_seconds,
            check_seconds: r.check_seconds,
            tables: r.tables.len() as u64,
            rows: r.tables.iter().map(|t| t.rows).sum(),
            passed: r.passed,
            failure: r.failure.clone(),
        })
        .collect();
    history.sort_by_key(|b| std::cmp::Reverse(b.finished));
    Drills {
        last_passed: history.iter().find(|d| d.passed).cloned(),
        history,
    }
}

/// The verifies recorded by `at`, newest first, and when every stored byte was last read.
fn verifies(records: &[(String, VerifyRecord)], at: DateTime<Utc>) -> Verifies {
    let mut history: Vec<&VerifyRecord> = records
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.finished <= at)
        .collect();
    history.sort_by_key(|b| std::cmp::Reverse(b.finished));
    let entries: Vec<VerifyEntry> = history.iter().map(|r| verify_entry(r)).collect();
    Verifies {
        newest: entries.first().cloned(),
        last_full_read: last_full_read(&history),
        history: entries,
    }
}

fn verify_entry(r: &VerifyRecord) -> VerifyEntry {
    VerifyEntry {
        started: r.started,
        finished: r.finished,
        read_data: r.read_data.clone(),
        backups: r.backups,
        packs: r.packs,
        packs_read: r.packs_read,
        bytes_read: r.bytes_read,
        log_objects: r.wal_files + r.binlog_segments,
        problems: r.problems.len() as u64,
        first_problems: r
            .problems
            .iter()
            .take(10)
            .map(|p| format!("{}: {}", p.object, p.problem))
            .collect(),
    }
}

/// The newest complete read of every stored byte: a `--read-data` (all) verify, or the newest
/// record of each part `1/T` … `T/T` of one set. `newest_first` is sorted newest first.
fn last_full_read(newest_first: &[&VerifyRecord]) -> Option<FullRead> {
    let mut best: Option<FullRead> = None;
    let mut better = |read: FullRead| {
        if best.as_ref().is_none_or(|b| read.completed > b.completed) {
            best = Some(read);
        }
    };
    if let Some(r) = newest_first
        .iter()
        .find(|r| r.read_data.as_deref() == Some("all"))
    {
        better(FullRead {
            since: r.started,
            completed: r.finished,
            how: "verify --read-data".into(),
        });
    }
    // Per set size T, the newest record of each part.
    let mut parts: HashMap<u32, BTreeMap<u32, &VerifyRecord>> = HashMap::new();
    for r in newest_first {
        let Some((n, total)) = r.read_data.as_deref().and_then(|d| d.split_once('/')) else {
            continue;
        };
        let (Ok(n), Ok(total)) = (n.parse::<u32>(), total.parse::<u32>()) else {
            continue;
        };
        parts.entry(total).or_default().entry(n).or_insert(r);
    }
    for (total, set) in parts {
        if total == 0 || (1..=total).any(|n| !set.contains_key(&n)) {
            continue;
        }
        let since = set.values().map(|r| r.started).min();
        let completed = set.values().map(|r| r.finished).max();
        if let (Some(since), Some(completed)) = (since, completed) {
            better(FullRead {
                since,
                completed,
                how: format!("verify --read-data --subset N/{total}, every part"),
            });
        }
    }
    best
}
