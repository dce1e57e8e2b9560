#!/usr/bin/env bash
# Fuzzes podgraft's hostile-input paths with cargo-fuzz (libFuzzer), each target for a bounded
# time: the protobuf wire helpers (`wire`), the relay's hiding filters, framing and masks over
# kubelet responses (`hide`), and the control API's spec conversion and admission (`control_spec`).
#
#   hack/fuzz.sh [SECONDS] [TARGET...]     # default: 60 seconds each, every target
#
# Needs a nightly toolchain (`cargo +nightly`) and a C++ compiler; installs cargo-fuzz once.
# Works offline once the crates are fetched. Inputs that grow coverage are kept in
# fuzz/corpus/<target>/ (not committed); the committed seeds are fuzz/seeds/<target>/ and the
# findings fuzz/regressions/<target>/. Exits non-zero on the first crash, naming the artifact:
# fix the bug, then copy the artifact to fuzz/regressions/<target>/ so that `cargo nextest run`
# replays it (src/fuzzing/).
#
# Environment: FUZZ_ARGS (more libFuzzer flags, e.g. "-jobs=2 -workers=2"), CARGO_FUZZ_VERSION
# (pin for the install).
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(wire hide control_spec)
case "$seconds" in '' | *[!0-9]*)
  echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2
  exit 2
  ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked ${CARGO_FUZZ_VERSION:+--version "$CARGO_FUZZ_VERSION"}
fi

# cargo-fuzz builds optimized with debug assertions, overflow checks and AddressSanitizer.
echo "fuzz: building ${targets[*]}"
for t in "${targets[@]}"; do
  cargo +nightly fuzz build "$t"
done

for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  artifacts="fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log"
  mkdir -p "$corpus" "$artifacts"
  # New inputs go to the first directory; seeds and regressions are only read.
  dirs=("$corpus" "fuzz/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  echo "fuzz: $t for ${seconds}s (log: $log)"
  set +e
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  cargo +nightly fuzz run "$t" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  set -e
  # libFuzzer's last progress line (executions, coverage, corpus) and its final figures.
  grep -E '^#[0-9]+' "$log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc):" >&2
    grep -E -m 5 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY" "$log" >&2 ||
      tail -n 30 "$log" >&2
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | cut -d' ' -f5)
    if [ -n "$artifact" ]; then
      echo "fuzz: artifact: $artifact" >&2
      echo "fuzz: reproduce: cargo +nightly fuzz run $t $artifact" >&2
      echo "fuzz: once fixed, keep it: cp $artifact fuzz/regressions/$t/" >&2
    fi
    exit 1
  fi
done
echo "fuzz: no crash in ${targets[*]} (${seconds}s each)"
