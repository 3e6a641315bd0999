#!/usr/bin/env bash
# Faísca's one test command: installs and starts what the tests need, runs every test, stops
# what it started. Safe to run again (idempotent) and from a fresh clone.
#
# Today the tests need no outside service: every test starts its own drivers and executors on
# 127.0.0.1 (in-process for local[N], as separate `faisca` processes for the CLI tests). The Kafka
# broker and S3 server of later work are started here, too.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CLI tests run the `faisca` binary as separate driver, executor and client processes.
cargo build --locked -p faisca-cli
cargo test --locked --workspace
