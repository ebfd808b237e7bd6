-- Reads a verification, expiring a challenge whose time is up (with its audit entry), and
-- records the read of its account (record_reads in the prelude).
-- KEYS: verification, audit log
-- ARGV: request json, then the read spec (READ_SPEC_SIZE values)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
-- A right answer whose binding is in flight (store/binding_steps.py) is not expired: it was in time.
if vf.status == 'CHALLENGE_SENT' and vf.binding ~= '1' and NOW > tonumber(vf.challenge_expires_ms) then
  finish(KEYS[1], KEYS[2], event_base(vf, ARGV[1]), vf, 'EXPIRED', 'OTP_EXPIRED', false)
end
if #ARGV > 1 and vf.acct then
  local base = string.sub(KEYS[2], 1, -#'audit:log' - 1)
  local identity = redis.call('HGET', base .. 'acct:' .. vf.acct, 'identity')
  record_reads(base, read_spec(2), {vf.acct}, identity and {identity} or {})
end
return {'OK', redis.call('HGETALL', KEYS[1])}
