#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit/property/end-to-end tests and the
# quick start. Installs what it needs on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    apt-get update -qq && apt-get install -y -qq build-essential curl ca-certificates >/dev/null
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
# What the tests and scripts call, as "path-or-command package": kill (procps), curl, ip
# (iproute2: the data-plane tests make throwaway network namespaces), python3 for the load tests'
# syntax check, nft (the router's masquerading table), ping; and for the CNI plugin's tests
# Debian's reference plugins (portmap, loopback in /usr/lib/cni), containerd and runc driven over
# the CRI API by a Python gRPC client, and gcc with a static libc for the pause image; for the
# Kubernetes tests (tests/kubelab) etcd beside the API server, and openssl for their PKI; for the
# cluster test (tests/cluster.rs) mmdebstrap and strip to build Weft's image, and iptables for
# kube-proxy; for the dashboard test (tests/dashboard.rs) Debian's Prometheus.
missing=()
while read -r need package; do
  if [[ "$need" == /* ]]; then
    [ -e "$need" ] || missing+=("$package")
  else
    command -v "$need" >/dev/null 2>&1 || missing+=("$package")
  fi
done <<'PACKAGES'
curl curl
kill procps
python3 python3
ip iproute2
ping iputils-ping
nft nftables
/usr/lib/cni/portmap containernetworking-plugins
containerd containerd
runc runc
/usr/lib/python3/dist-packages/grpc python3-grpcio
/usr/lib/python3/dist-packages/grpc_tools python3-grpc-tools
gcc gcc
/usr/lib/x86_64-linux-gnu/libc.a libc6-dev
etcd etcd-server
openssl openssl
mmdebstrap mmdebstrap
strip binutils
iptables iptables
/usr/bin/prometheus prometheus
PACKAGES
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# kube-apiserver & co. for the Kubernetes tests: built once from Debian's source, then cached.
WEFT_KUBE_BIN="$(scripts/kube/build-binaries.sh)"
export WEFT_KUBE_BIN
echo "== kube binaries: $WEFT_KUBE_BIN"
echo "== cargo test"
cargo test --workspace
echo "== load-test scripts parse"
for script in load-tests/*.py; do
  [ -e "$script" ] && python3 -m py_compile "$script"
done
echo "== quick start"
./scripts/quickstart.sh --check

# ---- Fuzzing: a short run of every fuzz target (fuzz/, load-tests/fuzz.sh) ----
# libFuzzer on the stable toolchain, 10 s per target from the committed seeds; a crash or a
# broken property fails the suite. The instrumented release build is kept outside the checkout,
# like the Kubernetes binaries, in /var/cache/weft-fuzz (WEFT_FUZZ_CACHE moves it), so only a
# fresh machine pays the cold build (about 10 min on 2 busy cores); later runs rebuild what
# changed. WEFT_FUZZ_SECONDS=0 skips it.
if [ "${WEFT_FUZZ_SECONDS:-10}" -gt 0 ]; then
  echo "== fuzzing (${WEFT_FUZZ_SECONDS:-10} s per target)"
  CARGO_TARGET_DIR="${WEFT_FUZZ_CACHE:-/var/cache/weft-fuzz}" \
    load-tests/fuzz.sh "${WEFT_FUZZ_SECONDS:-10}"
fi
