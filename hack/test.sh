#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (Debian packages, and
# grpcio from PyPI in a venv under target/), builds the offline test images, then checks
# formatting and lints and runs the unit tests and the integration tests against a real
# containerd + runc (which the tests start themselves, privately).
#
# Under CI=true a missing real component fails the integration tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh
hack/python-deps.sh
hack/build-images.py target/test-images >/dev/null

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  unit_dir=$(mktemp -d)
  # verify wants the ExecStart binary to exist: point it at this build.
  cargo build --locked --bin podgraft -q
  sed "s#/usr/local/bin/podgraft#$PWD/target/debug/podgraft#" systemd/podgraft.service \
    > "$unit_dir/podgraft.service"
  systemd-analyze verify "$unit_dir/podgraft.service"
  rm -rf "$unit_dir"
else
  echo "systemd-analyze not found: unit not verified" >&2
fi
echo "== install / uninstall (temporary roots)"
cargo build --locked --bin podgraft -q
hack/install-test.sh target/debug/podgraft
echo "== tests (unit + integration on real containerd)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --locked --no-fail-fast "$@"
fi
echo "== hack/up.sh (the first-run demo, not waiting; cleans up after itself)"
UP_NO_WAIT=1 UP_PROFILE=debug hack/up.sh
