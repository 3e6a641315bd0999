//! Object stores by URL: `file://` (and bare paths), `s3://`, `gs://`, `az://`/`abfss://`,
//! `http(s)://`, `memory://`.
//!
//! Every store built here lists like Spark ([`crate::hidden`]): names starting with `_` or `.`
//! are not data.
//!
//! [`StoreRegistry`] is the `ObjectStoreRegistry` of a session's DataFusion runtime, on the
//! driver and on every executor: a store is built the first time a URL of its bucket is used,
//! from the process's environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`, as each cloud's SDK reads
//! them; `AWS_ENDPOINT` and `AWS_ENDPOINT_URL` both work) overlaid with the session's
//! `faisca.store.<scheme>.<bucket>.<option>` keys (e.g. `faisca.store.s3.lake.endpoint`). With
//! an `http://` endpoint plain HTTP is allowed; S3 requests are path-style unless
//! `virtual_hosted_style_request` is set. `memory://` is one in-memory store per process.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreRegistry;
use faisca_common::locations::AllowedLocations;
use faisca_common::{Error, FaiscaConfig, Result};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use url::Url;

/// Session options of stores: `(scheme, bucket) → [(option, value)]`.
pub type StoreOptions = HashMap<(String, String), Vec<(String, String)>>;

/// The `faisca.store.<scheme>.<bucket>.<option>` keys of `config`.
pub fn store_options(config: &FaiscaConfig) -> StoreOptions {
    let mut out: StoreOptions = HashMap::new();
    for (key, value) in config.pairs() {
        let Some(rest) = key.strip_prefix("faisca.store.") else {
            continue;
        };
        let mut parts = rest.splitn(3, '.');
        if let (Some(scheme), Some(bucket), Some(option)) =
            (parts.next(), parts.next(), parts.next())
        {
            out.entry((scheme.to_string(), bucket.to_string()))
                .or_default()
                .push((option.to_string(), value.to_string()));
        }
    }
    out
}

fn memory_store() -> Arc<dyn ObjectStore> {
    static MEMORY: OnceLock<Arc<InMemory>> = OnceLock::new();
    MEMORY.get_or_init(|| Arc::new(InMemory::new())).clone()
}

/// The stores of one session (see the module docs).
#[derive(Debug)]
pub struct StoreRegistry {
    options: RwLock<StoreOptions>,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
    /// What `http(s)://` stores may connect to (`faisca.sql.allowedLocations`).
    allowed: AllowedLocations,
}

impl StoreRegistry {
    /// A registry whose stores take `config`'s `faisca.store.*` options.
    /// `http(s)://` stores check each request's resolved addresses against `config`'s
    /// `faisca.sql.allowedLocations` (on executors: the driver's rule, which the driver puts in
    /// every task's configuration).
    pub fn new(config: &FaiscaConfig) -> Self {
        StoreRegistry {
            options: RwLock::new(store_options(config)),
            stores: RwLock::new(HashMap::new()),
            allowed: config.allowed_locations(false),
        }
    }

    /// This registry checking `http(s)://` requests against `allowed` (the driver's rule, which
    /// a session's `SET` cannot change).
    pub fn with_allowed(mut self, allowed: AllowedLocations) -> Self {
        self.allowed = allowed;
        self
    }

    /// Take `config`'s `faisca.store.*` options from now on (after a `SET`): stores built with
    /// the old options are dropped and built again when next used.
    pub fn reconfigure(&self, config: &FaiscaConfig) {
        if let Ok(mut options) = self.options.write() {
            *options = store_options(config);
        }
        if let Ok(mut stores) = self.stores.write() {
            stores.retain(|key, _| key.starts_with("file://") || key.starts_with("memory://"));
        }
    }

    fn key(url: &Url) -> String {
        format!("{}://{}", url.scheme(), url.authority())
    }

    fn options(&self, scheme: &str, bucket: &str) -> Vec<(String, String)> {
        self.options
            .read()
            .ok()
            .and_then(|o| o.get(&(scheme.to_string(), bucket.to_string())).cloned())
            .unwrap_or_default()
    }

