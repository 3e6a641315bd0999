//! The HTTP client of `http(s)://` table stores, checked where it connects: a host is refused
//! when it is, or resolves to, a link-local or cloud metadata address that the driver's
//! `faisca.sql.allowedLocations` does not name (a DNS name pointing at 169.254.169.254 is
//! refused like the address itself).
//!
//! The client is reqwest, as object_store builds it, with one difference: its DNS resolver is
//! [`CheckedResolver`], which checks the very addresses the client then connects to — a DNS
//! answer that changes between a check and the connection (rebinding) cannot slip past. A host
//! written as an IP address is not resolved, so [`Guarded`] checks it before each request. The
//! client honours every option object_store's `ClientOptions` exposes as a key
//! ([`ClientConfigKey`]); our store registry sets no others. Cloud stores (S3, GCS, Azure) keep
//! their default client: their credential providers legitimately call the instance metadata
//! service.
//!
//! Through an HTTP proxy (object_store's `proxy_url`, or the environment's), the proxy
//! resolves the target's name: only the proxy's own address is checked then.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use faisca_common::locations::AllowedLocations;
use object_store::ClientOptions;
use object_store::client::{
    ClientConfigKey, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpResponse, HttpService,
};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Builds the checked client, wrapped in [`Guarded`].
#[derive(Debug)]
pub struct GuardedConnector {
    allowed: AllowedLocations,
}

impl GuardedConnector {
    /// A connector checking every connection against `allowed`.
    pub fn new(allowed: AllowedLocations) -> Self {
        GuardedConnector { allowed }
    }
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client =
            checked_client(options, &self.allowed).map_err(|e| object_store::Error::Generic {
                store: "HTTP",
                source: e.into(),
            })?;
        Ok(HttpClient::new(Guarded {
            inner: HttpClient::new(client),
            allowed: self.allowed.clone(),
        }))
    }
}

/// An option of `options` (`None`: unset).
fn option(options: &ClientOptions, key: ClientConfigKey) -> Option<String> {
    options.get_config_value(&key)
}

fn flag(options: &ClientOptions, key: ClientConfigKey) -> bool {
    option(options, key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn duration(options: &ClientOptions, key: ClientConfigKey) -> Result<Option<Duration>, String> {
    option(options, key)
        .map(|v| humantime::parse_duration(&v).map_err(|e| format!("{key:?} '{v}': {e}")))
        .transpose()
}

fn number<T: FromStr>(options: &ClientOptions, key: ClientConfigKey) -> Result<Option<T>, String> {
    option(options, key)
        .map(|v| {
            v.parse()
                .map_err(|_| format!("{key:?} '{v}' is not a number"))
        })
        .transpose()
}

/// reqwest with `options` (as object_store applies them) and [`CheckedResolver`].
fn checked_client(
    options: &ClientOptions,
    allowed: &AllowedLocations,
) -> Result<reqwest::Client, String> {
    use ClientConfigKey as K;
    let mut builder = reqwest::Client::builder()
        .dns_resolver(Arc::new(CheckedResolver {
            allowed: allowed.clone(),
        }))
        .user_agent(
            option(options, K::UserAgent)
                .unwrap_or_else(|| concat!("faisca/", env!("CARGO_PKG_VERSION")).to_string()),
        )
        // Sizes come from Content-Length: no transparent decompression.
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate()
        .https_only(!flag(options, K::AllowHttp));
    if let Some(url) = option(options, K::ProxyUrl) {
        let mut proxy = reqwest::Proxy::all(&url).map_err(|e| format!("proxy '{url}': {e}"))?;
        if let Some(pem) = option(options, K::ProxyCaCertificate) {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("proxy CA certificate: {e}"))?;
            builder = builder.add_root_certificate(ca);
        }
        if let Some(excludes) = option(options, K::ProxyExcludes) {
            proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&excludes));
        }
        builder = builder.proxy(proxy);
    }
    if let Some(t) = duration(options, K::Timeout)? {
        builder = builder.timeout(t);
    }
    if let Some(t) = duration(options, K::ConnectTimeout)? {
        builder = builder.connect_timeout(t);
    }
    if let Some(t) = duration(options, K::PoolIdleTimeout)? {
        builder = builder.pool_idle_timeout(t);
    }
    if let Some(n) = number(options, K::PoolMaxIdlePerHost)? {
        builder = builder.pool_max_idle_per_host(n);
    }
    if let Some(t) = duration(options, K::Http2KeepAliveInterval)? {
        builder = builder.http2_keep_alive_interval(t);
    }
    if let Some(t) = duration(options, K::Http2KeepAliveTimeout)? {
        builder = builder.http2_keep_alive_timeout(t);
    }
    if flag(options, K::Http2KeepAliveWhileIdle) {
        builder = builder.http2_keep_alive_while_idle(true);
    }
    if let Some(n) = number::<u32>(options, K::Http2MaxFrameSize)? {
        builder = builder.http2_max_frame_size(Some(n));
    }
    if flag(options, K::Http1Only) {
        builder = builder.http1_only();
    }
    if flag(options, K::Http2Only) {
        builder = builder.http2_prior_knowledge();
    }
    if flag(options, K::AllowInvalidCertificates) {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| e.to_string())
}

