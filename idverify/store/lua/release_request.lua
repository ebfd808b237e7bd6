-- Releases the request id of a start that failed, unless its verification was committed after all.
-- A start whose reply was lost (a timeout, a cancelled call, too few replicas acknowledging) may
-- have run on Redis: then its request id must keep pointing at it, so that the caller's retry
-- finds that verification instead of starting a second one (a second code sent, a second set of
-- audit entries). Whatever the order in which this and a late step of the same attempt arrive,
-- at most one takes effect: the id is left released ('x:' .. verification id) for as long as a
-- reservation lives, and a late reservation (reserve_request.lua) or start (start.lua) of this
-- attempt finds it so and does nothing, while the caller's retry may take it.
-- KEYS: request, verification
-- ARGV: verification id (the reservation's), reservation ms
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'x:' .. ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
