#!/bin/sh
# The hostile-input harnesses (tests/src/hostile/), run longer than the test command runs them:
# each decoder gets FAISCA_FUZZ_SECONDS (default 300) of generated inputs, in a child process
# limited to FAISCA_FUZZ_MEMORY_KIB (default 8 GiB). A failing input is saved under
# <target>/hostile-crashes/<harness>/ and the failure prints the FAISCA_FUZZ_SEED that finds it
# again; check the input in under tests/corpus/hostile/<harness>/ once the bug is fixed.
#
#   scripts/fuzz.sh                 every harness
#   scripts/fuzz.sh stage_plans     one (its test's name: flight_tickets, rpc_messages,
#                                   dataframe_plans, stage_plans, config_values, record_values,
#                                   checkpoints, commits, credentials, sql_text)
set -eu
cd "$(dirname "$0")/.."
export FAISCA_FUZZ_SECONDS="${FAISCA_FUZZ_SECONDS:-300}"
filter="hostile::"
if [ $# -gt 0 ]; then
    filter="hostile::harnesses::$1"
fi
exec cargo test --locked --workspace --test integration -- "$filter" --test-threads=1
