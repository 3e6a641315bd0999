//! How deep a plan may nest: `faisca.plan.maxDepth`, checked twice on the driver.
//!
//! DataFusion parses, plans, optimizes, clones and drops statements by recursion, and its
//! optimizer's work grows faster than a tree's depth: an operator chain (`1 + 1 + …`), a long
//! `UNION`, or a chain of `WITH` tables or views each reading the last makes a tree as deep as
//! the chain is long, which costs minutes of the driver's CPU at some thousands of levels and
//! ends the process with a stack overflow further on — not an error the client could be shown.
//! The parser's `recursion_limit` bounds brackets, not chains. So:
//!
//! 1. **Before a SQL statement is parsed** ([`check_sql`]), its tokens give an upper bound on
//!    the depth of any tree built from it, in one pass with no recursion: along the brackets (and
//!    `CASE … END`) enclosing each token, the operators, keywords and brackets before it that can
//!    add a level — names and literals cannot, and a comma starts a new item of a flat list
//!    (select items, arguments, `IN` and `VALUES` lists), except in a `FROM` list (a cross join
//!    per comma) — plus the set operations and joins before it. A statement whose bound passes
//!    the limit is refused by name.
//! 2. **On the plan itself** ([`check_plan`]) — from SQL once planned, and every DataFrame plan a
//!    client sends — its longest chain of nested plan nodes and expressions, subqueries
//!    included, counted without recursion. This catches depth the text does not show: views and
//!    `WITH` tables that read each other.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::{Error, Result};

/// A bracket (or `CASE`) open at some point of a statement.
#[derive(Default)]
struct Group {
    /// Tokens that can add a level, since the group opened or its list's last item began.
    item: usize,
    /// Set operations and joins since the group opened (commas do not end their nesting).
    chain: usize,
    /// Inside a `FROM` list, whose commas nest.
    from_list: bool,
    /// Opened by `CASE` (closed by `END`).
    case: bool,
}

/// Whether `token` is a name, a literal or spacing: it adds no level to a tree.
fn is_leaf(token: &Token) -> bool {
    matches!(
        token,
        Token::Whitespace(_)
            | Token::Period
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Placeholder(_)
    ) || matches!(token, Token::Word(w) if w.keyword == Keyword::NoKeyword)
}

/// The statements' largest depth bound (see the module's overview) and the statement where it
/// is reached, counted from 1; `None` when the text does not tokenize as `dialect` does. Stops
/// at the first bound past `stop_above`. Linear in the tokens.
fn sql_depth_bound(sql: &str, dialect: &dyn Dialect, stop_above: usize) -> Option<(usize, usize)> {
    let tokens = Tokenizer::new(dialect, sql).tokenize().ok()?;
    let mut groups = vec![Group::default()];
    // The items and chains of every open group, summed.
    let mut total = 0usize;
    let (mut statement, mut worst) = (1, (0, 1));
    for token in &tokens {
        if is_leaf(token) {
            continue;
        }
        let top = groups.len() - 1;
        match token {
            Token::SemiColon => {
                statement += 1;
                groups = vec![Group::default()];
                total = 0;
                continue;
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                grow(&mut groups[top], &mut total);
                groups.push(Group::default());
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if groups.len() > 1 && !groups[top].case {
                    let closed = groups.pop().unwrap_or_default();
                    total -= closed.item + closed.chain;
                }
            }
            Token::Comma if groups[top].from_list => grow(&mut groups[top], &mut total),
            Token::Comma => {
                total -= groups[top].item;
                groups[top].item = 0;
            }
            Token::Word(w) => match w.keyword {
                Keyword::CASE => {
                    grow(&mut groups[top], &mut total);
                    groups.push(Group {
                        case: true,
                        ..Group::default()
                    });
                }
                Keyword::END if groups[top].case => {
                    let closed = groups.pop().unwrap_or_default();
                    total -= closed.item + closed.chain;
                }
                // A CASE's conditions and results are its children, side by side.
                Keyword::WHEN | Keyword::THEN | Keyword::ELSE if groups[top].case => {
                    total -= groups[top].item;
                    groups[top].item = 0;
                    grow(&mut groups[top], &mut total);
                }
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::JOIN => {
                    groups[top].chain += 1;
                    total += 1;
                }
                Keyword::FROM => {
                    grow(&mut groups[top], &mut total);
                    groups[top].from_list = true;
                }
                Keyword::SELECT
                | Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::WINDOW
                | Keyword::QUALIFY
                | Keyword::VALUES
                | Keyword::ON
                | Keyword::USING => {
                    grow(&mut groups[top], &mut total);
                    groups[top].from_list = false;
                }
                _ => grow(&mut groups[top], &mut total),
            },
            _ => grow(&mut groups[top], &mut total),
        }
        let bound = groups.len() + total;
        if bound > worst.0 {
            worst = (bound, statement);
            if bound > stop_above {
                break;
            }
        }
    }
    Some(worst)
}

