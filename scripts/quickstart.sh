#!/usr/bin/env bash
# Quick start: builds Weft and runs a small mesh of three routers on this machine (control plane
# only, on loopback addresses 127.0.0.11-13, sharing the IP range 10.32.0.0/12 by consensus), then
# prints `weave status` of one of them and allocates an address for a pod.
# Stays up until Ctrl-C (or exits at once with --check), and removes everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

# A fresh Debian machine needs a C toolchain and Rust first.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "Installing the Rust toolchain (rustup)..."
    apt-get update -qq && apt-get install -y -qq build-essential curl ca-certificates >/dev/null
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
command -v curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }

cargo build --quiet --bin weft
weft="$PWD/target/debug/weft"
work=$(mktemp -d /tmp/weft-quickstart.XXXXXX)
ln -s "$weft" "$work/weave"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

for i in 1 2 3; do
  ip="127.0.0.1$i"
  peers=()
  [ "$i" != 1 ] && peers=(127.0.0.11)  # node2 and node3 know node1; discovery does the rest
  "$weft" router --no-dataplane --name "00:00:00:00:00:0$i" --nickname "node$i" \
    --host "$ip" --http-addr "$ip:6784" --metrics-addr "$ip:6782" \
    --db-prefix "$work/node$i/weave-net" --ipalloc-init consensus=3 "${peers[@]}" >"$work/node$i.log" 2>&1 &
  pids+=($!)
done

# Wait (at most 30 s) until node1 has established links to both others.
for _ in $(seq 1 60); do
  if "$work/weave" --http-addr 127.0.0.11:6784 status 2>/dev/null | grep -q "Peers: 3 (with 6 established"; then
    break
  fi
  sleep 0.5
done

echo "== weave status (node1) =="
"$work/weave" --http-addr 127.0.0.11:6784 status
echo "== weave status peers (node1) =="
"$work/weave" --http-addr 127.0.0.11:6784 status peers
"$work/weave" --http-addr 127.0.0.11:6784 status | grep -q "Peers: 3 (with 6 established" || {
  echo "the mesh did not form; logs:" >&2
  tail -n 20 "$work"/node*.log >&2
  exit 1
}

echo "== an address for a pod, from IPAM (POST /ip/demo on node2) =="
curl -sf -X POST 127.0.0.12:6784/ip/demo || { echo "allocation failed" >&2; exit 1; }
echo
echo "== weave status ipam (node2) =="
"$work/weave" --http-addr 127.0.0.12:6784 status ipam

if $check_only; then
  exit 0
fi
echo
echo "Three routers are running (logs in $work). Try:"
echo "  $weft --http-addr 127.0.0.12:6784 status connections"
echo "  curl -s 127.0.0.13:6782/metrics | grep weave_"
echo "Press Ctrl-C to stop them and clean up."
wait
