//! `heirloom.yaml` and its environment overrides, parsed into types that cannot hold a bad value.
//!
//! ```yaml
//! repository:
//!   url: s3://bucket/prefix          # file:// s3:// gs:// az:// memory://
//!   key_file: /etc/heirloom/key      # or the passphrase in HEIRLOOM_PASSPHRASE
//!   options: { endpoint: http://127.0.0.1:9000, region: us-east-1, allow_http: true }
//! sources:
//!   prod-pg: { kind: postgres, url: "postgres://...", data_dir: /var/lib/postgresql/data }
//! targets:
//!   staging: { kind: postgres, data_dir: /restore/pgdata }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::engine::{SourceConfig, TargetConfig};
use crate::repo::keys::{KeyFileError, KeySource, Permissions};
use crate::repo::source::SourceName;
use crate::retention::policy::{Policy, PolicyError, DEFAULT_POLICY, DEFAULT_REPACK_THRESHOLD};
use crate::store::StoreOptions;

/// A config problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {file}: {field}: {why}")]
    Invalid {
        file: String,
        field: String,
        why: String,
    },
    #[error("no repository: set repository.url in heirloom.yaml, HEIRLOOM_REPO, or --repo")]
    NoRepository,
    #[error("no key: set repository.key_file in heirloom.yaml, HEIRLOOM_KEY_FILE, --key-file, or the passphrase in HEIRLOOM_PASSPHRASE")]
    NoKey,
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub repository: RepositoryConfig,
    pub sources: BTreeMap<SourceName, SourceConfig>,
    pub targets: BTreeMap<String, TargetConfig>,
    /// `retention.default`: the policy of every source that names none.
    pub default_policy: Option<Policy>,
    /// `sources.NAME.policy`: a source's own policy.
    pub source_policies: BTreeMap<SourceName, Policy>,
    /// `sources.NAME.schedules`: the jobs the agent runs for a source, and when.
    pub schedules: BTreeMap<SourceName, crate::agent::config::Schedules>,
    /// Sources whose `url` names an environment variable this process does not have (a pod
    /// gets only its own source's Secrets): the rest of the config works, and what needs one of
    /// these fails naming the variable.
    pub unresolved_sources: BTreeMap<SourceName, Unresolved>,
    /// Targets whose `url` names an environment variable this process does not have.
    pub unresolved_targets: BTreeMap<String, Unresolved>,
}

/// A source or target of the config that cannot be used in this process.
#[derive(Debug, Clone)]
pub struct Unresolved {
    /// The field, `sources.NAME.url`.
    pub field: String,
    /// Why: the variables not set.
    pub why: String,
    /// Its engine, when the rest of its entry reads.
    pub engine: Option<&'static str>,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

/// `retention:` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionConfig {
    /// A shipped policy's name, or a policy file (relative to the config file's folder).
    default: Option<String>,
}

/// The file as YAML gives it: sources and targets stay untyped until their `kind` says which
/// engine's type reads them (so an error inside one still names its field).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    repository: RepositoryConfig,
    #[serde(default)]
    sources: BTreeMap<SourceName, serde_json::Value>,
    #[serde(default)]
    targets: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    retention: RetentionConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    pub url: Option<String>,
    pub key_file: Option<PathBuf>,
    /// Accept a key file that its group or others may read (refused by default).
    #[serde(default)]
    pub allow_insecure_key_file: bool,
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
    /// The bucket's default Object Lock retention (`{ mode: compliance, days: 30 }`), where it
    /// has one: prune deletes nothing it still locks, and checks the policies' `immutability`
    /// against it.
    #[serde(default)]
    pub object_lock: Option<crate::repo::object_lock::ObjectLock>,
}

