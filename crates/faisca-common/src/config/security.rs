//! Keys of TLS (`faisca.ssl.*`): the certificate a process presents, the CAs it trusts, whether
//! clients must present certificates, and how often the files are checked for a new version; and
//! of authentication (`faisca.authenticate.*`): the cluster secret, the user tokens, the token a
//! client sends.

use std::path::PathBuf;
use std::time::Duration;

use super::{FaiscaConfig, KeySpec, ValueKind};
use crate::{Error, Result};

fn any_text(_: &str) -> bool {
    true
}

fn optional_bool(text: &str) -> bool {
    text.is_empty() || text.parse::<bool>().is_ok()
}

/// `faisca.ssl.enabled`.
pub const SSL_ENABLED: KeySpec = KeySpec {
    name: "faisca.ssl.enabled",
    default: "",
    kind: ValueKind::Rule {
        expected: "true or false",
        valid: optional_bool,
    },
    doc: "Connect to the driver and executors over TLS. Unset: on when faisca.ssl.certFile or faisca.ssl.caFile is set or the driver's address is faisca+tls:// or https://.",
};
/// `faisca.ssl.certFile`.
pub const SSL_CERT_FILE: KeySpec = KeySpec {
    name: "faisca.ssl.certFile",
    default: "",
    kind: ValueKind::Rule {
        expected: "the path of a PEM certificate chain",
        valid: any_text,
    },
    doc: "PEM certificate chain this process presents: as a server (driver, executor, UI, history) it turns TLS on; as a client it is sent when the server asks (mutual TLS). `--tls-cert`.",
};
/// `faisca.ssl.keyFile`.
pub const SSL_KEY_FILE: KeySpec = KeySpec {
    name: "faisca.ssl.keyFile",
    default: "",
    kind: ValueKind::Rule {
        expected: "the path of a PEM private key",
        valid: any_text,
    },
    doc: "PEM private key (PKCS#8, PKCS#1 or SEC1) of faisca.ssl.certFile. `--tls-key`.",
};
/// `faisca.ssl.caFile`.
pub const SSL_CA_FILE: KeySpec = KeySpec {
    name: "faisca.ssl.caFile",
    default: "",
    kind: ValueKind::Rule {
        expected: "the path of a PEM CA bundle",
        valid: any_text,
    },
    doc: "PEM CA certificates trusted to sign the servers this process connects to, and the clients' certificates when faisca.ssl.clientAuth=required. Unset: the system's roots. `--tls-ca`.",
};
/// `faisca.ssl.clientAuth`.
pub const SSL_CLIENT_AUTH: KeySpec = KeySpec {
    name: "faisca.ssl.clientAuth",
    default: "none",
    kind: ValueKind::Choice(&["none", "required"]),
    doc: "`required`: servers accept only clients presenting a certificate signed by faisca.ssl.caFile (mutual TLS). `none`: any client may connect.",
};
/// `faisca.ssl.serverName`.
pub const SSL_SERVER_NAME: KeySpec = KeySpec {
    name: "faisca.ssl.serverName",
    default: "",
    kind: ValueKind::Rule {
        expected: "a DNS name such as faisca.example.com",
        valid: any_text,
    },
    doc: "The name verified in every server's certificate, instead of the host of its address (executor pods are reached by IP).",
};
/// `faisca.ssl.reloadInterval`.
pub const SSL_RELOAD_INTERVAL: KeySpec = KeySpec {
    name: "faisca.ssl.reloadInterval",
    default: "10s",
    kind: ValueKind::Duration,
    doc: "How often, at most, the certificate, key and CA files are read again when a connection starts: a changed file (a Kubernetes Secret swapping its symlink) is used from then on, without a restart.",
};
/// `faisca.ssl.handshakeTimeout`.
pub const SSL_HANDSHAKE_TIMEOUT: KeySpec = KeySpec {
    name: "faisca.ssl.handshakeTimeout",
    default: "10s",
    kind: ValueKind::Duration,
    doc: "A TLS handshake (server or client side) that takes longer fails, and a server closes the connection.",
};
/// `faisca.ssl.maxHandshakes`.
pub const SSL_MAX_HANDSHAKES: KeySpec = KeySpec {
    name: "faisca.ssl.maxHandshakes",
    default: "256",
    kind: ValueKind::Count,
    doc: "TLS handshakes a server runs at once; further connections wait to be accepted.",
};