/// One more token that can add a level to `group`'s current item.
fn grow(group: &mut Group, total: &mut usize) {
    group.item += 1;
    *total += 1;
}

fn too_deep(what: &str, depth: usize, max: usize, fix: &str) -> Error {
    Error::user(format!(
        "{what} {depth} levels deep, more than faisca.plan.maxDepth ({max}) allows: {fix}, or raise faisca.plan.maxDepth on the driver"
    ))
}

/// Refuse `sql` (one or more statements, tokenized as `dialect` does) when a statement's depth
/// bound passes `max`. Text that does not tokenize passes: the parser then refuses it, saying
/// where.
pub fn check_sql(sql: &str, dialect: &dyn Dialect, max: usize) -> Result<()> {
    match sql_depth_bound(sql, dialect, max) {
        Some((bound, statement)) if bound > max => Err(too_deep(
            &format!("SQL statement {statement} may nest"),
            bound,
            max,
            "split it (views, temporary tables), or write a long OR chain of one column as an IN list",
        )),
        _ => Ok(()),
    }
}

/// The subquery plan `expr` itself holds (not its children), if any.
fn subquery_of(expr: &Expr) -> Option<&Arc<LogicalPlan>> {
    match expr {
        Expr::ScalarSubquery(s) => Some(&s.subquery),
        Expr::Exists(e) => Some(&e.subquery.subquery),
        Expr::InSubquery(i) => Some(&i.subquery.subquery),
        Expr::SetComparison(c) => Some(&c.subquery.subquery),
        _ => None,
    }
}

/// The depth of `plan`: its longest chain of nested plan nodes and expressions, subqueries
/// included (a subquery's plan sits under the expression holding it). No recursion.
pub fn plan_depth(plan: &LogicalPlan) -> usize {
    let mut deepest = 0;
    let mut subqueries: Vec<(Arc<LogicalPlan>, usize)> = Vec::new();
    walk_plan(plan, 0, &mut deepest, &mut subqueries);
    while let Some((subquery, base)) = subqueries.pop() {
        walk_plan(&subquery, base, &mut deepest, &mut subqueries);
    }
    deepest
}

fn walk_plan(
    root: &LogicalPlan,
    base: usize,
    deepest: &mut usize,
    subqueries: &mut Vec<(Arc<LogicalPlan>, usize)>,
) {
    let mut plans = vec![(root, base + 1)];
    while let Some((node, depth)) = plans.pop() {
        *deepest = (*deepest).max(depth);
        let _ = node.apply_expressions(|expr| {
            let mut exprs = vec![(expr, depth + 1)];
            while let Some((e, d)) = exprs.pop() {
                *deepest = (*deepest).max(d);
                if let Some(subquery) = subquery_of(e) {
                    subqueries.push((subquery.clone(), d));
                }
                let _ = e.apply_children(|child| {
                    exprs.push((child, d + 1));
                    Ok(TreeNodeRecursion::Continue)
                });
            }
            Ok(TreeNodeRecursion::Continue)
        });
        plans.extend(node.inputs().into_iter().map(|input| (input, depth + 1)));
    }
}

