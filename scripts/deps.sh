#!/bin/bash
# Install the Debian packages mod_secupload needs to build, serve and test.
# Idempotent: only what is missing is installed. Needs root (or sudo).
set -euo pipefail

SU_PACKAGES=(
  build-essential autoconf automake libtool pkg-config
  apache2 apache2-dev libapr1-dev libaprutil1-dev
  libssl-dev openssl libhiredis-dev libjansson-dev check
  redis-server curl
  python3 python3-pytest python3-requests python3-redis python3-cryptography
  libapache2-mod-security2 modsecurity-crs
)

su_missing=()
for pkg in "${SU_PACKAGES[@]}" "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
    || su_missing+=("$pkg")
done

if [ ${#su_missing[@]} -gt 0 ]; then
  echo "installing: ${su_missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    "${su_missing[@]}"
fi
