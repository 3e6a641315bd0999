//! The `rate` streaming source's arithmetic (issue 19, being built), as Spark's: rows
//! `(timestamp, value)` with `value` counting from 0 at `rowsPerSecond`, reached after a linear
//! ramp over `rampUpTime`; each micro-batch covers whole seconds since the query started, and
//! its rows' timestamps are spread evenly over those seconds.
//!
//! A batch's offsets are seconds since the source started (`[start, end)`); its values are
//! `[value_at_second(start), value_at_second(end))`, dealt round-robin over `numPartitions`.

use std::time::Duration;

use faisca_common::{Error, Result};

/// The rate source's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateOptions {
    /// Rows per second once ramped up (Spark's `rowsPerSecond`, default 1).
    pub rows_per_second: u64,
    /// Seconds to reach that speed (Spark's `rampUpTime`, default 0).
    pub ramp_up_seconds: u64,
    /// Partitions of each batch (Spark's `numPartitions`; default the cluster's cores).
    pub num_partitions: u32,
}

impl RateOptions {
    /// Options from `(name, value)` pairs (names in any case); `default_partitions` when
    /// `numPartitions` is not given.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        default_partitions: u32,
    ) -> Result<RateOptions> {
        let mut options = RateOptions {
            rows_per_second: 1,
            ramp_up_seconds: 0,
            num_partitions: default_partitions.max(1),
        };
        for (name, value) in pairs {
            let positive = || match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(Error::user(format!(
                    "rate source option '{name}' is '{value}': expected a positive whole number"
                ))),
            };
            match name.to_ascii_lowercase().as_str() {
                "rowspersecond" => options.rows_per_second = positive()?,
                "numpartitions" => {
                    options.num_partitions = u32::try_from(positive()?).map_err(|_| {
                        Error::user(format!(
                            "rate source option 'numPartitions' is '{value}': too large"
                        ))
                    })?
                }
                "rampuptime" => {
                    let ramp: Duration =
                        faisca_common::config::parse_duration(value).map_err(|_| {
                            Error::user(format!(
                                "rate source option 'rampUpTime' is '{value}': expected a duration such as 5s or 1m"
                            ))
                        })?;
                    if ramp.subsec_nanos() != 0 {
                        return Err(Error::user(format!(
                            "rate source option 'rampUpTime' is '{value}': expected whole seconds"
                        )));
                    }
                    options.ramp_up_seconds = ramp.as_secs();
                }
                _ => {
                    return Err(Error::user(format!(
                        "unknown rate source option '{name}': expected rowsPerSecond, rampUpTime or numPartitions"
                    )));
                }
            }
        }
        if options.ramp_up_seconds > 0
            && options.rows_per_second / (options.ramp_up_seconds + 1) == 0
        {
            return Err(Error::user(format!(
                "rate source: rowsPerSecond {} is too low to ramp up over {} s (it must be at least rampUpTime + 1)",
                options.rows_per_second, options.ramp_up_seconds
            )));
        }
        Ok(options)
    }

    /// The first value not produced by `seconds` seconds after the start.
    pub fn value_at_second(&self, seconds: u64) -> u64 {
        let ramp = self.ramp_up_seconds;
        let delta = self.rows_per_second / (ramp + 1);
        if seconds <= ramp {
            // (delta × seconds) × (seconds + 1) / 2, halved where it divides evenly.
            if seconds.is_multiple_of(2) {
                seconds / 2 * delta * (seconds + 1)
            } else {
                seconds.div_ceil(2) * delta * seconds
            }
        } else {
            self.value_at_second(ramp) + (seconds - ramp) * self.rows_per_second
        }
    }

    /// The batch covering seconds `[start, end)` of a source that started at `started_ms`.
    pub fn batch(&self, start: u64, end: u64, started_ms: i64) -> RateBatch {
        let (first, last) = (self.value_at_second(start), self.value_at_second(end));
        RateBatch {
            values: first..last,
            start_ms: started_ms + (start as i64) * 1000,
            ms_per_value: if last > first {
                (end - start) as f64 * 1000.0 / (last - first) as f64
            } else {
                0.0
            },
            partitions: self.num_partitions,
        }
    }
}

/// One batch of the rate source.
#[derive(Debug, Clone, PartialEq)]
pub struct RateBatch {
    /// Its values, `[start, end)`.
    pub values: std::ops::Range<u64>,
    /// The time of its first value (ms since the epoch).
    pub start_ms: i64,
    /// Milliseconds between consecutive values.
    pub ms_per_value: f64,
    /// Partitions the values are dealt over.
    pub partitions: u32,
}

impl RateBatch {
    /// The timestamp (ms since the epoch) of `value`.
    pub fn timestamp_ms(&self, value: u64) -> i64 {
        self.start_ms + ((value - self.values.start) as f64 * self.ms_per_value).round() as i64
    }

    /// The values of partition `partition`: every `partitions`-th from `start + partition`.
    pub fn partition_values(&self, partition: u32) -> impl Iterator<Item = u64> + '_ {
        (self.values.start + partition as u64..self.values.end).step_by(self.partitions as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Result<RateOptions> {
        RateOptions::parse(pairs.iter().copied(), 2)
    }

    #[test]
    fn values_ramp_up_then_run_at_the_rate() {
        // Spark's own example: 10 rows per second reached over 4 seconds.
        let o = options(&[("rowsPerSecond", "10"), ("rampUpTime", "4s")]).unwrap();
        let ends: Vec<u64> = (0..=6).map(|s| o.value_at_second(s)).collect();
        assert_eq!(ends, [0, 2, 6, 12, 20, 30, 40]);
        let steady = options(&[("rowsPerSecond", "1000")]).unwrap();
        assert_eq!(steady.value_at_second(3), 3000);
        assert_eq!(steady.num_partitions, 2);
    }

    #[test]
    fn a_batch_spreads_its_values_over_its_seconds_and_partitions() {
        let o = options(&[("rowsPerSecond", "4"), ("numPartitions", "3")]).unwrap();
        let b = o.batch(2, 4, 1_000_000);
        assert_eq!(b.values, 8..16);
        assert_eq!(b.start_ms, 1_002_000);
        assert_eq!(b.timestamp_ms(8), 1_002_000);
        assert_eq!(b.timestamp_ms(10), 1_002_500);
        assert_eq!(b.timestamp_ms(15), 1_003_750);
        let dealt: Vec<Vec<u64>> = (0..3).map(|p| b.partition_values(p).collect()).collect();
        assert_eq!(dealt, [vec![8, 11, 14], vec![9, 12, 15], vec![10, 13]]);
        let empty = o.batch(4, 4, 0);
        assert!(empty.values.is_empty() && empty.ms_per_value == 0.0);
    }

    #[test]
    fn bad_options_are_named() {
        for (pairs, expected) in [
            (vec![("rowsPerSecond", "0")], "'rowsPerSecond' is '0'"),
            (vec![("rampUpTime", "soon")], "'rampUpTime' is 'soon'"),
            (vec![("rampUpTime", "1500ms")], "whole seconds"),
            (
                vec![("rowsPerSecond", "2"), ("rampUpTime", "5s")],
                "too low to ramp up",
            ),
            (vec![("rows", "2")], "unknown rate source option 'rows'"),
        ] {
            let e = options(&pairs).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }
}
