//! Retention of a real MariaDB binlog chain: prune deletes the segments no kept dump's replay
//! reads, records them, and the chain goes on and restores afterwards.

mod support;

use support::mysql::{MariaDb, MyWorld};

fn segments(world: &MyWorld) -> Vec<String> {
    let dir = world.repo().join("binlog/notes");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn claims(world: &MyWorld) -> usize {
    std::fs::read_dir(world.repo().join("binlog-seq/notes"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_deletes_binlog_before_the_newest_dump_and_the_chain_goes_on() {
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.use_source("notes", &source.url());
    for name in ["a", "b"] {
        world.ok(&["backup", "notes"]);
        source.sql(&format!(
            "INSERT INTO notes.markers (name) VALUES ('{name}'); FLUSH BINARY LOGS"
        ));
        world.ok(&["stream", "notes", "--once"]);
    }
    let before = segments(&world);
    assert!(before.len() >= 2, "{before:?}");
    let policy = world.path().join("last-one.yaml");
    std::fs::write(&policy, "name: last-one\nkeep: { last: 1 }\n").unwrap();
    let policy = policy.to_str().unwrap();

    let done = world.ok(&["prune", "notes", "--policy", policy, "--json"]);
    let done: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(done["deleted"].as_array().unwrap().len(), 1, "{done}");
    let after = segments(&world);
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    // A prefix of the chain went, with its claims; the rest is untouched.
    assert_eq!(after[..], before[before.len() - after.len()..]);
    assert_eq!(claims(&world), after.len());
    let logs = done["logs_deleted"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{done}");
    assert_eq!(logs[0]["log"], "binlog");
    assert_eq!(
        logs[0]["objects"].as_u64().unwrap() as usize,
        before.len() - after.len()
    );
    let verified = world.cli(&["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // The chain continues where it ended, and the latest state restores from the kept dump.
    source.sql("INSERT INTO notes.markers (name) VALUES ('c')");
    world.ok(&["stream", "notes", "--once"]);
    assert!(segments(&world).len() > after.len());
    let copy = MariaDb::start(world.path(), "copy", 2, true);
    world.ok(&["restore", "notes", "--to", &copy.url(), "--latest"]);
    assert_eq!(copy.markers(), ["a", "b", "c"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
}

/// The binlog on a bucket under S3 Object Lock (moto, a default COMPLIANCE retention of a day):
/// a dump, the streamer and `binlog-push` store the chain there, `verify` reads it, the latest
/// state restores from it, and prune deletes nothing the bucket still locks.
#[test]
fn the_binlog_is_streamed_pushed_and_restored_on_a_bucket_under_object_lock() {
    let moto = support::start_moto_locked();
    let world = MyWorld::new();
    let source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    std::fs::write(
        world.config(),
        format!(
            "repository:\n  url: s3://locked/my\n  key_file: {}\n  object_lock: {{ mode: compliance, days: 1 }}\n  options:\n    endpoint: http://127.0.0.1:{}\n    region: us-east-1\n    allow_http: true\n    access_key_id: test\n    secret_access_key: test\nsources:\n  notes: {{ kind: mysql, url: \"{url}\" }}\n  pushed: {{ kind: mysql, url: \"{url}\", data_dir: {} }}\n",
            world.key().display(),
            moto.port,
            source.binlog_dir().display(),
            url = source.url(),
        ),
    )
    .unwrap();
    world.ok(&["init"]);
    for name in ["a", "b"] {
        world.ok(&["backup", "notes"]);
        source.sql(&format!(
            "INSERT INTO notes.markers (name) VALUES ('{name}'); FLUSH BINARY LOGS"
        ));
        world.ok(&["stream", "notes", "--once"]);
    }
    world.ok(&["backup", "pushed"]);
    source.sql("INSERT INTO notes.markers (name) VALUES ('c'); FLUSH BINARY LOGS");
    let pushed: serde_json::Value =
        serde_json::from_str(&world.ok(&["binlog-push", "pushed", "--json"])).unwrap();
    assert!(pushed["segments"].as_u64().unwrap() > 0, "{pushed}");
    world.ok(&["stream", "notes", "--once"]);
    world.ok(&["verify", "--read-data"]);
    for from in ["notes", "pushed"] {
        let copy = MariaDb::start(world.path(), &format!("copy-{from}"), 2, true);
        world.ok(&["restore", from, "--to", &copy.url(), "--latest"]);
        assert_eq!(copy.markers(), ["a", "b", "c"], "{from}");
        assert_eq!(copy.notes_checksums(), source.notes_checksums(), "{from}");
    }
    let policy = world.path().join("last-one.yaml");
    std::fs::write(&policy, "name: last-one\nkeep: { last: 1 }\n").unwrap();
    let done: serde_json::Value = serde_json::from_str(&world.ok(&[
        "prune",
        "notes",
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert!(done["deleted"].as_array().unwrap().is_empty(), "{done}");
    assert!(done["log_objects_deleted"] == 0, "{done}");
    assert_eq!(
        done["plans"][0]["locked"].as_array().unwrap().len(),
        1,
        "{done}"
    );
    let kept = done["plans"][0]["log"]["kept"].as_array().unwrap();
    assert!(
        kept.iter()
            .any(|s| s["why"] == "under the bucket's Object Lock" && s["locked_until"].is_string()),
        "{done}"
    );
}
