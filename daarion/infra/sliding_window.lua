-- Functions for scripts that check a sliding count (daarion/sliding_window.py); they are
-- prefixed to those scripts and take no KEYS or ARGV of their own.

-- A counter's current window, its previous one, and their sliding sum `used` (the previous
-- weighted by `weight`, its share still inside the last window-length).
local function sliding_count(cur_key, prev_key, weight)
  local cur = tonumber(redis.call('GET', cur_key) or '0')
  local prev = tonumber(redis.call('GET', prev_key) or '0')
  return cur, prev, cur + prev * weight
end

-- ms until `cur + prev * weight` has fallen by more than `need`, with nothing new counted: the
-- previous window's share runs out over the rest of this one (`reset_ms`), then this window's
-- own count over the next (`w` ms).
local function sliding_wait_ms(cur, prev, need, weight, reset_ms, w)
  if need < 0 then need = 0 end
  local prev_part = prev * weight
  if prev > 0 and need < prev_part then return math.floor(need * w / prev) + 1 end
  if cur <= 0 then return reset_ms end
  return reset_ms + math.floor(math.min(need - prev_part, cur) * w / cur) + 1
end
