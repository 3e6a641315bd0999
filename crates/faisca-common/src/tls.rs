//! TLS for every Faísca port, with rustls and its ring provider (no OpenSSL).
//!
//! [`ServerTls`] terminates TLS for a server (the driver's and executors' gRPC + Flight port,
//! the web UI, the history server, metrics ports); [`ClientTls`] opens TLS connections to them.
//! Both are built from [`TlsSettings`] (`faisca.ssl.*`) and keep their rustls configuration
//! behind a [`Reloading`] cell: when a connection starts and `faisca.ssl.reloadInterval` has
//! passed since the last look, the certificate, key and CA files are read again, and when their
//! bytes changed the configuration is rebuilt from them. A Kubernetes Secret swapping its
//! symlink, or a `cp` over the files, is therefore picked up without a restart; connections
//! already open keep the configuration they started with. A new version that does not parse
//! (a key written before its certificate) is logged and the previous one stays in use.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::TlsSettings;
use crate::reload::{Build, Reloading, SourceFile};
use crate::{Error, Result};

pub use tokio_rustls::{client, server};

/// The ALPN protocol of gRPC (HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol of the web UI and metrics ports (HTTP/1.1).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(bytes: &[u8], file: &SourceFile) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::user(format!(
                "{} ({}) is not a PEM certificate file: {e}",
                file.path.display(),
                file.key
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::user(format!(
            "{} ({}) holds no certificate: expected PEM '-----BEGIN CERTIFICATE-----' blocks",
            file.path.display(),
            file.key
        )));
    }
    Ok(certs)
}

fn private_key(bytes: &[u8], file: &SourceFile) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        Error::user(format!(
            "{} ({}) holds no usable private key ({e}): expected a PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY' block",
            file.path.display(),
            file.key
        ))
    })
}

fn root_store(bytes: &[u8], file: &SourceFile) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(bytes, file)? {
        roots.add(cert).map_err(|e| {
            Error::user(format!(
                "{} ({}) holds a certificate that cannot be a CA: {e}",
                file.path.display(),
                file.key
            ))
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Error::user(
            "TLS is on without faisca.ssl.caFile (--tls-ca) and the system has no CA certificates: expected --tls-ca naming the CA that signed the servers' certificates",
        ));
    }
    Ok(roots)
}

fn tls_error(file: &SourceFile, e: rustls::Error) -> Error {
    Error::user(format!(
        "{} ({}) cannot be used: {e}",
        file.path.display(),
        file.key
    ))
}

fn cert_file(path: &Path) -> SourceFile {
    SourceFile {
        path: path.to_path_buf(),
        key: "faisca.ssl.certFile, --tls-cert",
    }
}

fn key_file(path: &Path) -> SourceFile {
    SourceFile {
        path: path.to_path_buf(),
        key: "faisca.ssl.keyFile, --tls-key",
    }
}

fn ca_file(path: &Path) -> SourceFile {
    SourceFile {
        path: path.to_path_buf(),
        key: "faisca.ssl.caFile, --tls-ca",
    }
}

/// A server's TLS: its certificate (reloaded when it changes), client certificate checks when
/// `faisca.ssl.clientAuth=required`, and the handshake bounds.
#[derive(Debug)]
pub struct ServerTls {
    config: Reloading<ServerConfig>,
    client_certificates_required: bool,
    handshake_timeout: Duration,
    max_handshakes: usize,
}

impl ServerTls {
    /// The TLS of a server named `what` (in messages) speaking `alpn`; `None` when the settings
    /// have no certificate (the server is plain). Errors name the file that cannot be used.
    pub fn new(
        settings: &TlsSettings,
        what: &'static str,
        alpn: &[u8],
    ) -> Result<Option<Arc<ServerTls>>> {
        let Some((cert, key)) = &settings.identity else {
            return Ok(None);
        };
        let mut files = vec![cert_file(cert), key_file(key)];
        let verify_clients = settings.client_auth_required;
        if verify_clients {
            let ca = settings.ca_file.as_ref().ok_or_else(|| {
                Error::user(
                    "faisca.ssl.clientAuth=required needs faisca.ssl.caFile (--tls-ca): expected the CA that signs the clients' certificates",
                )
            })?;
            files.push(ca_file(ca));
        }
        let sources = files.clone();
        let alpn = alpn.to_vec();
        let build: Build<ServerConfig> = Box::new(move |bytes| {
            let provider = provider();
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::internal(format!("TLS protocol versions: {e}")))?;
            let builder = if verify_clients {
                let roots = root_store(&bytes[2], &sources[2])?;
                // A client without a certificate completes the handshake and is refused by the
                // server's protocol (gRPC UNAUTHENTICATED, HTTP 403) with a message saying so: a
                // handshake alert would reach it as a bare cancelled call. A certificate that is
                // presented must verify.
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| {
                            Error::user(format!(
                                "{} ({}) cannot verify client certificates: {e}",
                                sources[2].path.display(),
                                sources[2].key
                            ))
                        })?;
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_no_client_auth()
            };
            let chain = certificates(&bytes[0], &sources[0])?;
            let key = private_key(&bytes[1], &sources[1])?;
            let mut config = builder
                .with_single_cert(chain, key)
                .map_err(|e| tls_error(&sources[1], e))?;
            config.alpn_protocols = vec![alpn.clone()];
            Ok(config)
        });
        Ok(Some(Arc::new(ServerTls {
            config: Reloading::new(what, files, settings.reload_interval, build)?,
            client_certificates_required: verify_clients,
            handshake_timeout: settings.handshake_timeout,
            max_handshakes: settings.max_handshakes,
        })))
    }

    /// Whether clients must present a certificate (`faisca.ssl.clientAuth=required`): the
    /// server refuses, after the handshake, a connection whose client presented none.
    pub fn client_certificates_required(&self) -> bool {
        self.client_certificates_required
    }

    /// The longest a handshake may take (`faisca.ssl.handshakeTimeout`).
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Handshakes run at once, at most (`faisca.ssl.maxHandshakes`).
    pub fn max_handshakes(&self) -> usize {
        self.max_handshakes
    }

    /// Whether the client's first byte on `stream` starts a TLS handshake (a ClientHello's
    /// record type); anything else, or nothing within `faisca.ssl.handshakeTimeout`, is not TLS.
    /// A server then tells a plaintext client what it got wrong instead of failing a handshake.
    pub async fn starts_tls(&self, stream: &tokio::net::TcpStream) -> bool {
        const TLS_HANDSHAKE_RECORD: u8 = 0x16;
        let mut first = [0u8; 1];
        matches!(
            tokio::time::timeout(self.handshake_timeout, stream.peek(&mut first)).await,
            Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD
        )
    }

    /// Run the server side of a handshake on `io`, within `faisca.ssl.handshakeTimeout`.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.current());
        within(self.handshake_timeout, "", acceptor.accept(io)).await
    }
}

