//! Random tables for the differential tester: a few columns of every kind, small domains (so
//! joins match and groups repeat), one hot value per column (skew), nulls, NaN, infinities,
//! signed zeros, empty strings, and sometimes no rows at all. Most tables are Parquet files (one
//! to three, so scans have several tasks); one lives in the driver's memory.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array,
    StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

/// A small, fast, reproducible random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A copy of one of `items` (not empty).
    pub fn pick_copy<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The kind of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    BigInt,
    Double,
    Decimal,
    Date,
    Text,
    Bool,
}

/// Which kinds compare with which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Number,
    Date,
    Text,
    Bool,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::Int,
        Kind::BigInt,
        Kind::Double,
        Kind::Decimal,
        Kind::Date,
        Kind::Text,
        Kind::Bool,
    ];

    /// The SQL type.
    pub fn sql(self) -> &'static str {
        match self {
            Kind::Int => "INT",
            Kind::BigInt => "BIGINT",
            Kind::Double => "DOUBLE",
            Kind::Decimal => "DECIMAL(12, 2)",
            Kind::Date => "DATE",
            Kind::Text => "VARCHAR",
            Kind::Bool => "BOOLEAN",
        }
    }

    /// Whether values of the two kinds compare without a cast that can fail: doubles and
    /// decimals compare as decimals, and infinities and NaN have no decimal.
    pub fn compares_with(self, other: Kind) -> bool {
        self.class() == other.class()
            && !matches!(
                (self, other),
                (Kind::Double, Kind::Decimal) | (Kind::Decimal, Kind::Double)
            )
    }

    /// Its class.
    pub fn class(self) -> Class {
        match self {
            Kind::Int | Kind::BigInt | Kind::Double | Kind::Decimal => Class::Number,
            Kind::Date => Class::Date,
            Kind::Text => Class::Text,
            Kind::Bool => Class::Bool,
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Kind::Int => DataType::Int32,
            Kind::BigInt => DataType::Int64,
            Kind::Double => DataType::Float64,
            Kind::Decimal => DataType::Decimal128(12, 2),
            Kind::Date => DataType::Date32,
            Kind::Text => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
        }
    }
}

/// A value of a column.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Double(f64),
    /// Hundredths.
    Decimal(i128),
    /// Days since the epoch.
    Date(i32),
    Text(&'static str),
    Bool(bool),
}

const DOUBLES: &[f64] = &[
    0.0,
    -0.0,
    1.5,
    -2.25,
    3.0,
    0.125,
    1e10,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
];
const TEXTS: &[&str] = &["", "a", "b", "ab", "B", "z z", "ä"];
const DECIMALS: &[i128] = &[0, 125, -350, 9999, 123456, 1];
/// 2024-01-01.
const DAY0: i32 = 19723;

fn random_value(kind: Kind, rng: &mut Rng) -> Value {
    match kind {
        Kind::Int => Value::Int(rng.below(12) as i64 - 3),
        Kind::BigInt => {
            if rng.chance(0.1) {
                Value::Int(*rng.pick(&[1_000_000_000_000, -7_000_000_000]))
            } else {
                Value::Int(rng.below(20) as i64 - 5)
            }
        }
        Kind::Double => Value::Double(*rng.pick(DOUBLES)),
        Kind::Decimal => Value::Decimal(*rng.pick(DECIMALS)),
        Kind::Date => Value::Date(DAY0 + rng.below(10) as i32 - 3),
        Kind::Text => Value::Text(rng.pick_copy(TEXTS)),
        Kind::Bool => Value::Bool(rng.chance(0.5)),
    }
}

/// A generated table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// Its columns after `id` (a unique, non-null BIGINT).
    pub columns: Vec<(String, Kind)>,
    /// How many rows it has.
    pub rows: usize,
}

/// A generated set of tables and the statements that create them in an engine.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub tables: Vec<Table>,
    pub ddl: Vec<String>,
}

/// Generate `count` tables (the last one in memory, the others as Parquet files under `dir`).
pub fn generate(rng: &mut Rng, dir: &Path, count: usize) -> Dataset {
    let mut tables = Vec::new();
    let mut ddl = Vec::new();
    for t in 0..count {
        let name = format!("t{t}");
        let width = 3 + rng.below(3);
        let columns: Vec<(String, Kind)> = (0..width)
            .map(|i| (format!("v{i}"), *rng.pick(&Kind::ALL)))
            .collect();
        let rows = *rng.pick(&[0, 1, 4, 12, 30, 60, 60, 120]);
        // Each column: a null rate, a hot value and the values.
        let values: Vec<Vec<Option<Value>>> = columns
            .iter()
            .map(|(_, kind)| {
                let null_rate = *rng.pick(&[0.0, 0.1, 0.3, 0.9]);
                let hot = random_value(*kind, rng);
                (0..rows)
                    .map(|_| {
                        if rng.chance(null_rate) {
                            None
                        } else if rng.chance(0.3) {
                            Some(hot.clone())
                        } else {
                            Some(random_value(*kind, rng))
                        }
                    })
                    .collect()
            })
            .collect();
        let in_memory = t + 1 == count;
        if in_memory {
            ddl.push(memory_table_sql(&name, &columns, &values, rows));
        } else {
            let table_dir = dir.join(&name);
            std::fs::create_dir_all(&table_dir).expect("creating a table directory");
            let files = 1 + rng.below(3);
            write_parquet(&table_dir, &columns, &values, rows, files);
            ddl.push(format!(
                "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/'",
                table_dir.display()
            ));
        }
        tables.push(Table {
            name,
            columns,
            rows,
        });
    }
    Dataset { tables, ddl }
}

