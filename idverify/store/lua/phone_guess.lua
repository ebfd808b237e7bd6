-- Wrong codes per phone from every tenant and account, in the phone's own hash slot. A wrong
-- code is counted before the tenant's step judges it (so concurrent guesses cannot overshoot
-- the limit); a right one only checks the lock, so a locked phone answers every code alike.
-- Reaching the limit locks the phone for one window from that moment; a locked phone's codes
-- are refused uncounted, so the lock never outlasts its window.
-- KEYS: phone failures
-- ARGV: 'count' (a wrong code) | 'check' (a right one), failures that lock the phone, window ms
-- Returns {'OK', failures} | {'LOCKED', ttl ms}
local lock_at = tonumber(ARGV[2])
local fails = tonumber(redis.call('GET', KEYS[1]) or '0')
if fails >= lock_at then return {'LOCKED', math.max(redis.call('PTTL', KEYS[1]), 0)} end
if ARGV[1] ~= 'count' then return {'OK', fails} end
fails = redis.call('INCR', KEYS[1])
if fails == 1 or fails >= lock_at or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return {'OK', fails}
