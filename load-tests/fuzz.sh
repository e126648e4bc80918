#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that reads bytes from the network (fuzz/: framing,
# handshake, sealed links, link messages, topology gossip, IPAM gossip, sleeve datagrams, sealed
# sleeve datagrams, fragment reassembly, the CNI config and prevResult), with libFuzzer on the
# stable toolchain.
#
#   load-tests/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 300 s, every target)
#
# cargo-fuzz is not needed: it would only set the flags below, and its default AddressSanitizer
# needs a nightly compiler. The instrumentation libFuzzer feeds on (SanitizerCoverage: 8-bit edge
# counters, the PC table, comparison tracing) is reached on stable through `-Cpasses` and
# `-Cllvm-args`, and libfuzzer-sys builds libFuzzer itself from source with the system's C++
# compiler. `--target` keeps the flags off build scripts and proc macros, which run at build time
# without libFuzzer's runtime to link against.
#
# Each target starts from its committed seeds (fuzz/corpus/TARGET, real encodings; read only)
# and a working corpus kept in the target directory between runs, so long runs build on each
# other. A crash, panic, failed property, an input running over 10 s or out-of-memory
# stops that target and fails the script; libFuzzer writes the input to fuzz/artifacts/TARGET/,
# which should be added to the corpus once the decoder is fixed. Prints executions and
# executions per second for each target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-300}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v g++ >/dev/null 2>&1 && ! command -v c++ >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^weft-fuzz$')
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
# The fuzz crate is a workspace of its own: its builds never disturb the main one's.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"
# What cargo-fuzz passes with `--sanitizer none`. --cfg fuzzing is what fuzzing-aware crates test.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"

build_start=$SECONDS
echo "== building the fuzz targets (release, instrumented, $host)"
(cd fuzz && nice cargo build --quiet --release --locked --target "$host" \
  $(printf -- '--bin %s ' "${targets[@]}"))
echo "== built in $((SECONDS - build_start)) s"

bin_dir="$CARGO_TARGET_DIR/$host/release"
work="$CARGO_TARGET_DIR/fuzz-corpus"
failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "fuzz/artifacts/$target" "fuzz/corpus/$target"
  log="$CARGO_TARGET_DIR/fuzz-$target.log"
  echo "== $target: ${seconds} s"
  set +e
  nice "$bin_dir/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" \
    "$work/$target" "fuzz/corpus/$target" >"$log" 2>&1
  status=$?
  set -e
  # A run that failed early (on a seed, say) has no statistics: these must not stop the script
  # before it reports the failure.
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  corpus="$(find "$work/$target" -type f | wc -l)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    echo "!! $target failed (exit $status); the panic and the end of its log ($log):"
    grep -m1 -A3 'panicked at' "$log" || true
    tail -15 "$log"
    summary+=("$(printf '%-18s %12s %10s %8s %8s  FAILED' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}" "$corpus")")
  else
    summary+=("$(printf '%-18s %12s %10s %8s %8s  ok' "$target" "$runs" "$rate" "${cov:-?}" "$corpus")")
  fi
done

echo "== fuzzing: ${seconds} s per target"
printf '%-18s %12s %10s %8s %8s\n' target executions exec/s edges corpus
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