    fn build(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let bucket = url.host_str().unwrap_or_default();
        let bad_option = |scheme: &str, option: &str, e: object_store::Error| {
            Error::user(format!(
                "invalid store option faisca.store.{scheme}.{bucket}.{option}: {e}"
            ))
        };
        let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> = match url
            .scheme()
        {
            "file" => Ok(Arc::new(LocalFileSystem::new())),
            "memory" => Ok(memory_store()),
            "s3" | "s3a" => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL")
                    && std::env::var("AWS_ENDPOINT").is_err()
                {
                    b = b.with_endpoint(endpoint);
                }
                for (option, value) in self.options("s3", bucket) {
                    let key = option.parse().map_err(|e| bad_option("s3", &option, e))?;
                    if matches!(key, object_store::aws::AmazonS3ConfigKey::Endpoint) {
                        let what = format!("faisca.store.s3.{bucket}.{option}");
                        self.allowed.check_endpoint(&value, &what)?;
                    }
                    b = b.with_config(key, value);
                }
                let endpoint = b
                    .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
                    .unwrap_or_default();
                if endpoint.starts_with("http://") {
                    b = b.with_allow_http(true);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            "gs" => {
                let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                for (option, value) in self.options("gs", bucket) {
                    let key = option.parse().map_err(|e| bad_option("gs", &option, e))?;
                    b = b.with_config(key, value);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            "az" | "abfs" | "abfss" | "azure" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                for (option, value) in self.options("az", bucket) {
                    let key = option.parse().map_err(|e| bad_option("az", &option, e))?;
                    b = b.with_config(key, value);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            // object_store refuses plain HTTP unless told: a table at an `http://` URL asks for it.
            "http" | "https" => HttpBuilder::new()
                .with_url(Self::key(url))
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(url.scheme() == "http"),
                )
                .with_http_connector(crate::guarded_http::GuardedConnector::new(
                    self.allowed.clone(),
                ))
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            other => {
                return Err(Error::user(format!(
                    "unsupported URL scheme '{other}' in '{url}': expected file, s3, gs, az, abfss, http, https or memory"
                )));
            }
        };
        built.map_err(|e| {
            Error::user(format!(
                "cannot open the object store for '{}': {e}",
                Self::key(url)
            ))
        })
    }
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores.write().ok()?.insert(Self::key(url), store)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(store) = self.stores.read().ok().and_then(|s| s.get(&key).cloned()) {
            return Ok(store);
        }
        let built = self.build(url).map_err(DataFusionError::from)?;
        // Listings skip markers and work areas (`_SUCCESS`, `_temporary/`, `.crc`), as Spark's do.
        let store: Arc<dyn ObjectStore> = Arc::new(crate::hidden::HideMarkers::new(built));
        if let Ok(mut stores) = self.stores.write() {
            stores.entry(key).or_insert_with(|| store.clone());
        }
        Ok(store)
    }
}

/// The store and path of the directory `location` (a URL such as `s3://bucket/dir`, or a local
/// path), built with the store options of `config`; `what` names the setting in errors.
pub fn open_location(
    config: &FaiscaConfig,
    location: &str,
    what: &str,
) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path)> {
    let url = datafusion::datasource::listing::ListingTableUrl::parse(location).map_err(|e| {
        Error::user(format!(
            "{what} '{location}': {e}; expected a directory URL such as s3://bucket/dir or a local path"
        ))
    })?;
    let store = StoreRegistry::new(config)
        .get_store(url.object_store().as_ref())
        .map_err(|e| Error::from(e).context(format!("{what} '{location}'")))?;
    Ok((store, url.prefix().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faisca_common::config::is_store_key;

    #[test]
    fn store_keys_and_options() {
        assert!(is_store_key("faisca.store.s3.lake.endpoint"));
        assert!(!is_store_key("faisca.store.s3.lake"));
        assert!(!is_store_key("faisca.store.ftp.lake.x"));
        let config = FaiscaConfig::from_pairs([
            ("faisca.store.s3.lake.endpoint", "http://127.0.0.1:9"),
            ("faisca.store.s3.lake.region", "us-east-1"),
        ])
        .unwrap();
        let options = store_options(&config);
        assert_eq!(options[&("s3".to_string(), "lake".to_string())].len(), 2);
    }

    #[test]
    fn stores_by_url() {
        let config = FaiscaConfig::from_pairs([
            ("faisca.store.s3.lake.endpoint", "http://127.0.0.1:9"),
            ("faisca.store.s3.lake.access_key_id", "k"),
            ("faisca.store.s3.lake.secret_access_key", "s"),
            ("faisca.store.s3.lake.region", "us-east-1"),
        ])
        .unwrap();
        let registry = StoreRegistry::new(&config);
        for url in [
            "file:///tmp",
            "memory://",
            "s3://lake/x",
            "http://127.0.0.1:9/a",
        ] {
            registry.get_store(&Url::parse(url).unwrap()).unwrap();
        }
        let e = registry
            .get_store(&Url::parse("ftp://h/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported URL scheme 'ftp'"), "{e}");
        let bad = FaiscaConfig::from_pairs([("faisca.store.s3.lake.no_such_option", "1")]).unwrap();
        let e = StoreRegistry::new(&bad)
            .get_store(&Url::parse("s3://lake/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("faisca.store.s3.lake.no_such_option"), "{e}");
    }
}
