#!/bin/sh
# Make sure an etcd server binary is available for shoal's etcd tests.
# Installs Debian's etcd-server (and etcd-client for etcdctl) via apt-get when
# `etcd` is not on PATH. Idempotent: does nothing (and says nothing) when etcd
# exists; otherwise says "installing ..." once on stderr, then is quiet.
set -eu

if command -v etcd >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-etcd: etcd is not installed and apt-get is unavailable;" >&2
    echo "  download a release from https://github.com/etcd-io/etcd/releases" >&2
    echo "  and put 'etcd' on PATH (or set SHOAL_ETCD_BIN)." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi

echo "installing etcd-server and etcd-client from Debian's packages ..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null

# Debian's package may start a system etcd on 2379; shoal's tests use their own
# throwaway servers on free ports, so that one is left alone.
command -v etcd >/dev/null 2>&1 || {
    echo "ensure-etcd: etcd-server installed but 'etcd' is still not on PATH" >&2
    exit 1
}
