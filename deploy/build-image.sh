#!/usr/bin/env bash
# Builds Weft's container image without a container daemon or a registry: the same image as
# deploy/Dockerfile, packed as an OCI image-layout archive that `ctr images import`,
# `skopeo copy oci-archive:…` and `podman load` take.
#
#   deploy/build-image.sh [--binaries DIR] [--name REF] [--out FILE]
#
#   --binaries DIR  take `weft` and the CNI plugin `weave-net` from DIR instead of building them
#                   with `cargo build --release` (the tests pass the binaries they already built)
#   --name REF      the image reference recorded in the archive (default localhost/weft:<version>)
#   --out FILE      where the archive goes (default target/weft-image.tar)
#
# Two layers:
#   1. a Debian bookworm root filesystem from the apt mirror (`mmdebstrap --variant=extract`):
#      libc, dash, coreutils, `ip` and `nft`, Debian's reference CNI plugins `portmap` and
#      `loopback` (the conflist chains portmap; containerd needs loopback for every pod), and
#      busybox (not linked into PATH: `busybox wget|nc|ping …` for debugging on a node). It is
#      cached under WEFT_IMAGE_CACHE (default /var/cache/weft-image), keyed on its package list;
#   2. /usr/local/bin/{weft, weave -> weft, weave-net}, stripped.
# Prints the archive's path and size on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

binaries=""
name=""
out="$repo/target/weft-image.tar"
while [ $# -gt 0 ]; do
  case "$1" in
  --binaries) binaries="$2"; shift 2 ;;
  --name) name="$2"; shift 2 ;;
  --out) out="$2"; shift 2 ;;
  *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)"
name="${name:-localhost/weft:$version}"
log() { echo "build-image: $*" >&2; }

for tool in mmdebstrap sha256sum gzip strip; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build-image: $tool is missing (apt-get install mmdebstrap binutils)" >&2
    exit 1
  }
done

if [ -z "$binaries" ]; then
  log "cargo build --release"
  (cd "$repo" && cargo build --release --locked --quiet -p weft -p weave-net-cni)
  binaries="${CARGO_TARGET_DIR:-$repo/target}/release"
fi
for binary in weft weave-net; do
  [ -x "$binaries/$binary" ] || { echo "build-image: no $binaries/$binary" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/weft-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- layer 1: the Debian root filesystem, cached -------------------------------------------
# The packages, and what of them we keep. iproute2 and nftables are dynamically linked against
# about ten libraries each, which is why this is a real Debian tree and not a hand-made layer.
packages="libc6,libgcc-s1,dash,coreutils,iproute2,nftables,containernetworking-plugins,busybox"
kept_cni_plugins="portmap loopback"
rootfs_format=1 # bumped when the pruning below changes
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
mirror="${mirror:-http://deb.debian.org/debian}"
cache="${WEFT_IMAGE_CACHE:-/var/cache/weft-image}"
key="$(printf '%s|%s|%s|%s' "$packages" "$kept_cni_plugins" "$rootfs_format" "$mirror" | sha256sum | cut -c1-16)"
rootfs_layer="$cache/rootfs-$key.tar.gz"
if [ ! -f "$rootfs_layer" ]; then
  log "debian rootfs from $mirror ($packages)"
  mkdir -p "$cache" "$work/rootfs"
  mmdebstrap --quiet --variant=extract --include="$packages" bookworm "$work/rootfs.tar" "$mirror"
  tar -C "$work/rootfs" -xf "$work/rootfs.tar"
  rm -f "$work/rootfs.tar"
  (
    cd "$work/rootfs"
    # Device nodes come from the runtime; documentation is dead weight in an image.
    rm -rf dev/* usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian \
      var/cache/apt var/lib/apt/lists/* var/log/*
    for plugin in usr/lib/cni/*; do
      case " $kept_cni_plugins " in *" ${plugin##*/} "*) ;; *) rm -f "$plugin" ;; esac
    done
    # dash's postinst would make /bin/sh; extract runs no maintainer scripts.
    [ -e usr/bin/sh ] || [ -L usr/bin/sh ] || ln -s dash usr/bin/sh
    if [ -d bin ] && [ ! -L bin ] && [ ! -e bin/sh ]; then ln -s /usr/bin/dash bin/sh; fi
  )
  tar -C "$work/rootfs" --numeric-owner --sort=name -cf - . | gzip -n -6 >"$rootfs_layer.partial"
  mv "$rootfs_layer.partial" "$rootfs_layer"
  rm -rf "$work/rootfs"
fi

# --- layer 2: our binaries ---------------------------------------------------------------------
app="$work/app"
mkdir -p "$app/usr/local/bin"
for binary in weft weave-net; do
  strip -o "$app/usr/local/bin/$binary" "$binaries/$binary"
done
ln -s weft "$app/usr/local/bin/weave"
app_layer="$work/app.tar.gz"
tar -C "$app" --numeric-owner --owner=0 --group=0 --sort=name -cf - . | gzip -n -6 >"$app_layer"

# --- the OCI image layout ---------------------------------------------------------------------
created="$(date -u -d "@${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}" +%Y-%m-%dT%H:%M:%SZ)"
"$here/oci-archive.sh" --out "$out" --name "$name" --created "$created" \
  --entrypoint '["/usr/local/bin/weft"]' --cmd '["router"]' \
  --label org.opencontainers.image.title=weft \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$rootfs_layer" "$app_layer"
rootfs_size="$(stat -c %s "$rootfs_layer")"
app_size="$(stat -c %s "$app_layer")"
unpacked=$(( $(gzip -dc "$rootfs_layer" | wc -c) + $(gzip -dc "$app_layer" | wc -c) ))
log "$name: $(( (rootfs_size + app_size) / 1024 / 1024 )) MiB compressed, $(( unpacked / 1024 / 1024 )) MiB unpacked"
echo "$out"
