//! Aggregates (with grouping sets, `DISTINCT` and `FILTER`) and window functions (with frames,
//! `IGNORE NULLS`, `FILTER`, and orders DataFusion evaluates reversed).

use super::{COMPARISONS, Column, Generator, Scope};
use crate::difftest::ast::{Expr, GroupBy, OrderTerm, Select, Window};
use crate::difftest::data::{Class, Kind, Rng};

impl Generator {
    /// Group keys, aggregates over them and perhaps a `HAVING`.
    pub(super) fn aggregate_items(
        &mut self,
        select: &mut Select,
        scope: &Scope,
        depth: usize,
    ) -> Vec<Kind> {
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

    pub(super) fn aggregate(&mut self, scope: &Scope) -> (Expr, Kind) {
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
    pub(super) fn window_items(&mut self, select: &mut Select, scope: &Scope) -> Vec<Kind> {
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

    pub(super) fn window_kind(&self, window: &Window, scope: &Scope) -> Kind {
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

    pub(super) fn window(&mut self, scope: &Scope) -> Window {
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

    pub(super) fn window_aggregate(&mut self, scope: &Scope) -> (String, Vec<Expr>) {
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

    pub(super) fn window_filter(&mut self, scope: &Scope) -> Option<Box<Expr>> {
        self.rng.chance(0.2).then(|| {
            self.feature("window filter");
            Box::new(self.predicate(scope, 0, false))
        })
    }

    pub(super) fn frame(&mut self) -> Option<String> {
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
}
