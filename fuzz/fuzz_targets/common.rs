//! One fixed repository key for every run of every target: inputs a target seals are sealed with
//! it, so a crash found once reproduces from its input alone.

use std::sync::OnceLock;

use heirloom_backup::repo::crypto::{Keys, MasterSecret};

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        Keys::new(MasterSecret {
            data_key: [0x11; 32],
            id_key: [0x22; 32],
            chunker_seed: 0x3333_3333_3333_3333,
        })
    })
}
