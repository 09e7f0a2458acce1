//! Key envelopes in `keys/`: each wraps the master secret under a key-encryption key derived from a
//! passphrase (Argon2id) or a 32-byte key file (HKDF-SHA256). Adding or removing a key never touches data.

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hkdf::Hkdf;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::crypto::{self, MasterSecret};

/// Where the key-encryption key comes from.
pub enum KeySource {
    Passphrase(Zeroizing<String>),
    KeyFile {
        path: PathBuf,
        key: Zeroizing<[u8; 32]>,
    },
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Passphrase(_) => f.write_str("KeySource::Passphrase(..)"),
            KeySource::KeyFile { path, .. } => write!(f, "KeySource::KeyFile({})", path.display()),
        }
    }
}

/// A key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path}: expected 32 raw bytes, 64 hex digits or base64 of 32 bytes, found {len} bytes of something else")]
    Malformed { path: PathBuf, len: usize },
    #[error("key file {path} has mode {mode:04o}: readable or writable by others than its owner, it is refused (like ssh refuses such keys); run `chmod 600 {path}`, or for a Kubernetes Secret volume set `defaultMode: 0400`; to accept it anyway set repository.allow_insecure_key_file: true or HEIRLOOM_ALLOW_INSECURE_KEY_FILE=1")]
    TooOpen { path: PathBuf, mode: u32 },
}

/// Whether a key file's permissions are checked when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    /// Refuse a key file that its group or others may read or write (any of mode 0077).
    OwnerOnly,
    /// Accept any mode: an explicit choice of the operator's.
    Any,
}

impl KeySource {
    pub fn passphrase(text: impl Into<String>) -> Self {
        KeySource::Passphrase(Zeroizing::new(text.into()))
    }

    /// Reads a key file: 32 raw bytes, 64 hex digits, or base64 of 32 bytes (a Kubernetes Secret mounted
    /// as a file holds the decoded bytes; a Secret created from a literal may hold either text form).
    pub fn key_file(path: &Path, permissions: Permissions) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        if permissions == Permissions::OwnerOnly {
            use std::os::unix::fs::PermissionsExt;
            // The file the path leads to: a Kubernetes Secret's files are symbolic links.
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::TooOpen {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let raw = Zeroizing::new(std::fs::read(path).map_err(io)?);
        let key = parse_key_file(&raw).ok_or_else(|| KeyFileError::Malformed {
            path: path.to_owned(),
            len: raw.len(),
        })?;
        Ok(KeySource::KeyFile {
            path: path.to_owned(),
            key,
        })
    }

    /// Writes a new random key file (mode 0600); refuses to overwrite an existing file. The file
    /// appears whole or not at all: the key is written and synced under a temporary name beside
    /// it, then linked to its name (which fails if that exists), so a process killed midway leaves
    /// no empty or short key file for its re-run to trip on.
    pub fn create_key_file(path: &Path) -> Result<Self, KeyFileError> {
        use std::io::Write;
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        if path.exists() {
            return Err(io(std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tail = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut tail);
        let temporary = dir.join(format!(".{name}.{}.tmp", hex::encode(tail)));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = (|| {
            let mut file = options.open(&temporary)?;
            file.write_all(key.as_ref())?;
            file.sync_all()?;
            std::fs::hard_link(&temporary, path)
        })();
        let _ = std::fs::remove_file(&temporary);
        written.map_err(io)?;
        // The new name made durable too.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(KeySource::KeyFile {
            path: path.to_owned(),
            key,
        })
    }

    pub fn kind(&self) -> EnvelopeKind {
        match self {
            KeySource::Passphrase(_) => EnvelopeKind::Passphrase,
            KeySource::KeyFile { .. } => EnvelopeKind::KeyFile,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            KeySource::Passphrase(_) => "the passphrase".to_owned(),
            KeySource::KeyFile { path, .. } => format!("key file {}", path.display()),
        }
    }
}

fn parse_key_file(raw: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() == 32 {
        key.copy_from_slice(raw);
        return Some(key);
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    if text.len() == 64 {
        if let Ok(bytes) = hex::decode(text) {
            let bytes = Zeroizing::new(bytes);
            key.copy_from_slice(&bytes);
            return Some(key);
        }
    }
    let bytes = Zeroizing::new(STANDARD.decode(text).ok()?);
    (bytes.len() == 32).then(|| {
        key.copy_from_slice(&bytes);
        key
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvelopeKind {
    Passphrase,
    KeyFile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Kdf {
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        salt: String,
    },
    HkdfSha256 {
        salt: String,
    },
}

/// The stored form of `keys/<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEnvelope {
    pub version: u32,
    pub id: String,
    pub created: DateTime<Utc>,
    pub host: String,
    pub kind: EnvelopeKind,
    pub kdf: Kdf,
    /// `nonce || AES-256-GCM(master secret as JSON) || tag`, base64.
    pub wrapped: String,
}

/// Argon2id cost for new passphrase keys: 64 MiB, 3 passes (OWASP's second recommended setting).
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_ITERATIONS: u32 = 3;
const ARGON2_PARALLELISM: u32 = 1;
const KEY_FILE_INFO: &[u8] = b"heirloom-backup v1 key-file kek";
/// The most an envelope may ask a reader to pay (docs/FORMAT.md).
const ARGON2_MAX_MEMORY_KIB: u32 = 1024 * 1024;
const ARGON2_MAX_ITERATIONS: u32 = 64;
const ARGON2_MAX_PARALLELISM: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("does not open with {0}")]
    WrongKey(String),
    #[error("is a {found:?} key, not a {wanted:?} key")]
    OtherKind {
        found: EnvelopeKind,
        wanted: EnvelopeKind,
    },
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("is key envelope version {0}, newer than this build reads (version {ENVELOPE_VERSION}): upgrade heirloom-backup")]
    TooNew(u32),
}

/// The key envelope version this build writes and reads. A reader does not try to open an
/// envelope of a later version: its KDF or layout may mean something else.
pub const ENVELOPE_VERSION: u32 = 1;

impl KeyEnvelope {
    /// Wraps `secret` for `source`.
    pub fn wrap(
        secret: &MasterSecret,
        source: &KeySource,
        repo_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, EnvelopeError> {
        let mut id_bytes = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id_bytes);
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kdf = match source {
            KeySource::Passphrase(_) => Kdf::Argon2id {
                memory_kib: ARGON2_MEMORY_KIB,
                iterations: ARGON2_ITERATIONS,
                parallelism: ARGON2_PARALLELISM,
                salt: STANDARD.encode(salt),
            },
            KeySource::KeyFile { .. } => Kdf::HkdfSha256 {
                salt: STANDARD.encode(salt),
            },
        };
        let id = hex::encode(id_bytes);
        let kek = derive_kek(&kdf, source)?;
        let plaintext = Zeroizing::new(
            serde_json::to_vec(secret).map_err(|e| EnvelopeError::Malformed(e.to_string()))?,
        );
        let sealed = crypto::seal(&crypto::cipher_from(&kek), &plaintext, &aad(repo_id, &id));
        Ok(Self {
            version: ENVELOPE_VERSION,
            id,
            created: now,
            host: crate::host::host_name(),
            kind: source.kind(),
            kdf,
            wrapped: STANDARD.encode(sealed),
        })
    }