/// The client's DNS resolver: the system's answer, refused when an address is link-local or a
/// cloud metadata address that the rule does not name.
#[derive(Debug)]
struct CheckedResolver {
    allowed: AllowedLocations,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addresses: Vec<IpAddr> = found.iter().map(SocketAddr::ip).collect();
            allowed
                .check_host_addresses(&host, "HTTP store connection", &addresses)
                .map_err(|e| Box::new(Refused(e.to_string())) as Box<_>)?;
            Ok(Box::new(found.into_iter()) as Addrs)
        })
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

/// The client: a host written as an IP address is checked before the request (it is never
/// resolved); names are checked by the client's resolver.
#[derive(Debug)]
struct Guarded {
    inner: HttpClient,
    allowed: AllowedLocations,
}

#[async_trait]
impl HttpService for Guarded {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let uri = req.uri();
        let host = uri.host().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(address) = bare.parse::<IpAddr>() {
            let location = format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str()),
                uri.path()
            );
            self.allowed
                .check_resolved(&location, "HTTP store request", &[address])
                .map_err(|e| HttpError::new(HttpErrorKind::Unknown, Refused(e.to_string())))?;
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

    /// An HTTP server on 127.0.0.1 answering every request with `body` (one connection at a
    /// time, closed after each answer), until dropped.
    async fn serve(body: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nETag: \"1\"\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (port, server)
    }

    #[tokio::test]
    async fn a_store_reached_by_name_reads_through_the_checked_resolver() {
        use datafusion::execution::object_store::ObjectStoreRegistry;
        let (port, server) = serve("hello").await;
        // As a table's store is made: by the session's registry, plain HTTP as the URL says.
        let registry = crate::stores::StoreRegistry::new(&faisca_common::FaiscaConfig::default());
        let url = url::Url::parse(&format!("http://localhost:{port}/file.txt")).unwrap();
        let store = registry.get_store(&url).unwrap();
        let got = store
            .get(&object_store::path::Path::from("file.txt"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello");
        server.abort();
    }

    #[tokio::test]
    async fn the_resolver_refuses_metadata_answers_unless_the_rule_names_the_host() {
        let resolve = |rule: &str, host: &str| {
            CheckedResolver {
                allowed: AllowedLocations::parse(rule),
            }
            .resolve(Name::from_str(host).unwrap())
        };
        let refused = match resolve("", "169.254.169.254").await {
            Ok(_) => panic!("a metadata address was let through"),
            Err(e) => e.to_string(),
        };
        assert!(
            refused.contains("'169.254.169.254'") && refused.contains("metadata address"),
            "{refused}"
        );
        assert!(
            resolve("http://169.254.169.254/", "169.254.169.254")
                .await
                .is_ok()
        );
        let local: Vec<SocketAddr> = resolve("", "localhost").await.unwrap().collect();
        assert!(local.iter().all(|a| a.ip().is_loopback()), "{local:?}");
    }

    #[test]
    fn the_client_takes_object_stores_options() {
        let allowed = AllowedLocations::default();
        let options = ClientOptions::new()
            .with_timeout(Duration::from_secs(7))
            .with_pool_max_idle_per_host(3)
            .with_proxy_url("http://127.0.0.1:3128")
            .with_allow_http(true);
        checked_client(&options, &allowed).unwrap();
        let bad = ClientOptions::new().with_proxy_url("::not a url::");
        let error = checked_client(&bad, &allowed).unwrap_err();
        assert!(error.contains("proxy"), "{error}");
        assert_eq!(
            duration(&options, ClientConfigKey::Timeout).unwrap(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            number::<usize>(&options, ClientConfigKey::PoolMaxIdlePerHost).unwrap(),
            Some(3)
        );
        assert!(flag(&options, ClientConfigKey::AllowHttp));
        assert!(flag(&ClientOptions::new(), ClientConfigKey::Http1Only));
    }
}
