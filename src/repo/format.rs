//! `heirloom.json`: the repository's parameters. No secrets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The repository format this build writes and the newest it reads. Format 2 adds delta chunks
/// (encoding 2 and the base sections of pack headers and index files); format 1 repositories are
/// read as they are and written without deltas, so format 1 readers can still read them.
pub const FORMAT_VERSION: u32 = 3;
pub const FORMAT_NAME: &str = "heirloom-backup";
/// The largest chunk any repository holds (`chunker.max_size` is at most this).
pub const CHUNK_LEN_LIMIT: u32 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    /// 32 hex digits, random at `init`.
    pub id: String,
    pub created: DateTime<Utc>,
    pub chunker: ChunkerParams,
    pub compression: CompressionParams,
    pub pack: PackParams,
    /// Always `aes-256-gcm` (formats 1 and 2).
    pub cipher: String,
    /// Always `hmac-sha256` (formats 1 and 2).
    pub chunk_id: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Always `fastcdc-2020` (formats 1 and 2).
    #[serde(default = "fastcdc_name")]
    pub algorithm: FastCdcName,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

/// The only content-defined chunking algorithm (formats 1 and 2).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum FastCdcName {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

fn fastcdc_name() -> FastCdcName {
    FastCdcName::FastCdc2020
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompressionParams {
    /// Always `zstd` (formats 1 and 2).
    pub algorithm: ZstdName,
    pub level: i32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ZstdName {
    #[serde(rename = "zstd")]
    Zstd,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackParams {
    pub target_size: u32,
}

/// Parameters chosen at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitParams {
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub pack_size: u32,
    pub compression_level: i32,
}

impl Default for InitParams {
    fn default() -> Self {
        Self {
            chunk_min: 256 * 1024,
            chunk_avg: 1024 * 1024,
            chunk_max: 4 * 1024 * 1024,
            pack_size: 32 * 1024 * 1024,
            compression_level: 3,
        }
    }
}

impl InitParams {
    /// Checks the bounds FastCDC, zstd and the pack format impose; the message names the parameter.
    pub fn validate(&self) -> Result<(), String> {
        let even = |name: &str, v: u32| {
            if v.is_multiple_of(2) {
                Ok(())
            } else {
                Err(format!("{name} must be even, got {v}"))
            }
        };
        even("chunk-min", self.chunk_min)?;
        even("chunk-avg", self.chunk_avg)?;
        even("chunk-max", self.chunk_max)?;
        if !(64..=1024 * 1024).contains(&self.chunk_min) {
            return Err(format!(
                "chunk-min must be between 64 B and 1 MiB, got {}",
                self.chunk_min
            ));
        }
        if !(256..=4 * 1024 * 1024).contains(&self.chunk_avg) {
            return Err(format!(
                "chunk-avg must be between 256 B and 4 MiB, got {}",
                self.chunk_avg
            ));
        }
        if !(1024..=CHUNK_LEN_LIMIT).contains(&self.chunk_max) {
            return Err(format!(
                "chunk-max must be between 1 KiB and 16 MiB, got {}",
                self.chunk_max
            ));
        }
        if !(self.chunk_min <= self.chunk_avg && self.chunk_avg <= self.chunk_max) {
            return Err("chunk sizes must satisfy min <= avg <= max".into());
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.pack_size) {
            return Err(format!(
                "pack-size must be between 1 MiB and 1 GiB, got {}",
                self.pack_size
            ));
        }
        if !(1..=22).contains(&self.compression_level) {
            return Err(format!(
                "compression-level must be between 1 and 22, got {}",
                self.compression_level
            ));
        }
        Ok(())
    }
}

impl RepoConfig {
    pub fn new(id: String, params: &InitParams, now: DateTime<Utc>) -> Self {
        Self {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id,
            created: now,
            chunker: ChunkerParams {
                algorithm: FastCdcName::FastCdc2020,
                min_size: params.chunk_min,
                avg_size: params.chunk_avg,
                max_size: params.chunk_max,
            },
            compression: CompressionParams {
                algorithm: ZstdName::Zstd,
                level: params.compression_level,
            },
            pack: PackParams {
                target_size: params.pack_size,
            },
            cipher: "aes-256-gcm".into(),
            chunk_id: "hmac-sha256".into(),
        }
    }

    /// Whether chunks may be stored as deltas of others (format 2 and later).
    pub fn allows_deltas(&self) -> bool {
        self.version >= 2
    }

    /// How new backup ids tell start times apart: milliseconds from format 3 on.
    pub fn id_precision(&self) -> super::manifest::IdPrecision {
        if self.version >= 3 {
            super::manifest::IdPrecision::Milliseconds
        } else {
            super::manifest::IdPrecision::Seconds
        }
    }

    /// Parses `heirloom.json`, refusing a format newer than this reader before looking at anything else.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigObjectError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigObjectError::Malformed(e.to_string()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(ConfigObjectError::Malformed(format!(
                "\"format\" is not {FORMAT_NAME:?}"
            )));
        }
        let version = value
            .get("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| ConfigObjectError::Malformed("\"version\" is missing".into()))?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(ConfigObjectError::TooNew { found: version });
        }
        let config: RepoConfig = serde_json::from_value(value)
            .map_err(|e| ConfigObjectError::Malformed(e.to_string()))?;
        if config.cipher != "aes-256-gcm" || config.chunk_id != "hmac-sha256" {
            return Err(ConfigObjectError::Malformed(format!(
                "unsupported cipher {:?} or chunk id {:?}",
                config.cipher, config.chunk_id
            )));
        }
        let params = InitParams {
            chunk_min: config.chunker.min_size,
            chunk_avg: config.chunker.avg_size,
            chunk_max: config.chunker.max_size,
            pack_size: config.pack.target_size,
            compression_level: config.compression.level,
        };
        params.validate().map_err(ConfigObjectError::Malformed)?;
        Ok(config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigObjectError {
    #[error("repository format {found} is newer than this heirloom-backup reads (format {FORMAT_VERSION}); upgrade heirloom-backup")]
    TooNew { found: u64 },
    #[error("{0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_format_is_refused_by_version_alone() {
        let mut v = serde_json::to_value(RepoConfig::new(
            "ab".into(),
            &InitParams::default(),
            Utc::now(),
        ))
        .unwrap();
        v["version"] = 4.into();
        v["chunker"] = "something new".into();
        let err = RepoConfig::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(err, ConfigObjectError::TooNew { found: 4 }),
            "{err}"
        );
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        InitParams::default().validate().unwrap();
        let c = RepoConfig::new("ab".into(), &InitParams::default(), Utc::now());
        let back = RepoConfig::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_params_name_the_parameter() {
        let p = InitParams {
            chunk_max: 32 * 1024 * 1024,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("chunk-max"));
    }
}
