//! The queries the differential tester generates, as a small syntax tree that renders to SQL
//! and that the shrinker can take apart.

use std::fmt::{self, Display, Formatter, Write};

/// A statement: common table expressions, a body, and an optional total order with a limit.
#[derive(Debug, Clone)]
pub struct Statement {
    /// `WITH` entries, in order (each may read the ones before it).
    pub ctes: Vec<Cte>,
    /// The query.
    pub body: Query,
    /// `ORDER BY` every output column (so that ties are whole-row duplicates).
    pub order_all: bool,
    /// `LIMIT` (only with `order_all`).
    pub limit: Option<u64>,
    /// `OFFSET` (only with `order_all`).
    pub offset: Option<u64>,
}

/// One `WITH` entry.
#[derive(Debug, Clone)]
pub enum Cte {
    /// `name AS (query)`.
    Plain { name: String, query: Box<Statement> },
    /// `name(columns) AS (base UNION [ALL] step)`, where `step` reads `name`.
    Recursive {
        name: String,
        columns: Vec<String>,
        base: Box<Query>,
        step: Box<Query>,
        distinct: bool,
    },
}

/// A query: a select, or a set operation of two.
#[derive(Debug, Clone)]
pub enum Query {
    Select(Box<Select>),
    SetOp {
        op: &'static str,
        all: bool,
        left: Box<Query>,
        right: Box<Query>,
    },
}

/// `SELECT [DISTINCT] items FROM from WHERE … GROUP BY … HAVING …`; item `i` is named `c{i}`.
#[derive(Debug, Clone)]
pub struct Select {
    pub distinct: bool,
    pub items: Vec<Expr>,
    pub from: From,
    pub filter: Vec<Expr>,
    pub group_by: Option<GroupBy>,
    pub having: Vec<Expr>,
}

/// The grouping of a select.
#[derive(Debug, Clone)]
pub enum GroupBy {
    Plain(Vec<Expr>),
    Sets(Vec<Vec<Expr>>),
    Rollup(Vec<Expr>),
    Cube(Vec<Expr>),
}

/// A `FROM` item.
#[derive(Debug, Clone)]
pub enum From {
    Table {
        name: String,
        alias: String,
    },
    Derived {
        query: Box<Statement>,
        alias: String,
    },
    Join {
        kind: &'static str,
        left: Box<From>,
        right: Box<From>,
        on: Vec<Expr>,
    },
}

/// One `ORDER BY` term of a window.
#[derive(Debug, Clone)]
pub struct OrderTerm {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_first: bool,
    /// Part of the key that makes the order total (the shrinker keeps it: without it the
    /// query could have several right answers).
    pub key: bool,
}

/// A window function call.
#[derive(Debug, Clone)]
pub struct Window {
    pub function: String,
    pub distinct: bool,
    pub args: Vec<Expr>,
    pub ignore_nulls: bool,
    pub filter: Option<Box<Expr>>,
    pub partition_by: Vec<Expr>,
    pub order_by: Vec<OrderTerm>,
    pub frame: Option<String>,
}

/// An expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Column(String),
    Literal(String),
    Binary(Box<Expr>, &'static str, Box<Expr>),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    IsNull(Box<Expr>, bool),
    Call(&'static str, Vec<Expr>),
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
    Cast(Box<Expr>, &'static str),
    InList(Box<Expr>, Vec<Expr>, bool),
    /// An aggregate; no arguments means `*`.
    Aggregate {
        function: &'static str,
        distinct: bool,
        args: Vec<Expr>,
        filter: Option<Box<Expr>>,
    },
    Window(Box<Window>),
    Scalar(Box<Statement>),
    InQuery(Box<Expr>, Box<Statement>, bool),
    Exists(Box<Statement>, bool),
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if !self.ctes.is_empty() {
            let recursive = self.ctes.iter().any(|c| matches!(c, Cte::Recursive { .. }));
            f.write_str(if recursive {
                "WITH RECURSIVE "
            } else {
                "WITH "
            })?;
            for (i, cte) in self.ctes.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                match cte {
                    Cte::Plain { name, query } => write!(f, "{name} AS ({query})")?,
                    Cte::Recursive {
                        name,
                        columns,
                        base,
                        step,
                        distinct,
                    } => write!(
                        f,
                        "{name}({}) AS ({base} UNION {}{step})",
                        columns.join(", "),
                        if *distinct { "" } else { "ALL " }
                    )?,
                }
            }
            f.write_char(' ')?;
        }
        write!(f, "{}", self.body)?;
        if self.order_all {
            let n = self.body.width();
            let ordinals: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
            write!(f, " ORDER BY {}", ordinals.join(", "))?;
            if let Some(limit) = self.limit {
                write!(f, " LIMIT {limit}")?;
            }
            if let Some(offset) = self.offset {
                write!(f, " OFFSET {offset}")?;
            }
        }
        Ok(())
    }
}

