#!/usr/bin/env bash
# System packages the whole test suite needs, on Debian bookworm (the machine kind this project
# runs on): OpenBLAS for backend-cpu's second native matmul route, Mesa's lavapipe from
# bookworm-backports for WebGPU in Node (bookworm's own Mesa is too old for Dawn), and Debian's
# Chromium for the browser tests (WebGPU on SwiftShader, driven by playwright-core without a
# browser download). As root it installs what is missing; elsewhere it names what to install.
# Without them the tests that need them report themselves skipped, with the reason.
set -uo pipefail

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
