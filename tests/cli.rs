//! The command line end to end on file:// repositories: round trips, and every kind of bad input
//! answered with a precise message, the documented exit code, and nothing stored damaged.

mod support;

use std::time::{Duration, Instant};

use assert_cmd::Command;
use support::cli::TestRepo;
use support::{mixed_data, sha256};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn backup_list_show_cat_round_trip() {
    let repo = TestRepo::new();
    let data = mixed_data(9 * 1024 * 1024 + 123, 1);
    let out = repo
        .cmd(&[
            "backup", "--stdin", "--source", "app", "--label", "env=prod", "--json",
        ])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = summary["id"].as_str().unwrap();
    assert_eq!(summary["size"], data.len() as u64);

    let list: serde_json::Value = serde_json::from_slice(&repo.ok(&["list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["labels"]["env"], "prod");
    let other: serde_json::Value =
        serde_json::from_slice(&repo.ok(&["list", "other", "--json"])).unwrap();
    assert!(other.as_array().unwrap().is_empty());

    let show = String::from_utf8(repo.ok(&["show", &id[..12]])).unwrap();
    assert!(
        show.contains(&format!("({} bytes)", data.len())) && show.contains("env=prod"),
        "{show}"
    );

    let back = repo.ok(&["cat", id]);
    assert_eq!(back.len(), data.len());
    assert_eq!(sha256(&back), sha256(&data));
    assert_eq!(sha256(&repo.ok(&["cat", "latest"])), sha256(&data));

    let stats: serde_json::Value = serde_json::from_slice(&repo.ok(&["stats", "--json"])).unwrap();
    assert_eq!(stats["backups"], 1);
    assert_eq!(stats["logical_bytes"], data.len() as u64);
    assert!(
        stats["compression_ratio"].as_f64().unwrap() > 1.2,
        "{stats}"
    );
}

#[test]
fn cat_into_a_closed_pipe_is_a_normal_end() {
    let repo = TestRepo::new();
    repo.backup(&mixed_data(20 * 1024 * 1024, 2));
    let bin = assert_cmd::cargo::cargo_bin("heirloom-backup");
    let script = format!(
        "set -o pipefail; '{}' --repo 'file://{}' --key-file '{}' cat latest | head -c 100 > /dev/null",
        bin.display(),
        repo.path().display(),
        repo.key().display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn wrong_passphrase_and_wrong_key_file_are_refused_and_change_nothing() {
    let repo = TestRepo::empty();
    let init = repo
        .bare()
        .env("HEIRLOOM_PASSPHRASE", "correct horse battery staple")
        .args([
            "--repo",
            &format!("file://{}", repo.path().display()),
            "init",
        ])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let before = repo.snapshot();

    let out = repo
        .bare()
        .env("HEIRLOOM_PASSPHRASE", "wrong horse")
        .args([
            "--repo",
            &format!("file://{}", repo.path().display()),
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no key in") && stderr(&out).contains("opens with the passphrase"),
        "{}",
        stderr(&out)
    );

    support::write_key(&repo.key(), &[9u8; 32]);
    let out = repo.cmd(&["list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("key file"), "{}", stderr(&out));

    support::write_key(&repo.key(), b"not a key");
    let out = repo.cmd(&["list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected 32 raw bytes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repo.snapshot(), before);
}

/// A repository with one backup of several packs' worth of data, and the data.
fn repo_with_backup() -> (TestRepo, Vec<u8>) {
    let repo = TestRepo::empty();
    repo.ok(&[
        "init",
        "--pack-size",
        "2MiB",
        "--chunk-min",
        "64KiB",
        "--chunk-avg",
        "256KiB",
        "--chunk-max",
        "1MiB",
    ]);
    let data = mixed_data(12 * 1024 * 1024, 3);
    repo.backup(&data);
    assert!(repo.files_under("data").len() >= 3);
    (repo, data)
}

#[test]
fn a_flipped_byte_in_a_pack_is_named_and_cat_never_emits_wrong_bytes() {
    let (repo, data) = repo_with_backup();
    let packs = repo.files_under("data");
    let victim = &packs[packs.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(victim, &bytes).unwrap();
    let pack_name = victim.file_name().unwrap().to_str().unwrap();

    let out = repo.cmd(&["verify", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(pack_name), "verify must name the pack: {err}");
    assert!(err.contains("chunk "), "verify must name the chunk: {err}");

    let out = repo.cmd(&["cat", "latest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(pack_name), "{}", stderr(&out));
    assert!(out.stdout.len() < data.len());
    assert!(
        data.starts_with(&out.stdout),
        "cat emitted bytes that are not the backup's"
    );
}

/// Every verify leaves a record in the repository: when, what it read, what it found. A verify
/// that finds damage is recorded too, naming the object.
#[test]
fn each_verify_is_recorded_with_what_it_read_and_found() {
    let (repo, _) = repo_with_backup();
    let said = repo.ok_text(&["verify"]);
    assert!(said.contains("recorded in verifies/"), "{said}");
    let report: serde_json::Value = serde_json::from_str(&repo.ok_text(&[
        "verify",
        "--read-data",
        "--subset",
        "1/2",
        "--json",
    ]))
    .unwrap();
    assert!(
        report["record"].as_str().unwrap().starts_with("verifies/"),
        "{report}"
    );
    let packs = repo.files_under("data");
    let victim = &packs[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(victim, &bytes).unwrap();
    let out = repo.cmd(&["verify", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(repo.files_under("verifies").len(), 3);

    let records = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = heirloom_backup::store::open_store(
            &format!("file://{}", repo.path().display()),
            &Default::default(),
        )
        .unwrap();
        let key = heirloom_backup::repo::keys::KeySource::key_file(
            &repo.key(),
            heirloom_backup::repo::keys::Permissions::Any,
        )
        .unwrap();
        let repository = heirloom_backup::repo::Repository::open(store, &key)
            .await
            .unwrap();
        repository.verify_records().await.unwrap()
    });
    let records: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].read_data, None);
    assert_eq!((records[0].backups, records[0].packs_read), (1, 0));
    assert_eq!(records[1].read_data.as_deref(), Some("1/2"));
    assert!(records[1].packs_read <= records[1].packs);
    assert!(records[0].problems.is_empty() && records[1].problems.is_empty());
    assert_eq!(records[2].read_data.as_deref(), Some("all"));
    assert_eq!(records[2].packs_read, records[2].packs);
    let pack_name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        records[2]
            .problems
            .iter()
            .any(|p| p.object.contains(pack_name)),
        "{:?}",
        records[2].problems
    );
    assert_eq!(records[2].tool_version, env!("CARGO_PKG_VERSION"));
    assert!(records.windows(2).all(|w| w[0].finished <= w[1].finished));
}

#[test]
fn a_truncated_pack_is_named() {
    let (repo, data) = repo_with_backup();
    let packs = repo.files_under("data");
    let victim = &packs[0];
    let len = std::fs::metadata(victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let pack_name = victim.file_name().unwrap().to_str().unwrap();

    let out = repo.cmd(&["verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(pack_name) && stderr(&out).contains("truncated"),
        "{}",
        stderr(&out)
    );

    let out = repo.cmd(&["cat", "latest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(pack_name), "{}", stderr(&out));
    assert!(data.starts_with(&out.stdout));
}

#[test]
fn a_missing_pack_is_named() {
    let (repo, data) = repo_with_backup();
    let packs = repo.files_under("data");
    std::fs::remove_file(&packs[1]).unwrap();
    let pack_name = packs[1].file_name().unwrap().to_str().unwrap();

    let out = repo.cmd(&["verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(pack_name) && stderr(&out).contains("missing"),
        "{}",
        stderr(&out)
    );

    let out = repo.cmd(&["cat", "latest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(pack_name) && stderr(&out).contains("missing"),
        "{}",
        stderr(&out)
    );
    assert!(data.starts_with(&out.stdout));
}

#[test]
fn a_missing_index_is_reported_against_the_backup() {
    let (repo, _) = repo_with_backup();
    for f in repo.files_under("index") {
        std::fs::remove_file(f).unwrap();
    }
    let out = repo.cmd(&["verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("backups/") && err.contains("in no index"),
        "{err}"
    );

    let out = repo.cmd(&["cat", "latest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("in no index"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_newer_repository_format_is_refused() {
    let repo = TestRepo::new();
    let config_path = repo.path().join("heirloom.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["version"] = 4.into();
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let before = repo.snapshot();
    for args in [
        &["list"][..],
        &["backup", "--stdin", "--source", "x"],
        &["verify"],
    ] {
        let out = repo.cmd(args).write_stdin("data").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("repository format 4 is newer than this heirloom-backup reads"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(repo.snapshot(), before);
}

#[test]
fn an_unreachable_store_fails_within_a_bounded_time() {
    let repo = TestRepo::empty();
    support::write_key(&repo.key(), &[1u8; 32]);
    let port = support::free_port(); // nothing listens there
    std::fs::write(
        repo.dir.path().join("heirloom.yaml"),
        format!(
            "repository:\n  url: s3://bucket/prefix\n  key_file: {}\n  options:\n    endpoint: http://127.0.0.1:{port}\n    region: us-east-1\n    allow_http: true\n    access_key_id: x\n    secret_access_key: y\n    retry_timeout: 3s\n    connect_timeout: 1s\n",
            repo.key().display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = repo.bare().arg("list").output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let err = stderr(&out);
    assert!(
        err.contains("s3://bucket/prefix") && err.contains("heirloom.json"),
        "{err}"
    );
}

#[test]
fn bad_config_keys_and_values_name_the_field() {
    let repo = TestRepo::empty();
    let cases = [
        (
            "repository:\n  url: file:///tmp/x\n  colour: blue\n",
            "colour",
        ),
        ("repository:\n  url: ftp://host/x\n", "repository.url"),
        (
            "sources:\n  db: { kind: oracle, url: 'oracle://x' }\n",
            "sources.db.kind",
        ),
        (
            "sources:\n  db: { kind: postgres, url: 'mysql://x' }\n",
            "sources.db.url",
        ),
        (
            "repository:\n  url: s3://b/p\n  options: { endpont: http://x }\n",
            "endpont",
        ),
    ];
    for (yaml, field) in cases {
        std::fs::write(repo.dir.path().join("heirloom.yaml"), yaml).unwrap();
        let out = repo
            .bare()
            .args(["--key-file", "/nonexistent", "list"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{yaml}: {}", stderr(&out));
        assert!(stderr(&out).contains(field), "{yaml}: {}", stderr(&out));
    }
    let out = repo
        .bare()
        .args(["--config", "/nonexistent.yaml", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keys_are_added_listed_and_removed_but_never_the_last() {
    let repo = TestRepo::new();
    let data = b"a small backup".to_vec();
    let id = repo.backup(&data);
    let second = repo.dir.path().join("second.key");
    let added: serde_json::Value = serde_json::from_slice(&repo.ok(&[
        "key",
        "add",
        "--new-key-file",
        second.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let new_id = added["id"].as_str().unwrap().to_owned();
    let keys: serde_json::Value =
        serde_json::from_slice(&repo.ok(&["key", "list", "--json"])).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let first_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The new key reads the same data; then the first key is removed.
    let mut with_second = repo.bare();
    with_second.args([
        "--repo",
        &format!("file://{}", repo.path().display()),
        "--key-file",
        second.to_str().unwrap(),
    ]);
    let out = with_second
        .args(["key", "remove", &first_id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = repo
        .bare()
        .args([
            "--repo",
            &format!("file://{}", repo.path().display()),
            "--key-file",
            second.to_str().unwrap(),
            "cat",
            &id,
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, data);
    // The old key no longer opens it, and the last key cannot be removed.
    assert_eq!(repo.cmd(&["list"]).output().unwrap().status.code(), Some(1));
    let out = repo
        .bare()
        .args([
            "--repo",
            &format!("file://{}", repo.path().display()),
            "--key-file",
            second.to_str().unwrap(),
            "key",
            "remove",
            &new_id,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("last key"), "{}", stderr(&out));
}

#[test]
fn init_refuses_an_existing_repository_and_bad_parameters() {
    let repo = TestRepo::new();
    let before = repo.snapshot();
    let out = repo.cmd(&["init"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(repo.snapshot(), before);

    let fresh = TestRepo::empty();
    let out = fresh
        .cmd(&["init", "--chunk-max", "32MiB"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chunk-max"), "{}", stderr(&out));
}

#[test]
fn the_stream_demo_reads_back_what_it_backed_up() {
    let out = Command::cargo_bin("heirloom-backup")
        .unwrap()
        .args(["demo", "--stream", "--size-mib", "16"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", stderr(&out));
    assert!(
        stdout.contains("SHA-256 identical to the originals"),
        "{stdout}"
    );
    assert!(stdout.contains("verified every stored byte"), "{stdout}");
}

#[test]
fn schedule_prints_the_next_runs_in_the_zone_and_in_utc_across_a_dst_change() {
    let repo = TestRepo::empty();
    let config = repo.config(
        "sources:\n  a:\n    kind: postgres\n    url: 'postgres://x'\n    schedules:\n      zone: Europe/Berlin\n      backup: '30 2 * * *'\n      prune: { cron: '0 4 * * *', jitter: 30m }\n",
    );
    let out = repo
        .bare()
        .args(["--config", config.to_str().unwrap()])
        .args([
            "schedule",
            "--from",
            "2026-03-28T12:00:00Z",
            "-n",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::cli::stderr(&out));
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backup = &jobs[0];
    assert_eq!(
        (backup["source"].as_str(), backup["job"].as_str()),
        (Some("a"), Some("backup"))
    );
    // 02:30 does not exist on 29 March in Berlin: the run is at 03:00 CEST, once.
    let runs: Vec<&str> = backup["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["at"].as_str().unwrap())
        .collect();
    assert_eq!(runs, ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]);
    assert_eq!(backup["runs"][1]["local"], "2026-03-30T02:30:00+02:00");
    let prune = &jobs[1];
    let offset = prune["offset_seconds"].as_i64().unwrap();
    assert!((0..1800).contains(&offset), "{prune}");
    let first: chrono::DateTime<chrono::Utc> =
        prune["runs"][0]["at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        first,
        "2026-03-29T02:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            + chrono::Duration::seconds(offset)
    );
    // The text form says the same.
    let text = repo
        .bare()
        .args(["--config", config.to_str().unwrap()])
        .args(["schedule", "a", "--from", "2026-03-28T12:00:00Z", "-n", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("a backup: \"30 2 * * *\" in Europe/Berlin"),
        "{text}"
    );
    assert!(
        text.contains("2026-03-29T03:00:00+02:00  (2026-03-29T01:00:00Z)"),
        "{text}"
    );
    // An unknown source is a usage error.
    let out = repo
        .bare()
        .args(["--config", config.to_str().unwrap()])
        .args(["schedule", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_source_whose_url_names_a_variable_not_set_here_fails_alone_naming_it() {
    let repo = TestRepo::new();
    let config = repo.config(
        "sources:\n  db: { kind: postgres, url: 'postgres://u:${HEIRLOOM_TEST_UNSET_PW}@db/app' }\ntargets:\n  staging: { kind: postgres, url: 'postgres://u:${HEIRLOOM_TEST_UNSET_STAGING}@staging/app' }\n",
    );
    let with_config = |args: &[&str]| {
        let mut cmd = repo.cmd(&["--config", config.to_str().unwrap()]);
        cmd.args(args);
        cmd.env_remove("HEIRLOOM_TEST_UNSET_PW")
            .env_remove("HEIRLOOM_TEST_UNSET_STAGING")
            .output()
            .unwrap()
    };
    let out = with_config(&["backup", "db"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("sources.db.url: the environment variable HEIRLOOM_TEST_UNSET_PW is not set"),
        "{}",
        stderr(&out)
    );
    // Everything else works.
    let mut cmd = repo.cmd(&["--config", config.to_str().unwrap()]);
    let out = cmd
        .args(["backup", "--stdin", "--source", "app"])
        .write_stdin(vec![7u8; 1000])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(with_config(&["list"]).status.success());
    let out = with_config(&["restore", "app", "--to", "staging", "--latest"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("targets.staging.url")
            && stderr(&out).contains("HEIRLOOM_TEST_UNSET_STAGING"),
        "{}",
        stderr(&out)
    );
}
