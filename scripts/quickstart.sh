#!/usr/bin/env bash
# Quick start: builds Weft and runs a 3-node cluster made of network namespaces on this machine.
#
#   underlay namespace:  a Linux bridge; one veth per node (RFC 5737 addresses 198.51.100.11-13/24,
#                        so nothing can be mistaken for a real network)
#   node1..node3:        one namespace each, running `weft router` (data plane on: the `weave`
#                        bridge and vxlan-6784), HTTP API on 127.0.0.1:6784 inside the namespace;
#                        node2 and node3 know node1, discovery does the rest; IPAM by consensus=3
#   pod1, pod2 per node: namespaces wired to their node's bridge with `weft attach`, each with an
#                        address from the node's IPAM (POST /ip/<pod>) and the bridge as gateway
#
# Then prints `weave status` and `weave status connections` of node1 and pings every pod from
# node1's pod1 (pod traffic between nodes goes over the kernel's VXLAN path the routers program).
#
#   ./scripts/quickstart.sh           stays up until Ctrl-C, then removes everything it made
#   ./scripts/quickstart.sh --check   same, but removes it all at once after the pings (non-zero if
#                                     the mesh did not form or any ping failed)
#   ./scripts/quickstart.sh --down    removes what any quick start left behind (idempotent)
#
# Needs root (namespaces, veths, bridges). Every name it creates starts with `weft-qs-`.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

mode=run
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --down) mode=down ;;
  -h | --help) usage; exit 0 ;;
  *) echo "unknown argument: $1 (expected --check, --down or nothing)" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "quickstart.sh must run as root: it creates network namespaces, veth pairs and bridges." >&2
  echo "Try: sudo $0 ${*:-}" >&2
  exit 1
fi

prefix=weft-qs-               # every namespace of every run starts with this
state_glob=/tmp/weft-quickstart.*  # each run's temp dir (database, logs, list of namespaces)

# need and remove_namespace, shared with the other namespace scripts.
# shellcheck source=/dev/null
. scripts/lib/netns.sh # (we are in the repository root)

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true; }


# Removes one run: its namespaces (pods first, the underlay last) and its temp dir.
remove_run() {
  local dir=$1 ns
  if [ -f "$dir/namespaces" ]; then
    for ns in $(tac "$dir/namespaces"); do remove_namespace "$ns"; done
  fi
  rm -rf "$dir"
}

if [ "$mode" = down ]; then
  for dir in $state_glob; do
    [ -f "$dir/namespaces" ] && remove_run "$dir"
  done
  for ns in $(our_namespaces); do remove_namespace "$ns"; done
  echo "quick start removed (no ${prefix}* namespaces left)"
  exit 0
fi

leftovers=$(our_namespaces)
if [ -n "$leftovers" ]; then
  runs=$(echo "$leftovers" | grep -o "^$prefix[0-9]*" | sort -u | paste -sd ' ')
  echo "$(echo "$leftovers" | wc -l) namespaces of another quick start exist ($runs)." >&2
  echo "It is still running or was killed. Stop it with Ctrl-C, or remove everything with:" >&2
  echo "  $0 --down" >&2
  exit 1
fi

# A fresh Debian machine needs a C toolchain and Rust first.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "Installing the Rust toolchain (rustup)..."
    apt-get update -qq && apt_updated=true
    apt-get install -y -qq build-essential curl ca-certificates >/dev/null
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
need curl curl
need ip iproute2
need ping iputils-ping

cargo build --quiet --bin weft
weft="$PWD/target/debug/weft"
work=$(mktemp -d /tmp/weft-quickstart.XXXXXX)
ln -s "$weft" "$work/weave"
touch "$work/namespaces"
run_id=$$
underlay="${prefix}${run_id}-underlay"
nodes=(node1 node2 node3)
pods=(pod1 pod2)
ns_of() { echo "${prefix}${run_id}-$1"; } # ns_of node1 / ns_of node1-pod1

