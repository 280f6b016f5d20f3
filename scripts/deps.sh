#!/usr/bin/env bash
# Installs the Debian packages lamina needs, only those that are missing.
set -euo pipefail
packages=(build-essential cmake pkg-config libdnnl-dev zlib1g-dev libcmocka-dev libgraphviz-dev libhdf5-dev dataset-fashion-mnist python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing missing packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
