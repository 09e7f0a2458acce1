//! Evidence that every promise holds: the windows a source can be restored in, and (with the
//! audit) the checks of its policy against what the repository holds.

pub mod windows;
