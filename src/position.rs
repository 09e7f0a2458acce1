//! Positions in a database's log, typed once: PostgreSQL's LSN, MariaDB's GTID and GTID position.
//! Manifests, log objects, plans and restore points hold these, never their text.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A WAL position, printed as PostgreSQL does: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        let bad = || format!("{text:?} is not an LSN such as 0/3000028");
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let hex = |part: &str| {
            (!part.is_empty() && part.len() <= 8)
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        Ok(Lsn((u64::from(hex(hi)?) << 32) | u64::from(hex(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// As PostgreSQL prints it (`"0/3000028"`), in manifests, plans and JSON.
impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A MariaDB GTID: domain, server id, sequence number (`0-1-42`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a GTID (domain-server-sequence, e.g. 0-1-42)");
        let mut parts = s.trim().splitn(3, '-');
        let mut next = || parts.next().ok_or_else(bad);
        let domain = next()?.parse().map_err(|_| bad())?;
        let server_id = next()?.parse().map_err(|_| bad())?;
        let seq = next()?.parse().map_err(|_| bad())?;
        Ok(Self {
            domain,
            server_id,
            seq,
        })
    }
}

impl Serialize for Gtid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Gtid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The last GTID of each replication domain: MariaDB's `gtid_binlog_pos`.
///
/// Serialized as a map from domain to GTID (`{"0": "0-1-42"}`), as binlog segment headers hold it;
/// manifests hold the server's own text form through [`gtid_text`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GtidPos(pub BTreeMap<u32, Gtid>);

impl GtidPos {
    /// Parses `0-1-42,1-2-7` (empty text: no transactions yet).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pos = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let gtid: Gtid = part.parse()?;
            if pos.0.insert(gtid.domain, gtid).is_some() {
                return Err(format!("{text:?} names domain {} twice", gtid.domain));
            }
        }
        Ok(pos)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn apply(&mut self, gtid: Gtid) {
        self.0.insert(gtid.domain, gtid);
    }

    /// Whether every transaction of `other` is also in `self` (per domain, by sequence number;
    /// with `gtid_strict_mode` sequence numbers only grow within a domain).
    pub fn contains(&self, other: &GtidPos) -> bool {
        other
            .0
            .iter()
            .all(|(d, g)| self.0.get(d).is_some_and(|mine| mine.seq >= g.seq))
    }

    pub fn contains_gtid(&self, gtid: &Gtid) -> bool {
        self.0.get(&gtid.domain).is_some_and(|g| g.seq >= gtid.seq)
    }

    /// Per domain, the lower of two positions (a domain missing from either is missing).
    pub fn lower(&self, other: &GtidPos) -> GtidPos {
        let mut out = GtidPos::default();
        for (d, mine) in &self.0 {
            if let Some(theirs) = other.0.get(d) {
                out.apply(if mine.seq <= theirs.seq {
                    *mine
                } else {
                    *theirs
                });
            }
        }
        out
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for gtid in self.0.values() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

/// `#[serde(with = "gtid_text")]`: a [`GtidPos`] as MariaDB writes it, `0-1-42,1-2-7` (empty
/// before any transaction).
pub mod gtid_text {
    use super::GtidPos;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(pos: &GtidPos, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(pos)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<GtidPos, D::Error> {
        let text = String::deserialize(d)?;
        GtidPos::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_print_as_postgresql_does() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!(" 0/3000028 ".parse::<Lsn>().unwrap(), Lsn(0x300_0028));
        for bad in ["16-B3", "", "/1", "1/", "G/1", "1/123456789"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), l);
        assert!(serde_json::from_str::<Lsn>("\"x\"").is_err());
    }

    #[test]
    fn gtids_and_positions() {
        let g: Gtid = "0-1-42".parse().unwrap();
        assert_eq!(
            g,
            Gtid {
                domain: 0,
                server_id: 1,
                seq: 42
            }
        );
        assert!("0-1".parse::<Gtid>().is_err());
        let pos = GtidPos::parse("0-1-42, 1-2-7").unwrap();
        assert_eq!(pos.to_string(), "0-1-42,1-2-7");
        assert!(GtidPos::parse("").unwrap().is_empty());
        assert!(GtidPos::parse("0-1-1,0-2-2").is_err());
        assert!(pos.contains(&GtidPos::parse("0-9-40").unwrap()));
        assert!(!pos.contains(&GtidPos::parse("0-9-43").unwrap()));
        assert!(!pos.contains(&GtidPos::parse("2-1-1").unwrap()));
        let other = GtidPos::parse("0-3-40,2-1-1").unwrap();
        assert_eq!(pos.lower(&other).to_string(), "0-3-40");
    }

    #[test]
    fn manifests_hold_a_position_as_the_server_writes_it() {
        #[derive(Serialize, Deserialize)]
        struct Point {
            #[serde(with = "gtid_text")]
            gtid_pos: GtidPos,
        }
        let p: Point = serde_json::from_str(r#"{"gtid_pos":"0-1-42,1-2-7"}"#).unwrap();
        assert_eq!(p.gtid_pos.0.len(), 2);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"gtid_pos":"0-1-42,1-2-7"}"#
        );
        let empty: Point = serde_json::from_str(r#"{"gtid_pos":""}"#).unwrap();
        assert!(empty.gtid_pos.is_empty());
        assert!(serde_json::from_str::<Point>(r#"{"gtid_pos":"0-1"}"#).is_err());
    }
}