/// A client's TLS: the CAs it trusts (reloaded when they change), the certificate it presents
/// when a server asks, and the name it verifies.
#[derive(Debug)]
pub struct ClientTls {
    config: Reloading<ClientConfig>,
    server_name: Option<String>,
    handshake_timeout: Duration,
}

impl ClientTls {
    /// The TLS of a client speaking `alpn`. Errors name the file that cannot be used.
    pub fn new(settings: &TlsSettings, what: &'static str, alpn: &[u8]) -> Result<Arc<ClientTls>> {
        let mut files = Vec::new();
        if let Some(ca) = &settings.ca_file {
            files.push(ca_file(ca));
        }
        if let Some((cert, key)) = &settings.identity {
            files.push(cert_file(cert));
            files.push(key_file(key));
        }
        let has_ca = settings.ca_file.is_some();
        let has_identity = settings.identity.is_some();
        let sources = files.clone();
        let alpn = alpn.to_vec();
        let build: Build<ClientConfig> = Box::new(move |bytes| {
            let roots = if has_ca {
                root_store(&bytes[0], &sources[0])?
            } else {
                system_roots()?
            };
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::internal(format!("TLS protocol versions: {e}")))?
                .with_root_certificates(roots);
            let mut config = if has_identity {
                let at = usize::from(has_ca);
                let chain = certificates(&bytes[at], &sources[at])?;
                let key = private_key(&bytes[at + 1], &sources[at + 1])?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error(&sources[at + 1], e))?
            } else {
                builder.with_no_client_auth()
            };
            config.alpn_protocols = vec![alpn.clone()];
            Ok(config)
        });
        Ok(Arc::new(ClientTls {
            config: Reloading::new(what, files, settings.reload_interval, build)?,
            server_name: settings.server_name.clone(),
            handshake_timeout: settings.handshake_timeout,
        }))
    }

    /// The name verified in the certificate of the server at `host`: `faisca.ssl.serverName`,
    /// else `host` (a DNS name or an IP address, with or without IPv6 brackets).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>> {
        let name = self
            .server_name
            .as_deref()
            .unwrap_or(host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        ServerName::try_from(name.to_string()).map_err(|e| {
            Error::user(format!(
                "'{name}' cannot be verified in a TLS certificate ({e}): expected a DNS name or an IP address (faisca.ssl.serverName)"
            ))
        })
    }

    /// Run the client side of a handshake with the server at `host` on `io`, within
    /// `faisca.ssl.handshakeTimeout`.
    pub async fn connect<IO>(&self, host: &str, io: IO) -> std::io::Result<client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self
            .server_name(host)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.current());
        let peer = format!(" with {host}");
        within(self.handshake_timeout, &peer, connector.connect(name, io)).await
    }
}

/// A handshake, failed when it takes longer than `limit`; `peer` names the other end in the
/// error (`" with host"`, or empty).
async fn within<T>(
    limit: Duration,
    peer: &str,
    handshake: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the TLS handshake{peer} took longer than faisca.ssl.handshakeTimeout ({limit:?})"
                ),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cert: &Path, key: &Path) -> TlsSettings {
        crate::FaiscaConfig::from_pairs([
            ("faisca.ssl.certFile", cert.to_str().unwrap()),
            ("faisca.ssl.keyFile", key.to_str().unwrap()),
        ])
        .unwrap()
        .tls_settings()
        .unwrap()
    }

    #[test]
    fn unusable_files_are_named_with_their_key() {
        let dir = std::env::temp_dir().join(format!("faisca-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let error = ServerTls::new(&settings(&cert, &key), "test", ALPN_H2)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cert.pem") && error.contains("--tls-cert"),
            "{error}"
        );
        let missing = dir.join("missing.pem");
        let error = ServerTls::new(&settings(&missing, &key), "test", ALPN_H2)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing.pem"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_names_accept_hosts_and_ip_addresses() {
        let build: Build<ClientConfig> = Box::new(|_| {
            Ok(ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth())
        });
        let client = ClientTls {
            config: Reloading::new("test", Vec::new(), Duration::from_secs(10), build).unwrap(),
            server_name: None,
            handshake_timeout: Duration::from_secs(1),
        };
        for host in ["localhost", "127.0.0.1", "[::1]", "executor-0.faisca"] {
            client.server_name(host).unwrap();
        }
        let error = client.server_name("bad name").unwrap_err().to_string();
        assert!(error.contains("bad name"), "{error}");
    }
}
