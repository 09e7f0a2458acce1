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

fn markers(server: &MariaDb) -> Vec<String> {
    server
        .sql("SELECT name FROM notes.markers ORDER BY name")
        .lines()
        .map(str::to_owned)
        .collect()
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
    assert_eq!(markers(&copy), ["a", "b", "c"]);
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
}
