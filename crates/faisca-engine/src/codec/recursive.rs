//! Recursive queries on the wire: DataFusion's `RecursiveQueryExec` and the `WorkTableExec` its
//! recursive term reads, which datafusion-proto does not encode.
//!
//! The planner keeps a recursive query and every operator between it and its work table in one
//! task (the work table is shared in memory between them; see `faisca_planner::stages`), so the
//! two nodes always travel together. Decoding builds the `RecursiveQueryExec`, which hands its
//! recursive term's `WorkTableExec` the work table it fills.
//!
//! `WorkTableExec` keeps the projection pushed into it private; its `Debug` output is the one place
//! it can be read. A change of that shape fails encoding loudly.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::work_table::WorkTableExec;
use faisca_proto::{RecursiveQueryNode, WorkTableNode};

use super::{schema_from_ipc, schema_to_ipc};

/// The message for a recursive query node.
pub fn encode_recursive_query(query: &RecursiveQueryExec) -> DfResult<RecursiveQueryNode> {
    Ok(RecursiveQueryNode {
        name: query.name().to_string(),
        is_distinct: query.is_distinct(),
        schema: schema_to_ipc(&query.schema())?,
    })
}

/// The recursive query node `node` over its static and recursive terms.
pub fn decode_recursive_query(
    node: &RecursiveQueryNode,
    inputs: &[Arc<dyn ExecutionPlan>],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let [static_term, recursive_term] = inputs else {
        return Err(DataFusionError::Internal(format!(
            "a recursive query node has a static and a recursive term, got {} inputs",
            inputs.len()
        )));
    };
    Ok(Arc::new(RecursiveQueryExec::try_new(
        node.name.clone(),
        schema_from_ipc(&node.schema)?,
        Arc::clone(static_term),
        Arc::clone(recursive_term),
        node.is_distinct,
    )?))
}

/// The message for a work table node.
pub fn encode_work_table(table: &WorkTableExec) -> DfResult<WorkTableNode> {
    let projection = work_table_projection(table)?;
    Ok(WorkTableNode {
        name: table.name().to_string(),
        schema: schema_to_ipc(&table.schema())?,
        has_projection: projection.is_some(),
        projection: projection
            .unwrap_or_default()
            .into_iter()
            .map(|i| i as u32)
            .collect(),
    })
}

/// The work table node `node` (its work table is attached by the enclosing recursive query).
pub fn decode_work_table(node: &WorkTableNode) -> DfResult<Arc<dyn ExecutionPlan>> {
    let schema = schema_from_ipc(&node.schema)?;
    if !node.has_projection {
        return Ok(Arc::new(WorkTableExec::new(
            node.name.clone(),
            schema,
            None,
        )?));
    }
    let projection: Vec<usize> = node.projection.iter().map(|&i| i as usize).collect();
    let full = unprojected_schema(&schema, &projection)?;
    Ok(Arc::new(WorkTableExec::new(
        node.name.clone(),
        Arc::new(full),
        Some(projection),
    )?))
}

/// A schema whose projection by `projection` is `projected`: the work table's rows are projected
/// by position, so the columns the projection skips only need to exist.
fn unprojected_schema(projected: &Schema, projection: &[usize]) -> DfResult<Schema> {
    if projected.fields().len() != projection.len() {
        return Err(DataFusionError::Internal(format!(
            "a work table projection of {} columns with a schema of {}",
            projection.len(),
            projected.fields().len()
        )));
    }
    let width = projection.iter().max().map_or(0, |m| m + 1);
    let mut fields: Vec<Option<Arc<Field>>> = vec![None; width];
    for (field, &index) in projected.fields().iter().zip(projection) {
        match &fields[index] {
            Some(existing) if existing != field => {
                return Err(DataFusionError::Internal(format!(
                    "work table column {index} projected as both {} and {}",
                    existing.name(),
                    field.name()
                )));
            }
            _ => fields[index] = Some(Arc::clone(field)),
        }
    }
    let fields: Vec<Arc<Field>> = fields
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            f.unwrap_or_else(|| {
                Arc::new(Field::new(
                    format!("__unprojected_{i}"),
                    DataType::Null,
                    true,
                ))
            })
        })
        .collect();
    Ok(Schema::new_with_metadata(
        fields,
        projected.metadata().clone(),
    ))
}

/// The projection of a work table: `WorkTableExec { name: …, schema: …, projection: …, … }`.
fn work_table_projection(table: &WorkTableExec) -> DfResult<Option<Vec<usize>>> {
    let debug = format!("{table:?}");
    let prefix = format!(
        "WorkTableExec {{ name: {:?}, schema: {:?}, projection: ",
        table.name(),
        table.schema()
    );
    let unreadable = || {
        DataFusionError::Internal(format!(
            "cannot read the projection of work table {} (DataFusion's WorkTableExec changed shape); it cannot be sent to executors",
            table.name()
        ))
    };
    let rest = debug.strip_prefix(&prefix).ok_or_else(unreadable)?;
    if rest.starts_with("None, ") {
        return Ok(None);
    }
    let list = rest
        .strip_prefix("Some([")
        .and_then(|r| r.split_once("]), "))
        .map(|(list, _)| list)
        .ok_or_else(unreadable)?;
    if list.is_empty() {
        return Ok(Some(Vec::new()));
    }
    list.split(", ")
        .map(|i| i.parse::<usize>().map_err(|_| unreadable()))
        .collect::<DfResult<Vec<_>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_tables_projection_survives_the_trip() {
        let full = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, false),
        ]));
        for projection in [None, Some(vec![2, 0]), Some(vec![1]), Some(vec![])] {
            let table = WorkTableExec::new("r".into(), full.clone(), projection.clone()).unwrap();
            let node = encode_work_table(&table).unwrap();
            let decoded = decode_work_table(&node).unwrap();
            let decoded = decoded.downcast_ref::<WorkTableExec>().unwrap();
            assert_eq!(work_table_projection(decoded).unwrap(), projection);
            assert_eq!(decoded.schema(), table.schema());
        }
    }
}
