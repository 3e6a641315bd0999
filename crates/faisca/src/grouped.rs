//! `group_by(..)` results: [`GroupedData`], aggregated with `agg` or a shortcut.

use datafusion::dataframe::DataFrame as DfDataFrame;
use datafusion::functions_aggregate::expr_fn;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{col, lit};
use faisca_common::Result;

use crate::DataFrame;

/// A DataFrame grouped by some expressions, waiting for its aggregates.
#[derive(Debug, Clone)]
pub struct GroupedData {
    df: DataFrame,
    keys: Vec<Expr>,
}

impl GroupedData {
    pub(crate) fn new(df: DataFrame, keys: Vec<Expr>) -> Self {
        GroupedData { df, keys }
    }

    /// One row per group: the keys, then `aggregates` (e.g. `sum(col("v")).alias("total")`).
    pub fn agg(&self, aggregates: Vec<Expr>) -> Result<DataFrame> {
        let df = DfDataFrame::new(
            self.df.session().planner_state(),
            self.df.logical_plan().clone(),
        );
        let plan = df
            .aggregate(self.keys.clone(), aggregates)?
            .into_unoptimized_plan();
        Ok(DataFrame::from_plan(self.df.session().clone(), plan))
    }

    /// Rows per group, as column `count`.
    pub fn count(&self) -> Result<DataFrame> {
        self.agg(vec![expr_fn::count(lit(1)).alias("count")])
    }

    fn each(&self, columns: &[&str], f: fn(Expr) -> Expr, name: &str) -> Result<DataFrame> {
        self.agg(
            columns
                .iter()
                .map(|c| f(col(*c)).alias(format!("{name}({c})")))
                .collect(),
        )
    }

    /// Sum of each column, as `sum(c)`.
    pub fn sum(&self, columns: &[&str]) -> Result<DataFrame> {
        self.each(columns, expr_fn::sum, "sum")
    }

    /// Mean of each column, as `avg(c)`.
    pub fn avg(&self, columns: &[&str]) -> Result<DataFrame> {
        self.each(columns, expr_fn::avg, "avg")
    }

    /// Minimum of each column, as `min(c)`.
    pub fn min(&self, columns: &[&str]) -> Result<DataFrame> {
        self.each(columns, expr_fn::min, "min")
    }

    /// Maximum of each column, as `max(c)`.
    pub fn max(&self, columns: &[&str]) -> Result<DataFrame> {
        self.each(columns, expr_fn::max, "max")
    }
}
