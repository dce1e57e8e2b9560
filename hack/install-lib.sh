# Shared by hack/install.sh and hack/uninstall.sh (sourced, not run). Every change the installer
# makes under $root is recorded, one per line, in the manifest, so that the uninstaller undoes
# exactly those and nothing else:
#   dir    PATH                  a directory the installer created
#   file   PATH                  a file the installer created
#   backup PATH                  a file the installer replaced; the original is under backups/
#   block  PATH                  a delimited block appended to an existing file
#   value  PATH OLD64 NEW64      a line rewritten (old and new line, base64)
# Paths are relative to $root and start with "/"; fields are separated by tabs.

manifest_rel=/var/lib/podgraft-install/manifest
block_begin="# BEGIN podgraft (hack/install.sh adds this block, hack/uninstall.sh removes it)"
# The variant used when the file did not end with a newline, which the installer then added.
block_begin_nonl="$block_begin [newline added]"
block_end="# END podgraft"

lib_init() {
  root=${1%/}
  [ -n "$root" ] || root=/
  [ -d "$root" ] || { echo "$(basename "$0"): --root $root is not a directory" >&2; exit 2; }
  root=$(cd "$root" && pwd)
  [ "$root" = / ] && root=
  manifest=$root$manifest_rel
  backups=$(dirname "$manifest")/backups
}

# record KIND PATH [MORE...]: once per identical line.
record() {
  local line
  line=$(printf '%s\t' "$@")
  line=${line%$'\t'}
  grep -qxF -- "$line" "$manifest" 2>/dev/null || printf '%s\n' "$line" >> "$manifest"
}

# mkdir_p PATH: like mkdir -p, recording every directory it creates (parents first).
mkdir_p() {
  local path=$1 sofar= part created=()
  local IFS=/
  for part in ${path#/}; do
    sofar=$sofar/$part
    if [ ! -d "$root$sofar" ]; then
      mkdir "$root$sofar"
      created+=("$sofar")
    fi
  done
  unset IFS
  if [ "$path" != "$(dirname "$manifest_rel")" ]; then
    mkdir_p "$(dirname "$manifest_rel")"
  fi
  for part in "${created[@]}"; do record dir "$part"; done
}

is_recorded() { grep -q "^$1"$'\t'"$2\(\t\|$\)" "$manifest" 2>/dev/null; }

# put_file SRC PATH MODE replace|keep: installs SRC as PATH. An existing file that is not the
# installer's is kept ("keep") or backed up and replaced ("replace").
put_file() {
  local src=$1 path=$2 mode=$3 policy=$4 dst=$root$2
  mkdir_p "$(dirname "$path")"
  if [ -f "$dst" ]; then
    if cmp -s "$src" "$dst" && [ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
      return 0
    fi
    if ! is_recorded file "$path" && ! is_recorded backup "$path"; then
      if [ "$policy" = keep ]; then
        echo "$(basename "$0"): $path exists and differs from the default; kept"
        return 0
      fi
      mkdir -p "$backups$(dirname "$path")"
      cp -p "$dst" "$backups$path"
      record backup "$path"
    fi
  else
    record file "$path"
  fi
  install -m "$mode" "$src" "$dst"
}

# write_keeping_mode TMP PATH: replaces PATH's content, keeping its inode, mode and owner.
write_keeping_mode() { cat "$1" > "$2"; rm -f "$1"; }

has_block() { [ -f "$root$1" ] && grep -qxF "$block_end" "$root$1"; }

# strip_block PATH: removes the installer's block (and the newline it added, if it did).
strip_block() {
  local dst=$root$1 tmp state
  tmp=$(mktemp)
  state=$(BEGIN=$block_begin BEGIN_NONL=$block_begin_nonl END=$block_end awk -v out="$tmp" '
    $0 == ENVIRON["BEGIN"] || $0 == ENVIRON["BEGIN_NONL"] { skip = 1; nonl = ($0 == ENVIRON["BEGIN_NONL"]); after = 0; next }
    skip && $0 == ENVIRON["END"] { skip = 0; last = 1; next }
    skip { next }
    { print > out; last = 0 }
    END { printf "%d %d", nonl, last }' "$dst")
  [ -f "$tmp" ] || : > "$tmp"
  # The newline the installer added goes only if the block still ends the file.
  if [ "$state" = "1 1" ] && [ -s "$tmp" ]; then truncate -s -1 "$tmp"; fi
  write_keeping_mode "$tmp" "$dst"
}

# put_block PATH CONTENT_FILE: appends CONTENT as the installer's block, or updates the block.
put_block() {
  local path=$1 dst=$root$1 content=$2 begin=$block_begin tmp
  if [ ! -e "$dst" ]; then
    mkdir_p "$(dirname "$path")"
    record file "$path"
    { echo "$begin"; cat "$content"; echo "$block_end"; } > "$dst"
    chmod 0644 "$dst"
    return 0
  fi
  if has_block "$path"; then
    tmp=$(mktemp)
    awk -v b="$block_begin" -v e="$block_end" 'index($0, b) == 1 { s = 1; next } s && $0 == e { s = 0; next } s' "$dst" > "$tmp"
    if cmp -s "$tmp" "$content"; then rm -f "$tmp"; return 0; fi
    rm -f "$tmp"
    # Stripping also takes back a newline the installer added; it is added again below.
    strip_block "$path"
  else
    is_recorded file "$path" || record block "$path"
  fi
  if [ -s "$dst" ] && [ -n "$(tail -c 1 "$dst")" ]; then
    begin=$block_begin_nonl
    echo >> "$dst"
  fi
  { echo "$begin"; cat "$content"; echo "$block_end"; } >> "$dst"
}

# runtime_block PATH HANDLER: the containerd runtime table for HANDLER, in the schema of the
# config at PATH (version 1, 2 or 3; a new file is written as version 2).
runtime_block() {
  local dst=$root$1 handler=$2 version=new plugin systemd=false outside
  # Judged on the file without the installer's own block (which, in a file the installer
  # created, holds the version line itself).
  outside=$( [ ! -f "$dst" ] || awk -v b="$block_begin" -v e="$block_end" \
    'index($0, b) == 1 { s = 1; next } s && $0 == e { s = 0; next } !s' "$dst")
  if [ -n "$outside" ]; then
    version=$(sed -n 's/^[[:space:]]*version[[:space:]]*=[[:space:]]*\([0-9]\+\).*/\1/p' <<< "$outside" | head -n 1)
    grep -q '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' <<< "$outside" && systemd=true
  fi
  case $version in
    new) echo "version = 2"; plugin='plugins."io.containerd.grpc.v1.cri"' ;;
    3) plugin='plugins."io.containerd.cri.v1.runtime"' ;;
    2) plugin='plugins."io.containerd.grpc.v1.cri"' ;;
    *) plugin='plugins.cri' ;;
  esac
  cat <<TOML
