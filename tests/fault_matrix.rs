//! The fault matrix of docs/RELIABILITY.md: each command that writes or reads the repository, run
//! against each fault the store wrapper injects (`store::faults`), the fault placed at every call
//! of its kind the command makes (or at up to `POSITIONS` of them, spread from the first to the
//! last). Every run ends in one of the outcomes the document names, or the test fails:
//!
//! - `ok`: it succeeded and what it claims is so (a backup restores byte for byte, a restore wrote
//!   exactly the backup, a key opens the repository, ...), and it stored what a run without the
//!   fault stores;
//! - `failed, nothing changed`: it failed with an error naming the object or call the fault hit,
//!   and the repository holds what it held before;
//! - `failed, done whole`: it failed naming the fault, but its work had all arrived (a put whose
//!   answer was lost): the repository is what a successful run leaves;
//! - `failed, part done`: for the commands that are steps by design (prune), it failed naming the
//!   fault after some of its steps, each of which is sound.
//!
//! After every run, whatever its outcome: `verify --read-data` of the repository is clean, every
//! backup in it restores byte for byte, and the command run again without the fault succeeds.
//! Anything else is a defect. With `HEIRLOOM_BLESS=1` the test writes the table into
//! docs/RELIABILITY.md; without, it fails when the document's table differs from what it found.

#[path = "fault_matrix/engines.rs"]
mod engines;
mod support;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use heirloom_backup::config::Config;
use heirloom_backup::engine::postgres::wal::{wal_fetch, wal_push};
use heirloom_backup::jobs::{self, AuditRequest, Clock, JobContext};
use heirloom_backup::pipeline::backup::backup_stream;
use heirloom_backup::pipeline::verify::Subset;
use heirloom_backup::progress::Progress;
use heirloom_backup::repo::gc::GcOptions;
use heirloom_backup::repo::keys::KeySource;
use heirloom_backup::repo::manifest::BackupId;
use heirloom_backup::repo::Repository;
use heirloom_backup::retention::policy::Policy;
use heirloom_backup::store::deadline::DeadlineBackend;
use heirloom_backup::store::faults::{CallCounts, FaultPlan, FaultyBackend};
use heirloom_backup::store::{Backend, LocalBackend, Store};
use support::repo::{options, restore, small_params, test_key};
use support::synthetic_wal::{push_segment, segment_bytes, segment_name};
use support::{copy_tree, mixed_data};

/// At most this many places per cell where the fault is put.
const POSITIONS: u64 = 4;
/// The deadline every store call has in the matrix (`retry_timeout`), and how long a stalled call
/// waits: far past it.
const DEADLINE: Duration = Duration::from_millis(800);
const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    FailPut,
    FailGet,
    FailList,
    FailDelete,
    Stall,
    Truncate,
    LostAnswer,
    DuplicatePut,
    ListLag,
}

const FAULTS: [Fault; 9] = [
    Fault::FailPut,
    Fault::FailGet,
    Fault::FailList,
    Fault::FailDelete,
    Fault::Stall,
    Fault::Truncate,
    Fault::LostAnswer,
    Fault::DuplicatePut,
    Fault::ListLag,
];

impl Fault {
    fn title(self) -> &'static str {
        match self {
            Fault::FailPut => "put fails",
            Fault::FailGet => "get fails",
            Fault::FailList => "list fails",
            Fault::FailDelete => "delete fails",
            Fault::Stall => "call stalls past the deadline",
            Fault::Truncate => "read cut short",
            Fault::LostAnswer => "put stored, reported failed",
            Fault::DuplicatePut => "put delivered twice",
            Fault::ListLag => "list misses recent puts",
        }
    }

    /// How many places a run making `calls` offers this fault.
    fn places(self, calls: CallCounts) -> u64 {
        match self {
            Fault::FailPut | Fault::LostAnswer | Fault::DuplicatePut => calls.puts,
            Fault::FailGet | Fault::Truncate => calls.gets,
            Fault::FailList => calls.lists,
            Fault::FailDelete => calls.deletes,
            Fault::Stall => calls.calls,
            // Listings hide the last 1, 2, ... objects the command created.
            Fault::ListLag => calls.puts.min(3),
        }
    }

    fn plan(self, n: u64) -> FaultPlan {
        let mut plan = FaultPlan::default();
        match self {
            Fault::FailPut => plan.fail_nth_put = Some(n),
            Fault::FailGet => plan.fail_nth_get = Some(n),
            Fault::FailList => plan.fail_nth_list = Some(n),
            Fault::FailDelete => plan.fail_nth_delete = Some(n),
            Fault::Stall => plan.stall_nth_call = Some((n, STALL)),
            Fault::Truncate => plan.truncate_nth_get = Some(n),
            Fault::LostAnswer => plan.lose_answer_of_nth_put = Some(n),
            Fault::DuplicatePut => plan.duplicate_nth_put = Some(n),
            Fault::ListLag => plan.list_lags_puts = Some(n as usize),
        }
        plan
    }
}

