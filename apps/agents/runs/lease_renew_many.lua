-- Many leases renewed in one round trip: a worker with hundreds of runs must not open a
-- connection per renewal at once. Returns per lease 1 (renewed) or 0 (not this holder's any more).
local leases = KEYS          -- the lease keys
local n = #leases
-- ARGV[i]: the token of leases[i]; ARGV[n + i]: its new time to live (ms)
local function token(i) return ARGV[i] end
local function ttl_ms(i) return ARGV[n + i] end

local out = {}
for i, lease in ipairs(leases) do
  if redis.call('GET', lease) == token(i) then
    redis.call('PEXPIRE', lease, ttl_ms(i))
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
