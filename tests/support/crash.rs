//! Crash campaigns' common parts: seeded kill delays, a process killed with SIGKILL, the timing
//! of an uninterrupted run, and the counts a campaign reports (see tests/crash_campaign.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// How many killed runs each campaign makes.
pub fn runs() -> u32 {
    std::env::var("HEIRLOOM_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// The campaign's random source: the kill delays, and nothing else.
pub fn rng(campaign: &str) -> rand::rngs::StdRng {
    let seed: u64 = std::env::var("HEIRLOOM_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261204);
    let salt = campaign
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    rand::rngs::StdRng::seed_from_u64(seed ^ salt)
}

/// What a campaign counted.
#[derive(Debug, Default, serde::Serialize)]
pub struct Tally {
    pub campaign: &'static str,
    pub runs: u32,
    /// Killed while running.
    pub killed: u32,
    /// Killed while running, after it had changed the repository (a lease counts).
    pub killed_mid_write: u32,
    /// The kill came after the command had exited.
    pub finished_first: u32,
    /// Runs after which a check failed (each also fails the test).
    pub failures: u32,
    pub seed: String,
}

impl Tally {
    pub fn new(campaign: &'static str) -> Self {
        Self {
            campaign,
            seed: std::env::var("HEIRLOOM_CRASH_SEED").unwrap_or_else(|_| "20261204".into()),
            ..Self::default()
        }
    }

    pub fn count(&mut self, outcome: &Outcome, changed: bool) {
        self.runs += 1;
        match outcome {
            Outcome::Killed => {
                self.killed += 1;
                if changed {
                    self.killed_mid_write += 1;
                }
            }
            Outcome::Exited => self.finished_first += 1,
        }
    }

    /// Prints the counts, and appends them to `HEIRLOOM_CRASH_REPORT` if it is set.
    pub fn report(&self) {
        let line = serde_json::to_string(self).unwrap();
        eprintln!("crash campaign: {line}");
        if let Ok(path) = std::env::var("HEIRLOOM_CRASH_REPORT") {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(file, "{line}").unwrap();
        }
    }
}

pub enum Outcome {
    Killed,
    /// It had exited (succeeded or failed) before the kill.
    Exited,
}

/// Starts `cmd` and sends it SIGKILL after `delay`, unless it has exited by then.
pub fn run_killed(mut cmd: Command, delay: Duration) -> Outcome {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + delay;
    loop {
        if child.try_wait().unwrap().is_some() {
            return Outcome::Exited;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_micros(500)));
    }
    // Child::kill is SIGKILL on Unix: no handler, no cleanup.
    let _ = child.kill();
    child.wait().unwrap();
    Outcome::Killed
}

/// When an uninterrupted run first changed the store, and when it exited.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub first_write: Duration,
    pub exit: Duration,
}

/// Runs `cmd` to its end, watching `store` for its first change; the run must succeed.
pub fn timed(mut cmd: Command, store: &Path) -> Timing {
    let before = shape(store);
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_write = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if first_write.is_none() && shape(store) != before {
            first_write = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    assert!(status.success(), "the timed run failed: {status}");
    let exit = started.elapsed();
    Timing {
        first_write: first_write.unwrap_or(exit / 2).min(exit),
        exit,
    }
}

/// The store's files and their sizes: cheap enough to poll.
pub fn shape(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) => out.push((path, m.len())),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Where to kill: every other run anywhere from the start to a little past the exit, the others
/// between the first write and the exit (where the repository is changing).
pub fn delay(rng: &mut rand::rngs::StdRng, run: u32, timing: Timing) -> Duration {
    let micros = |d: Duration| d.as_micros() as u64;
    let (from, to) = match run % 2 {
        0 => (0, micros(timing.exit) * 11 / 10),
        _ => (micros(timing.first_write), micros(timing.exit)),
    };
    Duration::from_micros(rng.gen_range(from..=to.max(from + 1)))
}
