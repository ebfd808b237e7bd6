-- Reads a verification, expiring a challenge whose time is up (with its audit entry).
-- KEYS: verification, audit log
-- ARGV: request json
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
if vf.status == 'CHALLENGE_SENT' and NOW > tonumber(vf.challenge_expires_ms) then
  finish(KEYS[1], KEYS[2], event_base(vf, ARGV[1]), vf, 'EXPIRED', 'OTP_EXPIRED', false)
end
return {'OK', redis.call('HGETALL', KEYS[1])}
