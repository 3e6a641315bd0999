//! Kafka security: Spark's (the Java client's) security options translated to librdkafka's, secret
//! files read, and authentication failures recognised.
//!
//! Users write what Spark documents: `kafka.security.protocol`, `kafka.sasl.mechanism`,
//! `kafka.sasl.jaas.config` (`…ScramLoginModule required username="…" password="…";`),
//! `kafka.ssl.truststore.location`, `kafka.ssl.keystore.location`… librdkafka has no JAAS and no
//! Java key stores, so [`librdkafka_params`] turns them into `sasl.username`/`sasl.password`,
//! `ssl.ca.location`, `ssl.certificate.location`/`ssl.key.location` (PEM), or says what to convert.
//! librdkafka's own names (`sasl.mechanisms`, `sasl.username`, `ssl.ca.location`, …) pass through.
//!
//! Secrets may come from files instead of the options' text: `kafka.sasl.password.file`,
//! `kafka.sasl.jaas.config.file`, `kafka.ssl.key.password.file`, `kafka.ssl.keystore.password.file`
//! (the form Kubernetes mounts a Secret in). A file is read where a client is created (the driver
//! when it plans, each executor when it reads or writes), so the secret never travels in a plan;
//! the driver checks its path against `faisca.sql.allowedLocations` first
//! (`AllowedLocations::check_kafka_options`).
//!
//! A refused login is recognised here ([`is_login_refusal`]) and named ([`login_refused`]);
//! each client's [`super::client::ClientWatch`] keeps the first one librdkafka reports.

use std::collections::BTreeMap;

use faisca_common::{Error, Result};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Options whose value is the path of a file holding the secret the option without `.file`
/// would give.
pub const SECRET_FILE_OPTIONS: &[&str] = &[
    "sasl.password.file",
    "sasl.jaas.config.file",
    "ssl.key.password.file",
    "ssl.keystore.password.file",
];

/// The SASL mechanisms librdkafka is built with here (GSSAPI needs Cyrus SASL, which is not).
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// A librdkafka configuration of `params` (the `kafka.*` options without their prefix),
/// security options translated and secret files read.
pub fn client_config(params: &BTreeMap<String, String>) -> Result<ClientConfig> {
    let mut config = ClientConfig::new();
    for (k, v) in librdkafka_params(params)? {
        config.set(k, v);
    }
    Ok(config)
}

