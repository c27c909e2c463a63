//! The registry's Lua scripts: each runs atomically in Redis, on Redis's own
//! clock (`TIME`), so nodes' clocks need not agree.
//!
//! Keys all carry the `{hark}` hash tag: in a Redis Cluster they share one
//! slot, which is what lets a script read the node entries it finds in
//! `{hark}:nodes` (keys it builds itself, not passed in `KEYS`).
//!
//! | key | type | what |
//! |---|---|---|
//! | `{hark}:nodes` | zset | node id → its entry's expiry (ms, Redis time) |
//! | `{hark}:node:ID` | hash | url, capacity, active, lag_us, draining, policies (`,name@version,…`) |
//! | `{hark}:starting:ID` | zset | call SID → its reservation's expiry (ms) |
//! | `{hark}:calls:ID` | set | the call SIDs live on the node |
//! | `{hark}:call:SID` | hash | node, state (`live` / `ended`), streams |
//! | `{hark}:caller:HASH` | counter | a caller's attempts in their hour |
//! | `{hark}:api:NAME` | hash | an API token's bucket: tokens, at |

/// Redis time in ms, as every script computes it.
const NOW: &str = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// KEYS: nodes, node:ID, starting:ID. ARGV: id, ttl_ms, url, capacity,
/// active, lag_us, draining (0/1), policies, reap (0/1).
/// Returns {starting, lost ids…}: the node's live reservations and, when
/// `reap`, the ids whose entries lapsed (taken off here, so exactly one
/// node gets each).
pub const HEARTBEAT: &str = r"
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], 'url', ARGV[3], 'capacity', ARGV[4], 'active', ARGV[5],
  'lag_us', ARGV[6], 'draining', ARGV[7], 'policies', ARGV[8])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local out = { redis.call('ZCARD', KEYS[3]) }
if ARGV[9] == '1' then
  local lost = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, id in ipairs(lost) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', '{hark}:starting:' .. id)
    table.insert(out, id)
  end
end
return out
";

/// KEYS: nodes. ARGV: call SID, reservation ms, max depth, frame µs,
/// policy tag (`,name@version,`; empty: any), excluded node id (or '').
/// Picks the live, not draining node holding the policy with the lowest
/// queue depth that stays under the limit with one more call, and
/// reserves a slot there. Returns {id, url, depth} or false.
pub const PLACE: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local best, best_url, best_depth
for _, id in ipairs(ids) do
  if id ~= ARGV[6] then
    local h = redis.call('HMGET', '{hark}:node:' .. id, 'url', 'capacity', 'active', 'lag_us', 'draining', 'policies')
    local cap = tonumber(h[2])
    if h[1] and cap and cap > 0 and h[5] == '0'
      and (ARGV[5] == '' or string.find(h[6] or '', ARGV[5], 1, true)) then
      local skey = '{hark}:starting:' .. id
      redis.call('ZREMRANGEBYSCORE', skey, '-inf', now)
      local starting = redis.call('ZCARD', skey)
      local depth = (tonumber(h[3]) + starting) / cap + tonumber(h[4]) / tonumber(ARGV[4])
      if depth + 1 / cap <= tonumber(ARGV[3]) and (best == nil or depth < best_depth) then
        best, best_url, best_depth = id, h[1], depth
      end
    end
  end
end
if best == nil then return false end
local skey = '{hark}:starting:' .. best
redis.call('ZADD', skey, now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', skey, tonumber(ARGV[2]) * 2)
return { best, best_url, tostring(best_depth) }
";

/// KEYS: starting:ID, node:ID, calls:ID, call:SID. ARGV: id, call SID,
/// keep ms. The stream arrived: the reservation becomes an active call
/// (counted at once, before the next heartbeat), the call → node entry.
pub const STARTED: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HINCRBY', KEYS[2], 'active', 1) end
redis.call('SADD', KEYS[3], ARGV[2])
local old = redis.call('HGET', KEYS[4], 'node')
if old and old ~= ARGV[1] then redis.call('SREM', '{hark}:calls:' .. old, ARGV[2]) end
redis.call('HSET', KEYS[4], 'node', ARGV[1], 'state', 'live')
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[3]))
return 1
";

/// KEYS: node:ID, calls:ID, call:SID. ARGV: id, call SID, keep ms.
/// Hark ended the call: the entry says so (a `<Connect action>` request
/// then hangs up) for a while.
pub const ENDED: &str = r"
if redis.call('SREM', KEYS[2], ARGV[2]) == 1 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'active', -1)
end
if redis.call('HGET', KEYS[3], 'node') == ARGV[1] then
  redis.call('HSET', KEYS[3], 'state', 'ended')
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[3]))
end
return 1
";

/// KEYS: calls:LOST. ARGV: lost id. The lost node's calls still on it
/// (not re-placed since), taken off; the caller records them ended.
pub const TAKE_LOST_CALLS: &str = r"
local out = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = '{hark}:call:' .. sid
  if redis.call('HGET', key, 'node') == ARGV[1] then
    redis.call('HSET', key, 'state', 'ended')
    table.insert(out, sid)
  end
end
redis.call('DEL', KEYS[1])
return out
";

/// KEYS: call:SID. ARGV: keep ms. A new stream index for a call taken
/// over from a lost node (its records continue after the old ones).
pub const NEXT_STREAM: &str = r"
local n = redis.call('HINCRBY', KEYS[1], 'streams', 1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return n
";

/// KEYS: caller:HASH. ARGV: window ms. One more attempt by this caller;
/// the count in the window that started with their first.
pub const CALLER_ATTEMPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
return n
";

/// KEYS: api:NAME. ARGV: rate per second, burst. A token bucket on Redis's
/// clock: 1 when a request's worth was taken, 0 when over the rate.
pub const TAKE_TOKEN: &str = r"
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(h[1]) or burst
local at = tonumber(h[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
";

/// The script text with Redis's clock in front.
pub fn with_clock(body: &str) -> String {
    format!("{NOW}{body}")
}
