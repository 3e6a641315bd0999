#!/usr/bin/env bash
# Opt-in end-to-end check on a real Kubernetes cluster, for people who have one (no API server
# runs on the machines that build Faísca; the test command uses a stand-in, crates/faisca-kube-standin).
#
#   FAISCA_KUBE_E2E=1 [FAISCA_KUBE_IMAGE=registry/faisca:tag] [FAISCA_KUBE_NAMESPACE=faisca] \
#   [FAISCA_KUBE_BUILD=1] scripts/kube-e2e.sh
#
# Needs a kubeconfig (KUBECONFIG or ~/.kube/config) whose user may create pods and ConfigMaps in
# the namespace, and an image the cluster can pull. With FAISCA_KUBE_BUILD=1 the image is built
# from deploy/docker/Dockerfile first (a Docker engine must run here; push it yourself if the
# cluster cannot see this engine's images). Then:
#   1. `faisca driver --dry-run` output is applied with `kubectl apply --dry-run=server`;
#   2. `faisca submit --deploy-mode cluster` runs a job whose answer is known, in a driver pod with
#      executor pods, and its exit code and log are checked;
#   3. no pod of the application is left.
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
echo "kube-e2e: passed"