fn read_secret(option: &str, path: &str) -> Result<String> {
    let text = std::fs::read_to_string(path.trim()).map_err(|e| {
        Error::user(format!(
            "Kafka option 'kafka.{option}' names '{}', which cannot be read ({e}): expected a file holding the secret (e.g. a mounted Kubernetes Secret)",
            path.trim()
        ))
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// `params` with Spark's security options translated to librdkafka's and secret files read.
pub fn librdkafka_params(params: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = params.clone();
    for file_option in SECRET_FILE_OPTIONS {
        if let Some(path) = out.remove(*file_option) {
            let option = file_option.trim_end_matches(".file");
            if out.contains_key(option) {
                return Err(Error::user(format!(
                    "Kafka options 'kafka.{option}' and 'kafka.{file_option}' are both given: give the secret once"
                )));
            }
            out.insert(option.to_string(), read_secret(file_option, &path)?);
        }
    }
    if let Some(protocol) = out.get_mut("security.protocol") {
        let lower = protocol.trim().to_ascii_lowercase();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&lower.as_str()) {
            return Err(Error::user(format!(
                "Kafka option 'kafka.security.protocol' is '{protocol}': expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )));
        }
        *protocol = lower;
    }
    mechanism(&mut out)?;
    if let Some(jaas) = out.remove("sasl.jaas.config") {
        jaas_login(&jaas, &mut out)?;
    }
    if let Some(mechanism) = out.get("sasl.mechanisms")
        && !MECHANISMS.contains(&mechanism.as_str())
    {
        return Err(Error::user(format!(
            "Kafka option 'kafka.sasl.mechanism' is '{mechanism}': expected one of {}",
            MECHANISMS.join(", ")
        )));
    }
    trust_store(&mut out)?;
    key_store(&mut out)?;
    if let Some(algorithm) = out.get_mut("ssl.endpoint.identification.algorithm")
        && algorithm.trim().is_empty()
    {
        // The Java client's way of turning host name checks off.
        *algorithm = "none".to_string();
    }
    Ok(out)
}

/// `sasl.mechanism` (Java) or `sasl.mechanisms` (librdkafka), upper case, as `sasl.mechanisms`.
fn mechanism(out: &mut BTreeMap<String, String>) -> Result<()> {
    let java = out.remove("sasl.mechanism");
    let native = out.remove("sasl.mechanisms");
    let value = match (java, native) {
        (Some(a), Some(b)) if !a.trim().eq_ignore_ascii_case(b.trim()) => {
            return Err(Error::user(format!(
                "Kafka options 'kafka.sasl.mechanism' ('{a}') and 'kafka.sasl.mechanisms' ('{b}') disagree: give one"
            )));
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => return Ok(()),
    };
    out.insert(
        "sasl.mechanisms".to_string(),
        value.trim().to_ascii_uppercase(),
    );
    Ok(())
}

/// A JAAS login module configuration: its class and options.
#[derive(Debug, PartialEq, Eq)]
struct JaasLogin {
    module: String,
    options: BTreeMap<String, String>,
}

const JAAS_EXAMPLE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"…\";";

/// Parse `<module class> <flag> key="value"… ;` (one module, as Kafka's `sasl.jaas.config` takes).
fn parse_jaas(text: &str) -> Result<JaasLogin> {
    // Never echo the text: it holds the password.
    let bad = |why: &str| {
        Error::user(format!(
            "Kafka option 'kafka.sasl.jaas.config' is not a login module configuration ({why}): expected e.g. {JAAS_EXAMPLE}"
        ))
    };
    let mut chars = text.trim().chars().peekable();
    let skip_spaces = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    };
    let word = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        skip_spaces(chars);
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' || c == ';' || c == '"' {
                break;
            }
            w.push(c);
            chars.next();
        }
        w
    };
    let module = word(&mut chars);
    if module.is_empty() {
        return Err(bad("no login module class"));
    }
    let flag = word(&mut chars);
    if !["required", "requisite", "sufficient", "optional"]
        .contains(&flag.to_ascii_lowercase().as_str())
    {
        return Err(bad(
            "the module class must be followed by required, requisite, sufficient or optional",
        ));
    }
    let mut options = BTreeMap::new();
    loop {
        let key = word(&mut chars);
        if key.is_empty() {
            match chars.next() {
                Some(';') => break,
                None => return Err(bad("it does not end with ';'")),
                Some(_) => return Err(bad("an option without a name")),
            }
        }
        skip_spaces(&mut chars);
        if chars.next() != Some('=') {
            return Err(bad(&format!("option '{key}' has no '=' and value")));
        }
        skip_spaces(&mut chars);
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => v.push(c),
                        None => return Err(bad(&format!("the value of '{key}' is not closed"))),
                    },
                    Some(c) => v.push(c),
                    None => return Err(bad(&format!("the value of '{key}' is not closed"))),
                }
            }
            v
        } else {
            word(&mut chars)
        };
        options.insert(key, value);
    }
    if chars.any(|c| !c.is_whitespace()) {
        return Err(bad("text after the ';' (one login module is expected)"));
    }
    Ok(JaasLogin { module, options })
}

