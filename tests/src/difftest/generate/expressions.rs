//! Values and predicates: columns, literals, arithmetic and string functions, comparisons, `IN`
//! lists, and subqueries (scalar, `IN`, `EXISTS`; correlated or not).

use super::{COMPARISONS, Column, Generator, Scope, plain};
use crate::difftest::ast::{Expr, Query, Select};
use crate::difftest::data::{Class, Kind};

impl Generator {
    /// A scalar subquery: an aggregate of another relation, perhaps correlated.
    pub(super) fn scalar_subquery(&mut self, outer: &Scope, depth: usize) -> (Expr, Kind) {
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
    pub(super) fn predicate(&mut self, scope: &Scope, depth: usize, subqueries: bool) -> Expr {
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

    pub(super) fn subquery_predicate(&mut self, outer: &Scope, depth: usize) -> Expr {
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
    pub(super) fn value(&mut self, scope: &Scope, depth: usize) -> (Expr, Kind) {
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
    pub(super) fn value_like(&mut self, kind: Kind, scope: &Scope, depth: usize) -> Expr {
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
    pub(super) fn value_of_kind(&mut self, kind: Kind, scope: &Scope) -> Expr {
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

    pub(super) fn literal(&mut self, class: Class) -> Expr {
        Expr::Literal(match class {
            Class::Number => (*self.rng.pick(&["0", "1", "-2", "3", "1.5", "100"])).into(),
            Class::Date => (*self.rng.pick(&["DATE '2024-01-01'", "DATE '2023-12-30'"])).into(),
            Class::Text => (*self.rng.pick(&["''", "'a'", "'ab'", "'B'"])).into(),
            Class::Bool => (*self.rng.pick(&["true", "false"])).into(),
        })
    }
}
