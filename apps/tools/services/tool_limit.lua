-- A tool's calls per minute for one agent (apps/tools/services.py): the sliding count of the
-- two window counters; counts the call and answers 0 when it may go, else the ms to wait.
-- Prefixed with daarion/infra/sliding_window.lua (sliding_count, sliding_wait_ms).
local current_window = KEYS[1]
local previous_window = KEYS[2]
local limit = tonumber(ARGV[1])
local reset_ms = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local expire_ms = tonumber(ARGV[4])

local weight = reset_ms / window_ms
local cur, prev, used = sliding_count(current_window, previous_window, weight)
if math.floor(used) + 1 > limit then
  return math.max(1, sliding_wait_ms(cur, prev, used - limit, weight, reset_ms, window_ms))
end
if redis.call('INCR', current_window) == 1 then redis.call('PEXPIRE', current_window, expire_ms) end
return 0