    /// Unwraps the master secret with `source`.
    pub fn unwrap_secret(
        &self,
        source: &KeySource,
        repo_id: &str,
    ) -> Result<MasterSecret, EnvelopeError> {
        if self.version > ENVELOPE_VERSION {
            return Err(EnvelopeError::TooNew(self.version));
        }
        if self.kind != source.kind() {
            return Err(EnvelopeError::OtherKind {
                found: self.kind,
                wanted: source.kind(),
            });
        }
        let kek = derive_kek(&self.kdf, source)?;
        let sealed = STANDARD
            .decode(&self.wrapped)
            .map_err(|e| EnvelopeError::Malformed(format!("wrapped: {e}")))?;
        let plaintext = Zeroizing::new(
            crypto::open(&crypto::cipher_from(&kek), &sealed, &aad(repo_id, &self.id))
                .map_err(|_| EnvelopeError::WrongKey(source.describe()))?,
        );
        serde_json::from_slice(&plaintext).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }
}

fn aad(repo_id: &str, key_id: &str) -> Vec<u8> {
    format!("heirloom-backup v1 key {repo_id} {key_id}").into_bytes()
}

fn derive_kek(kdf: &Kdf, source: &KeySource) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    match (kdf, source) {
        (
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
                salt,
            },
            KeySource::Passphrase(pass),
        ) => {
            // The envelope is anyone's who can write to the bucket: its cost is bounded before
            // it is paid.
            if *memory_kib > ARGON2_MAX_MEMORY_KIB
                || *iterations > ARGON2_MAX_ITERATIONS
                || *parallelism > ARGON2_MAX_PARALLELISM
            {
                return Err(EnvelopeError::Malformed(format!(
                    "argon2 parameters {memory_kib} KiB, {iterations} iterations, parallelism {parallelism} exceed what a reader pays ({ARGON2_MAX_MEMORY_KIB} KiB, {ARGON2_MAX_ITERATIONS}, {ARGON2_MAX_PARALLELISM})"
                )));
            }
            let salt = STANDARD
                .decode(salt)
                .map_err(|e| EnvelopeError::Malformed(format!("salt: {e}")))?;
            let params = Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                .map_err(|e| EnvelopeError::Malformed(format!("argon2 parameters: {e}")))?;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(pass.as_bytes(), &salt, kek.as_mut())
                .map_err(|e| EnvelopeError::Malformed(format!("argon2: {e}")))?;
        }
        (Kdf::HkdfSha256 { salt }, KeySource::KeyFile { key, .. }) => {
            let mut salt = STANDARD
                .decode(salt)
                .map_err(|e| EnvelopeError::Malformed(format!("salt: {e}")))?;
            Hkdf::<Sha256>::new(Some(&salt), key.as_ref())
                .expand(KEY_FILE_INFO, kek.as_mut())
                .map_err(|e| EnvelopeError::Malformed(format!("hkdf: {e}")))?;
            salt.zeroize();
        }
        _ => {
            return Err(EnvelopeError::Malformed(
                "key derivation does not match the key's kind".into(),
            ))
        }
    }
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file_source(byte: u8) -> KeySource {
        KeySource::KeyFile {
            path: "k".into(),
            key: Zeroizing::new([byte; 32]),
        }
    }

    #[test]
    fn an_envelope_asking_for_an_unbounded_argon2_cost_is_refused_before_paying_it() {
        let secret = MasterSecret::generate();
        let source = KeySource::passphrase("correct horse");
        let mut env = KeyEnvelope::wrap(&secret, &source, "repo", Utc::now()).unwrap();
        let Kdf::Argon2id { memory_kib, .. } = &mut env.kdf else {
            panic!("a passphrase key uses Argon2id");
        };
        *memory_kib = u32::MAX;
        let started = std::time::Instant::now();
        let err = env.unwrap_secret(&source, "repo").unwrap_err();
        assert!(
            err.to_string().contains("exceed what a reader pays"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn an_envelope_of_a_later_version_is_not_opened() {
        let secret = MasterSecret::generate();
        let mut env = KeyEnvelope::wrap(&secret, &key_file_source(1), "repo", Utc::now()).unwrap();
        env.version = ENVELOPE_VERSION + 1;
        let err = env.unwrap_secret(&key_file_source(1), "repo").unwrap_err();
        assert!(matches!(err, EnvelopeError::TooNew(2)), "{err}");
        assert!(err.to_string().contains("upgrade"), "{err}");
    }

    #[test]
    fn a_raw_key_file_is_taken_byte_for_byte_and_text_ones_trimmed() {
        // 32 bytes are the key itself, whitespace and all.
        let mut raw = [b' '; 32];
        raw[5] = b'k';
        assert_eq!(*parse_key_file(&raw).unwrap(), raw);
        let hex_text = format!("  {}\n", hex::encode([3u8; 32]).to_uppercase());
        assert_eq!(*parse_key_file(hex_text.as_bytes()).unwrap(), [3u8; 32]);
        // A 33-byte raw key with a newline is neither: refused, not trimmed into a key.
        let mut long = vec![7u8; 32];
        long.push(b'\n');
        assert!(parse_key_file(&long).is_none());
    }

    #[test]
    fn key_file_envelope_round_trips_and_refuses_other_keys() {
        let secret = MasterSecret::generate();
        let env = KeyEnvelope::wrap(&secret, &key_file_source(1), "repo", Utc::now()).unwrap();
        let back = env.unwrap_secret(&key_file_source(1), "repo").unwrap();
        assert_eq!(back.data_key, secret.data_key);
        assert!(matches!(
            env.unwrap_secret(&key_file_source(2), "repo"),
            Err(EnvelopeError::WrongKey(_))
        ));
        assert!(matches!(
            env.unwrap_secret(&key_file_source(1), "other-repo"),
            Err(EnvelopeError::WrongKey(_))
        ));
    }

    #[test]
    fn passphrase_envelope_round_trips() {
        let secret = MasterSecret::generate();
        let env = KeyEnvelope::wrap(
            &secret,
            &KeySource::passphrase("correct horse"),
            "r",
            Utc::now(),
        )
        .unwrap();
        assert!(env
            .unwrap_secret(&KeySource::passphrase("correct horse"), "r")
            .is_ok());
        assert!(env
            .unwrap_secret(&KeySource::passphrase("wrong horse"), "r")
            .is_err());
    }

    #[test]
    fn key_files_open_to_others_are_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        KeySource::create_key_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(KeySource::key_file(&path, Permissions::OwnerOnly).is_ok());
        for mode in [0o666, 0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = KeySource::key_file(&path, Permissions::OwnerOnly).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("{mode:04o}")) && text.contains("chmod 600"),
                "{text}"
            );
            assert!(KeySource::key_file(&path, Permissions::Any).is_ok());
        }
        // Through a symbolic link, as in a Secret volume: the target's mode counts.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(KeySource::key_file(&link, Permissions::OwnerOnly).is_ok());
    }

    #[test]
    fn key_files_accept_raw_hex_and_base64() {
        let raw = [7u8; 32];
        assert_eq!(*parse_key_file(&raw).unwrap(), raw);
        assert_eq!(*parse_key_file(hex::encode(raw).as_bytes()).unwrap(), raw);
        let b64 = format!("{}\n", STANDARD.encode(raw));
        assert_eq!(*parse_key_file(b64.as_bytes()).unwrap(), raw);
        assert!(parse_key_file(b"short").is_none());
    }
}
