//! Retention on a real file:// repository through the command line: holds, and forget refusing a
//! held backup. (The selection itself is tested on made-up backups in src/retention/.)

mod support;

use support::cli::{stderr, TestRepo};

#[test]
fn a_held_backup_cannot_be_forgotten_until_released_and_list_shows_its_hold() {
    let repo = TestRepo::new();
    for data in [&b"one"[..], b"two"] {
        assert!(repo.backup_stdin("app", data).status.success());
    }
    let ids = repo.ids();
    let said = repo.ok_text(&["hold", &ids[0], "--reason", "legal case 42"]);
    assert!(
        said.contains(&ids[0]) && said.contains("until released"),
        "{said}"
    );
    let listed = repo.ok_text(&["list"]);
    let row = listed.lines().find(|l| l.starts_with(&ids[0])).unwrap();
    assert!(row.contains("[held: legal case 42]"), "{listed}");
    let json: serde_json::Value = serde_json::from_str(&repo.ok_text(&["list", "--json"])).unwrap();
    assert_eq!(json[0]["holds"][0]["reason"], "legal case 42", "{json}");
    assert!(json[1]["holds"].as_array().unwrap().is_empty(), "{json}");

    // Held: forget refuses it, naming the hold, and changes nothing.
    let out = repo.run(&["forget", &ids[0]]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("legal case 42"), "{}", stderr(&out));
    assert_eq!(repo.ids().len(), 2);

    // Released: forget works, and the hold stays on record.
    let said = repo.ok_text(&["release", &ids[0]]);
    assert!(said.contains("released hold"), "{said}");
    assert!(!repo.ok_text(&["list"]).contains("[held"));
    repo.ok_text(&["forget", &ids[0]]);
    assert_eq!(repo.ids(), vec![ids[1].clone()]);
    assert_eq!(repo.files_under("holds").len(), 1);
    assert_eq!(repo.files_under("releases").len(), 1);
}

