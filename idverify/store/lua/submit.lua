-- Judges one answer to a verification's challenge. Counting, comparing and the binding that a
-- right answer leads to are one atomic step, so concurrent guesses can never exceed the limit.
-- KEYS: verification, audit log, account, identity, identity accounts, failure counter, the
--   account's consent record (made lasting once the account is bound, as ConsentFlow.keep does)
-- ARGV: answer digest (hex), binding limit, failure window ms, request json
--   [, verdict, reason, vendor code]: a vendor-judged challenge (face liveness) passes the
--   vendor's verdict ('pass' or 'fail') instead of a digest; it is final either way and never
--   touches the wrong-code counter.
local verdict = ARGV[5] or ''
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
local base = event_base(vf, ARGV[4], KEYS[3])
if vf.status ~= 'CHALLENGE_SENT' then return {'STATE', redis.call('HGETALL', KEYS[1])} end
-- The identity moved (key rotation, a new pepper) since it was looked up: the caller looks again.
if redis.call('HEXISTS', KEYS[4], 'moved_to') == 1
  or ((vf.name_binding_seen or '') ~= '' and redis.call('EXISTS', KEYS[4]) == 0) then
  return {'MOVED'}
end
-- A verdict stands in for a vendor-run challenge only, never for a code that has a digest.
if verdict ~= '' and (vf.digest or '') ~= '' then return {'STATE', redis.call('HGETALL', KEYS[1])} end
if NOW > tonumber(vf.challenge_expires_ms) then
  finish(KEYS[1], KEYS[2], base, vf, 'EXPIRED', 'OTP_EXPIRED', false)
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
if verdict == 'fail' then
  redis.call('HSET', KEYS[1], 'attempts_left', 0)
  audit(KEYS[2], base, {type = 'challenge.failed', outcome = 'fail', reason = ARGV[6], vendor_code = ARGV[7]})
  finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', ARGV[6], false)
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
local max = tonumber(vf.max_attempts)
local fails = tonumber(redis.call('GET', KEYS[6]) or '0')
if verdict == '' and fails >= max then
  redis.call('HSET', KEYS[1], 'attempts_left', 0)
  finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', 'OTP_ATTEMPTS_EXHAUSTED', false)
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
if verdict == '' and not ct_equal(vf.digest or '', ARGV[1]) then
  fails = redis.call('INCR', KEYS[6])
  if redis.call('PTTL', KEYS[6]) < 0 then redis.call('PEXPIRE', KEYS[6], tonumber(ARGV[3])) end
  local left = math.max(max - fails, 0)
  redis.call('HSET', KEYS[1], 'attempts_left', left, 'reason', 'OTP_MISMATCH')
  audit(KEYS[2], base, {type = 'challenge.failed', outcome = 'mismatch', reason = 'OTP_MISMATCH'})
  if left == 0 then
    finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', 'OTP_ATTEMPTS_EXHAUSTED', false)
  end
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
-- A code is accepted once: the digest goes away with the state change.
redis.call('HDEL', KEYS[1], 'digest')
audit(KEYS[2], base, {type = 'challenge.passed', outcome = 'pass', reason = '', vendor_code = ARGV[7]})
if vf.minor == '1' then
  redis.call('HSET', KEYS[1], 'status', 'NEEDS_GUARDIAN_CONSENT', 'reason', 'GUARDIAN_CONSENT_REQUIRED',
    'next_step', 'guardian_consent')
  audit(KEYS[2], base, {type = 'verification.needs_guardian', outcome = 'pending', reason = ''})
  return {'OK', redis.call('HGETALL', KEYS[1])}
end
local status, reason = bind(KEYS[3], KEYS[4], KEYS[5], vf, ARGV[2], KEYS[2], base)
finish(KEYS[1], KEYS[2], base, vf, status, reason, true)
if KEYS[7] and redis.call('HGET', KEYS[1], 'status') == 'VERIFIED' then redis.call('PERSIST', KEYS[7]) end
return {'OK', redis.call('HGETALL', KEYS[1])}
