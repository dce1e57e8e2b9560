#!/usr/bin/env bash
# Brings up a local node on this machine: a private containerd (own root, state and socket under
# DIR, default /tmp/podgraft-node) with podgraft in front of it, and shows it serving by calling
# Version and Status through podgraft. Ctrl-C stops podgraft and then containerd, leaving nothing.
#
#   hack/up.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/podgraft-node}

hack/install-deps.sh
hack/build-images.py target/test-images >/dev/null
cargo build --release --bins --examples

sock=$(hack/containerd.sh start "$dir")
cleanup() {
  [ -n "${pg:-}" ] && kill "$pg" 2>/dev/null && wait "$pg" 2>/dev/null
  hack/containerd.sh stop "$dir"
}
trap cleanup EXIT INT TERM

target/release/podgraft serve --config /dev/null --listen "$dir/podgraft.sock" --runtime-endpoint "$sock" &
pg=$!
for _ in $(seq 1 100); do [ -S "$dir/podgraft.sock" ] && break; sleep 0.05; done

echo
echo "podgraft is serving CRI on unix://$dir/podgraft.sock in front of unix://$sock"
target/release/examples/cri-ping "$dir/podgraft.sock"
echo
echo "Point a kubelet or crictl at it: --container-runtime-endpoint=unix://$dir/podgraft.sock"
echo "Ctrl-C to stop."
wait "$pg"
