-- Settles: a window's token counter gets the difference between the real count and the
-- estimate, a budget period's spend counter the call's cost. Only a counter that still exists:
-- one that already expired is gone for good, and INCRBY would recreate its key without an
-- expiry. Prefixed to the acquire and settle scripts.

-- `count` counters, KEYS[first_key] on, each getting its delta, ARGV[first_arg] on.
local function settle_tokens(first_key, first_arg, count)
  for j = 0, count - 1 do
    local counter = KEYS[first_key + j]
    if redis.call('EXISTS', counter) == 1 then redis.call('INCRBY', counter, ARGV[first_arg + j]) end
  end
end
