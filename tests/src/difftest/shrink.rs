//! Smaller variants of a statement, for reducing a failing query to a minimal one: drop a part
//! (a common table expression, a join side, a filter term, an output column, a window's frame),
//! or replace an expression by one of its parts. Many variants are invalid SQL; the runner keeps
//! only those DataFusion accepts that still fail the same way.

use super::ast::{Cte, Expr, From, GroupBy, Query, Select, Statement};

/// Every one-step simplification of `statement`, the larger cuts first.
pub fn candidates(statement: &Statement) -> Vec<Statement> {
    let mut out = Vec::new();
    for i in 0..statement.ctes.len() {
        let mut s = statement.clone();
        s.ctes.remove(i);
        out.push(s);
    }
    if statement.order_all {
        let mut s = statement.clone();
        s.order_all = false;
        s.limit = None;
        s.offset = None;
        out.push(s);
        if statement.offset.is_some() {
            let mut s = statement.clone();
            s.offset = None;
            out.push(s);
        }
    }
    for body in query_candidates(&statement.body) {
        let mut s = statement.clone();
        s.body = body;
        out.push(s);
    }
    for (i, cte) in statement.ctes.iter().enumerate() {
        if let Cte::Plain { name, query } = cte {
            for query in candidates(query) {
                let mut s = statement.clone();
                s.ctes[i] = Cte::Plain {
                    name: name.clone(),
                    query: Box::new(query),
                };
                out.push(s);
            }
        }
    }
    out
}

fn query_candidates(query: &Query) -> Vec<Query> {
    match query {
        Query::SetOp {
            op,
            all,
            left,
            right,
        } => {
            let mut out = vec![(**left).clone(), (**right).clone()];
            for l in query_candidates(left) {
                out.push(Query::SetOp {
                    op,
                    all: *all,
                    left: Box::new(l),
                    right: right.clone(),
                });
            }
            for r in query_candidates(right) {
                out.push(Query::SetOp {
                    op,
                    all: *all,
                    left: left.clone(),
                    right: Box::new(r),
                });
            }
            out
        }
        Query::Select(select) => select_candidates(select)
            .into_iter()
            .map(|s| Query::Select(Box::new(s)))
            .collect(),
    }
}

fn select_candidates(select: &Select) -> Vec<Select> {
    let mut out = Vec::new();
    let with = |f: &dyn Fn(&mut Select)| {
        let mut s = select.clone();
        f(&mut s);
        s
    };
    for from in from_candidates(&select.from) {
        out.push(with(&|s| s.from = from.clone()));
    }
    if !select.filter.is_empty() {
        out.push(with(&|s| s.filter.clear()));
    }
    for i in 0..select.filter.len() {
        out.push(with(&|s| {
            s.filter.remove(i);
        }));
    }
    for i in 0..select.having.len() {
        out.push(with(&|s| {
            s.having.remove(i);
        }));
    }
    if select.items.len() > 1 {
        for i in 0..select.items.len() {
            out.push(with(&|s| {
                s.items.remove(i);
            }));
        }
    }
    if select.distinct {
        out.push(with(&|s| s.distinct = false));
    }
    if let Some(group_by) = &select.group_by {
        let keys = match group_by {
            GroupBy::Plain(_) => None,
            GroupBy::Rollup(k) | GroupBy::Cube(k) => Some(k.clone()),
            GroupBy::Sets(sets) => sets.first().cloned(),
        };
        if let Some(keys) = keys {
            out.push(with(&|s| s.group_by = Some(GroupBy::Plain(keys.clone()))));
        }
        if let GroupBy::Sets(sets) = group_by {
            for i in 0..sets.len() {
                if sets.len() > 1 {
                    let mut fewer = sets.clone();
                    fewer.remove(i);
                    out.push(with(&|s| s.group_by = Some(GroupBy::Sets(fewer.clone()))));
                }
            }
        }
    }
    for (i, item) in select.items.iter().enumerate() {
        for e in expr_candidates(item) {
            out.push(with(&|s| s.items[i] = e.clone()));
        }
    }
    for (i, term) in select.filter.iter().enumerate() {
        for e in expr_candidates(term) {
            out.push(with(&|s| s.filter[i] = e.clone()));
        }
    }
    out
}

