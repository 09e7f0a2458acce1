//! The agent for real: a PostgreSQL started by the test, with a backup every few seconds, a
//! verify by halves and a drill due every second; the agent takes the backups on schedule, never
//! runs two drills at once (it skips the runs due meanwhile), logs one JSON event per run start
//! and end, and on SIGTERM stops scheduling and exits 0 within its grace period.

mod support;

use std::time::{Duration, Instant};

use support::postgres::{archive_everything, PgWorld};

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

    let stopping = Instant::now();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(40),
            "the agent did not stop within its grace period"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
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
