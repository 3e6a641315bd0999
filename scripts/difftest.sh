#!/usr/bin/env bash
# The differential tester's long run: random tables and queries, each run on a local[3] Faísca
# cluster and in single-process DataFusion and compared (tests/src/difftest). Prints the seed,
# the index and the minimal form of every mismatch, and exits non-zero if there was one.
#
# Usage: scripts/difftest.sh [--queries N] [--seed S] [--only I] [--per-dataset K] [--release]
#   --queries N      queries to run (default 10000)
#   --seed S         the run's seed (default: the test command's, 20261202)
#   --only I         run query I of the run alone, printing its tables and distributed plan
#   --sql TEXT       with --only: run TEXT over query I's tables instead, printing both results
#   --per-dataset K  queries per generated set of tables (default 200)
#   --release        build and run in release mode (the stage-plan check stays on)
set -euo pipefail
cd "$(dirname "$0")/.."

queries=10000
seed=20261202
per_dataset=200
only=""
profile=()
while [ $# -gt 0 ]; do
    case "$1" in
        --queries) queries="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --sql) export FAISCA_DIFFTEST_SQL="$2"; shift 2 ;;
        --per-dataset) per_dataset="$2"; shift 2 ;;
        --release) profile=(--release); shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument '$1' (expected --queries, --seed, --only, --sql, --per-dataset or --release)" >&2; exit 2 ;;
    esac
done
for value in "$queries" "$seed" "$per_dataset" ${only:+"$only"}; do
    if ! [[ "$value" =~ ^[0-9]+$ ]]; then
        echo "'$value' is not a non-negative integer" >&2
        exit 2
    fi
done

export FAISCA_DIFFTEST_QUERIES="$queries"
export FAISCA_DIFFTEST_SEED="$seed"
export FAISCA_DIFFTEST_PER_DATASET="$per_dataset"
if [ -n "$only" ]; then
    export FAISCA_DIFFTEST_ONLY="$only"
fi
exec cargo test --locked "${profile[@]}" -p faisca-tests --test integration \
    difftest::random_queries_give_datafusions_answers -- --exact --nocapture
