//! Property tests: random expression trees over random data give the same rows fused (compiled
//! kernels with selections) and unfused (DataFusion's expressions, then `filter_record_batch`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, IsNotNullExpr, IsNullExpr, LikeExpr, Literal, NotExpr, in_list,
};

use super::*;

/// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int32, true),
        Field::new("j", DataType::Int32, true),
        Field::new("l", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("d", DataType::Decimal128(15, 2), true),
        Field::new("e", DataType::Decimal128(15, 2), true),
        Field::new("t", DataType::Date32, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("b", DataType::Boolean, true),
    ]))
}

fn batch(rng: &mut Rng, rows: usize) -> RecordBatch {
    let nulls = rng.below(3) * 10; // 0, 10 or 20 percent nulls
    macro_rules! column {
        ($array:ty, $value:expr) => {{
            let values: Vec<_> = (0..rows)
                .map(|_| (!rng.chance(nulls)).then(|| $value(&mut *rng)))
                .collect();
            Arc::new(<$array>::from(values)) as ArrayRef
        }};
    }
    let int = |r: &mut Rng| match r.below(10) {
        0 => i32::MAX,
        1 => i32::MIN,
        _ => r.below(200) as i32 - 100,
    };
    let columns = vec![
        column!(Int32Array, int),
        column!(Int32Array, int),
        column!(Int64Array, |r: &mut Rng| match r.below(10) {
            0 => i64::MAX,
            _ => r.below(2000) as i64 - 1000,
        }),
        column!(Float64Array, |r: &mut Rng| match r.below(12) {
            0 => f64::NAN,
            1 => -0.0,
            _ => (r.below(2000) as f64 - 1000.0) / 8.0,
        }),
        Arc::new(
            (0..rows)
                .map(|_| (!rng.chance(nulls)).then(|| rng.below(20_000) as i128 - 10_000))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(15, 2)
                .unwrap(),
        ) as ArrayRef,
        Arc::new(
            (0..rows)
                .map(|_| (!rng.chance(nulls)).then(|| rng.below(1_000) as i128))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(15, 2)
                .unwrap(),
        ) as ArrayRef,
        column!(Date32Array, |r: &mut Rng| 10_000 + r.below(100) as i32),
        column!(StringArray, |r: &mut Rng| ["a", "b", "ab", "", "bba"]
            [r.below(5) as usize]
            .to_string()),
        column!(BooleanArray, |r: &mut Rng| r.chance(50)),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

fn col(name: &str) -> Arc<dyn PhysicalExpr> {
    let s = schema();
    Arc::new(Column::new(name, s.index_of(name).unwrap()))
}

fn lit(v: ScalarValue) -> Arc<dyn PhysicalExpr> {
    Arc::new(Literal::new(v))
}

fn bin(l: Arc<dyn PhysicalExpr>, op: Operator, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
    Arc::new(BinaryExpr::new(l, op, r))
}

/// A numeric expression of one kind: `Int32`, `Int64`, `Float64` or a decimal.
fn number(rng: &mut Rng, kind: u64, depth: u32) -> Arc<dyn PhysicalExpr> {
    if depth == 0 || rng.chance(35) {
        return match (kind, rng.below(3)) {
            (0, 0) => lit(ScalarValue::Int32(Some(rng.below(20) as i32 - 10))),
            (0, 1) => col("i"),
            (0, _) => col("j"),
            (1, 0) => lit(ScalarValue::Int64(Some(rng.below(20) as i64 - 10))),
            (1, _) => col("l"),
            (2, 0) => lit(ScalarValue::Float64(Some(rng.below(20) as f64 / 4.0))),
            (2, _) => col("f"),
            (_, 0) => lit(ScalarValue::Decimal128(Some(1), 20, 0)),
            (_, 1) => col("d"),
            (_, _) => col("e"),
        };
    }
    if kind < 3 && rng.chance(15) {
        // A searched CASE of the same kind (decimal branches would need the planner's
        // coercion to one type).
        let whens = (0..1 + rng.below(2))
            .map(|_| (predicate(rng, 1), number(rng, kind, depth - 1)))
            .collect();
        let otherwise = rng.chance(70).then(|| number(rng, kind, depth - 1));
        return Arc::new(CaseExpr::try_new(None, whens, otherwise).unwrap());
    }
    let op = [Operator::Plus, Operator::Minus, Operator::Multiply][rng.below(3) as usize];
    bin(
        number(rng, kind, depth - 1),
        op,
        number(rng, kind, depth - 1),
    )
}

/// A boolean expression.
fn predicate(rng: &mut Rng, depth: u32) -> Arc<dyn PhysicalExpr> {
    let op = [
        Operator::Eq,
        Operator::NotEq,
        Operator::Lt,
        Operator::LtEq,
        Operator::Gt,
        Operator::GtEq,
    ][rng.below(6) as usize];
    if depth == 0 || rng.chance(40) {
        return match rng.below(10) {
            9 => {
                // `_` is not compiled: that pipeline stays unfused.
                let pattern =
                    ["a%", "%b", "%a%", "a%b", "ab", "%", "%b%a%", "a_"][rng.below(8) as usize];
                Arc::new(LikeExpr::new(
                    rng.chance(30),
                    false,
                    col("s"),
                    lit(ScalarValue::Utf8(Some(pattern.into()))),
                ))
            }
            7 => {
                let items = (0..1 + rng.below(3))
                    .map(|_| {
                        lit(ScalarValue::Utf8(Some(
                            ["a", "b", "ab", "c"][rng.below(4) as usize].into(),
                        )))
                    })
                    .collect();
                in_list(col("s"), items, &rng.chance(30), &schema()).unwrap()
            }
            8 => {
                let items = (0..1 + rng.below(4))
                    .map(|_| {
                        lit(ScalarValue::Int32(if rng.chance(10) {
                            None
                        } else {
                            Some(rng.below(40) as i32 - 20)
                        }))
                    })
                    .collect();
                in_list(col("i"), items, &rng.chance(30), &schema()).unwrap()
            }
            0 => bin(col("t"), op, lit(ScalarValue::Date32(Some(10_050)))),
            1 => bin(col("s"), op, lit(ScalarValue::Utf8(Some("ab".into())))),
            2 => Arc::new(IsNullExpr::new(col(["i", "d", "s"][rng.below(3) as usize]))),
            3 => col("b"),
            4 => {
                // Numbers against numbers of the same kind (decimals of scale 2 only: the
                // comparison of different decimal types is coerced by the planner, not here).
                let kind = rng.below(3);
                bin(number(rng, kind, 1), op, number(rng, kind, 1))
            }
            5 => bin(col("d"), op, col("e")),
            _ => bin(
                col("i"),
                op,
                lit(ScalarValue::Int32(if rng.chance(10) {
                    None
                } else {
                    Some(0)
                })),
            ),
        };
    }
    match rng.below(4) {
        0 => bin(
            predicate(rng, depth - 1),
            Operator::And,
            predicate(rng, depth - 1),
        ),
        1 => bin(
            predicate(rng, depth - 1),
            Operator::Or,
            predicate(rng, depth - 1),
        ),
        2 => Arc::new(NotExpr::new(predicate(rng, depth - 1))),
        _ => {
            let kind = rng.below(4);
            Arc::new(IsNotNullExpr::new(number(rng, kind, depth - 1)))
        }
    }
}

/// What the unfused operators compute: filter, then project.
fn unfused(
    batch: &RecordBatch,
    filter: &Arc<dyn PhysicalExpr>,
    exprs: &[Arc<dyn PhysicalExpr>],
    out: &SchemaRef,
) -> Option<RecordBatch> {
    let mask = filter
        .evaluate(batch)
        .unwrap()
        .into_array(batch.num_rows())
        .unwrap();
    let kept = filter_record_batch(batch, mask.as_any().downcast_ref().unwrap()).unwrap();
    if kept.num_rows() == 0 {
        return None;
    }
    let columns: Vec<ArrayRef> = exprs
        .iter()
        .map(|e| {
            e.evaluate(&kept)
                .unwrap()
                .into_array(kept.num_rows())
                .unwrap()
        })
        .collect();
    Some(RecordBatch::try_new(out.clone(), columns).unwrap())
}

#[test]
fn random_expressions_give_the_same_rows_fused_and_unfused() {
    let input = schema();
    let mut compiled = 0;
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let rows = [0, 1, 7, 100, 1000][rng.below(5) as usize];
        let data = batch(&mut rng, rows);
        let filter = predicate(&mut rng, 3);
        let exprs: Vec<Arc<dyn PhysicalExpr>> = (0..1 + rng.below(3))
            .map(|_| {
                if rng.chance(25) {
                    predicate(&mut rng, 2)
                } else {
                    let kind = rng.below(4);
                    number(&mut rng, kind, 3)
                }
            })
            .collect();
        let out: SchemaRef = Arc::new(Schema::new(
            exprs
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    Field::new(
                        format!("c{k}"),
                        e.data_type(&input).unwrap(),
                        e.nullable(&input).unwrap(),
                    )
                })
                .collect::<Vec<_>>(),
        ));
        let spec = PipelineSpec {
            input_schema: input.clone(),
            steps: vec![
                Step::Filter {
                    predicate: filter.clone(),
                },
                Step::Project {
                    exprs: exprs.clone(),
                    schema: out.clone(),
                },
            ],
        };
        let program = match CompiledPipeline::compile(&spec) {
            Ok(p) => p,
            Err(why) => {
                assert!(
                    why.contains("decimal scales") || why.contains("LIKE pattern with"),
                    "seed {seed}: {why}"
                );
                continue;
            }
        };
        compiled += 1;
        let expected = unfused(&data, &filter, &exprs, &out);
        let got = program.run(&data).unwrap();
        assert_eq!(
            got, expected,
            "seed {seed}: filter {filter}, exprs {exprs:?}"
        );
    }
    assert!(compiled > 300, "only {compiled} of 400 pipelines compiled");
}

