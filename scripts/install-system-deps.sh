#!/usr/bin/env bash
# System packages the whole test suite needs, on Debian bookworm (the machine kind this project
# runs on): OpenBLAS for backend-cpu's second native matmul route, Mesa's lavapipe from
# bookworm-backports for WebGPU in Node (bookworm's own Mesa is too old for Dawn), and Debian's
# Chromium for the browser tests (WebGPU on SwiftShader, driven by playwright-core without a
# browser download). As root it installs what is missing; elsewhere it names what to install.
# Without them the tests that need them report themselves skipped, with the reason.
set -uo pipefail

# Python with torch and safetensors in the repository's .venv (git-ignored), for the tests that
# load what dictlearn writes with the real libraries (they skip, with the reason, without it).
# Only from the local package index pip is configured with: PyPI itself is not reachable here.
setup_python() {
  local root venv index
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$root/.venv"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch, safetensors, numpy' 2>/dev/null; then
    echo "python: .venv has torch, safetensors and numpy"
    return 0
  fi
  index=$(pip config get global.extra-index-url 2>/dev/null | awk '{print $1}')
  if [ -z "$index" ] || ! command -v python3 >/dev/null 2>&1; then
    echo "python: no local package index configured for pip; the tests that load files with torch will report themselves skipped"
    return 0
  fi
  { python3 -m venv "$venv" &&
    "$venv/bin/pip" install -q --index-url "$index" torch numpy safetensors; } >/dev/null 2>&1 ||
    { echo "python: could not install torch, numpy and safetensors into .venv from $index; those tests will report themselves skipped"; return 0; }
  echo "python: installed torch, numpy and safetensors into .venv from $index"
}
setup_python

need=()
ldconfig -p 2>/dev/null | grep -q 'libopenblas.so.0' || need+=(openblas)
dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q bpo || need+=(lavapipe)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  cat <<MSG
system packages missing: ${need[*]}
  As root on Debian bookworm, run this script again, or install by hand:
    apt-get install libopenblas0-pthread chromium
    (add bookworm-backports to apt's sources, then)
    apt-get install -t bookworm-backports mesa-vulkan-drivers
  The tests that need them will report themselves skipped until then.
MSG
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [[ " ${need[*]} " == *" lavapipe "* ]] && [ ! -e /etc/apt/sources.list.d/backports.sources ]; then
  # Reuse the mirror this machine already uses: only Debian's own archive is reachable.
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "${uri:-http://deb.debian.org/debian}" > /etc/apt/sources.list.d/backports.sources
fi
apt-get update -qq || true
for item in "${need[@]}"; do
  case "$item" in
    openblas) apt-get install -y -qq libopenblas0-pthread >/dev/null ;;
    lavapipe) apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null ;;
    chromium) apt-get install -y -qq chromium >/dev/null ;;
  esac || echo "system packages: could not install $item; the tests that need it will report themselves skipped"
done
echo "system packages: installed ${need[*]}"