/// The places tried among `count`: all of them when few, else the first, the last and evenly
/// between.
fn positions(count: u64) -> Vec<u64> {
    if count <= POSITIONS {
        return (1..=count).collect();
    }
    let mut out: Vec<u64> = (0..POSITIONS)
        .map(|i| 1 + i * (count - 1) / (POSITIONS - 1))
        .collect();
    out.dedup();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Command {
    Init,
    KeyAdd,
    KeyRemove,
    Backup,
    Restore,
    Verify,
    Hold,
    Forget,
    Prune,
    Gc,
    Audit,
    WalPush,
    WalFetch,
    BackupMariadb,
    BackupPgLogical,
}

const COMMANDS: [Command; 15] = [
    Command::Init,
    Command::KeyAdd,
    Command::KeyRemove,
    Command::Backup,
    Command::Restore,
    Command::Verify,
    Command::Hold,
    Command::Forget,
    Command::Prune,
    Command::Gc,
    Command::Audit,
    Command::WalPush,
    Command::WalFetch,
    Command::BackupMariadb,
    Command::BackupPgLogical,
];

impl Command {
    fn title(self) -> &'static str {
        match self {
            Command::Init => "init",
            Command::KeyAdd => "key add",
            Command::KeyRemove => "key remove",
            Command::Backup => "backup (stdin)",
            Command::Restore => "restore",
            Command::Verify => "verify --read-data",
            Command::Hold => "hold",
            Command::Forget => "forget",
            Command::Prune => "prune (forget, mark)",
            Command::Gc => "prune (gc: delete marked)",
            Command::Audit => "audit",
            Command::WalPush => "wal-push",
            Command::WalFetch => "wal-fetch",
            Command::BackupMariadb => "backup (MariaDB dump)",
            Command::BackupPgLogical => "backup (PostgreSQL logical)",
        }
    }

    /// The repository it starts from.
    fn template(self, world: &World) -> Option<&Path> {
        match self {
            Command::Init => None,
            Command::Gc => Some(&world.marked),
            _ => Some(&world.full),
        }
    }

    /// When it runs.
    fn now(self, world: &World) -> DateTime<Utc> {
        match self {
            Command::Prune => world.t0 + chrono::Duration::days(2),
            Command::Gc => world.t0 + chrono::Duration::days(4),
            _ => world.t0,
        }
    }

    /// Whether it is a sequence of steps, each sound alone, that a run again finishes.
    fn resumable(self) -> bool {
        matches!(self, Command::Prune | Command::Gc | Command::Init)
    }
}

/// The repositories the cells start from, made once.
struct World {
    _dir: tempfile::TempDir,
    /// Backups A (older) and B of source `app`, two keys (the test key and `second`), and WAL
    /// segments 1 and 2 of source `pg`.
    full: PathBuf,
    /// `full` after a prune that keeps B: A forgotten, its packs marked.
    marked: PathBuf,
    second_key_id: String,
    a: BackupId,
    b: BackupId,
    data_a: Vec<u8>,
    data_b: Vec<u8>,
    /// What a backup in a cell stores.
    data_c: Vec<u8>,
    t0: DateTime<Utc>,
    config: Config,
    /// The database servers the database rows back up.
    db: engines::Databases,
}

fn second_key() -> KeySource {
    KeySource::KeyFile {
        path: "second-key".into(),
        key: zeroize::Zeroizing::new([7u8; 32]),
    }
}

