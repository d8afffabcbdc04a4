-- Deletes a lock (or lease) only while it still holds its holder's token: a holder whose lock
-- ran out must never drop one another holder took since.
-- Returns 1 when deleted, 0 when the key is gone or held by someone else.
local lock = KEYS[1]
local token = ARGV[1]

if redis.call('GET', lock) == token then return redis.call('DEL', lock) end
return 0
