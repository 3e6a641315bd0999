//! Streaming operators on the wire: [`WatermarkExec`] ⇄ `WatermarkNode`, and
//! [`StatefulAggregateExec`] ⇄ `StatefulAggregateNode` (its final aggregate encoded by
//! datafusion-proto over an `EmptyExec` placeholder, so that the input is encoded once, as the
//! extension node's input).

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{ExecutionPlan, replace_children_if_necessary};
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use faisca_proto::{StatefulAggregateNode, WatermarkNode};
use prost::Message;

use crate::streaming_exec::{
    StatefulAggregateExec, StatefulSpec, WatermarkExec, emit_from_name, emit_name,
};

fn one_input(inputs: &[Arc<dyn ExecutionPlan>], what: &str) -> DfResult<Arc<dyn ExecutionPlan>> {
    match inputs {
        [input] => Ok(input.clone()),
        _ => Err(DataFusionError::Internal(format!(
            "a {what} node has one input, got {}",
            inputs.len()
        ))),
    }
}

/// A watermark node as its wire message.
pub fn encode_watermark(node: &WatermarkExec) -> WatermarkNode {
    WatermarkNode {
        column: node.column().to_string(),
    }
}

/// The watermark node a wire message describes, over `inputs`' one plan.
pub fn decode_watermark(
    node: &WatermarkNode,
    inputs: &[Arc<dyn ExecutionPlan>],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let input = one_input(inputs, "watermark")?;
    Ok(Arc::new(WatermarkExec::try_new(input, &node.column)?))
}

/// A stateful aggregate as its wire message.
pub fn encode_stateful(
    node: &StatefulAggregateExec,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DfResult<StatefulAggregateNode> {
    let aggregate = node.aggregate();
    let placeholder: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(aggregate.input().schema()));
    let aggregate: Arc<dyn ExecutionPlan> = aggregate.clone();
    let template = replace_children_if_necessary(aggregate, vec![placeholder])?;
    let aggregate = converter
        .execution_plan_to_proto(&template, codec)?
        .encode_to_vec();
    let spec = node.spec();
    Ok(StatefulAggregateNode {
        aggregate,
        checkpoint: spec.checkpoint.clone(),
        operator: spec.operator,
        version: spec.version,
        has_watermark: spec.watermark_micros.is_some(),
        watermark_micros: spec.watermark_micros.unwrap_or_default(),
        emit: emit_name(spec.emit).to_string(),
        has_event_time_key: spec.event_time_key.is_some(),
        event_time_key: spec.event_time_key.unwrap_or_default() as u32,
        snapshot_interval: spec.snapshot_interval,
        min_versions_to_retain: spec.min_versions_to_retain,
        query_id: spec.query_id.clone(),
    })
}

/// The stateful aggregate a wire message describes, over `inputs`' one plan.
pub fn decode_stateful(
    node: &StatefulAggregateNode,
    inputs: &[Arc<dyn ExecutionPlan>],
    ctx: &PhysicalPlanDecodeContext<'_>,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let input = one_input(inputs, "stateful aggregate")?;
    let template = PhysicalPlanNode::decode(node.aggregate.as_slice()).map_err(|e| {
        DataFusionError::Internal(format!("malformed stateful aggregate node: {e}"))
    })?;
    let template = converter.proto_to_execution_plan(&template, ctx)?;
    let aggregate = replace_children_if_necessary(template, vec![input])?;
    let aggregate = aggregate
        .downcast_ref::<AggregateExec>()
        .cloned()
        .ok_or_else(|| {
            DataFusionError::Internal(
                "a stateful aggregate node's template is not an aggregate".into(),
            )
        })?;
    let spec = StatefulSpec {
        query_id: node.query_id.clone(),
        checkpoint: node.checkpoint.clone(),
        operator: node.operator,
        version: node.version,
        watermark_micros: node.has_watermark.then_some(node.watermark_micros),
        emit: emit_from_name(&node.emit)?,
        event_time_key: node
            .has_event_time_key
            .then_some(node.event_time_key as usize),
        snapshot_interval: node.snapshot_interval,
        min_versions_to_retain: node.min_versions_to_retain,
    };
    Ok(Arc::new(StatefulAggregateExec::new(
        Arc::new(aggregate),
        spec,
    )))
}
