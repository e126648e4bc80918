#!/usr/bin/env bash
# Data-plane benchmark: pod-to-pod TCP throughput (iperf3) and RTT (ping) between two namespaced
# nodes, for these data planes on the same topology:
#
#   (a) plain kernel VXLAN set up by hand (bridge + vxlan device, learning off, one static flood
#       FDB entry towards the other node, pod veths, MTU 1450): the ceiling
#   (b) Weft fastdp: `weft router` in each node, pods attached with `weft attach` (the routers
#       program the kernel VXLAN path); (a) is torn down first
#   (c) Weft sleeve (userspace): the same routers with `--no-fastdp`, so every frame between the
#       nodes crosses the sleeve (TAP, batched UDP with GSO/GRO, the router's threads)
#   (d) Weft encrypted sleeve: (c) with a mesh password, so every datagram is sealed
#       (AES-256-GCM where the CPU has AES instructions, else ChaCha20-Poly1305; keys agreed on the
#       Noise-protected mesh link)
#   (e) Weft sleeve on two TAP queues (--sleeve-queues 2): two pairs of I/O threads per node
#       and two UDP sockets each way, against (c)'s one
#
#   underlay namespace:  a Linux bridge, one veth per node (RFC 5737: 203.0.113.1 and .2/24)
#   node1, node2:        one namespace each
#   pod on each node:    one namespace each (fresh ones for every data plane)
#
# For each data plane: iperf3 single stream and 4 streams (-P 4), RUNS runs each, median reported
# (receiver side); ping -c 20 -i 0.2, average RTT reported. Then a table with the ratios b/a,
# c/a, d/a and d/c; for (d) also the router processes' CPU time per Gbit/s carried.
#
#   load-tests/dataplane_bench.sh                  10 s per iperf3 run, 3 runs each
#   load-tests/dataplane_bench.sh --duration 5     5 s per iperf3 run
#   load-tests/dataplane_bench.sh --runs 5 --weft target/debug/weft
#   load-tests/dataplane_bench.sh --planes ac      only (a) and (c)
#   load-tests/dataplane_bench.sh --planes acd     kernel VXLAN, sleeve, encrypted sleeve
#   load-tests/dataplane_bench.sh --planes ace     the sleeve on one TAP queue and on two
#
# Needs root. Not run in CI. Installs iperf3, nftables, iputils-ping and curl with apt-get if
# missing.
# Uses target/release/weft if it exists (and knows `attach`), else `cargo build --release
# --bin weft`. Every namespace is named weft-bench-<pid>-...; all of them, and every process
# inside them, are removed on exit (also on failure or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

duration=10
runs=3
weft=""
planes=abcde
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
    --runs) runs=${2:?--runs needs a count}; shift 2 ;;
    --weft) weft=${2:?--weft needs a path}; shift 2 ;;
    --planes) planes=${2:?--planes needs letters among a, b, c, d, e}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$duration" =~ ^[1-9][0-9]*$ ]] || { echo "--duration must be a positive integer" >&2; exit 2; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }
[[ "$planes" =~ ^a?b?c?d?e?$ && -n "$planes" ]] || { echo "--planes takes a, b, c, d, e in order (e.g. ace)" >&2; exit 2; }
wants() { [[ "$planes" == *"$1"* ]]; }

if [ "$(id -u)" != 0 ]; then
  echo "dataplane_bench.sh must run as root (namespaces, veths, bridges, vxlan devices)." >&2
  exit 1
fi

# need and remove_namespace, shared with the other namespace scripts.
# shellcheck source=/dev/null
. scripts/lib/netns.sh # (we are in the repository root)
need ip iproute2
need bridge iproute2
need curl curl
need ping iputils-ping
need iperf3 iperf3
need nft nftables

# The weft binary: --weft, else target/release/weft if it has `attach`, else a release build.
if [ -z "$weft" ]; then
  weft="${CARGO_TARGET_DIR:-$PWD/target}/release/weft"
  if ! { [ -x "$weft" ] && "$weft" attach --help >/dev/null 2>&1; }; then
    echo "Building $weft (cargo build --release --bin weft)..."
    cargo build --release --quiet --bin weft
  fi
fi
weft=$(realpath "$weft")
"$weft" attach --help >/dev/null 2>&1 || { echo "$weft has no 'attach' command" >&2; exit 1; }

