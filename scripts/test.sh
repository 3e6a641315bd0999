#!/usr/bin/env bash
# Faísca's one test command: installs what the tests need, runs every test, stops what it
# started. Safe to run again (idempotent) and from a fresh clone.
#
# * An S3-compatible server: moto (PyPI `moto[server]`), installed once into a Python venv under
#   the cache directory. Tests start their own moto_server on a free 127.0.0.1 port and stop it
#   (FAISCA_MOTO_SERVER names the program).
# * Every test starts its own drivers and executors on 127.0.0.1 (in-process for local[N], as
#   separate `faisca` processes for the CLI tests).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/faisca-ci"
venv="${FAISCA_VENV:-$cache/venv}"
moto_version="5.2.5"
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
    echo "installing moto $moto_version into $venv" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version"
fi
export FAISCA_MOTO_SERVER="$venv/bin/moto_server"

# The CLI tests run the `faisca` binary as separate driver, executor and client processes.
cargo build --locked -p faisca-cli
cargo test --locked --workspace
