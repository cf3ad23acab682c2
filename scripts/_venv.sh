# Sourced by scripts/demo and scripts/test: make ./.venv and install shoal into it.
# Needs only python3 (3.11+); on Debian, installs python3-venv when it is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "shoal needs Python 3.11 or newer as '$PY' (set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi
STAMP=.venv/.shoal-installed-$1
# A change to the C extension's source needs a new build, as one to pyproject.toml
# needs a new install (a build of another ABI is refused at import anyway).
stale() {
    [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ setup.py -nt "$STAMP" ] \
        || [ shoal/wire/_speedups.c -nt "$STAMP" ]
}
if [ ! -x .venv/bin/python ] || stale; then
    # Said once, before the quiet part: pip takes 15-40 s.
    if [ "$1" = base ]; then what="shoal"; else what="shoal and its $1 tools"; fi
    echo "installing $what into ./.venv ..." >&2
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PY" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            echo "installing python3-venv from Debian's packages" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        fi
        "$PY" -m venv .venv
    fi
fi
if stale; then
    bash scripts/ensure-compiler.sh .venv/bin/python  # optional: the C extension
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    if [ "$1" = base ]; then target="."; else target=".[$1]"; fi
    # Quiet when it works; the whole pip output when it does not.
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e "$target" \
            > .venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "installing shoal into ./.venv failed (log above, and in .venv/install.log)" >&2
        exit 1
    fi
    .venv/bin/python -c 'import shoal, msgpack'
    touch "$STAMP"
fi
