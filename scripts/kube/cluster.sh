#!/usr/bin/env bash
# A real Kubernetes v1.20.2 cluster on this machine, in network namespaces, offline: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler in one namespace, and N nodes,
# each with containerd, kubelet and kube-proxy in a namespace and a private mount namespace of
# its own. No CNI is installed: the nodes stay NotReady until a network (Weft's DaemonSet)
# writes its config. Nothing attaches to the machine's own network namespace.
#
#   scripts/kube/cluster.sh up [N]        control plane + N nodes (default 2); waits until
#                                         they are registered
#   scripts/kube/cluster.sh kubectl ARGS  kubectl as cluster admin (run in the control plane's
#                                         namespace; the API is not reachable from outside)
#   scripts/kube/cluster.sh node I CMD…   a command on node I (its network and mount namespace)
#   scripts/kube/cluster.sh power-off I   node I dies at once, every process of it
#   scripts/kube/cluster.sh down          stops everything and removes every trace
#
# Layout:   <name>-lan   bridge `lan`, the nodes' network 10.250.10.0/24
#           <name>-cp    10.250.10.1: etcd, kube-apiserver :6443, controller-manager, scheduler
#           <name>-nodeI 10.250.10.(10+I), default route via the control plane
# Settings: WEFT_KUBE_BIN       the Kubernetes binaries (default: scripts/kube/build-binaries.sh)
#           WEFT_CLUSTER_NAME   prefix of the namespaces and cgroups (default weftk)
#           WEFT_CLUSTER_DIR    state, PKI and logs (default /var/tmp/<name>)
#           WEFT_CLUSTER_IMAGES a directory of OCI archives every node's containerd imports
#           KEEP_LOGS=DIR       `down` copies every log there first
# Needs: etcd-server, containerd, runc, iptables, openssl, curl (scripts/test.sh installs them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="${WEFT_CLUSTER_NAME:-weftk}"
dir="${WEFT_CLUSTER_DIR:-/var/tmp/$name}"
lan_prefix=10.250.10
cp_ip="$lan_prefix.1"
service_cidr=10.96.0.0/16
# Where pods get their addresses: the DaemonSet's IPALLOC_RANGE (kube-proxy's --cluster-cidr).
cluster_cidr=10.32.0.0/12
cgroup_controllers=(cpu cpuacct cpuset memory pids systemd)
# Generous: CI is a 2-core machine that may run other work beside the cluster.
wait_secs=180

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
in_cp() { nsenter --net="/run/netns/$name-cp" "$@"; }

kube_bin() {
  if [ -n "${WEFT_KUBE_BIN:-}" ]; then
    echo "$WEFT_KUBE_BIN"
  else
    "$here/build-binaries.sh"
  fi
}

# --- PKI: a CA, the API server's certificate, the ServiceAccount key pair, static tokens --------
make_pki() {
  local pki="$dir/pki" nodes=$1
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
      -subj "/CN=$name-ca" 2>/dev/null
    cat >apiserver.ext <<EOF
subjectAltName = IP:10.96.0.1, IP:$cp_ip, IP:127.0.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:localhost
EOF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 2 -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  # One identity per component, so the real authorizers (RBAC, Node) apply to each.
  : >"$pki/tokens.csv"
  add_identity() { # file user groups
    local token
    token="$(openssl rand -hex 16)"
    echo "$token,$2,$2,\"$3\"" >>"$pki/tokens.csv"
    write_kubeconfig "$dir/$1.kubeconfig" "https://$cp_ip:6443" "$token"
  }
  add_identity admin admin system:masters
  add_identity controller-manager system:kube-controller-manager ""
  add_identity scheduler system:kube-scheduler ""
  add_identity kube-proxy system:kube-proxy ""
  for i in $(seq 1 "$nodes"); do
    add_identity "node$i" "system:node:node$i" system:nodes
  done
  # The admin's, for kubectl in the control plane's namespace.
  local admin_token
  admin_token="$(sed -n 's/^\([^,]*\),admin,.*/\1/p' "$pki/tokens.csv")"
  write_kubeconfig "$dir/admin-local.kubeconfig" "https://127.0.0.1:6443" "$admin_token"
}

write_kubeconfig() { # file server token
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 "$dir/pki/ca.crt")
users:
- name: user
  user:
    token: $3
