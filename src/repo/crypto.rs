//! The master secret and everything derived from it: chunk ids, chunk sealing, metadata sealing.
//!
//! A sealed object is `nonce (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes)`. Chunks are sealed
//! under a key derived from the data key and the chunk id, with the chunk id as associated data, so a
//! chunk moved under another id fails to open. Metadata objects (pack headers, index files, manifests)
//! are sealed under one derived metadata key with their kind as associated data, so an index cannot be
//! passed off as a manifest.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ids::ChunkId;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const CHUNK_KEY_INFO: &[u8] = b"heirloom-backup v1 chunk key";
const META_KEY_INFO: &[u8] = b"heirloom-backup v1 metadata key";
const CHUNK_AAD: &[u8] = b"heirloom-backup v1 chunk ";
const META_AAD: &[u8] = b"heirloom-backup v1 ";

/// The kinds of sealed metadata; the name is bound into the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    PackHeader,
    Index,
    Manifest,
    /// A WAL file; sealed with its source and name bound in (see `seal_named`).
    Wal,
    /// What identifies a source (e.g. a PostgreSQL system identifier).
    SourceIdentity,
    /// A segment of a MySQL/MariaDB binary log; sealed with its name bound in.
    Binlog,
    /// A hold on a backup, or its release; sealed with its key bound in.
    Hold,
    /// The record of what a prune deleted; sealed with its key bound in.
    PruneRecord,
    /// Packs a prune found unneeded; sealed with its key bound in.
    PackMark,
    /// What a verify checked and found; sealed with its key bound in.
    VerifyRecord,
    /// One restore drill and its checks; sealed with its key bound in.
    DrillRecord,
}

impl MetaKind {
    fn aad(self) -> Vec<u8> {
        let name: &[u8] = match self {
            MetaKind::PackHeader => b"pack-header",
            MetaKind::Index => b"index",
            MetaKind::Manifest => b"manifest",
            MetaKind::Wal => b"wal",
            MetaKind::SourceIdentity => b"source-identity",
            MetaKind::Binlog => b"binlog",
            MetaKind::Hold => b"hold",
            MetaKind::PruneRecord => b"prune-record",
            MetaKind::PackMark => b"pack-mark",
            MetaKind::VerifyRecord => b"verify-record",
            MetaKind::DrillRecord => b"drill-record",
        };
        [META_AAD, name].concat()
    }
}

/// Opening failed: wrong key, or the bytes were changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed (wrong key or altered bytes)")]
pub struct OpenError;

/// The repository's secret: never stored in the clear, wrapped by each key in `keys/`.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MasterSecret {
    #[serde(with = "b64")]
    pub data_key: [u8; 32],
    #[serde(with = "b64")]
    pub id_key: [u8; 32],
    pub chunker_seed: u64,
}

impl MasterSecret {
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut data_key = [0u8; 32];
        let mut id_key = [0u8; 32];
        rng.fill_bytes(&mut data_key);
        rng.fill_bytes(&mut id_key);
        // A zero seed would mean fastcdc's unseeded gear table.
        let chunker_seed = rng.next_u64() | 1;
        Self {
            data_key,
            id_key,
            chunker_seed,
        }
    }
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

/// Keys ready for use, derived once from the master secret.
pub struct Keys {
    secret: MasterSecret,
    id_mac: Hmac<Sha256>,
    meta_cipher: Aes256Gcm,
}

