//! The name records give the host that wrote them (manifests, holds, leases, prune, verify and
//! drill records): `HEIRLOOM_HOST` when set (a Kubernetes pod's name changes with every run; the
//! agent's release name does not), else the system's host name.

/// This process's host name, as records give it.
pub fn host_name() -> String {
    match std::env::var("HEIRLOOM_HOST") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => gethostname::gethostname().to_string_lossy().into_owned(),
    }
}
