#!/usr/bin/env bash
# Packs gzip-compressed layer tarballs into an OCI image-layout archive, the format that
# `ctr images import`, `skopeo copy oci-archive:…` and `podman load` take: no container daemon
# or registry involved. deploy/build-image.sh packs Weft's image with it; the cluster tests pack
# their small workload images with it too.
#
#   deploy/oci-archive.sh --out FILE --name REF --entrypoint JSON [--cmd JSON] \
#       [--label KEY=VALUE]... [--created RFC3339] LAYER.tar.gz...
#
# REF is the full reference (e.g. localhost/weft:0.1.0); containerd names the imported image
# after the index's io.containerd.image.name annotation.
set -euo pipefail
out="" name="" entrypoint="" cmd="null" created="" labels=""
while [ $# -gt 0 ]; do
  case "$1" in
  --out) out="$2"; shift 2 ;;
  --name) name="$2"; shift 2 ;;
  --entrypoint) entrypoint="$2"; shift 2 ;;
  --cmd) cmd="$2"; shift 2 ;;
  --created) created="$2"; shift 2 ;;
  --label)
    labels+="${labels:+, }\"${2%%=*}\": \"${2#*=}\""
    shift 2
    ;;
  --*) echo "oci-archive: unknown option $1" >&2; exit 2 ;;
  *) break ;;
  esac
done
if [ -z "$out" ] || [ -z "$name" ] || [ -z "$entrypoint" ] || [ $# -eq 0 ]; then
  echo "usage: $0 --out FILE --name REF --entrypoint JSON [--cmd JSON] LAYER.tar.gz..." >&2
  exit 2
fi
created="${created:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}"

layout="$(mktemp -d "${TMPDIR:-/tmp}/oci-layout.XXXXXX")"
trap 'rm -rf "$layout"' EXIT
mkdir -p "$layout/blobs/sha256"
# Stores a file as a blob; prints "<digest> <size>".
add_blob() {
  local digest size
  digest="$(sha256sum "$1" | cut -d' ' -f1)"
  size="$(stat -c %s "$1")"
  cp "$1" "$layout/blobs/sha256/$digest"
  echo "$digest $size"
}

layers="" diff_ids="" history=""
for layer in "$@"; do
  read -r digest size < <(add_blob "$layer")
  layers+="${layers:+,
    }{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"sha256:$digest\", \"size\": $size}"
  diff_ids+="${diff_ids:+, }\"sha256:$(gzip -dc "$layer" | sha256sum | cut -d' ' -f1)\""
  history+="${history:+, }{\"created\": \"$created\", \"created_by\": \"${layer##*/}\"}"
done

cat >"$layout/config.json" <<JSON
{
  "architecture": "amd64",
  "os": "linux",
  "created": "$created",
  "config": {
    "Entrypoint": $entrypoint,
    "Cmd": $cmd,
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Labels": {$labels}
  },
  "rootfs": {"type": "layers", "diff_ids": [$diff_ids]},
  "history": [$history]
}
JSON
read -r config_digest config_size < <(add_blob "$layout/config.json")
rm "$layout/config.json"
cat >"$layout/manifest.json" <<JSON
{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:$config_digest", "size": $config_size},
  "layers": [
    $layers
  ]
}
JSON
read -r manifest_digest manifest_size < <(add_blob "$layout/manifest.json")
rm "$layout/manifest.json"
cat >"$layout/index.json" <<JSON
{
  "schemaVersion": 2,
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:$manifest_digest",
      "size": $manifest_size,
      "platform": {"architecture": "amd64", "os": "linux"},
      "annotations": {
        "io.containerd.image.name": "$name",
        "org.opencontainers.image.ref.name": "${name##*:}"
      }
    }
  ]
}
JSON
echo '{"imageLayoutVersion": "1.0.0"}' >"$layout/oci-layout"
mkdir -p "$(dirname "$out")"
tar -C "$layout" --numeric-owner --owner=0 --group=0 --sort=name -cf "$out.partial" .
mv "$out.partial" "$out"
