-- GetVerification's read, in the verification's bucket (its account's): the verification, a
-- challenge whose time is up expired first (with its audit entry, a write in the same bucket, so
-- that no answer can land on it after a read said it expired), and, for the read's accounting
-- (reads_record.lua), the identity its account is bound to.
-- KEYS: verification, audit log
-- ARGV: request json, then '1' to read the account's identity ref
-- Replies: {'NOT_FOUND'}; {'OK', the verification's fields, its account pseudonym ('' none), its
--   account's identity ref ('' none or not asked)}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
-- A right answer whose binding is in flight (store/binding_steps.py) is not expired: it was in time.
if vf.status == 'CHALLENGE_SENT' and vf.binding ~= '1' and NOW > tonumber(vf.challenge_expires_ms) then
  finish(KEYS[1], KEYS[2], event_base(vf, ARGV[1]), vf, 'EXPIRED', 'OTP_EXPIRED', false)
end
local identity = false
if ARGV[2] == '1' and vf.acct then
  -- The account's key beside the verification's: the same bucket.
  identity = redis.call('HGET', string.match(KEYS[1], '^(.-}:)vf:') .. 'acct:' .. vf.acct, 'identity')
end
return {'OK', redis.call('HGETALL', KEYS[1]), vf.acct or '', identity or ''}