/// `faisca.authenticate.secret`.
pub const AUTH_SECRET: KeySpec = KeySpec {
    name: "faisca.authenticate.secret",
    default: "",
    kind: ValueKind::Rule {
        expected: "the cluster secret",
        valid: any_text,
    },
    doc: "The cluster secret: set, authentication is on (executors must present it to register and to fetch shuffle data; clients holding it see everything). Prefer faisca.authenticate.secret.file or FAISCA_AUTH_SECRET: a value here is in the process's arguments.",
};
/// `faisca.authenticate.secret.file`.
pub const AUTH_SECRET_FILE: KeySpec = KeySpec {
    name: "faisca.authenticate.secret.file",
    default: "",
    kind: ValueKind::Rule {
        expected: "the path of a file holding the cluster secret",
        valid: any_text,
    },
    doc: "A file holding the cluster secret (the form Kubernetes mounts a Secret in; surrounding whitespace is ignored).",
};
/// `faisca.authenticate.tokensFile`.
pub const AUTH_TOKENS_FILE: KeySpec = KeySpec {
    name: "faisca.authenticate.tokensFile",
    default: "",
    kind: ValueKind::Rule {
        expected: "the path of a file of 'token,user' lines",
        valid: any_text,
    },
    doc: "User tokens the driver accepts: one 'token,user' line each ('#' starts a comment). Read again when it changes (faisca.ssl.reloadInterval). A user sees and kills only their own jobs and streaming queries.",
};
/// `faisca.authenticate.token`.
pub const AUTH_TOKEN: KeySpec = KeySpec {
    name: "faisca.authenticate.token",
    default: "",
    kind: ValueKind::Rule {
        expected: "a user token",
        valid: any_text,
    },
    doc: "The user token a client sends when it has no cluster secret (else FAISCA_TOKEN).",
};

/// `faisca.metrics.tokenFile`.
pub const METRICS_TOKEN_FILE: KeySpec = KeySpec {
    name: "faisca.metrics.tokenFile",
    default: "",
    kind: ValueKind::Rule {
        expected: "the path of a file holding the metrics bearer token",
        valid: any_text,
    },
    doc: "A file holding the bearer token `/metrics` accepts (a Prometheus scrape config's `authorization.credentials_file`): set, metrics ports and the UI's /metrics ask for it (or another credential when authentication is on). Executors the driver launches get the path.",
};

/// `faisca.sql.allowedLocations`.
pub const SQL_ALLOWED_LOCATIONS: KeySpec = KeySpec {
    name: "faisca.sql.allowedLocations",
    default: "",
    kind: ValueKind::Rule {
        expected: "comma-separated URL prefixes such as s3://lake/,file:///data/,kafka://broker:9092",
        valid: any_text,
    },
    doc: "The driver's rule for where sessions read and write: table locations, write and COPY destinations, streaming checkpoints, Kafka brokers (kafka://host:port). Empty: everywhere. Link-local and cloud metadata addresses are refused unless a prefix names them. Read from the driver's configuration, not a session's.",
};

/// `faisca.sql.allowLocalFiles`.
pub const SQL_ALLOW_LOCAL_FILES: KeySpec = KeySpec {
    name: "faisca.sql.allowLocalFiles",
    default: "",
    kind: ValueKind::Rule {
        expected: "true or false",
        valid: optional_bool,
    },
    doc: "Whether sessions may read and write the driver's local files (file:// and plain paths). Unset: yes, unless authentication is on. A prefix of faisca.sql.allowedLocations naming them allows them either way.",
};

