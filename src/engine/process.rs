//! Child processes whose output feeds a backup or whose input is fed by a restore.

use std::io::{self, Read};
use std::process::{Child, ChildStdout};

/// A child's stdout that reports the child's failure at its end, so a dump that died half-way is
/// an error, never a short backup.
pub struct ChildOutput {
    child: Child,
    stdout: ChildStdout,
    what: String,
}

impl Read for ChildOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let out = self.child.wait_with_output_stderr()?;
            if !out.0.success() {
                return Err(io::Error::other(format!(
                    "{} failed ({}): {}",
                    self.what,
                    out.0,
                    out.1.trim()
                )));
            }
        }
        Ok(n)
    }
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
    pub fn new(child: Child, stdout: ChildStdout, what: impl Into<String>) -> Self {
        Self {
            child,
            stdout,
            what: what.into(),
        }
    }
}
