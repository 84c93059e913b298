//! The Lua scripts run on Redis (admission, lease refresh, send, drain,
//! acknowledgement), each hashed once for `EVALSHA`.

use std::sync::LazyLock;

const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
"#;

/// Sets (not only updates: a lease Redis lost is re-created) the expiry of
/// each member. No cap check: these connections are open already.
const REFRESH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
"#;

/// Publishes a message and appends it to the user's stream, in one atomic
/// step. `KEYS`: channel, stream, meta (hash: `seen`, the last id a drain
/// covered; `waiting`, messages stored for nobody since). `ARGV`: envelope,
/// mode (`s` store if nobody is subscribed, `l` delivered locally too, `c`
/// control: published only), most waiting, offline ttl, replay window (ms).
/// The stream id (`ms-seq`, from Redis `TIME`, above the stream's last one)
/// is chosen first so that the published payload carries it: `<id> <env>`.
/// Returns `{subscribers, waiting}`: waiting 0 when not stored, -1 full.
const SEND: &str = r#"
if ARGV[2] == 'c' then return {redis.call('PUBLISH', KEYS[1], ' ' .. ARGV[1]), 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, seq = now, 0
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  local lms, lseq = string.match(last[1][1], '^(%d+)-(%d+)$')
  if tonumber(lms) >= now then ms = tonumber(lms); seq = tonumber(lseq) + 1 end
end
local id = string.format('%.0f-%.0f', ms, seq)
local waiting = tonumber(redis.call('HGET', KEYS[3], 'waiting') or '0')
local n = redis.call('PUBLISH', KEYS[1], id .. ' ' .. ARGV[1])
local stored = n == 0 and ARGV[2] == 's'
if stored and waiting >= tonumber(ARGV[3]) then return {0, -1} end
redis.call('XADD', KEYS[2], id, 'e', ARGV[1], 'w', stored and '1' or '0')
if stored then waiting = redis.call('HINCRBY', KEYS[3], 'waiting', 1) end
local ttl = ARGV[5]
if waiting > 0 then
  ttl = ARGV[4]
else
  redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%.0f', now - tonumber(ARGV[5])))
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
if stored then return {0, waiting} end
return {n, 0}
"#;

/// Reads users' streams without removing anything. `KEYS`: the epoch key,
/// then each user's stream and meta. `ARGV[1]`: an epoch to set if Redis
/// has none (it lost its data); then per user the epoch of the node's
/// cursor and the cursor (`''`: a new subscription, which takes only the
/// messages stored for nobody since the last drain). A cursor of another
/// epoch reads the whole stream. Writes nothing but the epoch: the node
/// acknowledges with `ACK` once it has delivered. Returns `{epoch, heads, lists}`: per user
/// the stream's last id (`''` if empty) and `{id, w, envelope, ...}`.
const DRAIN_MANY: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch) end
local heads, lists = {}, {}
for k = 1, (#KEYS - 1) / 2 do
  local s, m = KEYS[2 * k], KEYS[2 * k + 1]
  local cursor = ARGV[2 * k + 1]
  local fresh = cursor == ''
  local from = '-'
  if fresh then
    local seen = redis.call('HGET', m, 'seen')
    if seen then from = '(' .. seen end
  elseif ARGV[2 * k] == epoch then
    from = '(' .. cursor
  end
  local out = {}
  for _, e in ipairs(redis.call('XRANGE', s, from, '+')) do
    if not fresh or e[2][4] == '1' then
      out[#out + 1] = e[1]; out[#out + 1] = e[2][4]; out[#out + 1] = e[2][2]
    end
  end
  local top = redis.call('XREVRANGE', s, '+', '-', 'COUNT', 1)
  heads[k] = ''
  if #top > 0 then heads[k] = top[1][1] end
  lists[k] = out
end
return {epoch, heads, lists}
"#;

/// After a drain delivered up to `ARGV[k]` (a stream id) of the stream
/// `KEYS[2k]`: a new subscription no longer takes what is up to there
/// (`seen`), and `waiting` counts what was stored for nobody after it. The
/// hash expires with the stream.
const ACK: &str = r#"
local function id(s) local a, b = string.match(s, '^(%d+)-(%d+)$'); return {tonumber(a), tonumber(b)} end
for k = 1, #ARGV do
  local m, head = KEYS[2 * k], ARGV[k]
  local seen = redis.call('HGET', m, 'seen')
  local h, o = id(head), seen and id(seen)
  if not o or h[1] > o[1] or (h[1] == o[1] and h[2] > o[2]) then
    local waiting = 0
    for _, e in ipairs(redis.call('XRANGE', KEYS[2 * k - 1], '(' .. head, '+')) do
      if e[2][4] == '1' then waiting = waiting + 1 end
    end
    redis.call('HSET', m, 'seen', head, 'waiting', waiting)
    local ttl = redis.call('PTTL', KEYS[2 * k - 1])
    if ttl > 0 then redis.call('PEXPIRE', m, ttl) else redis.call('DEL', m) end
  end
end
return 1
"#;

/// The scripts, each hashed once: `invoke_async` sends `EVALSHA` and falls
/// back to `EVAL` when Redis does not have the script cached.
pub(super) static ADMIT_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(ADMIT));
pub(super) static REFRESH_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(REFRESH));
pub(super) static SEND_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SEND));
pub(super) static ACK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACK));
pub(super) static DRAIN_MANY_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(DRAIN_MANY));
