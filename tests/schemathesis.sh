#!/usr/bin/env bash
# Runs schemathesis (PyPI) against the admin API's OpenAPI document on a
# real `hark serve` (SQLite in a temp dir, an admin token, one blocked
# number), with every check. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-debug}
command -v schemathesis >/dev/null || python3 -m pip install -q 'schemathesis>=4,<5'
dir=$(mktemp -d)
port=18181
# Generated bodies can pass the 64 KiB body limit (a 413 before any
# validation, which schemathesis does not count as a refusal): the limit is
# raised here so every body reaches its handler; tests/e2e/limits.rs has the 413s.
export HARK_DATA_DIR="$dir" HARK_DATABASE_URL="sqlite://$dir/hark.db?mode=rwc" HARK_API_REQUESTS_PER_SECOND=100000 HARK_API_AUTH_FAILURES_PER_MINUTE=100000 HARK_LOG=warn HARK_HTTP__MAX_BODY_BYTES=16777216
bin="target/$profile/hark"
[ -x "$bin" ] || cargo build --locked --bin hark $([ "$profile" = release ] && echo --release)
token=$("$bin" token create --role admin --name schemathesis 2>/dev/null)
"$bin" serve --listen "127.0.0.1:$port" --policy tests/policies/e2e.toml >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
curl -fs -X POST -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"number": "+14155550101", "reason": "seed"}' "127.0.0.1:$port/api/v1/blocklist" >/dev/null
# Revoking tokens is left out: a generated DELETE of its own token would
# leave the rest of the run unauthenticated (the e2e tests cover revoking).
schemathesis --config-file tests/schemathesis.toml run "http://127.0.0.1:$port/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" --checks all --max-examples "${ST_MAX_EXAMPLES:-50}" \
  --exclude-operation-id revoke_token --exclude-operation-id drain \
  --seed 1 --no-color
