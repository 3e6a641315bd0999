//! `--tls-cert`, `--tls-key` and `--tls-ca`: the TLS files of every command that serves or
//! connects, as the `faisca.ssl.*` keys they stand for.

use std::path::{Path, PathBuf};

/// The TLS files of a command (`faisca.ssl.certFile`, `faisca.ssl.keyFile`,
/// `faisca.ssl.caFile`). Given here, they override the same keys given with `--conf`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain this process presents. On a server (driver, executor, history) it
    /// turns TLS on for its gRPC, Flight, UI and metrics ports; on a client it is sent when the
    /// driver requires client certificates (faisca.ssl.clientAuth=required).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted to sign the servers this process connects to (and the
    /// clients' certificates when faisca.ssl.clientAuth=required). Turns TLS on for clients.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Append the files as `--conf` pairs (absolute paths: executors a driver launches inherit
    /// them) to `conf`.
    pub fn add_to(&self, conf: &mut Vec<String>) {
        for (key, path) in [
            ("faisca.ssl.certFile", &self.tls_cert),
            ("faisca.ssl.keyFile", &self.tls_key),
            ("faisca.ssl.caFile", &self.tls_ca),
        ] {
            if let Some(path) = path {
                conf.push(format!("{key}={}", absolute(path).display()));
            }
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::TlsArgs;

    #[test]
    fn tls_files_become_ssl_keys_with_absolute_paths() {
        let args = TlsArgs {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("/k.pem".into()),
            tls_ca: None,
        };
        let mut conf = vec!["faisca.ssl.certFile=/old.pem".to_string()];
        args.add_to(&mut conf);
        assert_eq!(conf.len(), 3);
        assert!(conf[1].starts_with("faisca.ssl.certFile=/"), "{conf:?}");
        assert!(conf[1].ends_with("/c.pem"), "{conf:?}");
        assert_eq!(conf[2], "faisca.ssl.keyFile=/k.pem");
    }
}
