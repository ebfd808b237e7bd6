-- `idverify migrate legacy`, one page of a tenant's identity records (docs/ARCHITECTURE.md,
-- "Upgrades"): the 'm:' field of every member that has none (bound by 0.1.0), written as the
-- first binding to touch the identity would write it (identity_members: the tag its account
-- carries), in the tenant's slot, so atomic with any binding or cancellation of the identity. A
-- record being re-indexed (moving_to, incoming) is left to its move and counted: its members
-- arrive at the new record as the move read them, and a later run writes what they lack. A
-- forwarding record (moved_to) has no members to write.
-- The page's counts and the cursor after it go into the run's record in the same step, so a run
-- killed anywhere resumes after the last page it finished and counts no field twice.
-- KEYS: the run's record, then each identity record and its accounts' set, in pairs
-- ARGV: the scan's cursor after this page, the run's phase after it (the next one after the last)
-- Replies: {records read, fields written, records left to their moves}
local run = KEYS[1]
local acct_prefix = string.sub(run, 1, string.find(run, '}:', 1, true) + 1) .. 'acct:'
local records, written, moving = 0, 0, 0
for i = 2, #KEYS, 2 do
  local id_key, idacc_key = KEYS[i], KEYS[i + 1]
  if redis.call('EXISTS', id_key) == 1 then
    records = records + 1
    if identity_moving(id_key) then
      moving = moving + 1
    elseif redis.call('HEXISTS', id_key, 'moved_to') == 0 then
      local _, n = identity_members(id_key, idacc_key, acct_prefix)
      written = written + n
    end
  end
end
redis.call('HINCRBY', run, 'records', records)
redis.call('HINCRBY', run, 'fields_written', written)
redis.call('HINCRBY', run, 'in_motion', moving)
redis.call('HSET', run, 'cursor', ARGV[1], 'phase', ARGV[2])
return {records, written, moving}
