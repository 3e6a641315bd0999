//! What datafusion-proto 55 drops of DataFusion's operators, carried beside its encoding.
//!
//! * Window functions (`lag`, `lead`, `first_value`, `last_value`, `nth_value`, …) lose
//!   `IGNORE NULLS` and, when DataFusion evaluates a window reversed to share a sort with another
//!   window, their reversal: the decoded function would compute `lead` where `lag` was asked for.
//!   DataFusion keeps both flags private to `WindowUDFExpr`; its `Debug` output, whose last two
//!   fields they are, is the one place they can be read. A change of that shape fails encoding
//!   loudly rather than sending a wrong plan.
//! * Window aggregates lose their aggregate's reversal flag.
//! * An aggregate with no grouping expressions loses its grouping sets (datafusion-proto
//!   flattens them, and an empty set flattens to nothing): `GROUP BY GROUPING SETS (())` would
//!   return no row.
//! * A `generate_series` scan loses the projection pushed into it (its node carries the projected
//!   schema, which the generator then fills with every column: `count(*)` over it fails) and its
//!   output ordering (which DataFusion keeps in the equivalence properties only, not in the cached
//!   output ordering). DataFusion keeps the projection private; the generator's own schema (read
//!   from one batch of a fresh copy of it) gives it back.
//! * A cast loses its explicit target field (the nullability and metadata of its result) and its
//!   options: a projection's schema would change, and with it what later operators check.
//!
//! `FILTER (WHERE …)` of window aggregates is dropped too, and DataFusion gives no access to it;
//! Faísca rewrites it into an argument before physical planning ([`crate::window_filter`]), so
//! none reaches this codec — one that does fails encoding.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::common::format::DEFAULT_CAST_OPTIONS;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::ReversedUDWF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::expressions::CastExpr;
use datafusion::physical_expr::window::{
    PlainAggregateWindowExpr, SlidingAggregateWindowExpr, StandardWindowExpr,
    StandardWindowFunctionExpr, WindowExpr,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, PhysicalGroupBy};
use datafusion::physical_plan::memory::LazyMemoryExec;
use datafusion::physical_plan::windows::{
    BoundedWindowAggExec, WindowAggExec, WindowUDFExpr, create_udwf_window_expr,
};
use datafusion_proto::physical_plan::from_proto::{
    parse_physical_expr_with_converter, parse_physical_sort_expr,
};
use datafusion_proto::physical_plan::to_proto::serialize_physical_sort_expr;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalPlanNodeExt,
};
use datafusion_proto::protobuf::physical_expr_node::ExprType;
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::{
    PhysicalExprNode, PhysicalExtensionExprNode, PhysicalExtensionNode, PhysicalPlanNode,
    PhysicalSortExprNode,
};
use faisca_proto::{
    CastPatch, ExtensionExpr, ExtensionNode, GroupingSetsPatch, LazyMemoryPatch, PatchedExpr,
    PatchedNode, WindowExprPatch, WindowPatch, extension_expr, extension_node, patched_expr,
    patched_node,
};
use prost::Message;

use super::converter::FaiscaConverter;
use super::{schema_from_ipc, schema_to_ipc};

fn malformed(why: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("malformed patched plan node: {why}"))
}

/// `node` (datafusion-proto's encoding of `plan`) with what it dropped of `plan`, if anything.
pub fn encode(
    plan: &Arc<dyn ExecutionPlan>,
    mut node: PhysicalPlanNode,
    codec: &dyn PhysicalExtensionCodec,
    converter: &FaiscaConverter,
) -> DfResult<PhysicalPlanNode> {
    let patch = if let Some(lazy) = plan.downcast_ref::<LazyMemoryExec>() {
        lazy_memory_patch(lazy, &mut node, codec, converter)?
    } else if let Some(window) = plan.downcast_ref::<BoundedWindowAggExec>() {
        window_patch(window.window_expr())?
    } else if let Some(window) = plan.downcast_ref::<WindowAggExec>() {
        window_patch(window.window_expr())?
    } else if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        grouping_sets_patch(aggregate)
    } else {
        None
    };
    let Some(patch) = patch else {
        return Ok(node);
    };
    let patched = PatchedNode {
        node: node.encode_to_vec(),
        patch: Some(patch),
    };
    let extension = ExtensionNode {
        node: Some(extension_node::Node::Patched(patched)),
    };
    Ok(PhysicalPlanNode {
        physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
            node: extension.encode_to_vec(),
            inputs: vec![],
        })),
    })
}

