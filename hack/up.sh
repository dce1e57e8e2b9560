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

cat > "$dir/podgraft.toml" <<TOML
mutable_handlers = ["podgraft"]
state_dir = "$dir/podgraft-state"
TOML
target/release/podgraft serve --config "$dir/podgraft.toml" --control "$dir/control.sock" \
  --listen "$dir/podgraft.sock" --runtime-endpoint "$sock" &
pg=$!
for _ in $(seq 1 100); do [ -S "$dir/podgraft.sock" ] && [ -S "$dir/control.sock" ] && break; sleep 0.05; done

echo
echo "podgraft is serving CRI on unix://$dir/podgraft.sock in front of unix://$sock"
target/release/examples/cri-ping "$dir/podgraft.sock"
echo "control API: $dir/control.sock (pods with RuntimeClass handler \"podgraft\" are mutable)"
target/release/podgraft --control "$dir/control.sock" ls
echo
echo "Point a kubelet or crictl at it: --container-runtime-endpoint=unix://$dir/podgraft.sock"
echo "Add containers: target/release/podgraft --control $dir/control.sock add NAMESPACE/POD --name tool --image podgraft.test/busybox:1 -- sleep 3600"
echo "Ctrl-C to stop."
wait "$pg"