cleanup() {
  set +e
  trap - EXIT INT TERM
  [ -d "$work" ] && remove_run "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

add_namespace() {
  echo "$1" >>"$work/namespaces" # listed first, so that a failure half-way is cleaned up too
  ip netns add "$1"
  ip -n "$1" link set lo up
}

# Everything below waits against one deadline: the cluster is up within 60 s or it failed.
deadline=$((SECONDS + 60))
wait_until() { # wait_until COMMAND...: retries every 0.5 s until it succeeds or the deadline
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  "$@" >/dev/null 2>&1
}
api() { # api NODE ARGS...: the CLI against the router of NODE, through the `weave` symlink
  ip netns exec "$(ns_of "$1")" "$work/weave" --http-addr 127.0.0.1:6784 "${@:2}"
}
show_logs() {
  echo "--- router logs (last 20 lines each, all in $work):" >&2
  for node in "${nodes[@]}"; do
    echo "--- $node" >&2
    tail -n 20 "$work/$node.log" >&2 || true
  done
}
fail() { echo "FAILED: $*" >&2; show_logs; exit 1; }

# The underlay: a bridge in its own namespace, one veth per node.
add_namespace "$underlay"
ip -n "$underlay" link add br0 type bridge
ip -n "$underlay" link set br0 up
i=0
for node in "${nodes[@]}"; do
  i=$((i + 1))
  ns=$(ns_of "$node")
  add_namespace "$ns"
  ip link add underlay0 netns "$ns" type veth peer name "$node" netns "$underlay"
  ip -n "$underlay" link set "$node" master br0 up
  ip -n "$ns" addr add "198.51.100.1$i/24" dev underlay0
  ip -n "$ns" link set underlay0 up
done

# A router in each node; node2 and node3 know node1.
i=0
for node in "${nodes[@]}"; do
  i=$((i + 1))
  peers=()
  [ "$node" != node1 ] && peers=(198.51.100.11)
  ip netns exec "$(ns_of "$node")" "$weft" router --name "00:00:00:00:00:0$i" --nickname "$node" \
    --host "198.51.100.1$i" --http-addr 127.0.0.1:6784 --metrics-addr 127.0.0.1:6782 \
    --db-prefix "$work/$node/weave-net" --ipalloc-init consensus=3 "${peers[@]}" \
    >"$work/$node.log" 2>&1 &
done

meshed() { api node1 status | grep -q "Peers: 3 (with 6 established"; }
wait_until meshed || { api node1 status >&2 || true; fail "the mesh did not form"; }

# Each bridge gets its address from IPAM once the three routers agreed (weave:expose).
has_address() { ip -n "$(ns_of "$1")" -4 addr show dev weave 2>/dev/null | grep -q "inet "; }
declare -A bridge
for node in "${nodes[@]}"; do
  wait_until has_address "$node" || fail "the weave bridge of $node got no address from IPAM"
  bridge[$node]=$(ip -n "$(ns_of "$node")" -4 -o addr show dev weave | awk '{print $4; exit}')
done

echo "== the cluster: 3 nodes on the underlay 198.51.100.0/24, 2 pods per node"
declare -A address
i=0
for node in "${nodes[@]}"; do
  i=$((i + 1))
  echo "$node  namespace $(ns_of "$node")  underlay 198.51.100.1$i  bridge ${bridge[$node]}"
  for pod in "${pods[@]}"; do
    ns=$(ns_of "$node-$pod")
    add_namespace "$ns"
    cidr=$(ip netns exec "$(ns_of "$node")" curl -sf --noproxy '*' --max-time 10 \
      -X POST "127.0.0.1:6784/ip/$node-$pod") || fail "IPAM gave no address for $node-$pod"
    ip netns exec "$(ns_of "$node")" "$weft" attach --netns "$ns" --ip "$cidr" \
      --gateway "${bridge[$node]%/*}" >/dev/null || fail "weft attach $node-$pod"
    address[$node-$pod]=${cidr%/*}
    echo "  $pod  namespace $ns  address $cidr"
  done
done

# A new link starts on sleeve and moves to fastdp once the VXLAN heartbeats are acked (~3 s).
all_fastdp() { [ "$(api node1 status connections | grep -c 'established fastdp')" = 2 ]; }
wait_until all_fastdp || echo "(not every link of node1 is on fastdp yet; sleeve carries the rest)"

echo
echo "== weave status (node1)"
api node1 status
echo
echo "== weave status connections (node1)"
api node1 status connections

echo
echo "== ping every pod from pod1 on node1"
from=$(ns_of node1-pod1)
failed=0
for node in "${nodes[@]}"; do
  for pod in "${pods[@]}"; do
    [ "$node-$pod" = node1-pod1 ] && continue
    target=${address[$node-$pod]}
    # The first packets may wait for ARP and the VXLAN flood entries: retry for up to 10 s.
    ok=false
    for _ in $(seq 1 10); do
      if ip netns exec "$from" ping -c 1 -W 1 -q "$target" >/dev/null 2>&1; then ok=true; break; fi
      [ "$SECONDS" -ge "$deadline" ] && break
      sleep 0.5
    done
    if $ok; then result=OK; else result=FAIL; failed=$((failed + 1)); fi
    printf '  %-16s %-15s %s\n' "$pod on $node" "$target" "$result"
  done
done
if [ "$failed" -gt 0 ]; then
  fail "$failed of 5 pods did not answer"
fi

if [ "$mode" = check ]; then
  echo
  echo "quick start OK; removing it"
  exit 0
fi
echo
echo "The cluster is up (logs and databases in $work). Try:"
echo "  ip netns exec $(ns_of node2) $work/weave --http-addr 127.0.0.1:6784 status ipam"
echo "  ip netns exec $(ns_of node3-pod2) ping -c 3 ${address[node1-pod2]}"
echo "  ip netns exec $(ns_of node1) bridge fdb show dev vxlan-6784"
echo "  ip netns exec $(ns_of node1) curl -s 127.0.0.1:6782/metrics | grep weave_"
echo "Press Ctrl-C to stop it and remove everything (or run $0 --down from another shell)."
wait
echo "the routers stopped; removing the rest"
