//! The plan round-trip guard: a stage plan must decode into the plan that was encoded.
//!
//! A field the codec drops (as datafusion-proto once dropped `IGNORE NULLS`, window `FILTER`s and
//! reversals) gives executors a different plan than the driver planned, and a wrong answer with
//! no error. [`check_round_trip`] decodes the bytes the driver is about to send and compares the
//! two plans node by node: the operator, its verbose display, its schema, partitioning and
//! equivalence properties (orderings, equal expressions, constants), and the `Debug` form of every expression it holds, including the properties of
//! window and aggregate expressions that no display shows. The driver runs it on every stage
//! plan in debug builds (`faisca.planner.checkEncoding`), so every test checks every plan it
//! sends.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::expressions::{Column, DynamicFilterPhysicalExpr};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{DisplayFormatType, ExecutionPlan, Partitioning};
use faisca_common::{Error, Result};

use super::decode_stage_plan;

/// Check that `bytes`, encoded from `plan` (with its output partitioning `hash` as the root),
/// decode into the same plan; the error names the first node that differs.
pub fn check_round_trip(
    plan: &Arc<dyn ExecutionPlan>,
    hash: Option<&Partitioning>,
    bytes: &[u8],
    ctx: &TaskContext,
) -> Result<()> {
    let (decoded, decoded_hash) = decode_stage_plan(bytes, hash.is_some(), ctx).map_err(|e| {
        Error::internal_final(format!(
            "a stage plan does not decode on the driver: {e}\nplan:\n{}",
            describe(plan).join("\n")
        ))
    })?;
    let show = |p: Option<&Partitioning>| p.map(|p| normalize(&format!("{p:?}")));
    if show(hash) != show(decoded_hash.as_ref()) {
        return Err(Error::internal_final(format!(
            "a stage's output partitioning changes on its way to executors: planned {:?}, decoded {:?}",
            show(hash),
            show(decoded_hash.as_ref())
        )));
    }
    let before = nodes(plan);
    let after = nodes(&decoded);
    let same = |i: usize| match (before.get(i), after.get(i)) {
        (Some(p), Some(d)) => p.line == d.line && schema_keeps(&p.schema, &d.schema),
        _ => false,
    };
    if let Some(i) = (0..before.len().max(after.len())).find(|&i| !same(i)) {
        let none = String::from("(nothing)");
        let text = |n: Option<&Node>| n.map(Node::text).unwrap_or_else(|| none.clone());
        let (planned, decoded) = (text(before.get(i)), text(after.get(i)));
        let (planned_part, decoded_part) = where_they_differ(&planned, &decoded);
        return Err(Error::internal_final(format!(
            "a stage plan changes on its way to executors (a field the plan codec drops), at node {} ({}):\n  planned: {planned_part}\n  decoded: {decoded_part}",
            i + 1,
            planned.trim_start().split(':').next().unwrap_or(""),
        )));
    }
    Ok(())
}

/// The parts of two lines around their first difference.
fn where_they_differ<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    const CONTEXT: usize = 160;
    let common = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or(a.len().min(b.len()));
    let cut = |s: &'a str| {
        let mut start = common.saturating_sub(CONTEXT).min(s.len());
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (common + CONTEXT).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        &s[start..end]
    };
    (cut(a), cut(b))
}

/// Whether a node's decoded schema keeps its planned one: the same fields, types and metadata,
/// and no field nullable that was planned not to be. (A decoded field may be known not null
/// where the planned one was not: some of DataFusion's rules swap in a child that is never null,
/// such as an aggregate answered from statistics, and keep the parent's nullable schema, which
/// the parent recomputes when it is decoded. Operators planned for nullable input accept it.)
fn schema_keeps(planned: &SchemaRef, decoded: &SchemaRef) -> bool {
    planned.metadata() == decoded.metadata()
        && planned.fields().len() == decoded.fields().len()
        && planned.fields().iter().zip(decoded.fields()).all(|(p, d)| {
            p.name() == d.name()
                && p.data_type() == d.data_type()
                && p.metadata() == d.metadata()
                && (p.is_nullable() || !d.is_nullable())
        })
}

/// A node as the guard compares it: its schema, and all else in one line.
struct Node {
    line: String,
    schema: SchemaRef,
}

impl Node {
    fn text(&self) -> String {
        format!("{} | schema: {:?}", self.line, self.schema)
    }
}

/// One line per node, in pre-order: everything about the node that decides what it computes.
pub fn describe(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    nodes(plan).iter().map(Node::text).collect()
}

