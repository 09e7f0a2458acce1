//! Where a streaming session resumes the chain: on the same file of the same server, or by GTID
//! on another; and how a server's history meets the chain's after a failover. Decisions only,
//! from what the chain and the server say.

use super::binlog::{Gtid, GtidPos};
use super::segment::SegmentMeta;
use super::MyError;

/// Where a session asks the server to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest binlog file the server has (a new chain).
    Oldest(String),
    File {
        file: String,
        pos: u64,
    },
    Gtid(GtidPos),
}

/// Chooses where to continue the chain whose last segment is `last`, on a server with id
/// `server_id` and binary logs `logs` (name, size).
pub fn choose_start(
    last: Option<&SegmentMeta>,
    server_id: u32,
    is_mariadb: bool,
    logs: &[(String, u64)],
) -> Result<StartAt, MyError> {
    let has = |file: &str| logs.iter().find(|(n, _)| n == file).map(|(_, s)| *s);
    let Some(last) = last else {
        let (oldest, _) = logs
            .first()
            .ok_or_else(|| MyError::Invalid("the server lists no binary logs".into()))?;
        return Ok(StartAt::Oldest(oldest.clone()));
    };
    if last.server_id == server_id {
        if let Some(next) = &last.rotated_to {
            if has(next).is_some() {
                return Ok(StartAt::File {
                    file: next.clone(),
                    pos: 4,
                });
            }
        } else if has(&last.file).is_some_and(|size| size >= last.end) {
            return Ok(StartAt::File {
                file: last.file.clone(),
                pos: last.end,
            });
        }
    }
    if is_mariadb && !last.gtid_pos.is_empty() {
        return Ok(StartAt::Gtid(last.gtid_pos.clone()));
    }
    Err(MyError::Gap {
        source_name: last.source.clone(),
        why: format!(
            "the stored binlog ends at {}:{} of server {}, which this server (id {server_id}) \
             cannot continue: the file is gone and there is no GTID position to resume from; \
             take a new base backup",
            last.file, last.end, last.server_id
        ),
    })
}

/// How a server's binlog history relates to the chain's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meet {
    /// The server has every transaction the chain has.
    Holds,
    /// The server lacks the chain's last transactions and wrote none of its own since: a replica
    /// still catching up (or a primary that lost them, with nothing new yet).
    Behind,
    /// The server lacks the chain's last transactions and went on with its own: the histories
    /// meet at this position.
    Forks(GtidPos),
    /// No common transaction can be found.
    Unknown,
}

/// Compares the chain's position with a server's `gtid_binlog_state` (the last GTID of every
/// domain and server pair). With GTID strict mode a server holds transaction `d-s-n` exactly
/// when its state has `d-s-m` with `m >= n`.
pub fn history_meets(chain: &GtidPos, server_state: &[Gtid]) -> Meet {
    let mut fork = GtidPos::default();
    let mut lacking = false;
    let mut own_since = false;
    for (domain, stored) in &chain.0 {
        let from_same = server_state
            .iter()
            .find(|g| g.domain == *domain && g.server_id == stored.server_id);
        match from_same {
            Some(have) if have.seq >= stored.seq => fork.apply(*stored),
            Some(have) => {
                lacking = true;
                fork.apply(*have);
                own_since |= server_state
                    .iter()
                    .any(|g| g.domain == *domain && g.seq > have.seq);
            }
            None => return Meet::Unknown,
        }
    }
    match (lacking, own_since) {
        (false, _) => Meet::Holds,
        (true, false) => Meet::Behind,
        (true, true) => Meet::Forks(fork),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(text: &str) -> Vec<Gtid> {
        text.split(',').map(|g| g.parse().unwrap()).collect()
    }

    #[test]
    fn histories_meet_where_the_promoted_server_stopped_receiving() {
        let chain = GtidPos::parse("0-1-12").unwrap();
        assert_eq!(history_meets(&chain, &state("0-1-12")), Meet::Holds);
        assert_eq!(history_meets(&chain, &state("0-1-15")), Meet::Holds);
        assert_eq!(history_meets(&chain, &state("0-1-10")), Meet::Behind);
        assert_eq!(
            history_meets(&chain, &state("0-1-10,0-2-11")),
            Meet::Forks(GtidPos::parse("0-1-10").unwrap())
        );
        // The chain already follows server 2: its own transactions count.
        let chain = GtidPos::parse("0-2-20").unwrap();
        assert_eq!(history_meets(&chain, &state("0-1-10,0-2-25")), Meet::Holds);
        assert_eq!(history_meets(&chain, &state("0-1-10")), Meet::Unknown);
    }

    #[test]
    fn a_chain_continues_on_its_file_or_by_gtid() {
        let logs = vec![
            ("binlog.000002".to_owned(), 500),
            ("binlog.000003".to_owned(), 90),
        ];
        assert_eq!(
            choose_start(None, 1, true, &logs).unwrap(),
            StartAt::Oldest("binlog.000002".into())
        );
    }
}
