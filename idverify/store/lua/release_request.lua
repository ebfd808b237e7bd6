-- Frees the request id of a start that failed, unless its verification was committed after all.
-- A start whose reply was lost (a timeout, a cancelled call, too few replicas acknowledging) may
-- have run on Redis: then its request id must keep pointing at it, so that the caller's retry
-- finds that verification instead of starting a second one (a second code sent, a second set of
-- audit entries). Whatever the order in which this and a late start arrive, at most one commits.
-- KEYS: request, verification
-- ARGV: verification id (the reservation's)
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('DEL', KEYS[1])
