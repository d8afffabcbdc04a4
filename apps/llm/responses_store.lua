-- Keeps a stored response's keys in one round trip: each KEYS[i] gets ARGV[i + 1], all with
-- the same time to live.
local ttl_seconds = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl_seconds)
end
return #KEYS
