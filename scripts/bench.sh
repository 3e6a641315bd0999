#!/usr/bin/env bash
# Faísca's benchmarks, as recorded in docs/benchmarks.md. Needs a release build:
#   cargo build --release -p faisca-cli
# Usage: scripts/bench.sh [SF]   (default SF 1; data is generated once into the cache directory)
set -euo pipefail
cd "$(dirname "$0")/.."
sf="${1:-1}"
bin=target/release/faisca
mkdir -p target/faisca-bench
"$bin" bench overhead --master 'local[2]' --iterations 200 --tasks 100 --output target/faisca-bench/overhead.json
"$bin" bench tpch --sf "$sf" --master 'local[2]' --iterations 5 --output "target/faisca-bench/tpch-sf$sf.json"
"$bin" bench recovery --sf "$sf" --query 9 --executors 3 --cores 1 --iterations 5 --output "target/faisca-bench/recovery-sf$sf.json"
"$bin" bench scale --iterations 7 --output target/faisca-bench/scale.json
"$bin" bench scan --sf "$sf" --master 'local[2]' --iterations 5 --output "target/faisca-bench/scan-sf$sf.json"
"$bin" bench write --sf "$sf" --master 'local[2]' --iterations 3 --output "target/faisca-bench/write-sf$sf.json"
"$bin" bench kafka --records 2000000 --partitions 20 --master 'local[2]' --iterations 3 --output target/faisca-bench/kafka.json
"$bin" bench streaming --records 2000000 --partitions 20 --master 'local[2]' --iterations 3 --output target/faisca-bench/streaming.json
"$bin" bench ui --sf "$sf" --executors 2 --iterations 7 --jobs 0 --output "target/faisca-bench/ui-sf$sf.json"
# The memory run in a process that ran nothing before it.
"$bin" bench ui --sf "$sf" --executors 2 --iterations 0 --jobs 30000 --output "target/faisca-bench/ui-memory.json"
# TLS against plain: a throw-away CA and a certificate for 127.0.0.1 (needs the openssl CLI).
pki="$(mktemp -d)"
trap 'rm -rf "$pki"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench \
  -keyout "$pki/node.key" -out "$pki/node.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$pki/ext.cnf"
openssl x509 -req -in "$pki/node.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 1 \
  -extfile "$pki/ext.cnf" -out "$pki/node.pem" 2>/dev/null
"$bin" bench tls --sf "$sf" --executors 2 --iterations 7 --tls-cert "$pki/node.pem" --tls-key "$pki/node.key" \
  --tls-ca "$pki/ca.pem" --output "target/faisca-bench/tls-sf$sf.json"
"$bin" bench kernels --sf 0.5 --iterations 9 --output target/faisca-bench/kernels.json
