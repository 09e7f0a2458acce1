//! The agent for real, against a PostgreSQL and a MariaDB started by the tests:
//! - scheduled backups, a verify by halves and a drill due every second: the backups happen on
//!   schedule, no two drills run at once (the runs due meanwhile are skipped), one JSON event per
//!   run start and end, and on SIGTERM it stops scheduling and exits 0 within its grace period;
//! - the log streamers it keeps: `/metrics` shows the success timestamps advancing, the points a
//!   source can be restored to, and the stream's lag; a killed `pg_receivewal` and a MariaDB that
//!   was down when the agent started are streamed again; SIGTERM stores the open segment, and a
//!   commit made just before it is restored.

mod support;

use std::time::{Duration, Instant};

use support::agent::{http_get, sample, stop, wait_for_metrics};
use support::mysql::{MariaDb, MyWorld};
use support::postgres::{archive_everything, PgCluster, PgWorld};

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_takes_scheduled_backups_and_stops_cleanly_on_sigterm() {
    let world = PgWorld::new();
    let mut source = world.cluster("source", "pg");
    source.start();
    world.write_config(&format!(
        "  pg:\n    kind: postgres\n    url: \"{}\"\n    data_dir: {}\n    schedules:\n      backup: \"*/4 * * * * *\"\n      verify: {{ cron: \"*/5 * * * * *\", read_data_parts: 2 }}\n      drill: \"* * * * * *\"\n",
        source.url(),
        source.data.display()
    ));
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    archive_everything(&client).await;

    let log = world.path().join("run/agent.log");
    let mut agent = std::process::Command::new(world.bin())
        .arg("--config")
        .arg(world.config())
        // Without -v: the run events are logged at the agent's default level.
        .args(["--log-format", "json", "agent", "--grace", "30s"])
        .env("HEIRLOOM_HOST", "agent-test")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Wait until two backups have been recorded, at most a minute.
    let begun = Instant::now();
    let backups = loop {
        let list = world.cli(&["list", "--json"]);
        let n = serde_json::from_str::<serde_json::Value>(&list.stdout())
            .ok()
            .and_then(|v| v.as_array().map(|a| a.len()))
            .unwrap_or(0);
        if n >= 2 {
            break n;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "two scheduled backups did not happen in a minute: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            agent.try_wait().unwrap().is_none(),
            "the agent exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(backups >= 2);

    let status = stop(&mut agent, Duration::from_secs(40));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {text}");
    // One JSON event per start and per end, with the outcome.
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let field = |e: &serde_json::Value, k: &str| e["fields"][k].as_str().map(str::to_owned);
    let started = events
        .iter()
        .filter(|e| field(e, "event").as_deref() == Some("job started"))
        .count();
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| field(e, "event").as_deref() == Some("job finished"))
        .collect();
    assert!(started >= 2, "{text}");
    assert!(
        finished
            .iter()
            .any(|e| field(e, "job").as_deref() == Some("backup")
                && field(e, "outcome").as_deref() == Some("success")),
        "{text}"
    );
    // A drill due every second takes longer than that: while one runs the next are skipped, so
    // no two drills ever overlap (each start is after the previous drill's end).
    let drill_events: Vec<&str> = events
        .iter()
        .filter(|e| field(e, "job").as_deref() == Some("drill"))
        .filter_map(|e| e["fields"]["event"].as_str())
        .collect();
    assert!(drill_events.contains(&"job skipped"), "{text}");
    let mut running = 0;
    for event in &drill_events {
        match *event {
            "job started" => {
                running += 1;
                assert_eq!(running, 1, "two drills at once: {text}");
            }
            "job finished" | "job cancelled" => running -= 1,
            _ => {}
        }
    }
    assert!(
        finished
            .iter()
            .any(|e| field(e, "job").as_deref() == Some("drill")
                && field(e, "outcome").as_deref() == Some("success")),
        "{text}"
    );
    // The verifies read their halves in turn, and were recorded.
    assert!(text.contains("(data part 1/2)"), "{text}");
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"].as_str() == Some("agent stopped")),
        "{text}"
    );
    source.stop();
}

