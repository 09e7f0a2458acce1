//! `keys/<id>`: a key envelope as the bucket holds it (unsealed JSON), opened with a key file and,
//! when its Argon2 cost is small enough for a fuzzer's pace, with a passphrase.
#![no_main]

use heirloom_backup::repo::keys::{Kdf, KeyEnvelope, KeySource};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<KeyEnvelope>(data) else {
        return;
    };
    let key_file = KeySource::KeyFile {
        path: "fuzz.key".into(),
        key: Zeroizing::new([7u8; 32]),
    };
    let _ = envelope.unwrap_secret(&key_file, "fuzz");
    let cheap = match &envelope.kdf {
        // Larger costs are refused or paid before any parsing of what they protect; the unit
        // tests cover the refusal.
        Kdf::Argon2id {
            memory_kib,
            iterations,
            parallelism,
            ..
        } => *memory_kib <= 64 && *iterations <= 2 && *parallelism <= 2,
        Kdf::HkdfSha256 { .. } => true,
    };
    if cheap {
        let _ = envelope.unwrap_secret(&KeySource::passphrase("fuzz"), "fuzz");
    }
});
