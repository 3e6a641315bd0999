//! What DataFrame methods accept where Spark accepts column names or `Column`s.

use datafusion::dataframe::DataFrame as DfDataFrame;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::prelude::col;
use faisca_common::{Error, Result};

/// Column names or expressions: `["a", "b"]`, `vec!["a".to_string()]`, `vec![col("a"), lit(1)]`.
/// A name may be qualified (`"t.a"`).
pub trait IntoColumns {
    /// The expressions.
    fn into_exprs(self) -> Result<Vec<Expr>>;
}

impl IntoColumns for Vec<Expr> {
    fn into_exprs(self) -> Result<Vec<Expr>> {
        Ok(self)
    }
}

impl<const N: usize> IntoColumns for [Expr; N] {
    fn into_exprs(self) -> Result<Vec<Expr>> {
        Ok(self.into())
    }
}

impl IntoColumns for Expr {
    fn into_exprs(self) -> Result<Vec<Expr>> {
        Ok(vec![self])
    }
}

impl IntoColumns for &[&str] {
    fn into_exprs(self) -> Result<Vec<Expr>> {
        Ok(self.iter().map(|c| col(*c)).collect())
    }
}

impl<const N: usize> IntoColumns for [&str; N] {
    fn into_exprs(self) -> Result<Vec<Expr>> {
        Ok(self.iter().map(|c| col(*c)).collect())
    }
}

impl IntoColumns for Vec<&str> {
    fn into_exprs(self) -> Result<Vec<Expr>> {
        Ok(self.iter().map(|c| col(*c)).collect())
    }
}

impl IntoColumns for Vec<String> {
    fn into_exprs(self) -> Result<Vec<Expr>> {
        Ok(self.iter().map(|c| col(c.as_str())).collect())
    }
}

/// A filter condition: an expression, or SQL text parsed against the DataFrame's columns.
pub trait IntoCondition {
    /// The condition.
    fn into_condition(self, df: &DfDataFrame) -> Result<Expr>;
}

impl IntoCondition for Expr {
    fn into_condition(self, _df: &DfDataFrame) -> Result<Expr> {
        Ok(self)
    }
}

impl IntoCondition for &str {
    fn into_condition(self, df: &DfDataFrame) -> Result<Expr> {
        df.parse_sql_expr(self)
            .map_err(|e| Error::from(e).context(format!("condition '{self}'")))
    }
}

/// Sort keys: column names (ascending), expressions (ascending), or [`SortExpr`]s made with
/// [`crate::functions::asc`] / [`crate::functions::desc`].
pub trait IntoSorts {
    /// The sort keys.
    fn into_sorts(self) -> Result<Vec<SortExpr>>;
}

impl IntoSorts for Vec<SortExpr> {
    fn into_sorts(self) -> Result<Vec<SortExpr>> {
        Ok(self)
    }
}

impl IntoSorts for Vec<Expr> {
    fn into_sorts(self) -> Result<Vec<SortExpr>> {
        Ok(self.into_iter().map(|e| e.sort(true, false)).collect())
    }
}

impl<const N: usize> IntoSorts for [&str; N] {
    fn into_sorts(self) -> Result<Vec<SortExpr>> {
        Ok(self.iter().map(|c| col(*c).sort(true, false)).collect())
    }
}

impl IntoSorts for &[&str] {
    fn into_sorts(self) -> Result<Vec<SortExpr>> {
        Ok(self.iter().map(|c| col(*c).sort(true, false)).collect())
    }
}

/// Parse one `select_expr` item: a SQL expression with an optional `AS name`.
pub(crate) fn parse_aliased(df: &DfDataFrame, text: &str) -> Result<Expr> {
    let (expr_text, alias) = split_alias(text);
    let expr = df
        .parse_sql_expr(expr_text)
        .map_err(|e| Error::from(e).context(format!("expression '{text}'")))?;
    Ok(match alias {
        Some(name) => expr.alias(name),
        None => expr,
    })
}

/// `"a + 1 AS b"` → `("a + 1", Some("b"))`; the alias is a plain or double-quoted identifier
/// after the last top-level `AS`.
fn split_alias(text: &str) -> (&str, Option<String>) {
    let lower = text.to_ascii_lowercase();
    let Some(at) = lower.rfind(" as ") else {
        return (text.trim(), None);
    };
    let (head, tail) = (&text[..at], text[at + 4..].trim());
    let plain = !tail.is_empty() && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let quoted = tail.len() >= 2 && tail.starts_with('"') && tail.ends_with('"');
    // `CAST(x AS INT)`: the AS is inside parentheses.
    let depth = head.chars().filter(|&c| c == '(').count() as i64
        - head.chars().filter(|&c| c == ')').count() as i64;
    if depth != 0 || !(plain || quoted) {
        return (text.trim(), None);
    }
    let name = if quoted {
        tail[1..tail.len() - 1].to_string()
    } else {
        tail.to_string()
    };
    (head.trim(), Some(name))
}

#[cfg(test)]
mod tests {
    use super::split_alias;

    #[test]
    fn aliases() {
        assert_eq!(split_alias("a + 1 AS b"), ("a + 1", Some("b".into())));
        assert_eq!(
            split_alias("upper(c) as \"Up C\""),
            ("upper(c)", Some("Up C".into()))
        );
        assert_eq!(split_alias("CAST(x AS INT)"), ("CAST(x AS INT)", None));
        assert_eq!(split_alias("a"), ("a", None));
    }
}