fn last_one() -> Policy {
    Policy::parse("name: last-one\nkeep: { last: 1 }\n", "last-one.yaml").unwrap()
}

fn gc_options() -> GcOptions {
    GcOptions {
        grace: chrono::Duration::hours(1),
        ..Default::default()
    }
}

fn local(root: &Path) -> Arc<dyn Backend> {
    Arc::new(LocalBackend::new(root.to_path_buf()))
}

async fn healthy(root: &Path) -> Repository {
    Repository::open(Store::new(local(root)), &test_key())
        .await
        .unwrap()
}

async fn backup_at(repo: &Repository, data: &[u8], at: DateTime<Utc>) -> BackupId {
    backup_stream(
        repo,
        Cursor::new(data.to_vec()),
        &options("app"),
        Progress::none(),
        at,
    )
    .await
    .unwrap()
    .id
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        let marked = dir.path().join("marked");
        let t0 = Utc::now();
        let repo = Repository::init(
            Store::new(local(&full)),
            &test_key(),
            &small_params(),
            t0 - chrono::Duration::hours(3),
        )
        .await
        .unwrap();
        let second_key_id = repo
            .add_key(&second_key(), t0 - chrono::Duration::hours(3))
            .await
            .unwrap();
        let (data_a, data_b, data_c) = (
            mixed_data(1536 * 1024, 11),
            mixed_data(1536 * 1024, 12),
            mixed_data(1536 * 1024, 13),
        );
        let a = backup_at(&repo, &data_a, t0 - chrono::Duration::hours(2)).await;
        let b = backup_at(&repo, &data_b, t0 - chrono::Duration::hours(1)).await;
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        for n in [1, 2] {
            push_segment(&repo, "pg", &spool, n).await;
        }
        let config = Config::parse(
            &support::config_text(&full, Path::new("/nonexistent-key"), ""),
            "heirloom.yaml",
        )
        .unwrap();
        copy_tree(&full, &marked);
        let ctx = JobContext::new(healthy(&marked).await, Default::default())
            .with_clock(Clock::fixed(t0 + chrono::Duration::days(2)));
        let report = jobs::prune(&ctx, &config, None, Some(&last_one()), &gc_options())
            .await
            .unwrap();
        assert_eq!(report.deleted.len(), 1, "the template prune forgets A");
        let db = engines::Databases::start(&full).await;
        Self {
            _dir: dir,
            full,
            marked,
            second_key_id,
            a,
            b,
            data_a,
            data_b,
            data_c,
            t0,
            config,
            db,
        }
    }

    /// The bytes a backup of the world holds.
    fn data_of(&self, id: &BackupId, extra: Option<&(BackupId, Vec<u8>)>) -> Option<Vec<u8>> {
        if id == &self.a {
            Some(self.data_a.clone())
        } else if id == &self.b {
            Some(self.data_b.clone())
        } else {
            extra.filter(|(x, _)| x == id).map(|(_, d)| d.clone())
        }
    }
}

/// What a repository holds, by kind of object: the top folder's name and how many objects are
/// under it (leases, which expire, and verify records, which readers write, left out).
fn contents(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for path in support::files_under(root) {
        let rel = path.strip_prefix(root).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let name = path.file_name().unwrap().to_string_lossy();
        if top == "locks" || top == "verifies" || name.starts_with('.') {
            continue;
        }
        *out.entry(top.into_owned()).or_default() += 1;
    }
    out
}

/// `contents` without one kind.
fn without(contents: &BTreeMap<String, usize>, kind: &str) -> BTreeMap<String, usize> {
    let mut out = contents.clone();
    out.remove(kind);
    out
}

/// What commits: everything but packs and index files, which nothing uses until a manifest (or
/// a key, a hold, a record) names them.
fn committed(contents: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    without(&without(contents, "data"), "index")
}

