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
# Tools the tests and scripts call: kill (procps), curl, ip (iproute2: the data-plane tests make
# throwaway network namespaces), nft (nftables: the fastdp fallback test blocks UDP 6784),
# ping (iputils-ping), python3 for the load tests' syntax check.
missing=()
for tool in curl kill python3 ip nft ping; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq curl procps python3 iproute2 nftables iputils-ping >/dev/null
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== load-test scripts parse"
for script in load-tests/*.py; do
  [ -e "$script" ] && python3 -m py_compile "$script"
done
echo "== quick start"
./scripts/quickstart.sh --check
