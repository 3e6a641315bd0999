//! [`FaiscaConverter`]: datafusion-proto's encoding of every node, plus what that encoding drops.
//!
//! datafusion-proto 55 loses a few properties of DataFusion's own operators and expressions on the
//! way (`IGNORE NULLS` and the reversal of window functions, the number of grouping sets of an
//! aggregate without grouping expressions, a cast's target field). Each such node travels as a
//! `PatchedNode` (an expression as a `PatchedExpr`): the node as datafusion-proto encodes it, and
//! beside it what it dropped ([`super::patches`]). Decoding applies the patch to what
//! datafusion-proto decoded. Everything else is datafusion-proto's own
//! encoding, with [`super::FaiscaCodec`] for Faísca's nodes.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::error::Result as DfResult;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr_with_converter;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr_with_converter;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalPlanNodeExt,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::{PhysicalExprNode, PhysicalExtensionNode, PhysicalPlanNode};
use faisca_proto::{ExtensionNode, extension_node};
use prost::Message;

use super::patches;

/// Faísca's datafusion-proto converter (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct FaiscaConverter;

impl PhysicalProtoConverterExtension for FaiscaConverter {
    fn proto_to_execution_plan(
        &self,
        proto: &PhysicalPlanNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(PhysicalPlanType::Extension(extension)) = &proto.physical_plan_type
            && extension.inputs.is_empty()
            && let Ok(ExtensionNode {
                node: Some(extension_node::Node::Patched(patched)),
            }) = ExtensionNode::decode(extension.node.as_slice())
        {
            return patches::decode(&patched, ctx, self);
        }
        proto.try_into_physical_plan_with_context(ctx, self)
    }

    fn execution_plan_to_proto(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DfResult<PhysicalPlanNode> {
        if super::is_extension_node(plan) {
            // datafusion-proto encodes an extension node's children without this converter
            // (so without their patches): encode them here.
            let mut node = Vec::new();
            codec.try_encode(Arc::clone(plan), &mut node, self)?;
            let inputs = plan
                .children()
                .into_iter()
                .map(|child| self.execution_plan_to_proto(child, codec))
                .collect::<DfResult<Vec<_>>>()?;
            return Ok(PhysicalPlanNode {
                physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
                    node,
                    inputs,
                })),
            });
        }
        let node =
            PhysicalPlanNode::try_from_physical_plan_with_converter(Arc::clone(plan), codec, self)?;
        patches::encode(plan, node, codec, self)
    }

    fn proto_to_physical_expr(
        &self,
        proto: &PhysicalExprNode,
        input_schema: &Schema,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        if let Some(patched) = patches::patched_expr(proto) {
            return patches::decode_expr(&patched, input_schema, ctx, self);
        }
        parse_physical_expr_with_converter(proto, input_schema, ctx, self)
    }

    fn physical_expr_to_proto(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DfResult<PhysicalExprNode> {
        let node = serialize_physical_expr_with_converter(expr, codec, self)?;
        patches::encode_expr(expr, node)
    }
}
