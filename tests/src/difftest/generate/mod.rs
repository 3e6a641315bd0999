//! Random queries over a [`Dataset`]: joins of every type, grouping sets, rollups and cubes,
//! window functions with frames, `IGNORE NULLS` and `FILTER`, distinct aggregates, scalar, `IN`
//! and `EXISTS` subqueries (correlated or not), common table expressions (recursive too), set
//! operations, and a total `ORDER BY` with `LIMIT`/`OFFSET`.
//!
//! Every query has one right answer: window functions that depend on row order order by a key
//! that makes the order total (a table's unique `id`, or every side's ids after a join), a
//! `LIMIT` comes only after ordering by every output column, and no expression can fail on some
//! rows only (divisions divide by `NULLIF(…, 0)`; nothing is cast to a narrower type).

mod analytics;
mod expressions;

use std::collections::BTreeSet;

use super::ast::{Cte, Expr, From, Query, Select, Statement};
use super::data::{Dataset, Kind, Rng};

/// A column in scope: how to refer to it, and its kind.
#[derive(Debug, Clone)]
struct Column {
    sql: String,
    kind: Kind,
}

/// What a `FROM` clause makes visible: its columns and the keys that order its rows totally
/// (empty when none do).
#[derive(Debug, Clone, Default)]
struct Scope {
    columns: Vec<Column>,
    keys: Vec<String>,
}

/// A relation a `FROM` item may name: a table or a common table expression.
#[derive(Debug, Clone)]
struct Relation {
    name: String,
    columns: Vec<(String, Kind)>,
    /// A column whose values are unique.
    key: Option<String>,
    rows: usize,
}

/// A generated statement and the features it uses.
#[derive(Debug, Clone)]
pub struct Generated {
    pub statement: Statement,
    pub features: BTreeSet<&'static str>,
}

/// Generate a statement from `seed` over `dataset`.
pub fn statement(seed: u64, dataset: &Dataset) -> Generated {
    let relations = dataset
        .tables
        .iter()
        .map(|t| {
            let mut columns = vec![("id".to_string(), Kind::BigInt)];
            columns.extend(t.columns.iter().cloned());
            Relation {
                name: t.name.clone(),
                columns,
                key: Some("id".into()),
                rows: t.rows,
            }
        })
        .collect();
    let mut generator = Generator {
        rng: Rng::new(seed),
        relations,
        aliases: 0,
        features: BTreeSet::new(),
    };
    let statement = generator.top();
    Generated {
        statement,
        features: generator.features,
    }
}

struct Generator {
    rng: Rng,
    relations: Vec<Relation>,
    aliases: usize,
    features: BTreeSet<&'static str>,
}

const COMPARISONS: &[&str] = &["=", "<>", "<", "<=", ">", ">="];
const JOINS: &[&str] = &[
    "INNER",
    "INNER",
    "LEFT",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "LEFT SEMI",
    "LEFT ANTI",
    "RIGHT SEMI",
    "RIGHT ANTI",
];

impl Generator {
    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    fn feature(&mut self, name: &'static str) {
        self.features.insert(name);
    }

