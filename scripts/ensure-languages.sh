#!/usr/bin/env bash
# Make sure the toolchains the gateway's client tests need are installed:
# PHP 8 (php-cli), Go (golang-go), a JDK (default-jdk-headless) and Node.js
# (nodejs), from Debian's packages via apt-get when a command is missing.
# Idempotent: does nothing (and says nothing) when all four are present.
# The client tests are never skipped: without these, they fail and say why.
set -euo pipefail

missing=()
command -v php   >/dev/null 2>&1 || missing+=(php-cli)
command -v go    >/dev/null 2>&1 || missing+=(golang-go)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v node  >/dev/null 2>&1 || missing+=(nodejs)
[ "${#missing[@]}" = 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-languages: missing ${missing[*]} and apt-get is unavailable;" >&2
    echo "  install PHP 8, Go, a JDK 11+ and Node.js 18+ yourself." >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" != "0" ] && SUDO="sudo"
echo "installing ${missing[*]} from Debian's packages (the client tests use them) ..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
