-- Marks an agent loaded unless it is already (no state counts as loaded): one atomic step, so
-- two processes loading the same agent at once give one 200 and one 409.
-- Returns 1 when the state was set, 0 when the agent was loaded already.
local states = KEYS[1]   -- the hash of agent id -> state
local agent_id = ARGV[1]
local state = ARGV[2]    -- 'loaded:<unix time>'

local current = redis.call('HGET', states, agent_id)
if not current or string.sub(current, 1, 7) == 'loaded:' then return 0 end
redis.call('HSET', states, agent_id, state)
return 1
