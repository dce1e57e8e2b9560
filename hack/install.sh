#!/usr/bin/env bash
# Installs podgraft on a node: the binary, a default config, the systemd unit, a containerd runtime
# for the mutable RuntimeClass handler, a RuntimeClass manifest, and points the kubelet at
# podgraft's socket. Idempotent: a second run changes nothing. hack/uninstall.sh undoes it.
#
#   hack/install.sh [--root DIR] [--binary PATH] [--handler NAME]
#
#   --root DIR     install under DIR instead of / (tests, image builds); systemctl is only
#                  called when DIR is /
#   --binary PATH  the podgraft binary (default: target/release/podgraft, else target/debug/podgraft)
#   --handler NAME the RuntimeClass handler whose pods accept dynamic containers (default: podgraft)
#
# What is only added, never clobbered:
# - /etc/containerd/config.toml gets a delimited block defining a runc runtime named after the
#   handler (SystemdCgroup copied from the file's runc runtime); a file that already defines that
#   runtime outside the block is left alone.
# - /etc/podgraft/config.toml is written only if absent (an existing one is kept and reported).
# - the kubelet endpoint: `containerRuntimeEndpoint` in /var/lib/kubelet/config.yaml and the
#   `--container-runtime-endpoint` flag in /var/lib/kubelet/kubeadm-flags.env (where present) are
#   pointed at podgraft, their old values kept for the uninstall; the drop-in
#   kubelet.service.d/20-podgraft.conf orders the kubelet after podgraft and passes the flag through
#   KUBELET_EXTRA_ARGS (kubeadm's unit) for kubelets configured by neither file.
# Everything created or changed is recorded in /var/lib/podgraft-install/manifest.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/hack/install-lib.sh"

root=/
binary=
handler=podgraft
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --handler) handler=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $handler in
  ''|*[!A-Za-z0-9._-]*) echo "install.sh: --handler $handler is not a RuntimeClass handler name" >&2; exit 2 ;;
esac
if [ -z "$binary" ]; then
  for b in "$src/target/release/podgraft" "$src/target/debug/podgraft"; do
    [ -x "$b" ] && { binary=$b; break; }
  done
fi
[ -n "$binary" ] && [ -x "$binary" ] || {
  echo "install.sh: no podgraft binary; build one (cargo build --release) or give --binary" >&2
  exit 1
}
lib_init "$root"
endpoint="unix:///run/podgraft/podgraft.sock"

# 1. Binary, unit, config, RuntimeClass.
put_file "$binary" /usr/local/bin/podgraft 0755 replace
put_file "$src/systemd/podgraft.service" /etc/systemd/system/podgraft.service 0644 replace
config=$(mktemp)
trap 'rm -f "$config"' EXIT
sed "s/^mutable_handlers = \[\]/mutable_handlers = [\"$handler\"]/" "$src/systemd/config.toml" > "$config"
put_file "$config" /etc/podgraft/config.toml 0644 keep
cat > "$config" <<YAML
# kubectl apply -f this file once per cluster; pods with runtimeClassName: $handler accept
# dynamic containers on nodes running podgraft.
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: $handler
handler: $handler
YAML
put_file "$config" /etc/podgraft/runtimeclass.yaml 0644 replace

# 2. containerd: a runc runtime named after the handler.
ctd=/etc/containerd/config.toml
runtime_block "$ctd" "$handler" > "$config"
if [ -f "$root$ctd" ] && ! has_block "$ctd" && grep -q "runtimes\.\(\"\)\{0,1\}$handler\(\"\)\{0,1\}\]" "$root$ctd"; then
  echo "install.sh: $ctd already defines runtime \"$handler\"; left as it is"
else
  put_block "$ctd" "$config"
fi

# 3. kubelet: endpoint and ordering.
set_kubelet_value /var/lib/kubelet/config.yaml '^\([[:space:]]*containerRuntimeEndpoint:[[:space:]]*\).*$' "$endpoint"
set_kubelet_value /var/lib/kubelet/kubeadm-flags.env '\(--container-runtime-endpoint=\)[^ "]*' "$endpoint"
cat > "$config" <<UNIT
# Installed by podgraft's hack/install.sh: the kubelet talks CRI to podgraft, which relays to
# containerd. hack/uninstall.sh removes this file.
[Unit]
After=podgraft.service
Wants=podgraft.service

[Service]
# kubeadm's kubelet unit passes \$KUBELET_EXTRA_ARGS; a flag wins over the config file. A
# KUBELET_EXTRA_ARGS set in /etc/default/kubelet replaces this one (the installer warns).
Environment="KUBELET_EXTRA_ARGS=--container-runtime-endpoint=$endpoint"
UNIT
put_file "$config" /etc/systemd/system/kubelet.service.d/20-podgraft.conf 0644 replace
for f in /etc/default/kubelet /etc/sysconfig/kubelet; do
  if [ -f "$root$f" ] && grep -q '^KUBELET_EXTRA_ARGS=.' "$root$f"; then
    echo "install.sh: warning: $f sets KUBELET_EXTRA_ARGS, which replaces the drop-in's; add --container-runtime-endpoint=$endpoint there if neither kubelet file above names the endpoint" >&2
  fi
done

if [ "$root" = / ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
  systemctl enable podgraft.service >/dev/null 2>&1 || true
fi
echo "install.sh: installed under $root (record: $manifest_rel)"
cat <<NEXT
Next steps on the node:
  systemctl restart containerd && systemctl start podgraft && systemctl restart kubelet
  kubectl apply -f /etc/podgraft/runtimeclass.yaml     # once per cluster
NEXT