contexts:
- name: $name
  context: {cluster: $name, user: user}
current-context: $name
EOF
}

# --- cgroups: one tree per cluster, so `down` finds every process it started -----------------
make_cgroup() { # path relative to the controllers' roots
  local controller
  for controller in "${cgroup_controllers[@]}"; do
    mkdir -p "/sys/fs/cgroup/$controller/$1"
  done
  # A new cpuset has no CPUs or memory nodes until given its parent's.
  local path="" part
  for part in ${1//\// }; do
    path="$path/$part"
    cp /sys/fs/cgroup/cpuset/cpuset.cpus "/sys/fs/cgroup/cpuset$path/cpuset.cpus"
    cp /sys/fs/cgroup/cpuset/cpuset.mems "/sys/fs/cgroup/cpuset$path/cpuset.mems"
  done
}

# Starts a command in the background in the control plane's namespace, in the cluster's cgroup.
start_cp() { # log-name command...
  local log_name=$1
  shift
  (
    echo $BASHPID >"/sys/fs/cgroup/pids/$name/cp/cgroup.procs"
    exec nsenter --net="/run/netns/$name-cp" setsid "$@" >"$dir/logs/$log_name.log" 2>&1 </dev/null
  ) &
}

wait_for() { # what command...
  local what=$1 deadline=$((SECONDS + wait_secs))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${wait_secs}s waiting for $what"
    sleep 0.5
  done
}

up() {
  local nodes=${1:-2} bin
  [ ! -e "/run/netns/$name-cp" ] || die "cluster $name is already up (scripts/kube/cluster.sh down)"
  bin="$(kube_bin)"
  for tool in etcd containerd runc iptables openssl curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/test.sh installs it)"
  done
  rm -rf "$dir"
  mkdir -p "$dir/logs"
  echo "$nodes" >"$dir/nodes"
  echo "$bin" >"$dir/kube-bin"
  make_pki "$nodes"
  make_cgroup "$name/cp"

  # The LAN: a bridge in a namespace of its own, one veth per machine.
  ip netns add "$name-lan"
  ip -n "$name-lan" link add lan type bridge
  ip -n "$name-lan" link set lan up
  attach_to_lan() { # netns address
    local port="p${2##*.}"
    ip netns add "$1"
    ip -n "$name-lan" link add "$port" type veth peer name eth0 netns "$1"
    ip -n "$name-lan" link set "$port" master lan up
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set eth0 up
    ip -n "$1" link set lo up
  }
  attach_to_lan "$name-cp" "$cp_ip"
  # The nodes' default gateway answers "unreachable" at once for the outside world (kubelet's
  # cloud-credential probe and DNS would otherwise wait for timeouts).
  ip netns exec "$name-cp" sysctl -qw net.ipv4.ip_forward=1

  log "control plane at $cp_ip"
  start_cp etcd etcd --name "$name" --data-dir "$dir/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380
  local gates="BoundServiceAccountTokenVolume=true"
  start_cp kube-apiserver "$bin/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="$cp_ip" --secure-port=6443 --insecure-port=0 \
    --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" --token-auth-file="$dir/pki/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --service-cluster-ip-range="$service_cidr" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" --feature-gates="$gates"
  wait_for "the API server" in_cp curl -sf --cacert "$dir/pki/ca.crt" https://127.0.0.1:6443/readyz
  start_cp kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/controller-manager.kubeconfig" \
    --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --use-service-account-credentials=true --cluster-signing-cert-file="$dir/pki/ca.crt" \
    --cluster-signing-key-file="$dir/pki/ca.key" --leader-elect=false --port=0 \
    --bind-address=127.0.0.1 --feature-gates="$gates"
  start_cp kube-scheduler "$bin/kube-scheduler" --kubeconfig="$dir/scheduler.kubeconfig" \
    --leader-elect=false --port=0 --bind-address=127.0.0.1

  make_mountpoints
  for i in $(seq 1 "$nodes"); do
    local ip="$lan_prefix.$((10 + i))"
    attach_to_lan "$name-node$i" "$ip"
    ip -n "$name-node$i" route add default via "$cp_ip"
    ip netns exec "$name-node$i" sysctl -qw net.ipv4.ip_forward=1
    make_cgroup "$name/node$i"
    log "node$i at $ip"
    (
      echo $BASHPID >"/sys/fs/cgroup/pids/$name/node$i/cgroup.procs"
      exec nsenter --net="/run/netns/$name-node$i" setsid \
        unshare --mount --propagation private --fork \
        env CLUSTER_NAME="$name" CLUSTER_DIR="$dir" KUBE_BIN="$bin" \
        CLUSTER_IMAGES="${WEFT_CLUSTER_IMAGES:-}" CLUSTER_CIDR="$cluster_cidr" \
        NODE_PATHS="${node_paths[*]}" \
        bash "$here/node.sh" "node$i" "$ip" >"$dir/logs/node$i.log" 2>&1 </dev/null
    ) &
  done
  for i in $(seq 1 "$nodes"); do
    wait_for "node$i to register" kubectl_admin get node "node$i"
  done
  log "up: $nodes nodes registered (NotReady until a network is installed)"
}