fn from_candidates(from: &From) -> Vec<From> {
    match from {
        From::Table { .. } => vec![],
        From::Derived { query, alias } => candidates(query)
            .into_iter()
            .map(|q| From::Derived {
                query: Box::new(q),
                alias: alias.clone(),
            })
            .collect(),
        From::Join {
            kind,
            left,
            right,
            on,
        } => {
            let mut out = vec![(**left).clone(), (**right).clone()];
            // Semi and anti joins keep one side's rows once: as inner joins they could repeat
            // rows that a window's order relies on being unique.
            if matches!(*kind, "LEFT" | "RIGHT" | "FULL") {
                out.push(From::Join {
                    kind: "INNER",
                    left: left.clone(),
                    right: right.clone(),
                    on: on.clone(),
                });
            }
            if on.len() > 1 {
                for i in 0..on.len() {
                    let mut fewer = on.clone();
                    fewer.remove(i);
                    out.push(From::Join {
                        kind,
                        left: left.clone(),
                        right: right.clone(),
                        on: fewer,
                    });
                }
            }
            for l in from_candidates(left) {
                out.push(From::Join {
                    kind,
                    left: Box::new(l),
                    right: right.clone(),
                    on: on.clone(),
                });
            }
            for r in from_candidates(right) {
                out.push(From::Join {
                    kind,
                    left: left.clone(),
                    right: Box::new(r),
                    on: on.clone(),
                });
            }
            out
        }
    }
}

fn expr_candidates(expr: &Expr) -> Vec<Expr> {
    match expr {
        Expr::Column(_) | Expr::Literal(_) => vec![],
        Expr::Binary(l, _, r) => vec![(**l).clone(), (**r).clone()],
        Expr::Not(e) | Expr::Negate(e) | Expr::Cast(e, _) => vec![(**e).clone()],
        Expr::IsNull(e, _) => expr_candidates(e)
            .into_iter()
            .map(|c| Expr::IsNull(Box::new(c), false))
            .collect(),
        Expr::Call(_, args) => args.clone(),
        Expr::Case(branches, otherwise) => {
            let mut out: Vec<Expr> = branches.iter().map(|(_, then)| then.clone()).collect();
            out.extend(otherwise.iter().map(|e| (**e).clone()));
            out
        }
        Expr::InList(e, items, negated) if items.len() > 1 => (0..items.len())
            .map(|i| {
                let mut fewer = items.clone();
                fewer.remove(i);
                Expr::InList(e.clone(), fewer, *negated)
            })
            .collect(),
        Expr::InList(..) => vec![],
        Expr::Aggregate {
            function,
            distinct,
            args,
            filter,
        } => {
            let mut out = Vec::new();
            if filter.is_some() {
                out.push(Expr::Aggregate {
                    function,
                    distinct: *distinct,
                    args: args.clone(),
                    filter: None,
                });
            }
            if *distinct {
                out.push(Expr::Aggregate {
                    function,
                    distinct: false,
                    args: args.clone(),
                    filter: filter.clone(),
                });
            }
            out
        }
        Expr::Window(w) => {
            let mut out = Vec::new();
            let variant = |f: &dyn Fn(&mut super::ast::Window)| {
                let mut v = (**w).clone();
                f(&mut v);
                Expr::Window(Box::new(v))
            };
            if w.frame.is_some() {
                out.push(variant(&|v| v.frame = None));
            }
            if w.filter.is_some() {
                out.push(variant(&|v| v.filter = None));
            }
            if w.ignore_nulls {
                out.push(variant(&|v| v.ignore_nulls = false));
            }
            if w.distinct {
                out.push(variant(&|v| v.distinct = false));
            }
            for i in 0..w.partition_by.len() {
                out.push(variant(&|v| {
                    v.partition_by.remove(i);
                }));
            }
            for i in (0..w.order_by.len()).filter(|&i| !w.order_by[i].key) {
                out.push(variant(&|v| {
                    v.order_by.remove(i);
                }));
            }
            out
        }
        Expr::Scalar(q) => candidates(q)
            .into_iter()
            .map(|q| Expr::Scalar(Box::new(q)))
            .collect(),
        Expr::InQuery(e, q, negated) => {
            let mut out = vec![Expr::InQuery(e.clone(), q.clone(), false)];
            out.extend(
                candidates(q)
                    .into_iter()
                    .map(|q| Expr::InQuery(e.clone(), Box::new(q), *negated)),
            );
            out
        }
        Expr::Exists(q, negated) => candidates(q)
            .into_iter()
            .map(|q| Expr::Exists(Box::new(q), *negated))
            .collect(),
    }
}
