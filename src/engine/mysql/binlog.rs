//! The binary log, read at the level a backup needs: event boundaries, positions, times, GTIDs and
//! where transactions start and end. Events are never decoded further; they are kept byte for byte.
//!
//! A binlog file is the magic `\xfebin` followed by events. Every event starts with a 19-byte header
//! (timestamp, type, server id, size, end position, flags); with `binlog_checksum=CRC32` its last 4
//! bytes are a CRC-32 of the rest.

pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
pub const HEADER_LEN: usize = 19;

pub mod event_type {
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const HEARTBEAT: u8 = 27;
    pub const MYSQL_GTID: u8 = 33;
    pub const MYSQL_ANONYMOUS_GTID: u8 = 34;
    pub const XA_PREPARE: u8 = 38;
    pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIADB_GTID: u8 = 162;
    pub const MARIADB_GTID_LIST: u8 = 163;
    pub const MARIADB_START_ENCRYPTION: u8 = 164;
}

/// Set on events the server makes up for a replica (fake rotations, heartbeats): not in any file.
pub const FLAG_ARTIFICIAL: u16 = 0x20;
/// Set in the format description of a binlog file the server still has open.
pub const FLAG_IN_USE: u16 = 0x01;

const CHECKSUM_CRC32: u8 = 1;

/// The common header of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub type_code: u8,
    pub server_id: u32,
    pub size: u32,
    /// The position just after this event in its file (0 for some artificial events).
    pub log_pos: u32,
    pub flags: u16,
}

impl EventHeader {
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..HEADER_LEN)?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Self {
            timestamp: u32_at(0),
            type_code: b[4],
            server_id: u32_at(5),
            size: u32_at(9),
            log_pos: u32_at(13),
            flags: u16::from_le_bytes([b[17], b[18]]),
        })
    }

    pub fn is_artificial(&self) -> bool {
        self.flags & FLAG_ARTIFICIAL != 0
    }
}

pub use crate::position::{Gtid, GtidPos};

/// One event, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub header: EventHeader,
    pub bytes: &'a [u8],
}

