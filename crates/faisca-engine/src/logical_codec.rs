//! Logical plans between a client and the driver (Spark Connect's model, see DESIGN.md
//! "Sessions"): the client builds DataFrame plans on sources the driver resolved, and sends them
//! back to run.
//!
//! File scans (DataFusion `ListingTable`s) travel as datafusion-proto encodes them: URLs, format
//! options, schema; decoding one reads nothing. Any other table provider (an in-memory table, a
//! catalog view) stays on the driver: [`DriverLogicalCodec`] keeps it in the session's
//! [`SourceRegistry`] and sends a [`faisca_proto::SourceRef`]; the client decodes that into a
//! [`RemoteTable`] (schema only, cannot be scanned) and encodes it back as the same reference.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session as CatalogSession;
use datafusion::common::TableReference;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use faisca_common::{Error, Result};
use faisca_proto::SourceRef;
use prost::Message;

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

fn decode_source(buf: &[u8]) -> DfResult<u64> {
    SourceRef::decode(buf)
        .map(|s| s.source_id)
        .map_err(|e| Error::user(format!("malformed DataFrame source reference: {e}")).into())
}

fn encode_source(source_id: u64, buf: &mut Vec<u8>) -> DfResult<()> {
    SourceRef { source_id }
        .encode(buf)
        .map_err(|e| DataFusionError::Internal(format!("encoding a source reference: {e}")))
}

fn no_extensions() -> DataFusionError {
    DataFusionError::NotImplemented(
        "user-defined logical plan nodes cannot be sent between client and driver".into(),
    )
}

/// The driver's codec for one session.
#[derive(Debug)]
pub struct DriverLogicalCodec {
    /// The session's sources.
    pub sources: Arc<SourceRegistry>,
}

impl LogicalExtensionCodec for DriverLogicalCodec {
    fn try_decode(&self, _: &[u8], _: &[LogicalPlan], _: &TaskContext) -> DfResult<Extension> {
        Err(no_extensions())
    }

    fn try_encode(&self, _: &Extension, _: &mut Vec<u8>) -> DfResult<()> {
        Err(no_extensions())
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        _table_ref: &TableReference,
        _schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        Ok(self.sources.get(decode_source(buf)?)?)
    }

    fn try_encode_table_provider(
        &self,
        _table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let source_id = match node.downcast_ref::<RemoteTable>() {
            Some(remote) => remote.source_id,
            None => self.sources.add(node)?,
        };
        encode_source(source_id, buf)
    }
}

/// The client's codec: sources stay references to the driver's providers.
#[derive(Debug, Default)]
pub struct ClientLogicalCodec;

impl LogicalExtensionCodec for ClientLogicalCodec {
    fn try_decode(&self, _: &[u8], _: &[LogicalPlan], _: &TaskContext) -> DfResult<Extension> {
        Err(no_extensions())
    }

    fn try_encode(&self, _: &Extension, _: &mut Vec<u8>) -> DfResult<()> {
        Err(no_extensions())
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(RemoteTable {
            source_id: decode_source(buf)?,
            name: table_ref.to_string(),
            schema,
        }))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let remote = node.downcast_ref::<RemoteTable>().ok_or_else(|| {
            DataFusionError::from(Error::user(format!(
                "table '{table_ref}' was not resolved by the driver: build DataFrames from session.read(), session.table() or session.sql()"
            )))
        })?;
        encode_source(remote.source_id, buf)
    }
}

/// A table that lives on the driver, as a client sees it: a schema to plan against.
#[derive(Debug)]
pub struct RemoteTable {
    source_id: u64,
    name: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for RemoteTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::from(Error::internal(format!(
            "table '{}' lives on the driver; a client cannot scan it",
            self.name
        ))))
    }
}

/// Encode a logical plan with `codec`.
pub fn encode_logical_plan(
    plan: &LogicalPlan,
    codec: &dyn LogicalExtensionCodec,
) -> Result<Vec<u8>> {
    Ok(datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(plan, codec)?.to_vec())
}

/// Decode a logical plan with `codec`; functions are looked up in `ctx`.
pub fn decode_logical_plan(
    bytes: &[u8],
    ctx: &TaskContext,
    codec: &dyn LogicalExtensionCodec,
) -> Result<LogicalPlan> {
    datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(bytes, ctx, codec)
        .map_err(|e| Error::from(e).context("decoding a DataFrame plan"))
}
