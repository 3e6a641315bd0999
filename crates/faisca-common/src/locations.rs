//! Where a session may read and write: `faisca.sql.allowedLocations`.
//!
//! The rule is a list of URL prefixes (`s3://lake/`, `file:///data/`, `https://files.example/`,
//! `kafka://broker:9092`). Empty (the default) allows every location, as before the rule
//! existed — except link-local and cloud metadata addresses (169.254.0.0/16, `fd00:ec2::254`,
//! `metadata.google.internal`), which are refused unless a prefix names them explicitly. The
//! driver checks table locations (SQL and DataFrame readers), write and `COPY` destinations,
//! streaming checkpoints, Kafka brokers (`kafka://host:port` for each of
//! `kafka.bootstrap.servers`) and Kafka secret files (`kafka.sasl.password.file`, …) where they
//! enter. Local paths are matched as `file://` URLs of
//! their absolute path. A refusal names the location and the rule.

use std::net::IpAddr;

use crate::{Error, Result};

/// `faisca.sql.allowedLocations`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedLocations {
    prefixes: Vec<String>,
    /// Local files are refused unless a prefix names them (`faisca.sql.allowLocalFiles`).
    no_local_files: bool,
}

/// A location in the form the rule compares: a lower-case scheme and host, the rest as given;
/// local paths as `file://` URLs.
fn normalize(location: &str) -> String {
    let location = location.trim();
    match location.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase(),
                path
            )
        }
        None => {
            let path = std::path::absolute(location)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| location.to_string());
            format!("file://{path}")
        }
    }
}

/// The host of a normalized location (without port or brackets).
fn host(normalized: &str) -> &str {
    let rest = normalized.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// The `host:port` of each broker of `bootstrap_servers` (`host:port,…`, an optional
/// `scheme://` dropped).
fn brokers(bootstrap_servers: &str) -> impl Iterator<Item = &str> {
    bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| b.split_once("://").map_or(b, |(_, rest)| rest))
}

/// AWS's instance metadata service over IPv6, `fd00:ec2::254`.
const AWS_METADATA_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Whether `host` is a link-local or cloud metadata address.
pub fn is_metadata_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("metadata.google.internal")
        || host.eq_ignore_ascii_case("metadata")
    {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_link_local(),
        Ok(IpAddr::V6(v6)) => v6 == AWS_METADATA_V6 || v6.is_unicast_link_local(),
        Err(_) => false,
    }
}

fn covers(prefix: &str, location: &str) -> bool {
    location == prefix
        || (location.starts_with(prefix)
            && (prefix.ends_with('/') || location[prefix.len()..].starts_with('/')))
}

impl AllowedLocations {
    /// The rule of `text` (comma-separated prefixes; empty: everything).
    pub fn parse(text: &str) -> Self {
        AllowedLocations {
            no_local_files: false,
            prefixes: text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(normalize)
                .collect(),
        }
    }

    /// The prefixes, as `faisca.sql.allowedLocations` takes them (what the driver puts in task
    /// configurations).
    pub fn to_config_value(&self) -> String {
        self.prefixes.join(",")
    }

    /// The same rule, with local files allowed or not (unless a prefix names them).
    pub fn with_local_files(mut self, allowed: bool) -> Self {
        self.no_local_files = !allowed;
        self
    }

    /// Refuse `location` (named `what` in the error) unless the rule allows it.
    pub fn check(&self, location: &str, what: &str) -> Result<()> {
        let normalized = normalize(location);
        let listed = self.prefixes.iter().any(|p| covers(p, &normalized));
        if is_metadata_host(host(&normalized)) && !listed {
            return Err(Error::user(format!(
                "{what} '{location}' is a link-local or cloud metadata address, refused unless faisca.sql.allowedLocations names it explicitly"
            )));
        }
        if self.no_local_files && normalized.starts_with("file://") && !listed {
            return Err(Error::user(format!(
                "{what} '{location}' is a local file of the driver's machine, off for clients while authentication is on: set faisca.sql.allowLocalFiles=true on the driver, or name it in faisca.sql.allowedLocations"
            )));
        }
        if self.prefixes.is_empty() || listed {
            return Ok(());
        }
        Err(Error::user(format!(
            "{what} '{location}' is outside faisca.sql.allowedLocations ({}): expected a location under one of them",
            self.prefixes.join(", ")
        )))
    }

