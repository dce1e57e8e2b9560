#!/usr/bin/env bash
# A private containerd for tests and local runs: own root, state, config, socket and CNI config under
# DIR; never the system's. Imports the offline test images into the k8s.io namespace.
#
#   hack/containerd.sh start DIR   start (idempotent: a running instance in DIR is reused)
#   hack/containerd.sh stop DIR    stop it and remove every pod, container, mount, cgroup and bridge
#
# Prints the CRI socket path on start. Logs: DIR/containerd.log.
set -euo pipefail

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
sock=$dir/containerd.sock
images=${PODGRAFT_IMAGE_DIR:-$here/../target/test-images}
# One bridge per instance so parallel instances do not collide; names are at most 15 characters.
id=$(printf '%s' "$dir" | sha256sum | cut -c1-8)
bridge=pg$id
# A /24 picked from the instance id inside 10.234.0.0/16; pods only talk to each other and the host.
subnet=10.234.$(( 0x${id:0:2} )).0/24

# Bounded: a containerd that is going away (its socket already removed) must not hang a stop.
ctr_() { timeout 20 ctr --connect-timeout 5s --address "$sock" --namespace k8s.io "$@"; }

running() { [ -f "$dir/containerd.pid" ] && kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null; }

write_config() {
  mkdir -p "$dir/root" "$dir/state" "$dir/cni/net.d" "$dir/certs.d" "$dir/opt"
  cat > "$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "podgraft.test/pause:1"
  # CAP_SYS_RESOURCE is not in this machine's bounding set.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

    # The RuntimeClass handler podgraft treats as mutable: plain runc under another name.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.podgraft]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.podgraft.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
TOML
  cat > "$dir/cni/net.d/10-podgraft-test.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "podgraft-test-$id",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{ "subnet": "$subnet" }]],
        "routes": [{ "dst": "$subnet" }]
      }
    },
    { "type": "loopback" }
  ]
}
JSON
}

start() {
  if running && [ -S "$sock" ]; then echo "$sock"; return 0; fi
  mkdir -p "$images"
  # Parallel test processes may all find the images missing: build them once, under a lock.
  (
    flock 9
    [ -f "$images/busybox.tar" ] && [ -f "$images/pause.tar" ] || "$here/build-images.py" "$images" >&2
  ) 9>"$images/.lock"
  write_config
  containerd --config "$dir/config.toml" --log-level "${CONTAINERD_LOG_LEVEL:-info}" >>"$dir/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  for _ in $(seq 1 200); do
    if [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1; then break; fi
    running || { echo "containerd exited; see $dir/containerd.log:" >&2; tail -20 "$dir/containerd.log" >&2; exit 1; }
    sleep 0.05
  done
  [ -S "$sock" ] || { echo "containerd did not come up; see $dir/containerd.log" >&2; exit 1; }
  for image in pause busybox; do
    ctr_ images import --no-unpack=false "$images/$image.tar" >/dev/null
  done
  echo "$sock"
}

stop() {
  if running; then
    # Kill every task (pods and containers) while containerd can still tell us about them.
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    for _ in $(seq 1 50); do
      [ -z "$(ctr_ tasks ls 2>/dev/null | awk 'NR>1 && $3 != "STOPPED"')" ] && break; sleep 0.1
    done
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
    pid=$(cat "$dir/containerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/containerd.pid"
  # Shims whose containerd is gone: find them by their socket/address arguments under DIR.
  pkill -9 -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true
  # Mounts (netns, rootfs, shm) under DIR, deepest first.
  awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  # Pod cgroups made by this instance's pods: recorded by the tests in DIR/cgroups.
  if [ -f "$dir/cgroups" ]; then
    sort -u "$dir/cgroups" | while read -r cg; do
      for ctl in /sys/fs/cgroup/*/; do
        [ -d "$ctl${cg#/}" ] || continue
        find "$ctl${cg#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      done
      # Parents such as /kubepods/burstable that runc created, once empty and no other private
      # instance (which may be about to use them) runs.
      pgrep -f "^containerd --config .*/config.toml" >/dev/null && continue
      p=$cg
      while p=$(dirname "$p"); [ "$p" != / ]; do
        for ctl in /sys/fs/cgroup/*/; do rmdir "$ctl${p#/}" 2>/dev/null || true; done
      done
    done
  fi
  rm -rf "$dir/root" "$dir/state" "$dir/opt" "$sock" "$sock.ttrpc"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
