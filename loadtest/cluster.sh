#!/usr/bin/env bash
# A cluster under load: three `hark serve` (127.0.0.1-3) sharing a fresh
# PostgreSQL database and a Redis server of their own, the loadtest driving
# calls through node a's voice webhook (the cluster's placement) and
# reporting the per-node spread.
#   1. placement: the webhook alone at RATE calls/s for 10 s (webhook → TwiML latency);
#   2. full calls through the webhook (streams on the nodes it names) for
#      20 s: Redis operations per call from Redis's own INFO commandstats.
# Usage: loadtest/cluster.sh [debug|release] [RATE]   (default: release 500)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
rate=${2:-500}
flag=$([ "$profile" = release ] && echo --release || echo)
cargo build --locked $flag --bin hark --bin hark-loadtest
bin=target/$profile
out=target/cluster
rm -rf "$out" && mkdir -p "$out"
tests/services.sh >/dev/null
db="hark_cluster_$$"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no >"$out/redis.log" 2>&1 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
export HARK_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export HARK_REDIS_URL="redis://127.0.0.1:$port"
export HARK_STREAM_TOKEN_KEY="cluster-load-stream-token-key-32-bytes-or-more"
export HARK_PII_KEYS="k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
export HARK_PII_HASH_KEY="CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="
# One load generator is one client: lift the per-client connection cap.
export HARK_CALLER_CALLS_PER_HOUR=1000 HARK_WORKER_THREADS=1 HARK_HTTP__MAX_CONNECTIONS_PER_CLIENT=5000
addrs=()
for n in 1 2 3; do
  HARK_NODE="node$n" HARK_DATA_DIR="$out/node$n" "$bin/hark" serve --listen "127.0.0.$n:0" \
    --policy policies/loadtest.toml >"$out/node$n.out" 2>"$out/node$n.err" &
  pids+=($!)
done
for n in 1 2 3; do
  addr=""
  for _ in $(seq 200); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$out/node$n.out" | sed 's#.*http://##' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "node$n did not start"; cat "$out/node$n.err"; exit 1; }
  addrs+=("$addr")
done
until [ "$(redis-cli -p "$port" zcard '{hark}:nodes')" = 3 ]; do sleep 0.1; done
hook="http://${addrs[0]}/twilio/voice"
echo "== placement: $rate calls/s for 10 s through $hook"
"$bin/hark-loadtest" --webhook "$hook" --placement-only --rate "$rate" --duration 10s \
  --max-connects-per-sec $((rate * 2)) --quiet --json "$out/placement.json" \
  --threshold 'failed_connects==0' --threshold 'calls_refused==0'
echo "== full calls through the webhook: Redis operations per call"
sleep 11 # the placement run's reservations lapse (start_timeout_secs)
scrape() { for a in "${addrs[@]}"; do curl -fs "http://$a/metrics"; done | grep '^hark_cluster_redis_ops_total' || true; }
scrape >"$out/ops-before.txt"
redis-cli -p "$port" config resetstat >/dev/null
"$bin/hark-loadtest" --webhook "$hook" --rate 10 --duration 20s --scenario conversation \
  --quiet --json "$out/calls.json" \
  --threshold 'failed_connects==0' --threshold 'failed_calls==0' --threshold 'stale_frames==0'
sleep 1
redis-cli -p "$port" info commandstats >"$out/commandstats.txt"
redis-cli -p "$port" info errorstats >"$out/errorstats.txt"
scrape >"$out/ops-after.txt"
calls=$(python3 -c 'import json; print(json.load(open("'"$out"'/calls.json"))["counters"]["calls_started"])')
python3 - "$out/commandstats.txt" "$calls" "$out/ops-before.txt" "$out/ops-after.txt" <<'PY'
import re, sys
from collections import Counter
text = open(sys.argv[1]).read()
calls = int(sys.argv[2])
def ops(path):
    c = Counter()
    for line in open(path):
        m = re.match(r'hark_cluster_redis_ops_total\{op="(\w+)"\} (\S+)', line)
        if m:
            c[m.group(1)] += float(m.group(2))
    return c
trips = ops(sys.argv[4]) - ops(sys.argv[3])
print("round trips from the nodes (hark_cluster_redis_ops_total, all nodes):")
for op, n in sorted(trips.items()):
    print(f"  {op:>12}: {int(n):>6} = {n / max(calls, 1):.2f} per call")
print(f"round trips: {int(sum(trips.values()))} for {calls} calls = {sum(trips.values()) / max(calls, 1):.2f} per call (heartbeats included)")
print("commands Redis ran (INFO commandstats, scripts' own calls included):")
total = 0
for name, n in re.findall(r"cmdstat_([a-z|]+):calls=(\d+)", text):
    if name in ("config", "info", "zcard"):
        continue
    total += int(n)
    print(f"  {name:>10}: {int(n):>6}")
print(f"Redis commands: {total} for {calls} calls (heartbeats included) = {total / max(calls, 1):.1f} per call")
PY