/// A store option: YAML may write `allow_http: true` or `max_retries: 3`; the store takes text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl OptionValue {
    fn text(&self) -> String {
        match self {
            OptionValue::Bool(b) => b.to_string(),
            OptionValue::Int(i) => i.to_string(),
            OptionValue::Float(f) => f.to_string(),
            OptionValue::Text(s) => s.clone(),
        }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse_in(&text, &path.display().to_string(), path.parent())
    }

    /// Parses config text; `file` names it in messages. Policy files are looked for from the
    /// current folder.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        Self::parse_in(text, file, None)
    }

    /// Whether the config names `source`, usable here or not.
    pub fn declares(&self, source: &SourceName) -> bool {
        self.sources.contains_key(source) || self.unresolved_sources.contains_key(source)
    }

    /// Every source the config names, usable here or not.
    pub fn source_names(&self) -> impl Iterator<Item = &SourceName> {
        self.sources.keys().chain(self.unresolved_sources.keys())
    }

    /// The policy of `source`: its own, else the config's default, else the shipped default.
    pub fn policy_for(&self, source: &SourceName) -> Result<Policy, PolicyError> {
        match self
            .source_policies
            .get(source)
            .or(self.default_policy.as_ref())
        {
            Some(p) => Ok(p.clone()),
            None => Policy::named_or_file(DEFAULT_POLICY),
        }
    }

    /// The repack threshold (percent dead) garbage collection uses: `policy`'s when one is given
    /// for every source, else the lowest of the policies in force (the config's default and each
    /// source's own), since packs are shared by every source of the repository.
    pub fn repack_threshold(&self, policy: Option<&Policy>) -> Result<f64, PolicyError> {
        let stated = |p: &Policy| p.repack_threshold.unwrap_or(DEFAULT_REPACK_THRESHOLD);
        if let Some(p) = policy {
            return Ok(stated(p));
        }
        let default = match &self.default_policy {
            Some(p) => stated(p),
            None => stated(&Policy::named_or_file(DEFAULT_POLICY)?),
        };
        Ok(self
            .source_policies
            .values()
            .map(stated)
            .fold(default, f64::min))
    }

    /// Parses config text whose policy files are named relative to `dir`.
    fn parse_in(text: &str, file: &str, dir: Option<&Path>) -> Result<Self, ConfigError> {
        let invalid = |field: String, why: String| ConfigError::Invalid {
            file: file.to_owned(),
            field,
            why: crate::redact::redact(&why),
        };
        // serde-saphyr parses; serde_path_to_error remembers where a value did not fit, so the
        // message names the field (`sources.db.dta_dir`), not only a line.
        let mut at: Option<(String, String)> = None;
        let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
                let field = e.path().to_string();
                let why = e.inner().to_string();
                at = Some((field, why.clone()));
                <serde_saphyr::Error as serde::de::Error>::custom(why)
            })
        });
        let raw: RawConfig = match (parsed, at) {
            (Ok(c), _) => c,
            (Err(_), Some((field, why))) => {
                let field = if field == "." || field.is_empty() {
                    "(top level)".to_owned()
                } else {
                    field
                };
                // The parser may say the path itself before its message: say it once.
                let why = first_line(&why);
                let why = match why.split_once(": ") {
                    Some((path, rest)) if field.starts_with(path) => rest.to_owned(),
                    _ => why,
                };
                return Err(invalid(field, why));
            }
            (Err(e), None) => return Err(invalid("(syntax)".into(), e.to_string())),
        };
        let mut config = Config {
            repository: raw.repository,
            ..Config::default()
        };
        let policy = |name: &str, field: String| {
            let path = match dir {
                Some(dir) if Path::new(name).is_relative() => {
                    let in_dir = dir.join(name);
                    if in_dir.exists() {
                        in_dir.display().to_string()
                    } else {
                        name.to_owned()
                    }
                }
                _ => name.to_owned(),
            };
            Policy::named_or_file(&path).map_err(|e| invalid(field, e.to_string()))
        };
        if let Some(name) = &raw.retention.default {
            config.default_policy = Some(policy(name, "retention.default".into())?);
        }
        let env = |k: &str| std::env::var(k).ok();
        for (name, mut value) in raw.sources {
            let url_field = format!("sources.{name}.url");
            let unset = expand_url(&mut value, &url_field, &env)
                .map_err(|(field, why)| invalid(field, why))?;
            // `policy` is retention's, not the engine's: taken out before the engine reads the rest.
            if let Some(p) = value.as_object_mut().and_then(|m| m.remove("policy")) {
                let field = format!("sources.{name}.policy");
                let Some(p) = p.as_str() else {
                    return Err(invalid(field, "a policy's name or file".into()));
                };
                config
                    .source_policies
                    .insert(name.clone(), policy(p, field)?);
            }
            // So are `schedules`, the agent's.
            if let Some(v) = value.as_object_mut().and_then(|m| m.remove("schedules")) {
                let schedules =
                    crate::agent::config::parse_schedules(&v).map_err(|(field, why)| {
                        invalid(under(format!("sources.{name}.schedules"), field), why)
                    })?;
                config.schedules.insert(name.clone(), schedules);
            }
            let source = SourceConfig::from_value(value);
            match unset {
                None => {
                    let source = source.map_err(|(field, why)| {
                        invalid(under(format!("sources.{name}"), field), why)
                    })?;
                    config.sources.insert(name, source);
                }
                // A placeholder stood for each variable not set: an error in the URL may be the
                // placeholder's and waits until the variable is there; any other is said now.
                Some(why) => {
                    let engine = match source {
                        Ok(s) => Some(s.engine()),
                        Err((field, _)) if field == "url" => None,
                        Err((field, why)) => {
                            return Err(invalid(under(format!("sources.{name}"), field), why))
                        }
                    };
                    let unresolved = Unresolved {
                        field: url_field,
                        why,
                        engine,
                    };
                    config.unresolved_sources.insert(name, unresolved);
                }
            }
        }
        for (name, mut value) in raw.targets {
            let url_field = format!("targets.{name}.url");
            let unset = expand_url(&mut value, &url_field, &env)
                .map_err(|(field, why)| invalid(field, why))?;
            let target = TargetConfig::from_value(value);
            match unset {
                None => {
                    let target = target.map_err(|(field, why)| {
                        invalid(under(format!("targets.{name}"), field), why)
                    })?;
                    config.targets.insert(name, target);
                }
                Some(why) => {
                    let engine = match target {
                        Ok(t) => Some(t.engine()),
                        Err((field, _)) if field == "url" => None,
                        Err((field, why)) => {
                            return Err(invalid(under(format!("targets.{name}"), field), why))
                        }
                    };
                    let unresolved = Unresolved {
                        field: url_field,
                        why,
                        engine,
                    };
                    config.unresolved_targets.insert(name, unresolved);
                }
            }
        }
        config.check().map_err(|(field, why)| invalid(field, why))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), (String, String)> {
        if let Some(url) = &self.repository.url {
            check_repo_url(url).map_err(|why| ("repository.url".to_owned(), why))?;
        }
        for (key, value) in &self.repository.options {
            if matches!(value, OptionValue::Text(s) if s.is_empty()) {
                return Err((format!("repository.options.{key}"), "empty value".into()));
            }
        }
        if self.repository.object_lock.is_some_and(|l| l.days == 0) {
            return Err((
                "repository.object_lock.days".into(),
                "0 days of retention is no lock: leave object_lock out".into(),
            ));
        }
        for (name, source) in &self.sources {
            source
                .check()
                .map_err(|(field, why)| (under(format!("sources.{name}"), field), why))?;
        }
        for (name, target) in &self.targets {
            target
                .check()
                .map_err(|(field, why)| (under(format!("targets.{name}"), field), why))?;
        }
        Ok(())
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions(
            self.repository
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.text()))
                .collect(),
        )
    }
}

