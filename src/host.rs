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

/// Where this process's pid means something: the kernel's boot id and the pid namespace
/// (`<boot id>/pid:[<inode>]`). Two processes with the same scope see the same pids; on a system
/// without these (not Linux), `None`.
pub fn pid_scope() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), namespace.display()))
}

/// Whether the process `pid` of `scope` has certainly ended: only when `scope` is this process's
/// own and no live process has that pid (a pid reused since counts as alive: it errs towards
/// waiting).
pub fn process_ended(scope: &str, pid: u32) -> bool {
    if pid_scope().as_deref() != Some(scope) || pid == std::process::id() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: a zombie (Z) or dead (X) process has ended.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_ended_only_in_this_scope_and_when_gone() {
        let scope = pid_scope().expect("Linux has a boot id and a pid namespace");
        assert!(!process_ended(&scope, std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(process_ended(&scope, pid));
        // The same pid in another scope (another machine, another container) is not judged.
        assert!(!process_ended("another-boot/pid:[1]", pid));
    }
}
