//! Plans and schemas on the wire.
//!
//! Stage plans travel as datafusion-proto bytes, encoded through [`FaiscaConverter`], which adds
//! what datafusion-proto drops of DataFusion's own operators ([`patches`]). Faísca's nodes
//! ([`ShuffleReaderExec`], [`crate::kafka::KafkaScanExec`], [`faisca_pipeline::exec::PipelineExec`])
//! and the DataFusion nodes datafusion-proto cannot encode (recursive queries, [`recursive`]) are
//! encoded by [`FaiscaCodec`]. A stage whose output is hash-partitioned travels with its
//! `RepartitionExec` as the root, so the partitioning expressions use datafusion-proto's own
//! encoding; [`decode_stage_plan`] takes that root off again. [`guard`] checks that a plan decodes
//! into the plan that was encoded.

pub mod converter;
pub mod equivalence;
pub mod guard;
pub mod kafka;
pub mod patches;
pub mod pipeline;
pub mod recursive;
pub mod streaming;

pub use converter::FaiscaConverter;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::work_table::WorkTableExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalExprNode;
use faisca_common::{Error, Result};
use faisca_proto::{ExtensionNode, FilteredAggregateNode, ShuffleReaderNode, extension_node};
use prost::Message;

use crate::shuffle::reader::ShuffleReaderExec;
use crate::window_filter::{FILTERED_AGGREGATE, FilteredAggregate};

/// Whether [`FaiscaCodec`] encodes `plan` (Faísca's nodes, and DataFusion's recursive queries).
pub fn is_extension_node(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<ShuffleReaderExec>().is_some()
        || plan
            .downcast_ref::<faisca_pipeline::exec::PipelineExec>()
            .is_some()
        || plan.downcast_ref::<crate::kafka::KafkaScanExec>().is_some()
        || plan.downcast_ref::<RecursiveQueryExec>().is_some()
        || plan.downcast_ref::<WorkTableExec>().is_some()
        || plan
            .downcast_ref::<crate::streaming_exec::WatermarkExec>()
            .is_some()
        || plan
            .downcast_ref::<crate::streaming_exec::StatefulAggregateExec>()
            .is_some()
}

/// Encodes Faísca's own plan nodes and functions inside datafusion-proto plans.
#[derive(Debug, Default)]
pub struct FaiscaCodec {
    /// Aggregate functions by name: what a filtered window aggregate wraps is decoded by name.
    aggregates: HashMap<String, Arc<AggregateUDF>>,
}

impl FaiscaCodec {
    /// A codec that decodes with the functions of `ctx`.
    pub fn for_task(ctx: &TaskContext) -> Self {
        FaiscaCodec {
            aggregates: ctx.aggregate_functions().clone(),
        }
    }
}

