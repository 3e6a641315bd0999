//! Fused pipelines ([`faisca_pipeline`]) on the wire: [`PipelineSpec`] ⇄ the `PipelineNode` message, expressions in
//! datafusion-proto's encoding.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::Partitioning;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr;
use datafusion_proto::protobuf::PhysicalExprNode;
use faisca_proto::{
    PipelineAggregate, PipelineAggregateFunction, PipelineFilter, PipelineNode, PipelinePartition,
    PipelineProject, PipelineStep, pipeline_step,
};
use prost::Message;

use faisca_pipeline::aggregate::{AggregateFunction, AggregateKind, AggregateStep};
use faisca_pipeline::exec::PipelineExec;
use faisca_pipeline::partition::PartitionStep;
use faisca_pipeline::{PipelineSpec, Step, cache};

use super::{schema_from_ipc, schema_to_ipc};

/// The message for `pipeline`.
pub fn encode(
    pipeline: &PipelineExec,
    codec: &dyn PhysicalExtensionCodec,
) -> DfResult<PipelineNode> {
    let spec = pipeline.spec();
    let expr = |e| -> DfResult<Vec<u8>> { Ok(serialize_physical_expr(e, codec)?.encode_to_vec()) };
    let steps = spec
        .steps
        .iter()
        .map(|step| {
            Ok(PipelineStep {
                step: Some(match step {
                    Step::Filter { predicate } => pipeline_step::Step::Filter(PipelineFilter {
                        predicate: expr(predicate)?,
                    }),
                    Step::Project { exprs, schema } => {
                        pipeline_step::Step::Project(PipelineProject {
                            exprs: exprs.iter().map(expr).collect::<DfResult<_>>()?,
                            schema: schema_to_ipc(schema)?,
                        })
                    }
                    Step::Aggregate(a) => pipeline_step::Step::Aggregate(PipelineAggregate {
                        keys: a.keys.iter().map(expr).collect::<DfResult<_>>()?,
                        functions: a
                            .functions
                            .iter()
                            .map(|f| {
                                Ok(PipelineAggregateFunction {
                                    function: f.kind.name().to_string(),
                                    argument: expr(&f.argument)?,
                                })
                            })
                            .collect::<DfResult<_>>()?,
                        schema: schema_to_ipc(&a.schema)?,
                    }),
                    Step::Partition(p) => pipeline_step::Step::Partition(PipelinePartition {
                        columns: p.columns.iter().map(|c| c.index() as u32).collect(),
                        count: p.count as u32,
                    }),
                }),
            })
        })
        .collect::<DfResult<_>>()?;
    let properties = pipeline.properties();
    let equivalences = super::equivalence::encode(&properties.eq_properties, codec)?;
    let hash_partitioning = match &properties.partitioning {
        Partitioning::Hash(exprs, _) => exprs.iter().map(expr).collect::<DfResult<_>>()?,
        _ => Vec::new(),
    };
    Ok(PipelineNode {
        input_schema: schema_to_ipc(&spec.input_schema)?,
        steps,
        hash_partitioning,
        equivalences: Some(equivalences),
        round_robin: matches!(properties.partitioning, Partitioning::RoundRobinBatch(_)),
    })
}

fn malformed(why: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("malformed pipeline node: {why}"))
}

/// The `PipelineExec` of `node` over `input`, compiled (or found compiled) on this executor.
pub fn decode(
    node: PipelineNode,
    input: Arc<dyn ExecutionPlan>,
    ctx: &TaskContext,
    codec: &dyn PhysicalExtensionCodec,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    // The compiled program depends on the input and the steps only.
    let key = PipelineNode {
        input_schema: node.input_schema.clone(),
        steps: node.steps.clone(),
        ..PipelineNode::default()
    }
    .encode_to_vec();
    let input_schema = schema_from_ipc(&node.input_schema)?;
    if input.schema().fields() != input_schema.fields() {
        return Err(malformed(format!(
            "its input produces {:?}, the pipeline expects {:?}",
            input.schema(),
            input_schema
        )));
    }
    let mut schema = input_schema.clone();
    let mut steps = Vec::with_capacity(node.steps.len());
    for step in node.steps.clone() {
        let expr = |bytes: &[u8], schema: &arrow::datatypes::Schema| {
            let proto = PhysicalExprNode::decode(bytes).map_err(malformed)?;
            parse_physical_expr(&proto, ctx, schema, codec)
        };
        steps.push(match step.step.ok_or_else(|| malformed("empty step"))? {
            pipeline_step::Step::Filter(f) => Step::Filter {
                predicate: expr(&f.predicate, &schema)?,
            },
            pipeline_step::Step::Project(p) => {
                let exprs = p
                    .exprs
                    .iter()
                    .map(|e| expr(e, &schema))
                    .collect::<DfResult<Vec<_>>>()?;
                let out = schema_from_ipc(&p.schema)?;
                schema = out.clone();
                Step::Project { exprs, schema: out }
            }
            pipeline_step::Step::Aggregate(a) => {
                let keys = a
                    .keys
                    .iter()
                    .map(|e| expr(e, &schema))
                    .collect::<DfResult<Vec<_>>>()?;
                let functions = a
                    .functions
                    .iter()
                    .map(|f| {
                        Ok(AggregateFunction {
                            kind: AggregateKind::from_name(&f.function).ok_or_else(|| {
                                malformed(format!("unknown aggregate function {:?}", f.function))
                            })?,
                            argument: expr(&f.argument, &schema)?,
                        })
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                let out = schema_from_ipc(&a.schema)?;
                schema = out.clone();
                Step::Aggregate(AggregateStep {
                    keys,
                    functions,
                    schema: out,
                })
            }
            pipeline_step::Step::Partition(p) => {
                let columns = p
                    .columns
                    .iter()
                    .map(|i| {
                        let field = schema.fields().get(*i as usize).ok_or_else(|| {
                            malformed(format!(
                                "partition column {i} of a {}-column output",
                                schema.fields().len()
                            ))
                        })?;
                        Ok(Column::new(field.name(), *i as usize))
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                Step::Partition(PartitionStep {
                    columns,
                    count: p.count as usize,
                })
            }
        });
    }
    let spec = Arc::new(PipelineSpec {
        input_schema,
        steps,
    });
    let program = cache::compiled(&key, &spec).map_err(|why| {
        DataFusionError::Internal(format!(
            "the driver fused a step this executor cannot compile: {why}"
        ))
    })?;
    let output_schema = spec.output_schema();
    let mut properties = PipelineExec::plain_properties(&input, &spec);
    if !node.hash_partitioning.is_empty() {
        let exprs = node
            .hash_partitioning
            .iter()
            .map(|bytes| {
                let proto = PhysicalExprNode::decode(bytes.as_slice()).map_err(malformed)?;
                parse_physical_expr(&proto, ctx, &output_schema, codec)
            })
            .collect::<DfResult<Vec<_>>>()?;
        let count = properties.partitioning.partition_count();
        properties = properties.with_partitioning(Partitioning::Hash(exprs, count));
    } else if node.round_robin {
        let count = properties.partitioning.partition_count();
        properties = properties.with_partitioning(Partitioning::RoundRobinBatch(count));
    }
    if let Some(equivalences) = &node.equivalences {
        properties = properties.with_eq_properties(super::equivalence::decode(
            equivalences,
            output_schema,
            ctx,
            codec,
        )?);
    }
    let properties = Arc::new(properties);
    Ok(Arc::new(PipelineExec::new(
        input, spec, program, properties,
    )))
}
