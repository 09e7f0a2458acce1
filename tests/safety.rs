//! The safety defects a hostile tester found, each proven fixed end to end: failed producers never
//! become backups, `latest` means the newest, names cannot leave their folder, secrets stay out of
//! messages, a silent store cannot stall a command past its bound, and the small ones.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::cli::{snapshot_of, stderr, TestRepo};

// 1. Failed producers.

#[test]
fn a_producer_that_fails_is_never_recorded() {
    let repo = TestRepo::new();
    let before = snapshot_of(&repo.path());
    let cases: [(&[&str], &str); 3] = [
        (&["false"], "exit status: 1"),
        (
            &[
                "sh",
                "-c",
                "head -c 10485760 /dev/urandom; echo 'pg_dump: error: connection lost' >&2; kill -9 $$",
            ],
            "signal: 9",
        ),
        (
            &["sh", "-c", "echo partial; echo 'out of disk' >&2; exit 3"],
            "out of disk",
        ),
    ];
    for (producer, says) in cases {
        let mut args = vec!["backup", "--source", "x", "--"];
        args.extend_from_slice(producer);
        let out = repo.run(&args);
        assert_eq!(out.status.code(), Some(1), "{producer:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(says),
            "{producer:?}: {}",
            stderr(&out)
        );
        assert!(repo.ids().is_empty(), "{producer:?} was recorded");
    }
    // Packs of the killed producer's 10 MiB may stay (garbage collection's job); no manifest does.
    let after = snapshot_of(&repo.path());
    assert!(
        after.keys().all(|k| !k.starts_with("backups/")),
        "{after:?}"
    );
    assert_eq!(
        before.keys().filter(|k| k.starts_with("backups/")).count(),
        0
    );
}

