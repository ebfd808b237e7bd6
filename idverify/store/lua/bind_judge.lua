-- A binding's first step, in the account's slot (docs/ARCHITECTURE.md, "3.1 Binding"): judges one
-- answer to a verification's challenge. Counting, comparing and the guess limit are one atomic
-- step here, so concurrent guesses can never exceed the limit. A wrong code, an expiry, a
-- vendor's 'fail', a minor's answer (a guardian must consent) and an account bound to another
-- identity are final here, as one script made them before the steps. A right code goes on to
-- the identity's step (bind_place.lua) with what it needs of the verification. Step by step, the
-- verification is then marked in flight and the durable intent 'bind:<vf id>' written
-- (mark_binding in the prelude), which the commit removes (bind_commit.lua) and the repairer
-- finishes from (flows/bucket_repair.py). Joined into one script on one node
-- (submit.lua), none of that is written: no step can be lost between them.
-- Its keys are all in the account's bucket (and the tenant's log): whether the identity moved
-- or is moving is the identity's step's to say (bind_place.lua), and on one node submit.lua's,
-- before this step writes.
-- KEYS: verification, audit log, account, failure counter, intents, the intent's record
-- ARGV: answer digest (hex), failure window ms, request json, vendor verdict ('pass', 'fail' or
--   '' for a code), its reason, vendor code (a verdict's only), the intent's delay in ms ('': write none), binding
--   limit (kept in the intent)
-- Replies: {'OK', record} final; {'BINDING', binding_inputs(vf)...} a right answer, to place;
--   {'NOT_FOUND'}; {'STATE', record}; {'BUSY'} another answer of the account is binding.
local verdict = ARGV[4]
-- Only a verdict's entries name a vendor code (an empty one too), as before the steps.
local vendor_code = verdict ~= '' and ARGV[6] or nil
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
-- A repeated answer while its binding is in flight: the caller runs the steps after this one.
if vf.binding == '1' then return binding_inputs(vf) end
local base = event_base(vf, ARGV[3], KEYS[3])
if vf.status ~= 'CHALLENGE_SENT' then return {'STATE', redis.call('HGETALL', KEYS[1])} end
-- A verdict stands in for a vendor-run challenge only, never for a code that has a digest.
if verdict ~= '' and (vf.digest or '') ~= '' then return {'STATE', redis.call('HGETALL', KEYS[1])} end
if NOW > tonumber(vf.challenge_expires_ms) then
  finish(KEYS[1], KEYS[2], base, vf, 'EXPIRED', 'OTP_EXPIRED', false)
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
if verdict == 'fail' then
  redis.call('HSET', KEYS[1], 'attempts_left', 0)
  audit(KEYS[2], base, {type = 'challenge.failed', outcome = 'fail', reason = ARGV[5], vendor_code = vendor_code})
  finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', ARGV[5], false)
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
local max = tonumber(vf.max_attempts)
local fails = tonumber(redis.call('GET', KEYS[4]) or '0')
if verdict == '' and fails >= max then
  redis.call('HSET', KEYS[1], 'attempts_left', 0)
  finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', 'OTP_ATTEMPTS_EXHAUSTED', false)
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
if verdict == '' and not ct_equal(vf.digest or '', ARGV[1]) then
  fails = redis.call('INCR', KEYS[4])
  if redis.call('PTTL', KEYS[4]) < 0 then redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[2])) end
  local left = math.max(max - fails, 0)
  redis.call('HSET', KEYS[1], 'attempts_left', left, 'reason', 'OTP_MISMATCH')
  audit(KEYS[2], base, {type = 'challenge.failed', outcome = 'mismatch', reason = 'OTP_MISMATCH'})
  if left == 0 then
    finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', 'OTP_ATTEMPTS_EXHAUSTED', false)
  end
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
local current = vf.minor ~= '1' and redis.call('HMGET', KEYS[3], 'identity', 'binding')
-- Another right answer of this account is binding: this one waits for it (its record unchanged).
if current and current[2] and current[2] ~= vf.id then
  local holder = string.sub(KEYS[1], 1, #KEYS[1] - #vf.id) .. current[2]
  if redis.call('HGET', holder, 'binding') == '1' then return {'BUSY'} end
end
-- A code is accepted once: the digest goes away with the state change.
redis.call('HDEL', KEYS[1], 'digest')
audit(KEYS[2], base, {type = 'challenge.passed', outcome = 'pass', reason = '', vendor_code = vendor_code})
if vf.minor == '1' then
  redis.call('HSET', KEYS[1], 'status', 'NEEDS_GUARDIAN_CONSENT', 'reason', 'GUARDIAN_CONSENT_REQUIRED',
    'next_step', 'guardian_consent')
  audit(KEYS[2], base, {type = 'verification.needs_guardian', outcome = 'pending', reason = ''})
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
if current[1] and current[1] ~= vf.identity then
  finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', 'ACCOUNT_BOUND_TO_OTHER_IDENTITY', true)
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
if ARGV[7] ~= '' then mark_binding(KEYS[1], KEYS[3], KEYS[5], KEYS[6], vf, ARGV[7], ARGV[8], ARGV[3]) end
return binding_inputs(vf)