/// `faisca.plan.maxDepth`.
pub const PLAN_MAX_DEPTH: KeySpec = KeySpec {
    name: "faisca.plan.maxDepth",
    default: "3000",
    kind: ValueKind::Count,
    doc: "How deep a plan may nest (plan nodes and expressions along one path), checked on a SQL statement's text before it is parsed (an upper bound from its operators, keywords and brackets) and on every plan: DataFusion walks plans by recursion, and its work grows faster than their depth. Read from the driver's configuration, not a session's.",
};

/// Where authentication settings come from besides configuration keys.
pub const AUTH_SECRET_ENV: &str = "FAISCA_AUTH_SECRET";
/// The environment variable of a client's user token.
pub const AUTH_TOKEN_ENV: &str = "FAISCA_TOKEN";

/// What `faisca.authenticate.*` (and `FAISCA_AUTH_SECRET`, `FAISCA_TOKEN`) ask of a process.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The cluster secret; set, authentication is on.
    pub secret: Option<String>,
    /// The user tokens file (servers).
    pub tokens_file: Option<PathBuf>,
    /// The user token a client sends when it has no secret.
    pub token: Option<String>,
    /// How often, at most, the tokens file is read again.
    pub reload_interval: Duration,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "secret",
                &self.secret.as_ref().map(|_| crate::redact::REDACTED),
            )
            .field("tokens_file", &self.tokens_file)
            .field(
                "token",
                &self.token.as_ref().map(|_| crate::redact::REDACTED),
            )
            .finish()
    }
}

impl AuthSettings {
    /// Whether authentication is on (a cluster secret is configured).
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    /// What a client sends: the cluster secret when it has one, else its user token.
    pub fn client_credential(&self) -> Option<&str> {
        self.secret.as_deref().or(self.token.as_deref())
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// What `faisca.ssl.*` asks of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `faisca.ssl.enabled`, when set.
    pub enabled: Option<bool>,
    /// The certificate chain and its key (both or neither).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// CAs trusted for peers; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Clients must present a certificate signed by `ca_file`.
    pub client_auth_required: bool,
    /// The name verified in servers' certificates instead of their address's host.
    pub server_name: Option<String>,
    /// How often the files are read again, at most.
    pub reload_interval: Duration,
    /// The longest a handshake may take.
    pub handshake_timeout: Duration,
    /// Handshakes a server runs at once.
    pub max_handshakes: usize,
}

impl TlsSettings {
    /// Whether this process serves TLS (it has a certificate).
    pub fn serves_tls(&self) -> bool {
        self.identity.is_some()
    }