    /// Refuse a service endpoint (`what`: the setting naming it, such as an S3 endpoint) whose
    /// host is a link-local or cloud metadata address, unless a prefix names it: endpoints are
    /// not locations under the prefixes, but must not point a store at the metadata service.
    pub fn check_endpoint(&self, url: &str, what: &str) -> Result<()> {
        let normalized = normalize(url);
        if is_metadata_host(host(&normalized))
            && !self.prefixes.iter().any(|p| covers(p, &normalized))
        {
            return Err(Error::user(format!(
                "{what} '{url}' is a link-local or cloud metadata address, refused unless faisca.sql.allowedLocations names it explicitly"
            )));
        }
        Ok(())
    }

    /// Refuse `location` (named `what`) when one of `addresses` — what its host resolved to
    /// when a connection is about to be made — is link-local or a cloud metadata address, unless
    /// a prefix names the location explicitly. A DNS name that points at the metadata service
    /// is refused like the address itself.
    pub fn check_resolved(&self, location: &str, what: &str, addresses: &[IpAddr]) -> Result<()> {
        let normalized = normalize(location);
        if self.prefixes.iter().any(|p| covers(p, &normalized)) {
            return Ok(());
        }
        match addresses.iter().find(|a| is_metadata_host(&a.to_string())) {
            Some(address) => Err(Error::user(format!(
                "{what} '{location}' resolves to {address}, a link-local or cloud metadata address, refused unless faisca.sql.allowedLocations names it explicitly"
            ))),
            None => Ok(()),
        }
    }