impl<'a> Event<'a> {
    /// The event body after the header, without a trailing checksum.
    pub fn body(&self, checksummed: bool) -> &'a [u8] {
        let end = if checksummed && self.header.type_code != event_type::FORMAT_DESCRIPTION {
            self.bytes.len().saturating_sub(4)
        } else {
            self.bytes.len()
        };
        self.bytes
            .get(HEADER_LEN..end.max(HEADER_LEN))
            .unwrap_or(&[])
    }

    /// For a MariaDB GTID event: the GTID and whether it stands alone (a statement without
    /// BEGIN/COMMIT, such as DDL).
    pub fn mariadb_gtid(&self) -> Option<(Gtid, bool)> {
        if self.header.type_code != event_type::MARIADB_GTID {
            return None;
        }
        let b = self.bytes.get(HEADER_LEN..HEADER_LEN + 13)?;
        let seq = u64::from_le_bytes(b[0..8].try_into().ok()?);
        let domain = u32::from_le_bytes(b[8..12].try_into().ok()?);
        let standalone = b[12] & 1 != 0;
        Some((
            Gtid {
                domain,
                server_id: self.header.server_id,
                seq,
            },
            standalone,
        ))
    }

    /// For a MariaDB GTID list event: the binlog state it records.
    pub fn mariadb_gtid_list(&self) -> Option<Vec<Gtid>> {
        if self.header.type_code != event_type::MARIADB_GTID_LIST {
            return None;
        }
        let b = self.bytes.get(HEADER_LEN..)?;
        let count = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) & 0x0fff_ffff;
        let mut out = Vec::with_capacity(count.min(1024) as usize);
        for i in 0..count as usize {
            let e = b.get(4 + i * 16..4 + (i + 1) * 16)?;
            out.push(Gtid {
                domain: u32::from_le_bytes(e[0..4].try_into().ok()?),
                server_id: u32::from_le_bytes(e[4..8].try_into().ok()?),
                seq: u64::from_le_bytes(e[8..16].try_into().ok()?),
            });
        }
        Some(out)
    }

    /// For a query event: the statement text.
    pub fn query(&self, checksummed: bool) -> Option<&'a [u8]> {
        if self.header.type_code != event_type::QUERY {
            return None;
        }
        let body = self.body(checksummed);
        let db_len = *body.get(8)? as usize;
        let status_len = u16::from_le_bytes(body.get(11..13)?.try_into().ok()?) as usize;
        body.get(13 + status_len + db_len + 1..)
    }

    /// For a rotate event: the next file's name and position.
    pub fn rotate(&self, checksummed: bool) -> Option<(String, u64)> {
        if self.header.type_code != event_type::ROTATE {
            return None;
        }
        let body = self.body(checksummed);
        let pos = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
        let name = std::str::from_utf8(body.get(8..)?).ok()?;
        Some((name.to_owned(), pos))
    }

    /// For a format description event: whether the events after it end in a CRC-32.
    pub fn checksum_alg(&self) -> Option<u8> {
        if self.header.type_code != event_type::FORMAT_DESCRIPTION {
            return None;
        }
        // ... post-header lengths, checksum algorithm (1 byte), CRC (4 bytes).
        let len = self.bytes.len();
        (len >= HEADER_LEN + 57 + 5).then(|| self.bytes[len - 5])
    }

    /// Checks the event's CRC-32 when it carries one.
    pub fn verify_checksum(&self, checksummed: bool) -> bool {
        let has_crc = checksummed
            || (self.header.type_code == event_type::FORMAT_DESCRIPTION
                && self.checksum_alg() == Some(CHECKSUM_CRC32));
        if !has_crc {
            return true;
        }
        let Some(split) = self.bytes.len().checked_sub(4) else {
            return false;
        };
        let (data, crc) = self.bytes.split_at(split);
        let mut hasher = crc32fast::Hasher::new();
        if self.header.type_code == event_type::FORMAT_DESCRIPTION && data.len() >= HEADER_LEN {
            // The server sets "binlog in use" in the open file's description and clears it when
            // the file is closed; the checksum is computed with the flag clear.
            let mut header = [0u8; HEADER_LEN];
            header.copy_from_slice(&data[..HEADER_LEN]);
            header[17] &= !(FLAG_IN_USE as u8);
            hasher.update(&header);
            hasher.update(&data[HEADER_LEN..]);
        } else {
            hasher.update(data);
        }
        hasher.finalize().to_le_bytes() == crc
    }
}

/// A malformed stretch of binlog bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {pos}: {why}")]
pub struct BadEvent {
    pub pos: u64,
    pub why: String,
}

/// Reads consecutive events from `bytes`, which start at file position `start`.
pub struct Events<'a> {
    bytes: &'a [u8],
    offset: usize,
    start: u64,
    /// Bytes of the file left out so far (see [`Events::with_holes`]).
    skipped: u64,
    holes: bool,
}

impl<'a> Events<'a> {
    pub fn new(bytes: &'a [u8], start: u64) -> Self {
        Self {
            bytes,
            offset: 0,
            start,
            skipped: 0,
            holes: false,
        }
    }

    /// Like `new`, for events as a replica receives them: the server may leave events out (MariaDB
    /// withholds Annotate_rows events from replicas that do not ask for them), so an event may
    /// start after the previous one ended. Each event's own end position places it.
    pub fn with_holes(bytes: &'a [u8], start: u64) -> Self {
        Self {
            holes: true,
            ..Self::new(bytes, start)
        }
    }

    /// The file position of the next event, if no event was left out before it.
    pub fn position(&self) -> u64 {
        self.start + self.skipped + self.offset as u64
    }