fn schema(columns: &[(String, Kind)]) -> Arc<Schema> {
    let mut fields = vec![Field::new("id", DataType::Int64, false)];
    fields.extend(
        columns
            .iter()
            .map(|(name, kind)| Field::new(name, kind.arrow(), true)),
    );
    Arc::new(Schema::new(fields))
}

fn array(kind: Kind, values: &[Option<Value>]) -> ArrayRef {
    let ints = || {
        values.iter().map(|v| match v {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        })
    };
    match kind {
        Kind::Int => Arc::new(ints().map(|v| v.map(|i| i as i32)).collect::<Int32Array>()),
        Kind::BigInt => Arc::new(ints().collect::<Int64Array>()),
        Kind::Double => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Double(d)) => Some(*d),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        Kind::Decimal => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Decimal(d)) => Some(*d),
                    _ => None,
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(12, 2)
                .expect("valid decimal"),
        ),
        Kind::Date => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Date(d)) => Some(*d),
                    _ => None,
                })
                .collect::<Date32Array>(),
        ),
        Kind::Text => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Text(s)) => Some(*s),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        Kind::Bool => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Bool(b)) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
    }
}

fn write_parquet(
    dir: &Path,
    columns: &[(String, Kind)],
    values: &[Vec<Option<Value>>],
    rows: usize,
    files: usize,
) {
    let schema = schema(columns);
    let per_file = rows.div_ceil(files).max(1);
    let mut start = 0;
    for f in 0..files {
        let end = (start + per_file).min(rows);
        if f > 0 && start >= end {
            break;
        }
        let mut arrays: Vec<ArrayRef> =
            vec![Arc::new((start as i64..end as i64).collect::<Int64Array>())];
        for ((_, kind), column) in columns.iter().zip(values) {
            arrays.push(array(*kind, &column[start..end]));
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays).expect("a valid batch");
        let file = std::fs::File::create(dir.join(format!("part-{f}.parquet")))
            .expect("creating a Parquet file");
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)
            .expect("a Parquet writer");
        writer.write(&batch).expect("writing Parquet");
        writer.close().expect("closing Parquet");
        start = end;
    }
}

fn literal(value: &Option<Value>) -> String {
    match value {
        None => "NULL".into(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Double(d)) if d.is_finite() && *d != 0.0 => format!("{d:?}"),
        Some(Value::Double(d)) => format!("CAST('{d}' AS DOUBLE)"),
        Some(Value::Decimal(d)) => format!(
            "CAST('{}{}.{:02}' AS DECIMAL(12, 2))",
            if *d < 0 { "-" } else { "" },
            d.abs() / 100,
            d.abs() % 100
        ),
        Some(Value::Date(days)) => {
            let date = chrono_free_date(*days);
            format!("DATE '{date}'")
        }
        Some(Value::Text(s)) => format!("'{}'", s.replace('\'', "''")),
        Some(Value::Bool(b)) => b.to_string(),
    }
}

/// `YYYY-MM-DD` of a day near 2024-01-01 (the only dates generated).
fn chrono_free_date(days: i32) -> String {
    let offset = days - DAY0;
    match offset {
        o if o < 0 => format!("2023-12-{:02}", 32 + o),
        o => format!("2024-01-{:02}", 1 + o),
    }
}

fn memory_table_sql(
    name: &str,
    columns: &[(String, Kind)],
    values: &[Vec<Option<Value>>],
    rows: usize,
) -> String {
    let mut definition = vec!["id BIGINT NOT NULL".to_string()];
    definition.extend(columns.iter().map(|(n, k)| format!("{n} {}", k.sql())));
    let mut sql = format!("CREATE TABLE {name} ({})", definition.join(", "));
    if rows > 0 {
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let mut row = vec![r.to_string()];
                row.extend(values.iter().map(|column| literal(&column[r])));
                format!("({})", row.join(", "))
            })
            .collect();
        sql.push_str(&format!(" AS VALUES {}", tuples.join(", ")));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_around_new_year() {
        assert_eq!(chrono_free_date(DAY0), "2024-01-01");
        assert_eq!(chrono_free_date(DAY0 - 1), "2023-12-31");
        assert_eq!(chrono_free_date(DAY0 + 6), "2024-01-07");
    }
}
