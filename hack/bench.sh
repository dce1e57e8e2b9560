#!/usr/bin/env bash
# Runs the benchmarks (add latency, relay latency during adds, relay overhead on a fake backend and
# real containerd, the probe engine under load, a GC sweep and an exit poll over 1,000 containers) after installing what it needs.
# Figures go to stdout; copy them into docs/benchmarks.md with the date and this command.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/install-deps.sh
hack/build-images.py target/test-images >/dev/null
cargo bench --bench add "$@"
cargo bench --bench relay_during_adds "$@"
cargo bench --bench relay "$@"
cargo bench --bench probes "$@"
cargo bench --bench gc "$@"