impl Query {
    /// The number of output columns.
    pub fn width(&self) -> usize {
        match self {
            Query::Select(s) => s.items.len(),
            Query::SetOp { left, .. } => left.width(),
        }
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Query::Select(s) => write!(f, "{s}"),
            Query::SetOp {
                op,
                all,
                left,
                right,
            } => {
                let side = |q: &Query| match q {
                    Query::Select(_) => format!("{q}"),
                    Query::SetOp { .. } => format!("({q})"),
                };
                write!(
                    f,
                    "{} {op}{} {}",
                    side(left),
                    if *all { " ALL" } else { "" },
                    side(right)
                )
            }
        }
    }
}

fn list(items: &[Expr]) -> String {
    items
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Display for Select {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if self.distinct {
            f.write_str("DISTINCT ")?;
        }
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item} AS c{i}")?;
        }
        write!(f, " FROM {}", self.from)?;
        if !self.filter.is_empty() {
            write!(f, " WHERE {}", conjunction(&self.filter))?;
        }
        if let Some(group_by) = &self.group_by {
            f.write_str(" GROUP BY ")?;
            match group_by {
                GroupBy::Plain(keys) => f.write_str(&list(keys))?,
                GroupBy::Rollup(keys) => write!(f, "ROLLUP ({})", list(keys))?,
                GroupBy::Cube(keys) => write!(f, "CUBE ({})", list(keys))?,
                GroupBy::Sets(sets) => {
                    let sets: Vec<String> = sets.iter().map(|s| format!("({})", list(s))).collect();
                    write!(f, "GROUPING SETS ({})", sets.join(", "))?
                }
            }
        }
        if !self.having.is_empty() {
            write!(f, " HAVING {}", conjunction(&self.having))?;
        }
        Ok(())
    }
}

fn conjunction(terms: &[Expr]) -> String {
    terms
        .iter()
        .map(|t| format!("({t})"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl Display for From {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            From::Table { name, alias } => write!(f, "{name} AS {alias}"),
            From::Derived { query, alias } => write!(f, "({query}) AS {alias}"),
            From::Join {
                kind,
                left,
                right,
                on,
            } => {
                write!(f, "{left} {kind} JOIN {right}")?;
                if !on.is_empty() {
                    write!(f, " ON {}", conjunction(on))?;
                }
                Ok(())
            }
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(c) => f.write_str(c),
            Expr::Literal(l) => f.write_str(l),
            Expr::Binary(l, op, r) => write!(f, "({l} {op} {r})"),
            Expr::Not(e) => write!(f, "(NOT {e})"),
            Expr::Negate(e) => write!(f, "(- {e})"),
            Expr::IsNull(e, negated) => {
                write!(f, "({e} IS {}NULL)", if *negated { "NOT " } else { "" })
            }
            Expr::Call(name, args) => write!(f, "{name}({})", list(args)),
            Expr::Case(branches, otherwise) => {
                f.write_str("CASE")?;
                for (when, then) in branches {
                    write!(f, " WHEN {when} THEN {then}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::Cast(e, ty) => write!(f, "CAST({e} AS {ty})"),
            Expr::InList(e, items, negated) => write!(
                f,
                "({e} {}IN ({}))",
                if *negated { "NOT " } else { "" },
                list(items)
            ),
            Expr::Aggregate {
                function,
                distinct,
                args,
                filter,
            } => {
                let args = if args.is_empty() {
                    "*".to_string()
                } else {
                    list(args)
                };
                write!(
                    f,
                    "{function}({}{args})",
                    if *distinct { "DISTINCT " } else { "" }
                )?;
                if let Some(filter) = filter {
                    write!(f, " FILTER (WHERE {filter})")?;
                }
                Ok(())
            }
            Expr::Window(w) => write!(f, "{w}"),
            Expr::Scalar(q) => write!(f, "({q})"),
            Expr::InQuery(e, q, negated) => {
                write!(f, "({e} {}IN ({q}))", if *negated { "NOT " } else { "" })
            }
            Expr::Exists(q, negated) => {
                write!(f, "({}EXISTS ({q}))", if *negated { "NOT " } else { "" })
            }
        }
    }
}

impl Display for Window {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let args = if self.args.is_empty() && self.function == "count" {
            "*".to_string()
        } else {
            list(&self.args)
        };
        write!(
            f,
            "{}({}{args})",
            self.function,
            if self.distinct { "DISTINCT " } else { "" }
        )?;
        if self.ignore_nulls {
            f.write_str(" IGNORE NULLS")?;
        }
        if let Some(filter) = &self.filter {
            write!(f, " FILTER (WHERE {filter})")?;
        }
        f.write_str(" OVER (")?;
        let mut parts = Vec::new();
        if !self.partition_by.is_empty() {
            parts.push(format!("PARTITION BY {}", list(&self.partition_by)));
        }
        if !self.order_by.is_empty() {
            let terms: Vec<String> = self
                .order_by
                .iter()
                .map(|t| {
                    format!(
                        "{} {} NULLS {}",
                        t.expr,
                        if t.descending { "DESC" } else { "ASC" },
                        if t.nulls_first { "FIRST" } else { "LAST" }
                    )
                })
                .collect();
            parts.push(format!("ORDER BY {}", terms.join(", ")));
        }
        if let Some(frame) = &self.frame {
            parts.push(frame.clone());
        }
        write!(f, "{})", parts.join(" "))
    }
}
