-- Refuses when a counter that another step increments has reached its limit; the first refusal
-- of the counter's window is audited (a marker counts them), as rate_limit.lua audits its own.
-- KEYS: counter, refusals marker, audit log
-- ARGV: limit (0: off), request json
-- Returns {'OK'} | {'LIMITED', ttl ms of the counter's window (at least 1000)}
local limit = tonumber(ARGV[1])
if limit <= 0 or tonumber(redis.call('GET', KEYS[1]) or '0') < limit then return {'OK'} end
local ttl = math.max(redis.call('PTTL', KEYS[1]), 1000)
local refusals = redis.call('INCR', KEYS[2])
if refusals == 1 or redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if refusals == 1 then
  audit(KEYS[3], cjson.decode(ARGV[2]), {type = 'rate_limit.hit', outcome = 'limited', reason = 'RATE_LIMITED'})
end
return {'LIMITED', ttl}
