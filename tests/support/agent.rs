//! Reading a running agent from outside: its HTTP endpoints and its metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// GET `path` from `port` on 127.0.0.1: the status code and the body; `None` while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b)?;
    Some((code, body.to_owned()))
}

/// The value of the sample `series` (a name with its labels, as the agent writes them).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

/// Scrapes `/metrics` until `want` says yes of the text, for at most `within`; the text that
/// satisfied it. `why` and `log` (read each time) make the failure's message.
pub fn wait_for_metrics(
    port: u16,
    within: Duration,
    why: &str,
    log: &std::path::Path,
    want: impl Fn(&str) -> bool,
) -> String {
    let begun = Instant::now();
    let mut last = String::new();
    loop {
        if let Some((200, text)) = http_get(port, "/metrics") {
            if want(&text) {
                return text;
            }
            last = text;
        }
        assert!(
            begun.elapsed() < within,
            "{why} within {within:?}; last metrics:\n{last}\nagent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Sends SIGTERM to `agent` and waits for it, at most `within`.
pub fn stop(agent: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let stopping = Instant::now();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status()
        .unwrap();
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            return status;
        }
        assert!(
            stopping.elapsed() < within,
            "the agent did not stop within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