impl Keys {
    pub fn new(secret: MasterSecret) -> Self {
        let id_mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret.id_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        let mut meta_key = derive(&secret.data_key, &[META_KEY_INFO]);
        let meta_cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&meta_key));
        meta_key.zeroize();
        Self {
            secret,
            id_mac,
            meta_cipher,
        }
    }

    pub fn secret(&self) -> &MasterSecret {
        &self.secret
    }

    pub fn chunker_seed(&self) -> u64 {
        self.secret.chunker_seed
    }

    /// The keyed id of a chunk's plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        let mut mac = self.id_mac.clone();
        mac.update(plaintext);
        ChunkId(mac.finalize().into_bytes().into())
    }

    /// The keyed id of everything `reader` yields, read in 1 MiB pieces, and its length.
    pub fn chunk_id_of_reader(
        &self,
        mut reader: impl std::io::Read,
    ) -> std::io::Result<(ChunkId, u64)> {
        let mut mac = self.id_mac.clone();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            mac.update(&buf[..n]);
            len += n as u64;
        }
        Ok((ChunkId(mac.finalize().into_bytes().into()), len))
    }

    fn chunk_cipher(&self, id: &ChunkId) -> Aes256Gcm {
        let mut key = derive(&self.secret.data_key, &[CHUNK_KEY_INFO, id.as_bytes()]);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        key.zeroize();
        cipher
    }

    /// Seals a chunk in place. `buf` holds `NONCE_LEN` placeholder bytes followed by the encoded chunk
    /// (see `blob`); afterwards it is the sealed box: nonce, ciphertext, tag.
    pub fn seal_chunk_in_place(&self, id: &ChunkId, buf: &mut Vec<u8>) {
        let aad = [CHUNK_AAD, id.as_bytes()].concat();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .chunk_cipher(id)
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf[NONCE_LEN..])
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption fails only beyond 64 GiB"));
        buf.extend_from_slice(&tag);
    }

    /// Opens a sealed chunk, returning its encoded form.
    pub fn open_chunk(&self, id: &ChunkId, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError);
        }
        let aad = [CHUNK_AAD, id.as_bytes()].concat();
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = ciphertext.to_vec();
        self.chunk_cipher(id)
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &aad,
                &mut buf,
                aes_gcm::Tag::from_slice(tag),
            )
            .map_err(|_| OpenError)?;
        Ok(buf)
    }

    pub fn seal_meta(&self, kind: MetaKind, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.meta_cipher, plaintext, &kind.aad())
    }

    pub fn open_meta(&self, kind: MetaKind, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        open(&self.meta_cipher, sealed, &kind.aad())
    }

    /// Seals metadata bound to a name (its object key): it opens only under that name.
    pub fn seal_named(&self, kind: MetaKind, name: &str, plaintext: &[u8]) -> Vec<u8> {
        seal(
            &self.meta_cipher,
            plaintext,
            &[kind.aad(), b" ".to_vec(), name.as_bytes().to_vec()].concat(),
        )
    }

    pub fn open_named(
        &self,
        kind: MetaKind,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        open(
            &self.meta_cipher,
            sealed,
            &[kind.aad(), b" ".to_vec(), name.as_bytes().to_vec()].concat(),
        )
    }
}

/// HKDF-SHA256 with no salt, the data key as input keying material, and `info` parts concatenated.
fn derive(ikm: &[u8; 32], info: &[&[u8]]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(None, ikm);
    let mut out = [0u8; 32];
    hk.expand_multi_info(info, &mut out)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
    out
}

/// Seals with a fresh random nonce: `nonce || ciphertext || tag`.
pub fn seal(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_else(|_| unreachable!("AES-GCM encryption fails only beyond 64 GiB"));
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

pub fn open(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| OpenError)
}

/// A cipher from raw key bytes (used for key envelopes).
pub fn cipher_from(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

pub(crate) mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keys {
        Keys::new(MasterSecret::generate())
    }

    fn seal_chunk(k: &Keys, id: &ChunkId, data: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(data);
        k.seal_chunk_in_place(id, &mut buf);
        buf
    }

    proptest! {
        #[test]
        fn chunks_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let k = keys();
            let id = k.chunk_id(&data);
            let sealed = seal_chunk(&k, &id, &data);
            prop_assert_eq!(sealed.len(), data.len() + SEAL_OVERHEAD);
            prop_assert_eq!(k.open_chunk(&id, &sealed).unwrap(), data);
        }

        #[test]
        fn any_flipped_bit_fails_to_open(data in proptest::collection::vec(any::<u8>(), 1..512), pos in any::<usize>(), bit in 0u8..8) {
            let k = keys();
            let id = k.chunk_id(&data);
            let mut sealed = seal_chunk(&k, &id, &data);
            let i = pos % sealed.len();
            sealed[i] ^= 1 << bit;
            prop_assert_eq!(k.open_chunk(&id, &sealed), Err(OpenError));
        }
    }

    #[test]
    fn chunk_under_another_id_fails() {
        let k = keys();
        let id = k.chunk_id(b"a");
        let other = k.chunk_id(b"b");
        let sealed = seal_chunk(&k, &id, b"a");
        assert_eq!(k.open_chunk(&other, &sealed), Err(OpenError));
    }

    #[test]
    fn metadata_kinds_are_not_interchangeable() {
        let k = keys();
        let sealed = k.seal_meta(MetaKind::Index, b"x");
        assert_eq!(k.open_meta(MetaKind::Manifest, &sealed), Err(OpenError));
        assert_eq!(k.open_meta(MetaKind::Index, &sealed).unwrap(), b"x");
    }

    #[test]
    fn ids_are_keyed() {
        let a = keys();
        let b = keys();
        assert_ne!(a.chunk_id(b"same"), b.chunk_id(b"same"));
        assert_eq!(a.chunk_id(b"same"), a.chunk_id(b"same"));
    }
}
