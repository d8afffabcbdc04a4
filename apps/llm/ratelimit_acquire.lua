-- Takes a call's place in every bucket it counts against, or none (apps/llm/ratelimit.py).
-- Settles first (they are earlier calls' corrections), then checks every bucket before taking
-- anything, so a refusal leaves no trace of its own.
-- Returns {1, requests left, tokens left, budget left} of the first bucket, or
-- {0, bucket index, 'requests' | 'tokens' | 'budget' | 'concurrency', limit, retry in ms}.

local now = tonumber(ARGV[1])          -- ms since the epoch
local lease = ARGV[2]                  -- this call's concurrency slot
local est = tonumber(ARGV[3])          -- the call's token estimate
local stale = tonumber(ARGV[4])        -- a slot older than this (ms) belongs to a dead holder
local reset_ms = tonumber(ARGV[5])     -- ms left of this minute
local w = tonumber(ARGV[6])            -- the window's length (ms)
local expire_ms = tonumber(ARGV[7])    -- a new counter's expiry (ms)
local n = tonumber(ARGV[8])            -- how many buckets
local settles = tonumber(ARGV[9])      -- how many token counters to settle first
local cost = tonumber(ARGV[10])        -- the call's estimated cost in micro-USD

-- Bucket i (from 0): six KEYS from i*6+1 and five ARGV from 11+i*5; limits of 0 mean none.
local function bucket_keys(i)
  local k = i * 6
  -- rpm, tpm and concurrency counters, the previous minute's rpm and tpm, the period's spend
  return KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5], KEYS[k+6]
end
local function bucket_limits(i)
  local a = 11 + i * 5
  -- rpm, tpm, concurrency, budget in micro-USD, ms left of the budget period
  return tonumber(ARGV[a]), tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), tonumber(ARGV[a+4])
end
-- After the buckets: the token counters to settle, and their deltas.
local settle_keys_from = n * 6 + 1
local settle_deltas_from = 11 + n * 5

settle_tokens(settle_keys_from, settle_deltas_from, settles)
local weight = reset_ms / w
local remaining = {}
for i = 0, n - 1 do
  local rk, tk, ck, prk, ptk, sk = bucket_keys(i)
  local rpm, tpm, conc, budget, period_ms = bucket_limits(i)
  local r_used, t_used, spent = 0, 0, 0
  if rpm > 0 then
    local cur, prev, used = sliding_count(rk, prk, weight)
    r_used = math.floor(used)
    if r_used + 1 > rpm then
      return {0, i, 'requests', rpm, sliding_wait_ms(cur, prev, used - rpm, weight, reset_ms, w)}
    end
  end
  if tpm > 0 then
    local cur, prev, used = sliding_count(tk, ptk, weight)
    t_used = math.floor(used)
    if t_used > 0 and t_used + est > tpm then
      -- A request bigger than the whole budget may still run alone, once nothing is counted.
      local need = est > tpm and used - 1 or used - (tpm - est + 1)
      return {0, i, 'tokens', tpm, sliding_wait_ms(cur, prev, need, weight, reset_ms, w)}
    end
  end
  if budget > 0 then
    spent = tonumber(redis.call('GET', sk) or '0')
    if spent >= budget then return {0, i, 'budget', budget, period_ms} end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', now - stale)
    if redis.call('ZCARD', ck) + 1 > conc then return {0, i, 'concurrency', conc, 1000} end
  end
  remaining[i+1] = {rpm - r_used - 1, tpm - t_used - est, budget - spent}
end
for i = 0, n - 1 do
  local rk, tk, ck, _, _, sk = bucket_keys(i)
  local rpm, tpm, conc, budget, period_ms = bucket_limits(i)
  if rpm > 0 then
    if redis.call('INCR', rk) == 1 then redis.call('PEXPIRE', rk, expire_ms) end
  end
  if tpm > 0 then
    redis.call('INCRBY', tk, est)
    redis.call('PEXPIRE', tk, expire_ms)
  end
  if conc > 0 then
    redis.call('ZADD', ck, now, lease)
    redis.call('PEXPIRE', ck, stale)
  end
  -- Kept a day past the period: a call that started in it settles into it.
  if budget > 0 then
    redis.call('SET', sk, 0, 'NX', 'PX', period_ms + 86400000)
    if cost > 0 then redis.call('INCRBY', sk, cost) end
  end
end
return {1, remaining[1][1], remaining[1][2], remaining[1][3]}