/// The node `patched` describes: datafusion-proto's decoding with the patch applied.
pub fn decode(
    patched: &PatchedNode,
    ctx: &PhysicalPlanDecodeContext<'_>,
    converter: &FaiscaConverter,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let node = PhysicalPlanNode::decode(patched.node.as_slice()).map_err(malformed)?;
    let plan = node.try_into_physical_plan_with_context(ctx, converter)?;
    match &patched.patch {
        Some(patched_node::Patch::Window(patch)) => patch_window(plan, patch),
        Some(patched_node::Patch::GroupingSets(patch)) => patch_grouping_sets(plan, patch),
        Some(patched_node::Patch::LazyMemory(patch)) => {
            patch_lazy_memory(plan, patch, ctx, converter)
        }
        None => Err(malformed("no patch")),
    }
}

fn window_patch(exprs: &[Arc<dyn WindowExpr>]) -> DfResult<Option<patched_node::Patch>> {
    let patches = exprs
        .iter()
        .map(window_expr_patch)
        .collect::<DfResult<Vec<_>>>()?;
    if patches.iter().all(|p| *p == WindowExprPatch::default()) {
        return Ok(None);
    }
    Ok(Some(patched_node::Patch::Window(WindowPatch {
        exprs: patches,
    })))
}

fn window_expr_patch(expr: &Arc<dyn WindowExpr>) -> DfResult<WindowExprPatch> {
    let any = expr.as_any();
    if let Some(standard) = any.downcast_ref::<StandardWindowExpr>() {
        let function = standard.get_standard_func_expr();
        let Some(udf) = function.as_any().downcast_ref::<WindowUDFExpr>() else {
            return Ok(WindowExprPatch::default());
        };
        let (reversed, ignore_nulls) = window_udf_flags(udf)?;
        return Ok(WindowExprPatch {
            ignore_nulls,
            reversed,
            aggregate_reversed: false,
        });
    }
    let aggregate = if let Some(plain) = any.downcast_ref::<PlainAggregateWindowExpr>() {
        refuse_filter(expr.name(), &format!("{plain:?}"))?;
        plain.get_aggregate_expr()
    } else if let Some(sliding) = any.downcast_ref::<SlidingAggregateWindowExpr>() {
        refuse_filter(expr.name(), &format!("{sliding:?}"))?;
        sliding.get_aggregate_expr()
    } else {
        return Ok(WindowExprPatch::default());
    };
    Ok(WindowExprPatch {
        aggregate_reversed: aggregate.is_reversed(),
        ..WindowExprPatch::default()
    })
}

/// `(is_reversed, ignore_nulls)` of a window function: the last two fields of its `Debug` output.
fn window_udf_flags(udf: &WindowUDFExpr) -> DfResult<(bool, bool)> {
    let debug = format!("{udf:?}");
    for reversed in [false, true] {
        for ignore_nulls in [false, true] {
            let tail = format!(", is_reversed: {reversed}, ignore_nulls: {ignore_nulls} }}");
            if debug.ends_with(&tail) {
                return Ok((reversed, ignore_nulls));
            }
        }
    }
    Err(DataFusionError::Internal(format!(
        "cannot read IGNORE NULLS and the reversal of window function {} (DataFusion's WindowUDFExpr changed shape); it cannot be sent to executors",
        udf.name()
    )))
}

/// A window aggregate's `FILTER` (the last field of its `Debug` output) cannot be encoded.
fn refuse_filter(name: &str, debug: &str) -> DfResult<()> {
    if debug.ends_with(", filter: None }") {
        return Ok(());
    }
    Err(DataFusionError::NotImplemented(format!(
        "window aggregate {name} has a FILTER that datafusion-proto cannot encode; it cannot be sent to executors"
    )))
}

fn patch_window(
    plan: Arc<dyn ExecutionPlan>,
    patch: &WindowPatch,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let Some(window) = plan.downcast_ref::<BoundedWindowAggExec>() {
        let input = window.input();
        let exprs = patch_window_exprs(window.window_expr(), patch, &input.schema())?;
        let can_repartition = !window.partition_keys().is_empty();
        return Ok(Arc::new(BoundedWindowAggExec::try_new(
            exprs,
            Arc::clone(input),
            window.input_order_mode.clone(),
            can_repartition,
        )?));
    }
    if let Some(window) = plan.downcast_ref::<WindowAggExec>() {
        let input = window.input();
        let exprs = patch_window_exprs(window.window_expr(), patch, &input.schema())?;
        let can_repartition = !window.partition_keys().is_empty();
        return Ok(Arc::new(WindowAggExec::try_new(
            exprs,
            Arc::clone(input),
            can_repartition,
        )?));
    }
    Err(malformed(format!(
        "a window patch on {}, not a window operator",
        plan.name()
    )))
}

