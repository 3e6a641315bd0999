//! librdkafka's `connect_cb` on rust-rdkafka clients: a client made by [`create`] asks its
//! context ([`ConnectGuard::admit`]) before each connection librdkafka makes — to a bootstrap
//! broker, or to any broker the cluster's metadata advertises later — with the broker's
//! `host:port` and the very address about to be connected to.
//!
//! This is the only crate of Faísca with unsafe code (the workspace forbids it elsewhere): the
//! callback is a C function, and rust-rdkafka 0.39 has no way to set it. So [`create`]:
//!
//! 1. makes the client (any rust-rdkafka type holding a [`Client`]) from its configuration
//!    without its bootstrap brokers, so that librdkafka starts no broker thread that could
//!    connect;
//! 2. checks that librdkafka's opaque pointer is the client's context (rust-rdkafka sets it so;
//!    the callback reads the context through it, and a rust-rdkafka that changed this would
//!    fail here, not in the callback);
//! 3. sets the callback on the client's own configuration, which librdkafka reads at each
//!    connection attempt — nothing reads it yet, as no broker thread exists;
//! 4. adds the bootstrap brokers with `rd_kafka_brokers_add`, which starts their threads (and
//!    which rebootstrapping reuses).
//!
//! The callback never unwinds into C: a panic refuses the connection.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::client::Client;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

/// A client context that decides where its client may connect.
pub trait ConnectGuard: ClientContext {
    /// Whether the client may connect to `address` for the broker `broker` (librdkafka's node
    /// name, `host:port` as the configuration or the metadata gave it: an IPv6 host may come
    /// with or without brackets); `address` is `None` when it is
    /// neither IPv4 nor IPv6. Called from librdkafka's broker threads; keep it short.
    fn admit(&self, broker: &str, address: Option<SocketAddr>) -> bool;
}

/// A rust-rdkafka client type whose [`Client`] can be reached.
pub trait HasClient<C: ClientContext> {
    /// The client.
    fn native(&self) -> &Client<C>;
}

impl<C: ConsumerContext> HasClient<C> for BaseConsumer<C> {
    fn native(&self) -> &Client<C> {
        self.client()
    }
}

impl<C: ConsumerContext + 'static> HasClient<C> for StreamConsumer<C> {
    fn native(&self) -> &Client<C> {
        self.client()
    }
}

impl<C: ProducerContext + 'static> HasClient<C> for ThreadedProducer<C> {
    fn native(&self) -> &Client<C> {
        self.client()
    }
}

/// A client of `config` with `context`, which admits or refuses each of its connections (see
/// the crate's overview). A `bootstrap.servers` naming no broker is refused here.
pub fn create<C, T>(config: &ClientConfig, context: C) -> KafkaResult<T>
where
    C: ConnectGuard,
    T: FromClientConfigAndContext<C> + HasClient<C>,
{
    let servers = config
        .get("bootstrap.servers")
        .or_else(|| config.get("metadata.broker.list"))
        .unwrap_or_default()
        .to_string();
    let mut without_brokers = config.clone();
    without_brokers
        .remove("bootstrap.servers")
        .remove("metadata.broker.list");
    let client: T = without_brokers.create_with_context(context)?;
    let native = client.native();
    let rk = native.native_ptr();
    #[allow(unsafe_code)]
    // SAFETY: `rk` is the live librdkafka client that `client` owns.
    let opaque = unsafe { rdsys::rd_kafka_opaque(rk) };
    if opaque as *const C != Arc::as_ptr(native.context()) {
        return Err(KafkaError::ClientCreation(
            "this rust-rdkafka does not pass the client's context to librdkafka's callbacks, so its connections cannot be checked".into(),
        ));
    }
    #[allow(unsafe_code)]
    // SAFETY: the client was made without brokers, so librdkafka has started no broker thread
    // that could read the configuration while the callback is set (its internal broker never
    // connects); broker threads start below, after it. librdkafka reads `connect_cb` from this
    // configuration at each connection attempt and passes it the opaque checked above, the
    // context, which the client keeps alive until its threads have stopped.
    unsafe {
        let conf = rdsys::rd_kafka_conf(rk) as *mut rdsys::rd_kafka_conf_t;
        rdsys::rd_kafka_conf_set_connect_cb(conf, Some(connect::<C>));
    }
    if !servers.trim().is_empty() {
        let list = CString::new(servers.as_str()).map_err(|_| {
            KafkaError::ClientCreation("bootstrap.servers holds a NUL character".into())
        })?;
        #[allow(unsafe_code)]
        // SAFETY: `list` is NUL-terminated and outlives the call, which copies it.
        let added = unsafe { rdsys::rd_kafka_brokers_add(rk, list.as_ptr()) };
        if added <= 0 {
            return Err(KafkaError::ClientCreation(format!(
                "bootstrap.servers '{servers}' names no broker: expected host:port,…"
            )));
        }
    }
    Ok(client)
}

