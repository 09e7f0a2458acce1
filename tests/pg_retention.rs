//! Retention of a real PostgreSQL archive: prune deletes the WAL nothing kept needs, records it,
//! and every backup it keeps (and the latest state) still restores with its data; verify knows the
//! deliberate holes from missing WAL.

mod support;

use support::postgres::{archive_everything, chown_postgres, PgCluster, PgWorld};

fn wal_files(world: &PgWorld) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(world.repo().join("wal/pg"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_deletes_wal_no_kept_backup_needs_and_what_it_keeps_still_restores() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    world.use_physical_source(&source);
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY)")
        .await
        .unwrap();
    // Three backups, each after one more marker, with whole segments archived between them.
    for id in 1..=3 {
        client
            .execute("INSERT INTO markers VALUES ($1)", &[&id])
            .await
            .unwrap();
        archive_everything(&client).await;
        world.cli(&["backup", "pg"]).success();
    }
    client
        .execute("INSERT INTO markers VALUES (4)", &[])
        .await
        .unwrap();
    archive_everything(&client).await;
    source.stop();

    let (ctx, _) = world.job().await;
    let mut manifests = ctx.repo.manifests(Some("pg")).await.unwrap();
    manifests.sort_by(|a, b| a.age_order(b));
    let point = |i: usize| manifests[i].postgres.clone().unwrap();
    let before = wal_files(&world);

    // Keep the two newest: the first goes, and so does the WAL before the second's start and
    // between its stop and the third's start.
    let policy = world.path().join("two.yaml");
    std::fs::write(&policy, "name: two\nkeep: { last: 2 }\n").unwrap();
    let policy = policy.to_str().unwrap();
    let plan = world
        .cli(&["prune", "pg", "--policy", policy, "--dry-run", "--json"])
        .success();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
    let log = &plan[0]["log"];
    assert_eq!(log["log"], "WAL", "{plan}");
    assert!(!log["deleted"].as_array().unwrap().is_empty(), "{plan}");
    assert!(log.get("keys").is_none(), "the keys stay out of the plan");
    assert_eq!(wal_files(&world), before, "a dry run deletes nothing");

    let done = world
        .cli(&["prune", "pg", "--policy", policy, "--json"])
        .success();
    let done: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(done["deleted"].as_array().unwrap().len(), 1, "{done}");
    let logs = done["logs_deleted"].as_array().unwrap();
    assert!(!logs.is_empty(), "{done}");
    let after = wal_files(&world);
    let gone: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
    assert_eq!(
        gone.len() as u64,
        done["log_objects_deleted"].as_u64().unwrap(),
        "{done}"
    );
    // Every segment deleted lies before the second backup's start, or between its stop and the
    // third's start; histories and every segment the two kept backups need stay.
    let (second, third) = (point(1), point(2));
    for name in &gone {
        // Segments, and the backup history files of deleted backups.
        assert!(
            name.len() == 24 || name.ends_with(".backup"),
            "only segments go: {name}"
        );
        let n = &name[..24];
        assert!(
            n < second.start_wal.as_str()
                || (n > second.stop_wal.as_str() && n < third.start_wal.as_str()),
            "{n} was needed ({} .. {}, {} ..)",
            second.start_wal,
            second.stop_wal,
            third.start_wal
        );
    }
    assert!(gone
        .iter()
        .any(|n| n.len() == 24 && n.as_str() < second.start_wal.as_str()));
    assert!(gone.iter().any(|n| n.len() == 24
        && n.as_str() > second.stop_wal.as_str()
        && n.as_str() < third.start_wal.as_str()));
    assert!(after.contains(&third.start_wal));
    // The record says what went.
    let records = ctx.repo.prune_records().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].version, 2);
    assert_eq!(
        records[0].logs.iter().map(|l| l.objects).sum::<u64>(),
        gone.len() as u64
    );

    // verify tells the pruned stretches from missing WAL.
    let verified = world.cli(&["verify"]);
    assert!(verified.code() == Some(0), "{}", verified.stderr());

    // The archival point: its own WAL is enough to make it consistent.
    let port = support::free_port();
    let port_text = port.to_string();
    let dir = world.restore_dir("restored");
    let to = dir.to_str().unwrap();
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            to,
            "--backup",
            &manifests[1].id.to_string(),
            "--start",
            "--port",
            &port_text,
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir.clone(), port);
    assert_eq!(restored.markers().await, [1, 2]);
    restored.stop();
    // The latest state: replayed from the newest backup over the WAL after it.
    world
        .cli(&[
            "restore", "pg", "--to", to, "--latest", "--force", "--start", "--port", &port_text,
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir, port);
    assert_eq!(restored.markers().await, [1, 2, 3, 4]);
    restored.stop();

    // A hole nobody recorded is still one.
    std::fs::remove_file(world.repo().join("wal/pg").join(&third.stop_wal)).unwrap();
    let damaged = world.cli(&["verify"]);
    assert_ne!(
        damaged.code(),
        Some(0),
        "a segment deleted by hand is missing"
    );
    assert!(
        damaged.stdout().contains(&third.stop_wal) || damaged.stderr().contains(&third.stop_wal),
        "{}{}",
        damaged.stdout(),
        damaged.stderr()
    );
}