fn nodes(plan: &Arc<dyn ExecutionPlan>) -> Vec<Node> {
    let mut nodes = Vec::new();
    describe_into(plan, 0, &mut nodes);
    nodes
}

fn describe_into(plan: &Arc<dyn ExecutionPlan>, depth: usize, lines: &mut Vec<Node>) {
    let properties = plan.properties();
    let mut expressions = Vec::new();
    let mut columns = Vec::new();
    let visited = plan.apply_expressions(&mut |e| {
        // A dynamic filter is filled at run time and read by no one (Faísca turns their
        // pushdown off); an aggregate rebuilt on decoding creates one its planned self dropped.
        if e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some() {
            return Ok(TreeNodeRecursion::Continue);
        }
        expressions.push(normalize(&format!("{e:?}")));
        e.apply(|sub| {
            if let Some(column) = sub.downcast_ref::<Column>() {
                columns.push(column.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    if visited.is_err() {
        expressions.push("(expressions not visitable)".into());
    }
    let mut line = format!(
        "{:indent$}{} | partitioning: {} | equivalences: {}",
        "",
        without_read_order_hints(&without_column_names(
            &Verbose(plan.as_ref()).to_string(),
            &columns
        )),
        properties.partitioning,
        without_column_names(&equivalences(&properties.eq_properties), &columns),
        indent = depth * 2
    );
    line.push_str(&format!(" | expressions: {expressions:?}"));
    if let Some(window) = plan.downcast_ref::<BoundedWindowAggExec>() {
        line.push_str(&format!(
            " | window: {} | mode: {:?}",
            normalize(&format!("{:?}", window.window_expr())),
            window.input_order_mode
        ));
    }
    if let Some(window) = plan.downcast_ref::<WindowAggExec>() {
        line.push_str(&format!(
            " | window: {}",
            normalize(&format!("{:?}", window.window_expr()))
        ));
    }
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        line.push_str(&format!(
            " | aggregate: {:?} {} {} {} {:?}",
            aggregate.mode(),
            normalize(&format!("{:?}", aggregate.group_expr())),
            normalize(&format!("{:?}", aggregate.aggr_expr())),
            normalize(&format!("{:?}", aggregate.filter_expr())),
            aggregate.limit_options(),
        ));
    }
    lines.push(Node {
        line,
        schema: plan.schema(),
    });
    for child in plan.children() {
        describe_into(child, depth + 1, lines);
    }
}

/// What is known of a node's output, in an order that does not depend on how it was derived:
/// its orderings, its classes of equal expressions and its constants, each sorted.
fn equivalences(properties: &EquivalenceProperties) -> String {
    let mut orderings: Vec<String> = properties
        .oeq_class()
        .iter()
        .map(|o| o.to_string())
        .collect();
    orderings.sort();
    let mut classes: Vec<String> = properties
        .eq_group()
        .iter()
        .filter(|class| class.len() > 1)
        .map(|class| {
            let mut members: Vec<String> = class.iter().map(|e| e.to_string()).collect();
            members.sort();
            members.join(" = ")
        })
        .collect();
    classes.sort();
    let mut constants: Vec<String> = properties
        .constants()
        .iter()
        .map(|c| format!("{} ({})", c.expr, c.across_partitions))
        .collect();
    constants.sort();
    format!("orderings {orderings:?}, equal {classes:?}, constants {constants:?}")
}

/// A Parquet scan's display without the order it was asked to read row groups in
/// (`sort_order_for_reorder`, `reverse_row_groups`): datafusion-proto drops these hints, which
/// let a top-k stop early but never change what a scan returns (a sort stays above it).
fn without_read_order_hints(display: &str) -> String {
    let mut out = display.replace(", reverse_row_groups=true", "");
    const MARKER: &str = ", sort_order_for_reorder=[";
    while let Some(at) = out.find(MARKER) {
        let rest = &out[at + MARKER.len()..];
        let after = skip_value_inside(rest);
        let end = out.len() - after.len() + usize::from(after.starts_with(']'));
        out.replace_range(at..end, "");
    }
    out
}

/// `display` with each column shown by position only (`#3`, not `name@3`).
fn without_column_names(display: &str, columns: &[Column]) -> String {
    let mut columns: Vec<&Column> = columns.iter().collect();
    columns.sort_by_key(|c| std::cmp::Reverse(c.name().len()));
    let mut out = display.to_string();
    for column in columns {
        out = out.replace(
            &format!("{}@{}", column.name(), column.index()),
            &format!("#{}", column.index()),
        );
    }
    out
}

/// A `Debug` form without what does not decide what a plan computes and legitimately differs
/// between the planning session and a task: the configuration scalar functions carry, the
/// schema an aggregate expression was planned against (a window's output schema while planning,
/// its input's after decoding; arguments read only the input), and column names (columns are
/// read by position; DataFusion renames them after the input's fields on decoding).
fn normalize(debug: &str) -> String {
    let debug = skip_values(debug, "config_options: ");
    let debug = skip_values(&debug, "schema: Schema {");
    strip_column_names(&debug)
}

/// `debug` with the value after each `marker` replaced by `_`. A marker that ends in an opening
/// brace starts the value it replaces.
fn skip_values(debug: &str, marker: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at]);
        let (key, opens) = match marker.strip_suffix(" {") {
            Some(head) => (head.split(": ").next().unwrap_or(head), true),
            None => (marker.trim_end_matches(": "), false),
        };
        out.push_str(key);
        out.push_str(": _");
        let value = &rest[at + marker.len()..];
        rest = if opens {
            // Inside the value's opening brace: skip past its closing one.
            let after = skip_value_inside(value);
            after.strip_prefix('}').unwrap_or(after)
        } else {
            skip_value(value)
        };
    }
    out.push_str(rest);
    out
}

/// `debug` with `Column { name: "…", index: N }` shown as `Column { index: N }`.
fn strip_column_names(debug: &str) -> String {
    const MARKER: &str = "Column { name: \"";
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(at) = rest.find(MARKER) {
        out.push_str(&rest[..at]);
        out.push_str("Column { ");
        let after_quote = &rest[at + MARKER.len()..];
        let mut escaped = false;
        let mut end = None;
        for (i, c) in after_quote.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            out.push_str(&rest[at + "Column { ".len()..]);
            return out;
        };
        rest = after_quote[end + 1..]
            .strip_prefix(", ")
            .unwrap_or(&after_quote[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// `text` from the bracket that closes the one it is inside (quoted strings skipped).
fn skip_value_inside(text: &str) -> &str {
    let mut rest = text;
    loop {
        rest = skip_value(rest);
        match rest.strip_prefix(',') {
            Some(more) => rest = more,
            None => return rest,
        }
    }
}

/// `text` after the `Debug` value it starts with (balanced brackets; quoted strings skipped).
fn skip_value(text: &str) -> &str {
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' if depth == 0 => return &text[i..],
            '}' | ']' | ')' => depth -= 1,
            ',' if depth == 0 => return &text[i..],
            _ => {}
        }
    }
    ""
}

/// A node's own line in DataFusion's verbose display.
struct Verbose<'a>(&'a dyn ExecutionPlan);

impl fmt::Display for Verbose<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_as(DisplayFormatType::Verbose, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_left_out_of_expressions() {
        let debug = "ScalarFunctionExpr { fun: \"f\", config_options: ConfigOptions { a: [1, 2], b: \"}\" }, name: \"x\" }";
        assert_eq!(
            normalize(debug),
            "ScalarFunctionExpr { fun: \"f\", config_options: _, name: \"x\" }"
        );
    }

    #[test]
    fn schemas_of_aggregates_and_column_names_are_left_out() {
        let debug = "Agg { name: \"s\", schema: Schema { fields: [Field { name: \"a}\" }], metadata: {} }, args: [Column { name: \"we\\\"ird\", index: 3 }] }";
        assert_eq!(
            normalize(debug),
            "Agg { name: \"s\", schema: _, args: [Column { index: 3 }] }"
        );
        assert_eq!(
            without_read_order_hints(
                "DataSourceExec: projection=[a], sort_order_for_reorder=[#1 ASC, a@0 DESC], reverse_row_groups=true | x"
            ),
            "DataSourceExec: projection=[a] | x"
        );
        let columns = [Column::new("a", 0), Column::new("count(a)", 1)];
        assert_eq!(
            without_column_names("ProjectionExec: expr=[a@0 as x, count(a)@1 + 1]", &columns),
            "ProjectionExec: expr=[#0 as x, #1 + 1]"
        );
    }
}

#[cfg(test)]
mod generated_tables {
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A `generate_series` scan under a filter keeps its ordering on the wire.
    #[tokio::test]
    async fn a_filtered_generated_table_round_trips() {
        let ctx = SessionContext::new();
        for sql in [
            "SELECT count(*) FROM generate_series(1, 100000) AS t(v) WHERE v % 3 = 0",
            "SELECT v FROM generate_series(1, 10) AS t(v) WHERE v > 3",
        ] {
            let plan = ctx
                .sql(sql)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let bytes = crate::codec::encode_stage_plan(plan.clone(), None).unwrap();
            check_round_trip(&plan, None, &bytes, &ctx.task_ctx())
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}