    /// Whether this process connects to Faísca peers over TLS, given whether the address it was
    /// told says so (`faisca+tls://`, `https://`).
    pub fn connects_with_tls(&self, address_says_tls: bool) -> bool {
        self.enabled.unwrap_or_else(|| {
            address_says_tls || self.identity.is_some() || self.ca_file.is_some()
        })
    }
}

fn optional_path(config: &FaiscaConfig, key: &KeySpec) -> Option<PathBuf> {
    match config.raw(key).trim() {
        "" => None,
        path => Some(PathBuf::from(path)),
    }
}

impl FaiscaConfig {
    /// `faisca.ssl.*`; an error when a certificate comes without its key (or the reverse), or
    /// client certificates are required without a CA to verify them.
    pub fn tls_settings(&self) -> Result<TlsSettings> {
        let cert = optional_path(self, &SSL_CERT_FILE);
        let key = optional_path(self, &SSL_KEY_FILE);
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::user(
                    "faisca.ssl.certFile (--tls-cert) is set without faisca.ssl.keyFile (--tls-key): expected both, the certificate and its private key",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::user(
                    "faisca.ssl.keyFile (--tls-key) is set without faisca.ssl.certFile (--tls-cert): expected both, the certificate and its private key",
                ));
            }
        };
        let ca_file = optional_path(self, &SSL_CA_FILE);
        let client_auth_required = self.raw(&SSL_CLIENT_AUTH).eq_ignore_ascii_case("required");
        if client_auth_required && ca_file.is_none() {
            return Err(Error::user(
                "faisca.ssl.clientAuth=required needs faisca.ssl.caFile (--tls-ca): expected the CA that signs the clients' certificates",
            ));
        }
        Ok(TlsSettings {
            enabled: match self.raw(&SSL_ENABLED) {
                "" => None,
                raw => Some(raw.eq_ignore_ascii_case("true")),
            },
            identity,
            ca_file,
            client_auth_required,
            server_name: match self.raw(&SSL_SERVER_NAME).trim() {
                "" => None,
                name => Some(name.to_string()),
            },
            reload_interval: self.duration(&SSL_RELOAD_INTERVAL),
            handshake_timeout: self
                .duration(&SSL_HANDSHAKE_TIMEOUT)
                .max(Duration::from_millis(10)),
            max_handshakes: self.count(&SSL_MAX_HANDSHAKES).clamp(1, 1 << 16) as usize,
        })
    }
}

impl FaiscaConfig {
    /// `faisca.sql.allowedLocations`, with local files as `faisca.sql.allowLocalFiles` says
    /// (unset: allowed unless `authentication_on`).
    pub fn allowed_locations(&self, authentication_on: bool) -> crate::locations::AllowedLocations {
        let local_files = match self.raw(&SQL_ALLOW_LOCAL_FILES) {
            "" => !authentication_on,
            raw => raw.eq_ignore_ascii_case("true"),
        };
        crate::locations::AllowedLocations::parse(self.raw(&SQL_ALLOWED_LOCATIONS))
            .with_local_files(local_files)
    }

