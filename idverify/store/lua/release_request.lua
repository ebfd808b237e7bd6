-- Releases the request id of a start that failed, unless its verification was committed after all.
-- A start whose reply was lost (a timeout, a cancelled call, too few replicas acknowledging) may
-- have run on Redis: then its request id must keep pointing at it, so that the caller's retry
-- finds that verification instead of starting a second one (a second code sent, a second set of
-- audit entries). Whatever the order in which this and a late step of the same attempt arrive,
-- at most one takes effect: the attempt's release marker lives as long as a reservation, and a
-- late reservation (reserve_request.lua) or start (start.lua) of this attempt finds it and does
-- nothing. The request id itself is left free, as 0.1.0 leaves it (it deletes its reservation):
-- a retry reaching a 0.1.0 server during a rolling upgrade starts there too, where a value other
-- than a verification id would be answered INVALID_ARGUMENT (0.1.0 reads it as one).
-- KEYS: request, verification, this attempt's release marker
-- ARGV: verification id (the reservation's), reservation ms
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if holder then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[3], '1', 'PX', tonumber(ARGV[2]))
return 1
