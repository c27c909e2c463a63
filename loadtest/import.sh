#!/usr/bin/env bash
# The README's import figure: a 10,000-row lead file (1% bad numbers, 1%
# duplicates, a Devanagari field) imported with `hark leads import` into a
# release `hark serve`, twice (the second time every lead merges).
#   loadtest/import.sh [postgres|sqlite]   (PostgreSQL: a fresh database at 127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-postgres}
bin=target/release/hark
[ -x "$bin" ] || cargo build --release --locked --bin hark
dir=$(mktemp -d)
file=$dir/ten-thousand.csv
awk 'BEGIN {
  print "phone,first_name,company,plan,priority"
  for (i = 0; i < 10000; i++) {
    if (i % 100 == 99) printf "555-01%02d,Bad %d,Acme,pro,\n", i, i
    else if (i % 50 == 49) printf "+1 212 555 %04d,Again,Acme,gold,3\n", i - 1
    else printf "+1 212 555 %04d,नाम %d,Acme & Co,pro,\n", i, i
  }
}' > "$file"
export HARK_DATA_DIR=$dir HARK_LOG=warn HARK_STREAM_TOKEN_KEY=import-figure-stream-token-key-32-bytes \
  HARK_PII_KEYS="k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" HARK_PII_HASH_KEY="CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="
if [ "$backend" = postgres ]; then
  db=hark_import_$$
  psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
  export HARK_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
else
  export HARK_DATABASE_URL="sqlite://$dir/hark.db?mode=rwc"
fi
token=$("$bin" token create --role ai_ops --name import 2>/dev/null)
port=18282
"$bin" serve --listen "127.0.0.1:$port" --policy tests/policies/e2e.toml >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
export HARK_API_URL=http://127.0.0.1:$port HARK_API_TOKEN=$token
for run in first again; do
  echo "$run ($backend):"
  "$bin" leads import "$file" --list big 2>&1 | grep -v "ten-thousand.csv:"
done