/// Translate `sasl.jaas.config` into librdkafka's user name and password (and, for the PLAIN
/// module, the mechanism when none is given).
fn jaas_login(text: &str, out: &mut BTreeMap<String, String>) -> Result<()> {
    let login = parse_jaas(text)?;
    let class = login.module.rsplit('.').next().unwrap_or_default();
    let mechanism = out.get("sasl.mechanisms").cloned();
    match class {
        "PlainLoginModule" => match mechanism.as_deref() {
            None => {
                out.insert("sasl.mechanisms".into(), "PLAIN".into());
            }
            Some("PLAIN") => {}
            Some(other) => {
                return Err(Error::user(format!(
                    "Kafka option 'kafka.sasl.jaas.config' uses PlainLoginModule but 'kafka.sasl.mechanism' is '{other}': use ScramLoginModule for SCRAM, or set the mechanism to PLAIN"
                )));
            }
        },
        "ScramLoginModule" => match mechanism.as_deref() {
            Some("SCRAM-SHA-256" | "SCRAM-SHA-512") => {}
            _ => {
                return Err(Error::user(
                    "Kafka option 'kafka.sasl.jaas.config' uses ScramLoginModule: set 'kafka.sasl.mechanism' to SCRAM-SHA-256 or SCRAM-SHA-512 (as the broker's users are stored)",
                ));
            }
        },
        _ => {
            return Err(Error::user(format!(
                "Kafka option 'kafka.sasl.jaas.config' uses login module '{}', which librdkafka cannot run: expected PlainLoginModule or ScramLoginModule (for OAUTHBEARER set librdkafka's 'kafka.sasl.oauthbearer.*' options)",
                login.module
            )));
        }
    }
    for (jaas_key, native) in [("username", "sasl.username"), ("password", "sasl.password")] {
        let Some(value) = login.options.get(jaas_key) else {
            return Err(Error::user(format!(
                "Kafka option 'kafka.sasl.jaas.config' has no {jaas_key}=\"…\": expected e.g. {JAAS_EXAMPLE}"
            )));
        };
        if out.contains_key(native) {
            return Err(Error::user(format!(
                "Kafka options 'kafka.sasl.jaas.config' and 'kafka.{native}' both give the {jaas_key}: give it once"
            )));
        }
        out.insert(native.to_string(), value.clone());
    }
    Ok(())
}

/// Whether the file at `path` holds PEM text.
fn is_pem(path: &str) -> bool {
    std::fs::read(path.trim()).is_ok_and(|bytes| {
        String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).contains("-----BEGIN")
    })
}

/// Java's trust store: a PEM one becomes librdkafka's `ssl.ca.location`; JKS and PKCS#12 trust
/// stores cannot be read by librdkafka.
fn trust_store(out: &mut BTreeMap<String, String>) -> Result<()> {
    let kind = out.remove("ssl.truststore.type");
    // A PEM trust store has no password (the Java client ignores one too); librdkafka has no
    // such property.
    out.remove("ssl.truststore.password");
    let Some(location) = out.remove("ssl.truststore.location") else {
        if let Some(kind) = kind.filter(|k| !k.trim().eq_ignore_ascii_case("PEM")) {
            return Err(Error::user(format!(
                "Kafka option 'kafka.ssl.truststore.type' is '{kind}' without a trust store: librdkafka reads CA certificates from PEM files ('kafka.ssl.truststore.location' or 'kafka.ssl.ca.location')"
            )));
        }
        return Ok(());
    };
    let pem = match kind.as_deref().map(str::trim) {
        Some(k) if k.eq_ignore_ascii_case("PEM") => true,
        Some(_) => false,
        None => is_pem(&location),
    };
    if !pem {
        return Err(Error::user(format!(
            "Kafka option 'kafka.ssl.truststore.location' is '{location}', a {} trust store, which librdkafka cannot read: export its CA certificates to a PEM file (keytool -exportcert -rfc …) and name that file (with 'kafka.ssl.truststore.type' = 'PEM', or as 'kafka.ssl.ca.location')",
            kind.as_deref().unwrap_or("JKS or PKCS12")
        )));
    }
    if out.contains_key("ssl.ca.location") {
        return Err(Error::user(
            "Kafka options 'kafka.ssl.truststore.location' and 'kafka.ssl.ca.location' both name the CA certificates: give one",
        ));
    }
    out.insert("ssl.ca.location".to_string(), location);
    Ok(())
}

