-- Trims a drained batch off the head of the list, only while the drainer still holds the lock
-- (daarion/list_drain.py says why). Returns 1 when trimmed, 0 when the lock was lost.
local lock = KEYS[1]
local list = KEYS[2]
local token = ARGV[1]
local drained = ARGV[2]  -- how many items from the head were stored

if redis.call('GET', lock) == token then
  redis.call('LTRIM', list, drained, -1)
  return 1
end
return 0
