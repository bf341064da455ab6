#!/bin/bash
# Install the Debian packages mod_secupload needs, for one purpose:
#   scripts/deps.sh build    compile the module, the tool, the man pages, unit tests
#   scripts/deps.sh serve    build, and run it (Apache, Redis): scripts/serve
#   scripts/deps.sh package  build the Debian package and try it: tests/package/run
#   scripts/deps.sh test     all of the above and the test tools: scripts/test
# (the default is test). More package names may follow. Idempotent: only what
# is missing is installed. Needs root (or sudo).
set -euo pipefail

SU_BUILD=(
  build-essential autoconf automake libtool pkg-config
  apache2-dev libapr1-dev libaprutil1-dev
  libssl-dev libhiredis-dev libjansson-dev check pandoc
)
SU_SERVE=(apache2 redis-server openssl)
SU_PACKAGE=(debhelper dpkg-dev fakeroot lintian man-db curl)
SU_TEST=(python3 python3-pytest python3-requests python3-redis python3-cryptography redis-sentinel
         libapache2-mod-security2 modsecurity-crs
         nodejs chromium)
# the browser test's npm: Debian's, unless a node that brings its own is here
command -v npm >/dev/null 2>&1 || SU_TEST+=(npm)

purpose=test
case "${1:-}" in
  build|serve|package|test) purpose=$1; shift ;;
esac
case $purpose in
  build)   SU_PACKAGES=("${SU_BUILD[@]}") ;;
  serve)   SU_PACKAGES=("${SU_BUILD[@]}" "${SU_SERVE[@]}") ;;
  package) SU_PACKAGES=("${SU_BUILD[@]}" "${SU_SERVE[@]}" "${SU_PACKAGE[@]}") ;;
  test)    SU_PACKAGES=("${SU_BUILD[@]}" "${SU_SERVE[@]}" "${SU_PACKAGE[@]}" "${SU_TEST[@]}") ;;
esac

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