fn patch_window_exprs(
    exprs: &[Arc<dyn WindowExpr>],
    patch: &WindowPatch,
    input_schema: &Schema,
) -> DfResult<Vec<Arc<dyn WindowExpr>>> {
    if exprs.len() != patch.exprs.len() {
        return Err(malformed(format!(
            "{} window expressions, {} patches",
            exprs.len(),
            patch.exprs.len()
        )));
    }
    exprs
        .iter()
        .zip(&patch.exprs)
        .map(|(expr, patch)| patch_window_expr(expr, patch, input_schema))
        .collect()
}

fn patch_window_expr(
    expr: &Arc<dyn WindowExpr>,
    patch: &WindowExprPatch,
    input_schema: &Schema,
) -> DfResult<Arc<dyn WindowExpr>> {
    if *patch == WindowExprPatch::default() {
        return Ok(Arc::clone(expr));
    }
    let any = expr.as_any();
    if let Some(standard) = any.downcast_ref::<StandardWindowExpr>() {
        let function = standard.get_standard_func_expr();
        let udf = function
            .as_any()
            .downcast_ref::<WindowUDFExpr>()
            .ok_or_else(|| malformed(format!("window function {} is not a UDF", expr.name())))?;
        // The encoded function is the reversed one: rebuild the original, then reverse it.
        let fun = if patch.reversed {
            match udf.fun().reverse_expr() {
                ReversedUDWF::Reversed(original) => original,
                _ => {
                    return Err(malformed(format!(
                        "window function {} is marked reversed but has no reverse",
                        udf.fun().name()
                    )));
                }
            }
        } else {
            Arc::clone(udf.fun())
        };
        let mut function: Arc<dyn StandardWindowFunctionExpr> = create_udwf_window_expr(
            &fun,
            udf.args(),
            input_schema,
            udf.name().to_string(),
            patch.ignore_nulls,
        )?;
        if patch.reversed {
            function = function.reverse_expr().ok_or_else(|| {
                malformed(format!("window function {} cannot be reversed", fun.name()))
            })?;
        }
        return Ok(Arc::new(StandardWindowExpr::new(
            function,
            expr.partition_by(),
            expr.order_by(),
            Arc::clone(expr.get_window_frame()),
        )));
    }
    if let Some(plain) = any.downcast_ref::<PlainAggregateWindowExpr>() {
        let aggregate = reversed_aggregate(plain.get_aggregate_expr(), patch, input_schema)?;
        return Ok(Arc::new(PlainAggregateWindowExpr::new(
            aggregate,
            expr.partition_by(),
            expr.order_by(),
            Arc::clone(expr.get_window_frame()),
            None,
        )));
    }
    if let Some(sliding) = any.downcast_ref::<SlidingAggregateWindowExpr>() {
        let aggregate = reversed_aggregate(sliding.get_aggregate_expr(), patch, input_schema)?;
        return Ok(Arc::new(SlidingAggregateWindowExpr::new(
            aggregate,
            expr.partition_by(),
            expr.order_by(),
            Arc::clone(expr.get_window_frame()),
            None,
        )));
    }
    Err(malformed(format!(
        "a window patch on {}, which has nothing to patch",
        expr.name()
    )))
}

/// The decoded aggregate of a window aggregate with the reversal flag it was encoded with.
fn reversed_aggregate(
    decoded: &AggregateFunctionExpr,
    patch: &WindowExprPatch,
    input_schema: &Schema,
) -> DfResult<Arc<AggregateFunctionExpr>> {
    if decoded.is_reversed() == patch.aggregate_reversed {
        return Ok(Arc::new(decoded.clone()));
    }
    let mut builder =
        AggregateExprBuilder::new(Arc::new(decoded.fun().clone()), decoded.expressions())
            .order_by(decoded.order_bys().to_vec())
            .schema(Arc::new(input_schema.clone()))
            .alias(decoded.name())
            .with_ignore_nulls(decoded.ignore_nulls())
            .with_distinct(decoded.is_distinct())
            .with_reversed(patch.aggregate_reversed);
    if let Some(display) = decoded.human_display() {
        builder = builder.human_display(display.to_string());
    }
    Ok(Arc::new(builder.build()?))
}

