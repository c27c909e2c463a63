#!/usr/bin/env bash
# Makes sure the services the tests use for real are up: PostgreSQL on
# 127.0.0.1:5432 (trust auth, database `test`) and Redis on 127.0.0.1:6379.
# Starts them if they are installed but stopped; installs them (Debian
# packages, as root) if they are missing. Idempotent and quick when all is up.
set -euo pipefail

log() { echo "services: $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
install() {
  if ! command -v apt-get >/dev/null; then
    log "cannot install $* (no apt-get): install it and start it by hand"; exit 1
  fi
  [ -n "$apt_updated" ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! command -v pg_isready >/dev/null || ! pg_up; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL"
    install postgresql
  fi
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  [ -d "/etc/postgresql/$ver/main" ] || $SUDO pg_createcluster "$ver" main >/dev/null
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    log "trust auth for local connections (test machine only)"
    printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' | $SUDO tee "$hba" >/dev/null
  fi
  log "starting PostgreSQL $ver"
  $SUDO pg_ctlcluster "$ver" main start 2>/dev/null || $SUDO pg_ctlcluster "$ver" main reload
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { log "PostgreSQL did not come up"; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE test"
fi

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
# The cluster's e2e tests start (and stop) Redis servers of their own.
command -v redis-server >/dev/null || { log "installing Redis"; install redis-server; }
if ! command -v redis-cli >/dev/null || ! redis_up; then
  log "starting Redis"
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || { log "Redis did not come up"; exit 1; }
fi

# Recordings: libopus (the audiopus crate links it, found by pkg-config),
# opus-tools (opusinfo reads what Hark writes), and an S3-compatible server
# for the storage tests (moto, from PyPI; the tests start their own).
"$(dirname "$0")/../tools/deps.sh"
if ! command -v opusinfo >/dev/null; then
  log "installing opus-tools"
  install opus-tools
fi
if ! command -v moto_server >/dev/null; then
  log "installing moto[server] (an S3-compatible test server)"
  python3 -m pip install -q "moto[server]" >/dev/null 2>&1 || { log "pip install moto[server] failed"; exit 1; }
  # pyenv makes a shim for a new console script only on rehash.
  command -v pyenv >/dev/null && pyenv rehash || true
  hash -r
  command -v moto_server >/dev/null || { log "moto_server is not on PATH after pip install"; exit 1; }
fi