# The paths each node has a private copy of (bind mounts in its mount namespace, see node.sh),
# so that everything stays at its default path and two nodes never share a file.
node_paths=(/run/netns /etc/cni/net.d /opt/cni/bin /var/lib/kubelet /var/lib/containerd
  /run/containerd /var/lib/cni /var/log/pods /var/log/containers /var/lib/weave /var/lib/dbus)

# A bind mount needs its mountpoint on the machine: make the missing ones, and remember them
# (every directory made, parents first) so that `down` removes exactly those.
make_mountpoints() {
  local path partial part
  for path in "${node_paths[@]}"; do
    partial=""
    for part in ${path//\// }; do
      partial="$partial/$part"
      if [ ! -e "$partial" ]; then
        mkdir "$partial"
        echo "$partial" >>"$dir/made-mountpoints"
      fi
    done
  done
}

kubectl_admin() {
  local kubectl
  kubectl="$(cat "$dir/kube-bin")/kubectl"
  [ -x "$kubectl" ] || kubectl=kubectl
  in_cp "$kubectl" --kubeconfig="$dir/admin-local.kubeconfig" "$@"
}

on_node() { # index command...
  local i=$1 pid
  shift
  # The node's mount namespace is that of its node.sh (the `unshare` child).
  pid="$(cat "$dir/node$i/node.pid")"
  nsenter --net="/run/netns/$name-node$i" --mount="/proc/$pid/ns/mnt" "$@"
}

# Kills every process in a cgroup tree (default: the cluster's) until none is left.
kill_tree() {
  local root="/sys/fs/cgroup/pids/${1:-$name}" deadline=$((SECONDS + 60)) pids
  [ -d "$root" ] || return 0
  while :; do
    pids="$(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)"
    [ -n "$pids" ] || break
    [ $SECONDS -lt $deadline ] || { log "processes left: $pids"; break; }
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
}

remove_cgroups() {
  local controller
  for controller in "${cgroup_controllers[@]}"; do
    [ -d "/sys/fs/cgroup/$controller/$name" ] || continue
    find "/sys/fs/cgroup/$controller/$name" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# Node I loses power: all its processes die at once and it leaves the network.
power_off() {
  local i=$1
  kill_tree "$name/node$i"
  ip netns delete "$name-node$i" 2>/dev/null || true
}

down() {
  if [ -n "${KEEP_LOGS:-}" ] && [ -d "$dir/logs" ]; then
    mkdir -p "$KEEP_LOGS"
    cp -r "$dir/logs/." "$KEEP_LOGS/" 2>/dev/null || true
    find "$dir" -maxdepth 10 -path '*/var/log/pods/*' -name '*.log' 2>/dev/null | while read -r f; do
      cp "$f" "$KEEP_LOGS/$(echo "${f#"$dir"/}" | tr / _)" 2>/dev/null || true
    done
  fi
  kill_tree
  remove_cgroups
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-(lan|cp|node[0-9]+)$" || true); do
    ip netns delete "$ns"
  done
  # Mountpoints `up` made on the machine for the nodes' private copies.
  if [ -f "$dir/made-mountpoints" ]; then
    tac "$dir/made-mountpoints" | while read -r path; do
      if [ -d "$path" ]; then rmdir "$path" 2>/dev/null || true; else rm -f "$path"; fi
    done
  fi
  rm -rf "$dir"
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down ;;
kubectl) shift; kubectl_admin "$@" ;;
node) shift; on_node "$@" ;;
power-off) shift; power_off "$@" ;;
*) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
