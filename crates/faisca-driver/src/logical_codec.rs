//! Logical plans between a client and the driver (Spark Connect's model): the client builds
//! DataFrame plans on sources the driver resolved, and sends them back to run. This is the
//! driver's half; the client's (`faisca::logical_codec`) is its mirror.
//!
//! File scans (DataFusion `ListingTable`s) travel as datafusion-proto encodes them: URLs, format
//! options, schema; decoding one reads nothing. Any other table provider (an in-memory table, a
//! catalog view) stays on the driver: [`DriverLogicalCodec`] keeps it in the session's
//! [`SourceRegistry`] and sends a [`faisca_proto::SourceRef`]; the client sees a table with a
//! schema that it cannot scan, and sends it back as the same reference.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use faisca_common::{Error, Result};
use faisca_proto::{decode_source_ref, encode_source_ref};

/// Table providers the driver resolved for one session, by id. Lives as long as the session.
#[derive(Debug, Default)]
pub struct SourceRegistry {
    sources: Mutex<HashMap<u64, Arc<dyn TableProvider>>>,
    next: AtomicU64,
}

impl SourceRegistry {
    /// Keep `provider`; returns its id.
    pub fn add(&self, provider: Arc<dyn TableProvider>) -> Result<u64> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.sources
            .lock()
            .map_err(|_| Error::internal("source registry lock poisoned"))?
            .insert(id, provider);
        Ok(id)
    }

    /// A fresh number (for unique source names).
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The provider with id `id`.
    pub fn get(&self, id: u64) -> Result<Arc<dyn TableProvider>> {
        self.sources
            .lock()
            .map_err(|_| Error::internal("source registry lock poisoned"))?
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                Error::user(format!(
                    "unknown DataFrame source {id}: expected a source this session resolved (was the DataFrame built in another session?)"
                ))
            })
    }
}

/// The driver's codec for one session.
#[derive(Debug)]
pub struct DriverLogicalCodec {
    /// The session's sources.
    pub sources: Arc<SourceRegistry>,
}

impl LogicalExtensionCodec for DriverLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        _: &TaskContext,
    ) -> DfResult<Extension> {
        faisca_engine::streaming_plan::decode_extension(buf, inputs)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        buf.extend(faisca_engine::streaming_plan::encode_extension(node)?);
        Ok(())
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        _table_ref: &TableReference,
        _schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        Ok(self.sources.get(decode_source_ref(buf)?.source_id)?)
    }

    fn try_encode_table_provider(
        &self,
        _table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let streaming = node
            .downcast_ref::<faisca_engine::streaming_source::StreamSourceTable>()
            .is_some();
        buf.extend(encode_source_ref(self.sources.add(node)?, streaming));
        Ok(())
    }
}

/// Encode a logical plan for the client.
pub fn encode_logical_plan(plan: &LogicalPlan, codec: &DriverLogicalCodec) -> Result<Vec<u8>> {
    Ok(datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(plan, codec)?.to_vec())
}

/// Decode a client's logical plan; functions are looked up in `ctx`. A plan deeper than
/// `max_depth` (`faisca.plan.maxDepth`) is refused.
pub fn decode_logical_plan(
    bytes: &[u8],
    ctx: &TaskContext,
    codec: &DriverLogicalCodec,
    max_depth: usize,
) -> Result<LogicalPlan> {
    let plan = faisca_common::decode_guarded("DataFrame plan", Error::user, || {
        datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(bytes, ctx, codec)
            .map_err(|e| Error::from(e).context("decoding a DataFrame plan"))
    })?;
    faisca_common::depth::check_plan(&plan, "the DataFrame plan", max_depth)?;
    Ok(plan)
}
