//! Plans and schemas on the wire.
//!
//! Stage plans travel as datafusion-proto bytes. Our own nodes ([`ShuffleReaderExec`],
//! [`crate::kafka::KafkaScanExec`], [`crate::pipeline::exec::PipelineExec`]) are encoded
//! by [`FaiscaCodec`]. A stage whose output is hash-partitioned travels with its
//! `RepartitionExec` as the root, so the partitioning expressions use datafusion-proto's own
//! encoding; [`decode_stage_plan`] takes that root off again.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use faisca_common::{Error, Result};
use faisca_proto::{ExtensionNode, ShuffleReaderNode, extension_node};
use prost::Message;

use crate::shuffle::reader::ShuffleReaderExec;

/// Encodes Faísca's own plan nodes inside datafusion-proto plans.
#[derive(Debug, Default)]
pub struct FaiscaCodec;

impl PhysicalExtensionCodec for FaiscaCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let node = ExtensionNode::decode(buf)
            .map_err(|e| DataFusionError::Internal(format!("malformed Faísca plan node: {e}")))?;
        match node.node {
            Some(extension_node::Node::ShuffleReader(r)) => {
                let schema = schema_from_ipc(&r.schema)?;
                Ok(Arc::new(ShuffleReaderExec::new(
                    r.stage_id,
                    schema,
                    r.partitions as usize,
                    r.hash_partitioned,
                )))
            }
            Some(extension_node::Node::KafkaScan(k)) => crate::kafka::decode_scan(k),
            Some(extension_node::Node::Pipeline(p)) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(format!(
                        "a pipeline node has one input, got {}",
                        inputs.len()
                    )));
                };
                crate::pipeline::wire::decode(p, input.clone(), ctx, self)
            }
            None => Err(DataFusionError::Internal("empty Faísca plan node".into())),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(pipeline) = node.downcast_ref::<crate::pipeline::exec::PipelineExec>() {
            let msg = ExtensionNode {
                node: Some(extension_node::Node::Pipeline(
                    crate::pipeline::wire::encode(pipeline, self)?,
                )),
            };
            return msg
                .encode(buf)
                .map_err(|e| DataFusionError::Internal(format!("encoding plan node: {e}")));
        }
        if let Some(scan) = node.downcast_ref::<crate::kafka::KafkaScanExec>() {
            let msg = ExtensionNode {
                node: Some(extension_node::Node::KafkaScan(crate::kafka::encode_scan(
                    scan,
                )?)),
            };
            return msg
                .encode(buf)
                .map_err(|e| DataFusionError::Internal(format!("encoding plan node: {e}")));
        }
        let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot be sent to executors (no datafusion-proto encoding)",
                node.name()
            )));
        };
        let msg = ExtensionNode {
            node: Some(extension_node::Node::ShuffleReader(ShuffleReaderNode {
                stage_id: reader.stage_id(),
                schema: schema_to_ipc(&reader.schema())?,
                partitions: reader.partitions() as u32,
                hash_partitioned: reader.hash_partitioned(),
            })),
        };
        msg.encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding plan node: {e}")))
    }
}

/// Encode a stage's task plan; with `hash` the plan is wrapped in the `RepartitionExec` whose
/// partitioning decides each output row's partition.
pub fn encode_stage_plan(
    plan: Arc<dyn ExecutionPlan>,
    hash: Option<&Partitioning>,
) -> Result<Bytes> {
    let root = match hash {
        Some(p) => Arc::new(RepartitionExec::try_new(plan, p.clone())?) as Arc<dyn ExecutionPlan>,
        None => plan,
    };
    let bytes =
        datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(root, &FaiscaCodec)
            .map_err(|e| Error::user(format!("this query cannot be distributed: {e}")))?;
    Ok(bytes)
}

/// Decode a stage plan; returns the task plan and, when `hash_partitioned`, the output partitioning.
pub fn decode_stage_plan(
    bytes: &[u8],
    hash_partitioned: bool,
    ctx: &TaskContext,
) -> Result<(Arc<dyn ExecutionPlan>, Option<Partitioning>)> {
    let root = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
        bytes,
        ctx,
        &FaiscaCodec,
    )
    .map_err(
        |e| match crate::udf::missing_function_error(&e.to_string()) {
            Some(missing) => missing,
            None => Error::from(e),
        },
    )?;
    if !hash_partitioned {
        return Ok((root, None));
    }
    let repartition = root.downcast_ref::<RepartitionExec>().ok_or_else(|| {
        Error::internal("hash-partitioned stage plan without a RepartitionExec root")
    })?;
    Ok((
        repartition.input().clone(),
        Some(repartition.partitioning().clone()),
    ))
}

/// A schema as an Arrow IPC stream with no batches.
pub fn schema_to_ipc(schema: &Schema) -> DfResult<Vec<u8>> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
    w.finish()?;
    Ok(w.into_inner()?)
}

/// The schema of an Arrow IPC stream.
pub fn schema_from_ipc(bytes: &[u8]) -> DfResult<SchemaRef> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.schema())
}

/// Batches as one Arrow IPC stream (for small inline results).
pub fn batches_to_ipc(
    schema: &Schema,
    batches: &[arrow::record_batch::RecordBatch],
) -> DfResult<Vec<u8>> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(w.into_inner()?)
}

/// The batches of an Arrow IPC stream.
pub fn batches_from_ipc(
    bytes: &[u8],
) -> DfResult<(SchemaRef, Vec<arrow::record_batch::RecordBatch>)> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}