/// Whether `after` holds at least as many of each kind as `before`.
fn only_added(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> bool {
    before
        .iter()
        .all(|(kind, n)| after.get(kind).copied().unwrap_or(0) >= *n)
}

/// What a run claimed, to be checked against the repository afterwards.
#[derive(Debug)]
enum Claim {
    Opened,
    KeyAdded,
    KeyRemoved,
    BackedUp(BackupId),
    Restored(Vec<u8>),
    Verified,
    Held,
    Forgot,
    Pruned,
    Audited { passed: bool, failed: Vec<String> },
    WalPushed,
    WalFetched(Vec<u8>),
}

/// Runs `command` on the repository at `root` through `store`, at `now`.
async fn run(
    world: &World,
    command: Command,
    root: &Path,
    store: Store,
    now: DateTime<Utc>,
) -> Result<Claim, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    if command == Command::Init {
        Repository::init(store, &test_key(), &small_params(), now)
            .await
            .map_err(|x| e(&x))?;
        return Ok(Claim::Opened);
    }
    let repo = Repository::open(store, &test_key())
        .await
        .map_err(|x| e(&x))?;
    let ctx = JobContext::new(repo.clone(), Default::default()).with_clock(Clock::fixed(now));
    match command {
        Command::Init => unreachable!(),
        Command::KeyAdd => {
            let source = KeySource::KeyFile {
                path: "third-key".into(),
                key: zeroize::Zeroizing::new([9u8; 32]),
            };
            repo.add_key(&source, now).await.map_err(|x| e(&x))?;
            Ok(Claim::KeyAdded)
        }
        Command::KeyRemove => {
            repo.remove_key(&world.second_key_id)
                .await
                .map_err(|x| e(&x))?;
            Ok(Claim::KeyRemoved)
        }
        Command::BackupMariadb => world.db.backup(&ctx, "notes").await.map(Claim::BackedUp),
        Command::BackupPgLogical => world.db.backup(&ctx, "pgl").await.map(Claim::BackedUp),
        Command::Backup => {
            let summary = backup_stream(
                &repo,
                Cursor::new(world.data_c.clone()),
                &options("app"),
                Progress::none(),
                now,
            )
            .await
            .map_err(|x| e(&x))?;
            Ok(Claim::BackedUp(summary.id))
        }
        Command::Restore => restore(&repo, &world.b)
            .await
            .map(Claim::Restored)
            .map_err(|(x, _)| e(&x)),
        Command::Verify => {
            let report = jobs::verify(&ctx, Some(Subset::All))
                .await
                .map_err(|x| e(&x))?;
            if report.ok() {
                Ok(Claim::Verified)
            } else {
                Err(report
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.object, p.problem))
                    .collect::<Vec<_>>()
                    .join("; "))
            }
        }
        Command::Hold => {
            jobs::hold(&ctx, &world.b, "legal", None)
                .await
                .map_err(|x| e(&x))?;
            Ok(Claim::Held)
        }
        Command::Forget => {
            jobs::forget(&ctx, &world.a).await.map_err(|x| e(&x))?;
            Ok(Claim::Forgot)
        }
        Command::Prune | Command::Gc => {
            jobs::prune(&ctx, &world.config, None, Some(&last_one()), &gc_options())
                .await
                .map_err(|x| e(&x))?;
            Ok(Claim::Pruned)
        }
        Command::WalPush => {
            let path = root.with_file_name("spool").join(segment_name(3));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, segment_bytes(3)).unwrap();
            wal_push(&repo, "pg", &path).await.map_err(|x| e(&x))?;
            Ok(Claim::WalPushed)
        }
        Command::WalFetch => {
            let dest = root.with_file_name("fetched").join(segment_name(2));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            wal_fetch(&repo, "pg", &segment_name(2), &dest, 0)
                .await
                .map_err(|x| e(&x))?;
            Ok(Claim::WalFetched(std::fs::read(&dest).unwrap()))
        }
        Command::Audit => {
            let request = AuditRequest {
                source: None,
                policy: Some(last_one()),
                at: None,
                location: Some("matrix".into()),
            };
            let audit = jobs::audit(&ctx, &world.config, &request)
                .await
                .map_err(|x| e(&x))?;
            Ok(Claim::Audited {
                passed: audit.passed,
                failed: audit.failed,
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    OkMarkLeft,
    FailedNothingChanged,
    FailedNothingCommitted,
    FailedIdentityRecorded,
    FailedDoneWhole,
    FailedPartDone,
}

impl Outcome {
    fn title(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::OkMarkLeft => "ok, a settled mark left",
            Outcome::FailedNothingChanged => "failed, nothing changed",
            Outcome::FailedNothingCommitted => "failed, uploads kept",
            Outcome::FailedIdentityRecorded => "failed, source identity recorded",
            Outcome::FailedDoneWhole => "failed, done whole",
            Outcome::FailedPartDone => "failed, part done",
        }
    }
}

/// A fresh copy of the command's starting repository, in `dir`.
fn start(world: &World, command: Command, dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    if let Some(template) = command.template(world) {
        copy_tree(template, &root);
    }
    root
}

/// A run without faults: the calls it makes and what it leaves.
async fn baseline(world: &World, command: Command) -> (CallCounts, BTreeMap<String, usize>, Claim) {
    let dir = tempfile::tempdir().unwrap();
    let root = start(world, command, dir.path());
    let faulty = Arc::new(FaultyBackend::new(local(&root), FaultPlan::default()));
    let claim = run(
        world,
        command,
        &root,
        Store::new(faulty.clone()),
        command.now(world),
    )
    .await
    .unwrap_or_else(|e| panic!("{} without faults failed: {e}", command.title()));
    (faulty.counts(), contents(&root), claim)
}

/// Checks what a repository is after a run: sound, every backup restoring, and the claim true.
async fn check(
    world: &World,
    command: Command,
    root: &Path,
    claim: Option<&Claim>,
) -> Result<(), String> {
    if command == Command::Init && !root.join("heirloom.json").exists() {
        return Ok(());
    }
    let repo = Repository::open(Store::new(local(root)), &test_key())
        .await
        .map_err(|e| format!("the repository no longer opens: {e}"))?;
    let ctx = JobContext::new(repo.clone(), Default::default());
    let report = jobs::verify(&ctx, Some(Subset::All))
        .await
        .map_err(|e| format!("verify failed: {e}"))?;
    if !report.ok() {
        return Err(format!("verify --read-data found {:?}", report.problems));
    }
    let extra = match claim {
        Some(Claim::BackedUp(id)) => Some((id.clone(), world.data_c.clone())),
        _ => None,
    };
    let ids = repo.backup_ids().await.map_err(|e| e.to_string())?;
    for id in &ids {
        let bytes = restore(&repo, id)
            .await
            .map_err(|(e, _)| format!("backup {id} does not restore: {e}"))?;
        // A database backup is judged by its content: a whole dump with the sentinel row.
        if let Some(judged) = engines::judge_dump(&bytes) {
            judged.map_err(|e| format!("backup {id}: {e}"))?;
            continue;
        }
        // A backup the cell's run made without claiming it (its answer was lost) is data C.
        let expected = world
            .data_of(id, extra.as_ref())
            .unwrap_or_else(|| world.data_c.clone());
        if bytes != expected {
            return Err(format!("backup {id} restores to other bytes"));
        }
    }
    if let Some(Claim::BackedUp(id)) = claim {
        if !ids.contains(id) {
            return Err(format!("backup {id} was reported and is not there"));
        }
    }
    match claim {
        Some(Claim::Restored(bytes)) if *bytes != world.data_b => {
            Err("the restore succeeded with other bytes".into())
        }
        Some(Claim::WalFetched(bytes)) if *bytes != segment_bytes(2) => {
            Err("the fetch succeeded with other bytes".into())
        }
        Some(Claim::WalPushed) => {
            let dest = root.with_file_name("check").join(segment_name(3));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            wal_fetch(&repo, "pg", &segment_name(3), &dest, 0)
                .await
                .map_err(|e| format!("the segment pushed does not fetch: {e}"))?;
            match std::fs::read(&dest).unwrap() == segment_bytes(3) {
                true => Ok(()),
                false => Err("the segment pushed fetches as other bytes".into()),
            }
        }
        Some(Claim::KeyAdded) => {
            let source = KeySource::KeyFile {
                path: "third-key".into(),
                key: zeroize::Zeroizing::new([9u8; 32]),
            };
            Repository::open(Store::new(local(root)), &source)
                .await
                .map(|_| ())
                .map_err(|e| format!("the key added does not open the repository: {e}"))
        }
        Some(Claim::KeyRemoved) => {
            match Repository::open(Store::new(local(root)), &second_key()).await {
                Ok(_) => Err("the key removed still opens the repository".into()),
                Err(_) => Ok(()),
            }
        }
        Some(Claim::Held) => {
            let holds = repo.holds().await.map_err(|e| e.to_string())?;
            if holds.iter().any(|h| h.hold.backup == world.b) {
                Ok(())
            } else {
                Err("the hold reported is not there".into())
            }
        }
        _ => Ok(()),
    }
}

/// One run of a cell: the outcome, or the defect.
async fn cell_run(
    world: &World,
    command: Command,
    fault: Fault,
    n: u64,
    base: &(CallCounts, BTreeMap<String, usize>, Claim),
) -> Result<Option<Outcome>, String> {
    let dir = tempfile::tempdir().unwrap();
    let root = start(world, command, dir.path());
    let before = contents(&root);
    let faulty = Arc::new(FaultyBackend::new(local(&root), fault.plan(n)));
    let store = Store::new(Arc::new(DeadlineBackend::new(faulty.clone(), DEADLINE)));
    let now = command.now(world);
    let result = run(world, command, &root, store, now).await;
    if faulty.injected() == 0 {
        // The place was past the calls this run made.
        return Ok(None);
    }
    let after = contents(&root);
    if let (
        Ok(Claim::Audited { passed, failed }),
        Claim::Audited {
            passed: p,
            failed: f,
        },
    ) = (&result, &base.2)
    {
        if (passed, failed) != (p, f) {
            return Err(format!(
                "the audit judged {passed} {failed:?}, and {p} {f:?} without the fault"
            ));
        }
    }
    let outcome = match &result {
        Ok(_) if after == base.1 => Outcome::Ok,
        // A mark whose packs are all gone, whose delete failed: the next prune settles it.
        Ok(_)
            if without(&after, "marks") == without(&base.1, "marks")
                && after.get("marks") > base.1.get("marks") =>
        {
            Outcome::OkMarkLeft
        }
        Ok(claim) => {
            return Err(format!(
            "succeeded ({claim:?}) but left {after:?}, where a run without the fault leaves {:?}",
            base.1
        ))
        }
        Err(error) => {
            let key = faulty.last_fault().unwrap_or_default();
            let leaf = key.rsplit('/').next().unwrap_or_default().to_owned();
            let named = error.contains(&key)
                || (!leaf.is_empty() && error.contains(&leaf))
                || error.contains("injected fault")
                || error.contains("did not finish within");
            if !named {
                return Err(format!("failed without naming {key}: {error}"));
            }
            if after == before {
                Outcome::FailedNothingChanged
            } else if committed(&after) == committed(&before) && only_added(&before, &after) {
                // Packs that arrived, and the index file naming them, stay for the retry to
                // reuse; no backup names them until one commits.
                Outcome::FailedNothingCommitted
            } else if committed(&without(&after, "sources"))
                == committed(&without(&before, "sources"))
                && only_added(&before, &after)
                && after.get("sources") > before.get("sources")
            {
                // A source's first backup records which cluster it is before anything else; the
                // record is true whatever follows, and the run again checks against it.
                Outcome::FailedIdentityRecorded
            } else if after == base.1 {
                Outcome::FailedDoneWhole
            } else if command.resumable() {
                Outcome::FailedPartDone
            } else {
                return Err(format!(
                    "failed ({error}) and left {after:?}: neither what it found ({before:?}) nor what it makes ({:?})",
                    base.1
                ));
            }
        }
    };
    check(world, command, &root, result.as_ref().ok())
        .await
        .map_err(|e| format!("after the run ({result:?}): {e}"))?;
    if outcome == Outcome::OkMarkLeft {
        let later = now + chrono::Duration::hours(1);
        run(world, command, &root, Store::new(local(&root)), later)
            .await
            .map_err(|e| format!("the next prune failed: {e}"))?;
        if contents(&root).get("marks") != base.1.get("marks") {
            return Err("the next prune did not settle the mark left".into());
        }
    } else if outcome != Outcome::Ok {
        // Run again without the fault (past any lease the failed run left): it completes.
        let later = now + chrono::Duration::hours(1);
        let again = run(world, command, &root, Store::new(local(&root)), later).await;
        let again = match (command, again) {
            // A location left initialised by the failed run: it opens with the key.
            (Command::Init, Err(e)) if e.contains("already") => {
                healthy(&root).await;
                Ok(Claim::Opened)
            }
            (_, again) => again,
        };
        let claim = again.map_err(|e| format!("run again without the fault, it failed: {e}"))?;
        check(world, command, &root, Some(&claim))
            .await
            .map_err(|e| format!("after the run again: {e}"))?;
    }
    Ok(Some(outcome))
}

#[derive(Default)]
struct Cell {
    runs: BTreeMap<Outcome, usize>,
    defects: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_survives_every_store_fault_at_every_place() {
    let world = World::new().await;
    let mut cells: BTreeMap<(Command, Fault), Cell> = BTreeMap::new();
    for command in COMMANDS {
        let base = baseline(&world, command).await;
        for fault in FAULTS {
            let cell = cells.entry((command, fault)).or_default();
            for n in positions(fault.places(base.0)) {
                match cell_run(&world, command, fault, n, &base).await {
                    Ok(Some(outcome)) => *cell.runs.entry(outcome).or_default() += 1,
                    Ok(None) => {}
                    Err(defect) => cell.defects.push(format!("at call {n}: {defect}")),
                }
            }
        }
    }
    let table = render(&cells);
    let defects: Vec<String> = cells
        .iter()
        .flat_map(|((c, f), cell)| {
            cell.defects
                .iter()
                .map(move |d| format!("{} / {}: {d}", c.title(), f.title()))
        })
        .collect();
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/RELIABILITY.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let (begin, end) = ("<!-- fault-matrix:begin -->\n", "<!-- fault-matrix:end -->");
    let bless = std::env::var_os("HEIRLOOM_BLESS").is_some();
    if bless {
        let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
            panic!("docs/RELIABILITY.md has no fault-matrix markers");
        };
        let written = format!("{}{begin}{table}{}", &doc[..b], &doc[e..]);
        std::fs::write(&doc_path, written).unwrap();
    }
    assert!(
        defects.is_empty(),
        "defects:\n{}\n\n{table}",
        defects.join("\n")
    );
    let shown = doc
        .find(begin)
        .and_then(|b| {
            doc[b + begin.len()..]
                .find(end)
                .map(|e| &doc[b + begin.len()..b + begin.len() + e])
        })
        .unwrap_or_default();
    assert!(
        bless || shape(shown) == shape(&table),
        "docs/RELIABILITY.md's fault matrix is not what the test found: run it with HEIRLOOM_BLESS=1 and commit the document\n{table}"
    );
}

/// The table, one row per command, one column per fault; each cell the outcomes and their runs.
fn render(cells: &BTreeMap<(Command, Fault), Cell>) -> String {
    let mut out = String::from("| command |");
    for f in FAULTS {
        out.push_str(&format!(" {} |", f.title()));
    }
    out.push_str("\n|---|");
    for _ in FAULTS {
        out.push_str("---|");
    }
    out.push('\n');
    let mut runs = 0;
    for c in COMMANDS {
        out.push_str(&format!("| {} |", c.title()));
        for f in FAULTS {
            let cell = &cells[&(c, f)];
            let mut parts: Vec<String> = cell
                .runs
                .iter()
                .map(|(o, k)| format!("{} ×{k}", o.title()))
                .collect();
            if !cell.defects.is_empty() {
                parts.push(format!("**DEFECT** ×{}", cell.defects.len()));
            }
            runs += cell.runs.values().sum::<usize>() + cell.defects.len();
            if parts.is_empty() {
                parts.push("no such call".into());
            }
            out.push_str(&format!(" {} |", parts.join("<br>")));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} cells, {runs} runs, {} defects.\n",
        COMMANDS.len() * FAULTS.len(),
        cells.values().map(|c| c.defects.len()).sum::<usize>()
    ));
    out
}

/// What of the table must stay as documented: its rows and columns, which cells have no call, and
/// that none is a defect. How many runs a cell has, and their mix of outcomes, can move with the
/// calls a command makes and with timing (which call a stall meets).
fn shape(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.split('|')
                .map(|cell| {
                    let cell = cell.trim();
                    if cell.contains("DEFECT") {
                        "DEFECT".to_owned()
                    } else if cell.contains(" ×") {
                        "runs".to_owned()
                    } else {
                        cell.to_owned()
                    }
                })
                .collect()
        })
        .collect()
}