/// `base.field`, or `base` for the entry as a whole.
fn under(base: String, field: String) -> String {
    if field.is_empty() {
        base
    } else {
        format!("{base}.{field}")
    }
}

/// The first line of a message: the deserializer may add a snippet of the file after it.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).trim().to_owned()
}

fn check_repo_url(url: &str) -> Result<(), String> {
    crate::store::check_url_shape(url)?;
    if !url.contains("://") {
        return Ok(()); // an absolute local path
    }
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    match parsed.scheme() {
        "file" | "memory" | "s3" | "gs" | "az" | "azure" | "abfs" | "abfss" => Ok(()),
        other => Err(format!(
            "unknown scheme {other:?}; use file://, s3://, gs://, az:// or memory://"
        )),
    }
}

/// Where the repository is and how to unlock it, after flags, environment and file are combined.
#[derive(Debug)]
pub struct RepoSettings {
    pub url: String,
    pub options: StoreOptions,
    pub key: KeySpec,
    /// How a key file's permissions are checked.
    pub key_file_permissions: Permissions,
}

impl RepoSettings {
    /// Reads the key the settings name.
    pub fn load_key(&self) -> Result<KeySource, ConfigError> {
        self.key.load(self.key_file_permissions)
    }
}

/// The key the settings name; read only when a command needs it.
#[derive(Debug, Clone)]
pub enum KeySpec {
    File(PathBuf),
    Passphrase(String),
    None,
}

