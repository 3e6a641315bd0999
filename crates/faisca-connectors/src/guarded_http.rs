//! The HTTP client of `http(s)://` table stores, checked at connect time: before each request
//! the host is resolved and the request refused when an address is link-local or a cloud
//! metadata address that the driver's `faisca.sql.allowedLocations` does not name (a DNS name
//! pointing at 169.254.169.254 is refused like the address itself).
//!
//! The requests themselves go through object_store's own reqwest client, built from the same
//! client options; reqwest resolves the name again when it connects, so a DNS answer that
//! changes in between (rebinding) is not covered. Cloud stores (S3, GCS, Azure) keep their
//! default client: their credential providers legitimately call the instance metadata service.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use faisca_common::locations::AllowedLocations;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};

/// Builds object_store's default client, wrapped in [`Guarded`].
#[derive(Debug)]
pub struct GuardedConnector {
    allowed: AllowedLocations,
}

impl GuardedConnector {
    /// A connector checking every request against `allowed`.
    pub fn new(allowed: AllowedLocations) -> Self {
        GuardedConnector { allowed }
    }
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Guarded {
            inner,
            allowed: self.allowed.clone(),
            clean_hosts: Mutex::default(),
        }))
    }
}

/// A request refused by the check (an `Unknown` error: object_store does not retry it).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The client: resolve, check, then send through the inner client.
#[derive(Debug)]
struct Guarded {
    inner: HttpClient,
    allowed: AllowedLocations,
    /// Hosts (and ports) that resolved to no metadata address: not looked up again (a store's
    /// reads of one file are many requests to one host; the second lookup of each request is
    /// reqwest's own, so this widens no gap).
    clean_hosts: Mutex<HashSet<(String, u16)>>,
}

impl Guarded {
    fn clean(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u16)>> {
        self.clean_hosts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl HttpService for Guarded {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let uri = req.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let location = format!(
            "{scheme}://{}{}",
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        );
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let key = (bare, port);
        if !self.clean().contains(&key) {
            // A name that does not resolve passes: the request itself then fails, naming it.
            let addresses: Vec<IpAddr> = match tokio::net::lookup_host((key.0.as_str(), port)).await
            {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(_) => Vec::new(),
            };
            self.allowed
                .check_resolved(&location, "HTTP store request", &addresses)
                .map_err(|e| HttpError::new(HttpErrorKind::Unknown, Refused(e.to_string())))?;
            if !addresses.is_empty()
                && !addresses
                    .iter()
                    .any(|a| faisca_common::locations::is_metadata_host(&a.to_string()))
            {
                self.clean().insert(key);
            }
        }
        self.inner.execute(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn a_request_to_a_metadata_address_is_refused_before_it_connects() {
        let store = object_store::http::HttpBuilder::new()
            .with_url("http://169.254.169.254:1")
            .with_http_connector(GuardedConnector::new(AllowedLocations::default()))
            .build()
            .unwrap();
        let error = store
            .get(&object_store::path::Path::from("latest/meta-data"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("169.254.169.254") && error.contains("metadata"),
            "{error}"
        );
    }
}
