-- Ends calls: settles their token and spend counters and frees their concurrency slots.
local settles = tonumber(ARGV[1])      -- how many counters to settle (KEYS 1..settles)
local slots = tonumber(ARGV[2])        -- how many concurrency slots to free (the KEYS after them)
local lease = ARGV[3]                  -- the calls' slot id
local settle_deltas_from = 4           -- ARGV[4..]: the settle deltas, in KEYS order

settle_tokens(1, settle_deltas_from, settles)
for j = settles + 1, settles + slots do redis.call('ZREM', KEYS[j], lease) end
return 1
