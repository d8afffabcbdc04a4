-- Marks an agent unloaded unless it is already: one atomic step, so two processes unloading
-- the same agent at once give one 200 and one 409.
-- Returns 1 when the state was set, 0 when the agent was unloaded already.
local states = KEYS[1]   -- the hash of agent id -> state
local agent_id = ARGV[1]
local state = ARGV[2]    -- 'unloaded:<unix time>'

local current = redis.call('HGET', states, agent_id)
if current and string.sub(current, 1, 9) == 'unloaded:' then return 0 end
redis.call('HSET', states, agent_id, state)
return 1
