#!/usr/bin/env bash
# Smoke load for CI: `hark serve` (zero-latency simulated providers) and 50
# simulated callers for 30 s. Fails if calls break under load: stale frames,
# unanswered turns, missed barge-ins, protocol errors, failed calls.
# Usage: loadtest/smoke.sh [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-debug}
flag=$([ "$profile" = release ] && echo --release || echo)
cargo build --locked $flag --bin hark --bin hark-loadtest
bin=target/$profile
out=target/smoke
mkdir -p "$out"
"$bin/hark" serve --listen 127.0.0.1:0 --policy policies/loadtest.toml >"$out/hark.out" 2>"$out/hark.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  addr=$(grep -o 'listening on http://[0-9.:]*' "$out/hark.out" | sed 's#.*http://##' || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "hark did not start"; cat "$out/hark.err"; exit 1; }
"$bin/hark-loadtest" --url "ws://$addr/twilio/media" --calls 50 --duration 30s \
  --scenario conversation --pid "$pid" --metrics-url "http://$addr/metrics" \
  --json "$out/report.json" --plot "$out/plot.svg" --quiet \
  --threshold 'stale_frames==0' --threshold 'unanswered_turns==0' \
  --threshold 'missed_barge_ins==0' --threshold 'protocol_errors==0' \
  --threshold 'failed_connects==0' --threshold 'failed_calls==0' \
  --threshold 'turns>=100' --threshold 'response_p99<1500ms' --threshold 'barge_in_p99<500ms'