#[test]
fn a_producer_that_succeeds_is_recorded_and_its_stderr_passes_through() {
    let repo = TestRepo::new();
    let out = repo.run(&[
        "backup",
        "--source",
        "app",
        "--json",
        "--",
        "sh",
        "-c",
        "printf 'CREATE TABLE notes;'; echo 'dumping notes' >&2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("dumping notes"), "{}", stderr(&out));
    assert_eq!(repo.ok_text(&["cat", "latest"]), "CREATE TABLE notes;");
    // The producer does not see the repository's passphrase.
    let out = repo
        .cmd(&[
            "backup",
            "--source",
            "app",
            "--",
            "sh",
            "-c",
            "echo \"[$HEIRLOOM_PASSPHRASE]\"",
        ])
        .env("HEIRLOOM_PASSPHRASE", "not-for-the-producer")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(repo.ok_text(&["cat", "latest"]), "[]\n");
}

#[test]
fn an_empty_stdin_is_refused_unless_allowed() {
    let repo = TestRepo::new();
    let out = repo.backup_stdin("x", b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("empty") && stderr(&out).contains("-- COMMAND"),
        "{}",
        stderr(&out)
    );
    assert!(repo.ids().is_empty());
    let out = repo
        .cmd(&["backup", "--stdin", "--source", "x", "--allow-empty"])
        .write_stdin(Vec::new())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(repo.ids().len(), 1);
    // A command with empty output is refused the same way.
    let out = repo.run(&["backup", "--source", "x", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(repo.ids().len(), 1);
}

#[test]
fn forget_removes_exactly_one_backup_named_by_its_whole_id() {
    let repo = TestRepo::new();
    for data in [&b"one"[..], b"two"] {
        assert!(repo.backup_stdin("app", data).status.success());
    }
    let ids = repo.ids();
    assert_eq!(ids.len(), 2);
    // A prefix or `latest` is not enough for a deletion.
    for vague in [&ids[0][..10], "latest"] {
        let out = repo.run(&["forget", vague]);
        assert_eq!(out.status.code(), Some(2), "{vague}: {}", stderr(&out));
    }
    let out = repo.run(&["forget", "20200101T000000.000Z-00000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let said = repo.ok_text(&["forget", &ids[0]]);
    assert!(said.contains(&ids[0]), "{said}");
    assert_eq!(repo.ids(), vec![ids[1].clone()]);
    assert_eq!(repo.ok_text(&["cat", "latest"]), "two");
    let out = repo.run(&["cat", &ids[0]]);
    assert_eq!(out.status.code(), Some(1));
}

// 2. `latest`.

#[test]
fn latest_is_the_newest_backup_even_within_one_second_and_per_source() {
    let repo = TestRepo::new();
    for round in 0..6 {
        for i in 1..=3 {
            let data = format!("s-{round}-{i}");
            assert!(repo.backup_stdin("s", data.as_bytes()).status.success());
            let other = format!("t-{round}-{i}");
            if i == 2 {
                assert!(repo.backup_stdin("t", other.as_bytes()).status.success());
            }
        }
        assert_eq!(repo.ok_text(&["cat", "latest"]), format!("s-{round}-3"));
        assert_eq!(
            repo.ok_text(&["cat", "latest", "--source", "t"]),
            format!("t-{round}-2")
        );
        assert_eq!(
            repo.ok_text(&["cat", "latest", "--source", "s"]),
            format!("s-{round}-3")
        );
    }
    let shown = repo.ok_text(&["show", "latest", "--source", "t", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["source"], "t");
    // Ids carry milliseconds.
    let id = shown["id"].as_str().unwrap();
    assert_eq!(id.len(), 29, "{id}");
    assert_eq!(&id[15..16], ".");
    // Another source's id is refused when a source is named.
    let out = repo.run(&["cat", id, "--source", "s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("of source t"), "{}", stderr(&out));
    // `list` shows them oldest first by time.
    let listed = repo.ids();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

// 4. Passwords in messages.

#[test]
fn passwords_never_appear_in_errors() {
    let repo = TestRepo::new();
    let secret = "S3cr3t-never-shown";
    let port = support::free_port(); // nothing listens there
    let cases = [
        format!("postgres://bk:{secret}@127.0.0.1:{port}/db"),
        format!("postgres://bk@127.0.0.1:{port}/db?password={secret}"),
        format!("mysql://root:{secret}@127.0.0.1:{port}/notes"),
        format!("postgres://bk:{secret}@127.0.0.1:notaport/db"),
    ];
    for url in cases {
        let kind = if url.starts_with("mysql") {
            "mysql"
        } else {
            "postgres"
        };
        let config = repo.config(&format!(
            "repository:\n  url: file://{}\n  key_file: {}\nsources:\n  db: {{ kind: {kind}, url: \"{url}\" }}\n",
            repo.path().display(),
            repo.key().display()
        ));
        let out = repo
            .bare()
            .arg("--config")
            .arg(&config)
            .args(["-vv", "backup", "db"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
        assert!(!text.contains(secret), "{url}: {text}");
        assert!(
            text.contains("***") || text.contains("127.0.0.1"),
            "{url}: {text}"
        );
    }
}

// 7. Names that could leave their folder.

#[test]
fn every_command_that_takes_a_source_refuses_a_path_in_its_name() {
    let repo = TestRepo::new();
    let seg = repo.dir.path().join("000000010000000000000001");
    std::fs::write(&seg, vec![0u8; 8192]).unwrap();
    let seg = seg.to_str().unwrap().to_owned();
    let dest = repo.dir.path().join("out").to_str().unwrap().to_owned();
    let escaped = "../../escaped";
    let commands: Vec<Vec<&str>> = vec![
        vec!["backup", "--stdin", "--source", escaped],
        vec!["backup", "--source", escaped, "--", "echo", "x"],
        vec!["backup", escaped],
        vec!["wal-push", "--source", escaped, &seg],
        vec![
            "wal-fetch",
            "--source",
            escaped,
            "000000010000000000000001",
            &dest,
        ],
        vec!["stream", escaped],
        vec!["binlog-push", escaped, "--dir", "/tmp"],
        vec!["binlog-fetch", escaped, "mysql-bin.000001", &dest],
        vec!["restore", escaped, "--to", &dest, "--latest"],
        vec!["list", escaped],
        vec!["cat", "latest", "--source", escaped],
        vec!["show", "latest", "--source", escaped],
    ];
    for args in &commands {
        for name in [escaped, "a/b", ".hidden", ""] {
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == escaped { name } else { a })
                .collect();
            let out = repo
                .cmd(&args)
                .write_stdin(b"data".to_vec())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("not a valid source name")
                    && stderr(&out).contains("not starting with '.'"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
    // Nothing was written anywhere: not in the repository, not beside it, not above it.
    assert!(repo.ids().is_empty());
    for place in [
        repo.path().join("escaped"),
        repo.dir.path().join("escaped"),
        repo.dir.path().parent().unwrap().join("escaped"),
    ] {
        assert!(!place.exists(), "{} was created", place.display());
    }
    // A config source name is held to the same rule when the config loads.
    let config = repo.config(&format!(
        "repository:\n  url: file://{}\nsources:\n  \"../x\": {{ kind: postgres, url: \"postgres://h/db\" }}\n",
        repo.path().display()
    ));
    let out = repo
        .bare()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("sources"), "{}", stderr(&out));
}

// 8. A store that accepts connections and never answers.

#[test]
fn a_silent_store_ends_every_command_within_its_retry_timeout() {
    let repo = TestRepo::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept, hold every connection open, never answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let config = repo.config(&format!(
        "repository:\n  url: s3://bucket/prefix\n  key_file: {}\n  options:\n    endpoint: http://127.0.0.1:{port}\n    region: us-east-1\n    allow_http: true\n    access_key_id: x\n    secret_access_key: y\n    retry_timeout: 3s\n",
        repo.key().display()
    ));
    let seg = repo.dir.path().join("000000010000000000000001");
    std::fs::write(&seg, vec![0u8; 8192]).unwrap();
    for args in [
        vec!["list"],
        vec!["wal-push", "--source", "db", seg.to_str().unwrap()],
    ] {
        let started = Instant::now();
        let out = repo
            .bare()
            .arg("--config")
            .arg(&config)
            .args(&args)
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        // The bound is 3 s; allow for the process itself and a loaded machine.
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
        assert!(took >= Duration::from_secs(3), "{args:?} took {took:?}");
        assert!(
            stderr(&out).contains("did not finish within 3s"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

// 9. The smaller ones.

#[test]
fn a_mistyped_or_relative_repository_url_is_refused_and_creates_nothing() {
    let repo = TestRepo::new();
    for (url, says) in [
        ("s3//bucket/p", "did you mean \"s3://bucket/p\""),
        ("relative/repo", "relative path"),
    ] {
        let out = repo
            .bare()
            .args(["--repo", url, "--key-file"])
            .arg(repo.key())
            .arg("init")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{url}: {}", stderr(&out));
    }
    assert!(!repo.dir.path().join("s3").exists());
    assert!(!repo.dir.path().join("relative").exists());
}

#[test]
fn a_missing_bucket_is_named_as_such() {
    let moto = support::start_moto();
    let repo = TestRepo::new();
    let config = repo.config(&format!(
        "repository:\n  url: s3://no-such-bucket/p\n  key_file: {}\n  options:\n    endpoint: http://127.0.0.1:{}\n    region: us-east-1\n    allow_http: true\n    access_key_id: test\n    secret_access_key: test\n    retry_timeout: 10s\n",
        repo.key().display(),
        moto.port
    ));
    for command in ["list", "init"] {
        let out = repo
            .bare()
            .arg("--config")
            .arg(&config)
            .arg(command)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("bucket or container of s3://no-such-bucket/p does not exist"),
            "{command}: {err}"
        );
        assert!(
            !err.contains("run `heirloom-backup init`"),
            "{command}: {err}"
        );
    }
}

#[test]
fn options_a_store_does_not_know_are_refused_for_every_store() {
    let repo = TestRepo::new();
    let config = repo.config(&format!(
        "repository:\n  url: file://{}\n  key_file: {}\n  options: {{ endpoint: \"http://127.0.0.1:9000\" }}\n",
        repo.path().display(),
        repo.key().display()
    ));
    let out = repo
        .bare()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"endpoint\"") && stderr(&out).contains("take no options"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_key_file_others_can_read_is_refused_unless_allowed() {
    let repo = TestRepo::new();
    std::fs::set_permissions(repo.key(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = repo.run(&["list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mode 0666") && stderr(&out).contains("chmod 600"),
        "{}",
        stderr(&out)
    );
    let out = repo
        .cmd(&["list"])
        .env("HEIRLOOM_ALLOW_INSECURE_KEY_FILE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::set_permissions(repo.key(), std::fs::Permissions::from_mode(0o400)).unwrap();
    repo.ok_text(&["list"]);
}

#[test]
fn a_spool_someone_else_could_write_is_refused() {
    let repo = TestRepo::new();
    let spool = repo.dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = support::free_port();
    let config = repo.config(&format!(
        "repository:\n  url: file://{}\n  key_file: {}\nsources:\n  pg: {{ kind: postgres, url: \"postgres://postgres@127.0.0.1:{port}/postgres\" }}\n",
        repo.path().display(),
        repo.key().display()
    ));
    let out = repo
        .bare()
        .arg("--config")
        .arg(&config)
        .args(["stream", "pg", "--spool"])
        .arg(&spool)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mode 0777 lets other users in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn printing_into_a_closed_pipe_is_a_normal_end_for_every_command() {
    let repo = TestRepo::new();
    for i in 0..3 {
        assert!(repo
            .backup_stdin("app", format!("{i}").as_bytes())
            .status
            .success());
    }
    let bin = assert_cmd::cargo::cargo_bin("heirloom-backup");
    for command in ["list", "show latest", "stats", "verify", "key list"] {
        // The reader closes its end at once and lingers: every write meets a closed pipe.
        let script = format!(
            "set -o pipefail; '{}' --repo 'file://{}' --key-file '{}' {command} | (exec 0<&-; sleep 1)",
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
            "{command}: {:?} {}",
            out.status,
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "{command}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn labels_hold_printable_text_only() {
    let repo = TestRepo::new();
    for label in [
        "env=prod\nFORGED backup line",
        "env=\u{1b}[2Jclear",
        "k=\u{7}",
        "bad key=x",
        "=x",
    ] {
        let out = repo
            .cmd(&["backup", "--stdin", "--source", "app", "--label", label])
            .write_stdin(b"x".to_vec())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{label:?}: {}", stderr(&out));
    }
    assert!(repo.ids().is_empty());
    let out = repo
        .cmd(&[
            "backup",
            "--stdin",
            "--source",
            "app",
            "--label",
            "team/owner=Zoë Ünal",
        ])
        .write_stdin(b"x".to_vec())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(repo.ok_text(&["list"]).contains("team/owner=Zoë Ünal"));
}

#[test]
fn temporaries_of_a_killed_writer_are_removed_by_the_next_run() {
    let repo = TestRepo::new();
    // What a SIGKILL between write and link leaves behind, an hour old, and a live writer's.
    let tmp = repo.path().join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let stale = tmp.join("000000010000000000000001-0123456789abcdef");
    let live = tmp.join("keys-fedcba9876543210");
    std::fs::write(&stale, b"half a segment").unwrap();
    std::fs::write(&live, b"being written").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert!(repo.backup_stdin("app", b"data").status.success());
    assert!(!stale.exists());
    assert!(live.exists());
    // And nothing under .tmp is ever taken for an object.
    let out = repo.run(&["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut text = String::new();
    std::fs::File::open(&live)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "being written");
}

#[test]
fn verify_names_objects_of_no_known_kind_and_leaves_them() {
    let repo = TestRepo::new();
    assert!(repo.backup_stdin("app", b"data").status.success());
    std::fs::write(repo.path().join("README"), b"someone's note").unwrap();
    std::fs::create_dir_all(repo.path().join("wal/pg/nested")).unwrap();
    std::fs::write(repo.path().join("wal/pg/nested/x"), b"?").unwrap();
    let out = repo.run(&["verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unknown = report["unknown_objects"].as_array().unwrap();
    assert_eq!(unknown.len(), 2, "{report}");
    assert!(unknown.contains(&serde_json::json!("README")), "{report}");
    let out = repo.run(&["verify"]);
    assert!(
        stderr(&out).contains("README: not an object of this repository's format"),
        "{}",
        stderr(&out)
    );
    assert!(repo.path().join("README").exists());
}