/// The address `addr` points at (`len` bytes), if it is IPv4 or IPv6.
///
/// # Safety
/// `addr` is null or points at `len` readable bytes of a socket address.
#[allow(unsafe_code)]
unsafe fn socket_address(addr: *const libc::sockaddr, len: c_int) -> Option<SocketAddr> {
    if addr.is_null() {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    if len < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: `addr` points at `len` bytes (the contract), at least a family's worth.
    let family = c_int::from(unsafe { std::ptr::read_unaligned(&raw const (*addr).sa_family) });
    match family {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: a whole `sockaddr_in` fits in the `len` bytes at `addr`.
            let v4 = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))),
                u16::from_be(v4.sin_port),
            ))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: a whole `sockaddr_in6` fits in the `len` bytes at `addr`.
            let v6 = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in6) };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)),
                u16::from_be(v6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// librdkafka's `connect_cb`: connect `sockfd` to `addr` for the broker `id` (`host:port`) if
/// the context at `opaque` admits it. Returns 0 or an `errno`, as librdkafka expects: `EACCES`
/// for a refusal (librdkafka logs it and retries later; the client's owner stops first).
///
/// # Safety
/// Called by librdkafka only, as [`create`] installs it: `opaque` is the client's context of
/// type `C`, `id` a NUL-terminated node name, `addr` an address of `addrlen` bytes.
#[allow(unsafe_code)]
unsafe extern "C" fn connect<C: ConnectGuard>(
    sockfd: c_int,
    addr: *const libc::sockaddr,
    addrlen: c_int,
    id: *const c_char,
    opaque: *mut c_void,
) -> c_int {
    let admitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if opaque.is_null() || id.is_null() {
            return false;
        }
        // SAFETY: `create` checked that the opaque is the client's context, which outlives the
        // client's broker threads; librdkafka passes a NUL-terminated node name, and its address
        // with its length.
        let (context, broker, address) = unsafe {
            (
                &*(opaque as *const C),
                CStr::from_ptr(id).to_string_lossy(),
                socket_address(addr, addrlen),
            )
        };
        context.admit(&broker, address)
    }));
    if !matches!(admitted, Ok(true)) {
        return libc::EACCES;
    }
    let Ok(len) = libc::socklen_t::try_from(addrlen) else {
        return libc::EINVAL;
    };
    // SAFETY: librdkafka's socket, and the address it resolved for it with its length.
    if unsafe { libc::connect(sockfd, addr, len) } == 0 {
        return 0;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // Its sockets are non-blocking: the connection completes later, as without a callback.
        Some(libc::EINPROGRESS) => 0,
        Some(errno) => errno,
        None => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Admits the brokers named, records every call.
    #[derive(Default)]
    struct Recorder {
        admit: Vec<String>,
        seen: Mutex<Vec<(String, Option<SocketAddr>)>>,
    }
    impl ClientContext for Recorder {}
    impl ConsumerContext for Recorder {}
    impl ConnectGuard for Recorder {
        fn admit(&self, broker: &str, address: Option<SocketAddr>) -> bool {
            self.seen
                .lock()
                .unwrap()
                .push((broker.to_string(), address));
            self.admit.iter().any(|b| b == broker)
        }
    }

    fn consumer(servers: &str, admit: &[&str]) -> BaseConsumer<Recorder> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", servers)
            .set("socket.connection.setup.timeout.ms", "1000");
        let recorder = Recorder {
            admit: admit.iter().map(|s| s.to_string()).collect(),
            ..Recorder::default()
        };
        create(&config, recorder).unwrap()
    }

    fn seen(consumer: &BaseConsumer<Recorder>) -> Vec<(String, Option<SocketAddr>)> {
        consumer.context().seen.lock().unwrap().clone()
    }

    #[test]
    fn every_connection_is_asked_for_with_its_broker_and_address() {
        // Refused: nothing is connected, the call fails.
        let refused = consumer("127.0.0.1:1", &[]);
        assert!(
            refused
                .fetch_metadata(None, Duration::from_secs(2))
                .is_err()
        );
        let asked = seen(&refused);
        let address: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!asked.is_empty());
        assert!(
            asked
                .iter()
                .all(|(b, a)| b == "127.0.0.1:1" && *a == Some(address)),
            "{asked:?}"
        );
        // Admitted: librdkafka connects (nothing listens on port 1) and says so.
        let admitted = consumer("127.0.0.1:1", &["127.0.0.1:1"]);
        let error = admitted
            .fetch_metadata(None, Duration::from_secs(2))
            .unwrap_err();
        assert!(!seen(&admitted).is_empty(), "{error}");
    }

    #[test]
    fn ipv6_addresses_are_read() {
        let v6 = consumer("[::1]:1", &[]);
        let _ = v6.fetch_metadata(None, Duration::from_millis(500));
        let expected: SocketAddr = "[::1]:1".parse().unwrap();
        let asked = seen(&v6);
        // A machine without IPv6 resolves nothing: nothing is asked.
        assert!(
            asked
                .iter()
                .all(|(b, a)| b == "[::1]:1" && *a == Some(expected)),
            "{asked:?}"
        );
    }

    #[test]
    fn broker_lists_without_a_broker_are_refused_at_creation() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", ",,");
        let made: KafkaResult<BaseConsumer<Recorder>> = create(&config, Recorder::default());
        let error = made.err().expect("no broker").to_string();
        assert!(error.contains("names no broker"), "{error}");
    }
}