/// Java's key store: PKCS#12 is librdkafka's `ssl.keystore.location` as well; a PEM one (the
/// certificate chain and the private key in one file) becomes `ssl.certificate.location` and
/// `ssl.key.location`; JKS cannot be read by librdkafka.
fn key_store(out: &mut BTreeMap<String, String>) -> Result<()> {
    let Some(kind) = out.remove("ssl.keystore.type") else {
        return Ok(());
    };
    match kind.trim().to_ascii_uppercase().as_str() {
        "PKCS12" => Ok(()),
        "PEM" => {
            let Some(location) = out.remove("ssl.keystore.location") else {
                return Err(Error::user(
                    "Kafka option 'kafka.ssl.keystore.type' is PEM without 'kafka.ssl.keystore.location': name the PEM file holding the client certificate and its key",
                ));
            };
            if let Some(password) = out.remove("ssl.keystore.password") {
                // The key's password, if the PEM key is encrypted.
                out.entry("ssl.key.password".to_string())
                    .or_insert(password);
            }
            out.insert("ssl.certificate.location".to_string(), location.clone());
            out.insert("ssl.key.location".to_string(), location);
            Ok(())
        }
        _ => Err(Error::user(format!(
            "Kafka option 'kafka.ssl.keystore.type' is '{kind}', which librdkafka cannot read: convert the key store to PKCS12 (keytool -importkeystore -deststoretype PKCS12 …) or to PEM files ('kafka.ssl.certificate.location' and 'kafka.ssl.key.location')"
        ))),
    }
}

/// Who the options log in as, for messages: `user 'alice' (SASL SCRAM-SHA-512)`, or that no
/// SASL login is configured.
pub fn principal(params: &BTreeMap<String, String>) -> String {
    let translated = librdkafka_params(params).unwrap_or_else(|_| params.clone());
    match (
        translated.get("sasl.username"),
        translated.get("sasl.mechanisms"),
    ) {
        (Some(user), mechanism) => format!(
            "user '{user}' (SASL {})",
            mechanism.map_or("GSSAPI", String::as_str)
        ),
        (None, _) => match translated.get("security.protocol").map(String::as_str) {
            Some("ssl") => "the client certificate's subject (SSL)".to_string(),
            _ => "no SASL user (kafka.sasl.jaas.config or kafka.sasl.username not set)".to_string(),
        },
    }
}

