//! Opening a store from a repository URL and its options.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::memory::InMemory;
use object_store::ClientOptions;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;

use super::deadline::DeadlineBackend;
use super::{LocalBackend, ObjectStoreBackend, Store, StoreError};

/// Options of a repository's store, as given in `repository.options` of the config.
///
/// `retry_timeout` (a duration such as `30s` or `5m`), `max_retries` and `lease_ttl` are ours; every
/// other key is handed to the backend's builder (for S3 `endpoint`, `region`, `allow_http`,
/// `virtual_hosted_style_request`, `timeout`, `connect_timeout`, ...), which rejects keys it does not
/// know. Local and memory stores take `lease_ttl` only, so a key meant for S3 is never silently
/// ignored.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions(pub BTreeMap<String, String>);

/// How long one store call may take, retries included, unless `retry_timeout` says otherwise.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one request may take, unless `timeout` says otherwise.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

struct Tuning {
    retry_timeout: Duration,
    max_retries: usize,
    lease_ttl: Duration,
}

/// The shortest `lease_ttl`: a lease is renewed every third of it, and a renewal is a put.
const MIN_LEASE_TTL: Duration = Duration::from_secs(3);

fn parse_lease_ttl(value: &str) -> Result<Duration, StoreError> {
    let bad = |why: String| StoreError::BadOption {
        option: "lease_ttl".into(),
        why,
    };
    let ttl = parse_duration(value).map_err(bad)?;
    if ttl < MIN_LEASE_TTL {
        return Err(bad(format!(
            "{value:?} is too short: a lease is renewed every third of it; at least 3s"
        )));
    }
    Ok(ttl)
}

impl StoreOptions {
    /// The bound on one store call, retries included: `retry_timeout`, 180 s by default.
    pub fn call_deadline(&self) -> Result<Duration, StoreError> {
        Ok(self.split()?.0.retry_timeout)
    }

    fn split(&self) -> Result<(Tuning, Vec<(String, String)>), StoreError> {
        let mut tuning = Tuning {
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            max_retries: 10,
            lease_ttl: super::DEFAULT_LEASE_TTL,
        };
        let mut rest = Vec::new();
        for (key, value) in &self.0 {
            let bad = |why: String| StoreError::BadOption {
                option: key.clone(),
                why,
            };
            match key.as_str() {
                "retry_timeout" => tuning.retry_timeout = parse_duration(value).map_err(bad)?,
                "lease_ttl" => tuning.lease_ttl = parse_lease_ttl(value)?,
                "max_retries" => {
                    tuning.max_retries = value
                        .parse()
                        .map_err(|_| bad(format!("{value:?} is not a whole number")))?
                }
                _ => rest.push((key.clone(), value.clone())),
            }
        }
        if tuning.retry_timeout.is_zero() {
            return Err(StoreError::BadOption {
                option: "retry_timeout".into(),
                why: "must be above zero".into(),
            });
        }
        // Client defaults, overridable: a connection may take 10 seconds, a request a minute (or
        // the whole retry_timeout, when that is shorter). A store call is cut at retry_timeout
        // whatever these say (see `Deadline`).
        // A hair above the deadline when that is shorter, so the deadline (with its clear
        // message) is what ends a call to a silent store.
        let request = DEFAULT_REQUEST_TIMEOUT.min(tuning.retry_timeout + Duration::from_secs(1));
        for (key, default) in [
            ("timeout", format!("{}ms", request.as_millis())),
            ("connect_timeout", "10s".to_owned()),
        ] {
            if !rest.iter().any(|(k, _)| k == key) {
                rest.push((key.to_owned(), default));
            }
        }
        Ok((tuning, rest))
    }

    /// The lease lifetime of a store that takes no other option (local and memory ones); any other
    /// option is refused.
    fn lease_ttl_only(&self, scheme: &str) -> Result<Duration, StoreError> {
        match self.0.keys().find(|k| *k != "lease_ttl") {
            Some(key) => Err(StoreError::BadOption {
                option: key.clone(),
                why: format!("{scheme} stores take no options but lease_ttl (repository.options is for s3://, gs:// and az://)"),
            }),
            None => self
                .0
                .get("lease_ttl")
                .map_or(Ok(super::DEFAULT_LEASE_TTL), |v| parse_lease_ttl(v)),
        }
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
    check_url_shape(url).map_err(|why| bad_url(&why))?;
    if !url.contains("://") {
        let ttl = options.lease_ttl_only("local")?;
        return Ok(local(PathBuf::from(url)).with_lease_ttl(ttl));
    }
    let parsed = Url::parse(url).map_err(|e| bad_url(&e.to_string()))?;
    if matches!(parsed.scheme(), "file" | "memory") {
        options.lease_ttl_only(&format!("{}://", parsed.scheme()))?;
    }
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
            return Ok(local(path).with_lease_ttl(tuning.lease_ttl));
        }
        "memory" => memory_store(&location),
        "s3" => {
            // A bucket under S3 Object Lock refuses a PUT that carries no checksum: every put
            // carries its SHA-256 (`x-amz-checksum-sha256`) and names the algorithm, as the AWS
            // SDKs do. The client options come first: the environment and the options below add
            // to them.
            let mut headers = object_store::HeaderMap::new();
            headers.insert(
                "x-amz-sdk-checksum-algorithm",
                object_store::HeaderValue::from_static("SHA256"),
            );
            let mut b = AmazonS3Builder::new()
                .with_client_options(ClientOptions::new().with_default_headers(headers));
            for (key, value) in std::env::vars() {
                if key.starts_with("AWS_") {
                    if let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        b = b.with_config(config, value);
                    }
                }
            }
            let mut b = b.with_url(url).with_checksum_algorithm(Checksum::SHA256);
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
    let backend = Arc::new(ObjectStoreBackend::new(store, &prefix, location));
    Ok(Store::new(Arc::new(DeadlineBackend::new(
        backend,
        tuning.retry_timeout,
    )))
    .with_lease_ttl(tuning.lease_ttl))
}

