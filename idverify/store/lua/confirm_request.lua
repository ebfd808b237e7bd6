-- A repeated request id is answered with the verification it started only once that
-- verification is on the replicas: an earlier attempt may have been refused for want of them
-- (or its reply lost) after the primary wrote it, and a failover would then take it back. This
-- touch is a write, so the WAIT that follows it counts every earlier write of the primary too.
-- KEYS: request
-- Returns the request id's remaining lifetime in ms (-2: gone).
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return ttl
