#!/usr/bin/env bash
# The sandbox image the cluster tests need besides Weft's, built locally (no registry):
# localhost/pause:local, a static C `pause` that exits on SIGTERM. (The test workloads run
# Weft's own image, whose busybox serves and probes.)
#
#   scripts/kube/test-images.sh OUT_DIR     writes OUT_DIR/pause.tar (an OCI archive)
# Needs gcc with a static libc (libc6-dev).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/weft-test-images.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/pause"

cat >"$work/pause.c" <<'C'
#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) { signal(SIGINT, done); signal(SIGTERM, done); for (;;) pause(); }
C
gcc -static -O2 -o "$work/pause/pause" "$work/pause.c"
tar -C "$work/pause" --numeric-owner --owner=0 --group=0 -cf - . | gzip -n >"$work/pause.tar.gz"
"$here/../../deploy/oci-archive.sh" --out "$out/pause.tar" --name localhost/pause:local \
  --entrypoint '["/pause"]' "$work/pause.tar.gz"

echo "$out"
