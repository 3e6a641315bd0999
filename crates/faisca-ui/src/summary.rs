//! Quantiles of a stage's successful task attempts: Spark's summary metrics (the stage page's
//! min / 25th / median / 75th / max table and the REST `taskSummary`).

use crate::store::StageView;

/// Quantiles of each metric over a stage's successful attempts, one value per quantile asked;
/// empty when no attempt succeeded (or none is kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSummary {
    /// Run time, in milliseconds.
    pub duration_ms: Vec<f64>,
    /// Rows written.
    pub rows_written: Vec<f64>,
    /// Bytes written.
    pub bytes_written: Vec<f64>,
    /// Shuffle bytes fetched.
    pub bytes_fetched: Vec<f64>,
    /// Time spent waiting for shuffle fetches, in milliseconds.
    pub fetch_wait_ms: Vec<f64>,
}

/// The `quantiles` of `values` as Spark picks them: the value at `min(q·n, n−1)` of the sorted
/// values.
pub fn quantiles(mut values: Vec<f64>, quantiles: &[f64]) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    quantiles
        .iter()
        .map(|q| values[((q.clamp(0.0, 1.0) * n as f64) as usize).min(n - 1)])
        .collect()
}

impl TaskSummary {
    /// The summary of `stage` at `qs`.
    pub fn of(stage: &StageView, qs: &[f64]) -> Self {
        let ended: Vec<_> = stage
            .attempts
            .values()
            .filter_map(|t| t.end.as_ref())
            .filter(|e| e.outcome == crate::events::TaskOutcome::Success)
            .collect();
        let metric = |name: &str| -> Vec<f64> {
            ended
                .iter()
                .map(|e| e.metrics.get(name).copied().unwrap_or(0) as f64)
                .collect()
        };
        TaskSummary {
            duration_ms: quantiles(ended.iter().map(|e| e.duration_ms).collect(), qs),
            rows_written: quantiles(ended.iter().map(|e| e.rows_written as f64).collect(), qs),
            bytes_written: quantiles(ended.iter().map(|e| e.bytes_written as f64).collect(), qs),
            bytes_fetched: quantiles(metric("shuffle.bytesFetched"), qs),
            fetch_wait_ms: quantiles(
                metric("shuffle.fetchWaitMicros")
                    .into_iter()
                    .map(|us| us / 1000.0)
                    .collect(),
                qs,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quantiles;

    #[test]
    fn quantiles_pick_values_as_spark_does() {
        let values = (1..=10).map(f64::from).collect();
        assert_eq!(
            quantiles(values, &[0.0, 0.25, 0.5, 0.75, 1.0]),
            vec![1.0, 3.0, 6.0, 8.0, 10.0]
        );
        assert!(quantiles(Vec::new(), &[0.5]).is_empty());
        assert_eq!(quantiles(vec![7.0], &[0.0, 1.0]), vec![7.0, 7.0]);
    }
}