/// The agent's command with `world`'s config, serving on `port`, logging JSON to `log`.
fn agent_command(
    bin: &std::path::Path,
    config: &std::path::Path,
    port: u16,
    log: &std::path::Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .args([
            "--log-format",
            "json",
            "agent",
            "--grace",
            "30s",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .env("HEIRLOOM_HOST", "agent-test")
        .env_remove("HEIRLOOM_PASSPHRASE")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_streams_wal_serves_its_metrics_restarts_a_killed_receiver_and_stores_the_open_segment_on_sigterm(
) {
    let world = PgWorld::new();
    // Nothing is archived by archive_command: all the WAL comes from the agent's streamer.
    let mut source = world.plain_cluster("source");
    source.start();
    let spool = world.path().join("spool");
    world.write_config(&format!(
        "  pg:\n    kind: postgres\n    url: \"{}\"\n    data_dir: {}\n    schedules:\n      backup: \"*/5 * * * * *\"\n      stream: {{ flush_interval: 1s, spool: {} }}\n",
        source.url(),
        source.data.display(),
        spool.display()
    ));
    let client = source.client().await;
    client
        .batch_execute("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO markers (id) VALUES (1)")
        .await
        .unwrap();
    let port = support::free_port();
    let log = world.path().join("run/agent.log");
    let mut agent = agent_command(&world.bin(), &world.config(), port, &log)
        .spawn()
        .unwrap();
    let pg = r#"{source="pg"}"#;
    let backup = r#"{source="pg",job="backup"}"#;
    let success = format!("heirloom_job_last_success_timestamp_seconds{backup}");
    let first = wait_for_metrics(
        port,
        Duration::from_secs(90),
        "a scheduled backup",
        &log,
        |m| sample(m, &success).is_some(),
    );
    let first_success = sample(&first, &success).unwrap();
    // The repository is read again after each run, in the background: wait for that read too.
    let text = wait_for_metrics(
        port,
        Duration::from_secs(60),
        "a second backup, read back from the repository",
        &log,
        |m| {
            sample(m, &success).is_some_and(|t| t > first_success)
                && sample(m, &format!("heirloom_backups{pg}")).is_some_and(|n| n >= 2.0)
        },
    );
    // What the repository holds, as the metrics say it.
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let last_backup = sample(
        &text,
        &format!("heirloom_last_available_backup_timestamp_seconds{pg}"),
    )
    .expect("the newest backup's time");
    assert!(last_backup <= now && last_backup > now - 60.0, "{text}");
    let first_point = sample(
        &text,
        &format!("heirloom_first_recoverability_point_seconds{pg}"),
    )
    .expect("the first recoverability point");
    assert!(first_point <= last_backup, "{text}");
    assert!(
        sample(&text, &format!("heirloom_backups{pg}")).unwrap() >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("heirloom_stream_up{pg}")),
        Some(1.0),
        "{text}"
    );
    let lag = sample(&text, &format!("heirloom_stream_lag_seconds{pg}")).expect("the stream's lag");
    assert!((0.0..10.0).contains(&lag), "lag {lag}: {text}");
    assert!(
        sample(&text, "heirloom_store_written_bytes_total").unwrap() > 0.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            &format!("heirloom_job_duration_seconds_count{backup}")
        )
        .unwrap()
            >= 2.0,
        "{text}"
    );
    assert_eq!(http_get(port, "/healthz").map(|(c, _)| c), Some(200));
    let ready = http_get(port, "/readyz");
    assert_eq!(ready.as_ref().map(|(c, _)| *c), Some(200), "{ready:?}");

    // The receiver is killed: the streamer starts another, and WAL flows again.
    let pid_file = spool.join("heirloom-receiver.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    let begun = Instant::now();
    loop {
        let now = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let running = !now.trim().is_empty()
            && now != pid
            && std::path::Path::new(&format!("/proc/{}", now.trim())).exists();
        if running {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "no new pg_receivewal after the kill: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_metrics(
        port,
        Duration::from_secs(30),
        "the stream up again",
        &log,
        |m| sample(m, &format!("heirloom_stream_up{pg}")) == Some(1.0),
    );

    let status = stop(&mut agent, Duration::from_secs(40));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("\"stream stopped\""), "{text}");

    // Started again with only the streamer and a flush interval of an hour: it takes the slot
    // and the spool over, stores the spool once, and then only complete segments. A commit after
    // that first pass reaches the store only through the shutdown's flush.
    world.write_config(&format!(
        "  pg:\n    kind: postgres\n    url: \"{}\"\n    data_dir: {}\n    schedules:\n      stream: {{ flush_interval: 1h, spool: {} }}\n",
        source.url(),
        source.data.display(),
        spool.display()
    ));
    let log = world.path().join("run/agent-2.log");
    let port = support::free_port();
    let mut agent = agent_command(&world.bin(), &world.config(), port, &log)
        .spawn()
        .unwrap();
    wait_for_metrics(
        port,
        Duration::from_secs(30),
        "the restarted streamer's first pass",
        &log,
        |m| {
            sample(m, &format!("heirloom_stream_up{pg}")) == Some(1.0)
                && sample(m, &format!("heirloom_stream_lag_seconds{pg}")).is_some()
        },
    );
    client
        .batch_execute("INSERT INTO markers (id) VALUES (2)")
        .await
        .unwrap();
    // Several of the streamer's one-second ticks go by: none stores the open segment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lag = sample(
        &http_get(port, "/metrics").unwrap().1,
        &format!("heirloom_stream_lag_seconds{pg}"),
    )
    .unwrap();
    assert!(
        lag >= 3.0,
        "the open segment was stored before SIGTERM (lag {lag})"
    );
    let status = stop(&mut agent, Duration::from_secs(40));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("\"stream stopped\""), "{text}");
    drop(client);
    source.stop();

    // Restored as a restore Job would, in a pod given none of the source's Secrets: its URL
    // names a variable not set there, and the restore, which reads only the repository, works.
    world.write_config(&format!(
        "  pg:\n    kind: postgres\n    url: \"postgres://postgres:${{HEIRLOOM_TEST_UNSET_PASSWORD}}@127.0.0.1:1/postgres\"\n    data_dir: {}\n",
        source.data.display(),
    ));
    let dir = world.restore_dir("restored");
    let port = support::free_port();
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
    assert_eq!(restored.markers().await, vec![1, 2]);
    restored.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_keeps_restarting_a_binlog_streamer_until_its_server_is_up_and_stores_the_open_segment_on_sigterm(
) {
    let world = MyWorld::new();
    let mut source = MariaDb::start(world.path(), "source", 1, true);
    source.load_notes_app();
    world.write_config(&format!(
        "  notes:\n    kind: mysql\n    url: \"{}\"\n    schedules:\n      backup: \"*/4 * * * * *\"\n      stream: {{ flush_interval: 1s, heartbeat: 1s }}\n",
        source.url()
    ));
    // The server is down when the agent starts: the streamer fails, and is started again.
    source.stop();
    let port = support::free_port();
    let log = world.path().join("agent.log");
    let bin = assert_cmd::cargo::cargo_bin("heirloom-backup");
    let mut agent = agent_command(&bin, &world.config(), port, &log)
        .spawn()
        .unwrap();
    let notes = r#"{source="notes"}"#;
    let backup = r#"{source="notes",job="backup"}"#;
    let text = wait_for_metrics(
        port,
        Duration::from_secs(60),
        "a restart and a failed backup",
        &log,
        |m| {
            sample(m, &format!("heirloom_stream_restarts_total{notes}")).is_some_and(|n| n >= 1.0)
                && sample(
                    m,
                    &format!("heirloom_job_last_failure_timestamp_seconds{backup}"),
                )
                .is_some()
        },
    );
    assert_eq!(
        sample(&text, &format!("heirloom_stream_up{notes}")),
        Some(0.0),
        "{text}"
    );
    let ready = http_get(port, "/readyz").unwrap();
    assert_eq!(ready.0, 503, "{ready:?}");
    assert!(
        ready
            .1
            .contains("the log streamer of notes is not receiving"),
        "{ready:?}"
    );
    // Alive all the same.
    assert_eq!(http_get(port, "/healthz").map(|(c, _)| c), Some(200));

    source.restart();
    let success = format!("heirloom_job_last_success_timestamp_seconds{backup}");
    let text = wait_for_metrics(
        port,
        Duration::from_secs(90),
        "the streamer up and a backup",
        &log,
        |m| {
            sample(m, &format!("heirloom_stream_up{notes}")) == Some(1.0)
                && sample(m, &success).is_some()
        },
    );
    let first_success = sample(&text, &success).unwrap();
    // The repository is read again after each run, in the background: wait for that read too.
    let text = wait_for_metrics(
        port,
        Duration::from_secs(60),
        "a second backup, read back from the repository",
        &log,
        |m| {
            sample(m, &success).is_some_and(|t| t > first_success)
                && sample(m, &format!("heirloom_backups{notes}")).is_some_and(|n| n >= 2.0)
        },
    );
    let lag =
        sample(&text, &format!("heirloom_stream_lag_seconds{notes}")).expect("the stream's lag");
    assert!((0.0..10.0).contains(&lag), "lag {lag}: {text}");
    assert!(
        sample(
            &text,
            &format!("heirloom_last_recoverability_point_seconds{notes}")
        )
        .is_some(),
        "{text}"
    );
    let ready = http_get(port, "/readyz").unwrap();
    assert_eq!(ready.0, 200, "{ready:?}");

    let status = stop(&mut agent, Duration::from_secs(40));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("\"stream stopped\""), "{text}");

    // Started again with only the streamer and a flush interval of an hour: it goes on from
    // what is stored, and a commit now reaches the store only through the shutdown's flush.
    world.write_config(&format!(
        "  notes:\n    kind: mysql\n    url: \"{}\"\n    schedules:\n      stream: {{ flush_interval: 1h, heartbeat: 1s }}\n",
        source.url()
    ));
    let log = world.path().join("agent-2.log");
    let port = support::free_port();
    let mut agent = agent_command(&bin, &world.config(), port, &log)
        .spawn()
        .unwrap();
    wait_for_metrics(
        port,
        Duration::from_secs(30),
        "the streamer up again",
        &log,
        |m| sample(m, &format!("heirloom_stream_up{notes}")) == Some(1.0),
    );
    source.sql("INSERT INTO notes.markers (name) VALUES ('before-sigterm')");
    // Several of the streamer's one-second ticks and heartbeats go by: none flushes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = http_get(port, "/metrics").unwrap().1;
    assert_eq!(
        sample(&text, &format!("heirloom_stream_lag_seconds{notes}")),
        None,
        "the open segment was stored before SIGTERM: {text}"
    );
    let status = stop(&mut agent, Duration::from_secs(40));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("\"stream stopped\""), "{text}");

    let copy = MariaDb::start(world.path(), "copy", 2, true);
    world.ok(&["restore", "notes", "--to", &copy.url(), "--latest"]);
    assert!(
        copy.markers().contains(&"before-sigterm".to_owned()),
        "{:?}",
        copy.markers()
    );
    assert_eq!(copy.notes_checksums(), source.notes_checksums());
}