    /// Bytes of the file left out so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<(u64, Event<'a>), BadEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.bytes[self.offset..];
        if rest.is_empty() {
            return None;
        }
        let pos = Events::position(self);
        let bad = |why: String| Some(Err(BadEvent { pos, why }));
        let Some(header) = EventHeader::parse(rest) else {
            return bad(format!(
                "{} bytes left, less than an event header",
                rest.len()
            ));
        };
        let size = header.size as usize;
        if size < HEADER_LEN || size > rest.len() {
            return bad(format!(
                "event of type {} claims {size} bytes, {} are there",
                header.type_code,
                rest.len()
            ));
        }
        let mut pos = pos;
        if self.holes && header.log_pos != 0 {
            let claimed = u64::from(header.log_pos).saturating_sub(size as u64);
            if claimed > pos {
                self.skipped += claimed - pos;
                pos = claimed;
            }
        }
        if header.log_pos != 0 && u64::from(header.log_pos) != pos + size as u64 {
            return bad(format!(
                "event of type {} ends at {} by its header, but at {} by its size",
                header.type_code,
                header.log_pos,
                pos + size as u64
            ));
        }
        self.offset += size;
        Some(Ok((
            pos,
            Event {
                header,
                bytes: &rest[..size],
            },
        )))
    }
}

/// Follows transaction boundaries through a stream of events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupTracker {
    state: GroupState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum GroupState {
    #[default]
    Between,
    /// After a GTID event, before BEGIN or the lone statement.
    Opened,
    /// Between BEGIN and COMMIT.
    InTransaction,
}

/// What an event means for transaction boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// The event starts a group (a GTID event, or BEGIN without one).
    Starts,
    /// The event ends a group: after it the stream is between transactions.
    Ends,
    /// The event is inside a group.
    Inside,
    /// The event belongs to no group (format descriptions, rotations, GTID lists).
    Outside,
}

impl GroupTracker {
    /// Whether the stream is between transactions.
    pub fn between(&self) -> bool {
        self.state == GroupState::Between
    }

    pub fn observe(&mut self, event: &Event<'_>, checksummed: bool) -> Boundary {
        use event_type::*;
        let t = event.header.type_code;
        match (self.state, t) {
            (_, MARIADB_GTID) => {
                // MariaDB writes no BEGIN: a GTID event that does not stand alone opens a
                // transaction that ends at XID or COMMIT.
                let standalone = event.mariadb_gtid().is_some_and(|(_, s)| s);
                self.state = if standalone {
                    GroupState::Opened
                } else {
                    GroupState::InTransaction
                };
                Boundary::Starts
            }
            (_, MYSQL_GTID | MYSQL_ANONYMOUS_GTID) => {
                self.state = GroupState::Opened;
                Boundary::Starts
            }
            (GroupState::Between, QUERY) => {
                let q = event.query(checksummed).unwrap_or(&[]);
                if starts_with_word(q, b"BEGIN") || starts_with_word(q, b"XA START") {
                    self.state = GroupState::InTransaction;
                    Boundary::Starts
                } else {
                    // A statement outside any group (old servers without GTIDs): complete alone.
                    Boundary::Ends
                }
            }
            (GroupState::Between, _) => Boundary::Outside,
            (GroupState::Opened, QUERY) => {
                let q = event.query(checksummed).unwrap_or(&[]);
                if starts_with_word(q, b"BEGIN") || starts_with_word(q, b"XA START") {
                    self.state = GroupState::InTransaction;
                    Boundary::Inside
                } else {
                    self.state = GroupState::Between;
                    Boundary::Ends
                }
            }
            (GroupState::Opened | GroupState::InTransaction, XID | XA_PREPARE) => {
                self.state = GroupState::Between;
                Boundary::Ends
            }
            (GroupState::InTransaction, QUERY) => {
                let q = event.query(checksummed).unwrap_or(&[]);
                if starts_with_word(q, b"COMMIT") || starts_with_word(q, b"ROLLBACK") {
                    self.state = GroupState::Between;
                    Boundary::Ends
                } else {
                    Boundary::Inside
                }
            }
            (
                _,
                FORMAT_DESCRIPTION | ROTATE | STOP | MARIADB_GTID_LIST | MARIADB_BINLOG_CHECKPOINT,
            ) => Boundary::Outside,
            _ => Boundary::Inside,
        }
    }
}

fn starts_with_word(text: &[u8], word: &[u8]) -> bool {
    let text = trim_leading(text);
    text.len() >= word.len()
        && text[..word.len()].eq_ignore_ascii_case(word)
        && text
            .get(word.len())
            .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_')
}

