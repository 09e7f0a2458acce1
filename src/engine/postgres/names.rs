//! WAL file names, parsed once at the edge (LSNs are `crate::position::Lsn`).

use std::fmt;
use std::str::FromStr;

pub use crate::position::Lsn;

/// The files PostgreSQL archives, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFileName {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: a segment of timeline T.
    Segment { timeline: u32, log: u32, seg: u32 },
    /// `TTTTTTTT.history`: a timeline's history.
    History { timeline: u32 },
    /// `<segment>.<offset>.backup`: a backup history file.
    BackupHistory(String),
    /// `<segment>.partial`: the last, incomplete segment of a timeline before a promotion.
    Partial(String),
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn is_segment(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FromStr for WalFileName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a WAL file name (segment, .history, .backup or .partial)");
        if is_segment(s) {
            let t = hex8(&s[..8]).ok_or_else(bad)?;
            let log = hex8(&s[8..16]).ok_or_else(bad)?;
            let seg = hex8(&s[16..]).ok_or_else(bad)?;
            return Ok(WalFileName::Segment {
                timeline: t,
                log,
                seg,
            });
        }
        if let Some(t) = s.strip_suffix(".history") {
            return Ok(WalFileName::History {
                timeline: hex8(t).ok_or_else(bad)?,
            });
        }
        if let Some(seg) = s.strip_suffix(".partial") {
            return is_segment(seg)
                .then(|| WalFileName::Partial(s.to_owned()))
                .ok_or_else(bad);
        }
        if let Some(rest) = s.strip_suffix(".backup") {
            let (seg, offset) = rest.split_once('.').ok_or_else(bad)?;
            return (is_segment(seg) && hex8(offset).is_some())
                .then(|| WalFileName::BackupHistory(s.to_owned()))
                .ok_or_else(bad);
        }
        Err(bad())
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment { timeline, log, seg } => {
                write!(f, "{timeline:08X}{log:08X}{seg:08X}")
            }
            WalFileName::History { timeline } => write!(f, "{timeline:08X}.history"),
            WalFileName::BackupHistory(s) | WalFileName::Partial(s) => f.write_str(s),
        }
    }
}

impl WalFileName {
    /// The segment after this one, for segments of `segment_size` bytes.
    pub fn next_segment(&self, segment_size: u64) -> Option<WalFileName> {
        let WalFileName::Segment { timeline, log, seg } = *self else {
            return None;
        };
        let per_log = (0x1_0000_0000u64 / segment_size) as u32;
        Some(if seg + 1 >= per_log {
            WalFileName::Segment {
                timeline,
                log: log + 1,
                seg: 0,
            }
        } else {
            WalFileName::Segment {
                timeline,
                log,
                seg: seg + 1,
            }
        })
    }

    /// The segment's number counted from the start of WAL (`log * segments per log + seg`).
    pub fn segment_number(&self, segment_size: u64) -> Option<u64> {
        let WalFileName::Segment { log, seg, .. } = *self else {
            return None;
        };
        Some(u64::from(log) * (0x1_0000_0000u64 / segment_size) + u64::from(seg))
    }

    /// The segment numbered `number` on `timeline`.
    pub fn segment(timeline: u32, number: u64, segment_size: u64) -> WalFileName {
        WalFileName::segment_of(timeline, Lsn(number * segment_size), segment_size)
    }

    /// The timeline of a segment or history file.
    pub fn timeline(&self) -> Option<u32> {
        match *self {
            WalFileName::Segment { timeline, .. } | WalFileName::History { timeline } => {
                Some(timeline)
            }
            _ => None,
        }
    }

    /// The segment holding `lsn` on `timeline`.
    pub fn segment_of(timeline: u32, lsn: Lsn, segment_size: u64) -> WalFileName {
        let number = lsn.0 / segment_size;
        let per_log = 0x1_0000_0000u64 / segment_size;
        WalFileName::Segment {
            timeline,
            log: (number / per_log) as u32,
            seg: (number % per_log) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names_parse_and_advance() {
        let n: WalFileName = "000000010000000000000002".parse().unwrap();
        assert_eq!(
            n,
            WalFileName::Segment {
                timeline: 1,
                log: 0,
                seg: 2
            }
        );
        let last: WalFileName = "0000000100000000000000FF".parse().unwrap();
        assert_eq!(
            last.next_segment(16 << 20).unwrap().to_string(),
            "000000010000000100000000"
        );
        assert_eq!(
            WalFileName::segment_of(1, "0/3000028".parse().unwrap(), 16 << 20).to_string(),
            "000000010000000000000003"
        );
        assert!("00000002.history".parse::<WalFileName>().is_ok());
        assert!("000000010000000000000002.00000028.backup"
            .parse::<WalFileName>()
            .is_ok());
        assert!("000000010000000000000002.partial"
            .parse::<WalFileName>()
            .is_ok());
        assert!("../etc/passwd".parse::<WalFileName>().is_err());
        assert!("00000001000000000000000G".parse::<WalFileName>().is_err());
    }

    #[test]
    fn segment_numbers_count_across_log_files() {
        let size = 16 << 20;
        let n: WalFileName = "0000000200000001000000FF".parse().unwrap();
        assert_eq!(n.segment_number(size), Some(0x1FF));
        assert_eq!(n.timeline(), Some(2));
        let next = WalFileName::segment(2, 0x200, size);
        assert_eq!(next.to_string(), "000000020000000200000000");
        assert_eq!(n.next_segment(size), Some(next));
    }
}
