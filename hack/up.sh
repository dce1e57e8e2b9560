#!/usr/bin/env bash
# Brings up a local node on this machine and shows podgraft's main job on it: a private containerd
# (own root, state and socket under DIR) with podgraft in front of it; a demo pod made through
# podgraft's CRI socket exactly as a kubelet makes one (handler "podgraft", which podgraft treats
# as mutable); a tool container added to that running pod with `podgraft add`, timed next to
# containerd's own create+start of the same container; and what the kubelet sees meanwhile.
# It then waits with copy-paste commands for the next steps. Ctrl-C removes the pod, stops
# podgraft and containerd and removes DIR (if up.sh made it), leaving nothing.
#
#   hack/up.sh [DIR]          DIR defaults to a new /tmp/podgraft-node.XXXXXX
#
#   UP_NO_WAIT=1   exit (cleaning up) after the demo instead of waiting: what hack/test.sh runs
#   UP_PROFILE=debug   use a debug build (hack/test.sh, which has one) instead of a release build
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${1:-}" ]; then
  [ -e "$1" ] && made_dir= || made_dir=1
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
else
  dir=$(mktemp -d /tmp/podgraft-node.XXXXXX)
  made_dir=1
fi
profile=${UP_PROFILE:-release}
image=podgraft.test/busybox:1
pod=default/demo
# Runs until stopped; the trap makes SIGTERM end it at once (PID 1 ignores signals it has no
# handler for, which would make every stop wait out the grace period).
long_running=(/bin/sh -c "trap 'exit 0' TERM; while sleep 1; do :; done")

hack/install-deps.sh
hack/build-images.py target/test-images >/dev/null
if [ "$profile" = release ]; then
  cargo build --release --bins --examples
  bin=target/release
else
  cargo build --bins --examples
  bin=target/debug
fi
bin=$PWD/$bin

cleanup() {
  set +e
  trap - EXIT INT TERM
  echo
  echo "== cleaning up"
  if [ -n "${sandbox:-}" ]; then
    # As the kubelet deletes a pod: through podgraft, which stops the dynamic container too.
    "$bin/podgraft" cri --endpoint "$dir/podgraft.sock" rm-pod "$sandbox" --grace 5 >/dev/null \
      && echo "removed pod $pod"
  fi
  if [ -n "${pg:-}" ]; then kill "$pg" 2>/dev/null && wait "$pg" 2>/dev/null; fi
  hack/containerd.sh stop "$dir"
  if [ -n "$made_dir" ]; then rm -rf "$dir"; else rm -rf "$dir/pods" "$dir/podgraft-state"; fi
  echo "stopped podgraft and containerd; nothing left under $dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Own sessions: Ctrl-C goes to the terminal's foreground process group, and containerd and
# podgraft must outlive it long enough for the cleanup to remove the pod through them.
sock=$(setsid hack/containerd.sh start "$dir")

cat > "$dir/podgraft.toml" <<TOML
mutable_handlers = ["podgraft"]
state_dir = "$dir/podgraft-state"
audit_log = "$dir/audit.log"
TOML
setsid "$bin/podgraft" serve --config "$dir/podgraft.toml" --control "$dir/control.sock" \
  --listen "$dir/podgraft.sock" --runtime-endpoint "$sock" 2>>"$dir/podgraft.log" &
pg=$!
for _ in $(seq 1 200); do [ -S "$dir/podgraft.sock" ] && [ -S "$dir/control.sock" ] && break; sleep 0.05; done

pgctl() { "$bin/podgraft" --control "$dir/control.sock" "$@"; }
kubelet_cri() { "$bin/podgraft" cri --endpoint "$dir/podgraft.sock" "$@"; }
containerd_cri() { "$bin/podgraft" cri --endpoint "$sock" "$@"; }
ms_since() { local t=$(( ($(date +%s%N) - $1) / 100000 )); echo "$((t / 10)).$((t % 10))"; }

echo
echo "podgraft is serving CRI on unix://$dir/podgraft.sock in front of unix://$sock"
"$bin/examples/cri-ping" "$dir/podgraft.sock"

echo
echo "== the kubelet runs pod $pod (RuntimeClass handler \"podgraft\") through podgraft's socket"
uid=$(cat /proc/sys/kernel/random/uuid)
# containerd.sh stop removes the pod cgroups listed here (runc leaves the pod's own level).
echo "/kubepods/burstable/pod$uid" >> "$dir/cgroups"
sandbox=$(kubelet_cri run-pod "$pod" --uid "$uid" --log-root "$dir/pods" --image "$image")
echo "sandbox $sandbox, cgroup parent /kubepods/burstable/pod$uid, logs $dir/pods/default_demo_$uid"

echo
echo "== podgraft add $pod --name tool: a container added to the running pod"
start=$(date +%s%N)
pgctl add "$pod" --name tool --image "$image" -- "${long_running[@]}"
cli_ms=$(ms_since "$start")
# podgraft's own time for the add (the call, without the CLI's process start), from its audit log.
server_ms=$(python3 -c 'import json,sys
recs=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print([r for r in recs if r["call"]=="AddContainers"][-1]["duration_ms"])' "$dir/audit.log")
direct=$(containerd_cri time-create-start "$sandbox" --name tool-direct --image "$image" -- "${long_running[@]}")
echo
printf '%-58s %s\n' "podgraft add, inside podgraft (audit duration_ms):" "$server_ms ms"
printf '%-58s %s\n' "podgraft add, whole CLI run (process start to exit):" "$cli_ms ms"
printf '%-58s %s\n' "containerd alone, same container (on containerd.sock):" "$direct"

echo
echo "== podgraft ls"
pgctl ls
echo
echo "== podgraft exec $pod tool -- echo hello"
pgctl exec "$pod" tool -- echo hello
echo "== podgraft exec $pod tool -- ps"
pgctl exec "$pod" tool -- ps
echo
echo "== what the kubelet sees: ListContainers through podgraft's socket"
kubelet_cri ps
echo
echo "== what containerd has (its own socket): the tool container is there, hidden from the kubelet"
containerd_cri ps

if [ -n "${UP_NO_WAIT:-}" ]; then exit 0; fi

cat <<EOF2

Next steps (copy-paste):
  export PODGRAFT_CONTROL=$dir/control.sock
  $bin/podgraft add $pod --name tool2 --image $image -- sleep 3600
  $bin/podgraft ls
  $bin/podgraft exec $pod tool -- cat /etc/hostname
  $bin/podgraft logs $pod tool
  $bin/podgraft events $pod
  $bin/podgraft rm $pod tool2 --grace 1
  $bin/podgraft status
  $bin/podgraft cri --endpoint $dir/podgraft.sock ps     # the kubelet's view
  $bin/podgraft cri --endpoint $sock ps     # containerd's
Point a kubelet or crictl at it: --container-runtime-endpoint=unix://$dir/podgraft.sock
Logs: $dir/podgraft.log, $dir/containerd.log, audit $dir/audit.log

Ctrl-C removes the pod and stops podgraft and containerd, leaving nothing behind.
EOF2
wait "$pg"