    /// The top-level statement: perhaps common table expressions, a query, perhaps a total order
    /// with a limit.
    fn top(&mut self) -> Statement {
        let mut ctes = Vec::new();
        let saved = self.relations.clone();
        if self.rng.chance(0.12) {
            ctes.push(self.recursive_cte());
        } else if self.rng.chance(0.15) {
            let name = self.alias("q");
            let (query, kinds) = self.query(None, 1, None);
            self.feature("cte");
            self.relations.push(Relation {
                name: name.clone(),
                columns: kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (format!("c{i}"), *k))
                    .collect(),
                key: None,
                rows: 60,
            });
            ctes.push(Cte::Plain {
                name,
                query: Box::new(plain(query)),
            });
        }
        let (body, _) = self.query(None, 2, None);
        self.relations = saved;
        let mut statement = plain(body);
        statement.ctes = ctes;
        if self.rng.chance(0.4) {
            statement.order_all = true;
            self.feature("order by");
            if self.rng.chance(0.6) {
                statement.limit = Some(self.rng.below(8) as u64);
                self.feature("limit");
                if self.rng.chance(0.4) {
                    statement.offset = Some(self.rng.below(5) as u64);
                    self.feature("offset");
                }
            }
        }
        statement
    }

    /// `r(n, k, x)`: rows of a table, then rows reached from them through `id = k + 1`, at most
    /// four steps deep (so that it ends, and small).
    fn recursive_cte(&mut self) -> Cte {
        self.feature("recursive cte");
        let tables: Vec<Relation> = self
            .relations
            .iter()
            .filter(|r| r.key.is_some())
            .cloned()
            .collect();
        let table = self.rng.pick(&tables).clone();
        let (x, kind) = self.rng.pick(&table.columns[1..]).clone();
        let name = self.alias("r");
        let (a, b) = (self.alias("a"), self.alias("a"));
        let scope = Scope {
            columns: table
                .columns
                .iter()
                .map(|(c, k)| Column {
                    sql: format!("{a}.{c}"),
                    kind: *k,
                })
                .collect(),
            keys: vec![format!("{a}.id")],
        };
        let filter = if self.rng.chance(0.6) {
            vec![self.predicate(&scope, 1, false)]
        } else {
            vec![]
        };
        let base = Select {
            distinct: false,
            items: vec![
                Expr::Literal("0".into()),
                Expr::Column(format!("{a}.id")),
                Expr::Column(format!("{a}.{x}")),
            ],
            from: From::Table {
                name: table.name.clone(),
                alias: a,
            },
            filter,
            group_by: None,
            having: vec![],
        };
        let depth = 1 + self.rng.below(4);
        let step = Select {
            distinct: false,
            items: vec![
                Expr::Binary(
                    Box::new(Expr::Column(format!("{name}.n"))),
                    "+",
                    Box::new(Expr::Literal("1".into())),
                ),
                Expr::Column(format!("{b}.id")),
                Expr::Column(format!("{b}.{x}")),
            ],
            from: From::Join {
                kind: "INNER",
                left: Box::new(From::Table {
                    name: name.clone(),
                    alias: name.clone(),
                }),
                right: Box::new(From::Table {
                    name: table.name.clone(),
                    alias: b.clone(),
                }),
                on: vec![Expr::Binary(
                    Box::new(Expr::Column(format!("{b}.id"))),
                    "=",
                    Box::new(Expr::Binary(
                        Box::new(Expr::Column(format!("{name}.k"))),
                        "+",
                        Box::new(Expr::Literal("1".into())),
                    )),
                )],
            },
            filter: vec![Expr::Binary(
                Box::new(Expr::Column(format!("{name}.n"))),
                "<",
                Box::new(Expr::Literal(depth.to_string())),
            )],
            group_by: None,
            having: vec![],
        };
        self.relations.push(Relation {
            name: name.clone(),
            columns: vec![
                ("n".into(), Kind::BigInt),
                ("k".into(), Kind::BigInt),
                ("x".into(), kind),
            ],
            key: None,
            rows: 60,
        });
        Cte::Recursive {
            name,
            columns: vec!["n".into(), "k".into(), "x".into()],
            base: Box::new(Query::Select(Box::new(base))),
            step: Box::new(Query::Select(Box::new(step))),
            distinct: self.rng.chance(0.3),
        }
    }

    /// A query, perhaps a set operation; `kinds` asks for output columns of those kinds.
    fn query(
        &mut self,
        outer: Option<&Scope>,
        depth: usize,
        kinds: Option<&[Kind]>,
    ) -> (Query, Vec<Kind>) {
        if depth > 0 && self.rng.chance(0.12) {
            let op = *self.rng.pick(&["UNION", "INTERSECT", "EXCEPT"]);
            self.feature(match op {
                "UNION" => "union",
                "INTERSECT" => "intersect",
                _ => "except",
            });
            let (left, left_kinds) = self.select(outer, depth - 1, kinds);
            let (right, _) = self.select(outer, depth - 1, Some(&left_kinds));
            let query = Query::SetOp {
                op,
                all: self.rng.chance(0.5),
                left: Box::new(Query::Select(Box::new(left))),
                right: Box::new(Query::Select(Box::new(right))),
            };
            return (query, left_kinds);
        }
        let (select, kinds) = self.select(outer, depth, kinds);
        (Query::Select(Box::new(select)), kinds)
    }

    fn select(
        &mut self,
        outer: Option<&Scope>,
        depth: usize,
        kinds: Option<&[Kind]>,
    ) -> (Select, Vec<Kind>) {
        let (from, scope) = self.from(depth);
        let mut filter = Vec::new();
        for _ in 0..self.rng.below(3) {
            filter.push(self.predicate(&scope, depth, true));
        }
        if let Some(outer) = outer {
            // Correlate: an equality with a column of the enclosing query.
            if let Some(p) = self.correlation(&scope, outer) {
                filter.push(p);
            }
        }
        let mut select = Select {
            distinct: false,
            items: vec![],
            from,
            filter,
            group_by: None,
            having: vec![],
        };
        let kinds_out = match kinds {
            Some(kinds) => {
                for kind in kinds {
                    let expr = self.value_of_kind(*kind, &scope);
                    select.items.push(expr);
                }
                kinds.to_vec()
            }
            None if self.rng.chance(0.3) => self.aggregate_items(&mut select, &scope, depth),
            None if !scope.keys.is_empty() && self.rng.chance(0.35) => {
                self.window_items(&mut select, &scope)
            }
            None => {
                let mut kinds = Vec::new();
                for _ in 0..1 + self.rng.below(3) {
                    let (expr, kind) = if depth > 0 && self.rng.chance(0.1) {
                        self.scalar_subquery(&scope, depth)
                    } else {
                        self.value(&scope, 2)
                    };
                    select.items.push(expr);
                    kinds.push(kind);
                }
                kinds
            }
        };
        if self.rng.chance(0.1) {
            select.distinct = true;
            self.feature("distinct");
        }
        (select, kinds_out)
    }

    /// A `FROM` clause of one to three relations.
    fn from(&mut self, depth: usize) -> (From, Scope) {
        let (mut from, mut scope, mut rows) = self.relation(depth);
        let joins = *self.rng.pick(&[0, 0, 1, 1, 1, 2]);
        for _ in 0..joins {
            let (right, right_scope, right_rows) = self.relation(depth);
            let mut kind = *self.rng.pick(JOINS);
            if kind == "CROSS" && rows * right_rows > 4000 {
                kind = "INNER";
            }
            self.feature(match kind {
                "INNER" => "inner join",
                "LEFT" => "left join",
                "RIGHT" => "right join",
                "FULL" => "full join",
                "CROSS" => "cross join",
                "LEFT SEMI" | "RIGHT SEMI" => "semi join",
                _ => "anti join",
            });
            let on = if kind == "CROSS" {
                vec![]
            } else {
                self.join_condition(&scope, &right_scope)
            };
            scope = match kind {
                "LEFT SEMI" | "LEFT ANTI" => scope,
                "RIGHT SEMI" | "RIGHT ANTI" => right_scope,
                _ => {
                    let keys = if scope.keys.is_empty() || right_scope.keys.is_empty() {
                        vec![]
                    } else {
                        scope
                            .keys
                            .iter()
                            .chain(&right_scope.keys)
                            .cloned()
                            .collect()
                    };
                    Scope {
                        columns: scope
                            .columns
                            .iter()
                            .chain(&right_scope.columns)
                            .cloned()
                            .collect(),
                        keys,
                    }
                }
            };
            rows = rows.max(right_rows);
            from = From::Join {
                kind,
                left: Box::new(from),
                right: Box::new(right),
                on,
            };
        }
        (from, scope)
    }

    /// One relation: a table or common table expression, or (rarely) a derived table.
    fn relation(&mut self, depth: usize) -> (From, Scope, usize) {
        if depth > 0 && self.rng.chance(0.1) {
            self.feature("derived table");
            let alias = self.alias("d");
            let (query, kinds) = self.query(None, depth - 1, None);
            let columns = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| Column {
                    sql: format!("{alias}.c{i}"),
                    kind: *k,
                })
                .collect();
            let scope = Scope {
                columns,
                keys: vec![],
            };
            let from = From::Derived {
                query: Box::new(plain(query)),
                alias,
            };
            return (from, scope, 60);
        }
        let relation = self.rng.pick(&self.relations).clone();
        let alias = self.alias("a");
        let scope = Scope {
            columns: relation
                .columns
                .iter()
                .map(|(c, k)| Column {
                    sql: format!("{alias}.{c}"),
                    kind: *k,
                })
                .collect(),
            keys: relation
                .key
                .iter()
                .map(|k| format!("{alias}.{k}"))
                .collect(),
        };
        let from = From::Table {
            name: relation.name.clone(),
            alias,
        };
        (from, scope, relation.rows)
    }

    fn join_condition(&mut self, left: &Scope, right: &Scope) -> Vec<Expr> {
        let mut on = Vec::new();
        let pairs: Vec<(Column, Column)> = left
            .columns
            .iter()
            .flat_map(|l| {
                right
                    .columns
                    .iter()
                    .filter(move |r| r.kind.compares_with(l.kind))
                    .map(move |r| (l.clone(), r.clone()))
            })
            .collect();
        if pairs.is_empty() {
            on.push(Expr::Literal("true".into()));
            return on;
        }
        for _ in 0..1 + usize::from(self.rng.chance(0.3)) {
            let (l, r) = self.rng.pick(&pairs).clone();
            let op = if self.rng.chance(0.1) {
                self.feature("non-equi join");
                "<"
            } else {
                "="
            };
            on.push(Expr::Binary(
                Box::new(Expr::Column(l.sql)),
                op,
                Box::new(Expr::Column(r.sql)),
            ));
        }
        if self.rng.chance(0.2) {
            let both = Scope {
                columns: left.columns.iter().chain(&right.columns).cloned().collect(),
                keys: vec![],
            };
            on.push(self.predicate(&both, 0, false));
        }
        on
    }

    /// An equality between a column of `scope` and one of `outer`, if two share a class.
    fn correlation(&mut self, scope: &Scope, outer: &Scope) -> Option<Expr> {
        let pairs: Vec<(String, String)> = scope
            .columns
            .iter()
            .flat_map(|c| {
                outer
                    .columns
                    .iter()
                    .filter(move |o| o.kind.compares_with(c.kind))
                    .map(move |o| (c.sql.clone(), o.sql.clone()))
            })
            .collect();
        if pairs.is_empty() {
            return None;
        }
        self.feature("correlated subquery");
        let (inner, outer) = self.rng.pick(&pairs).clone();
        Some(Expr::Binary(
            Box::new(Expr::Column(inner)),
            "=",
            Box::new(Expr::Column(outer)),
        ))
    }
}

/// `query` as a statement without `WITH` or ordering.
fn plain(query: Query) -> Statement {
    Statement {
        ctes: vec![],
        body: query,
        order_all: false,
        limit: None,
        offset: None,
    }
}
