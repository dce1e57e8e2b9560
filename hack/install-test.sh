#!/usr/bin/env bash
# Tests hack/install.sh and hack/uninstall.sh against temporary root directories: install twice
# (the second run changes nothing), check what was installed, uninstall, and compare the tree with
# the original byte for byte (contents, modes, file types); a second uninstall is a no-op.
#   hack/install-test.sh [PODGRAFT_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/podgraft}
[ -x "$binary" ] || cargo build --locked --bin podgraft -q
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
fail() { echo "install-test: FAIL: $*" >&2; exit 1; }

# snapshot DIR: every path with its type and mode, and every file's checksum.
snapshot() {
  (cd "$1" && find . -printf '%y %m %p\n' | sort && find . -type f -print0 | sort -z | xargs -0r sha256sum)
}
install_() { hack/install.sh --root "$1" --binary "$binary" >/dev/null; }
uninstall_() { hack/uninstall.sh --root "$1" >/dev/null; }

check_roundtrip() {
  local root=$1
  snapshot "$root" > "$work/before"
  install_ "$root"
  snapshot "$root" > "$work/once"
  cmp -s "$work/before" "$work/once" && fail "install changed nothing under $root"
  install_ "$root"
  snapshot "$root" > "$work/twice"
  diff -u "$work/once" "$work/twice" || fail "a second install changed the tree"
  check_installed "$root"
  uninstall_ "$root"
  snapshot "$root" > "$work/after"
  diff -u "$work/before" "$work/after" || fail "uninstall did not restore the tree"
  uninstall_ "$root"
  snapshot "$root" > "$work/after2"
  diff -u "$work/before" "$work/after2" || fail "a second uninstall changed the tree"
}

check_installed() {
  local r=$1
  cmp -s "$binary" "$r/usr/local/bin/podgraft" || fail "binary not installed"
  [ "$(stat -c %a "$r/usr/local/bin/podgraft")" = 755 ] || fail "binary mode"
  cmp -s systemd/podgraft.service "$r/etc/systemd/system/podgraft.service" || fail "unit"
  grep -q '^mutable_handlers = \["podgraft"\]' "$r/etc/podgraft/config.toml" || fail "config handler"
  grep -qx 'handler: podgraft' "$r/etc/podgraft/runtimeclass.yaml" || fail "runtimeclass"
  grep -q 'container-runtime-endpoint=unix:///run/podgraft/podgraft.sock' \
    "$r/etc/systemd/system/kubelet.service.d/20-podgraft.conf" || fail "kubelet drop-in"
  # The containerd config parses, keeps what it had and defines the handler's runc runtime.
  python3 - "$r/etc/containerd/config.toml" <<'PY' || fail "containerd config"
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    c = tomllib.load(f)
cri = c["plugins"].get("io.containerd.grpc.v1.cri") or c["plugins"]["cri"]
rt = cri["containerd"]["runtimes"]
assert rt["podgraft"]["runtime_type"] == "io.containerd.runc.v2", rt
if "runc" in rt:  # the existing runtime is kept, and its cgroup driver copied
    assert rt["podgraft"]["options"]["SystemdCgroup"] == rt["runc"]["options"]["SystemdCgroup"], rt
PY
}

# 1. A kubeadm-like node: containerd config (no final newline), kubelet config naming the
#    endpoint, kubeadm flags naming it too, a drop-in directory with kubeadm's drop-in.
node=$work/node
mkdir -p "$node/etc/containerd" "$node/etc/systemd/system/kubelet.service.d" \
  "$node/var/lib/kubelet" "$node/usr/local/bin"
{
  printf 'version = 2\nroot = "/var/lib/containerd"\n\n'
  printf '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
  printf '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true'
} > "$node/etc/containerd/config.toml"
chmod 0600 "$node/etc/containerd/config.toml"
printf '[Service]\nEnvironment="KUBELET_KUBECONFIG_ARGS=--kubeconfig=/etc/kubernetes/kubelet.conf"\n' \
  > "$node/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
printf 'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: "unix:///run/containerd/containerd.sock"\nstaticPodPath: /etc/kubernetes/manifests\n' \
  > "$node/var/lib/kubelet/config.yaml"
printf 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9"' \
  > "$node/var/lib/kubelet/kubeadm-flags.env"
echo "an older podgraft" > "$node/usr/local/bin/podgraft"
chmod 0700 "$node/usr/local/bin/podgraft"
mkdir -p "$node/etc/podgraft"
echo 'mutable_handlers = ["mine"]' > "$node/etc/podgraft/config.toml"

snapshot "$node" > "$work/orig"
install_ "$node"
grep -qx 'containerRuntimeEndpoint: unix:///run/podgraft/podgraft.sock' "$node/var/lib/kubelet/config.yaml" ||
  fail "kubelet config endpoint not rewritten"
grep -q -- '--container-runtime-endpoint=unix:///run/podgraft/podgraft.sock --pod-infra' \
  "$node/var/lib/kubelet/kubeadm-flags.env" || fail "kubeadm flags not rewritten"
grep -qx 'mutable_handlers = \["mine"\]' "$node/etc/podgraft/config.toml" ||
  fail "an existing podgraft config was clobbered"
[ "$(stat -c %a "$node/etc/containerd/config.toml")" = 600 ] || fail "containerd config mode changed"
uninstall_ "$node"
snapshot "$node" > "$work/restored"
diff -u "$work/orig" "$work/restored" || fail "uninstall did not restore the kubeadm-like node"
# The full round trip (the existing podgraft config aside, which check_installed expects default).
rm "$node/etc/podgraft/config.toml"
rmdir "$node/etc/podgraft"
check_roundtrip "$node"

# 2. An empty root: everything is created, and everything goes again.
mkdir "$work/empty"
check_roundtrip "$work/empty"
[ -z "$(ls -A "$work/empty")" ] || fail "uninstall left files in an empty root"

# 3. A version 1 containerd config (no version key): the runtime goes under plugins.cri.
v1=$work/v1
mkdir -p "$v1/etc/containerd"
printf '[plugins.cri]\n  sandbox_image = "pause"\n' > "$v1/etc/containerd/config.toml"
check_roundtrip "$v1"

echo "install-test: ok"
