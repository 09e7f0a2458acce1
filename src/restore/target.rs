//! `--to TARGET`: a target named in the config, a `postgres://` or `mysql://` URL, or a directory.

use std::path::PathBuf;

use crate::config::Config;
use crate::engine::{self, TargetConfig};
use crate::redact::redact;

/// Where a restore goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A data directory, laid down for a server to start on.
    Directory(PathBuf),
    /// A running server, by its connection URL.
    Server(String),
}

impl Destination {
    /// For messages and plans: a directory's path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Destination::Directory(dir) => dir.display().to_string(),
            Destination::Server(url) => redact(url),
        }
    }
}

/// A target resolved: where it goes and, when that is known, which engine it is for.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    /// The words it was given as (a config name, a URL, a path).
    pub given: String,
    /// The engine the config or the URL's scheme names; `None` for a bare directory.
    pub engine: Option<&'static str>,
    pub destination: Destination,
}

/// Reads `--to`: a name from the config's `targets` first, then a URL whose scheme an engine
/// takes, then a directory path.
pub fn resolve_target(config: &Config, to: &str) -> Result<RestoreTarget, String> {
    if let Some(target) = config.targets.get(to) {
        return Ok(from_config(to, target));
    }
    if let Some(unresolved) = config.unresolved_targets.get(to) {
        return Err(format!(
            "target {to} cannot be reached from here: {unresolved}"
        ));
    }
    if let Some((scheme, _)) = to.split_once("://") {
        let engine = engine::engine_for_scheme(scheme).ok_or_else(|| {
            format!(
                "{}: not a target in the config, and {scheme}:// is not a database URL ({})",
                redact(to),
                engine::schemes().join(", ")
            )
        })?;
        return Ok(RestoreTarget {
            given: redact(to),
            engine: Some(engine),
            destination: Destination::Server(to.to_owned()),
        });
    }
    if to.is_empty() {
        return Err("--to needs a target: a name from the config, a URL, or a directory".into());
    }
    Ok(RestoreTarget {
        given: to.to_owned(),
        engine: None,
        destination: Destination::Directory(PathBuf::from(to)),
    })
}

impl RestoreTarget {
    /// Refuses a target the config or its URL gives to another engine than `engine`, the engine
    /// of source `source`.
    pub fn check_engine(&self, engine: &str, source: &str) -> Result<(), String> {
        match self.engine {
            Some(other) if other != engine => Err(format!(
                "target {} is a {other} target, and source {source} is a {engine} source",
                self.given
            )),
            _ => Ok(()),
        }
    }
}

fn from_config(name: &str, target: &TargetConfig) -> RestoreTarget {
    RestoreTarget {
        given: name.to_owned(),
        engine: Some(target.engine()),
        destination: target.destination(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_urls_and_directories() {
        let config = Config::parse(
            "targets:\n  staging: { kind: postgres, data_dir: /restore/pg }\n  shop: { kind: mysql, url: 'mysql://u:pw@h/shop' }\n",
            "x",
        )
        .unwrap();
        let t = resolve_target(&config, "staging").unwrap();
        assert_eq!(t.engine, Some("postgres"));
        assert_eq!(t.destination, Destination::Directory("/restore/pg".into()));
        let t = resolve_target(&config, "shop").unwrap();
        assert_eq!(t.engine, Some("mysql"));
        assert_eq!(t.destination.describe(), "mysql://u:***@h/shop");
        let t = resolve_target(&config, "postgresql://u:secret@db/app").unwrap();
        assert_eq!(t.engine, Some("postgres"));
        assert!(!t.given.contains("secret"));
        assert_eq!(
            resolve_target(&config, "mariadb://h").unwrap().engine,
            Some("mysql")
        );
        let t = resolve_target(&config, "/tmp/copy").unwrap();
        assert_eq!(t.engine, None);
        assert_eq!(t.destination, Destination::Directory("/tmp/copy".into()));
        let e = resolve_target(&config, "ftp://u:secret@h/x").unwrap_err();
        assert!(e.contains("ftp://") && !e.contains("secret"), "{e}");
    }
}
