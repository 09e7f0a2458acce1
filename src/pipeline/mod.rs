//! Bounded async pipelines between byte streams and the repository.
//!
//! Backup: read -> chunk -> (hash, compress, seal on the blocking pool) -> pack -> upload.
//! Restore: ranged pack reads -> (open, verify on the blocking pool) -> write, in order.
//! Every stage is joined by a bounded queue, so memory is bounded by the concurrency settings and the
//! chunk and pack sizes, never by the size of the input.

pub mod backup;
pub mod restore;
pub mod verify;

/// How much work runs at once.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency {
    /// Chunks hashed, compressed and sealed (or opened) at once: CPU work.
    pub cpu: usize,
    /// Objects uploaded or downloaded at once: network work.
    pub io: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            cpu: cores.clamp(1, 32),
            io: 3,
        }
    }
}
