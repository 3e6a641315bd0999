//! Random queries over a [`Dataset`]: joins of every type, grouping sets, rollups and cubes,
//! window functions with frames, `IGNORE NULLS` and `FILTER`, distinct aggregates, scalar, `IN`
//! and `EXISTS` subqueries (correlated or not), common table expressions (recursive too), set
//! operations, and a total `ORDER BY` with `LIMIT`/`OFFSET`.
//!
//! Every query has one right answer: window functions that depend on row order order by a key
//! that makes the order total (a table's unique `id`, or every side's ids after a join), a
//! `LIMIT` comes only after ordering by every output column, and no expression can fail on some
//! rows only (divisions divide by `NULLIF(…, 0)`; nothing is cast to a narrower type).

use std::collections::BTreeSet;

use super::ast::{Cte, Expr, From, GroupBy, OrderTerm, Query, Select, Statement, Window};
use super::data::{Class, Dataset, Kind, Rng};

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

    /// Group keys, aggregates over them and perhaps a `HAVING`.
    fn aggregate_items(&mut self, select: &mut Select, scope: &Scope, depth: usize) -> Vec<Kind> {
        self.feature("aggregate");
        let mut kinds = Vec::new();
        let key_count = self.rng.below(3);
        let mut keys = Vec::new();
        for _ in 0..key_count {
            let column = self.rng.pick(&scope.columns).clone();
            keys.push(Expr::Column(column.sql.clone()));
            select.items.push(Expr::Column(column.sql));
            kinds.push(column.kind);
        }
        for _ in 0..1 + self.rng.below(3) {
            let (aggregate, kind) = self.aggregate(scope);
            select.items.push(aggregate);
            kinds.push(kind);
        }
        if !keys.is_empty() {
            let grouping = self.rng.below(10);
            select.group_by = Some(match grouping {
                0 => {
                    self.feature("rollup");
                    GroupBy::Rollup(keys.clone())
                }
                1 => {
                    self.feature("cube");
                    GroupBy::Cube(keys.clone())
                }
                2 | 3 => {
                    self.feature("grouping sets");
                    let mut sets = vec![keys.clone(), vec![]];
                    if keys.len() > 1 {
                        sets.push(vec![keys[1].clone()]);
                    }
                    GroupBy::Sets(sets)
                }
                _ => GroupBy::Plain(keys.clone()),
            });
            if grouping < 4 && self.rng.chance(0.5) {
                select
                    .items
                    .push(Expr::Call("grouping", vec![keys[0].clone()]));
                kinds.push(Kind::Int);
            }
        } else if self.rng.chance(0.1) {
            self.feature("grouping sets");
            select.group_by = Some(GroupBy::Sets(vec![vec![]]));
        }
        if self.rng.chance(0.25) {
            let (aggregate, kind) = self.aggregate(scope);
            let bound = self.literal(kind.class());
            let op = *self.rng.pick(COMPARISONS);
            select
                .having
                .push(Expr::Binary(Box::new(aggregate), op, Box::new(bound)));
            self.feature("having");
        }
        let _ = depth;
        kinds
    }

    fn aggregate(&mut self, scope: &Scope) -> (Expr, Kind) {
        let column = self.rng.pick(&scope.columns).clone();
        let number = column.kind.class() == Class::Number;
        let choice = self.rng.below(9);
        let (function, kind) = match choice {
            0 => ("count", Kind::BigInt),
            1 | 2 => ("count", Kind::BigInt),
            3 if number => (
                "sum",
                match column.kind {
                    Kind::Int | Kind::BigInt => Kind::BigInt,
                    other => other,
                },
            ),
            4 if number => (
                "avg",
                if column.kind == Kind::Decimal {
                    Kind::Decimal
                } else {
                    Kind::Double
                },
            ),
            5 if column.kind == Kind::Bool => ("bool_and", Kind::Bool),
            6 if column.kind == Kind::Double => ("stddev_pop", Kind::Double),
            // Not over doubles: DataFusion's grouped min and max of floats depend on the order
            // of the rows around a NaN (see docs/correctness.md).
            7 if column.kind != Kind::Double => ("max", column.kind),
            8 if column.kind != Kind::Double => ("min", column.kind),
            _ => ("count", Kind::BigInt),
        };
        let args = if choice == 0 {
            vec![]
        } else {
            vec![Expr::Column(column.sql.clone())]
        };
        let distinct = !args.is_empty()
            && matches!(function, "count" | "sum" | "avg")
            && self.rng.chance(0.25);
        if distinct {
            self.feature("distinct aggregate");
        }
        let filter = if self.rng.chance(0.15) {
            self.feature("aggregate filter");
            Some(Box::new(self.predicate(scope, 0, false)))
        } else {
            None
        };
        (
            Expr::Aggregate {
                function,
                distinct,
                args,
                filter,
            },
            kind,
        )
    }

    /// Some columns and one to three window functions (ordered by a total order).
    fn window_items(&mut self, select: &mut Select, scope: &Scope) -> Vec<Kind> {
        self.feature("window");
        let mut kinds = Vec::new();
        for _ in 0..1 + self.rng.below(2) {
            let column = self.rng.pick(&scope.columns).clone();
            select.items.push(Expr::Column(column.sql));
            kinds.push(column.kind);
        }
        let count = 1 + self.rng.below(3);
        let mut previous: Option<Window> = None;
        for _ in 0..count {
            let mut window = self.window(scope);
            // Reuse the previous window's partitioning and order, sometimes reversed: DataFusion
            // then evaluates one of them in reverse to share a sort.
            if let Some(p) = &previous
                && self.rng.chance(0.5)
                && !p.order_by.is_empty()
                && !window.order_by.is_empty()
                && window
                    .frame
                    .as_deref()
                    .is_none_or(|f| !f.starts_with("RANGE"))
                && p.frame.as_deref().is_none_or(|f| !f.starts_with("RANGE"))
            {
                self.feature("reversed window");
                window.partition_by = p.partition_by.clone();
                let reverse = self.rng.chance(0.7);
                window.order_by = p
                    .order_by
                    .iter()
                    .map(|t| OrderTerm {
                        expr: t.expr.clone(),
                        descending: t.descending != reverse,
                        nulls_first: t.nulls_first != reverse,
                        key: t.key,
                    })
                    .collect();
            }
            let kind = self.window_kind(&window, scope);
            previous = Some(window.clone());
            select.items.push(Expr::Window(Box::new(window)));
            kinds.push(kind);
        }
        kinds
    }

    fn window_kind(&self, window: &Window, scope: &Scope) -> Kind {
        let arg_kind = || match window.args.first() {
            Some(Expr::Column(c)) => scope
                .columns
                .iter()
                .find(|col| &col.sql == c)
                .map(|col| col.kind)
                .unwrap_or(Kind::BigInt),
            _ => Kind::BigInt,
        };
        match window.function.as_str() {
            "percent_rank" | "cume_dist" | "stddev_pop" => Kind::Double,
            "row_number" | "rank" | "dense_rank" | "ntile" | "count" => Kind::BigInt,
            "avg" if arg_kind() == Kind::Decimal => Kind::Decimal,
            "avg" => Kind::Double,
            "sum" => match arg_kind() {
                Kind::Int | Kind::BigInt => Kind::BigInt,
                other => other,
            },
            _ => arg_kind(),
        }
    }

    fn window(&mut self, scope: &Scope) -> Window {
        let partition_by: Vec<Expr> = (0..self.rng.below(3))
            .map(|_| Expr::Column(self.rng.pick(&scope.columns).sql.clone()))
            .collect();
        let numbers: Vec<Column> = scope
            .columns
            .iter()
            .filter(|c| matches!(c.kind, Kind::Int | Kind::BigInt))
            .cloned()
            .collect();
        // A RANGE frame with an offset orders by one number, without the keys: only aggregates,
        // whose value is the same for peers.
        if !numbers.is_empty() && self.rng.chance(0.15) {
            self.feature("range frame");
            let order = self.rng.pick(&numbers).clone();
            let (function, args) = self.window_aggregate(scope);
            let (a, b) = (self.rng.below(3), self.rng.below(3));
            return Window {
                function,
                distinct: false,
                args,
                ignore_nulls: false,
                filter: self.window_filter(scope),
                partition_by,
                order_by: vec![OrderTerm {
                    expr: Expr::Column(order.sql),
                    descending: self.rng.chance(0.5),
                    nulls_first: self.rng.chance(0.5),
                    key: false,
                }],
                frame: Some(format!("RANGE BETWEEN {a} PRECEDING AND {b} FOLLOWING")),
            };
        }
        let mut order_by: Vec<OrderTerm> = (0..self.rng.below(3))
            .map(|_| OrderTerm {
                expr: Expr::Column(self.rng.pick(&scope.columns).sql.clone()),
                descending: self.rng.chance(0.5),
                nulls_first: self.rng.chance(0.5),
                key: false,
            })
            .collect();
        order_by.extend(scope.keys.iter().map(|k| OrderTerm {
            expr: Expr::Column(k.clone()),
            descending: self.rng.chance(0.3),
            nulls_first: false,
            key: true,
        }));
        let value = self.rng.pick(&scope.columns).clone();
        let mut window = Window {
            function: String::new(),
            distinct: false,
            args: vec![],
            ignore_nulls: false,
            filter: None,
            partition_by,
            order_by,
            frame: None,
        };
        match self.rng.below(12) {
            0 => window.function = "row_number".into(),
            1 => window.function = (*self.rng.pick(&["rank", "dense_rank"])).into(),
            2 => window.function = (*self.rng.pick(&["percent_rank", "cume_dist"])).into(),
            3 => {
                window.function = "ntile".into();
                window.args = vec![Expr::Literal((1 + self.rng.below(4)).to_string())];
            }
            4 | 5 => {
                window.function = (*self.rng.pick(&["lag", "lead"])).into();
                window.args = vec![Expr::Column(value.sql.clone())];
                if self.rng.chance(0.5) {
                    window
                        .args
                        .push(Expr::Literal((1 + self.rng.below(3)).to_string()));
                }
                window.ignore_nulls = self.rng.chance(0.3);
            }
            6 | 7 => {
                window.function =
                    (*self.rng.pick(&["first_value", "last_value", "nth_value"])).into();
                window.args = vec![Expr::Column(value.sql.clone())];
                if window.function == "nth_value" {
                    window
                        .args
                        .push(Expr::Literal((1 + self.rng.below(3)).to_string()));
                }
                window.ignore_nulls = self.rng.chance(0.3);
                window.frame = self.frame();
            }
            _ => {
                let (function, args) = self.window_aggregate(scope);
                window.function = function;
                window.args = args;
                window.distinct =
                    window.function == "count" && !window.args.is_empty() && self.rng.chance(0.1);
                window.filter = self.window_filter(scope);
                window.frame = self.frame();
            }
        }
        if window.ignore_nulls {
            self.feature("ignore nulls");
        }
        if window.frame.is_some() {
            self.feature("window frame");
        }
        window
    }

    fn window_aggregate(&mut self, scope: &Scope) -> (String, Vec<Expr>) {
        let column = self.rng.pick(&scope.columns).clone();
        let number = column.kind.class() == Class::Number;
        let function = match self.rng.below(6) {
            0 => return ("count".into(), vec![]),
            1 if number => "sum",
            2 if number => "avg",
            3 if column.kind != Kind::Double => "max",
            4 if column.kind != Kind::Double => "min",
            _ => "count",
        };
        (function.into(), vec![Expr::Column(column.sql)])
    }

    fn window_filter(&mut self, scope: &Scope) -> Option<Box<Expr>> {
        self.rng.chance(0.2).then(|| {
            self.feature("window filter");
            Box::new(self.predicate(scope, 0, false))
        })
    }

    fn frame(&mut self) -> Option<String> {
        let bound = |rng: &mut Rng, start: bool| -> String {
            match rng.below(4) {
                0 if start => "UNBOUNDED PRECEDING".into(),
                0 => "UNBOUNDED FOLLOWING".into(),
                1 => "CURRENT ROW".into(),
                2 => format!("{} PRECEDING", rng.below(3)),
                _ => format!("{} FOLLOWING", rng.below(3)),
            }
        };
        if !self.rng.chance(0.6) {
            return None;
        }
        let units = *self.rng.pick(&["ROWS", "ROWS", "GROUPS"]);
        // Order the two bounds so the frame is valid: start no later than end.
        let rank = |b: &str| -> i64 {
            let n = |s: &str| {
                s.split(' ')
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            if b.starts_with("UNBOUNDED PRECEDING") {
                -100
            } else if b.starts_with("UNBOUNDED FOLLOWING") {
                100
            } else if b == "CURRENT ROW" {
                0
            } else if b.ends_with("PRECEDING") {
                -n(b)
            } else {
                n(b)
            }
        };
        let (mut start, mut end) = (bound(&mut self.rng, true), bound(&mut self.rng, false));
        if rank(&start) > rank(&end) {
            std::mem::swap(&mut start, &mut end);
        }
        if start.starts_with("UNBOUNDED FOLLOWING") || end.starts_with("UNBOUNDED PRECEDING") {
            return None;
        }
        Some(format!("{units} BETWEEN {start} AND {end}"))
    }

    /// A scalar subquery: an aggregate of another relation, perhaps correlated.
    fn scalar_subquery(&mut self, outer: &Scope, depth: usize) -> (Expr, Kind) {
        self.feature("scalar subquery");
        let (from, scope) = self.from(0);
        let (aggregate, kind) = self.aggregate(&scope);
        let mut filter = Vec::new();
        if self.rng.chance(0.5) {
            filter.push(self.predicate(&scope, depth.saturating_sub(1), false));
        }
        if self.rng.chance(0.4)
            && let Some(p) = self.correlation(&scope, outer)
        {
            filter.push(p);
        }
        let select = Select {
            distinct: false,
            items: vec![aggregate],
            from,
            filter,
            group_by: None,
            having: vec![],
        };
        (
            Expr::Scalar(Box::new(plain(Query::Select(Box::new(select))))),
            kind,
        )
    }

    /// A boolean expression; with `subqueries`, perhaps an `IN`, `EXISTS` or comparison with a
    /// subquery.
    fn predicate(&mut self, scope: &Scope, depth: usize, subqueries: bool) -> Expr {
        if subqueries && depth > 0 && self.rng.chance(0.25) {
            return self.subquery_predicate(scope, depth);
        }
        match self.rng.below(10) {
            0 => {
                let (e, _) = self.value(scope, 1);
                Expr::IsNull(Box::new(e), self.rng.chance(0.5))
            }
            1 => {
                let column = self.rng.pick(&scope.columns).clone();
                let items = (0..1 + self.rng.below(3))
                    .map(|_| self.literal(column.kind.class()))
                    .collect();
                Expr::InList(
                    Box::new(Expr::Column(column.sql)),
                    items,
                    self.rng.chance(0.3),
                )
            }
            2 if depth > 0 => {
                let (l, r) = (
                    self.predicate(scope, depth - 1, subqueries),
                    self.predicate(scope, depth - 1, subqueries),
                );
                Expr::Binary(Box::new(l), self.rng.pick_copy(&["AND", "OR"]), Box::new(r))
            }
            3 if depth > 0 => Expr::Not(Box::new(self.predicate(scope, depth - 1, subqueries))),
            _ => {
                let column = self.rng.pick(&scope.columns).clone();
                if column.kind == Kind::Bool && self.rng.chance(0.5) {
                    return Expr::Column(column.sql);
                }
                let class = column.kind.class();
                let right = if self.rng.chance(0.6) {
                    self.literal(class)
                } else {
                    self.value_like(column.kind, scope, 1)
                };
                Expr::Binary(
                    Box::new(Expr::Column(column.sql)),
                    self.rng.pick_copy(COMPARISONS),
                    Box::new(right),
                )
            }
        }
    }

    fn subquery_predicate(&mut self, outer: &Scope, depth: usize) -> Expr {
        let column = self.rng.pick(&outer.columns).clone();
        match self.rng.below(3) {
            0 => {
                self.feature("in subquery");
                let correlated = self.rng.chance(0.3).then_some(outer);
                let (query, _) = self.query(correlated, depth - 1, Some(&[column.kind]));
                Expr::InQuery(
                    Box::new(Expr::Column(column.sql)),
                    Box::new(plain(query)),
                    self.rng.chance(0.3),
                )
            }
            1 => {
                self.feature("exists subquery");
                let (query, _) = self.query(Some(outer), depth - 1, None);
                Expr::Exists(Box::new(plain(query)), self.rng.chance(0.3))
            }
            _ => {
                let (scalar, kind) = self.scalar_subquery(outer, depth);
                if !kind.compares_with(column.kind) {
                    return Expr::IsNull(Box::new(scalar), self.rng.chance(0.5));
                }
                Expr::Binary(
                    Box::new(Expr::Column(column.sql)),
                    self.rng.pick_copy(COMPARISONS),
                    Box::new(scalar),
                )
            }
        }
    }

    /// A value of any kind.
    fn value(&mut self, scope: &Scope, depth: usize) -> (Expr, Kind) {
        let column = self.rng.pick(&scope.columns).clone();
        if depth == 0 || self.rng.chance(0.5) {
            return (Expr::Column(column.sql), column.kind);
        }
        match column.kind.class() {
            Class::Number if self.rng.chance(0.1) => {
                let kind = match column.kind {
                    Kind::Int => Kind::BigInt,
                    other => other,
                };
                (Expr::Negate(Box::new(Expr::Column(column.sql))), kind)
            }
            Class::Number => {
                // An operand of the same kind, so that the result's kind is known: a double
                // creeping into a decimal expression could later meet a decimal in a comparison
                // (as a cast of infinity to a decimal, which fails).
                let other = self.value_of_kind(column.kind, scope);
                let op = *self.rng.pick(&["+", "-", "*", "/"]);
                let kind = match column.kind {
                    Kind::Int => Kind::BigInt,
                    other => other,
                };
                let right = if op == "/" {
                    Expr::Call("nullif", vec![other, Expr::Literal("0".into())])
                } else {
                    other
                };
                (
                    Expr::Binary(Box::new(Expr::Column(column.sql)), op, Box::new(right)),
                    kind,
                )
            }
            Class::Text => {
                let f = *self.rng.pick(&["upper", "lower", "length", "concat"]);
                match f {
                    "length" => (
                        Expr::Call("character_length", vec![Expr::Column(column.sql)]),
                        Kind::Int,
                    ),
                    "concat" => {
                        let other = self.value_like(Kind::Text, scope, 0);
                        (
                            Expr::Call("concat", vec![Expr::Column(column.sql), other]),
                            Kind::Text,
                        )
                    }
                    f => (Expr::Call(f, vec![Expr::Column(column.sql)]), Kind::Text),
                }
            }
            class => {
                let fallback = self.literal(class);
                let when = self.predicate(scope, 0, false);
                (
                    Expr::Case(
                        vec![(when, Expr::Column(column.sql))],
                        Some(Box::new(fallback)),
                    ),
                    column.kind,
                )
            }
        }
    }

    /// A value that compares with `kind`: a column, a literal, or a `COALESCE` of both.
    fn value_like(&mut self, kind: Kind, scope: &Scope, depth: usize) -> Expr {
        let class = kind.class();
        let columns: Vec<Column> = scope
            .columns
            .iter()
            .filter(|c| c.kind.compares_with(kind))
            .cloned()
            .collect();
        if columns.is_empty() || self.rng.chance(0.2) {
            return self.literal(class);
        }
        let column = self.rng.pick(&columns).clone();
        if depth > 0 && self.rng.chance(0.2) {
            let fallback = self.literal(class);
            return Expr::Call("coalesce", vec![Expr::Column(column.sql), fallback]);
        }
        Expr::Column(column.sql)
    }

    /// A value of exactly `kind` (a column of that kind, or a literal cast to it): the sides of
    /// set operations and `IN` subqueries then meet without a cast that could fail on some rows.
    fn value_of_kind(&mut self, kind: Kind, scope: &Scope) -> Expr {
        let columns: Vec<Column> = scope
            .columns
            .iter()
            .filter(|c| c.kind == kind)
            .cloned()
            .collect();
        if columns.is_empty() || self.rng.chance(0.1) {
            let literal = self.literal(kind.class());
            let literal = match (kind, literal) {
                (Kind::Int | Kind::BigInt, Expr::Literal(l)) if l.contains('.') => {
                    Expr::Literal("2".into())
                }
                (_, literal) => literal,
            };
            return Expr::Cast(Box::new(literal), kind.sql());
        }
        Expr::Column(self.rng.pick(&columns).sql.clone())
    }

    fn literal(&mut self, class: Class) -> Expr {
        Expr::Literal(match class {
            Class::Number => (*self.rng.pick(&["0", "1", "-2", "3", "1.5", "100"])).into(),
            Class::Date => (*self.rng.pick(&["DATE '2024-01-01'", "DATE '2023-12-30'"])).into(),
            Class::Text => (*self.rng.pick(&["''", "'a'", "'ab'", "'B'"])).into(),
            Class::Bool => (*self.rng.pick(&["true", "false"])).into(),
        })
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
