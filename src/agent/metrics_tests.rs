use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

#[test]
fn jobs_sources_streams_and_the_store_are_served_under_their_documented_names() {
    let now = at("2026-12-03T12:00:00Z");
    let status = StreamStatus::default();
    let meter = Arc::new(StoreMeter::default());
    let metrics = AgentMetrics::new(
        vec![("prod".into(), status.clone())],
        Some(meter),
        Clock::fixed(now),
    );
    metrics.declare("prod", Job::Backup);
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            r#"heirloom_job_runs_total{source="prod",job="backup",outcome="success"}"#
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"heirloom_stream_up{source="prod"}"#),
        Some(0.0)
    );
    // No lag before the first flush: an absent series, not a made-up zero.
    assert!(!text.contains("heirloom_stream_lag_seconds{"), "{text}");
    assert!(
        text.contains("# TYPE heirloom_job_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"heirloom_store_requests_total{operation="put"}"#),
        Some(0.0)
    );
    assert!(text.ends_with("# EOF\n"));

    metrics.started("prod", Job::Backup);
    assert_eq!(
        sample(
            &metrics.encode(),
            r#"heirloom_job_running{source="prod",job="backup"}"#
        ),
        Some(1.0)
    );
    metrics.ended(
        "prod",
        Job::Backup,
        Outcome::Success,
        now,
        Duration::from_secs(3),
    );
    metrics.skipped("prod", Job::Backup);
    status.set_connected(true);
    status.stored_through(now - chrono::Duration::milliseconds(2500));
    metrics.recoverability(
        "prod",
        &Recoverability {
            backups: 2,
            last_backup: Some(at("2026-12-03T02:00:00Z")),
            first_point: Some(at("2026-11-01T02:00:00Z")),
            last_point: Some(at("2026-12-03T11:59:58Z")),
            last_drill: Some((at("2026-12-02T05:10:00Z"), false)),
            last_passed_drill: Some(at("2026-11-29T05:10:00Z")),
        },
    );
    let text = metrics.encode();
    let job = r#"{source="prod",job="backup"}"#;
    assert_eq!(
        sample(
            &text,
            &format!("heirloom_job_last_success_timestamp_seconds{job}")
        ),
        Some(now.timestamp() as f64)
    );
    assert_eq!(
        sample(&text, &format!("heirloom_job_running{job}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, &format!("heirloom_job_duration_seconds_count{job}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"heirloom_job_runs_total{source="prod",job="backup",outcome="skipped"}"#
        ),
        Some(1.0)
    );
    let source = r#"{source="prod"}"#;
    assert_eq!(
        sample(&text, &format!("heirloom_stream_lag_seconds{source}")),
        Some(2.5)
    );
    assert_eq!(
        sample(&text, &format!("heirloom_stream_up{source}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("heirloom_first_recoverability_point_seconds{source}")
        ),
        Some(at("2026-11-01T02:00:00Z").timestamp() as f64)
    );
    assert_eq!(
        sample(
            &text,
            &format!("heirloom_last_available_backup_timestamp_seconds{source}")
        ),
        Some(at("2026-12-03T02:00:00Z").timestamp() as f64)
    );
    assert_eq!(
        sample(&text, &format!("heirloom_backups{source}")),
        Some(2.0)
    );
    // A source whose backups are all gone has no points, not stale ones.
    metrics.recoverability("prod", &Recoverability::default());
    let text = metrics.encode();
    assert!(
        !text.contains("heirloom_first_recoverability_point_seconds{"),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("heirloom_backups{source}")),
        Some(0.0)
    );
}
