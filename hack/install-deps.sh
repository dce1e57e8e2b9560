#!/usr/bin/env bash
# Installs, from Debian's packages, everything podgraft's build and tests need. Idempotent: packages
# already present are not touched, and apt is asked only when something is missing.
set -euo pipefail

packages=(
  containerd                   # the CRI backend the integration tests run against (1.6 on Debian 12)
  runc                         # its OCI runtime
  containernetworking-plugins  # bridge/host-local/loopback CNI plugins for pod networking
  iptables                     # used by the bridge plugin
  iproute2                     # ip, to clean up the test bridge
  busybox-static               # the userland of the test image (static: needs no libraries)
  protobuf-compiler            # protoc, for the k8s-cri crate's build script
  gcc libc6-dev                # builds the static pause binary of the sandbox image
  g++                          # libFuzzer's C++ sources, built by libfuzzer-sys (hack/fuzz.sh)
  python3                      # builds the OCI test images
  python3-venv                 # the venv of PyPI packages the tests use (hack/python-deps.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root to install packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
