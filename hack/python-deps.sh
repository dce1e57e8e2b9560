#!/usr/bin/env bash
# Installs, from PyPI, the Python packages podgraft's integration tests use, into a virtualenv
# under target/ (never the system's Python). Idempotent: a venv that already has the pinned
# versions is left alone. Needs Debian's python3 and python3-venv (hack/install-deps.sh).
#
# grpcio is the C-core gRPC stack (also behind Ruby, PHP, C#/.NET Core and Objective-C clients):
# the real client the relay's compatibility tests talk to podgraft and containerd with.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
grpcio=1.85.1

if [ -x "$venv/bin/python" ] &&
  "$venv/bin/python" -c "import grpc, sys; sys.exit(grpc.__version__ != '$grpcio')" 2>/dev/null; then
  echo "python-deps: grpcio $grpcio present in $venv"
  exit 0
fi
echo "python-deps: installing grpcio $grpcio into $venv"
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --only-binary=:all: "grpcio==$grpcio"