/// Whether librdkafka's `error` says the brokers refused the login (a retry with the same
/// credentials cannot help).
pub fn is_login_refusal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// The error of a login `servers` refused (`reason`: librdkafka's words) for `params`'
/// principal: the user's to fix, so not retried.
pub fn login_refused(servers: &str, params: &BTreeMap<String, String>, reason: &str) -> Error {
    Error::user(format!(
        "Kafka brokers at '{servers}' refused the login of {}: {reason}: check the credentials (kafka.sasl.jaas.config, or kafka.sasl.username and kafka.sasl.password[.file]) and kafka.sasl.mechanism",
        principal(params)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn translated(pairs: &[(&str, &str)]) -> Result<BTreeMap<String, String>> {
        librdkafka_params(&params(pairs))
    }

    /// A fresh directory of this test process.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("faisca-security-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn jaas_scram_and_plain_become_librdkafka_user_and_password() {
        let out = translated(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "scram-sha-512"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="p\"w;d";"#,
            ),
        ])
        .unwrap();
        assert_eq!(out["security.protocol"], "sasl_ssl");
        assert_eq!(out["sasl.mechanisms"], "SCRAM-SHA-512");
        assert_eq!(out["sasl.username"], "alice");
        assert_eq!(out["sasl.password"], "p\"w;d");
        assert!(!out.contains_key("sasl.jaas.config"));
        assert!(!out.contains_key("sasl.mechanism"));
        // librdkafka accepts the result.
        client_config(&out).unwrap().create_native_config().unwrap();

        let plain = translated(&[(
            "sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username = bob password= secret ;",
        )])
        .unwrap();
        assert_eq!(plain["sasl.mechanisms"], "PLAIN");
        assert_eq!(plain["sasl.username"], "bob");
        assert_eq!(plain["sasl.password"], "secret");
    }

    #[test]
    fn bad_jaas_is_refused_without_echoing_the_password() {
        for (jaas, expected) in [
            ("", "no login module class"),
            ("x.ScramLoginModule username=\"a\";", "required"),
            (
                "x.ScramLoginModule required username=\"a\" password=\"hunter2",
                "not closed",
            ),
            (
                "x.ScramLoginModule required username=\"a\" password=\"hunter2\"",
                "';'",
            ),
            (
                "x.ScramLoginModule required password=\"hunter2\";",
                "no username",
            ),
            (
                "x.Krb5LoginModule required password=\"hunter2\";",
                "Krb5LoginModule",
            ),
        ] {
            let error = translated(&[
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.jaas.config", jaas),
            ])
            .unwrap_err()
            .to_string();
            assert!(error.contains(expected), "{jaas}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let error = translated(&[(
            "sasl.jaas.config",
            "x.ScramLoginModule required username=\"a\" password=\"b\";",
        )])
        .unwrap_err()
        .to_string();
        assert!(error.contains("SCRAM-SHA-256 or SCRAM-SHA-512"), "{error}");
        let error = translated(&[("sasl.mechanism", "GSSAPI")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected one of PLAIN"), "{error}");
        let error = translated(&[("security.protocol", "tls")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("SASL_SSL"), "{error}");
    }

    #[test]
    fn secrets_come_from_files_and_a_missing_file_is_named() {
        let dir = scratch("files");
        let password = dir.join("password");
        std::fs::write(&password, "from-a-file\n").unwrap();
        let jaas = dir.join("jaas");
        std::fs::write(
            &jaas,
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"carol\" password=\"j\";\n",
        )
        .unwrap();
        let path = password.display().to_string();
        let out = translated(&[("sasl.username", "alice"), ("sasl.password.file", &path)]).unwrap();
        assert_eq!(out["sasl.password"], "from-a-file");
        let out = translated(&[
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.jaas.config.file", &jaas.display().to_string()),
        ])
        .unwrap();
        assert_eq!(out["sasl.username"], "carol");
        let error = translated(&[("sasl.password.file", "/no/such/secret")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("kafka.sasl.password.file") && error.contains("/no/such/secret"),
            "{error}"
        );
        let error = translated(&[("sasl.password", "x"), ("sasl.password.file", &path)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("give the secret once"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn java_stores_become_pem_locations_or_say_what_to_convert() {
        let dir = scratch("stores");
        let pem = dir.join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let jks = dir.join("trust.jks");
        std::fs::write(&jks, [0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2]).unwrap();
        let (pem, jks) = (pem.display().to_string(), jks.display().to_string());
        let out = translated(&[
            ("ssl.truststore.location", &pem),
            ("ssl.truststore.password", "changeit"),
            ("ssl.endpoint.identification.algorithm", ""),
        ])
        .unwrap();
        assert_eq!(out["ssl.ca.location"], pem);
        assert_eq!(out["ssl.endpoint.identification.algorithm"], "none");
        assert!(!out.contains_key("ssl.truststore.password"));
        let error = translated(&[("ssl.truststore.location", &jks)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("PEM") && error.contains(&jks), "{error}");
        let out = translated(&[
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", &pem),
        ])
        .unwrap();
        assert_eq!(out["ssl.certificate.location"], pem);
        assert_eq!(out["ssl.key.location"], pem);
        let error = translated(&[
            ("ssl.keystore.type", "JKS"),
            ("ssl.keystore.location", &jks),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("PKCS12"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_principal_is_named_without_secrets() {
        let p = params(&[
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "hunter2"),
        ]);
        assert_eq!(principal(&p), "user 'alice' (SASL SCRAM-SHA-512)");
    }
}
