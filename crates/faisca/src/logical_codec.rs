//! Logical plans between the client and the driver, the client's half (the driver's is
//! `faisca_driver::logical_codec`): a DataFrame's plan is built on sources the driver resolved
//! and sent back to run. A source that is not a file scan stays on the driver; the client holds
//! a [`RemoteTable`] (its schema, to plan against) and sends it back as the same reference.

use std::sync::Arc;

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
use faisca_proto::{decode_source_ref, encode_source_ref};

/// The client's codec: sources stay references to the driver's providers.
#[derive(Debug, Default)]
pub struct ClientLogicalCodec;

impl LogicalExtensionCodec for ClientLogicalCodec {
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
        table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let reference = decode_source_ref(buf)?;
        Ok(Arc::new(RemoteTable {
            source_id: reference.source_id,
            streaming: reference.streaming,
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
        buf.extend(encode_source_ref(remote.source_id, remote.streaming));
        Ok(())
    }
}

/// A table that lives on the driver, as a client sees it: a schema to plan against.
#[derive(Debug)]
pub struct RemoteTable {
    source_id: u64,
    streaming: bool,
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

impl RemoteTable {
    /// Whether it is a streaming source (`read_stream()`).
    pub fn is_streaming(&self) -> bool {
        self.streaming
    }
}

/// Whether `plan` reads a streaming source.
pub fn is_streaming(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut streaming = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            && provider
                .downcast_ref::<RemoteTable>()
                .is_some_and(RemoteTable::is_streaming)
        {
            streaming = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    streaming
}

/// Encode a DataFrame's plan for the driver.
pub fn encode_logical_plan(plan: &LogicalPlan) -> Result<Vec<u8>> {
    let bytes = datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(
        plan,
        &ClientLogicalCodec,
    )?;
    Ok(bytes.to_vec())
}

/// Decode a plan the driver sent; functions are looked up in `ctx`.
pub fn decode_logical_plan(bytes: &[u8], ctx: &TaskContext) -> Result<LogicalPlan> {
    datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(
        bytes,
        ctx,
        &ClientLogicalCodec,
    )
    .map_err(|e| Error::from(e).context("decoding a DataFrame plan from the driver"))
}