run_id=$$
prefix="weft-bench-${run_id}-"
ns_of() { echo "${prefix}$1"; }
work=$(mktemp -d /tmp/weft-bench.XXXXXX)
namespaces=() # in creation order; removed in reverse


cleanup() {
  local rc=$? i
  set +e
  trap - EXIT INT TERM
  for ((i = ${#namespaces[@]} - 1; i >= 0; i--)); do remove_namespace "${namespaces[i]}"; done
  # Anything of this run missed above (e.g. created just before a failure).
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix"); do
    remove_namespace "$ns"
  done
  if [ "$rc" != 0 ] && [ -d "$work" ]; then
    echo "(failed: router logs kept in $work)" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

add_namespace() {
  namespaces+=("$1") # listed first, so that a failure half-way is cleaned up too
  ip netns add "$1"
  ip -n "$1" link set lo up
}
fail() { echo "FAILED: $*" >&2; exit 1; }
wait_for() { # wait_for SECONDS COMMAND...: retries every 0.5 s
  local until=$((SECONDS + $1))
  shift
  while [ "$SECONDS" -lt "$until" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  "$@" >/dev/null 2>&1
}

# ---- the underlay: a bridge in its own namespace, one veth per node
underlay=$(ns_of underlay)
node_ip=(203.0.113.1 203.0.113.2)
nodes=("$(ns_of node1)" "$(ns_of node2)")
add_namespace "$underlay"
ip -n "$underlay" link add br0 type bridge
ip -n "$underlay" link set br0 up
for i in 0 1; do
  add_namespace "${nodes[i]}"
  ip link add underlay0 netns "${nodes[i]}" type veth peer name "node$((i + 1))" netns "$underlay"
  ip -n "$underlay" link set "node$((i + 1))" master br0 up
  ip -n "${nodes[i]}" addr add "${node_ip[i]}/24" dev underlay0
  ip -n "${nodes[i]}" link set underlay0 up
done
wait_for 10 ip netns exec "${nodes[0]}" ping -c 1 -W 1 "${node_ip[1]}" || fail "underlay"

# ---- measurements
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# iperf3_gbps CLIENT_NS SERVER_IP STREAMS: receiver throughput of one run, in Gbit/s.
iperf3_gbps() {
  local out
  out=$(timeout $((duration + 30)) ip netns exec "$1" iperf3 -c "$2" -P "$3" -t "$duration" \
    -f g --connect-timeout 5000 2>&1) || { echo "$out" >&2; fail "iperf3 to $2 (-P $3)"; }
  # -P 1: the stream's receiver line; -P N: the [SUM] receiver line (the last one either way).
  echo "$out" | grep receiver | tail -n 1 |
    awk '{for (i = 1; i <= NF; i++) if ($i == "Gbits/sec") {print $(i - 1); exit}}'
}

# measure LABEL CLIENT_NS SERVER_NS SERVER_IP: sets result[LABEL-1], result[LABEL-4], result[LABEL-rtt].
measure() {
  local label=$1 client=$2 server=$3 ip=$4 streams run values g out rtt
  ip netns exec "$server" iperf3 -s -B "$ip" >"$work/iperf3-$label.log" 2>&1 &
  wait_for 10 ip netns exec "$server" sh -c "ss -ltn | grep -q ':5201 '" || fail "iperf3 server"
  for streams in 1 4; do
    values=""
    for run in $(seq 1 "$runs"); do
      g=$(iperf3_gbps "$client" "$ip" "$streams")
      [ -n "$g" ] || fail "no figure from iperf3 (-P $streams)"
      echo "  ($label) iperf3 -P $streams run $run/$runs: $g Gbit/s"
      values+="$g"$'\n'
    done
    result[$label-$streams]=$(printf '%s' "$values" | median)
  done
  out=$(timeout 30 ip netns exec "$client" ping -c 20 -i 0.2 -q "$ip") || { echo "$out" >&2; fail "ping"; }
  rtt=$(echo "$out" | awk -F'/' '/^(rtt|round-trip)/ {print $5}')
  [ -n "$rtt" ] || fail "no RTT from ping"
  echo "  ($label) ping -c 20 -i 0.2: avg $rtt ms"
  result[$label-rtt]=$rtt
  remove_iperf_server "$server"
}
remove_iperf_server() {
  local pid
  for pid in $(ip netns pids "$1"); do kill "$pid" 2>/dev/null || true; done
}

declare -A result
for key in a-1 a-4 a-rtt an-1 an-4 an-rtt b-1 b-4 b-rtt c-1 c-4 c-rtt d-1 d-4 d-rtt e-1 e-4 e-rtt; do
  result[$key]=-
done
# The routers' CPU time (user + system, clock ticks) while a plane was measured, and the gigabits
# it carried in that time: for (d), the CPU per Gbit/s of the encryption.
declare -A cpu_ticks
router_ticks() { # the routers' CPU ticks (utime + stime) so far, summed over both nodes
  local total=0 pid i comm
  # The kernel's name of the process: the binary's file name, cut to 15 bytes (--weft may name
  # a copy called otherwise).
  comm=$(basename "$weft" | cut -c1-15)
  for i in 0 1; do
    for pid in $(ip netns pids "${nodes[i]}"); do
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || continue
      total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
  done
  echo "$total"
}

# ---- (a) plain kernel VXLAN, by hand
if wants a; then
echo "== (a) plain kernel VXLAN (by hand, MTU 1450)"
pods_a=("$(ns_of a-pod1)" "$(ns_of a-pod2)")
pod_ip_a=(10.99.0.1 10.99.0.2)
for i in 0 1; do
  n=${nodes[i]}
  other=${node_ip[1 - i]}
  ip -n "$n" link add br-bench type bridge
  ip -n "$n" link set br-bench mtu 1450 up
  ip -n "$n" link add vxlan-bench type vxlan id 4242 dstport 4789 local "${node_ip[i]}" \
    dev underlay0 nolearning
  ip -n "$n" link set vxlan-bench mtu 1450 master br-bench up
  ip netns exec "$n" bridge fdb append 00:00:00:00:00:00 dev vxlan-bench dst "$other"
  add_namespace "${pods_a[i]}"
  ip link add eth0 netns "${pods_a[i]}" mtu 1450 type veth peer name vethpod mtu 1450 netns "$n"
  ip -n "$n" link set vethpod master br-bench up
  ip -n "${pods_a[i]}" addr add "${pod_ip_a[i]}/24" dev eth0
  ip -n "${pods_a[i]}" link set eth0 up
done
wait_for 15 ip netns exec "${pods_a[0]}" ping -c 1 -W 1 "${pod_ip_a[1]}" ||
  fail "pods do not reach each other over the hand-made VXLAN"
measure a "${pods_a[0]}" "${pods_a[1]}" "${pod_ip_a[1]}"
# Any node that runs pods masquerades their egress, and a NAT chain turns on connection tracking
# for every packet of the node (a Weft router installs its own; kube-proxy does on any
# Kubernetes node): the same VXLAN with the same masquerading rule is the fair ceiling.
echo "== (a+nat) the same, with the pods' egress masquerading (nftables NAT, as any pod network)"
for i in 0 1; do
  ip netns exec "${nodes[i]}" nft -f - <<'NFT'
table ip bench_masq {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.99.0.0/24 ip daddr 10.99.0.0/24 return
    ip saddr 10.99.0.0/24 masquerade
  }
}
NFT
done
measure an "${pods_a[0]}" "${pods_a[1]}" "${pod_ip_a[1]}"

echo "== tearing (a) down"
for i in 1 0; do
  ip netns exec "${nodes[i]}" nft delete table ip bench_masq
  remove_namespace "${pods_a[i]}"
  ip -n "${nodes[i]}" link del vxlan-bench
  ip -n "${nodes[i]}" link del br-bench
done
fi

# ---- (b) Weft fastdp and (c) Weft sleeve: routers in the nodes, pods from IPAM via weft attach
api() { ip netns exec "${nodes[$1]}" "$weft" --http-addr 127.0.0.1:6784 "${@:2}"; }
has_address() { ip -n "${nodes[$1]}" -4 addr show dev weave 2>/dev/null | grep -q "inet "; }
# weft_plane LETTER OVERLAY [ROUTER OPTION...]: routers, pods, measurement, routers stopped.
weft_plane() {
  local plane=$1 overlay=$2 i
  shift 2
  echo "== ($plane) Weft $overlay ($weft${*:+ $*})"
  for i in 0 1; do
    peers=()
    [ "$i" = 1 ] && peers=("${node_ip[0]}")
    ip netns exec "${nodes[i]}" "$weft" router --name "00:00:00:00:be:0$((i + 1))" \
      --nickname "bench-node$((i + 1))" --host "${node_ip[i]}" --http-addr 127.0.0.1:6784 \
      --metrics-addr 127.0.0.1:6782 --db-prefix "$work/$plane-node$((i + 1))/weave-net" \
      --ipalloc-init consensus=2 --log-level warn "$@" "${peers[@]}" \
      >"$work/$plane-node$((i + 1)).log" 2>&1 &
  done
  # With a password the encryption column (encrypted/unencrypted) sits before the overlay.
  overlay_up() { api "$1" status connections | grep -Eq "established +((un)?encrypted +)?$overlay "; }
  for i in 0 1; do
    wait_for 60 overlay_up "$i" || {
      api "$i" status connections >&2 || true
      tail -n 20 "$work"/"$plane"-node*.log >&2 || true
      fail "node$((i + 1)): no established $overlay connection"
    }
  done
  local pods=("$(ns_of "$plane"-pod1)" "$(ns_of "$plane"-pod2)") pod_ips=() cidr gateway
  for i in 0 1; do
    wait_for 30 has_address "$i" || fail "the weave bridge of node$((i + 1)) got no address from IPAM"
    gateway=$(ip -n "${nodes[i]}" -4 -o addr show dev weave | awk '{print $4; exit}')
    add_namespace "${pods[i]}"
    cidr=$(ip netns exec "${nodes[i]}" curl -sf --noproxy '*' --max-time 10 \
      -X POST "127.0.0.1:6784/ip/bench-pod$((i + 1))") || fail "IPAM gave no address"
    ip netns exec "${nodes[i]}" "$weft" attach --netns "${pods[i]}" --ip "$cidr" \
      --gateway "${gateway%/*}" >/dev/null || fail "weft attach pod$((i + 1))"
    pod_ips+=("${cidr%/*}")
    echo "  pod$((i + 1)): $cidr, MTU $(ip -n "${pods[i]}" -o link show eth0 2>/dev/null |
      grep -o 'mtu [0-9]*' | cut -d' ' -f2)"
  done
  wait_for 20 ip netns exec "${pods[0]}" ping -c 1 -W 1 "${pod_ips[1]}" ||
    fail "pods do not reach each other over Weft $overlay"
  api 0 status connections | sed 's/^/  /'
  local ticks_before
  ticks_before=$(router_ticks)
  measure "$plane" "${pods[0]}" "${pods[1]}" "${pod_ips[1]}"
  cpu_ticks[$plane]=$(($(router_ticks) - ticks_before))
  ip netns exec "${nodes[0]}" curl -sf --noproxy '*' 127.0.0.1:6782/metrics |
    grep -E '^weft_(overlay_(frames|bytes)_total|sleeve_dropped_total)' | sed 's/^/  /' || true
  echo "== stopping the routers of ($plane)"
  for i in 0 1; do remove_iperf_server "${nodes[i]}"; done # every process in the node namespace
  # The next plane starts from fresh devices, as a new node would.
  for i in 0 1; do
    remove_namespace "${pods[i]}"
    ip netns exec "${nodes[i]}" "$weft" reset >/dev/null 2>&1 || true
  done
}
if wants b; then weft_plane b fastdp; fi
if wants c; then weft_plane c sleeve --no-fastdp; fi
if wants d; then
  # The password on the command line is fine for a throwaway benchmark node.
  weft_plane d sleeve --no-fastdp --password "dataplane-bench-$run_id-password"
fi
if wants e; then weft_plane e sleeve --no-fastdp --sleeve-queues 2; fi

# ---- the table
ratio() { awk -v b="$1" -v a="$2" 'BEGIN {if (a > 0) printf "%.2f", b / a; else print "-"}'; }
cpus=$(nproc)
kernel=$(uname -r)
echo
echo "Pod-to-pod over two namespaced nodes, iperf3 -t $duration, median of $runs runs;"
echo "ping -c 20 -i 0.2 average; $cpus CPUs, kernel $kernel."
echo
printf '| %-34s | %14s | %16s | %13s |\n' "data plane" "TCP 1 stream" "TCP 4 streams" "ping RTT avg"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..16})" \
  "$(printf -- '-%.0s' {1..18})" "$(printf -- '-%.0s' {1..15})"
row() { printf '| %-34s | %14s | %16s | %13s |\n' "$@"; }
row "(a) kernel VXLAN by hand (ceiling)" "${result[a-1]} Gbit/s" "${result[a-4]} Gbit/s" "${result[a-rtt]} ms"
row "(a+nat) the same + pods' NAT" "${result[an-1]} Gbit/s" "${result[an-4]} Gbit/s" "${result[an-rtt]} ms"
row "(b) Weft fastdp" "${result[b-1]} Gbit/s" "${result[b-4]} Gbit/s" "${result[b-rtt]} ms"
row "(c) Weft sleeve (--no-fastdp)" "${result[c-1]} Gbit/s" "${result[c-4]} Gbit/s" "${result[c-rtt]} ms"
row "(d) Weft encrypted sleeve" "${result[d-1]} Gbit/s" "${result[d-4]} Gbit/s" "${result[d-rtt]} ms"
row "(e) Weft sleeve, two TAP queues" "${result[e-1]} Gbit/s" "${result[e-4]} Gbit/s" "${result[e-rtt]} ms"
row "ratio b/a" "$(ratio "${result[b-1]}" "${result[a-1]}")" \
  "$(ratio "${result[b-4]}" "${result[a-4]}")" "$(ratio "${result[b-rtt]}" "${result[a-rtt]}")"
row "ratio c/a" "$(ratio "${result[c-1]}" "${result[a-1]}")" \
  "$(ratio "${result[c-4]}" "${result[a-4]}")" "$(ratio "${result[c-rtt]}" "${result[a-rtt]}")"
row "ratio d/a" "$(ratio "${result[d-1]}" "${result[a-1]}")" \
  "$(ratio "${result[d-4]}" "${result[a-4]}")" "$(ratio "${result[d-rtt]}" "${result[a-rtt]}")"
row "ratio d/c (cost of encryption)" "$(ratio "${result[d-1]}" "${result[c-1]}")" \
  "$(ratio "${result[d-4]}" "${result[c-4]}")" "$(ratio "${result[d-rtt]}" "${result[c-rtt]}")"
row "ratio e/a" "$(ratio "${result[e-1]}" "${result[a-1]}")" \
  "$(ratio "${result[e-4]}" "${result[a-4]}")" "$(ratio "${result[e-rtt]}" "${result[a-rtt]}")"
row "ratio e/c (a second queue)" "$(ratio "${result[e-1]}" "${result[c-1]}")" \
  "$(ratio "${result[e-4]}" "${result[c-4]}")" "$(ratio "${result[e-rtt]}" "${result[c-rtt]}")"
row "ratio b/(a+nat)" "$(ratio "${result[b-1]}" "${result[an-1]}")" \
  "$(ratio "${result[b-4]}" "${result[an-4]}")" "$(ratio "${result[b-rtt]}" "${result[an-rtt]}")"
row "ratio c/(a+nat)" "$(ratio "${result[c-1]}" "${result[an-1]}")" \
  "$(ratio "${result[c-4]}" "${result[an-4]}")" "$(ratio "${result[c-rtt]}" "${result[an-rtt]}")"

# CPU per Gbit/s: the routers' CPU seconds over the gigabits both iperf3 phases carried
# (runs x duration x median rate, single and 4 streams).
cpu_per_gbit() { # cpu_per_gbit PLANE
  local ticks=${cpu_ticks[$1]:-} hz
  [ -n "$ticks" ] || { echo "-"; return; }
  hz=$(getconf CLK_TCK)
  awk -v t="$ticks" -v hz="$hz" -v r="$runs" -v d="$duration" -v g1="${result[$1-1]}" \
    -v g4="${result[$1-4]}" 'BEGIN {gbit = r * d * (g1 + g4); if (gbit > 0) printf "%.2f", t / hz / gbit; else print "-"}'
}
echo
echo "Routers' CPU seconds per Gbit carried, i.e. cores per Gbit/s (both nodes): (c) $(cpu_per_gbit c), (d) $(cpu_per_gbit d), (e) $(cpu_per_gbit e)"
