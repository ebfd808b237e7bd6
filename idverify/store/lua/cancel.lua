-- Cancels an account: unbinds it at once, ends its pending verifications (and blocks the starts
-- still in flight), and schedules the erasure of everything stored about it, and of its
-- identity record when no other account is bound to it any more. Repeating it changes nothing.
-- KEYS: account, account verifications, erasure queue, audit log, identity, identity accounts,
--   then one verification key per live id
-- ARGV: due ms, request json, account pseudonym, account audit pseudonym, identity ref the caller
--   read ('' when unbound), live verification ids json (the caller retries when either changed)
local acct = hgetall(KEYS[1])
if acct.cancelled_ms then return {'OK', acct.erase_due_ms} end
if (acct.identity or '') ~= ARGV[5] then return {'RETRY'} end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], NOW, '+inf')
local passed = cjson.decode(ARGV[6])
if #live ~= #passed then return {'RETRY'} end
local listed = {}
for _, id in ipairs(passed) do listed[id] = true end
for _, id in ipairs(live) do
  if not listed[id] then return {'RETRY'} end
end
local audit_ps = acct.audit or ARGV[4]
for i, id in ipairs(passed) do
  local key = KEYS[6 + i]
  if redis.call('EXISTS', key) == 1 then
    local vf = hgetall(key)
    if vf.status == 'PENDING' or vf.status == 'CHALLENGE_SENT' or vf.status == 'NEEDS_GUARDIAN_CONSENT' then
      finish(key, KEYS[4], event_base(vf, ARGV[2], KEYS[1]), vf, 'REJECTED', 'ACCOUNT_CANCELLED', false)
    end
  else
    -- A start still running: its commit finds this record and stops there (start.lua).
    local expires = tonumber(redis.call('ZSCORE', KEYS[2], id))
    redis.call('HSET', key, 'id', id, 'status', 'REJECTED', 'reason', 'ACCOUNT_CANCELLED', 'next_step', '',
      'acct', ARGV[3], 'acct_audit', audit_ps, 'created_ms', NOW, 'expires_ms', expires)
    redis.call('PEXPIREAT', key, expires)
  end
end
if ARGV[5] ~= '' then
  redis.call('SREM', KEYS[6], ARGV[3])
  -- Its member field in the identity record goes with it (no longer a member's), and so do any
  -- fields 0.1.0's cancellations left.
  member_fields(KEYS[5], KEYS[6])
  if redis.call('SCARD', KEYS[6]) == 0 then
    redis.call('ZADD', KEYS[3], 'NX', ARGV[1], 'i:' .. ARGV[5])
    -- An organization's names are protected while an account is bound to it.
    drop_org_names(KEYS[1], acct.name_tag)
  end
end
redis.call('HDEL', KEYS[1], 'identity', 'name_tag', 'verified_ms', 'method', 'assurance', 'kind', 'age_band',
  'age_source', 'birth_sealed', 'superseded_ms')
redis.call('HSET', KEYS[1], 'cancelled_ms', NOW, 'erase_due_ms', ARGV[1], 'audit', audit_ps)
redis.call('ZADD', KEYS[3], ARGV[1], 'a:' .. ARGV[3])
local base = cjson.decode(ARGV[2])
base.account = audit_ps
base.event_account_key = KEYS[1]
audit(KEYS[4], base, {type = 'account.cancelled', outcome = 'cancelled', reason = '',
  erasure_due_ms = ARGV[1]})
return {'OK', ARGV[1]}