    /// Refuse `addresses` — what the DNS name `host` resolved to, about to be connected to, with
    /// no location at hand (an HTTP client's resolver) — when one is link-local or a cloud
    /// metadata address, unless a prefix names `host` (`what` names the connection).
    pub fn check_host_addresses(&self, host: &str, what: &str, addresses: &[IpAddr]) -> Result<()> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if self
            .prefixes
            .iter()
            .any(|p| self::host(p).eq_ignore_ascii_case(bare))
        {
            return Ok(());
        }
        match addresses.iter().find(|a| is_metadata_host(&a.to_string())) {
            Some(address) => Err(Error::user(format!(
                "{what} to '{host}': it resolves to {address}, a link-local or cloud metadata address, refused unless faisca.sql.allowedLocations names the host explicitly"
            ))),
            None => Ok(()),
        }
    }

    /// Resolve `host_port` (`host:port`, blocking) and [`Self::check_resolved`] the addresses; a
    /// name that does not resolve passes (the connection itself then fails, naming it).
    pub fn resolve_and_check(&self, host_port: &str, location: &str, what: &str) -> Result<()> {
        use std::net::ToSocketAddrs;
        let addresses: Vec<IpAddr> = match host_port.to_socket_addrs() {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(_) => return Ok(()),
        };
        self.check_resolved(location, what, &addresses)
    }

    /// [`Self::check`] `url`, then, for an `http(s)://` URL, [`Self::resolve_and_check`] its
    /// host (blocking: a DNS lookup): the form the driver checks HTTP tables and a schema
    /// registry in before anything connects.
    pub fn check_url(&self, url: &str, what: &str) -> Result<()> {
        self.check(url, what)?;
        let normalized = normalize(url);
        let port = if normalized.starts_with("http://") {
            80
        } else if normalized.starts_with("https://") {
            443
        } else {
            return Ok(());
        };
        let rest = normalized.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let host_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{port}")
        };
        self.resolve_and_check(&host_port, url, what)
    }

    /// Refuse any broker of `bootstrap_servers` (`host:port,…`) the rule does not allow, each
    /// as `kafka://host:port`.
    pub fn check_brokers(&self, bootstrap_servers: &str) -> Result<()> {
        for broker in brokers(bootstrap_servers) {
            self.check(&format!("kafka://{broker}"), "Kafka broker")?;
        }
        Ok(())
    }

    /// [`Self::resolve_and_check`] each broker of `bootstrap_servers` (blocking: DNS lookups),
    /// before a Kafka client connects to them.
    pub fn resolve_and_check_brokers(&self, bootstrap_servers: &str) -> Result<()> {
        for broker in brokers(bootstrap_servers) {
            self.resolve_and_check(broker, &format!("kafka://{broker}"), "Kafka broker")?;
        }
        Ok(())
    }

    /// Refuse a Kafka source's or write's options (any case, with or without DataFusion's
    /// `format.` prefix) whose brokers (`kafka.bootstrap.servers`) or secret files
    /// (`kafka.….file`, read by the driver and executors) the rule does not allow.
    pub fn check_kafka_options<'a>(
        &self,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        for (key, value) in options {
            let key = key.trim().to_ascii_lowercase();
            let key = key.strip_prefix("format.").unwrap_or(&key);
            if key == "kafka.bootstrap.servers" {
                self.check_brokers(value)?;
            } else if key.starts_with("kafka.") && key.ends_with(".file") {
                self.check(value, &format!("Kafka secret file '{key}'"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_allow_what_is_under_them() {
        let rule = AllowedLocations::parse("s3://Lake/data/, file:///srv/in, kafka://broker:9092");
        rule.check("s3://lake/data/t/", "table").unwrap();
        rule.check("file:///srv/in/x.parquet", "table").unwrap();
        rule.check("/srv/in", "table").unwrap();
        rule.check_brokers("broker:9092").unwrap();
        for outside in [
            "s3://lake/other/",
            "file:///srv/inside",
            "/etc/passwd",
            "s3://lake2/data/",
        ] {
            let error = rule.check(outside, "table").unwrap_err().to_string();
            assert!(error.contains("faisca.sql.allowedLocations"), "{error}");
            assert!(error.contains(outside), "{error}");
        }
        let error = rule
            .check_brokers("broker:9092, evil:9092")
            .unwrap_err()
            .to_string();
        assert!(error.contains("kafka://evil:9092"), "{error}");
        let error = rule
            .check_kafka_options([
                ("FORMAT.Kafka.Bootstrap.Servers", "broker:9092"),
                ("kafka.sasl.password.file", "/etc/shadow"),
            ])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("kafka.sasl.password.file") && error.contains("/etc/shadow"),
            "{error}"
        );
        rule.check_kafka_options([
            ("kafka.bootstrap.servers", "broker:9092"),
            ("kafka.sasl.password.file", "/srv/in/password"),
        ])
        .unwrap();
    }

    #[test]
    fn metadata_addresses_need_an_explicit_prefix() {
        let everything = AllowedLocations::default();
        everything.check("s3://anything/", "table").unwrap();
        for metadata in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://user@169.254.170.2:80/x",
        ] {
            let error = everything.check(metadata, "table").unwrap_err().to_string();
            assert!(error.contains("metadata"), "{error}");
        }
        everything.check_brokers("169.254.1.1:9092").unwrap_err();
        let no_files = AllowedLocations::default().with_local_files(false);
        let error = no_files
            .check("/data/t.parquet", "table")
            .unwrap_err()
            .to_string();
        assert!(error.contains("faisca.sql.allowLocalFiles"), "{error}");
        no_files.check("s3://lake/t/", "table").unwrap();
        AllowedLocations::parse("file:///data/")
            .with_local_files(false)
            .check("/data/t.parquet", "table")
            .unwrap();
        let v4: IpAddr = "169.254.169.254".parse().unwrap();
        let error = everything
            .check_resolved("kafka://innocent:9092", "Kafka broker", &[v4])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("innocent") && error.contains("169.254.169.254"),
            "{error}"
        );
        everything
            .check_resolved(
                "kafka://b:9092",
                "Kafka broker",
                &["10.0.0.1".parse().unwrap()],
            )
            .unwrap();
        AllowedLocations::parse("kafka://innocent:9092")
            .check_resolved("kafka://innocent:9092", "Kafka broker", &[v4])
            .unwrap();
        let error = everything
            .check_host_addresses("files.example", "HTTP store request", &[v4])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("'files.example'") && error.contains("169.254.169.254"),
            "{error}"
        );
        AllowedLocations::parse("https://FILES.example/data/")
            .check_host_addresses("files.example", "HTTP store request", &[v4])
            .unwrap();
        let public: IpAddr = "2001:db8::1".parse().unwrap();
        everything
            .check_host_addresses("files.example", "HTTP store request", &[public])
            .unwrap();
        everything
            .resolve_and_check("169.254.169.254:80", "http://x/", "table")
            .unwrap_err();
        everything
            .resolve_and_check("127.0.0.1:80", "http://x/", "table")
            .unwrap();
        everything.check_url("http://localhost/x", "table").unwrap();
        everything.check_url("s3://bucket/x", "table").unwrap();
        everything
            .check_url("http://169.254.169.254:8080/x", "table")
            .unwrap_err();
        everything
            .check_endpoint("http://169.254.169.254:9000", "S3 endpoint")
            .unwrap_err();
        AllowedLocations::parse("s3://lake/")
            .check_endpoint("http://minio:9000", "S3 endpoint")
            .unwrap();
        let round_trip = AllowedLocations::parse("s3://Lake/a/, kafka://b:1");
        assert_eq!(
            AllowedLocations::parse(&round_trip.to_config_value()),
            round_trip
        );
        let listed = AllowedLocations::parse("http://169.254.169.254/latest/");
        listed
            .check("http://169.254.169.254/latest/meta-data/", "table")
            .unwrap();
    }
}
