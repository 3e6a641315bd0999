//! What is known of a node's output (DataFusion's `EquivalenceProperties`: orderings, classes of
//! equal expressions, constants) on the wire.
//!
//! Operators are planned against what their inputs guarantee: a window over an input whose
//! `PARTITION BY` column is constant (a filter fixed it) sorts by the other keys only and then
//! relies on the constant. Where the planner puts a leaf of its own in a plan (a shuffle
//! reader) or replaces operators (a pipeline), the new node must promise what the old one did,
//! on the driver and again on the executor, or the operators above it see another input than
//! they were planned for.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::equivalence::{AcrossPartitions, ConstExpr};
use datafusion_proto::physical_plan::from_proto::parse_physical_sort_expr;
use datafusion_proto::physical_plan::to_proto::serialize_physical_sort_expr;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{PhysicalExprNode, PhysicalSortExprNode};
use faisca_proto::{ConstantExpr, Equivalences, ExprClass, SortOrder};
use prost::Message;

use super::FaiscaConverter;

fn malformed(why: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("malformed equivalence properties: {why}"))
}

/// The message for `properties`.
pub fn encode(
    properties: &EquivalenceProperties,
    codec: &dyn PhysicalExtensionCodec,
) -> DfResult<Equivalences> {
    let converter = FaiscaConverter;
    let expr = |e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| -> DfResult<Vec<u8>> {
        Ok(converter.physical_expr_to_proto(e, codec)?.encode_to_vec())
    };
    let orderings = properties
        .oeq_class()
        .iter()
        .map(|ordering| {
            Ok(SortOrder {
                exprs: ordering
                    .iter()
                    .map(|sort| {
                        Ok(
                            serialize_physical_sort_expr(sort.clone(), codec, &converter)?
                                .encode_to_vec(),
                        )
                    })
                    .collect::<DfResult<_>>()?,
            })
        })
        .collect::<DfResult<_>>()?;
    let equal_classes = properties
        .eq_group()
        .iter()
        .filter(|class| class.len() > 1)
        .map(|class| {
            Ok(ExprClass {
                exprs: class.iter().map(expr).collect::<DfResult<_>>()?,
            })
        })
        .collect::<DfResult<_>>()?;
    let constants = properties
        .constants()
        .into_iter()
        .map(|constant| {
            let (across_partitions, value) = match &constant.across_partitions {
                AcrossPartitions::Heterogeneous => (false, Vec::new()),
                AcrossPartitions::Uniform(None) => (true, Vec::new()),
                AcrossPartitions::Uniform(Some(value)) => (
                    true,
                    datafusion_proto::protobuf::ScalarValue::try_from(value)
                        .map_err(|e| malformed(format!("constant {value}: {e}")))?
                        .encode_to_vec(),
                ),
            };
            Ok(ConstantExpr {
                expr: expr(&constant.expr)?,
                across_partitions,
                value,
            })
        })
        .collect::<DfResult<_>>()?;
    Ok(Equivalences {
        orderings,
        equal_classes,
        constants,
    })
}

/// The properties `message` describes, over a node whose output is `schema`.
pub fn decode(
    message: &Equivalences,
    schema: SchemaRef,
    ctx: &TaskContext,
    codec: &dyn PhysicalExtensionCodec,
) -> DfResult<EquivalenceProperties> {
    let converter = FaiscaConverter;
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, codec);
    let expr = |bytes: &[u8]| {
        let proto = PhysicalExprNode::decode(bytes).map_err(malformed)?;
        converter.proto_to_physical_expr(&proto, &schema, &decode_ctx)
    };
    let mut properties = EquivalenceProperties::new(Arc::clone(&schema));
    let orderings = message
        .orderings
        .iter()
        .map(|ordering| {
            ordering
                .exprs
                .iter()
                .map(|bytes| {
                    let proto =
                        PhysicalSortExprNode::decode(bytes.as_slice()).map_err(malformed)?;
                    parse_physical_sort_expr(&proto, &decode_ctx, &schema, &converter)
                })
                .collect::<DfResult<Vec<_>>>()
        })
        .collect::<DfResult<Vec<_>>>()?;
    properties.add_orderings(orderings);
    for class in &message.equal_classes {
        let exprs = class
            .exprs
            .iter()
            .map(|bytes| expr(bytes))
            .collect::<DfResult<Vec<_>>>()?;
        if let Some((first, rest)) = exprs.split_first() {
            for other in rest {
                properties.add_equal_conditions(Arc::clone(first), Arc::clone(other))?;
            }
        }
    }
    let constants = message
        .constants
        .iter()
        .map(|constant| {
            let across_partitions = match (constant.across_partitions, constant.value.is_empty()) {
                (false, _) => AcrossPartitions::Heterogeneous,
                (true, true) => AcrossPartitions::Uniform(None),
                (true, false) => {
                    let proto =
                        datafusion_proto::protobuf::ScalarValue::decode(constant.value.as_slice())
                            .map_err(malformed)?;
                    AcrossPartitions::Uniform(Some(
                        ScalarValue::try_from(&proto).map_err(malformed)?,
                    ))
                }
            };
            Ok(ConstExpr::new(expr(&constant.expr)?, across_partitions))
        })
        .collect::<DfResult<Vec<_>>>()?;
    properties.add_constants(constants)?;
    Ok(properties)
}
