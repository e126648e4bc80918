#!/usr/bin/env bash
# Builds Kubernetes v1.20.2 (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, and a kubectl of the same version for the cluster tests) from Debian bookworm's `kubernetes` source package, offline, with Debian's Go, and
# caches the binaries outside the checkout, keyed on the source version and our patch level.
# A cached build costs nothing; a fresh machine pays ~5.5 min on 2 cores once.
#
#   scripts/kube/build-binaries.sh        prints the directory holding the binaries
#
# WEFT_KUBE_CACHE (default /var/cache/weft-kube) is where builds are kept. The 3 GB build tree
# goes under a temporary directory in /var/tmp and is removed afterwards.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache_root="${WEFT_KUBE_CACHE:-/var/cache/weft-kube}"
# The source package's version, pinned: bookworm's only Kubernetes whose vendor/ is complete.
source_version="1.20.5+really1.20.2-1.1+deb12u1"
upstream_dir="kubernetes-1.20.2"
# Bumped whenever what we change in the tree changes, so an older cached build is rebuilt.
patch_level="reflect2-go118.1"
wanted=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
out="$cache_root/$source_version-$patch_level"

# A cache made before a binary joined the list keeps what it has and builds only what is missing.
binaries=()
for b in "${wanted[@]}"; do
  [ -f "$out/.complete" ] && [ -x "$out/$b" ] || binaries+=("$b")
done
if [ ${#binaries[@]} -eq 0 ]; then
  echo "$out"
  exit 0
fi

log() { echo "build-binaries: $*" >&2; }

# Debian's source packages: a deb-src twin of every deb stanza of the machine's sources.
src_list=/etc/apt/sources.list.d/weft-debian-src.sources
if ! apt-get indextargets --format '$(CREATED_BY)' 2>/dev/null | grep -q '^Sources$'; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$src_list"
  else
    grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >/etc/apt/sources.list.d/weft-debian-src.list
  fi
  apt-get update -qq
fi
# Debian's Go 1.19 is the toolchain Debian builds this package with; the Makefile wants rsync.
tools=()
for need in go:golang-go rsync:rsync make:make patch:patch; do
  command -v "${need%%:*}" >/dev/null 2>&1 || tools+=("${need#*:}")
done
if [ ${#tools[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tools[@]}" >/dev/null
fi

work="$(mktemp -d /var/tmp/weft-kube-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT
log "fetching the source of kubernetes $source_version"
(cd "$work" && apt-get source --download-only -qq "kubernetes=$source_version" >/dev/null 2>&1)
tar xzf "$work"/kubernetes_*.orig.tar.gz -C "$work"
tree="$work/$upstream_dir"
patch -d "$tree" -p1 --quiet <"$here/reflect2-go118.patch"

# The fix is proven before the long build: json-iterator encoding a non-empty map faulted before it.
mkdir -p "$tree/hack/weft-reflect2-check"
cat >"$tree/hack/weft-reflect2-check/main.go" <<'GO'
package main

import (
	"fmt"

	jsoniter "github.com/json-iterator/go"
)

func main() {
	out, err := jsoniter.ConfigCompatibleWithStandardLibrary.Marshal(map[string]string{"a": "1", "b": "2"})
	if err != nil || string(out) != `{"a":"1","b":"2"}` {
		panic(fmt.Sprintf("json-iterator map encoding broken: %s %v", out, err))
	}
}
GO
export HOME="$work/home" GOPROXY=off GOFLAGS=
# GOPATH mode, as the 1.20 tree's own build runs it: the vendored packages resolve without go.mod.
mkdir -p "$work/gopath/src/k8s.io"
ln -s "$tree" "$work/gopath/src/k8s.io/kubernetes"
(cd "$work/gopath/src/k8s.io/kubernetes" &&
  GOPATH="$work/gopath" GO111MODULE=off GOCACHE="$work/gocache" go run ./hack/weft-reflect2-check)
rm -rf "$tree/hack/weft-reflect2-check" "$work/gocache"

log "building ${binaries[*]} (about 5.5 min on 2 cores)"
started=$(date +%s)
what=""
for b in "${binaries[@]}"; do what+=" cmd/$b"; done
(cd "$tree" && nice -n 19 make WHAT="${what# }" >"$work/make.log" 2>&1) || {
  tail -40 "$work/make.log" >&2
  exit 1
}
log "built in $(($(date +%s) - started)) s"

rm -rf "$out.partial"
mkdir -p "$out.partial"
if [ -f "$out/.complete" ]; then
  cp -a "$out/." "$out.partial/"
fi
for b in "${binaries[@]}"; do
  cp "$tree/_output/bin/$b" "$out.partial/$b"
done
touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "$out"
