#!/usr/bin/env bash
# The system libraries Hark builds against: libopus (the audiopus crate
# links it, found by pkg-config). Installs them (Debian packages) when
# missing; quick when present.
set -euo pipefail
pkg-config --exists opus 2>/dev/null && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
command -v apt-get >/dev/null || { echo "deps: install libopus (libopus-dev) and pkg-config by hand" >&2; exit 1; }
echo "deps: installing libopus-dev, pkg-config" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopus-dev pkg-config >/dev/null