/// Refuse `plan` (`what`: where it comes from) when it nests deeper than `max`.
pub fn check_plan(plan: &LogicalPlan, what: &str, max: usize) -> Result<()> {
    let depth = plan_depth(plan);
    if depth > max {
        return Err(too_deep(
            &format!("{what} nests"),
            depth,
            max,
            "split it (views that read views count too: write one out as a table)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn bound(sql: &str) -> usize {
        sql_depth_bound(sql, &GenericDialect {}, usize::MAX)
            .unwrap()
            .0
    }

    #[test]
    fn chains_count_flat_lists_do_not() {
        // The statement, SELECT, then `+`, `*`, the bracket and `-` chained along one path.
        assert_eq!(bound("SELECT 1 + 2 * (3 - x)"), 1 + 4 + 1 + 1);
        // Names and literals add nothing.
        assert_eq!(bound("SELECT a.b, 'x + y', 42"), 2);
        let chain = |n: usize| format!("SELECT {}", vec!["1"; n].join(" + "));
        assert!(bound(&chain(1000)) > 1000);
        // A wide select list or IN list is flat: its items do not add up.
        let wide: Vec<String> = (0..2000)
            .map(|i| format!("CAST(c{i} AS INT) AS c{i}"))
            .collect();
        assert!(bound(&format!("SELECT {} FROM t", wide.join(", "))) < 20);
        let in_list: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let in_query = format!("SELECT 1 FROM t WHERE a IN ({})", in_list.join(", "));
        assert!(bound(&in_query) < 20);
        // Cross joins by comma, unions and joins nest whatever the commas between them.
        let tables: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
        assert!(bound(&format!("SELECT 1 FROM {}", tables.join(", "))) > 500);
        let arms = vec!["SELECT a, b FROM t"; 500].join(" UNION ALL ");
        assert!(bound(&arms) > 500);
        // CASE branches are siblings.
        let branches: Vec<String> = (0..1000)
            .map(|i| format!("WHEN a = {i} THEN {i}"))
            .collect();
        assert!(bound(&format!("SELECT CASE {} END", branches.join(" "))) < 20);
        // Statements are bounded one by one; text that does not tokenize is left to the parser.
        assert_eq!(bound("SELECT 1 + 1; SELECT 1"), 3);
        assert!(sql_depth_bound("SELECT 'unterminated", &GenericDialect {}, 10).is_none());
        // Deep brackets cost one pass: the count stops at the first bound past the limit.
        let brackets = format!("SELECT {}1{}", "(".repeat(200_000), ")".repeat(200_000));
        let (bound, _) = sql_depth_bound(&brackets, &GenericDialect {}, 100).unwrap();
        assert!((101..110).contains(&bound), "{bound}");
    }

    #[test]
    fn a_statement_over_the_limit_is_refused_naming_the_setting() {
        let chain = format!("SELECT 1; SELECT {}", vec!["1"; 3000].join(" + "));
        let error = check_sql(&chain, &GenericDialect {}, 2000).unwrap_err();
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(
            text.contains("statement 2") && text.contains("faisca.plan.maxDepth (2000)"),
            "{text}"
        );
        check_sql(&chain, &GenericDialect {}, 5000).unwrap();
    }

    #[tokio::test]
    async fn plan_depth_counts_nodes_expressions_and_subqueries() {
        let ctx = SessionContext::new();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap().into_unoptimized_plan() }
        };
        let shallow = plan_depth(&plan("SELECT 1").await);
        let chained = plan_depth(&plan("SELECT 1 + 1 + 1 + 1 + 1").await);
        assert_eq!(chained, shallow + 4);
        let nested = plan_depth(&plan("SELECT (SELECT (SELECT 1 + 1 + 1 + 1 + 1))").await);
        assert!(nested > chained + 2, "{nested} {chained}");
        let refused = check_plan(&plan("SELECT 1 + 1 + 1 + 1 + 1").await, "the plan", shallow)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("faisca.plan.maxDepth"), "{refused}");
    }
}