impl KeySpec {
    pub fn load(&self, permissions: Permissions) -> Result<KeySource, ConfigError> {
        match self {
            KeySpec::File(p) => Ok(KeySource::key_file(p, permissions)?),
            KeySpec::Passphrase(p) => Ok(KeySource::passphrase(p.clone())),
            KeySpec::None => Err(ConfigError::NoKey),
        }
    }
}

/// Combines, in order of precedence: command-line flags, environment (`HEIRLOOM_REPO`,
/// `HEIRLOOM_KEY_FILE`, `HEIRLOOM_PASSPHRASE`), then the config file.
pub fn resolve(
    config: &Config,
    repo_flag: Option<&str>,
    key_file_flag: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RepoSettings, ConfigError> {
    let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    let url = repo_flag
        .map(str::to_owned)
        .or_else(|| env_nonempty("HEIRLOOM_REPO"))
        .or_else(|| config.repository.url.clone())
        .ok_or(ConfigError::NoRepository)?;
    check_repo_url(&url).map_err(|why| ConfigError::Invalid {
        file: "--repo / HEIRLOOM_REPO".into(),
        field: "repository.url".into(),
        why,
    })?;
    let key = if let Some(p) = key_file_flag {
        KeySpec::File(p.to_owned())
    } else if let Some(p) = env_nonempty("HEIRLOOM_KEY_FILE") {
        KeySpec::File(PathBuf::from(p))
    } else if let Some(p) = &config.repository.key_file {
        KeySpec::File(p.clone())
    } else if let Some(p) = env_nonempty("HEIRLOOM_PASSPHRASE") {
        KeySpec::Passphrase(p)
    } else {
        KeySpec::None
    };
    let insecure = config.repository.allow_insecure_key_file
        || env_nonempty("HEIRLOOM_ALLOW_INSECURE_KEY_FILE").is_some_and(|v| v != "0");
    Ok(RepoSettings {
        url,
        options: config.store_options(),
        key,
        key_file_permissions: if insecure {
            Permissions::Any
        } else {
            Permissions::OwnerOnly
        },
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

/// Replaces each `${NAME}` in the `url` of a source or target with the environment variable
/// `NAME`, percent-encoded, so that a password from a Kubernetes Secret can sit in the URL's user
/// part (`mysql://root:${MYSQL_ROOT_PASSWORD}@db:3306`) without the file holding it. A variable
/// not set is replaced by a placeholder and named in the `Ok(Some(why))`: the entry is read, but
/// cannot be used.
fn expand_url(
    value: &mut serde_json::Value,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, (String, String)> {
    let Some(url) = value.get_mut("url") else {
        return Ok(None);
    };
    let Some(text) = url.as_str().filter(|t| t.contains('$')) else {
        return Ok(None);
    };
    let unset = std::cell::RefCell::new(Vec::<String>::new());
    let or_placeholder = |name: &str| {
        env(name).or_else(|| {
            unset.borrow_mut().push(name.to_owned());
            Some("unset".to_owned())
        })
    };
    let expanded = expand_env(text, &or_placeholder).map_err(|why| (field.to_owned(), why))?;
    *url = serde_json::Value::String(expanded);
    let unset = unset.into_inner();
    Ok(match unset.as_slice() {
        [] => None,
        [one] => Some(format!("the environment variable {one} is not set")),
        many => Some(format!(
            "the environment variables {} are not set",
            many.join(", ")
        )),
    })
}

/// `text` with each `${NAME}` replaced by the variable's value, percent-encoded; `$$` is a `$`.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(more) = after.strip_prefix('$') {
            out.push('$');
            rest = more;
            continue;
        }
        let name = after
            .strip_prefix('{')
            .and_then(|a| a.find('}').map(|end| &a[..end]))
            .filter(|n| {
                n.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .ok_or("a `$` starts `${NAME}` (an environment variable) or `$$` (a `$`)")?;
        let value =
            env(name).ok_or_else(|| format!("the environment variable {name} is not set"))?;
        out.extend(percent_encoding::utf8_percent_encode(&value, KEEP));
        rest = &after[name.len() + 2..];
    }
    out.push_str(rest);
    Ok(out)
}
