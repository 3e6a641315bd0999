//! Event-time watermarks of a streaming query, with Spark's rules:
//!
//! * each `with_watermark(column, delay)` of the query tracks the largest event time it has
//!   seen in any batch; its watermark is that minus its delay;
//! * the query's watermark is the minimum over those that have seen data (Spark's default
//!   multiple-watermark policy, `min`) or the maximum (`max`), never moves back, and is 0 until
//!   one has seen data;
//! * it is computed when a batch ends and applies from the next batch (it is recorded in that
//!   batch's offsets entry, so a re-run batch uses the same one);
//! * a stateful operator treats a row as late when its event time is at or before the
//!   watermark, and a window as complete when its end is at or before it.
//!
//! Times are microseconds since the Unix epoch (the engine's timestamps); the checkpoint records
//! milliseconds, as Spark's does.

use std::time::Duration;

/// How the query's watermark is chosen from several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkPolicy {
    /// The slowest stream sets it (no stream's rows are late because another is ahead).
    Min,
    /// The fastest stream sets it (late rows of slower streams are dropped).
    Max,
}

impl WatermarkPolicy {
    /// `min` or `max` (Spark's `spark.sql.streaming.multipleWatermarkPolicy` values).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "min" => Ok(WatermarkPolicy::Min),
            "max" => Ok(WatermarkPolicy::Max),
            other => Err(format!(
                "the multiple-watermark policy is '{other}'; expected min or max"
            )),
        }
    }
}

/// The watermarks of one query.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    delays_micros: Vec<i64>,
    /// The largest event time each watermark has seen, if any.
    max_seen: Vec<Option<i64>>,
    policy: WatermarkPolicy,
    current: i64,
}

impl WatermarkTracker {
    /// A tracker for watermarks with these delays, starting at `current` (0 for a new query; the
    /// last commit's `nextBatchWatermarkMs` × 1000 for a resumed one).
    pub fn new(delays: &[Duration], policy: WatermarkPolicy, current: i64) -> Self {
        WatermarkTracker {
            delays_micros: delays
                .iter()
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
                .collect(),
            max_seen: vec![None; delays.len()],
            policy,
            current,
        }
    }

    /// The watermark the running batch uses.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// A batch ended; `max_event_times[i]` is the largest event time watermark `i` saw in it
    /// (`None`: no row). Returns the watermark of the next batch.
    pub fn batch_ended(&mut self, max_event_times: &[Option<i64>]) -> i64 {
        for (seen, batch) in self.max_seen.iter_mut().zip(max_event_times) {
            if let Some(t) = batch {
                *seen = Some(seen.map_or(*t, |s| s.max(*t)));
            }
        }
        let candidates = self
            .max_seen
            .iter()
            .zip(&self.delays_micros)
            .filter_map(|(seen, delay)| seen.map(|s| s.saturating_sub(*delay)));
        let chosen = match self.policy {
            WatermarkPolicy::Min => candidates.min(),
            WatermarkPolicy::Max => candidates.max(),
        };
        if let Some(w) = chosen {
            self.current = self.current.max(w);
        }
        self.current
    }
}

impl WatermarkTracker {
    /// Rounds the current watermark down to whole milliseconds, the checkpoint's unit, so that
    /// a batch runs with exactly the watermark its offsets entry records.
    pub fn floor_to_millis(&mut self) {
        self.current = self.current.div_euclid(1000) * 1000;
    }
}

/// Whether a row with event time `event_time` is late for a stateful operator.
pub fn is_late(event_time: i64, watermark: i64) -> bool {
    event_time <= watermark
}

/// Whether a window ending at `end` (exclusive) is complete: append mode emits it, and its
/// state can be evicted.
pub fn window_is_complete(end: i64, watermark: i64) -> bool {
    end <= watermark
}

/// Whether the query runs a batch without new data: it has stateful operators keyed by event
/// time, and the watermark moved past the one the last batch ran with (so a window may be
/// emitted or state evicted).
pub fn needs_no_data_batch(has_event_time_state: bool, next: i64, last_run: i64) -> bool {
    has_event_time_state && next > last_run
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn the_watermark_follows_the_slowest_stream_and_never_moves_back() {
        let delays = [Duration::from_secs(10), Duration::from_secs(5)];
        let mut t = WatermarkTracker::new(&delays, WatermarkPolicy::Min, 0);
        // Only the first has seen data: it alone sets the watermark.
        assert_eq!(t.batch_ended(&[Some(100 * S), None]), 90 * S);
        // The second is behind: the minimum wins.
        assert_eq!(t.batch_ended(&[Some(120 * S), Some(50 * S)]), 90 * S);
        assert_eq!(t.batch_ended(&[None, Some(130 * S)]), 110 * S);
        // Older events do not move it back.
        assert_eq!(t.batch_ended(&[Some(1), Some(1)]), 110 * S);
        assert_eq!(t.current(), 110 * S);
        let mut t = WatermarkTracker::new(&delays, WatermarkPolicy::Max, 0);
        assert_eq!(t.batch_ended(&[Some(120 * S), Some(50 * S)]), 110 * S);
        // A resumed query starts at its recorded watermark.
        let mut t = WatermarkTracker::new(&delays[..1], WatermarkPolicy::Min, 500 * S);
        assert_eq!(t.batch_ended(&[Some(100 * S)]), 500 * S);
        assert_eq!(WatermarkPolicy::parse("MAX"), Ok(WatermarkPolicy::Max));
        assert!(
            WatermarkPolicy::parse("avg")
                .unwrap_err()
                .contains("min or max")
        );
    }

    #[test]
    fn lateness_completion_and_no_data_batches() {
        assert!(is_late(90 * S, 90 * S));
        assert!(!is_late(90 * S + 1, 90 * S));
        assert!(window_is_complete(90 * S, 90 * S));
        assert!(!window_is_complete(100 * S, 90 * S));
        assert!(needs_no_data_batch(true, 2, 1));
        assert!(!needs_no_data_batch(true, 1, 1));
        assert!(!needs_no_data_batch(false, 2, 1));
    }
}