# podgraft's mutable RuntimeClass handler: plain runc; podgraft itself decides what is mutable.
[$plugin.containerd.runtimes.$handler]
  runtime_type = "io.containerd.runc.v2"
[$plugin.containerd.runtimes.$handler.options]
  SystemdCgroup = $systemd
TOML
}

# set_kubelet_value PATH SED_MATCH NEW: where PATH exists and has lines matching the sed regex
# SED_MATCH (a prefix and the old value), rewrites them to the prefix and NEW, recording each line.
set_kubelet_value() {
  local path=$1 dst=$root$1 match=$2 new=$3 old line tmp
  [ -f "$dst" ] || return 0
  grep -q "$match" "$dst" || return 0
  tmp=$(mktemp)
  sed "s#$match#\1$new#" "$dst" > "$tmp"
  if cmp -s "$tmp" "$dst"; then rm -f "$tmp"; return 0; fi
  # Record the pairs of changed lines before writing.
  while IFS= read -r old; do
    line=$(printf '%s\n' "$old" | sed "s#$match#\1$new#")
    [ "$line" = "$old" ] && continue
    record value "$path" "$(printf '%s' "$old" | base64 -w0)" "$(printf '%s' "$line" | base64 -w0)"
  done < <(grep "$match" "$dst")
  write_keeping_mode "$tmp" "$dst"
}

# restore_value PATH OLD64 NEW64: puts the first line equal to NEW back to OLD.
restore_value() {
  local dst=$root$1 tmp
  [ -f "$dst" ] || return 0
  tmp=$(mktemp)
  OLD=$(printf '%s' "$2" | base64 -d) NEW=$(printf '%s' "$3" | base64 -d) awk '
    !done && $0 == ENVIRON["NEW"] { print ENVIRON["OLD"]; done = 1; next } { print }' "$dst" > "$tmp"
  # awk ends the last line with a newline; keep a missing one missing.
  [ -n "$(tail -c 1 "$dst")" ] && truncate -s -1 "$tmp"
  write_keeping_mode "$tmp" "$dst"
}
