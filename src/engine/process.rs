//! Child processes whose output feeds a backup or whose input is fed by a restore.

use std::io::{self, Read};
use std::process::{Child, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The effective user id of this process: the owner of `/proc/self`.
pub fn effective_uid() -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// Whether this process runs as root (PostgreSQL and MariaDB's servers refuse to, or must be told).
pub fn running_as_root() -> bool {
    effective_uid().is_ok_and(|uid| uid == 0)
}

/// How much of a child's stderr is kept: its end, where tools say what went wrong.
const STDERR_KEEP: usize = 256 * 1024;

/// A child's stdout that reports the child's failure at its end, so a dump that died half-way is
/// an error, never a short backup. Its stderr is drained as it comes (a chatty tool never blocks on
/// a full pipe) and kept for messages.
pub struct ChildOutput {
    child: Child,
    stdout: ChildStdout,
    what: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    echo: Arc<AtomicBool>,
    drain: Option<JoinHandle<()>>,
    finished: bool,
}

/// How many of the last lines of a failed child's stderr its error quotes.
const STDERR_LINES: usize = 20;

impl Read for ChildOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.finished {
            self.finished = true;
            let status = self.child.wait()?;
            if let Some(drain) = self.drain.take() {
                let _ = drain.join();
            }
            if !status.success() {
                let text = self.stderr_text();
                let tail = last_lines(&text, STDERR_LINES);
                return Err(io::Error::other(if tail.is_empty() {
                    format!(
                        "{} failed ({status}) and wrote nothing on stderr",
                        self.what
                    )
                } else {
                    format!(
                        "{} failed ({status}); the end of its stderr:\n{tail}",
                        self.what
                    )
                }));
            }
        }
        Ok(n)
    }
}

/// The last `n` non-empty lines of `text`, each cut to a sensible width.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            let mut line: String = l.chars().take(500).collect();
            if line.len() < l.len() {
                line.push('…');
            }
            format!("  {line}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub trait WaitStderr {
    fn wait_with_output_stderr(&mut self) -> io::Result<(std::process::ExitStatus, String)>;
}

impl WaitStderr for Child {
    fn wait_with_output_stderr(&mut self) -> io::Result<(std::process::ExitStatus, String)> {
        let mut err = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            stderr.read_to_string(&mut err)?;
        }
        Ok((self.wait()?, err))
    }
}

impl ChildOutput {
    pub fn new(mut child: Child, stdout: ChildStdout, what: impl Into<String>) -> Self {
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let echo = Arc::new(AtomicBool::new(false));
        let drain = child.stderr.take().map(|mut pipe| {
            let kept = stderr.clone();
            let echo = echo.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if echo.load(Ordering::Relaxed) {
                        let _ = io::Write::write_all(&mut io::stderr(), &buf[..n]);
                    }
                    let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_KEEP {
                        let cut = kept.len() - STDERR_KEEP;
                        kept.drain(..cut);
                    }
                }
            })
        });
        Self {
            child,
            stdout,
            what: what.into(),
            stderr,
            echo,
            drain: Some(drain).flatten(),
            finished: false,
        }
    }

    /// Also passes what the child writes on stderr through to ours, as it comes.
    pub fn echo_stderr(self) -> Self {
        self.echo.store(true, Ordering::Relaxed);
        self
    }

    /// The child, as messages name it.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// A handle on what the child wrote to stderr (its last 256 KiB), readable after the end.
    pub fn stderr_handle(&self) -> Arc<Mutex<Vec<u8>>> {
        self.stderr.clone()
    }

    fn stderr_text(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    }
}

/// What feeding a backup file into a child process gave.
pub struct Fed {
    /// Reading and verifying the file (an integrity error names the object).
    pub read: Result<(), crate::repo::RepoError>,
    pub status: std::process::ExitStatus,
    pub stderr: String,
}

/// Streams one file of a backup, every chunk verified, into `child`'s stdin, then waits for the
/// child to end. The child must have been spawned with piped stdin and stderr.
pub async fn feed_file(
    repo: &crate::repo::Repository,
    index: &crate::repo::index::Index,
    manifest: &crate::repo::manifest::Manifest,
    file: &crate::repo::manifest::FileEntry,
    mut child: Child,
    concurrency: crate::pipeline::Concurrency,
    progress: crate::progress::Progress,
) -> io::Result<Fed> {
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("the child process has no stdin"))?;
    let read = crate::pipeline::restore::restore_file(
        repo,
        index,
        manifest,
        file,
        stdin,
        concurrency,
        progress,
    )
    .await;
    let (status, stderr) = tokio::task::spawn_blocking(move || child.wait_with_output_stderr())
        .await
        .map_err(|e| io::Error::other(format!("waiting task failed: {e}")))??;
    Ok(Fed {
        read,
        status,
        stderr,
    })
}
