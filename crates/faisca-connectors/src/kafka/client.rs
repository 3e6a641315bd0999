//! Every Kafka client Faísca makes — the driver's planning and write-check clients, the
//! executors' range readers and producers — is made by [`create`], and watched by the
//! [`ClientWatch`] its context holds.
//!
//! **Where it may connect.** librdkafka connects to the bootstrap brokers, then to whichever
//! brokers the cluster's metadata advertises, at any time: a partition's new leader, a group
//! coordinator, a broker added later. Each of those connections goes through [`connect`]
//! (librdkafka's `connect_cb`), which gets the address librdkafka resolved and is about to
//! connect to, and the broker's `host:port`. It refuses a broker outside the session's
//! `faisca.sql.allowedLocations` (as `kafka://host:port`) and an address that is link-local or a
//! cloud metadata service unless the rule names the broker — checked on the very address
//! connected to, so a DNS answer that changes between a check and the connection cannot slip
//! past. The first refusal is kept in the watch; the client's owner fails with it, naming the
//! broker and the rule, instead of waiting for records that cannot come.
//!
//! The callback and its installation are the unsafe code of `faisca-rdkafka-guard`
//! ([`create`]); what is admitted is decided here, by [`ClientWatch::admit`].
//!
//! **What else the watch keeps.** librdkafka reports a refused login as an event — to the
//! error callback of a producer, as a poll result of a consumer — not as the failed call's
//! error; the watch keeps the first one so that the call's error can name the principal, and a
//! retry that cannot help is not made. It also keeps the client's last error (a failed TLS
//! handshake says why only there).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use faisca_common::Error;
use faisca_common::locations::AllowedLocations;
pub use faisca_rdkafka_guard::create;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::security::{is_login_refusal, login_refused};

/// What a client's context watches: the rule its connections are held to, the first broker
/// refused under it, the first refused login, and the last error of any kind.
#[derive(Debug, Default)]
pub struct ClientWatch {
    allowed: AllowedLocations,
    refused_broker: Mutex<Option<String>>,
    refused_login: Mutex<Option<String>>,
    last: Mutex<Option<String>>,
}