    /// `faisca.plan.maxDepth` (at least 1).
    pub fn plan_max_depth(&self) -> usize {
        usize::try_from(self.count(&PLAN_MAX_DEPTH))
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// The token of `faisca.metrics.tokenFile`, when set; an error names a file that cannot be
    /// read or is empty.
    pub fn metrics_token(&self) -> Result<Option<String>> {
        let Some(path) = optional_path(self, &METRICS_TOKEN_FILE) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::user(format!(
                "cannot read faisca.metrics.tokenFile {}: {e}",
                path.display()
            ))
        })?;
        non_empty(&text).map(Some).ok_or_else(|| {
            Error::user(format!(
                "faisca.metrics.tokenFile {} is empty: expected the metrics bearer token",
                path.display()
            ))
        })
    }

    /// `faisca.authenticate.*`: the cluster secret from `faisca.authenticate.secret`, else the
    /// file `faisca.authenticate.secret.file` names, else `FAISCA_AUTH_SECRET`; the client's
    /// token from `faisca.authenticate.token`, else `FAISCA_TOKEN`. An error names a secret
    /// file that cannot be read or is empty.
    pub fn auth_settings(&self) -> Result<AuthSettings> {
        let secret = match (
            non_empty(self.raw(&AUTH_SECRET)),
            optional_path(self, &AUTH_SECRET_FILE),
        ) {
            (Some(secret), _) => Some(secret),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::user(format!(
                        "cannot read faisca.authenticate.secret.file {}: {e}",
                        path.display()
                    ))
                })?;
                Some(non_empty(&text).ok_or_else(|| {
                    Error::user(format!(
                        "faisca.authenticate.secret.file {} is empty: expected the cluster secret",
                        path.display()
                    ))
                })?)
            }
            (None, None) => std::env::var(AUTH_SECRET_ENV)
                .ok()
                .and_then(|s| non_empty(&s)),
        };
        let token = non_empty(self.raw(&AUTH_TOKEN)).or_else(|| {
            std::env::var(AUTH_TOKEN_ENV)
                .ok()
                .and_then(|s| non_empty(&s))
        });
        Ok(AuthSettings {
            secret,
            tokens_file: optional_path(self, &AUTH_TOKENS_FILE),
            token,
            reload_interval: self.duration(&SSL_RELOAD_INTERVAL),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::FaiscaConfig;

    #[test]
    fn the_cluster_secret_comes_from_the_key_or_its_file() {
        let dir = std::env::temp_dir().join(format!("faisca-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let by_file =
            FaiscaConfig::from_pairs([("faisca.authenticate.secret.file", file.to_str().unwrap())])
                .unwrap()
                .auth_settings()
                .unwrap();
        assert_eq!(by_file.secret.as_deref(), Some("from-file"));
        assert_eq!(by_file.client_credential(), Some("from-file"));
        assert!(!format!("{by_file:?}").contains("from-file"));
        let by_key = FaiscaConfig::from_pairs([
            ("faisca.authenticate.secret", "from-key"),
            ("faisca.authenticate.secret.file", file.to_str().unwrap()),
            ("faisca.authenticate.token", "t"),
        ])
        .unwrap()
        .auth_settings()
        .unwrap();
        assert_eq!(by_key.client_credential(), Some("from-key"));
        std::fs::write(&file, "  \n").unwrap();
        let error =
            FaiscaConfig::from_pairs([("faisca.authenticate.secret.file", file.to_str().unwrap())])
                .unwrap()
                .auth_settings()
                .unwrap_err()
                .to_string();
        assert!(error.contains("is empty"), "{error}");
        let token = FaiscaConfig::from_pairs([("faisca.authenticate.token", "t-1")])
            .unwrap()
            .auth_settings()
            .unwrap();
        assert_eq!(token.client_credential(), Some("t-1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_is_off_by_default_and_on_with_a_certificate_or_a_ca() {
        let plain = FaiscaConfig::default().tls_settings().unwrap();
        assert!(!plain.serves_tls());
        assert!(!plain.connects_with_tls(false));
        assert!(plain.connects_with_tls(true));
        let server = FaiscaConfig::from_pairs([
            ("faisca.ssl.certFile", "/c.pem"),
            ("faisca.ssl.keyFile", "/k.pem"),
        ])
        .unwrap()
        .tls_settings()
        .unwrap();
        assert!(server.serves_tls() && server.connects_with_tls(false));
        let client = FaiscaConfig::from_pairs([("faisca.ssl.caFile", "/ca.pem")])
            .unwrap()
            .tls_settings()
            .unwrap();
        assert!(!client.serves_tls() && client.connects_with_tls(false));
        let off = FaiscaConfig::from_pairs([
            ("faisca.ssl.caFile", "/ca.pem"),
            ("faisca.ssl.enabled", "false"),
        ])
        .unwrap()
        .tls_settings()
        .unwrap();
        assert!(!off.connects_with_tls(true));
    }

    #[test]
    fn incomplete_tls_settings_say_what_is_missing() {
        for (pairs, missing) in [
            (
                vec![("faisca.ssl.certFile", "/c.pem")],
                "faisca.ssl.keyFile",
            ),
            (
                vec![("faisca.ssl.keyFile", "/k.pem")],
                "faisca.ssl.certFile",
            ),
            (
                vec![("faisca.ssl.clientAuth", "required")],
                "faisca.ssl.caFile",
            ),
        ] {
            let error = FaiscaConfig::from_pairs(pairs)
                .unwrap()
                .tls_settings()
                .unwrap_err()
                .to_string();
            assert!(error.contains(missing), "{error}");
        }
        let error = FaiscaConfig::from_pairs([("faisca.ssl.clientAuth", "optional")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("faisca.ssl.clientAuth"), "{error}");
    }
}
