//! Retention: policies (what a source keeps, for how long), and the selection of what they keep,
//! as a pure function of the backups, the log, the holds, the policy and the instant.
//!
//! Prune (`jobs::prune`) applies them: the manifests, the log each engine judges
//! (`engine::retention`), then the packs (`repo::gc`).

pub mod policy;
pub mod select;