/// The WAL on a bucket under S3 Object Lock (moto, a default COMPLIANCE retention of a day):
/// archived by `wal-push` from archive_command and streamed by `stream`, then restored from there
/// to the latest commit; verify reads it, and prune deletes nothing the bucket still locks.
#[tokio::test(flavor = "multi_thread")]
async fn wal_archived_and_streamed_to_a_bucket_under_object_lock_restores_the_latest_commit() {
    let moto = support::start_moto_locked();
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    std::fs::write(
        world.config(),
        format!(
            "repository:\n  url: s3://locked/pg\n  key_file: {}\n  object_lock: {{ mode: compliance, days: 1 }}\n  options:\n    endpoint: http://127.0.0.1:{}\n    region: us-east-1\n    allow_http: true\n    access_key_id: test\n    secret_access_key: test\nsources:\n  pg: {{ kind: postgres, url: \"{}\", data_dir: {} }}\n",
            world.key().display(),
            moto.port,
            source.url(),
            source.data.display()
        ),
    )
    .unwrap();
    chown_postgres(&world.config());
    world.cli(&["init"]).success();
    source.start();
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY); INSERT INTO markers VALUES (1)")
        .await
        .unwrap();
    archive_everything(&client).await;
    world.cli(&["backup", "pg"]).success();
    client
        .execute("INSERT INTO markers VALUES (2)", &[])
        .await
        .unwrap();
    archive_everything(&client).await;
    world.cli(&["backup", "pg"]).success();
    // The streamer stores what the open segment holds, without waiting for it to fill.
    let streamer = world.start_wal_streamer(&world.path().join("spool"));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    client
        .execute("INSERT INTO markers VALUES (3)", &[])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    world.stop_wal_streamer(streamer);
    source.stop();
    let verified = world.cli(&["verify"]);
    assert!(verified.code() == Some(0), "{}", verified.stderr());

    let port = support::free_port();
    let dir = world.restore_dir("restored");
    world
        .cli(&[
            "restore",
            "pg",
            "--to",
            dir.to_str().unwrap(),
            "--latest",
            "--start",
            "--port",
            &port.to_string(),
        ])
        .success();
    let mut restored = PgCluster::started_by_restore(world.path(), dir, port);
    assert_eq!(restored.markers().await, [1, 2, 3]);
    restored.stop();

    let policy = world.path().join("last-one.yaml");
    std::fs::write(&policy, "name: last-one\nkeep: { last: 1 }\n").unwrap();
    let done = world
        .cli(&[
            "prune",
            "pg",
            "--policy",
            policy.to_str().unwrap(),
            "--json",
        ])
        .success();
    let done: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert!(done["deleted"].as_array().unwrap().is_empty(), "{done}");
    assert_eq!(done["log_objects_deleted"], 0, "{done}");
    assert_eq!(
        done["plans"][0]["locked"].as_array().unwrap().len(),
        1,
        "{done}"
    );
}
