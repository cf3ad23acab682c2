#!/bin/sh
# Make sure pip can build shoal's optional C extension (shoal/wire/_speedups.c)
# for the Python given as $1: a C compiler and that Python's headers.
# As root with apt-get, installs Debian's gcc, libc6-dev and pythonX.Y-dev when
# missing (says so once). Otherwise says the pure-Python build will be
# installed, which behaves the same, and exits 0: the compiler is optional.
set -eu
PY="${1:-python3}"

has_cc() { command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; }
has_headers() {
    "$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}

if has_cc && has_headers; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    version="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    echo "installing a C compiler and Python $version's headers from Debian's packages" \
         "(for shoal's C extension) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # python3-dev when this is Debian's default python3, else its own version's
    if ! apt-get install -y -qq --no-install-recommends gcc libc6-dev "python$version-dev" \
            >/dev/null 2>&1; then
        apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev >/dev/null || true
    fi
fi
if has_cc && has_headers; then
    exit 0
fi
echo "no C compiler or no headers for $PY: shoal is installed as pure Python" \
     "(the same behaviour; the wire code is slower)" >&2
exit 0