#[test]
fn bad_holds_are_refused_with_what_is_wrong() {
    let repo = TestRepo::new();
    assert!(repo.backup_stdin("app", b"data").status.success());
    let id = repo.ids()[0].clone();
    // A backup that does not exist.
    let out = repo.run(&["hold", "20200101T000000.000Z-00000000", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    // An end in the past, an unreadable end, no reason.
    let out = repo.run(&[
        "hold",
        &id,
        "--reason",
        "x",
        "--until",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not in the future"),
        "{}",
        stderr(&out)
    );
    let out = repo.run(&["hold", &id, "--reason", "x", "--until", "someday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = repo.run(&["hold", &id, "--reason", " "]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Nothing to release.
    let out = repo.run(&["release", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no hold"), "{}", stderr(&out));
    assert!(!repo.path().join("holds").exists());
    // A hold with an end: shown until then, as the list says.
    let said = repo.ok_text(&[
        "hold",
        &id,
        "--reason",
        "audit",
        "--until",
        "2099-01-01 00:00",
        "--tz",
        "Europe/Berlin",
    ]);
    assert!(said.contains("2098-12-31T23:00:00+00:00"), "{said}");
}

fn plan_of(repo: &TestRepo, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["prune", "--dry-run", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&repo.ok_text(&all)).unwrap()
}

#[test]
fn prune_dry_run_shows_what_each_policy_keeps_now_and_later() {
    let repo = TestRepo::new();
    for data in [&b"one"[..], b"two", b"three"] {
        assert!(repo.backup_stdin("app", data).status.success());
    }
    let ids = repo.ids();
    // Now, under the default policy: all three are younger than a day and inside the window.
    let plan = plan_of(&repo, &[]);
    assert_eq!(plan[0]["source"], "app");
    assert_eq!(plan[0]["policy"], "three-year");
    let verdicts = plan[0]["selection"]["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 3);
    for v in verdicts {
        let why: Vec<&str> = v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["why"].as_str().unwrap())
            .collect();
        assert!(
            why.contains(&"min-age") && why.contains(&"in-window"),
            "{v}"
        );
    }
    // Sixty days on, a seven-day policy keeps only the newest.
    let later = (chrono::Utc::now() + chrono::Duration::days(60)).to_rfc3339();
    let plan = plan_of(&repo, &["--policy", "pitr-7-days", "--at", &later]);
    let verdicts = plan[0]["selection"]["verdicts"].as_array().unwrap();
    let kept: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v["reasons"].as_array().unwrap().is_empty())
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [ids[2].as_str()]);
    assert_eq!(
        plan[0]["selection"]["window"]["first_restorable"],
        serde_json::Value::Null
    );
    // A hold keeps its backup in that future too; the text says why.
    repo.ok_text(&["hold", &ids[0], "--reason", "audit 2027"]);
    let text = repo.ok_text(&[
        "prune",
        "--dry-run",
        "--policy",
        "pitr-7-days",
        "--at",
        &later,
    ]);
    let row = text.lines().find(|l| l.contains(&ids[0])).unwrap();
    assert!(
        row.trim_start().starts_with("keep") && row.contains("held (audit 2027)"),
        "{text}"
    );
    assert!(text.contains("2 kept, 1 to delete"), "{text}");
    // Nothing was deleted.
    assert_eq!(repo.ids(), ids);
}

#[test]
fn prune_refuses_what_it_cannot_do_and_names_what_is_wrong() {
    let repo = TestRepo::new();
    assert!(repo.backup_stdin("app", b"data").status.success());
    let out = repo.run(&["prune", "--at", "2030-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--dry-run"), "{}", stderr(&out));
    assert_eq!(repo.ids().len(), 1);
    let out = repo.run(&["prune", "ghost", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ghost"), "{}", stderr(&out));
    let out = repo.run(&["prune", "--dry-run", "--policy", "nonsense"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("three-year"), "{}", stderr(&out));
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("bad-policy.yaml");
    std::fs::write(&file, "name: bad\nkeep: { daily: 3, fortnightly: 1 }\n").unwrap();
    let out = repo.run(&["prune", "--dry-run", "--policy", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("fortnightly"), "{}", stderr(&out));
    let out = repo.run(&["prune", "--dry-run", "--at", "next tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn prune_deletes_what_no_rule_keeps_records_it_and_spares_the_held() {
    let repo = TestRepo::new();
    for data in [&b"one"[..], b"two", b"three", b"four"] {
        assert!(repo.backup_stdin("app", data).status.success());
    }
    let ids = repo.ids();
    repo.ok_text(&["hold", &ids[1], "--reason", "case 7"]);
    let elsewhere = tempfile::tempdir().unwrap();
    let policy = elsewhere.path().join("last-one.yaml");
    std::fs::write(&policy, "name: last-one\nkeep: { last: 1 }\n").unwrap();
    let policy = policy.to_str().unwrap();
    // Under the default policy (everything is younger than a day) nothing goes.
    let said = repo.ok_text(&["prune"]);
    assert!(said.contains("no backup or log to delete"), "{said}");
    assert!(!repo.path().join("prunes").exists());
    // Keeping the newest only: the held one stays too.
    let said = repo.ok_text(&["prune", "--policy", policy]);
    assert!(
        said.contains("deleted 2 backup(s), recorded in prunes/"),
        "{said}"
    );
    assert_eq!(repo.ids(), vec![ids[1].clone(), ids[3].clone()]);
    assert_eq!(repo.ok_text(&["cat", &ids[1]]), "two");
    assert_eq!(repo.ok_text(&["cat", "latest"]), "four");
    assert_eq!(repo.files_under("prunes").len(), 1);
    // The record is sealed: its text names no backup.
    let record = std::fs::read(&repo.files_under("prunes")[0]).unwrap();
    assert!(!String::from_utf8_lossy(&record).contains(&ids[0]));
    // Run again: nothing more, and no new record.
    let said = repo.ok_text(&["prune", "--policy", policy, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert!(report["record"].is_null() && report["deleted"].as_array().unwrap().is_empty());
    assert_eq!(repo.files_under("prunes").len(), 1);
    // verify knows the record for what it is.
    let out = repo.run(&["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not an object"), "{}", stderr(&out));
}

/// A bucket under S3 Object Lock (moto, a default COMPLIANCE retention of a day): the repository
/// is created, backed up to, read, verified, held and pruned on it, and what it wrote is locked.
#[test]
fn every_command_works_on_a_bucket_under_object_lock() {
    let moto = support::start_moto_locked();
    let repo = TestRepo::new();
    let config = repo.config(&format!(
        "repository:\n  url: s3://locked/repo\n  key_file: {}\n  object_lock: {{ mode: compliance, days: 1 }}\n  options:\n    endpoint: http://127.0.0.1:{}\n    region: us-east-1\n    allow_http: true\n    access_key_id: test\n    secret_access_key: test\n",
        repo.key().display(),
        moto.port
    ));
    let run = |args: &[&str]| {
        let out = repo
            .bare()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["init"]);
    let data = support::mixed_data(3 << 20, 5);
    let out = repo
        .bare()
        .arg("--config")
        .arg(&config)
        .args(["backup", "--stdin", "--source", "app", "--json"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "backup: {}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = summary["id"].as_str().unwrap().to_owned();
    let out = repo
        .bare()
        .arg("--config")
        .arg(&config)
        .args(["cat", "latest"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cat: {}", stderr(&out));
    assert!(out.stdout == data, "the bytes read back differ");
    run(&["verify", "--read-data"]);
    run(&["hold", &id, "--reason", "locked bucket"]);
    assert!(run(&["list"]).contains("[held: locked bucket]"));
    run(&["release", &id]);
    run(&["prune", "--dry-run"]);
    run(&["prune"]);
    run(&[
        "key",
        "add",
        "--new-key-file",
        repo.path().join("key2").to_str().unwrap(),
    ]);
    // The WAL archive's objects too: a timeline history pushed and fetched back.
    let wal = tempfile::tempdir().unwrap();
    let history = wal.path().join("00000002.history");
    std::fs::write(&history, "1\t0/3000000\tno recovery target specified\n").unwrap();
    run(&["wal-push", "--source", "pg", history.to_str().unwrap()]);
    let fetched = wal.path().join("fetched");
    run(&[
        "wal-fetch",
        "--source",
        "pg",
        "00000002.history",
        fetched.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&history).unwrap()
    );
    assert_eq!(
        support::moto_lock_mode(moto.port, "repo/wal/pg/00000002.history"),
        "COMPLIANCE"
    );
    // What was written carries the bucket's lock.
    assert_eq!(
        support::moto_lock_mode(moto.port, &format!("repo/backups/{id}")),
        "COMPLIANCE"
    );
    assert_eq!(
        support::moto_lock_mode(moto.port, "repo/heirloom.json"),
        "COMPLIANCE"
    );

    // Prune under the lock: two more backups, and a policy keeping only the newest. The older
    // ones are the policy's to delete, but the bucket locks them for a day: nothing goes, and
    // the plan says until when.
    for n in 1..=2u8 {
        let out = repo
            .bare()
            .arg("--config")
            .arg(&config)
            .args(["backup", "--stdin", "--source", "app"])
            .write_stdin(noise(n, 300_000))
            .output()
            .unwrap();
        assert!(out.status.success(), "backup: {}", stderr(&out));
    }
    let policy = repo.dir.path().join("last-one.yaml");
    std::fs::write(&policy, "name: last-one\nkeep: { last: 1 }\n").unwrap();
    let policy = policy.to_str().unwrap();
    let report: serde_json::Value = serde_json::from_str(&run(&[
        "prune", "--policy", policy, "--grace", "0s", "--json",
    ]))
    .unwrap();
    assert!(report["deleted"].as_array().unwrap().is_empty(), "{report}");
    let locked = report["plans"][0]["locked"].as_array().unwrap();
    assert_eq!(locked.len(), 2, "{report}");
    let until: chrono::DateTime<chrono::Utc> =
        locked[0]["until"].as_str().unwrap().parse().unwrap();
    let ahead = until - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::hours(23) && ahead <= chrono::Duration::days(1),
        "{report}"
    );
    assert_eq!(report["gc"]["packs_deleted"], 0, "{report}");
    let text = run(&["prune", "--dry-run", "--policy", policy]);
    assert!(
        text.contains("but the bucket locks it until") && text.contains("2 of them locked"),
        "{text}"
    );
    assert_eq!(
        run(&["list"]).lines().count(),
        4,
        "three backups and the header"
    );
    // A policy asking for more immutability than the bucket gives is refused, naming both.
    let strict = repo.dir.path().join("strict.yaml");
    std::fs::write(
        &strict,
        "name: strict\nkeep: { last: 1 }\nimmutability: { mode: compliance, days: 30 }\n",
    )
    .unwrap();
    let out = repo
        .bare()
        .arg("--config")
        .arg(&config)
        .args(["prune", "--policy", strict.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("compliance, 30 day(s)")
            && stderr(&out).contains("compliance, 1 day(s)"),
        "{}",
        stderr(&out)
    );
    let text = run(&["prune", "--dry-run", "--policy", strict.to_str().unwrap()]);
    assert!(text.contains("IMMUTABILITY NOT MET"), "{text}");

    // Once the clock has passed the lock (the library's clock, two days on), the prune completes;
    // two days later still, the packs freed go too. moto takes the deletes (a delete marker on a
    // versioned bucket), and what is kept reads back whole.
    let config_value = heirloom_backup::config::Config::load(&config).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (deleted, packs_deleted) = runtime.block_on(async {
        use heirloom_backup::jobs::{self, Clock, JobContext};
        let settings =
            heirloom_backup::config::resolve(&config_value, None, None, |_| None).unwrap();
        let store = heirloom_backup::store::open_store(&settings.url, &settings.options).unwrap();
        let repository =
            heirloom_backup::repo::Repository::open(store, &settings.load_key().unwrap())
                .await
                .unwrap();
        let last_one = heirloom_backup::retention::policy::Policy::named_or_file(policy).unwrap();
        let gc = heirloom_backup::repo::gc::GcOptions {
            grace: chrono::Duration::zero(),
            lock: config_value.repository.object_lock,
            ..Default::default()
        };
        let later = chrono::Utc::now() + chrono::Duration::days(2);
        let ctx =
            JobContext::new(repository.clone(), Default::default()).with_clock(Clock::fixed(later));
        let first = jobs::prune(&ctx, &config_value, None, Some(&last_one), &gc)
            .await
            .unwrap();
        let ctx = JobContext::new(repository, Default::default())
            .with_clock(Clock::fixed(later + chrono::Duration::days(2)));
        let second = jobs::prune(&ctx, &config_value, None, Some(&last_one), &gc)
            .await
            .unwrap();
        (first.deleted.len(), second.gc.packs_deleted)
    });
    assert_eq!(deleted, 2);
    assert!(packs_deleted > 0);
    assert_eq!(run(&["list"]).lines().count(), 2);
    run(&["verify", "--read-data"]);
}

/// Distinct bytes, so that each backup has packs of its own.
fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_collection_marks_first_deletes_after_the_grace_period_and_keeps_what_is_needed() {
    let repo = TestRepo::new();
    let datas: Vec<Vec<u8>> = (1..=3).map(|n| noise(n, 600_000)).collect();
    for data in &datas {
        assert!(repo.backup_stdin("app", data).status.success());
    }
    let packs_before = repo.files_under("data").len();
    let elsewhere = tempfile::tempdir().unwrap();
    let policy = elsewhere.path().join("last-one.yaml");
    std::fs::write(&policy, "name: last-one\nkeep: { last: 1 }\n").unwrap();
    let policy = policy.to_str().unwrap();
    let prune = |grace: &str| -> serde_json::Value {
        let said = repo.ok_text(&["prune", "--policy", policy, "--grace", grace, "--json"]);
        serde_json::from_str(&said).unwrap()
    };
    // Phase one: the two older backups go; their packs are marked, none deleted.
    let first = prune("0s");
    assert_eq!(first["deleted"].as_array().unwrap().len(), 2, "{first}");
    assert!(
        !first["gc"]["plan"]["mark"].as_array().unwrap().is_empty(),
        "{first}"
    );
    assert_eq!(first["gc"]["packs_deleted"], 0, "{first}");
    assert_eq!(repo.files_under("data").len(), packs_before);
    assert_eq!(repo.files_under("marks").len(), 1);
    // Inside the grace period nothing goes.
    let waiting = prune("1h");
    assert_eq!(waiting["gc"]["packs_deleted"], 0, "{waiting}");
    assert!(!waiting["gc"]["plan"]["waiting"]
        .as_array()
        .unwrap()
        .is_empty());
    // Phase two: past it, the marked packs go, and their marks.
    let second = prune("0s");
    let deleted = second["gc"]["packs_deleted"].as_u64().unwrap() as usize;
    assert!(deleted > 0, "{second}");
    assert_eq!(repo.files_under("data").len(), packs_before - deleted);
    assert!(repo.files_under("marks").is_empty());
    // What is kept reads back whole, and the repository checks clean.
    let out = repo.run(&["cat", "latest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, datas[2]);
    let out = repo.run(&["verify", "--read-data"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    // The deletion is recorded.
    let records = repo.files_under("prunes");
    assert_eq!(records.len(), 2, "one for the backups, one for the packs");
}
