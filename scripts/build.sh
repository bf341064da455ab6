#!/bin/bash
# Configure (once) and build the module, the core library and the tests.
# Usage: scripts/build.sh [extra configure options]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
  ./autogen.sh >/dev/null
fi
want="--with-apxs=$(command -v apxs || echo /usr/bin/apxs) $*"
if [ ! -f Makefile ] || [ "$(cat .configured 2>/dev/null)" != "$want" ]; then
  # shellcheck disable=SC2086
  ./configure -q $want
  echo "$want" > .configured
fi
make -j"$(nproc)" all
make -j"$(nproc)" check TESTS= >/dev/null   # build the unit tests without running them
