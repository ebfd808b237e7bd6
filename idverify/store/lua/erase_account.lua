-- An account's erasure, its first step, in the account's slot (docs/ARCHITECTURE.md, "3.3
-- Erasure"): once, when due, it deletes the account's record (IP label, facts, the id for its
-- events), consent records, live and finished verifications and their wrong-code counters,
-- writes account.erased and leaves the queue (so a second worker racing for it finds it gone).
-- The account leaves the open minutes of reads in the next step (erase_minutes.lua), in the
-- tenant's slot; it is deleted first, so a later reads.lua, which counts only accounts that
-- exist, cannot add it back. When the steps run one by one it writes the durable intent
-- 'erase:<account ps>' that the last step removes and the repairer finishes from
-- (flows/bucket_repair.py); joined into one EVAL on one node, none is written.
-- An account whose cancellation is still being finished (its intent 'unbind:<ps>' pending, a
-- worker killed between the steps) waits for the repairer: erased first, it would leave its
-- identity holding a member no repair could then tell from a planted one (intent_take.lua).
-- KEYS: erasure queue, audit log, account, consent, account verifications, intents, the erase
--   intent's record, then the verification keys and wrong-code counters to delete
-- ARGV: account pseudonym, request json, verification ids json (every id of the account's set,
--   as read by the caller, who retries when it changed), the intent's delay in ms ('': write none)
-- Replies: {'OK'} erased now; {'GONE'} not queued or not due (or its cancellation not finished
--   yet: the next round); {'RETRY'} the account's verifications changed since they were read.
local member = 'a:' .. ARGV[1]
local due = redis.call('ZSCORE', KEYS[1], member)
if not due or tonumber(due) > NOW then return {'GONE'} end
if redis.call('ZSCORE', KEYS[6], 'unbind:' .. ARGV[1]) then return {'GONE'} end
local ids = redis.call('ZRANGE', KEYS[5], 0, -1)
local passed = cjson.decode(ARGV[3])
if not same_ids(ids, passed) then return {'RETRY'} end
local base = cjson.decode(ARGV[2])
base.account = redis.call('HGET', KEYS[3], 'audit') or ''
-- The account's id for its account.erased event is read before its hash goes (or from an
-- older server's map), and the map's field goes too, even beside the account's own (an older
-- server verifying the account again writes one): after this step no sealed copy is left.
local legacy_map = legacy_event_map(KEYS[2])
base.event_account_key = KEYS[3]
base.event_account = event_account_of(base, legacy_map)
base.event_account_for = base.account
base.event_account_key = nil
if legacy_map and base.account ~= '' then redis.call('HDEL', legacy_map, base.account) end
for i = 8, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
if ARGV[4] ~= '' then
  -- What the next step needs is the pseudonym alone. No TTL: only the sequence's last step
  -- (intent_done.lua) or the repairer's refusal removes it.
  redis.call('DEL', KEYS[7])
  redis.call('HSET', KEYS[7], 'kind', 'erase', 'subject', ARGV[1])
  redis.call('ZADD', KEYS[6], NOW + tonumber(ARGV[4]), 'erase:' .. ARGV[1])
end
audit(KEYS[2], base, {type = 'account.erased', outcome = 'erased', reason = ''})
redis.call('ZREM', KEYS[1], member)
return {'OK'}
