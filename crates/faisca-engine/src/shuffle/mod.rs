//! Shuffle files: layout on disk, writer, reader, and Flight framing.
//!
//! One task attempt writes `<root>/<job>/<stage>/<map>-<attempt>.data` and `.index`. The data file
//! holds the task's output partitions one after another; each non-empty partition is one Arrow IPC
//! stream (schema, batches, end marker). The index holds `partitions + 1` little-endian `u64` offsets:
//! partition `p` is the half-open byte range `[index[p], index[p + 1])`. Both files appear atomically
//! (written under a temporary name, then renamed). Outputs that fit the task's memory reservation
//! stay in memory instead ([`memory`]); readers look there first.

pub mod frames;
pub mod memory;
pub mod reader;
pub mod writer;

use faisca_proto::rpc::RpcChannel;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_flight::flight_service_client::FlightServiceClient;
use faisca_common::{Error, Result};

/// The files of one task attempt's shuffle output.
#[derive(Debug, Clone)]
pub struct ShuffleFiles {
    /// The data file.
    pub data: PathBuf,
    /// The index file.
    pub index: PathBuf,
}

impl ShuffleFiles {
    /// Where `job`/`stage`/`map`/`attempt` lives under `root`.
    pub fn new(root: &Path, job: &str, stage: u32, map: u32, attempt: u32) -> Self {
        let dir = root.join(job).join(stage.to_string());
        ShuffleFiles {
            data: dir.join(format!("{map}-{attempt}.data")),
            index: dir.join(format!("{map}-{attempt}.index")),
        }
    }
}

/// Read the byte range of `partition` from an index file.
pub fn read_index_range(index: &Path, partition: u32) -> Result<std::ops::Range<u64>> {
    let bytes = std::fs::read(index).map_err(|e| {
        Error::external(format!(
            "shuffle index {} cannot be read: {e}",
            index.display()
        ))
    })?;
    let at = |i: usize| -> Option<u64> {
        bytes
            .get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    match (at(partition as usize), at(partition as usize + 1)) {
        (Some(start), Some(end)) if start <= end => Ok(start..end),
        _ => Err(Error::internal(format!(
            "shuffle index {} has no partition {partition} ({} offsets)",
            index.display(),
            bytes.len() / 8
        ))),
    }
}

/// Read partition `partition` of a local shuffle output into memory.
pub fn read_local_partition(files: &ShuffleFiles, partition: u32) -> Result<bytes::Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let range = read_index_range(&files.index, partition)?;
    let mut file = std::fs::File::open(&files.data).map_err(|e| {
        Error::external(format!(
            "shuffle data {} cannot be opened: {e}",
            files.data.display()
        ))
    })?;
    file.seek(SeekFrom::Start(range.start))?;
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    file.read_exact(&mut buf).map_err(|e| {
        Error::external(format!(
            "shuffle data {} is shorter than its index says: {e}",
            files.data.display()
        ))
    })?;
    Ok(buf.into())
}

/// Where one map task's output lives (from the driver's `LaunchTask`).
#[derive(Debug, Clone)]
pub struct MapOutputLocation {
    /// The map task's partition in its stage.
    pub map_partition: u32,
    /// The successful attempt that wrote it.
    pub attempt: u32,
    /// The executor holding the files.
    pub executor_id: String,
    /// That executor's Flight address (`host:port`).
    pub flight_address: String,
}

/// Everything a task's shuffle readers need, handed to them through the `TaskContext`'s
/// session-config extensions.
#[derive(Debug)]
pub struct ShuffleEnv {
    /// The job the task belongs to.
    pub job_id: String,
    /// The executor running the task (outputs it wrote itself are read from disk).
    pub executor_id: String,
    /// This executor's shuffle root directory.
    pub shuffle_root: PathBuf,
    /// Map outputs of each input stage.
    pub inputs: HashMap<u32, Vec<MapOutputLocation>>,
    /// Flight connections to other executors.
    pub clients: Arc<FlightClients>,
    /// How many map outputs one reader fetches at once.
    pub fetch_concurrency: usize,
    /// Outputs this executor keeps in memory.
    pub memory: Arc<memory::MemoryShuffleStore>,
    /// Whether transfers from executors on a loopback address are compressed too
    /// (`faisca.shuffle.compressLoopback`).
    pub compress_loopback: bool,
}

/// Whether a Flight address (`http://host:port`, `host:port`) names this host: `localhost`, an
/// IPv4 address in 127.0.0.0/8 or `::1`.
pub fn is_loopback(address: &str) -> bool {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A pool of Flight clients, one lazily connected channel per address.
#[derive(Debug)]
pub struct FlightClients {
    channels: Mutex<HashMap<String, RpcChannel>>,
    max_message_size: usize,
    transport: faisca_proto::rpc::ClientTransport,
}

impl FlightClients {
    /// An empty pool connecting with `transport` (TLS when the cluster runs it).
    pub fn new(max_message_size: usize, transport: faisca_proto::rpc::ClientTransport) -> Self {
        FlightClients {
            channels: Mutex::new(HashMap::new()),
            max_message_size,
            transport,
        }
    }

    /// How the pool connects.
    pub fn transport(&self) -> &faisca_proto::rpc::ClientTransport {
        &self.transport
    }

    /// A client for `address` (`host:port`), sharing one HTTP/2 connection per address.
    pub fn client(&self, address: &str) -> Result<FlightServiceClient<RpcChannel>> {
        let channel = {
            let mut channels = self
                .channels
                .lock()
                .map_err(|_| Error::internal("flight client pool poisoned"))?;
            match channels.get(address) {
                Some(c) => c.clone(),
                None => {
                    let channel = self.transport.lazy_channel(address)?;
                    channels.insert(address.to_string(), channel.clone());
                    channel
                }
            }
        };
        Ok(FlightServiceClient::new(channel)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size))
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_addresses_are_recognised() {
        for a in [
            "http://127.0.0.1:50051",
            "127.0.0.1:1",
            "http://127.1.2.3:9",
            "http://localhost:80",
            "http://[::1]:8080",
        ] {
            assert!(is_loopback(a), "{a}");
        }
        for a in [
            "http://10.0.0.5:50051",
            "http://executor-1.faisca.svc:50051",
            "http://[2001:db8::1]:1",
            "",
        ] {
            assert!(!is_loopback(a), "{a}");
        }
    }
}