/// The rule for what may name a repository, before any store is touched: a URL with a scheme, or
/// an absolute path. A relative path is refused, because `s3//bucket/p` (a missing colon) or
/// `bucket/p` would otherwise become a local directory below wherever the command happened to run.
pub fn check_url_shape(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("empty".into());
    }
    if url.contains("://") || Path::new(url).is_absolute() {
        return Ok(());
    }
    let looks_like = ["s3", "gs", "az", "azure", "abfs", "abfss", "file", "memory"]
        .iter()
        .find_map(|scheme| {
            let rest = url.strip_prefix(scheme)?;
            let rest = rest
                .strip_prefix(":/")
                .or_else(|| rest.strip_prefix("//"))
                .or_else(|| rest.strip_prefix(":"))?;
            Some(format!("{scheme}://{}", rest.trim_start_matches('/')))
        });
    Err(match looks_like {
        Some(meant) => format!("not a URL and not an absolute path; did you mean {meant:?}?"),
        None => "a relative path: give an absolute path or file:///absolute/path (a relative one would depend on the directory the command runs in)".into(),
    })
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
    fn relative_and_mistyped_urls_are_refused() {
        for (url, hint) in [
            ("s3//bucket/p", "did you mean \"s3://bucket/p\""),
            ("s3:/bucket/p", "did you mean \"s3://bucket/p\""),
            ("gs:bucket", "did you mean \"gs://bucket\""),
            ("backups/repo", "relative path"),
            ("./repo", "relative path"),
        ] {
            let err = open_store(url, &StoreOptions::default()).unwrap_err();
            assert!(err.to_string().contains(hint), "{url}: {err}");
        }
        assert!(open_store("/srv/repo", &StoreOptions::default()).is_ok());
    }

    #[test]
    fn local_and_memory_stores_refuse_every_option_but_the_lease_lifetime() {
        let mut o = StoreOptions::default();
        o.0.insert("endpoint".into(), "http://x".into());
        for url in ["file:///srv/repo", "/srv/repo", "memory://"] {
            let err = open_store(url, &o).unwrap_err();
            assert!(
                err.to_string().contains("\"endpoint\"")
                    && err.to_string().contains("take no options"),
                "{url}: {err}"
            );
        }
        let mut o = StoreOptions::default();
        o.0.insert("lease_ttl".into(), "30s".into());
        for url in ["file:///srv/repo", "/srv/repo", "memory://", "s3://b/p"] {
            let store = open_store(url, &o).unwrap();
            assert_eq!(store.lease_ttl(), Duration::from_secs(30), "{url}");
        }
        assert_eq!(
            open_store("/srv/repo", &StoreOptions::default())
                .unwrap()
                .lease_ttl(),
            crate::store::DEFAULT_LEASE_TTL
        );
        o.0.insert("lease_ttl".into(), "1s".into());
        let err = open_store("file:///srv/repo", &o).unwrap_err().to_string();
        assert!(
            err.contains("lease_ttl") && err.contains("at least 3s"),
            "{err}"
        );
    }

    #[test]
    fn the_request_timeout_never_exceeds_the_call_deadline() {
        let mut o = StoreOptions::default();
        o.0.insert("retry_timeout".into(), "3s".into());
        let (_, rest) = o.split().unwrap();
        assert!(rest.contains(&("timeout".to_owned(), "4000ms".to_owned())));
        assert_eq!(o.call_deadline().unwrap(), Duration::from_secs(3));
        assert_eq!(
            StoreOptions::default().call_deadline().unwrap(),
            DEFAULT_RETRY_TIMEOUT
        );
        o.0.insert("timeout".into(), "1s".into());
        let (_, rest) = o.split().unwrap();
        assert_eq!(rest.iter().filter(|(k, _)| k == "timeout").count(), 1);
    }

    #[test]
    fn unknown_s3_option_is_named() {
        let mut o = StoreOptions::default();
        o.0.insert("endpont".into(), "http://x".into());
        let err = open_store("s3://bucket/p", &o).unwrap_err();
        assert!(err.to_string().contains("endpont"), "{err}");
    }
}