impl PhysicalExtensionCodec for FaiscaCodec {
    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        let Some(filtered) = node.inner().downcast_ref::<FilteredAggregate>() else {
            return Ok(());
        };
        let mut inner_definition = Vec::new();
        self.try_encode_udaf(filtered.inner(), &mut inner_definition)?;
        FilteredAggregateNode {
            inner_name: filtered.inner().name().to_string(),
            inner_definition,
        }
        .encode(buf)
        .map_err(|e| DataFusionError::Internal(format!("encoding a filtered aggregate: {e}")))
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        if name != FILTERED_AGGREGATE {
            return Err(DataFusionError::Plan(format!(
                "aggregate function {name} is not known here"
            )));
        }
        let node = FilteredAggregateNode::decode(buf)
            .map_err(|e| DataFusionError::Internal(format!("malformed filtered aggregate: {e}")))?;
        let inner = if node.inner_definition.is_empty() {
            self.aggregates
                .get(&node.inner_name)
                .cloned()
                .ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "aggregate function {} is not known here",
                        node.inner_name
                    ))
                })?
        } else {
            self.try_decode_udaf(&node.inner_name, &node.inner_definition)?
        };
        Ok(Arc::new(AggregateUDF::new_from_impl(
            FilteredAggregate::new(inner),
        )))
    }

    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let node = ExtensionNode::decode(buf)
            .map_err(|e| DataFusionError::Internal(format!("malformed Faísca plan node: {e}")))?;
        match node.node {
            Some(extension_node::Node::ShuffleReader(r)) => {
                let schema = schema_from_ipc(&r.schema)?;
                let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
                let hash_exprs = r
                    .hash_exprs
                    .iter()
                    .map(|bytes| {
                        let node = PhysicalExprNode::decode(bytes.as_slice()).map_err(|e| {
                            DataFusionError::Internal(format!(
                                "malformed shuffle partitioning expression: {e}"
                            ))
                        })?;
                        proto_converter.proto_to_physical_expr(&node, &schema, &decode_ctx)
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                let mut reader = ShuffleReaderExec::new(
                    r.stage_id,
                    schema.clone(),
                    r.partitions as usize,
                    r.hash_partitioned,
                );
                if !hash_exprs.is_empty() {
                    reader = reader.with_hash_partitioning(hash_exprs);
                }
                if let Some(equivalences) = &r.equivalences {
                    reader = reader.with_equivalences(equivalence::decode(
                        equivalences,
                        schema,
                        ctx,
                        self,
                    )?);
                }
                Ok(Arc::new(reader))
            }
            Some(extension_node::Node::RecursiveQuery(q)) => {
                recursive::decode_recursive_query(&q, inputs)
            }
            Some(extension_node::Node::WorkTable(t)) => recursive::decode_work_table(&t),
            Some(extension_node::Node::Watermark(w)) => streaming::decode_watermark(&w, inputs),
            Some(extension_node::Node::StatefulAggregate(a)) => {
                let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
                streaming::decode_stateful(&a, inputs, &decode_ctx, proto_converter)
            }
            Some(extension_node::Node::Patched(_)) => Err(DataFusionError::Internal(
                "a patched plan node outside Faísca's converter".into(),
            )),
            Some(extension_node::Node::KafkaScan(k)) => kafka::decode(k),
            Some(extension_node::Node::Pipeline(p)) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(format!(
                        "a pipeline node has one input, got {}",
                        inputs.len()
                    )));
                };
                pipeline::decode(p, input.clone(), ctx, self)
            }
            None => Err(DataFusionError::Internal("empty Faísca plan node".into())),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(pipeline) = node.downcast_ref::<faisca_pipeline::exec::PipelineExec>() {
            let msg = ExtensionNode {
                node: Some(extension_node::Node::Pipeline(pipeline::encode(
                    pipeline, self,
                )?)),
            };
            return msg
                .encode(buf)
                .map_err(|e| DataFusionError::Internal(format!("encoding plan node: {e}")));
        }
        if let Some(scan) = node.downcast_ref::<crate::kafka::KafkaScanExec>() {
            let msg = ExtensionNode {
                node: Some(extension_node::Node::KafkaScan(kafka::encode(scan)?)),
            };
            return msg
                .encode(buf)
                .map_err(|e| DataFusionError::Internal(format!("encoding plan node: {e}")));
        }
        let node =
            if let Some(watermark) = node.downcast_ref::<crate::streaming_exec::WatermarkExec>() {
                extension_node::Node::Watermark(streaming::encode_watermark(watermark))
            } else if let Some(stateful) =
                node.downcast_ref::<crate::streaming_exec::StatefulAggregateExec>()
            {
                extension_node::Node::StatefulAggregate(streaming::encode_stateful(
                    stateful,
                    self,
                    proto_converter,
                )?)
            } else if let Some(query) = node.downcast_ref::<RecursiveQueryExec>() {
                extension_node::Node::RecursiveQuery(recursive::encode_recursive_query(query)?)
            } else if let Some(table) = node.downcast_ref::<WorkTableExec>() {
                extension_node::Node::WorkTable(recursive::encode_work_table(table)?)
            } else if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
                let hash_exprs = match reader.properties().partitioning.clone() {
                    Partitioning::Hash(exprs, _) => exprs
                        .iter()
                        .map(|e| {
                            Ok(proto_converter
                                .physical_expr_to_proto(e, self)?
                                .encode_to_vec())
                        })
                        .collect::<DfResult<Vec<_>>>()?,
                    _ => Vec::new(),
                };
                extension_node::Node::ShuffleReader(ShuffleReaderNode {
                    stage_id: reader.stage_id(),
                    schema: schema_to_ipc(&reader.schema())?,
                    partitions: reader.partitions() as u32,
                    hash_partitioned: reader.hash_partitioned(),
                    hash_exprs,
                    equivalences: Some(equivalence::encode(
                        &reader.properties().eq_properties,
                        self,
                    )?),
                })
            } else {
                return Err(DataFusionError::NotImplemented(format!(
                    "{} cannot be sent to executors (no datafusion-proto encoding)",
                    node.name()
                )));
            };
        ExtensionNode { node: Some(node) }
            .encode(buf)
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
    let bytes = datafusion_proto::bytes::physical_plan_to_bytes_with_proto_converter(
        root,
        &FaiscaCodec::default(),
        &FaiscaConverter,
    )
    .map_err(|e| Error::not_distributable(e.to_string()))?;
    Ok(bytes)
}

/// Decode a stage plan; returns the task plan and, when `hash_partitioned`, the output partitioning.
pub fn decode_stage_plan(
    bytes: &[u8],
    hash_partitioned: bool,
    ctx: &TaskContext,
) -> Result<(Arc<dyn ExecutionPlan>, Option<Partitioning>)> {
    let root = faisca_common::decode_guarded("stage plan", Error::internal_final, || {
        datafusion_proto::bytes::physical_plan_from_bytes_with_proto_converter(
            bytes,
            ctx,
            &FaiscaCodec::for_task(ctx),
            &FaiscaConverter,
        )
        .map_err(Error::from)
    })
    .map_err(
        |e| match crate::udf::missing_function_error(&e.to_string()) {
            Some(missing) => missing,
            None => e,
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
