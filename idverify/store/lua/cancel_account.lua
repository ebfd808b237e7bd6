-- A cancellation's first step, in the account's slot (docs/ARCHITECTURE.md, "3.2 Cancellation"):
-- unbinds the account at once, ends its pending verifications (and blocks the starts still in
-- flight) and schedules the erasure of everything stored about it. The identity's keys are the
-- next step's (cancel_identity.lua), the organization's names the one after (drop_names.lua).
-- When the account was bound and the steps run one by one, it writes the durable intent
-- 'unbind:<account ps>' that the last step removes and the repairer finishes from
-- (flows/bucket_repair.py); joined into one EVAL on one node, no intent is needed (no step can be
-- lost between them) and none is written.
-- KEYS: account, account verifications, erasure queue, audit log, intents, the intent's record,
--   then one verification key per live id
-- ARGV: due ms, request json, account pseudonym, account audit pseudonym, identity ref the caller
--   read ('' when unbound), its claim tag the caller read, live verification ids json (the caller
--   retries when any of these changed), the intent's delay in ms ('': write none)
-- Replies: {'OK', due ms} cancelled now; {'DONE', first due ms} cancelled before (the steps after
--   this one are the intent's to finish); {'RETRY'} the caller's read went stale.
local acct = hgetall(KEYS[1])
if acct.cancelled_ms then return {'DONE', acct.erase_due_ms} end
if (acct.identity or '') ~= ARGV[5] or (acct.name_tag or '') ~= ARGV[6] then return {'RETRY'} end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], NOW, '+inf')
local passed = cjson.decode(ARGV[7])
if not same_ids(live, passed) then return {'RETRY'} end
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
local base = cjson.decode(ARGV[2])
if ARGV[5] ~= '' and ARGV[8] ~= '' then
  -- What the later steps need, and the request the entries of this cancellation name. No TTL:
  -- only the sequence's last step (intent_done.lua) or the repairer's refusal removes it.
  local member = 'unbind:' .. ARGV[3]
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[6], 'kind', 'unbind', 'subject', ARGV[3], 'ref', ARGV[5], 'tag', ARGV[6],
    'due_ms', ARGV[1], 'principal', base.principal or '', 'request_id', base.request_id or '',
    'trace_id', base.trace_id or '')
  redis.call('ZADD', KEYS[5], NOW + tonumber(ARGV[8]), member)
end
redis.call('HDEL', KEYS[1], 'identity', 'name_tag', 'verified_ms', 'method', 'assurance', 'kind', 'age_band',
  'age_source', 'birth_sealed', 'superseded_ms')
redis.call('HSET', KEYS[1], 'cancelled_ms', NOW, 'erase_due_ms', ARGV[1], 'audit', audit_ps)
redis.call('ZADD', KEYS[3], ARGV[1], 'a:' .. ARGV[3])
base.account = audit_ps
base.event_account_key = KEYS[1]
audit(KEYS[4], base, {type = 'account.cancelled', outcome = 'cancelled', reason = '',
  erasure_due_ms = ARGV[1]})
return {'OK', ARGV[1]}
