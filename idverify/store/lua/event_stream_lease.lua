-- Takes (or gives back) one of a client's open event streams, over every worker and replica. A
-- lease ends at its stream's maximum lifetime plus a margin, so a worker killed with streams
-- open frees them by itself.
-- KEYS: the client's streams (zset: stream token -> lease end, ms)
-- ARGV: 'take' or 'give', stream token, limit, lease ms
-- Returns 1 when taken (or given back), 0 when the client already holds the limit.
if ARGV[1] == 'give' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', NOW)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], NOW + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
