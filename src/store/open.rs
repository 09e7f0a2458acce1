//! Opening a store from a repository URL and its options.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::memory::InMemory;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;

use super::{LocalBackend, ObjectStoreBackend, Store, StoreError};

/// Options of a repository's store, as given in `repository.options` of the config.
///
/// `retry_timeout` (a duration such as `30s` or `5m`) and `max_retries` are ours; every other key is
/// handed to the backend's builder (for S3 `endpoint`, `region`, `allow_http`,
/// `virtual_hosted_style_request`, `timeout`, `connect_timeout`, ...), which rejects keys it does not
/// know.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions(pub BTreeMap<String, String>);

struct Tuning {
    retry_timeout: Duration,
    max_retries: usize,
}

impl StoreOptions {
    fn split(&self) -> Result<(Tuning, Vec<(String, String)>), StoreError> {
        let mut tuning = Tuning {
            retry_timeout: Duration::from_secs(180),
            max_retries: 10,
        };
        // Client defaults, overridable: a request may take 5 minutes, a connection 10 seconds.
        let mut rest = vec![
            ("timeout".to_owned(), "300s".to_owned()),
            ("connect_timeout".to_owned(), "10s".to_owned()),
        ];
        for (key, value) in &self.0 {
            let bad = |why: String| StoreError::BadOption {
                option: key.clone(),
                why,
            };
            match key.as_str() {
                "retry_timeout" => tuning.retry_timeout = parse_duration(value).map_err(bad)?,
                "max_retries" => {
                    tuning.max_retries = value
                        .parse()
                        .map_err(|_| bad(format!("{value:?} is not a whole number")))?
                }
                _ => rest.push((key.clone(), value.clone())),
            }
        }
        Ok((tuning, rest))
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 5m or 500ms"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Opens the store a repository URL names: `file:///path` (or a bare path), `memory://`,
/// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
///
/// Credentials for the clouds come from the standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and
/// may be overridden by `options`.
pub fn open_store(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
    let bad_url = |why: &str| StoreError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    if url.is_empty() {
        return Err(bad_url("empty"));
    }
    if !url.contains("://") {
        return Ok(local(PathBuf::from(url)));
    }
    let parsed = Url::parse(url).map_err(|e| bad_url(&e.to_string()))?;
    let (tuning, rest) = options.split()?;
    let prefix = parsed.path().trim_matches('/').to_owned();
    let location = url.trim_end_matches('/').to_owned();
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "file" => {
            if parsed
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(bad_url(
                    "a file:// URL must be absolute: file:///path/to/repo",
                ));
            }
            let path = parsed
                .to_file_path()
                .map_err(|_| bad_url("not a local path"))?;
            return Ok(local(path));
        }
        "memory" => memory_store(&location),
        "s3" => {
            let mut b = AmazonS3Builder::from_env().with_url(url);
            for (k, v) in rest {
                let key = AmazonS3ConfigKey::from_str(&k).map_err(|_| unknown_option(&k, "s3"))?;
                b = b.with_config(key, v);
            }
            let b = b.with_retry(retry_config(&tuning));
            Arc::new(b.build().map_err(|e| bad_url(&e.to_string()))?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url);
            for (k, v) in rest {
                let key = GoogleConfigKey::from_str(&k).map_err(|_| unknown_option(&k, "gs"))?;
                b = b.with_config(key, v);
            }
            let b = b.with_retry(retry_config(&tuning));
            Arc::new(b.build().map_err(|e| bad_url(&e.to_string()))?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
            for (k, v) in rest {
                let key = AzureConfigKey::from_str(&k).map_err(|_| unknown_option(&k, "az"))?;
                b = b.with_config(key, v);
            }
            let b = b.with_retry(retry_config(&tuning));
            Arc::new(b.build().map_err(|e| bad_url(&e.to_string()))?)
        }
        other => {
            return Err(bad_url(&format!(
                "unknown scheme {other:?}; use file://, s3://, gs://, az:// or memory://"
            )))
        }
    };
    Ok(Store::new(Arc::new(ObjectStoreBackend::new(
        store, &prefix, location,
    ))))
}

/// memory:// stores live as long as the process; the same URL opens the same store.
fn memory_store(location: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stores
        .entry(location.to_owned())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

fn local(path: PathBuf) -> Store {
    Store::new(Arc::new(LocalBackend::new(path)))
}

fn unknown_option(key: &str, scheme: &str) -> StoreError {
    StoreError::BadOption {
        option: key.to_owned(),
        why: format!("not an option of {scheme}:// stores"),
    }
}

fn retry_config(t: &Tuning) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: t.max_retries,
        retry_timeout: t.retry_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn unknown_scheme_is_named() {
        let err = open_store("ftp://x/y", &StoreOptions::default()).unwrap_err();
        assert!(err.to_string().contains("unknown scheme \"ftp\""), "{err}");
    }

    #[test]
    fn unknown_s3_option_is_named() {
        let mut o = StoreOptions::default();
        o.0.insert("endpont".into(), "http://x".into());
        let err = open_store("s3://bucket/p", &o).unwrap_err();
        assert!(err.to_string().contains("endpont"), "{err}");
    }
}
