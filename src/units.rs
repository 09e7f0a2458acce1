//! Sizes and instants as the command line and the reports print them.

use chrono::{DateTime, Utc};

/// Bytes in binary units with `decimals` places: `512 B`, `1.5 KiB`, `3.25 GiB`.
pub fn binary_bytes(n: u64, decimals: usize) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.decimals$} {}", UNITS[unit])
    }
}

/// An instant in RFC 3339, UTC, to the second: `2026-11-30T12:00:00Z`.
pub fn utc_seconds(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(binary_bytes(512, 2), "512 B");
        assert_eq!(binary_bytes(1536, 1), "1.5 KiB");
        assert_eq!(binary_bytes(3 << 30, 2), "3.00 GiB");
    }
}
