-- One fixed-window counter; the first call over the limit in a window is audited.
-- KEYS: counter, audit log
-- ARGV: limit, window ms, request json
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  ttl = tonumber(ARGV[2])
end
if count == tonumber(ARGV[1]) + 1 then
  audit(KEYS[2], cjson.decode(ARGV[3]), {type = 'rate_limit.hit', outcome = 'limited', reason = 'RATE_LIMITED'})
end
return {count, ttl}
