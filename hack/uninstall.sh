#!/usr/bin/env bash
# Undoes hack/install.sh: restores the kubelet's direct endpoint, removes the containerd runtime
# block, the drop-in, unit, config, RuntimeClass manifest and binary, and restores any file the
# installer replaced. Only what the installer's manifest records is touched, so files it found
# are left byte for byte as they were. Idempotent: without a manifest there is nothing to do.
#
#   hack/uninstall.sh [--root DIR] [--purge]
#
#   --root DIR  the directory hack/install.sh installed under (default /)
#   --purge     also remove podgraft's state directory /var/lib/podgraft (kept by default: it
#               holds the sandbox configs of running mutable pods)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/hack/install-lib.sh"

root=/
purge=false
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$2; shift 2 ;;
    --purge) purge=true; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
lib_init "$root"

if [ ! -f "$manifest" ]; then
  echo "uninstall.sh: nothing installed under ${root:-/} (no $manifest_rel)"
  exit 0
fi
if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now podgraft.service >/dev/null 2>&1 || true
fi
$purge && rm -rf "$root/var/lib/podgraft"

mapfile -t entries < "$manifest"
saved=$(mktemp -d)
trap 'rm -rf "$saved"' EXIT
# The manifest's directory is among the recorded ones: move what it holds out of the way first.
[ -d "$backups" ] && mv "$backups" "$saved/backups"
rm -f "$manifest"
for ((i = ${#entries[@]} - 1; i >= 0; i--)); do
  IFS=$'\t' read -r kind path old new <<< "${entries[i]}"
  dst=$root$path
  case $kind in
    value) restore_value "$path" "$old" "$new" ;;
    block) [ -f "$dst" ] && strip_block "$path" ;;
    file)
      if [ -f "$dst" ] && has_block "$path"; then
        # Created by the installer as only its block: removed unless someone added to it.
        strip_block "$path"
        [ -s "$dst" ] && { echo "uninstall.sh: $path has other content now; kept"; continue; }
      fi
      rm -f "$dst" ;;
    backup) cp -p "$saved/backups$path" "$dst" ;;
    dir)
      if ! rmdir "$dst" 2>/dev/null && [ -d "$dst" ]; then
        echo "uninstall.sh: $path is not empty; kept"
      fi ;;
    *) echo "uninstall.sh: unknown manifest entry: ${entries[i]}" >&2 ;;
  esac
done
if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
fi
echo "uninstall.sh: removed podgraft from ${root:-/}"
echo "Next: systemctl restart containerd && systemctl restart kubelet"
