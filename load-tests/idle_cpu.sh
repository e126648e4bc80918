#!/usr/bin/env bash
# Idle CPU of routers in a 30-peer mesh with the data plane on (fastdp, sleeve, MAC learner,
# IPAM): N network namespaces on one underlay bridge, a `weft router` in each (all linked with
# all, every link on fastdp), left idle, and the CPU time each router used over the idle window
# read from /proc/<pid>/stat (utime + stime). Prints per-router CPU seconds, their median and
# the total; run it once per binary to compare two builds on the same machine.
#
# Usage: load-tests/idle_cpu.sh [WEFT_BINARY] [ROUTERS] [IDLE_SECONDS]
#   defaults: target/release/weft, 30 routers, 60 s idle after a 40 s settling time (SETTLE=s
#   changes it; STAR=1 links every router to the first one only).
# Needs root (namespaces, veth, bridge, VXLAN). Everything it makes is removed on exit, also on
# failure or Ctrl-C. Namespaces are named weft-idle-<pid>-*.
set -euo pipefail

WEFT=${1:-target/release/weft}
ROUTERS=${2:-30}
IDLE=${3:-60}
# Time for the mesh to form, IPAM to agree and every link to settle on fastdp (seconds).
SETTLE=${SETTLE:-40}
# STAR=1: no discovery, every router linked to router 1 only: the same 30-peer topology with
# 29 links instead of 435, which settles at once (the full mesh of debug builds on 2 cores
# keeps re-making a few links).
DISCOVERY=()
[ "${STAR:-0}" = 1 ] && DISCOVERY=(--no-discovery)
TAG="weft-idle-$$"
DIR=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$TAG-" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

[ -x "$WEFT" ] || { echo "no weft binary at $WEFT" >&2; exit 2; }
TICKS=$(getconf CLK_TCK)

ip netns add "$TAG-u"
ip -n "$TAG-u" link add br0 type bridge
ip -n "$TAG-u" link set br0 up
for i in $(seq 1 "$ROUTERS"); do
  ns="$TAG-n$i"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add underlay0 netns "$ns" type veth peer name "p$i" netns "$TAG-u"
  ip -n "$TAG-u" link set "p$i" master br0 up
  ip -n "$ns" addr add "198.18.0.$((10 + i))/24" dev underlay0
  ip -n "$ns" link set underlay0 up
done

for i in $(seq 1 "$ROUTERS"); do
  ns="$TAG-n$i"
  name=$(printf '00:00:00:00:%02x:%02x' $((i / 256)) $((i % 256)))
  peers=()
  # Each router is given the first router; discovery links everyone with everyone (unless STAR).
  [ "$i" -gt 1 ] && peers=(198.18.0.11)
  ip netns exec "$ns" "$WEFT" router --name "$name" --nickname "n$i" --host "198.18.0.$((10 + i))" \
    --http-addr 127.0.0.1:6784 --metrics-addr 127.0.0.1:6782 --db-prefix "$DIR/n$i/weave-net" \
    --ipalloc-range 10.32.0.0/12 --ipalloc-init "consensus=$ROUTERS" "${DISCOVERY[@]}" "${peers[@]}" \
    >/dev/null 2>"$DIR/n$i.log" &
  PIDS+=($!)
done

sleep "$SETTLE"
# Every router's links by state and overlay, summed: the two builds compared must idle in the
# same mesh.
for i in $(seq 1 "$ROUTERS"); do
  ip netns exec "$TAG-n$i" "$WEFT" --http-addr 127.0.0.1:6784 status connections || true
done | awk '{ n[$3 " " $4]++ } END { for (k in n) printf "%s: %d links\n", k, n[k] }' | sort

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A before
for pid in "${PIDS[@]}"; do before[$pid]=$(cpu_ticks "$pid"); done
sleep "$IDLE"
used=()
for pid in "${PIDS[@]}"; do
  used+=($(($(cpu_ticks "$pid") - before[$pid])))
done
printf '%s\n' "${used[@]}" | sort -n | awk -v t="$TICKS" -v idle="$IDLE" '
  { v[NR] = $1 / t; sum += $1 / t }
  END {
    median = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "routers %d, idle %d s: CPU seconds per router median %.2f, min %.2f, max %.2f, total %.2f\n",
      NR, idle, median, v[1], v[NR], sum
  }'
