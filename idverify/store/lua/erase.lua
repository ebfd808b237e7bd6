-- Performs one due erasure, once: the queue entry is removed in the same step, so a second
-- worker racing for it finds it gone. An account's erasure deletes its record (IP label, facts),
-- consent records, live and finished verifications and their wrong-code counters; an identity's
-- deletes the identity record (with its members' claim tags) and its account set, unless an account
-- is bound to it again; a kept one loses the tags of accounts no longer bound (member_fields).
-- An account whose cancellation is still being finished (its intent 'unbind:<ps>' pending, a
-- worker killed between the steps) waits for the repairer: erased first, it would leave its
-- identity holding a member no repair could then tell from a planted one (intent_take.lua).
-- KEYS: erasure queue, audit log, account, consent, account verifications, identity, identity
--   accounts, intents, then the verification keys and wrong-code counters to delete
-- ARGV: queue member ('a:<account pseudonym>' or 'i:<identity ref>'), request json, verification
--   ids json (every id of the account's set, as read by the caller, who retries when it changed)
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > NOW then return {'GONE'} end
local base = cjson.decode(ARGV[2])
local kind = string.sub(ARGV[1], 1, 2)
if kind == 'a:' then
  if redis.call('ZSCORE', KEYS[8], 'unbind:' .. string.sub(ARGV[1], 3)) then return {'GONE'} end
  local ids = redis.call('ZRANGE', KEYS[5], 0, -1)
  local passed = cjson.decode(ARGV[3])
  if #ids ~= #passed then return {'RETRY'} end
  local listed = {}
  for _, id in ipairs(passed) do listed[id] = true end
  for _, id in ipairs(ids) do
    if not listed[id] then return {'RETRY'} end
  end
  base.account = redis.call('HGET', KEYS[3], 'audit') or ''
  -- The account's id for its account.erased event is read before its hash goes (or from an
  -- older server's map), and the map's field goes too, even beside the account's own (an older
  -- server verifying the account again writes one): after this step no sealed copy is left.
  local legacy_map = legacy_event_accounts(KEYS[2])
  base.event_account_key = KEYS[3]
  base.event_account = event_account_of(base, legacy_map)
  base.event_account_for = base.account
  base.event_account_key = nil
  if base.account ~= '' then redis.call('HDEL', legacy_map, base.account) end
  for i = 9, #KEYS do redis.call('DEL', KEYS[i]) end
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  -- Minutes of reads not yet summarized may still list the account: it leaves them now, and
  -- their summaries count and digest the accounts that are left (record_reads in the prelude).
  local tenant_base = string.sub(KEYS[1], 1, -#'erasure:due' - 1)
  for _, open in ipairs(redis.call('ZRANGE', tenant_base .. 'readmin:open', 0, -1)) do
    redis.call('SREM', tenant_base .. 'readmin:' .. open .. ':a', string.sub(ARGV[1], 3))
  end
  audit(KEYS[2], base, {type = 'account.erased', outcome = 'erased', reason = ''})
elseif redis.call('SCARD', KEYS[7]) == 0 then
  redis.call('DEL', KEYS[6], KEYS[7])
  audit(KEYS[2], base, {type = 'identity.erased', outcome = 'erased', reason = ''})
else
  member_fields(KEYS[6], KEYS[7])
  audit(KEYS[2], base, {type = 'identity.erased', outcome = 'kept', reason = 'IDENTITY_IN_USE'})
end
redis.call('ZREM', KEYS[1], ARGV[1])
return {'OK'}
