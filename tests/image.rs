//! The Dockerfile, checked as far as this machine allows (no Docker engine and no image registry
//! here, so the image is never built in CI): its runtime stage is the Debian release these tests
//! run on, it installs the package that provides every program the engines call (asked of this
//! machine's dpkg, the same release's packages), the build copies everything the crate compiles
//! from, the user is the unprivileged one the chart runs as, and the entry point is the binary.

use std::path::Path;
use std::process::Command;

/// Every program an engine runs, as the tests find it on this machine.
const PROGRAMS: &[&str] = &[
    "/usr/lib/postgresql/15/bin/pg_basebackup",
    "/usr/lib/postgresql/15/bin/pg_receivewal",
    "/usr/lib/postgresql/15/bin/pg_dump",
    "/usr/lib/postgresql/15/bin/pg_restore",
    "/usr/lib/postgresql/15/bin/pg_amcheck",
    "/usr/lib/postgresql/15/bin/pg_ctl",
    "/usr/lib/postgresql/15/bin/pg_controldata",
    "/usr/lib/postgresql/15/bin/initdb",
    "/usr/lib/postgresql/15/bin/postgres",
    "mariadb",
    "mariadb-dump",
    "mariadb-binlog",
    "mariabackup",
    "mbstream",
    "mariadbd",
    "mariadb-install-db",
];

fn which(program: &str) -> String {
    if program.starts_with('/') {
        return program.to_owned();
    }
    let out = Command::new("sh")
        .args(["-c", &format!("readlink -f \"$(command -v {program})\"")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "{program} is needed: run the tests with `scripts/test` (it installs MariaDB)"
    );
    path
}

#[test]
fn the_dockerfile_installs_what_the_engines_run_and_runs_the_binary_unprivileged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    // Continuation lines joined, comments dropped: one instruction a line.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instructions: Vec<(&str, &str)> = joined
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .collect();
    let arg = |name: &str| {
        instructions
            .iter()
            .filter(|(i, _)| *i == "ARG")
            .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('"').to_owned())
    };

    // Two stages; the last runs on this machine's Debian release.
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| *i == "FROM")
        .map(|(_, v)| *v)
        .collect();
    assert!(froms.len() >= 2, "{froms:?}");
    let release = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_owned))
        .unwrap();
    assert_eq!(arg("DEBIAN_RELEASE").as_deref(), Some(release.as_str()));
    let runtime = froms.last().unwrap();
    assert!(
        runtime.starts_with("debian:${DEBIAN_RELEASE}-slim"),
        "{runtime}"
    );

    // Every program's package, as this machine's dpkg says, is installed.
    let majors = arg("PG_MAJORS").unwrap();
    let mut installed: Vec<String> = Vec::new();
    for (i, v) in &instructions {
        if *i == "RUN" && v.contains("apt-get install") {
            installed.extend(v.split_whitespace().map(str::to_owned));
        }
    }
    for major in majors.split_whitespace() {
        installed.push(format!("postgresql-client-{major}"));
        installed.push(format!("postgresql-{major}"));
    }
    for program in PROGRAMS {
        let path = which(program);
        let out = Command::new("dpkg").args(["-S", &path]).output().unwrap();
        let owner = String::from_utf8_lossy(&out.stdout);
        let package = owner.split(':').next().unwrap().trim().to_owned();
        assert!(!package.is_empty(), "no package provides {path}: {out:?}");
        // mariadb-client depends on mariadb-client-core, which brings `mariadb`.
        let provided = installed.contains(&package)
            || (package == "mariadb-client-core"
                && installed.iter().any(|p| p == "mariadb-client"));
        assert!(
            provided,
            "{program} comes from {package}, which the image does not install"
        );
    }

    // The build copies every folder the crate compiles from (include_str! of policies and fixtures).
    let copied: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| *i == "COPY")
        .map(|(_, v)| *v)
        .collect();
    for dir in ["src", "benches", "policies", "fixtures"] {
        assert!(
            copied.iter().any(|c| c.starts_with(&format!("{dir} "))),
            "{dir} is not copied: {copied:?}"
        );
    }
    assert!(copied.iter().any(|c| c.contains("Cargo.lock")));
    assert!(joined.contains("cargo build --release --locked"));

    // The user: not root, the one the chart's pods run as.
    let user = instructions
        .iter()
        .rev()
        .find(|(i, _)| *i == "USER")
        .map(|(_, v)| *v)
        .unwrap();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    let values = std::fs::read_to_string(root.join("charts/heirloom-backup/values.yaml")).unwrap();
    assert!(
        values.contains(&format!("runAsUser: {uid}")),
        "the chart runs as another user"
    );
    assert!(joined.contains(&format!("--uid {uid}")));
    // The entry point is the binary itself, in exec form: no shell at run time.
    let entry = instructions
        .iter()
        .find(|(i, _)| *i == "ENTRYPOINT")
        .map(|(_, v)| *v)
        .unwrap();
    let entry: Vec<String> = serde_json::from_str(entry).unwrap();
    assert_eq!(entry, ["/usr/local/bin/heirloom-backup"]);
    assert!(copied
        .iter()
        .any(|c| c.contains("--from=build") && c.ends_with("/usr/local/bin/heirloom-backup")));
}