/// The projection and ordering of a generated table's scan; `node` gets the generator's full
/// schema. `None` for scans datafusion-proto does not encode as a generated table (they fail
/// encoding on their own).
fn lazy_memory_patch(
    lazy: &LazyMemoryExec,
    node: &mut PhysicalPlanNode,
    codec: &dyn PhysicalExtensionCodec,
    converter: &FaiscaConverter,
) -> DfResult<Option<patched_node::Patch>> {
    let Some(PhysicalPlanType::GenerateSeries(series)) = &mut node.physical_plan_type else {
        return Ok(None);
    };
    let [generator] = lazy.generators().as_slice() else {
        return Ok(None);
    };
    let projected = lazy.schema();
    // A fresh copy of the generator makes one batch: its schema is the table's.
    let fresh = generator.read().reset_state();
    let batch = fresh.write().generate_next_batch()?;
    let projection = match batch {
        // No rows at all: nothing for a projection to pick from.
        None => None,
        Some(batch) if batch.schema().fields() == projected.fields() => None,
        Some(batch) => {
            let full = batch.schema();
            let projection = projected
                .fields()
                .iter()
                .map(|f| {
                    full.fields()
                        .iter()
                        .position(|g| g.name() == f.name() && g.data_type() == f.data_type())
                        .ok_or_else(|| {
                            DataFusionError::NotImplemented(format!(
                                "a generated table's column {} is not among its generator's; it cannot be sent to executors",
                                f.name()
                            ))
                        })
                })
                .collect::<DfResult<Vec<_>>>()?;
            series.schema = Some(full.as_ref().try_into()?);
            Some(projection)
        }
    };
    // The ordering `generate_series` adds to its scan lives in the equivalence properties only
    // (`LazyMemoryExec::add_ordering` leaves the plan's cached output ordering unset).
    let orderings: Vec<_> = lazy
        .properties()
        .equivalence_properties()
        .oeq_class()
        .iter()
        .collect();
    if orderings.len() > 1 {
        return Err(DataFusionError::NotImplemented(format!(
            "a generated table with {} orderings cannot be sent to executors",
            orderings.len()
        )));
    }
    let ordering = orderings
        .first()
        .map(|ordering| {
            ordering
                .iter()
                .map(|sort| {
                    Ok(
                        serialize_physical_sort_expr(sort.clone(), codec, converter)?
                            .encode_to_vec(),
                    )
                })
                .collect::<DfResult<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    if projection.is_none() && ordering.is_empty() {
        return Ok(None);
    }
    Ok(Some(patched_node::Patch::LazyMemory(LazyMemoryPatch {
        has_projection: projection.is_some(),
        projection: projection
            .unwrap_or_default()
            .into_iter()
            .map(|i| i as u32)
            .collect(),
        ordering,
    })))
}

fn patch_lazy_memory(
    plan: Arc<dyn ExecutionPlan>,
    patch: &LazyMemoryPatch,
    ctx: &PhysicalPlanDecodeContext<'_>,
    converter: &FaiscaConverter,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let lazy = plan.downcast_ref::<LazyMemoryExec>().ok_or_else(|| {
        malformed(format!(
            "a generated table patch on {}, not a generated table",
            plan.name()
        ))
    })?;
    let projection = patch
        .has_projection
        .then(|| patch.projection.iter().map(|&i| i as usize).collect());
    let mut rebuilt = LazyMemoryExec::try_new(lazy.schema(), lazy.generators().clone())?
        .with_projection(projection);
    if !patch.ordering.is_empty() {
        let schema = rebuilt.schema();
        let ordering = patch
            .ordering
            .iter()
            .map(|bytes| {
                let node = PhysicalSortExprNode::decode(bytes.as_slice()).map_err(malformed)?;
                parse_physical_sort_expr(&node, ctx, &schema, converter)
            })
            .collect::<DfResult<Vec<_>>>()?;
        rebuilt.add_ordering(ordering);
    }
    Ok(Arc::new(rebuilt))
}

fn grouping_sets_patch(aggregate: &AggregateExec) -> Option<patched_node::Patch> {
    let group_by = aggregate.group_expr();
    (group_by.expr().is_empty() && !group_by.groups().is_empty()).then(|| {
        patched_node::Patch::GroupingSets(GroupingSetsPatch {
            sets: group_by.groups().len() as u32,
        })
    })
}

fn patch_grouping_sets(
    plan: Arc<dyn ExecutionPlan>,
    patch: &GroupingSetsPatch,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let aggregate = plan.downcast_ref::<AggregateExec>().ok_or_else(|| {
        malformed(format!(
            "a grouping sets patch on {}, not an aggregate",
            plan.name()
        ))
    })?;
    let group_by = aggregate.group_expr();
    if !group_by.expr().is_empty() {
        return Err(malformed("a grouping sets patch on grouping expressions"));
    }
    let group_by = PhysicalGroupBy::new(
        vec![],
        vec![],
        vec![vec![]; patch.sets as usize],
        group_by.has_grouping_set(),
    );
    let rebuilt = AggregateExec::try_new(
        *aggregate.mode(),
        group_by,
        aggregate.aggr_expr().to_vec(),
        aggregate.filter_expr().to_vec(),
        Arc::clone(aggregate.input()),
        aggregate.input_schema(),
    )?
    .with_limit_options(aggregate.limit_options());
    Ok(Arc::new(rebuilt))
}

/// `node` (datafusion-proto's encoding of `expr`) with what it dropped of `expr`, if anything.
pub fn encode_expr(
    expr: &Arc<dyn PhysicalExpr>,
    node: PhysicalExprNode,
) -> DfResult<PhysicalExprNode> {
    let Some(cast) = expr.downcast_ref::<CastExpr>() else {
        return Ok(node);
    };
    let options = cast.cast_options();
    if !cast.has_explicit_nullability() && *options == DEFAULT_CAST_OPTIONS {
        return Ok(node);
    }
    if options.format_options != DEFAULT_CAST_OPTIONS.format_options {
        return Err(DataFusionError::NotImplemented(format!(
            "a cast with format options ({cast}) cannot be sent to executors"
        )));
    }
    let target_field = schema_to_ipc(&Schema::new(vec![Arc::clone(cast.target_field())]))?;
    let patched = PatchedExpr {
        expr: node.encode_to_vec(),
        patch: Some(patched_expr::Patch::Cast(CastPatch {
            target_field,
            explicit_target: cast.has_explicit_nullability(),
            safe: options.safe,
        })),
    };
    let extension = ExtensionExpr {
        expr: Some(extension_expr::Expr::Patched(patched)),
    };
    Ok(PhysicalExprNode {
        expr_id: None,
        expr_type: Some(ExprType::Extension(PhysicalExtensionExprNode {
            expr: extension.encode_to_vec(),
            inputs: vec![],
        })),
    })
}

/// The patched expression `node` holds, if it is one.
pub fn patched_expr(node: &PhysicalExprNode) -> Option<PatchedExpr> {
    let Some(ExprType::Extension(extension)) = &node.expr_type else {
        return None;
    };
    if !extension.inputs.is_empty() {
        return None;
    }
    match ExtensionExpr::decode(extension.expr.as_slice()) {
        Ok(ExtensionExpr {
            expr: Some(extension_expr::Expr::Patched(patched)),
        }) => Some(patched),
        _ => None,
    }
}

/// The expression `patched` describes: datafusion-proto's decoding with the patch applied.
pub fn decode_expr(
    patched: &PatchedExpr,
    input_schema: &Schema,
    ctx: &PhysicalPlanDecodeContext<'_>,
    converter: &FaiscaConverter,
) -> DfResult<Arc<dyn PhysicalExpr>> {
    let node = PhysicalExprNode::decode(patched.expr.as_slice()).map_err(malformed)?;
    let expr = parse_physical_expr_with_converter(&node, input_schema, ctx, converter)?;
    match &patched.patch {
        Some(patched_expr::Patch::Cast(patch)) => {
            let cast = expr
                .downcast_ref::<CastExpr>()
                .ok_or_else(|| malformed("a cast patch on an expression that is not a cast"))?;
            let options = datafusion::arrow::compute::CastOptions {
                safe: patch.safe,
                ..DEFAULT_CAST_OPTIONS
            };
            let rebuilt = if patch.explicit_target {
                let schema = schema_from_ipc(&patch.target_field)?;
                let [field] = schema.fields().as_ref() else {
                    return Err(malformed("a cast patch without one target field"));
                };
                CastExpr::new_with_target_field(
                    Arc::clone(cast.expr()),
                    Arc::clone(field),
                    Some(options),
                )
            } else {
                CastExpr::new(
                    Arc::clone(cast.expr()),
                    cast.cast_type().clone(),
                    Some(options),
                )
            };
            Ok(Arc::new(rebuilt))
        }
        None => Err(malformed("no patch")),
    }
}