#[test]
fn unsupported_expressions_are_named() {
    let input = schema();
    let divide = bin(col("i"), Operator::Divide, col("j"));
    let spec = PipelineSpec {
        input_schema: input.clone(),
        steps: vec![Step::Filter {
            predicate: bin(divide, Operator::Gt, lit(ScalarValue::Int32(Some(1)))),
        }],
    };
    let why = CompiledPipeline::compile(&spec).unwrap_err();
    assert!(why.contains("i@0 / j@1"), "{why}");
}

#[test]
fn column_picks_keep_the_selection_until_the_end() {
    let input = schema();
    let mut rng = Rng(7);
    let data = batch(&mut rng, 50);
    let picked: SchemaRef = Arc::new(Schema::new(vec![
        input.field(4).clone(),
        input.field(0).clone(),
    ]));
    let spec = PipelineSpec {
        input_schema: input.clone(),
        steps: vec![
            Step::Filter {
                predicate: bin(col("i"), Operator::Gt, lit(ScalarValue::Int32(Some(0)))),
            },
            Step::Project {
                exprs: vec![col("d"), col("i")],
                schema: picked.clone(),
            },
            Step::Filter {
                predicate: Arc::new(IsNotNullExpr::new(Arc::new(Column::new("d", 0)))),
            },
        ],
    };
    let program = CompiledPipeline::compile(&spec).unwrap();
    let got = program.run(&data).unwrap().unwrap();
    let i = data
        .column(0)
        .as_any()
        .downcast_ref::<Int32Array>()
        .unwrap();
    let d = data.column(4);
    let expected = (0..50)
        .filter(|r| i.is_valid(*r) && i.value(*r) > 0 && d.is_valid(*r))
        .count();
    assert_eq!(got.num_rows(), expected);
    assert_eq!(got.schema(), picked);
}

#[test]
fn in_lists_with_nulls_filter_as_datafusion_does() {
    let input = schema();
    let mut rng = Rng(7);
    let data = batch(&mut rng, 500);
    let int = |v: Option<i32>| lit(ScalarValue::Int32(v));
    let lists: Vec<Vec<Option<i32>>> = vec![
        vec![Some(1), None],
        vec![Some(0), Some(3), Some(-5)],
        vec![None],
        vec![Some(i32::MAX), Some(7)],
    ];
    for list in lists {
        for negated in [false, true] {
            let items = list.iter().map(|v| int(*v)).collect();
            let predicate = in_list(col("i"), items, &negated, &input).unwrap();
            let spec = PipelineSpec {
                input_schema: input.clone(),
                steps: vec![Step::Filter {
                    predicate: predicate.clone(),
                }],
            };
            let program = CompiledPipeline::compile(&spec).unwrap();
            let fused = program.run(&data).unwrap();
            let columns: Vec<Arc<dyn PhysicalExpr>> =
                input.fields().iter().map(|f| col(f.name())).collect();
            let expected = unfused(&data, &predicate, &columns, &input);
            assert_eq!(fused, expected, "{predicate}");
        }
    }
}