fn read(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

impl ClientWatch {
    /// A watch holding connections to `allowed`.
    pub fn new(allowed: AllowedLocations) -> Self {
        ClientWatch {
            allowed,
            ..ClientWatch::default()
        }
    }

    /// Keep `error` (`reason`: librdkafka's words) as the last error, and as the refused login
    /// if it is the first login refusal; whether it was one.
    pub fn observe(&self, error: &KafkaError, reason: &str) -> bool {
        // "All brokers are down" sums up errors already seen: keep the one that says why.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        }
        if !is_login_refusal(error) {
            return false;
        }
        let mut refusal = self.refused_login.lock().unwrap_or_else(|e| e.into_inner());
        refusal.get_or_insert_with(|| reason.to_string());
        true
    }

    /// The last error librdkafka reported for the client.
    pub fn last_error(&self) -> Option<String> {
        read(&self.last)
    }

    /// Whether the client may connect to `address` for the broker `nodename` (librdkafka's
    /// `host:port`); a refusal is kept (the first one).
    pub fn admit(&self, nodename: &str, address: Option<SocketAddr>) -> bool {
        let location = format!("kafka://{}", bracketed(nodename));
        let what = "Kafka broker";
        let verdict = self
            .allowed
            .check(&location, what)
            .and_then(|()| match address {
                Some(address) => self
                    .allowed
                    .check_resolved(&location, what, &[address.ip()]),
                None => Err(Error::user(format!(
                    "{what} '{location}' resolved to an address that is neither IPv4 nor IPv6"
                ))),
            });
        match verdict {
            Ok(()) => true,
            Err(refused) => {
                let mut slot = self
                    .refused_broker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert_with(|| refused.to_string());
                false
            }
        }
    }

    /// The error that ends the client's work, if there is one: a broker it was refused to
    /// connect to, or a login the brokers at `servers` refused for `params`' principal. Both
    /// are the user's to fix, so neither is retried.
    pub fn refused_error(&self, servers: &str, params: &BTreeMap<String, String>) -> Option<Error> {
        if let Some(broker) = read(&self.refused_broker) {
            return Some(Error::user(format!(
                "Kafka brokers at '{servers}': not connecting: {broker}"
            )));
        }
        read(&self.refused_login).map(|reason| login_refused(servers, params, &reason))
    }
}

/// `host:port` with an IPv6 host in brackets (librdkafka writes node names without them).
fn bracketed(nodename: &str) -> String {
    match nodename.rsplit_once(':') {
        Some((host, port)) if host.contains(':') && !host.starts_with('[') => {
            format!("[{host}]:{port}")
        }
        _ => nodename.to_string(),
    }
}

/// Implements `faisca_rdkafka_guard::ConnectGuard` for a context type with a `watch:
/// ClientWatch` field: its connections are admitted by the watch.
macro_rules! guarded_by_watch {
    ($context:ty) => {
        impl faisca_rdkafka_guard::ConnectGuard for $context {
            fn admit(&self, broker: &str, address: Option<std::net::SocketAddr>) -> bool {
                self.watch.admit(broker, address)
            }
        }
    };
}
pub(crate) use guarded_by_watch;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
    use rdkafka::{ClientConfig, ClientContext};

    use super::*;

    #[derive(Default)]
    struct Context {
        watch: ClientWatch,
    }
    impl ClientContext for Context {}
    impl ConsumerContext for Context {}
    guarded_by_watch!(Context);

    fn consumer(servers: &str, allowed: &str) -> BaseConsumer<Context> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", servers)
            .set("socket.connection.setup.timeout.ms", "1000");
        create(
            &config,
            Context {
                watch: ClientWatch::new(AllowedLocations::parse(allowed)),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_metadata_address_is_refused_where_librdkafka_connects() {
        // Refused before any byte is sent: the callback sees the address first.
        let consumer = consumer("169.254.169.254:9092", "");
        assert!(
            consumer
                .fetch_metadata(None, Duration::from_secs(2))
                .is_err()
        );
        let error = consumer
            .context()
            .watch
            .refused_error("169.254.169.254:9092", &BTreeMap::new())
            .expect("the connection was refused");
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(
            text.contains("kafka://169.254.169.254:9092") && text.contains("metadata address"),
            "{text}"
        );
    }

    #[test]
    fn a_broker_outside_the_rule_is_refused_and_one_inside_is_tried() {
        let refused = consumer("127.0.0.1:1", "kafka://elsewhere:9092");
        assert!(
            refused
                .fetch_metadata(None, Duration::from_secs(2))
                .is_err()
        );
        let text = refused
            .context()
            .watch
            .refused_error("127.0.0.1:1", &BTreeMap::new())
            .unwrap()
            .to_string();
        assert!(
            text.contains("'kafka://127.0.0.1:1' is outside faisca.sql.allowedLocations"),
            "{text}"
        );
        // Allowed: librdkafka connects (nothing listens on port 1), nothing is refused.
        let allowed = consumer("127.0.0.1:1", "kafka://127.0.0.1:1");
        assert!(
            allowed
                .fetch_metadata(None, Duration::from_secs(2))
                .is_err()
        );
        let watch = &allowed.context().watch;
        assert!(
            watch
                .refused_error("127.0.0.1:1", &BTreeMap::new())
                .is_none()
        );
    }

    #[test]
    fn node_names_are_read_as_locations() {
        assert_eq!(bracketed("::1:9092"), "[::1]:9092");
        assert_eq!(bracketed("[::1]:9092"), "[::1]:9092");
        assert_eq!(bracketed("broker:9092"), "broker:9092");
        let watch = ClientWatch::new(AllowedLocations::parse("kafka://[::1]:9092"));
        let v6: SocketAddr = "[::1]:9092".parse().unwrap();
        assert!(watch.admit("::1:9092", Some(v6)));
        assert!(!watch.admit("::1:9093", Some(v6)));
        // An address that is neither IPv4 nor IPv6 is not connected to.
        assert!(!ClientWatch::default().admit("broker:9092", None));
    }

    #[test]
    fn refused_logins_are_kept_and_name_the_principal() {
        let p: BTreeMap<String, String> = [
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "hunter2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let watch = ClientWatch::default();
        assert!(!watch.observe(&KafkaError::Canceled, "x"));
        assert!(watch.refused_error("b:1", &p).is_none());
        assert_eq!(watch.last_error().as_deref(), Some("x"));
        let refused = KafkaError::MetadataFetch(RDKafkaErrorCode::Authentication);
        assert!(watch.observe(&refused, "SASL authentication error: bad credentials"));
        let error = watch.refused_error("b:1", &p).unwrap();
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(
            text.contains("user 'alice'") && text.contains("bad credentials"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