fn trim_leading(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    &text[start..]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event with a valid header and CRC, for tests.
    pub fn event(type_code: u8, timestamp: u32, server_id: u32, pos: u64, body: &[u8]) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + 4) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.push(type_code);
        out.extend_from_slice(&server_id.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&((pos + u64::from(size)) as u32).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn query_body(text: &str) -> Vec<u8> {
        let mut b = vec![0u8; 13];
        b[8] = 0; // db_len
        b.push(0); // db terminator
        b.extend_from_slice(text.as_bytes());
        b
    }

    pub fn gtid_body(domain: u32, seq: u64, standalone: bool) -> Vec<u8> {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&domain.to_le_bytes());
        b.push(u8::from(standalone));
        b
    }

    #[test]
    fn events_are_read_with_positions_and_checked() {
        let mut bytes = event(event_type::MARIADB_GTID, 10, 1, 4, &gtid_body(0, 5, false));
        let second = event(
            event_type::QUERY,
            11,
            1,
            4 + bytes.len() as u64,
            &query_body("BEGIN"),
        );
        bytes.extend_from_slice(&second);
        let events: Vec<_> = Events::new(&bytes, 4).collect::<Result<_, _>>().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].0, 4);
        assert!(events[0].1.verify_checksum(true));
        assert_eq!(
            events[0].1.mariadb_gtid(),
            Some((
                Gtid {
                    domain: 0,
                    server_id: 1,
                    seq: 5
                },
                false
            ))
        );
        assert_eq!(events[1].1.query(true), Some(&b"BEGIN"[..]));

        // A flipped byte fails the checksum; a cut event is named by its position.
        let mut flipped = bytes.clone();
        flipped[25] ^= 1;
        let (_, first) = Events::new(&flipped, 4).next().unwrap().unwrap();
        assert!(!first.verify_checksum(true));
        let cut = &bytes[..bytes.len() - 3];
        let err = Events::new(cut, 4).nth(1).unwrap().unwrap_err();
        assert_eq!(err.pos, 4 + events[0].1.bytes.len() as u64);
        // Read from the wrong position, end positions disagree.
        assert!(Events::new(&bytes, 8).next().unwrap().is_err());
    }

    #[test]
    fn groups_end_at_commit_xid_or_a_lone_statement() {
        let mut t = GroupTracker::default();
        let ev = |type_code, body: Vec<u8>| event(type_code, 1, 1, 0, &body);
        let gtid = ev(event_type::MARIADB_GTID, gtid_body(0, 1, false));
        let lone = ev(event_type::MARIADB_GTID, gtid_body(0, 2, true));
        let mysql_gtid = ev(event_type::MYSQL_GTID, vec![0; 25]);
        let begin = ev(event_type::QUERY, query_body("BEGIN"));
        let rows = ev(30, vec![1, 2, 3]);
        let xid = ev(event_type::XID, 7u64.to_le_bytes().to_vec());
        let ddl = ev(event_type::QUERY, query_body("CREATE TABLE t (a int)"));
        let commit = ev(event_type::QUERY, query_body("COMMIT"));
        let mut see = |bytes: &[u8]| {
            let e = Event {
                header: EventHeader::parse(bytes).unwrap(),
                bytes,
            };
            t.observe(&e, true)
        };
        // MariaDB: the GTID event opens the transaction, statements inside do not end it.
        assert_eq!(see(&gtid), Boundary::Starts);
        assert_eq!(see(&rows), Boundary::Inside);
        assert_eq!(see(&ddl), Boundary::Inside);
        assert_eq!(see(&xid), Boundary::Ends);
        // A standalone GTID: the one statement after it is the whole group.
        assert_eq!(see(&lone), Boundary::Starts);
        assert_eq!(see(&ddl), Boundary::Ends);
        // Without GTIDs (or MySQL's): BEGIN ... COMMIT.
        assert_eq!(see(&begin), Boundary::Starts);
        assert_eq!(see(&rows), Boundary::Inside);
        assert_eq!(see(&commit), Boundary::Ends);
        assert_eq!(see(&mysql_gtid), Boundary::Starts);
        assert_eq!(see(&begin), Boundary::Inside);
        assert_eq!(see(&xid), Boundary::Ends);
        assert_eq!(see(&rows[..]), Boundary::Outside);
    }
}
