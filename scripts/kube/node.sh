#!/usr/bin/env bash
# One Kubernetes node of scripts/kube/cluster.sh: containerd, kubelet and kube-proxy. It runs
# in the node's network namespace and in a private mount namespace (cluster.sh starts it under
# `nsenter --net … unshare --mount --propagation private`), where it gives the node what a real
# machine would have of its own:
#   - a sysfs of its network namespace that still shows the cgroups (`ip netns exec` loses them,
#     and runc and kubelet need them);
#   - private copies of the standard paths (NODE_PATHS: CNI dirs, kubelet's and containerd's
#     state, /var/lib/weave, /run/netns …), bind-mounted from the node's directory, so every
#     component and every DaemonSet hostPath uses its default path and no two nodes share one;
#   - its own machine-id (Weft derives its peer name from it);
#   - private files over the six global sysctls kubelet writes at start, so it cannot change the
#     machine's (kernel.panic_on_oops and others).
#
#   node.sh NODE IP     with CLUSTER_NAME, CLUSTER_DIR, KUBE_BIN, CLUSTER_IMAGES, CLUSTER_CIDR
#                       and NODE_PATHS in the environment
set -euo pipefail
node=$1
ip=$2
root="$CLUSTER_DIR/$node"
logs="$CLUSTER_DIR/logs"
mkdir -p "$root"
echo $$ >"$root/node.pid"
log() { echo "$(date +%T) $node: $*"; }

# --- the node's filesystem view ----------------------------------------------------------------
saved_cgroups="$(mktemp -d)"
mount --rbind /sys/fs/cgroup "$saved_cgroups"
mount -t sysfs sysfs /sys
mount --rbind "$saved_cgroups" /sys/fs/cgroup
umount -l "$saved_cgroups"
rmdir "$saved_cgroups"

for path in $NODE_PATHS; do
  mkdir -p "$root/fs$path"
  mount --bind "$root/fs$path" "$path"
done
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/machine-id"
echo >>"$root/machine-id"
mount --bind "$root/machine-id" /etc/machine-id
cp "$root/machine-id" /var/lib/dbus/machine-id

mkdir -p "$root/sysctl"
for key in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  private="$root/sysctl/${key//\//.}"
  cat "/proc/sys/$key" >"$private"
  mount --bind "$private" "/proc/sys/$key"
done

# Children die with the node: `cluster.sh down` kills the cgroup tree, this is for a plain kill.
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT TERM INT

# --- containerd --------------------------------------------------------------------------------
# The defaults, but: the pause image we import (no registry), no oom_score_adj below our own
# (no CAP_SYS_RESOURCE here), and no snapshotters this kernel does not have.
containerd config default |
  sed -e 's#sandbox_image = .*#sandbox_image = "localhost/pause:local"#' \
    -e 's#restrict_oom_score_adj = false#restrict_oom_score_adj = true#' \
    -e 's#^disabled_plugins = \[\]#disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]#' \
    >"$root/containerd.toml"
containerd --config "$root/containerd.toml" >"$logs/$node-containerd.log" 2>&1 &
for _ in $(seq 1 240); do
  ctr version >/dev/null 2>&1 && break
  sleep 0.5
done
if [ -n "${CLUSTER_IMAGES:-}" ]; then
  for image in "$CLUSTER_IMAGES"/*.tar; do
    [ -e "$image" ] || continue
    ctr -n k8s.io images import --platform linux/amd64 "$image" >/dev/null
    log "imported ${image##*/}"
  done
fi

# --- kubelet -----------------------------------------------------------------------------------
echo "nameserver 10.96.0.10" >"$root/resolv.conf"
cat >"$root/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /$CLUSTER_NAME/$node
enforceNodeAllocatable: [pods]
failSwapOn: false
# The API server reaches kubelets for logs and exec with no client certificate here.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
resolvConf: $root/resolv.conf
# The machine's disk is shared by every node: no image GC, no disk-pressure taints.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
EOF
"$KUBE_BIN/kubelet" --config="$root/kubelet.yaml" --kubeconfig="$CLUSTER_DIR/$node.kubeconfig" \
  --container-runtime=remote --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
  --hostname-override="$node" --node-ip="$ip" --root-dir=/var/lib/kubelet \
  --cert-dir=/var/lib/kubelet/pki --v=1 >"$logs/$node-kubelet.log" 2>&1 &

# --- kube-proxy (iptables mode), kept away from the machine-wide conntrack settings -----------
"$KUBE_BIN/kube-proxy" --kubeconfig="$CLUSTER_DIR/kube-proxy.kubeconfig" \
  --hostname-override="$node" --bind-address="$ip" --cluster-cidr="$CLUSTER_CIDR" \
  --proxy-mode=iptables --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 \
  --conntrack-tcp-timeout-close-wait=0 --metrics-bind-address=127.0.0.1:10249 \
  --healthz-bind-address=127.0.0.1:10256 >"$logs/$node-kube-proxy.log" 2>&1 &

log "containerd, kubelet and kube-proxy started"
wait
