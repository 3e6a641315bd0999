#!/usr/bin/env bash
# Opt-in end-to-end check on a real Kubernetes cluster, for people who have one (no API server
# runs on the machines that build Faísca; the test command uses a stand-in, crates/faisca-kube-standin).
#
#   FAISCA_KUBE_E2E=1 [FAISCA_KUBE_IMAGE=registry/faisca:tag] [FAISCA_KUBE_NAMESPACE=faisca] \
#   [FAISCA_KUBE_BUILD=1] [FAISCA_KUBE_E2E_DATA=s3://bucket/tpch-sf1] \
#   [FAISCA_KUBE_E2E_CONF="faisca.store.s3.bucket.region=eu-west-1 ..."] scripts/kube-e2e.sh
#
# Needs a kubeconfig (KUBECONFIG or ~/.kube/config) whose user may create pods and ConfigMaps in
# the namespace, and an image the cluster can pull. With FAISCA_KUBE_BUILD=1 the image is built
# from deploy/docker/Dockerfile first (a Docker engine must run here; push it yourself if the
# cluster cannot see this engine's images). Then:
#   1. `faisca driver --dry-run` output is applied with `kubectl apply --dry-run=server`;
#   2. `faisca submit --deploy-mode cluster` runs a job whose answer is known, in a driver pod with
#      executor pods, and its exit code and log are checked;
#   3. no pod of the application is left;
#   4. with FAISCA_KUBE_E2E_DATA (TPC-H tables as <location>/<table>/, e.g. the Parquet files
#      `faisca demo` generates, copied to a bucket the pods can read; FAISCA_KUBE_E2E_CONF for the
#      store's settings): the demo's queries (1, 3, 5, 6, 10, 18) in cluster mode, each checked
#      row by row against the same query on local[2] here.
set -euo pipefail

if [[ "${FAISCA_KUBE_E2E:-}" != "1" ]]; then
  echo "kube-e2e: skipped (set FAISCA_KUBE_E2E=1, with a kubeconfig and an image)"
  exit 0
fi
cd "$(dirname "$0")/.."
image="${FAISCA_KUBE_IMAGE:-faisca:latest}"
namespace="${FAISCA_KUBE_NAMESPACE:-default}"
if [[ "${FAISCA_KUBE_BUILD:-}" == "1" ]]; then
  docker build -f deploy/docker/Dockerfile -t "$image" .
fi
cargo build --locked --release -p faisca-cli
faisca=target/release/faisca
conf=(--conf "faisca.kubernetes.namespace=$namespace" --conf "faisca.kubernetes.container.image=$image"
      --conf "faisca.executor.instances=2" --conf "faisca.executor.memory=1g")
store_conf=()
for pair in ${FAISCA_KUBE_E2E_CONF:-}; do store_conf+=(--conf "$pair"); done

echo "kube-e2e: 1. the executor pod passes the API server's validation"
"$faisca" driver --master k8s:// --dry-run "${conf[@]}" | kubectl apply --dry-run=server -n "$namespace" -f -

echo "kube-e2e: 2. a job in cluster mode"
job=$(mktemp --suffix .sql)
trap 'rm -f "$job"' EXIT
cat > "$job" <<'SQL'
select count(*) as n, sum(k) as total from generate_series(1, 1000000) as t(k) where k % 3 = 0
SQL
expected=$("$faisca" sql --master 'local[2]' --format csv -f "$job" | tail -n 1)
log=$(mktemp)
"$faisca" submit --master k8s:// --deploy-mode cluster --name kube-e2e "${conf[@]}" "$job" 2>&1 | tee "$log"
driver_pod=$(grep -o 'driver pod [a-z0-9-]*-driver' "$log" | head -n 1 | awk '{print $3}')
driver_log=$(kubectl logs -n "$namespace" "$driver_pod")
IFS=, read -r -a values <<<"$expected"
for value in "${values[@]}"; do
  grep -qF -- "$value" <<<"$driver_log" \
    || { echo "kube-e2e: the driver's log lacks $value of the expected answer $expected"; exit 1; }
done

echo "kube-e2e: 3. nothing left behind"
app=${driver_pod%-driver}
left=$(kubectl get pods -n "$namespace" -l "faisca-app-id=$app,faisca-role=executor" -o name)
if [[ -n "$left" ]]; then
  echo "kube-e2e: executor pods left: $left"
  exit 1
fi
kubectl delete pod -n "$namespace" "$driver_pod" --wait=false >/dev/null

if [[ -n "${FAISCA_KUBE_E2E_DATA:-}" ]]; then
  echo "kube-e2e: 4. the demo queries on $FAISCA_KUBE_E2E_DATA"
  for q in 1 3 5 6 10 18; do
    query_file=$(mktemp --suffix .sql)
    for t in customer lineitem nation orders part partsupp region supplier; do
      echo "CREATE EXTERNAL TABLE IF NOT EXISTS $t STORED AS PARQUET LOCATION '${FAISCA_KUBE_E2E_DATA%/}/$t/';"
    done > "$query_file"
    # The query as the benchmarks and the demo run it.
    python3 - "$q" >> "$query_file" <<'PY'
import re, sys
source = open("crates/faisca-bench/src/tpch/queries.rs").read()
query = re.search(r"// Q%s\n\s*\"(.*?)\",\n" % sys.argv[1], source, re.S).group(1)
print(query.replace('\\"', '"') + ";")
PY
    expected_rows=$("$faisca" sql --master 'local[2]' --format csv "${store_conf[@]}" -f "$query_file")
    "$faisca" submit --master k8s:// --deploy-mode cluster --name "kube-e2e-q$q" --format csv \
      "${conf[@]}" "${store_conf[@]}" "$query_file" 2>&1 | tee "$log"
    driver_pod=$(grep -o 'driver pod [a-z0-9-]*-driver' "$log" | head -n 1 | awk '{print $3}')
    driver_log=$(kubectl logs -n "$namespace" "$driver_pod")
    while IFS= read -r row; do
      grep -qxF -- "$row" <<<"$driver_log" \
        || { echo "kube-e2e: Q$q: the driver's output lacks the row $row"; exit 1; }
    done <<<"$expected_rows"
    kubectl delete pod -n "$namespace" "$driver_pod" --wait=false >/dev/null
    rm -f "$query_file"
  done
fi
echo "kube-e2e: passed"
