-- A repeated request id is answered with the verification it started only once that
-- verification is on the replicas: an earlier attempt may have been refused for want of them
-- (or its reply lost) after the primary wrote it, and a failover would then take it back. This
-- touch is a write, so the WAIT that follows it counts every earlier write of the primary too.
-- It touches the key that holds the id: the account's, else the legacy one (the request id's
-- alone, which older releases wrote and this one only reads until it expired).
-- KEYS: request, legacy request
-- Returns the request id's remaining lifetime in ms (-2: gone).
local ttl = redis.call('PTTL', KEYS[1])
local key = KEYS[1]
if ttl == -2 then
  key = KEYS[2]
  ttl = redis.call('PTTL', key)
end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
return ttl
