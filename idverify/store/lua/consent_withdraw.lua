-- Withdraws (or, when it was never granted, refuses) one purpose for an account, at once: the
-- account's pending verifications that rely on the purpose end REJECTED / CONSENT_WITHDRAWN.
-- KEYS: consent, account verifications, audit log, then one verification key per live id
-- ARGV: purpose, request json, account audit pseudonym, live verification ids json (as read by
--   the caller, who retries when they changed)
local live = redis.call('ZRANGEBYSCORE', KEYS[2], NOW, '+inf')
local passed = cjson.decode(ARGV[4])
if not same_ids(live, passed) then return {'RETRY'} end
local purpose = ARGV[1]
local was_granted = redis.call('HEXISTS', KEYS[1], purpose .. ':g') == 1
redis.call('HSET', KEYS[1], purpose .. ':w', NOW)
redis.call('HINCRBY', KEYS[1], 'rev', 1)
-- A withdrawal or refusal is kept: the biometric cool-down depends on it.
redis.call('PERSIST', KEYS[1])
local base = cjson.decode(ARGV[2])
base.account = ARGV[3]
audit(KEYS[3], base, {type = 'consent.withdrawn', outcome = was_granted and 'withdrawn' or 'refused',
  reason = '', purpose = purpose})
local ended = 0
for i = 1, #passed do
  local key = KEYS[3 + i]
  if redis.call('EXISTS', KEYS[3 + i]) == 1 then
    local vf = hgetall(key)
    local pending = vf.status == 'PENDING' or vf.status == 'CHALLENGE_SENT'
      or vf.status == 'NEEDS_GUARDIAN_CONSENT'
    if pending and string.find(',' .. (vf.purposes or '') .. ',', ',' .. purpose .. ',', 1, true) then
      finish(key, KEYS[3], event_base(vf, ARGV[2]), vf, 'REJECTED', 'CONSENT_WITHDRAWN', false)
      ended = ended + 1
    end
  end
end
return {'OK', redis.call('HGETALL', KEYS[1]), ended}
